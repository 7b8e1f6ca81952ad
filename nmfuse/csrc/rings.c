/* Per-slot ring loops; see rings.h for the contracts. */
#include <string.h>

#include "netmap_abi.h"
#include "pool.h"
#include "rings.h"

int64_t nmh_slots_check(const struct netmap_slot *slot, uint32_t n, uint32_t from, uint32_t count,
                        uint32_t objtotal, uint32_t bufsize)
{
    uint32_t k = from;

    for (uint32_t i = 0; i < count; i++) {
        const struct netmap_slot *s = &slot[k];
        if (s->buf_idx < NMH_RESERVED || s->buf_idx >= objtotal || s->len > bufsize)
            return k;
        if (++k == n)
            k = 0;
    }
    return -1;
}

uint32_t nmh_pipe_forward(struct netmap_slot *tx, struct netmap_slot *rx, uint32_t n,
                          uint32_t from, uint32_t count, uint64_t rx_offset_mask)
{
    uint32_t k = from, complete_end = n;

    for (uint32_t i = 0; i < count; i++) {
        uint64_t off = rx[k].ptr & rx_offset_mask;
        rx[k] = tx[k];
        if ((rx[k].ptr & rx_offset_mask) < off)
            rx[k].ptr = (rx[k].ptr & ~rx_offset_mask) | off;
        tx[k].flags &= ~NS_BUF_CHANGED;
        if (++k == n)
            k = 0;
        if (!(tx[k == 0 ? n - 1 : k - 1].flags & NS_MOREFRAG))
            complete_end = k;
    }
    return complete_end;
}

void nmh_pipe_release(struct netmap_slot *rx, struct netmap_slot *tx, uint32_t n,
                      uint32_t from, uint32_t count)
{
    uint32_t k = from;

    for (uint32_t i = 0; i < count; i++) {
        tx[k] = rx[k];
        rx[k].flags &= ~NS_BUF_CHANGED;
        if (++k == n)
            k = 0;
    }
}

/* ---- monitors ---- */

/* How many of the `count` slots from *first of a ring of n slots fit the
 * free part of a monitor ring of mn slots [mhwtail, mhwcur - 1); when not
 * all fit, *first moves on so that the newest frames are kept, as netmap
 * keeps them. */
static uint32_t mon_window(uint32_t n, uint32_t mn, uint32_t mhwcur, uint32_t mhwtail,
                           uint32_t *first, uint32_t count)
{
    uint32_t busy = mhwtail >= mhwcur ? mhwtail - mhwcur : mhwtail + mn - mhwcur;
    uint32_t room = mn - 1 - busy;

    if (count > room) {
        *first = (uint32_t)(((uint64_t)*first + count - room) % n);
        count = room;
    }
    return count;
}

/* Where a copy monitor's payload comes from and goes to. */
struct mon_bufs {
    const char *bufs;
    uint32_t buf_size, objtotal;
    uint64_t mask, mmask;
};

static void mon_copy_slot(const struct mon_bufs *b, const struct netmap_slot *s, struct netmap_slot *ms)
{
    uint64_t soff = s->ptr & b->mask, moff = ms->ptr & b->mmask;
    uint32_t len = s->len;

    if (s->buf_idx < NMH_RESERVED || s->buf_idx >= b->objtotal || soff > b->buf_size ||
        len > b->buf_size - soff || ms->buf_idx < NMH_RESERVED || ms->buf_idx >= b->objtotal ||
        moff > b->buf_size) {
        len = 0;
    } else {
        if (len > b->buf_size - moff)
            len = b->buf_size - (uint32_t)moff;   /* truncated, as netmap */
        memcpy((char *)b->bufs + (size_t)ms->buf_idx * b->buf_size + moff,
               b->bufs + (size_t)s->buf_idx * b->buf_size + soff, len);
    }
    ms->len = (uint16_t)len;
}

static void mon_swap_slot(struct netmap_slot *s, struct netmap_slot *ms)
{
    uint32_t idx = ms->buf_idx;
    uint16_t len = ms->len;

    ms->buf_idx = s->buf_idx;
    ms->len = s->len;
    s->buf_idx = idx;
    s->len = len;
    s->flags |= NS_BUF_CHANGED;
}

/* Both monitor kinds: the slots that fit the monitor's free window, each
 * copied (``copy`` given) or swapped (zero-copy), tagged with ``txmon``;
 * returns the monitor ring's new tail. */
static uint32_t mon_walk(struct netmap_slot *slot, uint32_t n, uint32_t first, uint32_t count,
                         struct netmap_slot *mslot, uint32_t mn, uint32_t mhwcur, uint32_t mhwtail,
                         uint16_t txmon, const struct mon_bufs *copy)
{
    uint32_t k = first, t = mhwtail;

    count = mon_window(n, mn, mhwcur, mhwtail, &k, count);
    for (; count > 0; count--) {
        struct netmap_slot *s = &slot[k];
        struct netmap_slot *ms = &mslot[t];
        uint16_t flags = (uint16_t)((s->flags & ~NS_TXMON) | txmon);  /* before a swap marks s */

        if (copy)
            mon_copy_slot(copy, s, ms);
        else
            mon_swap_slot(s, ms);
        ms->flags = flags;
        if (++k == n)
            k = 0;
        if (++t == mn)
            t = 0;
    }
    return t;
}

uint32_t nmh_mon_copy(const char *bufs, uint32_t buf_size, uint32_t objtotal,
                      const struct netmap_slot *slot, uint32_t n, uint64_t mask,
                      uint32_t first, uint32_t count,
                      struct netmap_slot *mslot, uint32_t mn, uint64_t mmask,
                      uint32_t mhwcur, uint32_t mhwtail, uint16_t txmon)
{
    const struct mon_bufs b = { bufs, buf_size, objtotal, mask, mmask };

    /* the walk writes source slots only when swapping */
    return mon_walk((struct netmap_slot *)slot, n, first, count, mslot, mn, mhwcur, mhwtail, txmon, &b);
}

uint32_t nmh_mon_swap(struct netmap_slot *slot, uint32_t n, uint32_t beg, uint32_t count,
                      struct netmap_slot *mslot, uint32_t mn, uint32_t mhwcur, uint32_t mhwtail,
                      uint16_t txmon)
{
    return mon_walk(slot, n, beg, count, mslot, mn, mhwcur, mhwtail, txmon, NULL);
}

uint32_t nmh_forward_swap(struct netmap_slot *src, uint32_t src_n, uint32_t from, uint32_t to,
                          struct netmap_ring *dst)
{
    uint32_t i = from, dn = dst->num_slots;

    for (; i != to && dst->head != dst->tail; i = i + 1 == src_n ? 0 : i + 1) {
        struct netmap_slot *s = &src[i], *d = &dst->slot[dst->head], tmp;

        if (!(s->flags & NS_FORWARD))
            continue;
        tmp = *s;
        s->buf_idx = d->buf_idx;
        s->flags = NS_BUF_CHANGED;
        d->buf_idx = tmp.buf_idx;
        d->len = tmp.len;
        d->flags = NS_BUF_CHANGED | (tmp.flags & NS_MOREFRAG);
        dst->head = dst->cur = dst->head + 1 == dn ? 0 : dst->head + 1;
    }
    return i;
}
