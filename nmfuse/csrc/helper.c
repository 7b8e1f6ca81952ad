/* Implementation of helper.h; see there for the contracts. */
#include <string.h>

#define NMH_RESERVED 2

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
    uint32_t n, busy, room, t, i, k;
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
    busy = r->hwtail >= r->hwcur ? r->hwtail - r->hwcur : r->hwtail + n - r->hwcur;
    room = n - 1 - busy;
    if (frags > room) {
        /* as netmap, the rest of this batch for the ring is dropped too */
        nmh_vale_mark(b, port, ring, r, NMH_MARK_FULL);
        r->dropped++;
        return;
    }
    t = r->hwtail;
    k = first;
    for (i = 0; i < frags; i++) {
        struct netmap_slot *ds = &r->slot[t];
        uint32_t len = len0, dlen = 0;
        const char *data = i == 0 ? d0 : nmh_vale_src_buf(sp, src, k, &len);
        uint64_t doff = ds->ptr & r->offset_mask;

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
    r->hwtail = t;
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

/* ---- monitors ---- */

uint32_t nmh_mon_copy(const char *bufs, uint32_t buf_size, uint32_t objtotal,
                      const struct netmap_slot *slot, uint32_t n, uint64_t mask,
                      uint32_t first, uint32_t count,
                      struct netmap_slot *mslot, uint32_t mn, uint64_t mmask,
                      uint32_t mhwcur, uint32_t mhwtail, uint16_t txmon)
{
    uint32_t busy = mhwtail >= mhwcur ? mhwtail - mhwcur : mhwtail + mn - mhwcur;
    uint32_t room = mn - 1 - busy, k = first, t = mhwtail;

    if (room == 0)
        return mhwtail;
    if (count > room) {
        /* keep the newest frames, as netmap does */
        k = (uint32_t)(((uint64_t)first + count - room) % n);
        count = room;
    }
    for (; count > 0; count--) {
        const struct netmap_slot *s = &slot[k];
        struct netmap_slot *ms = &mslot[t];
        uint64_t soff = s->ptr & mask, moff = ms->ptr & mmask;
        uint32_t len = s->len;

        if (s->buf_idx < NMH_RESERVED || s->buf_idx >= objtotal || soff > buf_size ||
            len > buf_size - soff || ms->buf_idx < NMH_RESERVED || ms->buf_idx >= objtotal ||
            moff > buf_size) {
            len = 0;
        } else {
            if (len > buf_size - moff)
                len = buf_size - (uint32_t)moff;   /* truncated, as netmap */
            memcpy((char *)bufs + (size_t)ms->buf_idx * buf_size + moff,
                   bufs + (size_t)s->buf_idx * buf_size + soff, len);
        }
        ms->len = (uint16_t)len;
        ms->flags = (uint16_t)((s->flags & ~NS_TXMON) | txmon);
        if (++k == n)
            k = 0;
        if (++t == mn)
            t = 0;
    }
    return t;
}

uint32_t nmh_mon_swap(struct netmap_slot *slot, uint32_t n, uint32_t beg, uint32_t count,
                      struct netmap_slot *mslot, uint32_t mn, uint32_t mhwcur, uint32_t mhwtail,
                      uint16_t txmon)
{
    uint32_t busy = mhwtail >= mhwcur ? mhwtail - mhwcur : mhwtail + mn - mhwcur;
    uint32_t room = mn - 1 - busy, k = beg, t = mhwtail;

    if (room == 0)
        return mhwtail;
    if (count > room) {
        k = (uint32_t)(((uint64_t)beg + count - room) % n);
        count = room;
    }
    for (; count > 0; count--) {
        struct netmap_slot *s = &slot[k];
        struct netmap_slot *ms = &mslot[t];
        uint32_t idx = ms->buf_idx;
        uint16_t len = ms->len;

        ms->buf_idx = s->buf_idx;
        ms->len = s->len;
        s->buf_idx = idx;
        s->len = len;
        ms->flags = (uint16_t)((s->flags & ~NS_TXMON) | txmon);
        s->flags |= NS_BUF_CHANGED;
        if (++k == n)
            k = 0;
        if (++t == mn)
            t = 0;
    }
    return t;
}

/* ------------------------------------------------------------------ */
/* TAP queues */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>

_Static_assert(sizeof(struct nmh_vnet_hdr) == sizeof(struct virtio_net_hdr), "virtio_net_hdr layout");
_Static_assert(sizeof(struct virtio_net_hdr_mrg_rxbuf) == 12, "virtio_net_hdr_mrg_rxbuf layout");

#define NMH_MAX_FRAGS 64              /* netmap's limit of slots per frame */
#define NMH_TAP_OFFLOADS (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)

int nmh_tap_open(const char *name, int multi_queue, int vnet_hdr)
{
    struct ifreq ifr;
    int fd;

    if (strlen(name) >= IFNAMSIZ)
        return -ENAMETOOLONG;
    fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (multi_queue ? IFF_MULTI_QUEUE : 0) | (vnet_hdr ? IFF_VNET_HDR : 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int nmh_tap_name(int fd, char *name)
{
    struct ifreq ifr;

    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(fd, TUNGETIFF, &ifr) < 0)
        return -errno;
    memcpy(name, ifr.ifr_name, IFNAMSIZ);
    name[IFNAMSIZ - 1] = '\0';
    return 0;
}

int nmh_tap_set_hdr(int fd, uint32_t hdrlen)
{
    int sz = (int)hdrlen;

    if (hdrlen && ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0)
        return -errno;
    /* without a header the program must get plain frames: the kernel then
     * checksums and segments before handing them over */
    if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)(hdrlen ? NMH_TAP_OFFLOADS : 0)) < 0)
        return -errno;
    return 0;
}

