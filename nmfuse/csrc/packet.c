/* AF_PACKET receive rings, batched sends, tcx BPF programs; see packet.h. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "netmap_abi.h"
#include "pool.h"
#include "sync.h"
#include "tap.h"
#include "packet.h"
#include "fast.h"

#define NMH_PKT_MAX_FRAGS 64          /* netmap's limit of slots per frame */
#define NMH_PKT_BATCH 1024            /* frames per sendmmsg (UIO_MAXIOV) */

/* A classic BPF socket filter on fd: refuse frames whose skb mark is
 * `mark`, take the rest.  0 or -errno. */
static int nmh_pkt_filter_mark(int fd, uint32_t mark)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_MARK),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mark, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
    };
    struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };

    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0 ? -errno : 0;
}

int nmh_pkt_rx_skip_mark(struct nmh_pkt_rx *rx, uint32_t mark)
{
    return nmh_pkt_filter_mark(rx->fd, mark);
}

int nmh_pkt_rx_open(struct nmh_pkt_rx *rx, int ifindex, uint32_t block_size, uint32_t block_nr,
                    int fanout_id, uint32_t skip_mark)
{
    struct tpacket_req3 req;
    struct sockaddr_ll sll;
    int version = TPACKET_V3, one = 1, e;

    memset(rx, 0, sizeof(*rx));
    rx->fd = -1;
    /* protocol 0: nothing is queued to the socket before bind() */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) < 0)
        goto fail;
    /* what the program sends comes back to nobody: only received frames */
    if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0)
        goto fail;
    if (skip_mark && (e = nmh_pkt_filter_mark(fd, skip_mark)) < 0) {
        errno = -e;
        goto fail;
    }
    memset(&req, 0, sizeof(req));
    req.tp_block_size = block_size;
    req.tp_block_nr = block_nr;
    req.tp_frame_size = 2048;
    req.tp_frame_nr = block_size / req.tp_frame_size * block_nr;
    req.tp_retire_blk_tov = 1;        /* ms: a partly filled block reaches us this late at most */
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
        goto fail;
    rx->map = mmap(NULL, (size_t)block_size * block_nr, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   fd, 0);
    if (rx->map == MAP_FAILED) {
        rx->map = NULL;
        goto fail;
    }
    rx->block_size = block_size;
    rx->block_nr = block_nr;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
        goto fail;
    if (fanout_id) {
        int arg = (fanout_id & 0xffff) | (PACKET_FANOUT_QM << 16);
        if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof(arg)) < 0)
            goto fail;
    }
    rx->fd = fd;
    return 0;
fail:
    e = errno;
    if (rx->map)
        munmap(rx->map, (size_t)block_size * block_nr);
    rx->map = NULL;
    close(fd);
    return -e;
}

void nmh_pkt_rx_close(struct nmh_pkt_rx *rx)
{
    if (rx->map)
        munmap(rx->map, (size_t)rx->block_size * rx->block_nr);
    if (rx->fd >= 0)
        close(rx->fd);
    rx->map = NULL;
    rx->fd = -1;
}

int64_t nmh_pkt_rx_drops(struct nmh_pkt_rx *rx)
{
    struct tpacket_stats_v3 st;
    socklen_t len = sizeof(st);

    if (getsockopt(rx->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) < 0)
        return -errno;
    return st.tp_drops;
}

static inline struct tpacket_block_desc *nmh_pkt_block(struct nmh_pkt_rx *rx)
{
    return (struct tpacket_block_desc *)(rx->map + (size_t)rx->block * rx->block_size);
}

