/*
 * The C fast path of a bound file: NIOCTXSYNC, NIOCRXSYNC and poll of a
 * binding, when every ring the request syncs has its driver's sync in C
 * (nmh_kring.c_sync; e.g. a generic port's hardware rings but not its host
 * rings), run without Python on the request worker's thread.  The device layer
 * calls these through its request hooks (csrc/hook.h): nmh_fast_ioctl and
 * nmh_fast_poll have the hooks' signatures, and their context is a
 * struct nmh_fast_binding.  The rules are those of sync.c, the order that
 * of nmfuse/netmap/sync.py (netmap_ioctl's sync case, netmap_poll).
 *
 * Each ring is taken with nmh_kring_tryget for its sync; a ring another
 * sync holds is skipped (netmap's busy ring: the ioctl still returns 0).
 * Whatever the path cannot serve it declines, and Python answers.
 */
#ifndef NMFUSE_FAST_H
#define NMFUSE_FAST_H

#include <stdint.h>

/* One bound file: its rings in each direction (TX, RX). */
struct nmh_fast_binding {
    struct nmh_kring **tx;
    struct nmh_kring **rx;
    uint32_t ntx, nrx;
    uint32_t objtotal;      /* buffers slots may hold */
    uint32_t bufsize;
    uint32_t txpoll;        /* poll syncs TX rings even when not asked (no NR_NO_TX_POLL) */
    uint32_t csb;           /* CSB mode: syncs are refused, by Python */
    int32_t wake_fd;        /* eventfd: a ring with pollers moved (see nmh_kring.wake), or -1 */
    void *notify;           /* int (*)(void *, uint64_t kh): wake pollers (the device layer's), or NULL */
    void *notify_ctx;
    void *waiter;           /* struct nmh_fast_waiter * for rings with a wait_fd, or NULL */
    uint64_t answered;      /* requests answered here */
};

/* Waiting in C.  A poll that finds nothing ready adds its handle to the
 * rings it waits on (nmh_kring_wait_add) and is answered at once; what
 * moves a ring wakes it: a C sync (a pipe's peer), or, for a ring whose
 * driver signals on an fd (nmh_kring.wait_fd), this thread, which waits
 * on all such fds in one epoll and wakes the ring's pollers itself (the
 * fd is level-triggered and the ring's sync drains it: a socket), or the
 * driver's own thread through nmh_fast_notify (nmh_kring.c_notify). */
struct nmh_fast_waiter {
    void *notify;           /* as in nmh_fast_binding */
    void *notify_ctx;
    int32_t wake_fd;        /* the waker's eventfd (pollers C cannot wake) */
    int32_t epfd;
    uint32_t stopped;       /* nmh_fast_notify does nothing any more */
    void *priv;             /* the thread, its lock, the rings watched */
};

/* A driver moved ring k outside a sync (a completion, netmap's
 * nm_notify from an interrupt): wake the pollers C left waiting on it,
 * from the driver's own thread (nothing without k->waiter). */
void nmh_fast_notify(struct nmh_kring *k);

/* Start / stop the thread (stop: no wake-up is written after it returns). */
int nmh_fast_waiter_start(struct nmh_fast_waiter *w);
void nmh_fast_waiter_stop(struct nmh_fast_waiter *w);

/* Watch k->wait_fd (disarmed until a poll waits); unwatch before the fd
 * closes or the kring goes: returns once the thread no longer uses k. */
int nmh_fast_watch(struct nmh_fast_waiter *w, struct nmh_kring *k);
void nmh_fast_unwatch(struct nmh_fast_waiter *w, struct nmh_kring *k);

/* A sync ioctl: 1 with *result = 0 (netmap returns 0 even after a reinit),
 * 0 (declined) for other commands, data, CSB, or a ring of that direction
 * whose sync is not C. */
int nmh_fast_ioctl(void *ctx, uint32_t cmd, uint32_t in_size, uint32_t out_size, int32_t *result);

/* Poll: syncs as netmap_poll does; 1 with *revents, 0 (declined) in CSB
 * mode or when a ring the poll would sync is not C.  With nothing ready
 * and kh != 0 (the caller wants a wake-up) it waits in C when every ring
 * to wait on can (a C sync or the waiter moves it), else declines. */
int nmh_fast_poll(void *ctx, uint32_t events, uint64_t kh, uint32_t *revents);

#endif /* NMFUSE_FAST_H */
