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
    uint64_t answered;      /* requests answered here */
};

/* A sync ioctl: 1 with *result = 0 (netmap returns 0 even after a reinit),
 * 0 (declined) for other commands, data, CSB, or a ring of that direction
 * whose sync is not C. */
int nmh_fast_ioctl(void *ctx, uint32_t cmd, uint32_t in_size, uint32_t out_size, int32_t *result);

/* Poll: syncs as netmap_poll does; 1 with *revents, 0 (declined) in CSB
 * mode or when a ring the poll would sync is not C. */
int nmh_fast_poll(void *ctx, uint32_t events, uint32_t *revents);

#endif /* NMFUSE_FAST_H */
