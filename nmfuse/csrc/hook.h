/*
 * Request hooks of the device layer: a table, by file handle, of C
 * functions that answer IOCTL and POLL requests of that file without
 * Python, and the /dev/fuse read loop that consults it.  Generic: the
 * table knows handles, function pointers and opaque contexts, nothing of
 * what the functions do.  Declared once here: cffi reads this file for
 * the Python binding (nmfuse.dev.hooks).
 *
 * A hook answers, or declines (the request then goes to Python as if the
 * table were empty):
 *   ioctl(ctx, cmd, in_size, out_size, &result) -> 1 answered with result
 *         (0 or a positive errno, the caller sees it as ioctl's errno), 0 declined
 *   poll(ctx, events, kh, &revents) -> 1 with revents, 0 declined; kh is
 *         the poll handle when the caller asks for a wake-up, else 0: a
 *         hook that answers revents 0 to such a poll has taken the duty to
 *         wake kh (nmu_hooks_notify); one that cannot declines, and Python
 *         runs the poll again, so a hook must be able to run twice for one poll
 * Removing a hook waits until no call of it is running, so a context may
 * be freed as soon as nmh_hooks_remove returns.
 */
#ifndef NMFUSE_HOOK_H
#define NMFUSE_HOOK_H

#include <stddef.h>
#include <stdint.h>

#define NMU_HOOKS 4096      /* entries: a handle lands at fh % NMU_HOOKS */

struct nmu_hook {
    uint64_t fh;            /* 0: free */
    void *ioctl;            /* int (*)(void *, uint32_t, uint32_t, uint32_t, int32_t *) */
    void *poll;             /* int (*)(void *, uint32_t, uint64_t, uint32_t *) */
    void *ctx;
    int32_t calls;          /* running calls, counted by the readers */
    int32_t pad;
};

struct nmu_hooks {
    struct nmu_hook entry[NMU_HOOKS];
    int32_t notify_fd;      /* where nmu_hooks_notify writes (the /dev/fuse fd), -1: nowhere */
    int32_t pad;
    uint64_t notified;      /* wake-ups written */
};

/* Wake the pollers waiting on kh (FUSE_NOTIFY_POLL), from a hook: the
 * layer above gets this function and the table as its context
 * (int (*)(void *, uint64_t)).  Only hooks call it, so it never writes
 * to a closed fd: the fd is closed once no worker runs.  Returns 0 or -errno. */
int nmu_hooks_notify(void *table, uint64_t kh);

/* Install hooks for fh (non-zero).  Returns 0, or -1 if its entry is
 * taken (the file then simply goes to Python).  Not concurrent with
 * another install or remove of the same entry (the caller serialises). */
int nmu_hooks_install(struct nmu_hooks *t, uint64_t fh, void *ioctl, void *poll, void *ctx);

/* Remove fh's hooks, waiting for the calls already running.  Returns 0,
 * or -1 if fh had none. */
int nmu_hooks_remove(struct nmu_hooks *t, uint64_t fh);

/* Read requests from fd into buf (size bytes) and answer those a hook
 * takes, until one is left for the caller.  Returns its length, 0 once
 * the connection ended, or -errno (EINTR/EAGAIN/ENOENT are retried);
 * *answered counts the requests answered here. */
long nmu_hooks_read(struct nmu_hooks *t, int fd, uint8_t *buf, size_t size, uint64_t *answered);

/* Answer the request in buf (n bytes) if a hook takes it: returns the
 * length of the reply written to out (at most out_size), or 0 if the
 * request is left for Python. */
size_t nmu_hooks_answer(struct nmu_hooks *t, const uint8_t *buf, size_t n, uint8_t *out, size_t out_size);

#endif /* NMFUSE_HOOK_H */
