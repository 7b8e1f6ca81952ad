/*
 * The C helper: the per-slot loops of nmfuse (fill, validate, swap, copy,
 * buffer accounting).  Python does the control; these functions touch
 * every slot or every buffer.  Declared once here: cffi reads this file for
 * the Python binding, helper.c implements it.
 */

/* Buffer pool state: which indexes are in use, and a stack of free ones. */
struct nmh_bufpool {
    uint32_t objtotal;      /* indexes 0..objtotal-1; 0 and 1 reserved */
    uint32_t nfree;
    uint8_t *in_use;        /* objtotal bytes */
    uint32_t *free_stack;   /* objtotal entries, the top at nfree-1 */
};

/* Fill the pool: everything but the reserved buffers is free. */
void nmh_pool_init(struct nmh_bufpool *p);

/* Take n buffers into out[]; all or nothing.  Returns 0, or -1 if fewer are free. */
int nmh_pool_alloc(struct nmh_bufpool *p, uint32_t n, uint32_t *out);

/* Return buffers; invalid or already-free indexes are skipped.  Returns how many were skipped. */
uint32_t nmh_pool_release(struct nmh_bufpool *p, const uint32_t *idx, uint32_t n);

/* Mark in marks[] the valid buffer indexes held by slots [0, n).  Returns how many were invalid. */
uint32_t nmh_mark_slots(const struct netmap_slot *slot, uint32_t n, uint8_t *marks, uint32_t objtotal);

/* Mark the extra-buffer list starting at head, linked through each buffer's
 * first uint32; stops at 0, an invalid or already-marked index, or after
 * limit entries.  Returns how many were marked. */
uint32_t nmh_mark_list(const char *bufbase, uint32_t bufsize, uint32_t head,
                       uint8_t *marks, uint32_t objtotal, uint32_t limit);

/* Make marks[] the pool's in-use set and rebuild the free stack. */
void nmh_pool_rebuild(struct nmh_bufpool *p, const uint8_t *marks);

/* Point slots [0, n) at bufs[0..n) with the given length and no flags. */
void nmh_slots_fill(struct netmap_slot *slot, uint32_t n, const uint32_t *bufs, uint16_t len);

/* Copy the buffer indexes of slots [0, n) to out[0..n). */
void nmh_slots_bufs(const struct netmap_slot *slot, uint32_t n, uint32_t *out);

/* Check slots [from, from+count) (modulo n): every buffer index valid and
 * not reserved, every length within bufsize.  Returns the first bad slot,
 * or -1 if all are good. */
int64_t nmh_slots_check(const struct netmap_slot *slot, uint32_t n, uint32_t from, uint32_t count,
                        uint32_t objtotal, uint32_t bufsize);

/* Pipe transmit: copy slots [from, from+count) of tx to the same slots of
 * rx (the buffer index moves, the bytes do not), keeping an rx offset that
 * is larger than the tx one, clearing NS_BUF_CHANGED on tx.  Returns the
 * slot after the last complete frame (no NS_MOREFRAG), or n if none. */
uint32_t nmh_pipe_forward(struct netmap_slot *tx, struct netmap_slot *rx, uint32_t n,
                          uint32_t from, uint32_t count, uint64_t rx_offset_mask);

/* Pipe release: copy slots [from, from+count) of rx back to tx (returning
 * the buffers the receiver holds now), clearing NS_BUF_CHANGED on rx. */
void nmh_pipe_release(struct netmap_slot *rx, struct netmap_slot *tx, uint32_t n,
                      uint32_t from, uint32_t count);

/* ---- VALE switch (netmap_vale.c): per-frame forwarding ----
 *
 * The switch state the forwarding loop needs lives in C: the learning
 * table and, per bridge port, the RX rings the switch may fill.  The
 * daemon keeps these structs in step with its krings (ring pointers,
 * hwcur written by the port's rxsync); the loop below owns hwtail.
 * Each port's rings and buffers are in its own memory (the global region
 * or an external one), described in its struct (bufs, buf_size, objtotal):
 * a frame is read with the sender's and written with the receiver's.
 */
#define NMH_VALE_MAXPORTS 254
#define NMH_VALE_MAXRINGS 16
#define NMH_VALE_HASH 1024
#define NMH_VALE_BROADCAST 254
#define NMH_VALE_NOPORT 255

/* An RX ring of a bridge port, as the switch fills it. */
struct nmh_vale_ring {
    struct netmap_slot *slot;   /* NULL: no ring (not bound), frames for it are dropped */
    uint32_t num_slots;
    uint32_t hwcur;             /* the port's: slots before it are free again */
    uint32_t hwtail;            /* the switch's: the next slot it fills */
    uint32_t mark;              /* scratch of one flush: 1 listed, 2 full */
    uint64_t offset_mask;
    uint64_t delivered;         /* frames written */
    uint64_t dropped;           /* frames refused for want of room */
};

