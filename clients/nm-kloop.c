/*
 * nm-kloop: a pipe sender/receiver pair in CSB mode, synced by the device's
 * sync-kloop (NETMAP_REQ_SYNC_KLOOP_START), never by NIOCTXSYNC/NIOCRXSYNC.
 *
 * The sender registers the master end of pipe NAME, the receiver (a child
 * process) the slave end, both exclusive; each puts its rings in CSB mode
 * (NETMAP_REQ_OPT_CSB at REGISTER, or NETMAP_REQ_CSB_ENABLE after it with
 * -C) and runs START in a thread of its own, which blocks until STOP.
 * The main thread then moves frames through the CSB alone:
 *
 *     application                        kloop (in the device)
 *     ring->head/cur moved locally
 *     atok.cur, then atok.head  ----->   reads atok, syncs the ring,
 *     kick ioeventfd if ktoa             writes ktoa.hwcur, then hwtail
 *       .kern_need_kick          <-----  irqfd if atok.appl_need_kick
 *     ring->tail = ktoa.hwtail
 *
 * Every frame carries its sequence number and a pattern derived from it;
 * the receiver checks each one and the order.  Waiting is a busy loop
 * (sched_yield) by default, or with -e the eventfds option: one
 * ioeventfd/irqfd pair per bound ring, kicks only when the other side
 * asked for them.  -S sleep_us is START's sleep in busy-wait mode.
 *
 * Prints one line per side ("sent N" / "received N ok") and, with -j, a
 * JSON line with the receiver's rate; exits 0 when every frame arrived
 * intact and both STARTs returned 0 after STOP.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

#include "nm_port.h"

struct side {
    struct nm_port port;
    struct nm_csb_atok *atok;        /* one entry per bound ring, TX first */
    struct nm_csb_ktoa *ktoa;
    unsigned nrings;
    int ioeventfd[2], irqfd[2];      /* [0] the TX ring, [1] the RX ring */
    pthread_t thread;
    int start_errno;                 /* what START answered */
    uint32_t sleep_us;
    int eventfds;
};

struct config {
    const char *name;
    uint64_t count;
    size_t len;
    uint32_t sleep_us;
    int eventfds;
    int csb_enable;
    int json;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: nm-kloop [-p pipe=kl] [-n frames=1000000] [-l len=60] [-S sleep_us=0] [-e] [-C] [-j]\n"
            "  -e  eventfd notifications instead of busy waiting\n"
            "  -C  put the rings in CSB mode with CSB_ENABLE after REGISTER\n"
            "  -j  print a JSON summary line\n");
}

/* The CSB option in a request's chain. */
static void csb_option(struct nmreq_opt_csb *o, const struct side *s)
{
    memset(o, 0, sizeof(*o));
    o->nro_opt.nro_reqtype = NETMAP_REQ_OPT_CSB;
    o->nro_opt.nro_size = sizeof(*o);
    o->csb_atok = (uint64_t)(uintptr_t)s->atok;
    o->csb_ktoa = (uint64_t)(uintptr_t)s->ktoa;
}

static int ctrl(int fd, const char *name, uint16_t type, void *body, struct nmreq_option *opts)
{
    struct nmreq_header hdr;

    memset(&hdr, 0, sizeof(hdr));
    hdr.nr_version = NETMAP_API;
    hdr.nr_reqtype = type;
    snprintf(hdr.nr_name, sizeof(hdr.nr_name), "%s", name);
    hdr.nr_body = (uint64_t)(uintptr_t)body;
    hdr.nr_options = (uint64_t)(uintptr_t)opts;
    return ioctl(fd, NIOCCTRL, &hdr) < 0 ? -1 : 0;
}

/* Open, register in CSB mode (option or CSB_ENABLE), map. */
static int side_open(struct side *s, const char *name, const struct config *c)
{
    struct nmreq_opt_csb csb;
    size_t size = 2 * sizeof(struct nm_csb_atok);

    s->nrings = 2;  /* one TX and one RX ring: a pipe end's */
    if (posix_memalign((void **)&s->atok, 64, size) || posix_memalign((void **)&s->ktoa, 64, size))
        return -1;
    memset(s->atok, 0, size);
    memset(s->ktoa, 0, size);
    if (nmp_parse(&s->port, name) < 0)
        return -1;
    s->port.reg.nr_flags |= NR_EXCLUSIVE;
    s->port.fd = open(nm_device_path(), O_RDWR | O_CLOEXEC);
    if (s->port.fd < 0)
        return -1;
    csb_option(&csb, s);
    if (ctrl(s->port.fd, s->port.name, NETMAP_REQ_REGISTER, &s->port.reg,
             c->csb_enable ? NULL : &csb.nro_opt) < 0)
        return -1;
    if (c->csb_enable && ctrl(s->port.fd, s->port.name, NETMAP_REQ_CSB_ENABLE, NULL, &csb.nro_opt) < 0)
        return -1;
    if (csb.nro_opt.nro_status) {
        errno = (int)csb.nro_opt.nro_status;
        return -1;
    }
    return nmp_mmap(&s->port);
}

