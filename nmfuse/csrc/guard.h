#ifndef NMFUSE_GUARD_H
#define NMFUSE_GUARD_H

#include <stddef.h>
#include <stdint.h>

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

#endif /* NMFUSE_GUARD_H */