struct nmh_vale_port {
    char *bufs;                 /* buffer 0 of the port's memory */
    uint32_t buf_size;
    uint32_t objtotal;
    uint32_t num_rx;            /* RX rings the switch may fill; 0: not in netmap mode */
    uint32_t virt_hdr_len;
    uint64_t last_smac;         /* the last source address learned from this port */
    struct nmh_vale_ring rx[16];
};

struct nmh_vale_ht_ent {
    uint64_t mac;
    uint32_t port;
    uint32_t pad;
};

struct nmh_vale_bridge {
    uint32_t active;            /* ports in port_index[0, active) */
    uint32_t nmarked;           /* scratch */
    uint32_t port_index[254];
    struct nmh_vale_port *ports[254];  /* NULL: no port at this index */
    struct nmh_vale_ht_ent ht[1024];
    uint16_t marked[4096];      /* scratch: rings marked during a flush */
};

/* The source TX ring of a flush. */
struct nmh_vale_src {
    struct netmap_slot *slot;
    uint32_t num_slots;
    uint32_t ring_nr;           /* unicast goes to the RX ring of this index */
    uint64_t offset_mask;
};

/* netmap's hash of a MAC address into the learning table (its bucket). */
uint32_t nmh_vale_hash(const uint8_t *mac);

/* Switch slots [from, from+count) of a source ring of port `me`: learn the
 * source address of each frame, look up its destination (flooding
 * broadcast and unknown unicast, never back to `me`), and copy it into the
 * destination RX rings that have room for the whole frame.  Clears
 * NS_BUF_CHANGED on the source slots.  Writes to out[] one entry
 * (port << 4 | ring) per destination ring that got frames or was found
 * full, and returns how many. */
uint32_t nmh_vale_flush(struct nmh_vale_bridge *b, uint32_t me, const struct nmh_vale_src *src,
                        uint32_t from, uint32_t count, uint16_t *out);

/* ---- monitors (netmap_monitor.c) ---- */

/* Copy monitor: copy the frames of slots [first, first+count) of a
 * monitored ring (modulo n) into a monitor ring from its hwtail on,
 * keeping the newest when room is short; each copy gets the source flags
 * with NS_TXMON replaced by txmon.  Returns the monitor ring's new hwtail. */
uint32_t nmh_mon_copy(const char *bufs, uint32_t buf_size, uint32_t objtotal,
                      const struct netmap_slot *slot, uint32_t n, uint64_t mask,
                      uint32_t first, uint32_t count,
                      struct netmap_slot *mslot, uint32_t mn, uint64_t mmask,
                      uint32_t mhwcur, uint32_t mhwtail, uint16_t txmon);

/* Zero-copy monitor: swap buffer index and length of slots [beg, beg+count)
 * of a monitored ring with the monitor ring's from its hwtail on (keeping
 * the newest when room is short), marking the monitored slots
 * NS_BUF_CHANGED.  Returns the monitor ring's new hwtail. */
uint32_t nmh_mon_swap(struct netmap_slot *slot, uint32_t n, uint32_t beg, uint32_t count,
                      struct netmap_slot *mslot, uint32_t mn, uint32_t mhwcur, uint32_t mhwtail,
                      uint16_t txmon);

/* ------------------------------------------------------------------ */
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

/* Transparent mode, host RX -> hardware TX (netmap's sw_to_nic): move the
 * slots of src [from, to) that carry NS_FORWARD into dst from its head on,
 * while dst has room, by swapping buffers (both sides get NS_BUF_CHANGED;
 * NS_MOREFRAG is kept); dst's head and cur advance.  Slots without the flag
 * are skipped.  Returns the src slot it stopped at. */
uint32_t nmh_forward_swap(struct netmap_slot *src, uint32_t src_n, uint32_t from, uint32_t to,
                          struct netmap_ring *dst);

/* ------------------------------------------------------------------ */
/* External memory guard.  The daemon maps pages of a client's file (netmap's
 * external memory); if the client truncates that file, the daemon's next
 * access there faults with SIGBUS, which would end the daemon and every
 * client with it.  In a guarded range such a fault instead puts a private
 * zero page (of the range's page size) at that address and the access
 * goes on: the daemon keeps serving, and only the client that cut its own
 * memory sees garbage.  A SIGBUS outside every range goes to the handler
 * that was there before (or kills, as by default). */
#define NMH_GUARD_MAX 256

/* Install the SIGBUS handler (once).  Returns 0, or -errno. */
int nmh_guard_install(void);

/* Guard [start, start+len), len a multiple of page (a power of two).
 * Returns 0, or -1 when NMH_GUARD_MAX ranges are guarded already. */
int nmh_guard_add(char *start, size_t len, size_t page);

/* Stop guarding the range that starts at start. */
void nmh_guard_remove(char *start);

/* Pages replaced so far. */
uint64_t nmh_guard_faults(void);
