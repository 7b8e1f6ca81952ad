/* VALE forwarding; see vale.h for the contracts. */
#include <pthread.h>
#include <string.h>

#include "netmap_abi.h"
#include "pool.h"
#include "sync.h"
#include "vale.h"

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(((struct nmh_vale_bridge *)0)->lock),
               "struct nmh_vale_bridge.lock holds a pthread_mutex_t");

/* ---- VALE switch ---- */

#define NMH_MARK_LISTED 1u
#define NMH_MARK_FULL 2u

/* Bob Jenkins' 96-bit mixing step, the one netmap's learning table uses. */
#define NMH_JENKINS_MIX(a, b, c)                        \
    do {                                                \
        a -= b; a -= c; a ^= (c >> 13);                 \
        b -= c; b -= a; b ^= (a << 8);                  \
        c -= a; c -= b; c ^= (b >> 13);                 \
        a -= b; a -= c; a ^= (c >> 12);                 \
        b -= c; b -= a; b ^= (a << 16);                 \
        c -= a; c -= b; c ^= (b >> 5);                  \
        a -= b; a -= c; a ^= (c >> 3);                  \
        b -= c; b -= a; b ^= (a << 10);                 \
        c -= a; c -= b; c ^= (b >> 15);                 \
    } while (0)

uint32_t nmh_vale_hash(const uint8_t *mac)
{
    uint32_t a = 0x9e3779b9u, b = 0x9e3779b9u, c = 0;

    b += ((uint32_t)mac[5] << 8) + mac[4];
    a += ((uint32_t)mac[3] << 24) + ((uint32_t)mac[2] << 16) + ((uint32_t)mac[1] << 8) + mac[0];
    NMH_JENKINS_MIX(a, b, c);
    return c & (NMH_VALE_HASH - 1);
}

static inline uint64_t nmh_mac48(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40;
}

/* The bytes of source slot k; NULL with *len 0 for a slot the switch
 * cannot read (bad index, length past the buffer, or NS_INDIRECT, whose
 * user pointer the daemon does not follow). */
static inline const char *nmh_vale_src_buf(const struct nmh_vale_port *sp, const struct nmh_vale_src *src,
                                           uint32_t k, uint32_t *len)
{
    const struct netmap_slot *s = &src->slot[k];
    uint64_t off = s->ptr & src->offset_mask;

    if (s->buf_idx < NMH_RESERVED || s->buf_idx >= sp->objtotal || (s->flags & NS_INDIRECT) ||
        off > sp->buf_size || s->len > sp->buf_size - off) {
        *len = 0;
        return NULL;
    }
    *len = s->len;
    return sp->bufs + (size_t)s->buf_idx * sp->buf_size + off;
}

/* How many frames ahead the switch fetches the buffers it will touch: a
 * frame costs a cache miss (and a TLB miss) in the source buffer and in
 * the destination buffer, which the loop overlaps with earlier frames. */
#define NMH_VALE_AHEAD 4

static inline void nmh_vale_prefetch(const struct nmh_vale_port *p, const struct netmap_slot *s, int write)
{
    uint32_t idx = s->buf_idx;

    if (idx < p->objtotal) {
        if (write)
            __builtin_prefetch(p->bufs + (size_t)idx * p->buf_size, 1);
        else
            __builtin_prefetch(p->bufs + (size_t)idx * p->buf_size, 0);
    }
}

static inline void nmh_vale_mark(struct nmh_vale_bridge *b, uint32_t port, uint32_t ring,
                                 struct nmh_vale_ring *r, uint32_t bit)
{
    if (!r->mark)
        b->marked[b->nmarked++] = (uint16_t)(port << 4 | ring);
    r->mark |= bit;
}

/* Copy one frame (frags slots from `first`, the first one's bytes at d0,
 * len0) into ring r of port dp. */