int nmh_tap_set_carrier(int fd, int on)
{
    return ioctl(fd, TUNSETCARRIER, &on) < 0 ? -errno : 0;
}

int nmh_tap_set_persist(int fd, int on)
{
    return ioctl(fd, TUNSETPERSIST, (unsigned long)on) < 0 ? -errno : 0;
}

int nmh_tap_netns(int fd)
{
    int ns = ioctl(fd, TUNGETDEVNETNS);
    return ns < 0 ? -errno : ns;
}

int nmh_tap_drain(int fd)
{
    static char sink[65536 + 64];
    int n = 0;

    for (;;) {
        ssize_t r = read(fd, sink, sizeof(sink));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN ? n : -errno;
        n++;
    }
}

static inline int nmh_buf_ok(const struct nmh_tap_io *io, const struct netmap_slot *s)
{
    return s->buf_idx >= NMH_RESERVED && s->buf_idx < io->objtotal && s->len <= io->bufsize;
}

static inline char *nmh_buf(const struct nmh_tap_io *io, uint32_t idx)
{
    return io->bufbase + (size_t)idx * io->bufsize;
}

uint32_t nmh_tap_tx(struct nmh_tap_io *io, int fd, struct netmap_slot *slot, uint32_t n,
                    uint32_t cur, uint32_t head, int mode)
{
    struct iovec iov[NMH_MAX_FRAGS];

    io->error = 0;
    while (cur != head) {
        uint32_t k = cur, nfrags = 0;
        size_t len = 0;
        int niov = 0, bad = 0, complete = 0;

        /* 1. gather one frame: cur .. k-1 */
        do {
            struct netmap_slot *s = &slot[k];

            if (!nmh_buf_ok(io, s) || nfrags == NMH_MAX_FRAGS) {
                bad = 1;
            } else {
                iov[niov].iov_base = nmh_buf(io, s->buf_idx);
                iov[niov++].iov_len = s->len;
                len += s->len;
            }
            nfrags++;
            if (++k == n)
                k = 0;
            complete = !(s->flags & NS_MOREFRAG);
        } while (!complete && k != head);
        if (!complete)
            break;              /* head cuts the chain: wait for its end */

        /* 2. what to do with it */
        if (mode == NMH_TAP_FORWARD) {
            int fwd = slot[cur].flags & NS_FORWARD;
            for (uint32_t j = cur; j != k; j = j + 1 == n ? 0 : j + 1)
                slot[j].flags &= ~NS_FORWARD;
            if (!fwd) {
                cur = k;
                continue;
            }
        }
        if (bad || mode == NMH_TAP_DISCARD || len < io->hdrlen) {
            io->drops++;
            cur = k;
            continue;
        }

        /* 3. write it (write() takes a cheaper path in the kernel than writev) */
        ssize_t r = niov == 1 ? write(fd, iov[0].iov_base, iov[0].iov_len) : writev(fd, iov, niov);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN && mode == NMH_TAP_SEND) {
                io->error = EAGAIN;
                break;          /* the frame stays pending */
            }
            io->last_error = errno;
            io->drops++;
        } else {
            io->packets++;
            io->bytes += len - io->hdrlen;
        }
        cur = k;
    }
    return cur;
}

/* Spread the frame waiting in q over slots tail.. if room allows; returns
 * how many slots it took (0: not enough room, or dropped). */
static uint32_t nmh_tap_rx_pending(struct nmh_tap_io *io, struct nmh_tap_rxq *q, struct netmap_slot *slot,
                                   uint32_t n, uint32_t tail, uint32_t room)
{
    uint32_t used = 1 + (q->pending + io->bufsize - 1) / io->bufsize, k = tail;
    size_t off = 0;

    if (used > room)
        return 0;
    for (uint32_t j = 0; j < used; j++) {
        struct netmap_slot *s = &slot[k];
        if (s->buf_idx < NMH_RESERVED || s->buf_idx >= io->objtotal) {
            io->error = EINVAL;
            return 0;
        }
        if (j == 0) {
            s->len = (uint16_t)io->bufsize;
        } else {
            size_t chunk = q->pending - off < io->bufsize ? q->pending - off : io->bufsize;
            memcpy(nmh_buf(io, s->buf_idx), q->spill + off, chunk);
            s->len = (uint16_t)chunk;
            off += chunk;
        }
        s->flags = j + 1 < used ? NS_MOREFRAG : 0;
        if (++k == n)
            k = 0;
    }
    io->packets++;
    io->bytes += q->pending_len > io->hdrlen ? q->pending_len - io->hdrlen : 0;
    q->pending = q->pending_len = 0;
    return used;
}

