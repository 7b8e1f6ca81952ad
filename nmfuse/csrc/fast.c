/* The C fast path of a bound file; see fast.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "netmap_abi.h"
#include "sync.h"
#include "tap.h"
#include "packet.h"
#include "vale.h"
#include "fast.h"

#define WANT_IN (POLLIN | POLLRDNORM)
#define WANT_OUT (POLLOUT | POLLWRNORM)

typedef int (*nmh_notify_fn)(void *, uint64_t);

/* Leave ring k to the waker (FastWaker.wake_flagged, under the core lock):
 * flag it and signal the waker's eventfd. */
static void flag_ring(int wake_fd, struct nmh_kring *k)
{
    uint64_t one = 1;

    __atomic_store_n(&k->wake, 1, __ATOMIC_SEQ_CST);
    if (wake_fd >= 0 && write(wake_fd, &one, sizeof one) < 0) {
        /* an eventfd write fails only at its counter's maximum: already signalled */
    }
}

/* A ring a C sync moved: wake its pollers.  Armed, the handles in kh[]
 * are complete and are woken here, once (the kernel polls again, and a
 * poll that still waits arms the ring again); while Python is busy with
 * the ring, or with too many pollers, the ring is flagged and the
 * binding's waker (Python, under the core lock) wakes them. */
static void wake_ring(void *notify, void *notify_ctx, int wake_fd, struct nmh_kring *k)
{
    uint32_t w = __atomic_load_n(&k->waiting, __ATOMIC_SEQ_CST);

    if (w == NMH_WAIT_NONE)
        return;
    if (w == NMH_WAIT_ARMED && notify &&
        __atomic_compare_exchange_n(&k->waiting, &w, NMH_WAIT_NONE, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        uint32_t n = __atomic_load_n(&k->nkh, __ATOMIC_ACQUIRE);
        if (n <= NMH_KH) {
            for (uint32_t i = 0; i < n; i++)
                ((nmh_notify_fn)notify)(notify_ctx, k->kh[i]);
            return;
        }
    }
    /* busy, being armed, changed meanwhile, or too many pollers: the waker */
    if (wake_fd >= 0)
        flag_ring(wake_fd, k);
}

static void moved(const struct nmh_fast_binding *b, struct nmh_kring *k)
{
    wake_ring(b->notify, b->notify_ctx, b->wake_fd, k);
}

/* A destination ring a VALE flush filled (under the switch's lock): its
 * pollers wake from here when its notify is the plain wake-up; else (the
 * port came to need Python after nmh_vale_tx_c looked) the waker runs the
 * notify, which pulls the new hwtail itself. */
static void vale_moved(void *ctx, struct nmh_kring *k)
{
    const struct nmh_fast_binding *b = ctx;

    if (__atomic_load_n(&k->c_sync, __ATOMIC_RELAXED) == NMH_SYNC_VALE)
        moved(b, k);
    else
        flag_ring(b->wake_fd, k);   /* its notify is Python's (a monitor or a bwrap took it over) */
}

/* A pipe sync about to hand slots to its peer (frames, or room) wakes the
 * peer's pollers before its per-slot work when they sleep on another CPU:
 * a wake-up across CPUs takes tens of microseconds on these machines, and
 * started first it overlaps the checks and copies of the whole batch.  A
 * poller that looks before the slots are handed over finds nothing, waits
 * again and is woken by moved() after them.  On this CPU the early wake
 * would only let the peer take the CPU from the work it waits for. */
static void pipe_wake_early(const struct nmh_fast_binding *b, struct nmh_kring *k)
{
    struct nmh_kring *peer = k->peer;

    if (k->c_sync != NMH_SYNC_PIPE || k->ring->head == k->nr_hwcur ||
        __atomic_load_n(&peer->waiting, __ATOMIC_SEQ_CST) != NMH_WAIT_ARMED)
        return;
    uint32_t cpu = __atomic_load_n(&peer->wait_cpu, __ATOMIC_RELAXED);
    if (cpu != NMH_CPU_UNKNOWN && cpu != (uint32_t)sched_getcpu())
        moved(b, peer);
}

/* The driver's per-slot work, by nmh_kring.c_sync. */
static int driver_sync(const struct nmh_fast_binding *b, struct nmh_kring *k)
{
    switch (k->c_sync) {
    case NMH_SYNC_NULL:
        return 0;
    case NMH_SYNC_PIPE:
        if (k->tx ? nmh_pipe_txsync(k) : nmh_pipe_rxsync(k))
            moved(b, k->peer);
        return 0;
    case NMH_SYNC_PACKET:
        return (k->tx ? nmh_pkt_txsync(k) : nmh_pkt_rxsync(k)) ? -1 : 0;
    case NMH_SYNC_TAP:
        return k->tx && nmh_tap_txsync(k) == 0 ? 0 : -1;
    case NMH_SYNC_VALE:
        if (k->tx)
            nmh_vale_txsync(k, k->driver, vale_moved, (void *)b, NULL);
        else
            nmh_vale_rxsync(k, k->driver);
        return 0;
    default:
        return -1;
    }
}

static int is_c(const struct nmh_kring *k)
{
    if (k->c_sync == NMH_SYNC_PYTHON || k->ring == NULL)
        return 0;
    if (k->c_sync == NMH_SYNC_PIPE)
        return k->peer != NULL && k->peer->ring != NULL && k->peer->c_sync != NMH_SYNC_PYTHON;
    if (k->c_sync == NMH_SYNC_PACKET || k->c_sync == NMH_SYNC_TAP)   /* an event pending is Python's */
        return k->driver != NULL && !__atomic_load_n(&k->driver_error, __ATOMIC_ACQUIRE);
    if (k->c_sync == NMH_SYNC_VALE)     /* a switch with a port that needs Python is Python's */
        return k->driver != NULL && (!k->tx || nmh_vale_tx_c(k));
    return 1;
}

static int all_c(struct nmh_kring **kr, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!is_c(kr[i]))
            return 0;
    return 1;
}

