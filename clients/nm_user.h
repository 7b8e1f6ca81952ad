/*
 * nm_user.h: the few inline helpers netmap programs use to walk the shared
 * memory (what netmap_user.h offers), over the project's ABI header.
 * Header-only; every client in clients/ includes it.
 */
#ifndef NMFUSE_NM_USER_H
#define NMFUSE_NM_USER_H

#include <stdlib.h>
#include "netmap_abi.h"

#define NM_OFFSET(type, base, ofs) ((type)(void *)((char *)(base) + (ofs)))

#define NETMAP_IF(base, ofs) NM_OFFSET(struct netmap_if *, base, ofs)
#define NETMAP_TXRING(nifp, i) NM_OFFSET(struct netmap_ring *, nifp, (nifp)->ring_ofs[i])
#define NETMAP_RXRING(nifp, i) \
    NM_OFFSET(struct netmap_ring *, nifp, \
              (nifp)->ring_ofs[(i) + (nifp)->ni_tx_rings + (nifp)->ni_host_tx_rings])
#define NETMAP_BUF(ring, idx) ((char *)(ring) + (ring)->buf_ofs + ((size_t)(idx)) * (ring)->nr_buf_size)
#define NETMAP_BUF_IDX(ring, buf) \
    ((uint32_t)(((char *)(buf) - ((char *)(ring) + (ring)->buf_ofs)) / (ring)->nr_buf_size))

/* The device clients open: $NETMAP_DEVICE, or /dev/netmap. */
static inline const char *nm_device_path(void)
{
    const char *p = getenv("NETMAP_DEVICE");
    return (p && *p) ? p : "/dev/netmap";
}

static inline uint32_t nm_ring_next(const struct netmap_ring *r, uint32_t i)
{
    return (i + 1 == r->num_slots) ? 0 : i + 1;
}

/* Slots the user owns between cur and tail. */
static inline uint32_t nm_ring_space(const struct netmap_ring *r)
{
    int ret = (int)r->tail - (int)r->cur;
    if (ret < 0)
        ret += r->num_slots;
    return (uint32_t)ret;
}

static inline int nm_ring_empty(const struct netmap_ring *r)
{
    return r->cur == r->tail;
}

/* True when every slot of a TX ring has been handed back (tail == head - 1). */
static inline int nm_tx_pending(const struct netmap_ring *r)
{
    return nm_ring_next(r, r->tail) != r->head;
}

#endif /* NMFUSE_NM_USER_H */
