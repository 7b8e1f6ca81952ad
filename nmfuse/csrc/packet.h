/* The C helper's AF_PACKET and BPF calls: the generic driver's way to
 * receive from and send on any Linux interface, and the tc programs that
 * keep the host stack away from an interface in netmap mode. */
#ifndef NMFUSE_PACKET_H
#define NMFUSE_PACKET_H

#include <stdint.h>

#include "sync.h"
#include "tap.h"

/* The fd-level calls return 0 (or an fd) on success and -errno on failure. */

/* One AF_PACKET receive socket with a TPACKET_V3 ring mapped: block_nr
 * blocks of block_size bytes (a power of two, a multiple of the page size)
 * that the kernel fills with frames and hands over a block at a time. */
struct nmh_pkt_rx {
    int fd;
    uint32_t block_size;
    uint32_t block_nr;
    char *map;              /* block_nr * block_size bytes */
    uint32_t block;         /* the block being read */
    uint32_t left;          /* its frames not yet taken */
    uint32_t next;          /* offset of the next one in it */
    uint32_t outgoing;      /* 1: take what the interface sends, 0: what it receives */
};

/* Open `rx` on interface `ifindex`, every protocol, non-blocking.  With
 * fanout_id != 0 the socket joins that PACKET_FANOUT group, spread by the
 * receive queue of each frame (several rings of one interface).  Frames
 * whose skb mark is skip_mark (if not 0) are not taken (what nmfuse itself
 * delivered to the host stack through the interface).  The
 * socket is bound last, so it sees nothing from before its ring exists. */
int nmh_pkt_rx_open(struct nmh_pkt_rx *rx, int ifindex, uint32_t block_size, uint32_t block_nr,
                    int fanout_id, uint32_t skip_mark);
void nmh_pkt_rx_close(struct nmh_pkt_rx *rx);

/* From now on `rx` does not take frames whose skb mark is `mark` (as
 * nmh_pkt_rx_open's skip_mark; frames already in its ring stay).  A
 * socket filter runs for every frame the interface receives, so it is
 * set only once such frames can exist.  0 or -errno. */
int nmh_pkt_rx_skip_mark(struct nmh_pkt_rx *rx, uint32_t mark);

/* Frames the kernel dropped on `rx` since the last call (ring full). */
int64_t nmh_pkt_rx_drops(struct nmh_pkt_rx *rx);

/* Copy the frames waiting in `rx` into the `room` free RX slots from tail
 * on: a frame longer than a buffer becomes a chain of slots, NS_MOREFRAG
 * on all but the last; one that does not fit the room left waits in the
 * ring for the next call.  Frames of the other direction are skipped.
 * Counts into io (frames, bytes, drops: a frame the socket cut short or
 * longer than 64 slots).  io->error = EAGAIN when nothing is left, EINVAL
 * on a free slot with a bad buffer.  Returns the new tail. */
uint32_t nmh_pkt_rx(struct nmh_tap_io *io, struct nmh_pkt_rx *rx, struct netmap_slot *slot, uint32_t n,
                    uint32_t tail, uint32_t room);

/* Whether `rx` has a frame waiting (the current block or the next one). */
int nmh_pkt_rx_ready(struct nmh_pkt_rx *rx);

/* The pending error of socket fd (SO_ERROR, cleared by reading), 0 if none. */
int nmh_sock_error(int fd);

/* An AF_PACKET socket that sends on interface `ifindex`, bypassing the
 * qdisc (PACKET_QDISC_BYPASS), receiving nothing, non-blocking. */
int nmh_pkt_tx_open(int ifindex, int sndbuf);

/* Send the frames in TX slots [cur, head) (modulo n) on fd, as many per
 * sendmmsg as the kernel takes (a frame is a slot or an NS_MOREFRAG chain).
 * A frame the kernel refuses (link down, no buffer in the device) or with
 * a bad slot is dropped and counted (io->last_error says why), as netmap's
 * generic adapter drops what the device refuses.  Stops at head, before a
 * chain that head cuts short, or when the socket buffer is full
 * (io->error = EAGAIN).  Returns the slot after the last frame handled. */
uint32_t nmh_pkt_tx(struct nmh_tap_io *io, int fd, struct netmap_slot *slot, uint32_t n,
                    uint32_t cur, uint32_t head);

