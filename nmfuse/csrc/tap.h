/* The C helper's TAP calls: the kernel structs and ioctls of a TAP queue
 * and its per-frame reads and writes. */
#ifndef NMFUSE_TAP_H
#define NMFUSE_TAP_H

#include <stdint.h>

#include "sync.h"

/* TAP queues (the TAP driver).  The kernel's structs and ioctl numbers
 * (struct ifreq, TUNSETIFF, ...) stay in C; Python sees these calls.  The
 * fd-level calls return 0 (or an fd) on success and -errno on failure. */

/* struct virtio_net_hdr (linux/virtio_net.h): what PORT_HDR_SET 10 puts
 * before each frame; 12 adds a 16-bit num_buffers after it. */
struct nmh_vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};

/* Open a queue of the TAP interface `name` (creating it if it does not
 * exist), non-blocking, close-on-exec, without packet information;
 * multi_queue adds IFF_MULTI_QUEUE, vnet_hdr IFF_VNET_HDR (which the
 * interface takes only from its first queue attached). */
int nmh_tap_open(const char *name, int multi_queue, int vnet_hdr);

/* Copy the interface's current name (at most 15 bytes + NUL) to name[16]. */
int nmh_tap_name(int fd, char *name);

/* With hdrlen 10 or 12 (a queue opened with vnet_hdr): frames carry a
 * hdrlen-byte virtio-net header and the kernel may hand over offloaded
 * ones; with 0: plain, finished frames only. */
int nmh_tap_set_hdr(int fd, uint32_t hdrlen);

/* Carrier on/off (TUNSETCARRIER); persistence (TUNSETPERSIST). */
int nmh_tap_set_carrier(int fd, int on);
int nmh_tap_set_persist(int fd, int on);

/* An fd of the network namespace the interface lives in (TUNGETDEVNETNS). */
int nmh_tap_netns(int fd);

/* Read and discard every frame queued on fd; returns how many. */
int nmh_tap_drain(int fd);

/* State of one TAP transfer: the buffer pool, the header the slots carry,
 * and counters the calls add to. */
struct nmh_tap_io {
    char *bufbase;          /* buffer 0 of the pool */
    uint32_t bufsize;
    uint32_t objtotal;      /* valid buffer indexes are 2 .. objtotal-1 */
    uint32_t hdrlen;        /* virtio-net header bytes in front of each frame: 0, 10, 12
                             * (the queue must have been opened with vnet_hdr iff not 0) */
    uint64_t packets;       /* frames moved */
    uint64_t bytes;         /* their bytes, without the virtio-net header */
    uint64_t drops;         /* frames dropped (bad slots, refused by the kernel, too long) */
    int error;              /* errno that stopped the last call (EAGAIN: fd full/empty), else 0 */
    int last_error;         /* errno of the last frame the kernel refused */
};

/* Add what `io` counted since `before` (a copy of it taken before the
 * I/O) to ring k's packet, byte and drop counters. */
void nmh_tap_io_count(struct nmh_kring *k, const struct nmh_tap_io *io, const struct nmh_tap_io *before);

/* A TAP hardware TX ring's sync, in C (nmh_kring.c_sync NMH_SYNC_TAP,
 * nmh_kring.driver -> this): the one implementation the Python driver and
 * the C fast path both call, under the ring's busy lock.  The driver keeps
 * fd and io.hdrlen current (queues re-attached, PORT_HDR_SET). */
struct nmh_tap_ring {
    struct nmh_tap_io io;   /* the pool, the header length; this ring's counters */
    int32_t fd;             /* the TAP queue of the ring */
    uint32_t gone;          /* the interface is gone: frames are dropped, syncs answer ENXIO */
    struct nmh_kring **host;/* the port's host krings: while one is in use, the stack is theirs */
    uint32_t nhost;
    uint32_t pad;
};

/* TX: write [hwcur, head) to the queue (or drop them while the host rings
 * hold the stack: an unplugged NIC), reclaim at once.  A full queue leaves
 * the rest pending with k->driver_error EAGAIN, a vanished interface
 * EBADFD, for the driver.  0, or ENXIO once gone. */
int nmh_tap_txsync(struct nmh_kring *k);

/* What nmh_tap_tx does with the frames it walks. */
#define NMH_TAP_SEND 0      /* write every frame */
#define NMH_TAP_FORWARD 1   /* write only frames whose first slot has NS_FORWARD (cleared) */
#define NMH_TAP_DISCARD 2   /* count every frame as dropped */

/* Write the frames in TX slots [cur, head) (modulo n) to fd, one writev per
 * frame; a frame is a slot, or a chain of slots with NS_MOREFRAG on all but
 * the last.  Stops at head, before a chain that head cuts short, or when
 * the fd is full (io->error = EAGAIN; NMH_TAP_FORWARD drops instead).
 * A frame the kernel refuses, or with an invalid slot, is dropped.
 * Returns the slot after the last frame written or dropped. */
uint32_t nmh_tap_tx(struct nmh_tap_io *io, int fd, struct netmap_slot *slot, uint32_t n,
                    uint32_t cur, uint32_t head, int mode);

/* Where a received frame longer than one buffer continues until it is
 * split over the following slots; one per RX ring. */
#define NMH_TAP_SPILL 131072  /* 128 KiB: the longest frame a TAP hands over, with room to spare */
struct nmh_tap_rxq {
    char *spill;            /* NMH_TAP_SPILL bytes */
    uint32_t pending;       /* bytes of a frame waiting in spill for free slots, 0: none */
    uint32_t pending_len;   /* that frame's length (its first buffer already holds the start) */
};

/* Read frames from fd into the `room` free RX slots from tail on, one read
 * per frame into the buffer of slot tail, spilling into q->spill: a frame
 * longer than a buffer becomes a chain of slots, NS_MOREFRAG on all but
 * the last, as soon as enough slots are free (until then it waits in q and
 * nothing more is read).  Stops when fd has nothing more (io->error =
 * EAGAIN), on a free slot with an invalid buffer (EINVAL), or on another
 * read error.  Frames longer than the spill, than n-1 slots or than 64
 * slots are dropped.  Returns the new tail. */
uint32_t nmh_tap_rx(struct nmh_tap_io *io, struct nmh_tap_rxq *q, int fd, struct netmap_slot *slot,
                    uint32_t n, uint32_t tail, uint32_t room);

#endif /* NMFUSE_TAP_H */
