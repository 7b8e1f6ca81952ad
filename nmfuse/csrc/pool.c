/* Buffer accounting; see pool.h for the contracts. */
#include <string.h>

#include "netmap_abi.h"
#include "pool.h"

void nmh_pool_init(struct nmh_bufpool *p)
{
    uint32_t i, k = 0;

    memset(p->in_use, 0, p->objtotal);
    for (i = 0; i < NMH_RESERVED && i < p->objtotal; i++)
        p->in_use[i] = 1;
    /* the top of the stack is the lowest index, so buffers go out in order */
    for (i = p->objtotal; i-- > NMH_RESERVED;)
        p->free_stack[k++] = i;
    p->nfree = k;
}

int nmh_pool_alloc(struct nmh_bufpool *p, uint32_t n, uint32_t *out)
{
    if (n > p->nfree)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx = p->free_stack[--p->nfree];
        p->in_use[idx] = 1;
        out[i] = idx;
    }
    return 0;
}

uint32_t nmh_pool_release(struct nmh_bufpool *p, const uint32_t *idx, uint32_t n)
{
    uint32_t skipped = 0;

    for (uint32_t i = 0; i < n; i++) {
        uint32_t b = idx[i];
        if (b < NMH_RESERVED || b >= p->objtotal || !p->in_use[b]) {
            skipped++;
            continue;
        }
        p->in_use[b] = 0;
        p->free_stack[p->nfree++] = b;
    }
    return skipped;
}

uint32_t nmh_mark_slots(const struct netmap_slot *slot, uint32_t n, uint8_t *marks, uint32_t objtotal)
{
    uint32_t bad = 0;

    for (uint32_t i = 0; i < n; i++) {
        uint32_t b = slot[i].buf_idx;
        if (b < NMH_RESERVED || b >= objtotal)
            bad++;
        else
            marks[b] = 1;
    }
    return bad;
}

uint32_t nmh_mark_list(const char *bufbase, uint32_t bufsize, uint32_t head,
                       uint8_t *marks, uint32_t objtotal, uint32_t limit)
{
    uint32_t n = 0, b = head;

    while (n < limit && b >= NMH_RESERVED && b < objtotal && !marks[b]) {
        uint32_t next;
        marks[b] = 1;
        n++;
        memcpy(&next, bufbase + (size_t)b * bufsize, sizeof(next));
        b = next;
    }
    return n;
}

void nmh_pool_rebuild(struct nmh_bufpool *p, const uint8_t *marks)
{
    uint32_t k = 0;

    for (uint32_t i = p->objtotal; i-- > 0;) {
        uint8_t used = i < NMH_RESERVED ? 1 : (marks[i] != 0);
        p->in_use[i] = used;
        if (!used)
            p->free_stack[k++] = i;
    }
    p->nfree = k;
}

void nmh_slots_fill(struct netmap_slot *slot, uint32_t n, const uint32_t *bufs, uint16_t len)
{
    for (uint32_t i = 0; i < n; i++) {
        slot[i].buf_idx = bufs[i];
        slot[i].len = len;
        slot[i].flags = 0;
        slot[i].ptr = 0;
    }
}

void nmh_slots_bufs(const struct netmap_slot *slot, uint32_t n, uint32_t *out)
{
    for (uint32_t i = 0; i < n; i++)
        out[i] = slot[i].buf_idx;
}

