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
