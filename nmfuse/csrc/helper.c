/* Implementation of helper.h; see there for the contracts. */
#include <string.h>

void nmh_slots_fill(struct netmap_slot *slot, uint32_t n, const uint32_t *bufs, uint16_t len)
{
    for (uint32_t i = 0; i < n; i++) {
        slot[i].buf_idx = bufs[i];
        slot[i].len = len;
        slot[i].flags = 0;
        slot[i].ptr = 0;
    }
}

void nmh_slots_bufs(const struct netmap_slot *slot, uint32_t n, uint32_t *out)
{
    for (uint32_t i = 0; i < n; i++)
        out[i] = slot[i].buf_idx;
}