/* The TX rings a poll syncs (all when it asks for room, else those with
 * frames handed over) have C syncs. */
static int poll_tx_c(const struct nmh_fast_binding *b, uint32_t want_tx)
{
    if (!b->txpoll && !want_tx)
        return 1;
    for (uint32_t i = 0; i < b->ntx; i++) {
        struct nmh_kring *k = b->tx[i];
        if (!is_c(k) && (want_tx || k->ring == NULL || k->ring->head != k->nr_hwcur))
            return 0;
    }
    return 1;
}

/* One TX ring (sync.py txsync_ring): 1 synced or busy, 0 after a reinit. */
static int txsync_ring(const struct nmh_fast_binding *b, struct nmh_kring *k)
{
    int ok = 0;

    if (nmh_kring_tryget(k) < 0)
        return 1;
    pipe_wake_early(b, k);
    if (nmh_txsync_begin(k, k->ring->head, k->ring->cur, b->objtotal, b->bufsize) == 0 && driver_sync(b, k) == 0) {
        nmh_sync_finalize(k);
        ok = 1;
    }
    nmh_kring_put(k);
    return ok;
}

/* One RX ring (sync.py rxsync_ring): synced even after a reinit. */
static int rxsync_ring(const struct nmh_fast_binding *b, struct nmh_kring *k)
{
    int ok = 1;

    if (nmh_kring_tryget(k) < 0)
        return 1;
    pipe_wake_early(b, k);
    if (nmh_rxsync_begin(k, k->ring->head, k->ring->cur, b->objtotal, b->bufsize) < 0)
        ok = 0;
    if (driver_sync(b, k) == 0)
        nmh_sync_finalize(k);
    else
        ok = 0;
    nmh_ring_timestamp(k, 0);
    nmh_kring_put(k);
    return ok;
}

int nmh_fast_ioctl(void *ctx, uint32_t cmd, uint32_t in_size, uint32_t out_size, int32_t *result)
{
    struct nmh_fast_binding *b = ctx;

    if (in_size || out_size || b->csb)
        return 0;
    if (cmd == NIOCTXSYNC) {
        if (!all_c(b->tx, b->ntx))
            return 0;
        for (uint32_t i = 0; i < b->ntx; i++)
            txsync_ring(b, b->tx[i]);
    } else if (cmd == NIOCRXSYNC) {
        if (!all_c(b->rx, b->nrx))
            return 0;
        for (uint32_t i = 0; i < b->nrx; i++)
            rxsync_ring(b, b->rx[i]);
    } else {
        return 0;
    }
    *result = 0;
    __atomic_add_fetch(&b->answered, 1, __ATOMIC_RELAXED);
    return 1;
}

