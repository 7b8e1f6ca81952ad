/* The sync rules; see sync.h for the contracts and kring.py for the
 * picture of who owns which slots. */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/time.h>

#include "netmap_abi.h"
#include "pool.h"
#include "rings.h"
#include "sync.h"

void nmh_kring_reset(struct nmh_kring *k)
{
    k->nr_hwcur = k->rhead = k->rcur = 0;
    /* netmap keeps one slot empty: a TX ring starts with n-1 free */
    k->nr_hwtail = k->rtail = k->tx ? k->nkr_num_slots - 1 : 0;
}

int nmh_in_window(uint32_t head, uint32_t cur, uint32_t lo, uint32_t hi, uint32_t n)
{
    if (head >= n || cur >= n)
        return 0;
    if (hi >= lo)
        return lo <= head && head <= cur && cur <= hi;
    if (head > hi && head < lo)       /* head in the kernel's part */
        return 0;
    if (head <= hi)                   /* head wrapped: cur in [head, hi] */
        return head <= cur && cur <= hi;
    return !(cur > hi && cur < head); /* head before the wrap: cur outside (hi, head) */
}

uint32_t nmh_txsync_prologue(struct nmh_kring *k, uint32_t head, uint32_t cur)
{
    uint32_t n = k->nkr_num_slots;

    if (k->nr_hwcur >= n || k->rhead >= n || k->rtail >= n || k->nr_hwtail >= n)
        return n;
    if (!nmh_in_window(head, cur, k->rhead, k->rtail, n))
        return n;
    if (!k->csb && k->ring->tail != k->rtail)
        k->ring->tail = k->rtail;
    k->rhead = head;
    k->rcur = cur;
    return head;
}

uint32_t nmh_rxsync_prologue(struct nmh_kring *k, uint32_t head, uint32_t cur)
{
    uint32_t n = k->nkr_num_slots;

    k->rcur = cur;
    k->rhead = head;
    if (k->nr_hwcur >= n || k->nr_hwtail >= n)
        return n;
    if (!nmh_in_window(head, cur, k->nr_hwcur, k->nr_hwtail, n))
        return n;
    if (!k->csb && k->ring->tail != k->rtail)
        k->ring->tail = k->rtail;
    return head;
}

void nmh_tx_reclaim(struct nmh_kring *k, uint32_t upto)
{
    k->nr_hwtail = upto ? upto - 1 : k->nkr_num_slots - 1;
}

void nmh_sync_finalize(struct nmh_kring *k)
{
    k->ring->tail = k->rtail = k->nr_hwtail;
}

int nmh_ring_reinit(struct nmh_kring *k, uint32_t objtotal, uint32_t bufsize)
{
    struct netmap_ring *ring = k->ring;
    uint32_t lim = k->nkr_num_slots - 1;
    int errors = (ring->cur > lim) + (ring->head > lim) + (ring->tail > lim);

    for (uint32_t i = 0; i <= lim; i++) {
        struct netmap_slot *s = &ring->slot[i];
        if (s->buf_idx < NMH_RESERVED || s->buf_idx >= objtotal) {
            s->buf_idx = 0;
            s->len = 0;
        } else if (s->len > bufsize) {
            s->len = 0;
        }
    }
    k->stats_errors++;
    /* netmap resets only out-of-range pointers; a refused batch must never
     * be half-sent later, so we always return to the kernel's view */
    ring->head = ring->cur = k->rhead = k->rcur = k->nr_hwcur;
    ring->tail = k->rtail = k->nr_hwtail;
    return errors != 0;
}

/* Slots [first, rhead) are the ones the user just handed over. */
static int handed_over_ok(const struct nmh_kring *k, uint32_t first, uint32_t objtotal, uint32_t bufsize)
{
    uint32_t n = k->nkr_num_slots;
    uint32_t count = k->rhead >= first ? k->rhead - first : k->rhead + n - first;

    return count == 0 || nmh_slots_check(k->ring->slot, n, first, count, objtotal, bufsize) < 0;
}

int nmh_txsync_begin(struct nmh_kring *k, uint32_t head, uint32_t cur, uint32_t objtotal, uint32_t bufsize)
{
    uint32_t first = k->rhead;

    if (nmh_txsync_prologue(k, head, cur) >= k->nkr_num_slots || !handed_over_ok(k, first, objtotal, bufsize)) {
        nmh_ring_reinit(k, objtotal, bufsize);
        return -1;
    }
    return 0;
}

