/* Request hooks by file handle; see hook.h for the contracts. */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "fuse_abi.h"
#include "hook.h"

typedef int (*nmu_ioctl_fn)(void *, uint32_t, uint32_t, uint32_t, int32_t *);
typedef int (*nmu_poll_fn)(void *, uint32_t, uint64_t, uint32_t *);

int nmu_hooks_install(struct nmu_hooks *t, uint64_t fh, void *ioctl, void *poll, void *ctx)
{
    struct nmu_hook *e = &t->entry[fh % NMU_HOOKS];

    if (fh == 0 || __atomic_load_n(&e->fh, __ATOMIC_ACQUIRE) != 0)
        return -1;
    e->ioctl = ioctl;
    e->poll = poll;
    e->ctx = ctx;
    __atomic_store_n(&e->fh, fh, __ATOMIC_SEQ_CST);   /* published last */
    return 0;
}

int nmu_hooks_remove(struct nmu_hooks *t, uint64_t fh)
{
    struct nmu_hook *e = &t->entry[fh % NMU_HOOKS];

    if (fh == 0 || __atomic_load_n(&e->fh, __ATOMIC_ACQUIRE) != fh)
        return -1;
    __atomic_store_n(&e->fh, 0, __ATOMIC_SEQ_CST);
    /* A reader counts itself in before it checks fh: once fh is 0 and the
     * count has been seen at 0, no reader uses the context any more. */
    while (__atomic_load_n(&e->calls, __ATOMIC_SEQ_CST) != 0)
        sched_yield();
    e->ioctl = e->poll = e->ctx = NULL;
    return 0;
}

int nmu_hooks_notify(void *table, uint64_t kh)
{
    struct nmu_hooks *t = table;
    struct {
        struct fuse_out_header h;
        struct fuse_notify_poll_wakeup_out w;
    } msg = {.h = {.len = sizeof msg, .error = FUSE_NOTIFY_POLL_CODE, .unique = 0}, .w = {.kh = kh}};

    if (t->notify_fd < 0)
        return -EBADF;
    if (write(t->notify_fd, &msg, sizeof msg) < 0)
        return -errno;
    __atomic_add_fetch(&t->notified, 1, __ATOMIC_RELAXED);
    return 0;
}

/* Reply: out header, then `size` bytes of body. */
static size_t hook_reply(uint8_t *out, uint64_t unique, const void *body, size_t size)
{
    struct fuse_out_header h = {.len = (uint32_t)(sizeof h + size), .error = 0, .unique = unique};

    memcpy(out, &h, sizeof h);
    memcpy(out + sizeof h, body, size);
    return sizeof h + size;
}

size_t nmu_hooks_answer(struct nmu_hooks *t, const uint8_t *buf, size_t n, uint8_t *out, size_t out_size)
{
    const struct fuse_in_header *in = (const void *)buf;
    struct nmu_hook *e;
    uint64_t fh;
    size_t len = 0;

    if (n < sizeof *in || out_size < sizeof(struct fuse_out_header) + sizeof(struct fuse_ioctl_out))
        return 0;
    if (in->opcode == FUSE_IOCTL && n >= sizeof *in + sizeof(struct fuse_ioctl_in))
        fh = ((const struct fuse_ioctl_in *)(in + 1))->fh;
    else if (in->opcode == FUSE_POLL && n >= sizeof *in + sizeof(struct fuse_poll_in))
        fh = ((const struct fuse_poll_in *)(in + 1))->fh;
    else
        return 0;
    e = &t->entry[fh % NMU_HOOKS];
    if (fh == 0 || __atomic_load_n(&e->fh, __ATOMIC_RELAXED) != fh)
        return 0;                                     /* the common miss, without a write */
    __atomic_add_fetch(&e->calls, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&e->fh, __ATOMIC_SEQ_CST) != fh)
        goto out;                                     /* removed meanwhile */
    if (in->opcode == FUSE_IOCTL) {
        const struct fuse_ioctl_in *a = (const void *)(in + 1);
        struct fuse_ioctl_out r = {0};
        int32_t result = 0;

        if (a->out_size == 0 && e->ioctl &&
            ((nmu_ioctl_fn)e->ioctl)(e->ctx, a->cmd, a->in_size, a->out_size, &result)) {
            r.result = -result;
            len = hook_reply(out, in->unique, &r, sizeof r);
        }
    } else {
        const struct fuse_poll_in *a = (const void *)(in + 1);
        struct fuse_poll_out r = {0};
        uint32_t revents = 0;

        uint64_t kh = a->flags & FUSE_POLL_SCHEDULE_NOTIFY ? a->kh : 0;

        if (e->poll && ((nmu_poll_fn)e->poll)(e->ctx, a->events, kh, &revents)) {
            r.revents = revents;
            len = hook_reply(out, in->unique, &r, sizeof r);
        }
    }
out:
    __atomic_sub_fetch(&e->calls, 1, __ATOMIC_SEQ_CST);
    return len;
}

long nmu_hooks_read(struct nmu_hooks *t, int fd, uint8_t *buf, size_t size, uint64_t *answered)
{
    uint8_t out[64];

    for (;;) {
        ssize_t n = read(fd, buf, size);
        size_t len;

        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
                continue;
            return errno == ENODEV ? 0 : -errno;
        }
        if (n == 0)
            return 0;
        len = nmu_hooks_answer(t, buf, (size_t)n, out, sizeof out);
        if (len == 0)
            return n;
        if (write(fd, out, len) < 0 && errno != ENOENT) {
            /* ENOENT: the caller was interrupted; anything else ends here */
            return errno == ENODEV ? 0 : -errno;
        }
        (*answered)++;
    }
}