/* The syncs of netmap_poll; clears *want_tx / *want_rx once satisfied. */
static uint32_t poll_syncs(const struct nmh_fast_binding *b, uint32_t *want_tx, uint32_t *want_rx)
{
    uint32_t r = 0;

    if (b->txpoll || *want_tx) {
        for (uint32_t i = 0; i < b->ntx; i++) {
            struct nmh_kring *k = b->tx[i];
            if (!is_c(k) || (!*want_tx && k->ring->head == k->nr_hwcur))
                continue;    /* not C: nothing was handed over when we looked */
            if (!txsync_ring(b, k))
                r |= POLLERR;
            if (k->rcur != k->rtail) {
                r |= *want_tx;
                *want_tx = 0;
            }
        }
    }
    if (*want_rx) {
        for (uint32_t i = 0; i < b->nrx; i++) {
            struct nmh_kring *k = b->rx[i];
            if (!rxsync_ring(b, k))
                r |= POLLERR;
            if (k->rcur != k->rtail)
                r |= *want_rx;
        }
        if (r & WANT_IN)
            *want_rx = 0;
    }
    return r;
}

static int waiter_arm(struct nmh_fast_waiter *w, struct nmh_kring *k);

/* Whether something in C wakes ring k when it moves. */
static int can_wait(const struct nmh_fast_binding *b, const struct nmh_kring *k)
{
    if (!is_c(k))
        return 0;
    if (k->wait_fd >= 0)                /* the waiter's epoll */
        return b->waiter != NULL;
    if (k->c_notify)                    /* the driver's thread */
        return k->waiter != NULL;
    /* null ports never move; a pipe moves in its peer's sync (moved()); a
     * TAP TX ring is reclaimed in its sync (it waits in Python only with
     * frames pending, driver_error EAGAIN); a VALE RX ring moves in a
     * flush, which wakes it (vale_moved() in C, the notify in Python), and
     * a VALE TX ring gets all its room back in its own sync */
    return k->c_sync == NMH_SYNC_NULL || k->c_sync == NMH_SYNC_PIPE || k->c_sync == NMH_SYNC_TAP ||
           k->c_sync == NMH_SYNC_VALE;
}

/* Leave kh on rings kr[0..n) (netmap_poll's selrecord): 1, or 0 when a
 * ring cannot wait in C (Python then arms it; a handle left on another
 * ring only costs a spare wake-up). */
static int wait_here(const struct nmh_fast_binding *b, struct nmh_kring **kr, uint32_t n, uint64_t kh)
{
    for (uint32_t i = 0; i < n; i++) {
        struct nmh_kring *k = kr[i];
        if (!can_wait(b, k))
            return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct nmh_kring *k = kr[i];
        int ok;
        /* held, so that the driver cannot take the fd away meanwhile */
        if (nmh_kring_tryget(k) < 0)
            return 0;
        ok = nmh_kring_wait_add(k, kh) == 0 && (k->wait_fd < 0 || waiter_arm(b->waiter, k) == 0);
        nmh_kring_put(k);
        if (!ok)
            return 0;
    }
    return 1;
}

int nmh_fast_poll(void *ctx, uint32_t events, uint64_t kh, uint32_t *revents)
{
    struct nmh_fast_binding *b = ctx;
    uint32_t want_tx = events & WANT_OUT, want_rx = events & WANT_IN, r;

    if (b->csb || !poll_tx_c(b, want_tx) || (want_rx && !all_c(b->rx, b->nrx)))
        return 0;
    r = poll_syncs(b, &want_tx, &want_rx);
    if (r == 0 && kh && (want_tx || want_rx)) {
        if ((want_tx && !wait_here(b, b->tx, b->ntx, kh)) || (want_rx && !wait_here(b, b->rx, b->nrx, kh)))
            return 0;
        /* armed: what moved the rings before it saw no handle, so look again */
        r = poll_syncs(b, &want_tx, &want_rx);
    }
    *revents = r;
    __atomic_add_fetch(&b->answered, 1, __ATOMIC_RELAXED);
    return 1;
}

/* ---- the waiter thread ---- */

#define WATCH_MAX 1024

struct waiter_priv {
    pthread_t thread;
    pthread_mutex_t lock;           /* the thread holds it while it uses a ring */
    int stop_fd;
    uint32_t n;
    struct nmh_kring *watched[WATCH_MAX];
};

static int is_watched(const struct waiter_priv *p, const struct nmh_kring *k)
{
    for (uint32_t i = 0; i < p->n; i++)
        if (p->watched[i] == k)
            return 1;
    return 0;
}