/* Give the current block back to the kernel and move to the next. */
static inline void nmh_pkt_release(struct nmh_pkt_rx *rx)
{
    __atomic_store_n(&nmh_pkt_block(rx)->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    rx->block = rx->block + 1 == rx->block_nr ? 0 : rx->block + 1;
    rx->left = rx->next = 0;
}

/* The next frame of rx, or NULL when the kernel has handed over nothing more. */
static struct tpacket3_hdr *nmh_pkt_peek(struct nmh_pkt_rx *rx)
{
    for (;;) {
        struct tpacket_block_desc *b = nmh_pkt_block(rx);
        if (rx->next == 0) {        /* a block not started */
            if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
                return NULL;
            rx->left = b->hdr.bh1.num_pkts;
            rx->next = b->hdr.bh1.offset_to_first_pkt;
        }
        if (rx->left > 0)
            return (struct tpacket3_hdr *)((char *)b + rx->next);
        nmh_pkt_release(rx);
    }
}

static inline void nmh_pkt_take(struct nmh_pkt_rx *rx, struct tpacket3_hdr *h)
{
    rx->next += h->tp_next_offset;
    if (--rx->left == 0)
        nmh_pkt_release(rx);
}

int nmh_pkt_rx_ready(struct nmh_pkt_rx *rx)
{
    return nmh_pkt_peek(rx) != NULL;
}

uint32_t nmh_pkt_rx(struct nmh_tap_io *io, struct nmh_pkt_rx *rx, struct netmap_slot *slot, uint32_t n,
                    uint32_t tail, uint32_t room)
{
    io->error = 0;
    while (room > 0) {
        struct tpacket3_hdr *h = nmh_pkt_peek(rx);
        if (h == NULL) {
            io->error = EAGAIN;
            break;
        }
        uint32_t len = h->tp_snaplen;
        uint32_t used = len ? (len + io->bufsize - 1) / io->bufsize : 1;
        if (h->tp_snaplen < h->tp_len || used > NMH_PKT_MAX_FRAGS || used > n - 1) {
            io->drops++;            /* cut short by the ring, or longer than netmap's chains */
            nmh_pkt_take(rx, h);
            continue;
        }
        if (used > room)
            break;                  /* waits, whole, for the program to free slots */
        const char *src = (const char *)h + h->tp_mac;
        uint32_t k = tail, off = 0;
        for (uint32_t j = 0; j < used; j++) {
            struct netmap_slot *s = &slot[k];
            uint32_t chunk = len - off < io->bufsize ? len - off : io->bufsize;
            if (s->buf_idx < NMH_RESERVED || s->buf_idx >= io->objtotal) {
                io->error = EINVAL;
                return tail;
            }
            memcpy(io->bufbase + (size_t)s->buf_idx * io->bufsize, src + off, chunk);
            s->len = (uint16_t)chunk;
            s->flags = j + 1 < used ? NS_MOREFRAG : 0;
            off += chunk;
            k = k + 1 == n ? 0 : k + 1;
        }
        io->packets++;
        io->bytes += len;
        tail = k;
        room -= used;
        nmh_pkt_take(rx, h);
    }
    return tail;
}

int nmh_sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

int nmh_pkt_tx_open(int ifindex, int sndbuf)
{
    struct sockaddr_ll sll;
    int one = 1, e;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0)
        goto fail;
    if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0)
        goto fail;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = 0;             /* send only: no frame is queued to this socket */
    sll.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
        goto fail;
    return fd;
fail:
    e = errno;
    close(fd);
    return -e;
}

static inline int nmh_pkt_slot_ok(const struct nmh_tap_io *io, const struct netmap_slot *s)
{
    return s->buf_idx >= NMH_RESERVED && s->buf_idx < io->objtotal && s->len <= io->bufsize;
}

uint32_t nmh_pkt_tx(struct nmh_tap_io *io, int fd, struct netmap_slot *slot, uint32_t n,
                    uint32_t cur, uint32_t head)
{
    static __thread struct mmsghdr msgs[NMH_PKT_BATCH];
    static __thread struct iovec iov[NMH_PKT_BATCH];
    static __thread uint32_t ends[NMH_PKT_BATCH];      /* slot after each frame */
    static __thread uint32_t lens[NMH_PKT_BATCH];

    io->error = 0;
    while (cur != head) {
        /* 1. gather up to a batch of whole frames: [cur, ends[count-1]) */
        uint32_t count = 0, niov = 0, k = cur;
        while (k != head && count < NMH_PKT_BATCH) {
            uint32_t first = niov, j = k, len = 0;
            int bad = 0, complete = 0;
            do {
                struct netmap_slot *s = &slot[j];
                if (!nmh_pkt_slot_ok(io, s) || niov == NMH_PKT_BATCH || j - k >= NMH_PKT_MAX_FRAGS) {
                    bad = 1;
                } else {
                    iov[niov].iov_base = io->bufbase + (size_t)s->buf_idx * io->bufsize;
                    iov[niov++].iov_len = s->len;
                    len += s->len;
                }
                complete = !(s->flags & NS_MOREFRAG);
                j = j + 1 == n ? 0 : j + 1;
            } while (!complete && j != head);
            if (!complete)
                break;              /* head cuts the chain: wait for its end */
            if (bad && niov == NMH_PKT_BATCH && first > 0) {
                niov = first;       /* out of iovecs: this frame opens the next batch */
                break;
            }
            if (bad || len == 0) {
                niov = first;
                if (count == 0) {   /* nothing gathered yet: drop it and go on */
                    io->drops++;
                    cur = k = j;
                    continue;
                }
                break;              /* send what is gathered; the bad frame is dropped next round */
            }
            memset(&msgs[count].msg_hdr, 0, sizeof(msgs[count].msg_hdr));
            msgs[count].msg_hdr.msg_iov = &iov[first];
            msgs[count].msg_hdr.msg_iovlen = niov - first;
            lens[count] = len;
            ends[count++] = j;
            k = j;
        }
        if (count == 0)
            break;
        /* 2. send them; a frame the kernel refuses is dropped */
        uint32_t done = 0;
        while (done < count) {
            int r = sendmmsg(fd, &msgs[done], count - done, MSG_DONTWAIT);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    io->error = EAGAIN;
                    break;
                }
                io->last_error = errno;
                io->drops++;
                cur = ends[done++];
                continue;
            }
            for (int i = 0; i < r; i++) {
                io->packets++;
                io->bytes += lens[done + i];
            }
            done += (uint32_t)r;
            cur = ends[done - 1];
        }
        if (io->error)
            break;
    }
    return cur;
}