static void nmh_vale_deliver(struct nmh_vale_bridge *b, const struct nmh_vale_port *sp,
                             const struct nmh_vale_src *src, uint32_t first, uint32_t frags,
                             const char *d0, uint32_t len0,
                             struct nmh_vale_port *dp, uint32_t port, uint32_t ring)
{
    struct nmh_vale_ring *r;
    uint32_t n, hwcur, busy, room, t, i, k;
    uint64_t dmask;
    uint32_t sh = sp->virt_hdr_len, dh = dp->virt_hdr_len;

    if (dp->num_rx == 0)
        return;
    ring &= NMH_VALE_MAXRINGS - 1;      /* netmap keeps 16 queues per port */
    if (ring >= dp->num_rx)
        ring %= dp->num_rx;
    r = &dp->rx[ring];
    if (r->slot == NULL)
        return;
    if (r->mark & NMH_MARK_FULL) {
        r->dropped++;
        return;
    }
    n = r->num_slots;
    /* the owner's rxsync stores hwcur after the user gave the slots back */
    hwcur = __atomic_load_n(&r->hwcur, __ATOMIC_ACQUIRE);
    busy = r->hwtail >= hwcur ? r->hwtail - hwcur : r->hwtail + n - hwcur;
    room = n - 1 - busy;
    if (frags > room) {
        /* as netmap, the rest of this batch for the ring is dropped too */
        nmh_vale_mark(b, port, ring, r, NMH_MARK_FULL);
        r->dropped++;
        return;
    }
    dmask = __atomic_load_n(&r->offset_mask, __ATOMIC_RELAXED);   /* the owner's rxsync may store it */
    t = r->hwtail;
    k = first;
    for (i = 0; i < frags; i++) {
        struct netmap_slot *ds = &r->slot[t];
        uint32_t len = len0, dlen = 0;
        const char *data = i == 0 ? d0 : nmh_vale_src_buf(sp, src, k, &len);
        uint64_t doff = ds->ptr & dmask;

        if (ds->buf_idx >= NMH_RESERVED && ds->buf_idx < dp->objtotal && doff <= dp->buf_size) {
            char *dst = dp->bufs + (size_t)ds->buf_idx * dp->buf_size + doff;
            uint32_t dmax = dp->buf_size - (uint32_t)doff;

            if (i == 0 && sh != dh) {
                /* virtio-net header mismatch: replace the source header
                 * (sh bytes) by one of dh bytes, keeping what both share */
                uint32_t skip = sh < len ? sh : len;
                uint32_t payload = len - skip;

                if (dh + payload <= dmax) {
                    uint32_t keep = skip < dh ? skip : dh;
                    if (keep)
                        memcpy(dst, data, keep);
                    if (dh > keep)
                        memset(dst + keep, 0, dh - keep);
                    if (dh == 12 && keep < 12)
                        dst[10] = 1;   /* num_buffers of the merged-buffer header */
                    if (payload)
                        memcpy(dst + dh, data + skip, payload);
                    dlen = dh + payload;
                }
            } else if (len <= dmax) {
                if (len)
                    memcpy(dst, data, len);
                dlen = len;
            }
        }
        ds->len = (uint16_t)dlen;
        ds->flags = (uint16_t)((frags & 0xff) << 8) | (i + 1 < frags ? NS_MOREFRAG : 0);
        if (++t == n)
            t = 0;
        if (++k == src->num_slots)
            k = 0;
    }
    __atomic_store_n(&r->hwtail, t, __ATOMIC_RELEASE);   /* after the slots: the owner's rxsync reads it */
    r->delivered++;
    t += NMH_VALE_AHEAD;
    nmh_vale_prefetch(dp, &r->slot[t < n ? t : t - n], 1);
    nmh_vale_mark(b, port, ring, r, NMH_MARK_LISTED);
}

/* The last destination address hashed in a flush, and its bucket. */
struct nmh_vale_memo {
    uint64_t dmac;
    uint32_t bucket;
};