uint32_t nmh_tap_rx(struct nmh_tap_io *io, struct nmh_tap_rxq *q, int fd, struct netmap_slot *slot,
                    uint32_t n, uint32_t tail, uint32_t room)
{
    struct iovec iov[2];
    uint32_t used;

    io->error = 0;
    if (q->pending) {
        used = nmh_tap_rx_pending(io, q, slot, n, tail, room);
        if (used == 0)
            return tail;
        tail = (tail + used) % n;
        room -= used;
    }
    while (room > 0) {
        struct netmap_slot *s = &slot[tail];
        size_t data;

        if (s->buf_idx < NMH_RESERVED || s->buf_idx >= io->objtotal) {
            io->error = EINVAL;
            break;
        }
        iov[0].iov_base = nmh_buf(io, s->buf_idx);
        iov[0].iov_len = io->bufsize;
        iov[1].iov_base = q->spill;
        iov[1].iov_len = NMH_TAP_SPILL;
        ssize_t r = readv(fd, iov, 2);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            io->error = errno;
            break;
        }
        data = (size_t)r;
        if (data == 0 || data > io->bufsize + NMH_TAP_SPILL) {
            io->drops++;        /* empty, or cut short by the spill: dropped */
            continue;
        }
        if (data <= io->bufsize) {
            s->len = (uint16_t)data;
            s->flags = 0;
            io->packets++;
            io->bytes += data > io->hdrlen ? data - io->hdrlen : 0;
            if (++tail == n)
                tail = 0;
            room--;
            continue;
        }
        q->pending = (uint32_t)(data - io->bufsize);
        q->pending_len = (uint32_t)data;
        used = 1 + (q->pending + io->bufsize - 1) / io->bufsize;
        if (used > n - 1 || used > NMH_MAX_FRAGS) {
            q->pending = q->pending_len = 0;
            io->drops++;        /* longer than the ring or netmap's chains */
            continue;
        }
        used = nmh_tap_rx_pending(io, q, slot, n, tail, room);
        if (used == 0)
            break;              /* waits in q for room */
        tail = (tail + used) % n;
        room -= used;
    }
    return tail;
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

/* ------------------------------------------------------------------ */
/* External memory guard */
#include <signal.h>
#include <sys/mman.h>

struct nmh_guard {
    uintptr_t start, end, page;
    int used;                   /* published last, read by the handler */
};

static struct nmh_guard nmh_guards[NMH_GUARD_MAX];
static struct sigaction nmh_prev_sigbus;
static int nmh_guard_installed;
static uint64_t nmh_guard_replaced;

static void nmh_on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    uintptr_t a = (uintptr_t)si->si_addr;

    for (int i = 0; i < NMH_GUARD_MAX; i++) {
        struct nmh_guard *g = &nmh_guards[i];
        if (__atomic_load_n(&g->used, __ATOMIC_ACQUIRE) && a >= g->start && a < g->end) {
            void *page = (void *)(a & ~(g->page - 1));
            if (mmap(page, g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                     -1, 0) != MAP_FAILED) {
                __atomic_add_fetch(&nmh_guard_replaced, 1, __ATOMIC_RELAXED);
                return;     /* the access is retried on the new page */
            }
            break;
        }
    }
    if ((nmh_prev_sigbus.sa_flags & SA_SIGINFO) && nmh_prev_sigbus.sa_sigaction != NULL) {
        nmh_prev_sigbus.sa_sigaction(sig, si, ctx);
    } else if (nmh_prev_sigbus.sa_handler != SIG_DFL && nmh_prev_sigbus.sa_handler != SIG_IGN) {
        nmh_prev_sigbus.sa_handler(sig);
    } else {
        signal(SIGBUS, SIG_DFL);    /* the fault comes again and kills, as without us */
    }
}

int nmh_guard_install(void)
{
    struct sigaction sa;

    if (nmh_guard_installed)
        return 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = nmh_on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &nmh_prev_sigbus) < 0)
        return -errno;
    nmh_guard_installed = 1;
    return 0;
}

int nmh_guard_add(char *start, size_t len, size_t page)
{
    for (int i = 0; i < NMH_GUARD_MAX; i++) {
        struct nmh_guard *g = &nmh_guards[i];
        if (!g->used) {
            g->start = (uintptr_t)start;
            g->end = (uintptr_t)start + len;
            g->page = page;
            __atomic_store_n(&g->used, 1, __ATOMIC_RELEASE);
            return 0;
        }
    }
    return -1;
}

void nmh_guard_remove(char *start)
{
    for (int i = 0; i < NMH_GUARD_MAX; i++) {
        struct nmh_guard *g = &nmh_guards[i];
        if (g->used && g->start == (uintptr_t)start)
            __atomic_store_n(&g->used, 0, __ATOMIC_RELEASE);
    }
}

uint64_t nmh_guard_faults(void)
{
    return __atomic_load_n(&nmh_guard_replaced, __ATOMIC_RELAXED);
}
