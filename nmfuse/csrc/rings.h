/*
 * The C helper's per-slot ring loops shared by the sync engine and the
 * port types: slot validation, pipe transfer, monitor copies, transparent
 * mode.  Python does the control; these touch every slot.
 */
#ifndef NMFUSE_RINGS_H
#define NMFUSE_RINGS_H

#include <stdint.h>

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

/* Transparent mode, host RX -> hardware TX (netmap's sw_to_nic): move the
 * slots of src [from, to) that carry NS_FORWARD into dst from its head on,
 * while dst has room, by swapping buffers (both sides get NS_BUF_CHANGED;
 * NS_MOREFRAG is kept); dst's head and cur advance.  Slots without the flag
 * are skipped.  Returns the src slot it stopped at. */
uint32_t nmh_forward_swap(struct netmap_slot *src, uint32_t src_n, uint32_t from, uint32_t to,
                          struct netmap_ring *dst);

#endif /* NMFUSE_RINGS_H */