/* A sending thread for one TX ring: txsync hands it the frames up to the
 * new head and returns at once (as a NIC takes descriptors), the thread
 * sends them with nmh_pkt_tx and publishes how far it got in `done`; the
 * ring's slots are reclaimed up to there (netmap's generic adapter
 * reclaims on completion too).  So the program fills the next batch
 * while the previous one is being sent.  When `want` is set (a poller
 * waits for room) the thread writes eventfd `efd` after progress.
 * Counters in `io` are the thread's (read them, never reset). */
struct nmh_pkt_txq {
    int fd;                 /* the send socket (owned by the caller) */
    int efd;                /* eventfd: progress for a waiting poller */
    struct nmh_tap_io io;
    struct netmap_slot *slot;
    uint32_t n;
    uint32_t head;          /* frames before it are the thread's to send (under lock) */
    uint32_t done;          /* the thread sent (or dropped) everything before it */
    uint32_t want;          /* a poller waits: write efd on progress */
    uint32_t stop;
    uint32_t taken;         /* the head the thread last took (under lock) */
    uint32_t busy;          /* the thread is between taking head and publishing done */
    struct nmh_kring *kring;/* if set, progress a sync asked for also wakes its C pollers (nmh_fast_notify) */
    void *priv;             /* the thread, its lock and condition */
};

/* Start the thread of q (fd, efd and io's pool fields set by the caller). */
int nmh_pkt_txq_start(struct nmh_pkt_txq *q);

/* Hand over the frames of slots [.., head) of ring `slot` (n slots). */
void nmh_pkt_txq_push(struct nmh_pkt_txq *q, struct netmap_slot *slot, uint32_t n, uint32_t head);

/* Wait until the thread sent all it was handed (or it can send no more:
 * a chain cut short by head). */
void nmh_pkt_txq_drain(struct nmh_pkt_txq *q);

/* Drain, then make `at` the start of both head and done (a ring reset). */
void nmh_pkt_txq_reset(struct nmh_pkt_txq *q, uint32_t at);

/* Ask for an eventfd write at the next progress; if progress happened
 * since done was last read as `seen`, write it now.  */
void nmh_pkt_txq_want(struct nmh_pkt_txq *q, uint32_t seen);

/* Where the thread got to (slots before it are sent). */
uint32_t nmh_pkt_txq_done(struct nmh_pkt_txq *q);

/* Stop and join the thread (idempotent); frames not sent are dropped. */
void nmh_pkt_txq_stop(struct nmh_pkt_txq *q);

/* A generic hardware ring's sync, in C (nmh_kring.c_sync NMH_SYNC_PACKET,
 * nmh_kring.driver -> this): the one implementation the Python driver and
 * the C fast path both call, under the ring's busy lock. */
struct nmh_pkt_ring {
    struct nmh_tap_io io;   /* the pool (set by the caller), this ring's counters */
    struct nmh_pkt_rx *rx;  /* RX: the socket ring */
    struct nmh_pkt_txq *txq;/* TX: the sending thread */
    uint32_t pushed;        /* TX: the head txq was last handed */
    uint32_t gone;          /* the interface is gone: syncs answer ENXIO (set by the driver) */
};

/* TX: hand [hwcur, head) to the sending thread (after resetting it if the
 * ring was reset since), reclaim up to where it got (hwtail), and ask for
 * an eventfd wake-up while frames are in flight; a send the device
 * refused as gone (ENXIO, ENODEV) goes to k->driver_error.  0, or ENXIO
 * once gone. */
int nmh_pkt_txsync(struct nmh_kring *k);

/* RX: release [hwcur, head), then copy what the socket holds into the
 * free slots (nmh_pkt_rx).  An empty sync leaves the socket's pending
 * error in k->driver_error.  0, or ENXIO once gone. */
int nmh_pkt_rxsync(struct nmh_kring *k);

/* Load a BPF_PROG_TYPE_SCHED_CLS program of `count` raw 8-byte
 * instructions (GPL); returns its fd.  log (log_size bytes) gets the
 * verifier's complaints when it refuses. */
int nmh_bpf_prog_load(const uint64_t *insns, uint32_t count, char *log, uint32_t log_size);

/* Attach program `prog_fd` to interface `ifindex` as a tcx program of
 * `attach_type` (BPF_TCX_INGRESS 46, BPF_TCX_EGRESS 47) through a bpf_link;
 * returns the link's fd.  The program stays attached as long as the link
 * fd is open: closing it, or the death of its owner, detaches it. */
int nmh_bpf_tcx_link(int prog_fd, int ifindex, uint32_t attach_type);

/* How many tcx programs of `attach_type` interface `ifindex` has now. */
int nmh_bpf_tcx_count(int ifindex, uint32_t attach_type);

#endif /* NMFUSE_PACKET_H */
