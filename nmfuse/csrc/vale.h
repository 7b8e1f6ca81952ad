/* The C helper's VALE forwarding loop. */
#ifndef NMFUSE_VALE_H
#define NMFUSE_VALE_H

#include <stdint.h>

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

#endif /* NMFUSE_VALE_H */