/* One frame of port `me`: learn, look up, deliver. */
static void nmh_vale_frame(struct nmh_vale_bridge *b, uint32_t me, const struct nmh_vale_src *src,
                           uint32_t first, uint32_t frags, uint16_t first_flags, struct nmh_vale_memo *memo)
{
    struct nmh_vale_port *sp = b->ports[me];
    uint32_t hdr = sp->virt_hdr_len, len0, looklen, dst, h, j;
    const char *d0 = nmh_vale_src_buf(sp, src, first, &len0);
    const uint8_t *look;
    uint64_t smac, dmac;

    /* the Ethernet header follows the virtio-net header, in the first
     * slot or at the very start of the second */
    if (d0 != NULL && hdr < len0) {
        look = (const uint8_t *)d0 + hdr;
        looklen = len0 - hdr;
    } else if (d0 != NULL && hdr == len0 && frags > 1) {
        uint32_t k = first + 1 == src->num_slots ? 0 : first + 1;
        look = (const uint8_t *)nmh_vale_src_buf(sp, src, k, &looklen);
        if (look == NULL)
            return;
    } else {
        return;
    }
    if (looklen < 14)
        return;

    dmac = nmh_mac48(look);
    smac = nmh_mac48(look + 6);
    if (!(first_flags & NS_NO_LEARN) && !(look[6] & 1) && sp->last_smac != smac) {
        h = nmh_vale_hash(look + 6);
        b->ht[h].mac = smac;
        b->ht[h].port = me;
        sp->last_smac = smac;
    }
    dst = NMH_VALE_BROADCAST;
    if (!(look[0] & 1)) {
        if (memo->dmac != dmac) {
            memo->dmac = dmac;
            memo->bucket = nmh_vale_hash(look);
        }
        h = memo->bucket;
        if (b->ht[h].mac == dmac)
            dst = b->ht[h].port;
    }

    if (dst == NMH_VALE_BROADCAST) {
        /* broadcast and unknown unicast: ring 0 of every other port */
        for (j = 0; j < b->active; j++) {
            uint32_t p = b->port_index[j];
            if (p != me && b->ports[p] != NULL)
                nmh_vale_deliver(b, sp, src, first, frags, d0, len0, b->ports[p], p, 0);
        }
    } else if (dst < NMH_VALE_MAXPORTS && dst != me && b->ports[dst] != NULL) {
        nmh_vale_deliver(b, sp, src, first, frags, d0, len0, b->ports[dst], dst, src->ring_nr);
    }
}

uint32_t nmh_vale_flush(struct nmh_vale_bridge *b, uint32_t me, const struct nmh_vale_src *src,
                        uint32_t from, uint32_t count, uint16_t *out)
{
    uint32_t n = src->num_slots, j = from, i, nout = 0;
    struct nmh_vale_memo memo = { 1ull << 63, 0 };   /* no MAC has bit 63 */

    if (me >= NMH_VALE_MAXPORTS || b->ports[me] == NULL)
        return 0;
    b->nmarked = 0;
    while (count > 0) {
        uint32_t first = j, frags = 0;
        uint16_t first_flags = src->slot[j].flags, fl;

        /* gather one frame; an incomplete one at the end is cut there */
        do {
            fl = src->slot[j].flags;
            src->slot[j].flags = fl & ~NS_BUF_CHANGED;
            frags++;
            count--;
            if (++j == n)
                j = 0;
        } while ((fl & NS_MOREFRAG) && count > 0);
        if (count > NMH_VALE_AHEAD) {
            uint32_t k = j + NMH_VALE_AHEAD;
            nmh_vale_prefetch(b->ports[me], &src->slot[k < n ? k : k - n], 0);
        }
        nmh_vale_frame(b, me, src, first, frags, first_flags, &memo);
    }
    for (i = 0; i < b->nmarked; i++) {
        uint16_t e = b->marked[i];
        b->ports[e >> 4]->rx[e & 0xf].mark = 0;
        out[nout++] = e;
    }
    b->nmarked = 0;
    return nout;
}


