/*
 * The sync rules, once: the kernel's private view of a ring (netmap's
 * netmap_kring pointer fields), the prologues that check what the user
 * hands over, the finalize that publishes the kernel's tail, and the
 * repair of a ring the user broke.  The Python sync engine and the C fast
 * path both call these; nothing else implements them.
 *
 * The prologues take the user's head and cur as arguments: the caller
 * chooses where they come from (the ring, or a CSB).
 */
#ifndef NMFUSE_SYNC_H
#define NMFUSE_SYNC_H

#include <stdint.h>

/* One kring's pointers (netmap's names), the ring they guard, and the
 * per-ring lock that serialises syncs (netmap's nm_kr_tryget/nm_kr_put). */
struct nmh_kring {
    uint32_t nr_hwcur;        /* next slot the kernel processes */
    uint32_t nr_hwtail;       /* first slot the kernel still owns */
    uint32_t rhead;           /* head, cur, tail last accepted */
    uint32_t rcur;
    uint32_t rtail;
    uint32_t nkr_num_slots;
    uint32_t tx;              /* 1 for a TX ring, 0 for RX */
    uint32_t nr_busy;         /* 1 while a sync holds the ring */
    uint32_t c_sync;          /* the driver's sync, when it is C: NMH_SYNC_* */
    uint64_t stats_errors;    /* reinits (rings the user broke) */
    uint64_t stats_packets;   /* slots synced */
    uint64_t stats_bytes;     /* bytes of the frames synced, where the driver counts them */
    uint64_t stats_drops;     /* frames the driver dropped */
    uint64_t offset_mask;     /* of slot.ptr (NETMAP_REQ_OPT_OFFSETS), 0: none */
    struct netmap_ring *ring; /* in shared memory, or NULL */
    struct nmh_kring *peer;   /* pipes: the peer's ring in the other direction */
    uint32_t pipe_tail;       /* pipes: the hwtail the peer's syncs published */
    uint32_t waiting;         /* NMH_WAIT_*: whether a C sync that moves the ring must wake pollers */
    uint32_t wake;            /* set by a C sync that left the wake-up to Python's waker */
    uint32_t nkh;             /* FUSE poll handles in kh[] (NMH_KH + 1: too many, use the waker) */
    uint32_t wait_cpu;        /* the CPU the C polls in kh[] were served on (over io_uring: their callers'),
                               * NMH_CPU_UNKNOWN when not one known CPU */
    uint32_t csb;             /* head/cur come from a CSB (sync-kloop): the ring's tail is the application's */
    uint64_t kh[4];           /* the pollers waiting, as Python knows them (written while NMH_WAIT_BUSY) */
    void *driver;             /* the C sync's own state (NMH_SYNC_PACKET: struct nmh_pkt_ring, see
                               * NMH_SYNC_*), or NULL */
    int32_t wait_fd;          /* readable when the driver can move the ring (a socket, a TX eventfd), or -1 */
    uint32_t watched;         /* wait_fd is in the C waiter's epoll (fast.h) */
    uint32_t c_notify;        /* the driver wakes the ring's pollers from C when it moves it (nmh_fast_notify) */
    int32_t driver_error;     /* an event a C sync left for the driver's Python part (an errno); the fast
                               * path leaves the ring to Python while it is set */
    uint32_t users;           /* bindings using the ring */
    void *waiter;             /* struct nmh_fast_waiter * that wakes pollers from C (fast.h), or NULL */
};

#define NMH_KH 4
#define NMH_WAIT_NONE 0       /* nobody waits */
#define NMH_WAIT_ARMED 1      /* the pollers in kh[] wait */
#define NMH_WAIT_BUSY 2       /* Python is polling or changing kh[]: leave the wake-up to the waker */
#define NMH_WAIT_CBUSY 3      /* a C poll is adding its handle to kh[] (for an instant) */
#define NMH_CPU_UNKNOWN 0xffffffff   /* also what a failed sched_getcpu() gives */

/* nmh_kring.c_sync: which C driver sync serves the ring, if any (0: the
 * driver's sync is Python, only the Python path may sync it). */
#define NMH_SYNC_PYTHON 0
#define NMH_SYNC_NULL 1     /* null ports: succeed, move nothing */
#define NMH_SYNC_PIPE 2     /* pipes: nmh_pipe_txsync / nmh_pipe_rxsync */
#define NMH_SYNC_PACKET 3   /* generic hw rings: nmh_pkt_txsync / nmh_pkt_rxsync (packet.h), state in driver */
#define NMH_SYNC_TAP 4      /* TAP hw TX rings: nmh_tap_txsync (tap.h), state in driver */
/* VALE ports: nmh_vale_txsync / nmh_vale_rxsync (vale.h); driver: a TX
 * ring's struct nmh_vale_tx, an RX ring's struct nmh_vale_ring */