int nmh_rxsync_begin(struct nmh_kring *k, uint32_t head, uint32_t cur, uint32_t objtotal, uint32_t bufsize)
{
    if (nmh_rxsync_prologue(k, head, cur) >= k->nkr_num_slots ||
        !handed_over_ok(k, k->nr_hwcur, objtotal, bufsize)) {
        nmh_ring_reinit(k, objtotal, bufsize);
        return -1;
    }
    return 0;
}

void nmh_ring_timestamp(struct nmh_kring *k, int no_timestamp)
{
    struct timeval now;

    if (no_timestamp && !(k->ring->flags & NR_TIMESTAMP))
        return;
    gettimeofday(&now, NULL);
    k->ring->ts.tv_sec = now.tv_sec;
    k->ring->ts.tv_usec = now.tv_usec;
}

static uint32_t handed_over(struct nmh_kring *k)
{
    uint32_t n = k->nkr_num_slots;

    k->nr_hwtail = __atomic_load_n(&k->pipe_tail, __ATOMIC_ACQUIRE);
    return k->rhead >= k->nr_hwcur ? k->rhead - k->nr_hwcur : k->rhead + n - k->nr_hwcur;
}

int nmh_pipe_txsync(struct nmh_kring *k)
{
    struct nmh_kring *rx = k->peer;
    uint32_t n = k->nkr_num_slots, m = handed_over(k), end;

    if (m == 0)
        return 0;
    end = nmh_pipe_forward(k->ring->slot, rx->ring->slot, n, k->nr_hwcur, m, rx->offset_mask);
    k->nr_hwcur = k->rhead;
    k->stats_packets += m;
    if (end >= n)
        return 0;       /* no complete frame yet */
    __atomic_store_n(&rx->pipe_tail, end, __ATOMIC_SEQ_CST);
    return 1;
}

int nmh_pipe_rxsync(struct nmh_kring *k)
{
    struct nmh_kring *tx = k->peer;
    uint32_t n = k->nkr_num_slots, m = handed_over(k);

    if (m == 0)
        return 0;
    nmh_pipe_release(k->ring->slot, tx->ring->slot, n, k->nr_hwcur, m);
    __atomic_store_n(&tx->pipe_tail, k->rhead == 0 ? n - 1 : k->rhead - 1, __ATOMIC_SEQ_CST);
    k->nr_hwcur = k->rhead;
    k->stats_packets += m;
    return 1;
}

int nmh_kring_tryget(struct nmh_kring *k)
{
    uint32_t free_ = 0;

    return __atomic_compare_exchange_n(&k->nr_busy, &free_, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED) ? 0 : -1;
}

void nmh_kring_put(struct nmh_kring *k)
{
    __atomic_store_n(&k->nr_busy, 0, __ATOMIC_RELEASE);
}

int nmh_kring_wait_add(struct nmh_kring *k, uint64_t kh)
{
    uint32_t w = __atomic_load_n(&k->waiting, __ATOMIC_SEQ_CST);

    do {
        if (w != NMH_WAIT_NONE && w != NMH_WAIT_ARMED)
            return -1;
    } while (!__atomic_compare_exchange_n(&k->waiting, &w, NMH_WAIT_CBUSY, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    uint32_t cpu = (uint32_t)sched_getcpu();
    if (w == NMH_WAIT_NONE) {
        k->nkh = 0;
        k->wait_cpu = cpu;
    } else if (k->wait_cpu != cpu) {
        k->wait_cpu = NMH_CPU_UNKNOWN;
    }
    for (uint32_t i = 0; i < k->nkh && k->nkh <= NMH_KH; i++)
        if (k->kh[i] == kh)
            goto armed;
    if (k->nkh >= NMH_KH) {
        __atomic_store_n(&k->waiting, w, __ATOMIC_SEQ_CST);
        return -1;
    }
    k->kh[k->nkh] = kh;
    __atomic_store_n(&k->nkh, k->nkh + 1, __ATOMIC_RELEASE);
armed:
    __atomic_store_n(&k->waiting, NMH_WAIT_ARMED, __ATOMIC_SEQ_CST);
    return 0;
}

uint32_t nmh_kring_wait_take(struct nmh_kring *k)
{
    uint32_t w;

    for (;;) {
        w = __atomic_load_n(&k->waiting, __ATOMIC_SEQ_CST);
        if (w == NMH_WAIT_CBUSY)
            continue;                 /* a C poll is writing kh[]: a few instructions */
        if (__atomic_compare_exchange_n(&k->waiting, &w, NMH_WAIT_BUSY, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return w;
    }
}