/* k's fd fired.  A generic RX ring takes in what its socket holds first
 * (as a NIC fills its descriptors before the interrupt: kernel-owned
 * slots and hwtail only, the user's tail moves at the next sync), and
 * while the ring has room it keeps the socket armed, so frames are copied
 * here while the program works on the previous ones; then the pollers
 * wake. */
static void waiter_fired(struct nmh_fast_waiter *w, struct nmh_kring *k)
{
    if (!k->tx && k->c_sync == NMH_SYNC_PACKET && nmh_kring_tryget(k) == 0) {
        uint32_t n = k->nkr_num_slots;
        if (k->driver != NULL && k->ring != NULL && nmh_pkt_rxsync(k) == 0 &&
            (k->nr_hwtail + 1) % n != k->nr_hwcur)
            waiter_arm(w, k);
        nmh_kring_put(k);
    }
    wake_ring(w->notify, w->notify_ctx, w->wake_fd, k);
}

static void *waiter_run(void *arg)
{
    struct nmh_fast_waiter *w = arg;
    struct waiter_priv *p = w->priv;
    struct epoll_event ev[32];

    for (;;) {
        int n = epoll_wait(w->epfd, ev, 32, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        pthread_mutex_lock(&p->lock);
        for (int i = 0; i < n; i++) {
            struct nmh_kring *k = ev[i].data.ptr;
            if (k == NULL) {        /* stop_fd */
                pthread_mutex_unlock(&p->lock);
                return NULL;
            }
            if (is_watched(p, k))
                waiter_fired(w, k);
        }
        pthread_mutex_unlock(&p->lock);
    }
}

int nmh_fast_waiter_start(struct nmh_fast_waiter *w)
{
    struct waiter_priv *p = calloc(1, sizeof(*p));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    int e;

    if (p == NULL)
        return -ENOMEM;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->epfd < 0 || p->stop_fd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, p->stop_fd, &ev) < 0) {
        e = -errno;
        goto fail;
    }
    pthread_mutex_init(&p->lock, NULL);
    w->priv = p;
    e = -pthread_create(&p->thread, NULL, waiter_run, w);
    if (e == 0)
        return 0;
    pthread_mutex_destroy(&p->lock);
fail:
    if (w->epfd >= 0)
        close(w->epfd);
    if (p->stop_fd >= 0)
        close(p->stop_fd);
    free(p);
    w->priv = NULL;
    w->epfd = -1;
    return e;
}

void nmh_fast_notify(struct nmh_kring *k)
{
    struct nmh_fast_waiter *w = k->waiter;

    if (w != NULL && !__atomic_load_n(&w->stopped, __ATOMIC_ACQUIRE))
        wake_ring(w->notify, w->notify_ctx, w->wake_fd, k);
}

void nmh_fast_waiter_stop(struct nmh_fast_waiter *w)
{
    struct waiter_priv *p = w->priv;

    __atomic_store_n(&w->stopped, 1, __ATOMIC_RELEASE);
    if (p == NULL)
        return;
    eventfd_write(p->stop_fd, 1);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->lock);
    close(p->stop_fd);
    close(w->epfd);
    free(p);
    w->priv = NULL;
    w->epfd = -1;
}

int nmh_fast_watch(struct nmh_fast_waiter *w, struct nmh_kring *k)
{
    struct waiter_priv *p = w->priv;
    struct epoll_event ev = {.events = EPOLLONESHOT, .data.ptr = k};
    int e = 0;

    if (p == NULL || k->wait_fd < 0)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    if (p->n == WATCH_MAX)
        e = -ENOSPC;
    else if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, k->wait_fd, &ev) < 0)
        e = -errno;
    else {
        p->watched[p->n++] = k;
        __atomic_store_n(&k->watched, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&p->lock);
    return e;
}

void nmh_fast_unwatch(struct nmh_fast_waiter *w, struct nmh_kring *k)
{
    struct waiter_priv *p = w->priv;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; i < p->n; i++) {
        if (p->watched[i] == k) {
            p->watched[i] = p->watched[--p->n];
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, k->wait_fd, NULL);
            break;
        }
    }
    __atomic_store_n(&k->watched, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&p->lock);
}

static int waiter_arm(struct nmh_fast_waiter *w, struct nmh_kring *k)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = k};

    if (!__atomic_load_n(&k->watched, __ATOMIC_ACQUIRE))
        return -1;
    return epoll_ctl(w->epfd, EPOLL_CTL_MOD, k->wait_fd, &ev);
}
