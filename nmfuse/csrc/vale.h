/* The C helper's VALE forwarding loop. */
#ifndef NMFUSE_VALE_H
#define NMFUSE_VALE_H

#include <stdint.h>

#include "sync.h"

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

/* An RX ring of a bridge port, as the switch fills it.
 *
 * Who writes what (netmap's ownership of a destination ring):
 *
 *     hwcur (the port's rxsync)      hwtail (the switch's flush)
 *       |                              |
 *     --+---- frames the user has -----+---- free: the switch fills these
 *       |     not released yet         |     up to hwcur - 1
 *
 * The flush writes hwtail, under the bridge's lock, with release order
 * after the slots it filled; the rxsync of the ring's owner (holding the
 * kring: nmh_kring_tryget) reads it with acquire order into its kring and
 * stores the hwcur it accepted, with release order after the user gave
 * the slots back.  Each field has one writer, so neither side waits for
 * the other.  The daemon (re)initialises both, under the bridge's lock,
 * only when a ring enters the view. */
struct nmh_vale_ring {
    struct netmap_slot *slot;   /* NULL: no ring (not bound), frames for it are dropped */
    uint32_t num_slots;
    uint32_t hwcur;             /* the port's: slots before it are free again */
    uint32_t hwtail;            /* the switch's: the next slot it fills */
    uint32_t mark;              /* scratch of one flush: 1 listed, 2 full */
    uint64_t offset_mask;
    uint64_t delivered;         /* frames written */
    uint64_t dropped;           /* frames refused for want of room */
    struct nmh_kring *kring;    /* the ring's kring (its pollers), or NULL */
};

struct nmh_vale_bridge;

struct nmh_vale_port {
    char *bufs;                 /* buffer 0 of the port's memory */
    uint32_t buf_size;
    uint32_t objtotal;
    uint32_t num_rx;            /* RX rings the switch may fill; 0: not in netmap mode */
    uint32_t virt_hdr_len;
    uint64_t last_smac;         /* the last source address learned from this port */
    struct nmh_vale_ring rx[16];
    struct nmh_vale_bridge *bridge;  /* the switch the port is attached to, or NULL */
    uint32_t me;                /* its index there */
};

struct nmh_vale_ht_ent {
    uint64_t mac;
    uint32_t port;
    uint32_t pad;
};

/* A switch.  Flushes run on any thread (the C fast path's workers, the
 * daemon's Python), so everything here, and the ports' C views it points
 * to, is read and written under `lock` (nmh_vale_lock): by a flush, and by
 * the daemon whenever it changes the switch or a port's view (attach,
 * detach, a ring that comes or goes, netmap mode on or off).  The memory
 * of a switch is never freed while the daemon runs (a switch that goes
 * leaves its slot, reset when a new one takes it), so a port may read its
 * `bridge` pointer before it takes the lock and check it after. */
struct nmh_vale_bridge {
    uint64_t lock[8];           /* a pthread_mutex_t (nmh_vale_bridge_init) */
    uint32_t active;            /* ports in port_index[0, active) */
    uint32_t nmarked;           /* scratch */
    uint32_t python;            /* ports whose RX rings need Python when the switch fills them
                                 * (a monitor, a bwrap, a sync-kloop): the C fast path leaves
                                 * this switch's TX syncs to Python while there are any */
    uint32_t port_index[254];
    struct nmh_vale_port *ports[254];  /* NULL: no port at this index */
    struct nmh_vale_ht_ent ht[1024];
    uint16_t marked[4096];      /* scratch: rings marked during a flush */
    uint16_t out[4096];         /* scratch: the destinations of a C sync's flush */
};

/* What a VALE port's TX kring points to (nmh_kring.driver): the port
 * whose switch its frames enter, and the ring's index (unicast goes to
 * the destination's RX ring of the same index). */
struct nmh_vale_tx {
    struct nmh_vale_port *port;
    uint32_t ring_nr;
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

/* Set up the lock of a switch's memory (once); reset a switch taken anew
 * (no ports, an empty learning table; the lock is kept). */
void nmh_vale_bridge_init(struct nmh_vale_bridge *b);
void nmh_vale_bridge_reset(struct nmh_vale_bridge *b);

/* The switch's lock, for the daemon's changes. */
void nmh_vale_lock(struct nmh_vale_bridge *b);
void nmh_vale_unlock(struct nmh_vale_bridge *b);

/* A destination ring the flush of a C sync filled (ctx: the caller's). */
typedef void (*nmh_vale_moved_fn)(void *ctx, struct nmh_kring *k);

/* netmap_vale_vp_txsync, the one implementation (the Python path and the
 * C fast path): switch the slots [hwcur, rhead) of TX kring k (its port
 * and index in t) under the switch's lock, then give every slot back at
 * once (hwcur = rhead, hwtail = rhead - 1).  Without a switch the frames
 * are dropped.  Each destination ring the flush filled or found full is
 * listed as (port << 4 | ring): with `moved`, the C fast path's, moved()
 * is called for its kring while the lock is held (the kring cannot go
 * meanwhile) and nothing is returned; without, the list goes to out[]
 * (4096 entries) and the count is returned, for the daemon's notifies. */
uint32_t nmh_vale_txsync(struct nmh_kring *k, const struct nmh_vale_tx *t, nmh_vale_moved_fn moved, void *ctx,
                         uint16_t *out);

/* netmap_vp_rxsync: take the switch's hwtail of ring r into RX kring k and
 * give it back the released slots [hwcur, rhead).  Returns 0. */
int nmh_vale_rxsync(struct nmh_kring *k, struct nmh_vale_ring *r);

/* Whether the C fast path may sync TX kring k (driver: struct
 * nmh_vale_tx): no switch, or a switch whose ports' RX rings are all
 * woken from C (python == 0).  A hint read without the lock: a port that
 * needs Python from then on gets its notify from the waker (the flush
 * flags its kring). */
int nmh_vale_tx_c(const struct nmh_kring *k);

#endif /* NMFUSE_VALE_H */