static void *kloop_thread(void *arg)
{
    struct side *s = arg;
    struct nmreq_sync_kloop_start start = { .sleep_us = s->sleep_us };
    struct {
        struct nmreq_opt_sync_kloop_eventfds h;
        struct nmreq_opt_sync_kloop_eventfd fds[2];
    } opt;
    struct nmreq_option *opts = NULL;

    if (s->eventfds) {
        memset(&opt, 0, sizeof(opt));
        opt.h.nro_opt.nro_reqtype = NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS;
        opt.h.nro_opt.nro_size = sizeof(opt);
        for (int i = 0; i < 2; i++) {
            opt.fds[i].ioeventfd = s->ioeventfd[i];
            opt.fds[i].irqfd = s->irqfd[i];
        }
        opts = &opt.h.nro_opt;
    }
    s->start_errno = ctrl(s->port.fd, s->port.name, NETMAP_REQ_SYNC_KLOOP_START, &start, opts) < 0 ? errno : 0;
    return NULL;
}

static int side_start(struct side *s, const struct config *c)
{
    s->sleep_us = c->sleep_us;
    s->eventfds = c->eventfds;
    for (int i = 0; i < 2; i++) {
        s->ioeventfd[i] = eventfd(0, EFD_CLOEXEC);
        s->irqfd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->ioeventfd[i] < 0 || s->irqfd[i] < 0)
            return -1;
    }
    s->start_errno = -1;
    errno = pthread_create(&s->thread, NULL, kloop_thread, s);
    return errno ? -1 : 0;
}

/* STOP from this thread (the START is another thread's), then wait for START. */
static int side_stop(struct side *s)
{
    if (ctrl(s->port.fd, s->port.name, NETMAP_REQ_SYNC_KLOOP_STOP, NULL, NULL) < 0)
        return -1;
    pthread_join(s->thread, NULL);
    if (s->start_errno) {
        errno = s->start_errno;
        return -1;
    }
    return 0;
}

