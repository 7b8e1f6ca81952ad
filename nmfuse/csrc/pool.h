/*
 * The C helper's buffer accounting: a pool of buffer indexes and the
 * marks that rebuild it from what live rings and lists hold.  Declared
 * once here: cffi reads this file for the Python binding.
 */
#ifndef NMFUSE_POOL_H
#define NMFUSE_POOL_H

#include <stdint.h>

/* Buffer indexes 0 and 1 are reserved, as in netmap. */
#define NMH_RESERVED 2

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

#endif /* NMFUSE_POOL_H */