/* ---- the port's syncs ---- */

void nmh_vale_bridge_init(struct nmh_vale_bridge *b)
{
    pthread_mutex_init((pthread_mutex_t *)b->lock, NULL);
}

void nmh_vale_bridge_reset(struct nmh_vale_bridge *b)
{
    nmh_vale_lock(b);
    b->active = 0;
    b->nmarked = 0;
    b->python = 0;
    memset(b->ports, 0, sizeof b->ports);
    memset(b->ht, 0, sizeof b->ht);
    nmh_vale_unlock(b);
}

void nmh_vale_lock(struct nmh_vale_bridge *b)
{
    pthread_mutex_lock((pthread_mutex_t *)b->lock);
}

void nmh_vale_unlock(struct nmh_vale_bridge *b)
{
    pthread_mutex_unlock((pthread_mutex_t *)b->lock);
}

uint32_t nmh_vale_txsync(struct nmh_kring *k, const struct nmh_vale_tx *t, nmh_vale_moved_fn moved, void *ctx,
                         uint16_t *out)
{
    uint32_t n = k->nkr_num_slots, head = k->rhead, cur = k->nr_hwcur, nout = 0;

    if (head != cur && k->ring != NULL) {
        struct nmh_vale_port *p = t->port;
        struct nmh_vale_bridge *b = __atomic_load_n(&p->bridge, __ATOMIC_ACQUIRE);

        if (b != NULL) {
            nmh_vale_lock(b);
            if (p->bridge == b) {       /* still attached: detach changes it under the lock */
                struct nmh_vale_src src = {k->ring->slot, n, t->ring_nr, k->offset_mask};
                uint32_t count = head >= cur ? head - cur : head + n - cur;

                nout = nmh_vale_flush(b, p->me, &src, cur, count, moved ? b->out : out);
                k->stats_packets += count;
                if (moved) {
                    /* the hwtails stored before the pollers are looked at: a poll
                     * arming (nmh_kring_wait_add) then looking at hwtail sees one or
                     * the other (the pipes' pipe_tail does the same) */
                    __atomic_thread_fence(__ATOMIC_SEQ_CST);
                    for (uint32_t i = 0; i < nout; i++) {
                        struct nmh_vale_port *dp = b->ports[b->out[i] >> 4];
                        struct nmh_kring *dk = dp ? dp->rx[b->out[i] & 0xf].kring : NULL;
                        if (dk != NULL)
                            moved(ctx, dk);
                    }
                    nout = 0;
                }
            }
            nmh_vale_unlock(b);
        }
    }
    k->nr_hwcur = head;
    nmh_tx_reclaim(k, head);
    return nout;
}

int nmh_vale_rxsync(struct nmh_kring *k, struct nmh_vale_ring *r)
{
    uint32_t n = k->nkr_num_slots, head = k->rhead;

    if (__atomic_load_n(&r->slot, __ATOMIC_RELAXED) != NULL) {
        k->nr_hwtail = __atomic_load_n(&r->hwtail, __ATOMIC_ACQUIRE);
        __atomic_store_n(&r->offset_mask, k->offset_mask, __ATOMIC_RELAXED);
        if (head != k->nr_hwcur) {
            k->stats_packets += head >= k->nr_hwcur ? head - k->nr_hwcur : head + n - k->nr_hwcur;
            __atomic_store_n(&r->hwcur, head, __ATOMIC_RELEASE);
        }
    }
    k->nr_hwcur = head;
    return 0;
}

int nmh_vale_tx_c(const struct nmh_kring *k)
{
    const struct nmh_vale_tx *t = k->driver;
    struct nmh_vale_bridge *b = __atomic_load_n(&t->port->bridge, __ATOMIC_ACQUIRE);

    return b == NULL || __atomic_load_n(&b->python, __ATOMIC_RELAXED) == 0;
}