struct nmh_pkt_txq_priv {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work;    /* head moved, or stop */
    pthread_cond_t idle;    /* the thread caught up */
};

/* Progress a sync asked to hear of: published as the ring's tail (the
 * completion a NIC signals; a sync holding the ring publishes it itself),
 * the pollers C left waiting woken, and the eventfd written (Python's
 * pollers, if it armed it). */
static void nmh_pkt_txq_signal(struct nmh_pkt_txq *q)
{
    struct nmh_kring *k = __atomic_load_n(&q->kring, __ATOMIC_ACQUIRE);

    if (k != NULL) {
        if (nmh_kring_tryget(k) == 0) {
            if (k->driver != NULL && k->ring != NULL && !((struct nmh_pkt_ring *)k->driver)->gone) {
                nmh_tx_reclaim(k, nmh_pkt_txq_done(q));
                nmh_sync_finalize(k);
            }
            nmh_kring_put(k);
        }
        nmh_fast_notify(k);
    }
    eventfd_write(q->efd, 1);
}

static void nmh_pkt_txq_progress(struct nmh_pkt_txq *q, uint32_t done)
{
    __atomic_store_n(&q->done, done, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&q->want, 0, __ATOMIC_SEQ_CST))
        nmh_pkt_txq_signal(q);
}

static void *nmh_pkt_txq_run(void *arg)
{
    struct nmh_pkt_txq *q = arg;
    struct nmh_pkt_txq_priv *p = q->priv;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        /* wait for a head not seen yet: [done, head) may hold a chain
         * that head cut short, which only a new head can complete */
        while (!q->stop && q->head == q->taken) {
            q->busy = 0;
            pthread_cond_broadcast(&p->idle);
            pthread_cond_wait(&p->work, &p->lock);
        }
        if (q->stop)
            break;
        q->busy = 1;
        uint32_t head = q->taken = q->head, cur = q->done;
        struct netmap_slot *slot = q->slot;
        uint32_t n = q->n;
        pthread_mutex_unlock(&p->lock);
        while (cur != head) {
            uint32_t next = nmh_pkt_tx(&q->io, q->fd, slot, n, cur, head);
            if (next != cur)
                nmh_pkt_txq_progress(q, cur = next);
            if (q->io.error == EAGAIN) {
                struct pollfd pfd = { .fd = q->fd, .events = POLLOUT };
                poll(&pfd, 1, 10);
                if (__atomic_load_n(&q->stop, __ATOMIC_RELAXED))
                    break;
                continue;
            }
            if (next == cur)
                break;              /* a cut chain: wait for the rest */
        }
        pthread_mutex_lock(&p->lock);
    }
    q->busy = 0;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int nmh_pkt_txq_start(struct nmh_pkt_txq *q)
{
    struct nmh_pkt_txq_priv *p = calloc(1, sizeof(*p));
    int e;

    if (p == NULL)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->idle, NULL);
    q->priv = p;
    q->stop = q->busy = q->want = 0;
    q->taken = q->head;
    e = pthread_create(&p->thread, NULL, nmh_pkt_txq_run, q);
    if (e) {
        free(p);
        q->priv = NULL;
        return -e;
    }
    return 0;
}

void nmh_pkt_txq_push(struct nmh_pkt_txq *q, struct netmap_slot *slot, uint32_t n, uint32_t head)
{
    struct nmh_pkt_txq_priv *p = q->priv;

    pthread_mutex_lock(&p->lock);
    q->slot = slot;
    q->n = n;
    q->head = head;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

void nmh_pkt_txq_drain(struct nmh_pkt_txq *q)
{
    struct nmh_pkt_txq_priv *p = q->priv;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    /* the thread is idle once it waits with nothing new to take */
    while (!q->stop && (q->busy || q->head != q->taken))
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

void nmh_pkt_txq_reset(struct nmh_pkt_txq *q, uint32_t at)
{
    struct nmh_pkt_txq_priv *p = q->priv;

    nmh_pkt_txq_drain(q);
    pthread_mutex_lock(&p->lock);
    q->head = q->taken = at;
    __atomic_store_n(&q->done, at, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&p->lock);
}

void nmh_pkt_txq_want(struct nmh_pkt_txq *q, uint32_t seen)
{
    __atomic_store_n(&q->want, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&q->done, __ATOMIC_SEQ_CST) != seen && __atomic_exchange_n(&q->want, 0, __ATOMIC_SEQ_CST))
        nmh_pkt_txq_signal(q);
}

uint32_t nmh_pkt_txq_done(struct nmh_pkt_txq *q)
{
    return __atomic_load_n(&q->done, __ATOMIC_SEQ_CST);
}

void nmh_pkt_txq_stop(struct nmh_pkt_txq *q)
{
    struct nmh_pkt_txq_priv *p = q->priv;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    q->stop = 1;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->idle);
    free(p);
    q->priv = NULL;
}

