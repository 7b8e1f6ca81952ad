/* TAP queues; see tap.h for the contracts. */
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>

#include "netmap_abi.h"
#include "pool.h"
#include "sync.h"
#include "tap.h"

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

void nmh_tap_io_count(struct nmh_kring *k, const struct nmh_tap_io *io, const struct nmh_tap_io *before)
{
    k->stats_packets += io->packets - before->packets;
    k->stats_bytes += io->bytes - before->bytes;
    k->stats_drops += io->drops - before->drops;
}

int nmh_tap_txsync(struct nmh_kring *k)
{
    struct nmh_tap_ring *p = k->driver;
    struct nmh_tap_io *io = &p->io;
    uint32_t n = k->nkr_num_slots;

    if (k->nr_hwcur != k->rhead) {
        struct nmh_tap_io before = *io;
        int mode = p->gone ? NMH_TAP_DISCARD : NMH_TAP_SEND;

        for (uint32_t i = 0; i < p->nhost && mode == NMH_TAP_SEND; i++)
            if (p->host[i]->users > 0)
                mode = NMH_TAP_DISCARD;
        io->error = io->last_error = 0;
        k->nr_hwcur = nmh_tap_tx(io, p->fd, k->ring->slot, n, k->nr_hwcur, k->rhead, mode);
        nmh_tap_io_count(k, io, &before);
        if (io->error == EAGAIN || io->error == EBADFD || io->last_error == EBADFD)
            __atomic_store_n(&k->driver_error, io->error == EAGAIN ? EAGAIN : EBADFD, __ATOMIC_RELEASE);
    }
    nmh_tx_reclaim(k, k->nr_hwcur);
    return p->gone ? ENXIO : 0;
}
