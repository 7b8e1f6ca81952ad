/*
 * fuse-floor: the smallest FUSE server that answers what a netmap client
 * asks of /dev/netmap, doing no work at all.  The round trip of an empty
 * ioctl through it is the cost floor of the project's empty-sync benchmark.
 *
 *     fuse-floor MOUNTPOINT
 *
 * It mounts a regular-file root on MOUNTPOINT (created if missing and then
 * removed at exit), prints "ready" once INIT is answered, and serves from a
 * single-threaded blocking read loop into one preallocated buffer:
 *
 *     INIT      plain (no passthrough)     GETATTR  S_IFREG | 0600
 *     OPEN, RELEASE, FLUSH   success       IOCTL    result 0 with out_size
 *     POLL      revents POLLOUT                     zeroed bytes
 *     FORGET, BATCH_FORGET   no reply      DESTROY  success, then exit
 *     anything else          ENOSYS
 *
 * SIGINT/SIGTERM detach the mount and end the loop; so does the mount going
 * away under it (read() then fails with ENODEV).
 *
 * The kernel structs come from nmfuse/abi/fuse_abi.h, the declaration the
 * daemon uses too (protocol 7.45; the system header is older).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "fuse_abi.h"

#define MAX_WRITE (128 * 1024)
#define MAX_IOCTL_OUT 16384     /* _IOC_SIZE is 14 bits */

/* Every request is read into this one buffer. */
static unsigned char request[MAX_WRITE + 8192] __attribute__((aligned(64)));
static const unsigned char zeros[MAX_IOCTL_OUT];

static const char *mountpoint;
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
    /*
     * Detach at once: with no client left the blocked read() then fails
     * with ENODEV, even if the signal came just before it.  umount2 is a
     * plain system call, safe in a handler.
     */
    umount2(mountpoint, MNT_DETACH);
}

/* Send one reply: the out header, then up to two body pieces. */
static void reply(int fd, uint64_t unique, int error, const void *a, size_t alen,
                  const void *b, size_t blen)
{
    struct fuse_out_header oh;
    struct iovec iov[3];
    int n = 1;

    iov[0].iov_base = &oh;
    iov[0].iov_len = sizeof(oh);
    if (alen) {
        iov[n].iov_base = (void *)a;
        iov[n++].iov_len = alen;
    }
    if (blen) {
        iov[n].iov_base = (void *)b;
        iov[n++].iov_len = blen;
    }
    oh.len = (uint32_t)(sizeof(oh) + alen + blen);
    oh.error = -error;
    oh.unique = unique;
    /* ENOENT: the request was interrupted meanwhile; nothing to do */
    if (writev(fd, iov, n) < 0 && errno != ENOENT && errno != ENODEV)
        perror("fuse-floor: reply");
}

static void do_init(int fd, const struct fuse_in_header *ih, const struct fuse_init_in *in)
{
    struct fuse_init_out out;

    memset(&out, 0, sizeof(out));
    if (in->major != FUSE_KERNEL_VERSION) {
        reply(fd, ih->unique, EPROTO, NULL, 0, NULL, 0);
        return;
    }
    out.major = FUSE_KERNEL_VERSION;
    out.minor = in->minor < FUSE_KERNEL_MINOR_VERSION ? in->minor : FUSE_KERNEL_MINOR_VERSION;
    out.max_readahead = in->max_readahead;
    out.max_background = 16;
    out.congestion_threshold = 12;
    out.max_write = MAX_WRITE;
    out.time_gran = 1;
    reply(fd, ih->unique, 0, &out, sizeof(out), NULL, 0);
    printf("ready\n");
    fflush(stdout);
}

static void do_getattr(int fd, const struct fuse_in_header *ih)
{
    struct fuse_attr_out out;

    memset(&out, 0, sizeof(out));
    out.attr_valid = 1;
    out.attr.ino = ih->nodeid;
    out.attr.mode = S_IFREG | 0600;
    out.attr.nlink = 1;
    out.attr.blksize = 4096;
    reply(fd, ih->unique, 0, &out, sizeof(out), NULL, 0);
}

static void do_ioctl(int fd, const struct fuse_in_header *ih, const struct fuse_ioctl_in *in)
{
    struct fuse_ioctl_out out;
    size_t n = in->out_size < sizeof(zeros) ? in->out_size : sizeof(zeros);

    memset(&out, 0, sizeof(out));
    reply(fd, ih->unique, 0, &out, sizeof(out), zeros, n);
}