int nmh_pkt_txsync(struct nmh_kring *k)
{
    struct nmh_pkt_ring *p = k->driver;
    struct nmh_pkt_txq *q = p->txq;
    uint32_t n = k->nkr_num_slots, done;
    int e;

    if (p->gone) {
        k->nr_hwcur = k->rhead;             /* nothing can leave any more */
        nmh_tx_reclaim(k, k->nr_hwcur);
        return ENXIO;
    }
    if (k->nr_hwcur != p->pushed) {          /* the core reset the ring */
        nmh_pkt_txq_reset(q, k->nr_hwcur);
        p->pushed = k->nr_hwcur;
    }
    if (k->rhead != k->nr_hwcur) {
        nmh_pkt_txq_push(q, k->ring->slot, n, k->rhead);
        k->nr_hwcur = p->pushed = k->rhead;
    }
    done = nmh_pkt_txq_done(q);
    nmh_tx_reclaim(k, done);
    if (done != k->nr_hwcur)
        nmh_pkt_txq_want(q, done);          /* frames in flight: hear of progress */
    e = q->io.last_error;
    if (e == ENXIO || e == ENODEV) {        /* the device went away under the thread */
        q->io.last_error = 0;
        __atomic_store_n(&k->driver_error, e, __ATOMIC_RELEASE);
    }
    k->stats_packets = q->io.packets;
    k->stats_bytes = q->io.bytes;
    k->stats_drops = q->io.drops;
    return 0;
}

int nmh_pkt_rxsync(struct nmh_kring *k)
{
    struct nmh_pkt_ring *p = k->driver;
    struct nmh_tap_io *io = &p->io;
    uint32_t n = k->nkr_num_slots, room;
    struct nmh_tap_io before = *io;

    k->nr_hwcur = k->rhead;
    if (p->gone)
        return ENXIO;
    room = (k->nr_hwcur + n - 1 - k->nr_hwtail) % n;
    k->nr_hwtail = nmh_pkt_rx(io, p->rx, k->ring->slot, n, k->nr_hwtail, room);
    if (io->error == EINVAL)
        k->stats_errors++;                  /* a free slot with a bad buffer: the program broke the ring */
    if (io->packets == before.packets && io->error == EAGAIN) {
        int e = nmh_sock_error(p->rx->fd);
        if (e)
            __atomic_store_n(&k->driver_error, e, __ATOMIC_RELEASE);
    }
    nmh_tap_io_count(k, io, &before);
    return 0;
}

static long nmh_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

int nmh_bpf_prog_load(const uint64_t *insns, uint32_t count, char *log, uint32_t log_size)
{
    union bpf_attr attr;
    static const char license[] = "GPL";

    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_SCHED_CLS;
    attr.insns = (uintptr_t)insns;
    attr.insn_cnt = count;
    attr.license = (uintptr_t)license;
    if (log && log_size) {
        attr.log_buf = (uintptr_t)log;
        attr.log_size = log_size;
        attr.log_level = 1;
    }
    memcpy(attr.prog_name, "nmfuse", 7);
    long fd = nmh_bpf(BPF_PROG_LOAD, &attr);   /* bpf fds are close-on-exec */
    return fd < 0 ? -errno : (int)fd;
}

int nmh_bpf_tcx_link(int prog_fd, int ifindex, uint32_t attach_type)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.link_create.prog_fd = prog_fd;
    attr.link_create.target_ifindex = ifindex;
    attr.link_create.attach_type = attach_type;
    long fd = nmh_bpf(BPF_LINK_CREATE, &attr);
    return fd < 0 ? -errno : (int)fd;
}

int nmh_bpf_tcx_count(int ifindex, uint32_t attach_type)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.query.target_fd = (uint32_t)ifindex;      /* target_ifindex for tcx */
    attr.query.attach_type = attach_type;
    if (nmh_bpf(BPF_PROG_QUERY, &attr) < 0)
        return -errno;
    return (int)attr.query.prog_cnt;
}
