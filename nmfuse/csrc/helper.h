/*
 * The C helper: the per-slot loops of nmfuse (fill, validate, swap, copy).
 * Python does the control; these functions touch every slot.  This file
 * declares them once: cffi reads it for the Python binding, helper.c
 * implements it.
 */

/* Point slots [0, n) at bufs[0..n) with the given length and no flags. */
void nmh_slots_fill(struct netmap_slot *slot, uint32_t n, const uint32_t *bufs, uint16_t len);

/* Copy the buffer indexes of slots [0, n) to out[0..n). */
void nmh_slots_bufs(const struct netmap_slot *slot, uint32_t n, uint32_t *out);