#define NMH_SYNC_VALE 5

/* Put the pointers back at the start: an empty RX ring, a TX ring with
 * every slot but one free. */
void nmh_kring_reset(struct nmh_kring *k);

/* TX ring k's slots before `upto` are free again: its tail is upto - 1. */
void nmh_tx_reclaim(struct nmh_kring *k, uint32_t upto);

/* lo <= head <= cur <= hi on a ring of n slots, where [lo, hi] may wrap:
 * the window both prologues check. */
int nmh_in_window(uint32_t head, uint32_t cur, uint32_t lo, uint32_t hi, uint32_t n);

/* nm_txsync_prologue: accept head/cur of a TX ring if
 * hwcur <= rhead <= head <= cur <= rtail <= hwtail (modulo the ring);
 * then restore ring->tail to rtail and store rhead/rcur.  Returns head,
 * or nkr_num_slots (nothing changed) when the user broke the ring. */
uint32_t nmh_txsync_prologue(struct nmh_kring *k, uint32_t head, uint32_t cur);

/* nm_rxsync_prologue: store head/cur as rhead/rcur and accept them if
 * hwcur <= head <= cur <= hwtail (modulo the ring); restore ring->tail to
 * rtail.  Returns head, or nkr_num_slots when the user broke the ring. */
uint32_t nmh_rxsync_prologue(struct nmh_kring *k, uint32_t head, uint32_t cur);

/* nm_sync_finalize: ring->tail = rtail = hwtail. */
void nmh_sync_finalize(struct nmh_kring *k);

/* netmap_ring_reinit: invalid buffer indexes become 0 with length 0,
 * oversized lengths 0, one more error is counted; then head/cur/tail
 * return to hwcur/hwtail (always: netmap keeps in-range pointers the user
 * wrote, we never trust them).  Returns 1 if head, cur or tail were out of
 * range, else 0. */
int nmh_ring_reinit(struct nmh_kring *k, uint32_t objtotal, uint32_t bufsize);

/* The checks before a driver sync: the prologue, then every slot the user
 * hands over ([rhead before, head) on TX, [hwcur, head) on RX) must hold a
 * valid buffer and length.  On failure the ring is reinitialised.
 * Returns 0 if the driver may sync the ring, -1 after a reinit. */
int nmh_txsync_begin(struct nmh_kring *k, uint32_t head, uint32_t cur, uint32_t objtotal, uint32_t bufsize);
int nmh_rxsync_begin(struct nmh_kring *k, uint32_t head, uint32_t cur, uint32_t objtotal, uint32_t bufsize);

/* ring->ts = now, after an rxsync (ring_timestamp_set): always, unless
 * no_timestamp (netmap's sysctl) is set and the ring does not ask for it
 * with NR_TIMESTAMP. */
void nmh_ring_timestamp(struct nmh_kring *k, int no_timestamp);

/* ---- the drivers' syncs that are C ---- */

/* Pipes (netmap_pipe_txsync / rxsync).  TX: publish the tail the peer left
 * (pipe_tail) as hwtail, move the slots handed over [hwcur, rhead) into the
 * peer RX ring and publish there the end of the last complete frame.  RX:
 * publish the tail, give the released slots' buffers back to the peer TX
 * ring and publish its new tail.  Both return 1 when the peer ring moved
 * (its pollers need a wake), else 0.  pipe_tail is the one field both ends
 * write each other's: stored with release order, after the slots. */
int nmh_pipe_txsync(struct nmh_kring *k);
int nmh_pipe_rxsync(struct nmh_kring *k);

/* Waiting.  A poll that must wait leaves its FUSE poll handle in kh[]
 * (C: nmh_kring_wait_add) or in the kring's Python set (which arm() copies
 * into kh[]); whoever moves the ring wakes them.  Python takes kh[] over
 * with nmh_kring_wait_take before it changes or wakes them. */

/* Add poll handle kh (C), of a poll served on the calling thread's CPU
 * (wait_cpu): 0, or -1 when Python holds kh[] or it is full (the poll
 * then goes to Python). */
int nmh_kring_wait_add(struct nmh_kring *k, uint64_t kh);

/* Python takes kh[]: waits out a C poll adding to it, sets
 * NMH_WAIT_BUSY and returns the state before (the handles in kh[] are
 * valid if it was NMH_WAIT_ARMED and nkh <= NMH_KH). */
uint32_t nmh_kring_wait_take(struct nmh_kring *k);

/* nm_kr_tryget / nm_kr_put: take the ring for one sync.  Returns 0 when
 * taken, -1 when another sync holds it (netmap's busy ring). */
int nmh_kring_tryget(struct nmh_kring *k);
void nmh_kring_put(struct nmh_kring *k);

#endif /* NMFUSE_SYNC_H */