/*
 * Serve until a signal, DESTROY or the mount going away.  Returns 1 if the
 * mount may still be there (the caller unmounts it), 0 if it is gone.
 */
static int serve(int fd)
{
    static uint64_t next_fh = 1;

    while (!stopping) {
        ssize_t n = read(fd, request, sizeof(request));
        const struct fuse_in_header *ih = (const void *)request;
        const void *arg = request + sizeof(*ih);

        if (n < 0) {
            if (errno == EINTR || errno == ENOENT || errno == EAGAIN)
                continue;
            if (errno == ENODEV)
                return 0;
            perror("fuse-floor: read");
            return 1;
        }
        if ((size_t)n < sizeof(*ih) || ih->len != (uint32_t)n)
            continue;

        switch (ih->opcode) {
        case FUSE_INIT:
            if ((size_t)n < sizeof(*ih) + 8)
                reply(fd, ih->unique, EINVAL, NULL, 0, NULL, 0);
            else {
                /* an older kernel sends a shorter fuse_init_in */
                struct fuse_init_in in;
                size_t len = (size_t)n - sizeof(*ih);

                memset(&in, 0, sizeof(in));
                memcpy(&in, arg, len < sizeof(in) ? len : sizeof(in));
                do_init(fd, ih, &in);
            }
            break;
        case FUSE_GETATTR:
            do_getattr(fd, ih);
            break;
        case FUSE_OPEN: {
            struct fuse_open_out out;

            memset(&out, 0, sizeof(out));
            out.fh = next_fh++;
            reply(fd, ih->unique, 0, &out, sizeof(out), NULL, 0);
            break;
        }
        case FUSE_RELEASE:
        case FUSE_FLUSH:
            reply(fd, ih->unique, 0, NULL, 0, NULL, 0);
            break;
        case FUSE_IOCTL:
            if ((size_t)n < sizeof(*ih) + sizeof(struct fuse_ioctl_in))
                reply(fd, ih->unique, EINVAL, NULL, 0, NULL, 0);
            else
                do_ioctl(fd, ih, arg);
            break;
        case FUSE_POLL: {
            struct fuse_poll_out out = {POLLOUT, 0};

            reply(fd, ih->unique, 0, &out, sizeof(out), NULL, 0);
            break;
        }
        case FUSE_FORGET:
        case FUSE_BATCH_FORGET:
            break;              /* the kernel expects no reply */
        case FUSE_DESTROY:
            reply(fd, ih->unique, 0, NULL, 0, NULL, 0);
            return 1;
        default:
            reply(fd, ih->unique, ENOSYS, NULL, 0, NULL, 0);
            break;
        }
    }
    return 0;                   /* the signal handler detached it */
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    struct stat st;
    char data[160];
    int fd, created = 0;

    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: fuse-floor MOUNTPOINT\n");
        return 2;
    }
    mountpoint = argv[1];

    if (stat(mountpoint, &st) < 0) {
        int f = open(mountpoint, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);

        if (f < 0) {
            fprintf(stderr, "fuse-floor: cannot create %s: %s\n", mountpoint, strerror(errno));
            return 1;
        }
        close(f);
        created = 1;
    }

    fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        perror("fuse-floor: /dev/fuse");
        goto fail;
    }
    snprintf(data, sizeof(data),
             "fd=%d,rootmode=100600,user_id=0,group_id=0,allow_other,default_permissions", fd);
    if (mount("fuse-floor", mountpoint, "fuse.fuse-floor", MS_NOSUID | MS_NODEV, data) < 0) {
        fprintf(stderr, "fuse-floor: mount on %s: %s\n", mountpoint, strerror(errno));
        close(fd);
        goto fail;
    }

    /* no SA_RESTART: a signal interrupts the blocking read() */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (serve(fd) && umount2(mountpoint, 0) < 0 && errno == EBUSY)
        umount2(mountpoint, MNT_DETACH);
    /* clients still holding the file get errors once the fd is closed */
    close(fd);
    if (created)
        unlink(mountpoint);
    return 0;

fail:
    if (created)
        unlink(mountpoint);
    return 1;
}