/* The application's side of the CSB (netmap's nm_sync_kloop_appl_*). */
static void appl_write(struct side *s, unsigned i, uint32_t head, uint32_t cur)
{
    struct nm_csb_atok *a = &s->atok[i];

    __atomic_store_n(&a->cur, cur, __ATOMIC_RELAXED);
    __atomic_store_n(&a->head, head, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (s->eventfds && __atomic_load_n(&s->ktoa[i].kern_need_kick, __ATOMIC_ACQUIRE))
        eventfd_write(s->ioeventfd[i], 1);
}

static uint32_t appl_tail(struct side *s, unsigned i)
{
    return __atomic_load_n(&s->ktoa[i].hwtail, __ATOMIC_ACQUIRE);
}

/* Nothing to do on ring i until its tail moves past ``tail``: wait for it. */
static void appl_wait(struct side *s, unsigned i, uint32_t tail)
{
    if (!s->eventfds) {
        sched_yield();
        return;
    }
    __atomic_store_n(&s->atok[i].appl_need_kick, 1, __ATOMIC_SEQ_CST);
    if (appl_tail(s, i) == tail) {
        struct pollfd pfd = { .fd = s->irqfd[i], .events = POLLIN };
        eventfd_t v;

        poll(&pfd, 1, 100);
        eventfd_read(s->irqfd[i], &v);
    }
    __atomic_store_n(&s->atok[i].appl_need_kick, 0, __ATOMIC_RELAXED);
}

static void frame_fill(unsigned char *f, size_t len, uint64_t seq)
{
    memcpy(f, &seq, sizeof(seq));
    for (size_t k = sizeof(seq); k < len; k++)
        f[k] = (unsigned char)(seq * 7 + k);
}

static int frame_ok(const unsigned char *f, size_t len, uint64_t seq)
{
    uint64_t got;

    memcpy(&got, f, sizeof(got));
    if (got != seq)
        return 0;
    for (size_t k = sizeof(seq); k < len; k++)
        if (f[k] != (unsigned char)(seq * 7 + k))
            return 0;
    return 1;
}

static int send_all(struct side *s, const struct config *c)
{
    struct netmap_ring *ring = nmp_txring(&s->port, s->port.first_tx_ring);
    uint32_t head = ring->head;
    uint64_t seq = 0;

    while (seq < c->count && !*nmp_stop_flag()) {
        uint32_t tail = appl_tail(s, 0);
        if (head == tail) {
            appl_wait(s, 0, tail);
            continue;
        }
        while (head != tail && seq < c->count) {
            struct netmap_slot *slot = &ring->slot[head];
            frame_fill((unsigned char *)nmp_buf(&s->port, slot->buf_idx), c->len, seq++);
            slot->len = (uint16_t)c->len;
            head = nm_ring_next(ring, head);
        }
        ring->head = ring->cur = head;
        appl_write(s, 0, head, head);
    }
    /* wait until the kloop handed every slot to the pipe */
    while (__atomic_load_n(&s->ktoa[0].hwcur, __ATOMIC_ACQUIRE) != head && !*nmp_stop_flag())
        appl_wait(s, 0, appl_tail(s, 0));
    printf("sent %" PRIu64 "\n", seq);
    return seq == c->count ? 0 : -1;
}

static int receive_all(struct side *s, const struct config *c, double *seconds)
{
    struct netmap_ring *ring = nmp_rxring(&s->port, s->port.first_rx_ring);
    uint32_t head = ring->head;
    uint64_t seq = 0, bad = 0, t0 = 0;

    while (seq < c->count && !*nmp_stop_flag()) {
        uint32_t tail = appl_tail(s, 1);
        if (head == tail) {
            appl_wait(s, 1, tail);
            continue;
        }
        if (!t0)
            t0 = nmp_now_ns();
        while (head != tail) {
            struct netmap_slot *slot = &ring->slot[head];
            if (slot->len != c->len || !frame_ok((unsigned char *)nmp_buf(&s->port, slot->buf_idx), c->len, seq))
                bad++;
            seq++;
            head = nm_ring_next(ring, head);
        }
        ring->head = ring->cur = head;
        appl_write(s, 1, head, head);
    }
    *seconds = t0 ? (nmp_now_ns() - t0) / 1e9 : 0;
    printf("received %" PRIu64 " %s (%" PRIu64 " bad)\n", seq, bad ? "BAD" : "ok", bad);
    return seq == c->count && !bad ? 0 : -1;
}

static int run_side(int tx, const struct config *c, int ready_fd)
{
    struct side s;
    char name[80];
    double seconds = 0;
    int rv;

    memset(&s, 0, sizeof(s));
    s.port.fd = -1;
    snprintf(name, sizeof(name), "%s%c1", c->name, tx ? '{' : '}');
    if (side_open(&s, name, c) < 0 || side_start(&s, c) < 0) {
        fprintf(stderr, "nm-kloop: %s: %s\n", name, strerror(errno));
        return 1;
    }
    if (ready_fd >= 0) {  /* the receiver is bound: the sender may go */
        char b = 1;
        if (write(ready_fd, &b, 1) != 1)
            return 1;
        close(ready_fd);
    }
    rv = tx ? send_all(&s, c) : receive_all(&s, c, &seconds);
    if (side_stop(&s) < 0) {
        fprintf(stderr, "nm-kloop: %s: kloop: %s\n", name, strerror(errno));
        rv = -1;
    }
    if (!tx && c->json)
        printf("{\"frames\": %" PRIu64 ", \"seconds\": %.6f, \"fps\": %.0f, \"eventfds\": %d, \"ok\": %s}\n",
               c->count, seconds, seconds > 0 ? c->count / seconds : 0.0, c->eventfds, rv ? "false" : "true");
    fflush(stdout);
    nmp_close(&s.port);
    return rv ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct config c = { .name = "kl", .count = 1000000, .len = 60 };
    int opt, ready[2], status;
    pid_t child;

    while ((opt = getopt(argc, argv, "p:n:l:S:eCjh")) != -1) {
        switch (opt) {
        case 'p': c.name = optarg; break;
        case 'n': c.count = strtoull(optarg, NULL, 0); break;
        case 'l': c.len = strtoul(optarg, NULL, 0); break;
        case 'S': c.sleep_us = (uint32_t)strtoul(optarg, NULL, 0); break;
        case 'e': c.eventfds = 1; break;
        case 'C': c.csb_enable = 1; break;
        case 'j': c.json = 1; break;
        default: usage(); return 2;
        }
    }
    if (c.len < 16 || c.len > 2048) {
        usage();
        return 2;
    }
    nmp_catch_stop_signals();
    if (pipe(ready) < 0)
        return 1;
    child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        close(ready[0]);
        return run_side(0, &c, ready[1]);
    }
    close(ready[1]);
    char b;
    if (read(ready[0], &b, 1) != 1) {
        waitpid(child, &status, 0);
        fprintf(stderr, "nm-kloop: the receiver did not start\n");
        return 1;
    }
    int rv = run_side(1, &c, -1);
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        rv = 1;
    return rv;
}
