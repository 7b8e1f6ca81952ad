/* The C fast path of a bound file; see fast.h. */
#include <poll.h>
#include <unistd.h>

#include "netmap_abi.h"
#include "sync.h"
#include "tap.h"
#include "packet.h"
#include "fast.h"

#define WANT_IN (POLLIN | POLLRDNORM)
#define WANT_OUT (POLLOUT | POLLWRNORM)

typedef int (*nmh_notify_fn)(void *, uint64_t);

/* A ring a C sync moved: wake its pollers.  Armed, the handles in kh[]
 * are complete and are woken here, once (the kernel polls again, and a
 * poll that still waits arms the ring again); while Python is busy with
 * the ring, or with too many pollers, the ring is flagged and the
 * binding's waker (Python, under the core lock) wakes them. */
static void moved(const struct nmh_fast_binding *b, struct nmh_kring *k)
{
    uint64_t one = 1;
    uint32_t w = __atomic_load_n(&k->waiting, __ATOMIC_SEQ_CST);

    if (w == NMH_WAIT_NONE)
        return;
    if (w == NMH_WAIT_ARMED && b->notify &&
        __atomic_compare_exchange_n(&k->waiting, &w, NMH_WAIT_NONE, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        uint32_t n = __atomic_load_n(&k->nkh, __ATOMIC_ACQUIRE);
        if (n <= NMH_KH) {
            for (uint32_t i = 0; i < n; i++)
                ((nmh_notify_fn)b->notify)(b->notify_ctx, k->kh[i]);
            return;
        }
    }
    /* busy, changed meanwhile, or too many pollers: the waker */
    if (b->wake_fd >= 0) {
        __atomic_store_n(&k->wake, 1, __ATOMIC_SEQ_CST);
        if (write(b->wake_fd, &one, sizeof one) < 0) {
            /* an eventfd write fails only at its counter's maximum: already signalled */
        }
    }
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
    if (k->c_sync == NMH_SYNC_PACKET)   /* an error pending is for the driver (Python) to judge */
        return k->driver != NULL && !__atomic_load_n(&((struct nmh_pkt_ring *)k->driver)->error, __ATOMIC_ACQUIRE);
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

int nmh_fast_poll(void *ctx, uint32_t events, uint32_t *revents)
{
    struct nmh_fast_binding *b = ctx;
    uint32_t want_tx = events & WANT_OUT, want_rx = events & WANT_IN, r = 0;

    if (b->csb || !poll_tx_c(b, want_tx) || (want_rx && !all_c(b->rx, b->nrx)))
        return 0;
    if (b->txpoll || want_tx) {
        for (uint32_t i = 0; i < b->ntx; i++) {
            struct nmh_kring *k = b->tx[i];
            if (!is_c(k) || (!want_tx && k->ring->head == k->nr_hwcur))
                continue;    /* not C: nothing was handed over when we looked */
            if (!txsync_ring(b, k))
                r |= POLLERR;
            if (k->rcur != k->rtail) {
                r |= want_tx;
                want_tx = 0;
            }
        }
    }
    if (want_rx) {
        for (uint32_t i = 0; i < b->nrx; i++) {
            struct nmh_kring *k = b->rx[i];
            if (!rxsync_ring(b, k))
                r |= POLLERR;
            if (k->rcur != k->rtail)
                r |= want_rx;
        }
    }
    *revents = r;
    __atomic_add_fetch(&b->answered, 1, __ATOMIC_RELAXED);
    return 1;
}
