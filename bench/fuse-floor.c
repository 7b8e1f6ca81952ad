/*
 * fuse-floor: the smallest FUSE server that answers what a netmap client
 * asks of /dev/netmap, doing no work at all.  The round trip of an empty
 * ioctl through it is the cost floor of the project's empty-sync benchmark.
 *
 *     fuse-floor [-w WORKERS] [-u] MOUNTPOINT
 *
 * It mounts a regular-file root on MOUNTPOINT (created if missing and then
 * removed at exit), prints "ready" once INIT is answered, and serves from
 * blocking loops, each reading into its own preallocated buffer: by
 * default one loop on /dev/fuse; with -w, WORKERS loops on clones of the
 * channel (FUSE_DEV_IOC_CLONE), as `nmfuse mount --workers`; with -u, FUSE
 * over io_uring as `nmfuse mount --uring` serves it (the same ring code,
 * nmfuse/csrc/uring.c: one queue per possible CPU, each served by a thread
 * pinned to its CPU, beside the /dev/fuse loop).  "ready" comes once every
 * loop serves.  What each request gets:
 *
 *     INIT      plain (no passthrough)     GETATTR  S_IFREG | 0600
 *     OPEN, RELEASE, FLUSH   success       IOCTL    result 0 with out_size
 *     POLL      see below                           zeroed bytes
 *     FORGET, BATCH_FORGET   no reply      DESTROY  success, then exit
 *     anything else          ENOSYS
 *
 * A POLL for POLLIN takes turns, as two netmap clients of a pipe do when a
 * batch fills the ring (bench/turns.c measures it): the files opened first
 * and second (third and fourth, ...) share a turn, held first by the
 * first.  The holder's poll is answered POLLIN once; its next poll hands
 * the turn to the other file, wakes that file's waiting poll
 * (FUSE_NOTIFY_POLL) and is answered 0, as is any poll without the turn.
 * So each side pays what a pipe's sender or receiver pays per batch: a
 * poll that waits, the poll the kernel repeats after the wake-up, and one
 * notification.  A POLL without POLLIN is answered POLLOUT at once.
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
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>

#include "../nmfuse/csrc/uring.h"
#include "../nmfuse/csrc/hook.h"
#include "../nmfuse/csrc/uring.c"
#include "../nmfuse/csrc/hook.c"  /* the queue code can answer hooks; the floor installs none */

#include "fuse_abi.h"

#define MAX_WRITE (128 * 1024)
#define MAX_IOCTL_OUT 16384     /* _IOC_SIZE is 14 bits */
#define BUFFER_SIZE (MAX_WRITE + 8192)
#define MAX_LOOPS 256
#define FUSE_DEV_IOC_CLONE _IOR(229, 0, uint32_t)
#define INIT_EXT (1u << 30)
#define OVER_IO_URING_FLAGS2 (1u << 9)  /* FUSE_OVER_IO_URING, bit 41 */

static const unsigned char zeros[MAX_IOCTL_OUT];

static const char *mountpoint;
static volatile sig_atomic_t stopping;
static int want_uring;
/* Only its notify_fd (set once /dev/fuse is open) is used: notifications
 * are written as nmfuse writes them. */
static struct nmu_hooks notifier;

#define MAX_PAIRS 64

/* The turn two files take (file handles 2k+1 and 2k+2). */
static struct pair {
    pthread_mutex_t lock;
    int holder;                 /* 0 or 1: which file holds the turn */
    int told;                   /* the holder's poll was answered POLLIN */
    uint64_t kh[2];             /* each file's waiting poll, 0 if none */
} pairs[MAX_PAIRS];

/* Where a loop's replies go: a /dev/fuse fd, or an io_uring queue's entry. */
struct sink {
    int fd;
    struct nmu_queue *queue;
};

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
static void reply(const struct sink *sink, uint64_t unique, int error, const void *a, size_t alen,
                  const void *b, size_t blen)
{
    struct fuse_out_header oh;
    struct iovec iov[3];
    int n = 1;

    if (sink->queue) {          /* into the entry's buffers: the next fetch commits it */
        struct nmu_queue *q = sink->queue;

        oh.len = (uint32_t)(sizeof(oh) + alen + blen);
        oh.error = -error;
        oh.unique = unique;
        memcpy(q->headers->in_out, &oh, sizeof(oh));
        if (alen)
            memcpy(q->payload, a, alen);
        if (blen)
            memcpy(q->payload + alen, b, blen);
        q->headers->ring_ent_in_out.payload_sz = (uint32_t)(alen + blen);
        return;
    }

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
    if (writev(sink->fd, iov, n) < 0 && errno != ENOENT && errno != ENODEV)
        perror("fuse-floor: reply");
}

static void do_init(const struct sink *fd, const struct fuse_in_header *ih, const struct fuse_init_in *in)
{
    struct fuse_init_out out;

    memset(&out, 0, sizeof(out));
    if (in->major != FUSE_KERNEL_VERSION) {
        reply(fd, ih->unique, EPROTO, NULL, 0, NULL, 0);
        return;
    }
    if (want_uring && (in->flags & INIT_EXT) && (in->flags2 & OVER_IO_URING_FLAGS2)) {
        out.flags = INIT_EXT;
        out.flags2 = OVER_IO_URING_FLAGS2;
    } else if (want_uring) {
        fprintf(stderr, "fuse-floor: the kernel does not offer FUSE over io_uring\n");
        want_uring = 0;
    }
    out.major = FUSE_KERNEL_VERSION;
    out.minor = in->minor < FUSE_KERNEL_MINOR_VERSION ? in->minor : FUSE_KERNEL_MINOR_VERSION;
    out.max_readahead = in->max_readahead;
    out.max_background = 16;
    out.congestion_threshold = 12;
    out.max_write = MAX_WRITE;
    out.time_gran = 1;
    reply(fd, ih->unique, 0, &out, sizeof(out), NULL, 0);
}

static void do_getattr(const struct sink *fd, const struct fuse_in_header *ih)
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

static void do_ioctl(const struct sink *fd, const struct fuse_in_header *ih, const struct fuse_ioctl_in *in)
{
    struct fuse_ioctl_out out;
    size_t n = in->out_size < sizeof(zeros) ? in->out_size : sizeof(zeros);

    memset(&out, 0, sizeof(out));
    reply(fd, ih->unique, 0, &out, sizeof(out), zeros, n);
}

/* The revents of a poll for POLLIN on file fh (see the file comment). */
static uint32_t take_turns(const struct fuse_poll_in *in)
{
    uint64_t k = in->fh - 1, wake = 0;
    struct pair *p = &pairs[(k / 2) % MAX_PAIRS];
    int me = (int)(k % 2);
    uint32_t revents = 0;

    pthread_mutex_lock(&p->lock);
    if (p->holder == me && !p->told) {
        p->told = 1;
        revents = POLLIN;
    } else {
        if (p->holder == me) {
            p->holder = !me;
            p->told = 0;
            wake = p->kh[!me];
            p->kh[!me] = 0;
        }
        if (in->flags & FUSE_POLL_SCHEDULE_NOTIFY)
            p->kh[me] = in->kh;
    }
    pthread_mutex_unlock(&p->lock);
    if (wake) {
        int rv = nmu_hooks_notify(&notifier, wake);

        if (rv < 0 && rv != -ENOENT && rv != -ENODEV)
            fprintf(stderr, "fuse-floor: notify: %s\n", strerror(-rv));
    }
    return revents;
}

/*
 * Answer one request of n bytes.  Returns 1 after DESTROY, else 0.
 */
static int answer(const struct sink *fd, const unsigned char *request, size_t n)
{
    static uint64_t next_fh = 1;
    const struct fuse_in_header *ih = (const void *)request;
    const void *arg = request + sizeof(*ih);

    if (n < sizeof(*ih) || ih->len != (uint32_t)n)
        return 0;
    {
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
            out.fh = __atomic_fetch_add(&next_fh, 1, __ATOMIC_RELAXED);
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
            struct fuse_poll_in in;

            if ((size_t)n < sizeof(*ih) + sizeof(in)) {
                reply(fd, ih->unique, EINVAL, NULL, 0, NULL, 0);
                break;
            }
            memcpy(&in, arg, sizeof(in));
            if (in.events & POLLIN)
                out.revents = take_turns(&in);
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
    return 0;
}

/*
 * A /dev/fuse loop: serve until a signal, DESTROY or the mount going away.
 * Returns 1 if the mount may still be there (the caller unmounts it), 0 if
 * it is gone.  With until_init, returns 0 once INIT is answered.
 */
static int serve_fd(int fd, unsigned char *request, int until_init)
{
    struct sink sink = { fd, NULL };

    while (!stopping) {
        ssize_t n = read(fd, request, BUFFER_SIZE);

        if (n < 0) {
            if (errno == EINTR || errno == ENOENT || errno == EAGAIN)
                continue;
            if (errno == ENODEV)
                return 0;
            perror("fuse-floor: read");
            return 1;
        }
        if (answer(&sink, request, (size_t)n))
            return 1;
        if (until_init && ((const struct fuse_in_header *)request)->opcode == FUSE_INIT)
            return 0;
    }
    return 0;                   /* the signal handler detached it */
}

static void *clone_loop(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned char *request = aligned_alloc(64, BUFFER_SIZE);

    serve_fd(fd, request, 0);
    free(request);
    return NULL;
}

/* One io_uring queue, served by a thread pinned to its CPU. */
struct uring_loop {
    pthread_t thread;
    struct nmu_queue queue;
    struct nmu_layout *layout;
    int ready;                  /* 1 registered, -errno refused; 0 not yet */
};

static void *uring_loop(void *arg)
{
    struct uring_loop *u = arg;
    struct nmu_queue *q = &u->queue;
    struct sink sink = { -1, q };
    unsigned char *request = aligned_alloc(64, BUFFER_SIZE);
    cpu_set_t set;
    int err;

    CPU_ZERO(&set);
    CPU_SET(q->qid, &set);
    sched_setaffinity(0, sizeof(set), &set);   /* an offline CPU: serve from anywhere */
    q->headers = aligned_alloc(64, sizeof(*q->headers));
    q->payload = aligned_alloc(64, BUFFER_SIZE);
    q->payload_size = BUFFER_SIZE;
    q->layout = u->layout;
    err = nmu_queue_open(q);
    __atomic_store_n(&u->ready, err ? err : 1, __ATOMIC_RELEASE);
    if (!err) {
        for (;;) {
            long n = nmu_queue_next(q, request, BUFFER_SIZE);

            if (n <= 0)
                break;
            answer(&sink, request, (size_t)n);
        }
        nmu_queue_close(q);
    }
    free(request);
    return NULL;
}

static int possible_cpus(void)
{
    FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
    int lo = 0, hi = 0;

    if (!f)
        return (int)sysconf(_SC_NPROCESSORS_CONF);
    if (fscanf(f, "%d-%d", &lo, &hi) < 2)
        hi = lo;
    fclose(f);
    return hi + 1;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    struct stat st;
    char data[160];
    int fd, created = 0, workers = 1, opt, nloops = 0, gone;
    pthread_t clones[MAX_LOOPS];
    struct uring_loop *rings = NULL;
    static struct nmu_layout layout;
    unsigned char *request;

    while ((opt = getopt(argc, argv, "w:u")) != -1) {
        switch (opt) {
        case 'w': workers = atoi(optarg); break;
        case 'u': want_uring = 1; break;
        default: workers = -1; break;
        }
    }
    if (argc - optind != 1 || workers < 1 || workers > MAX_LOOPS) {
        fprintf(stderr, "usage: fuse-floor [-w WORKERS] [-u] MOUNTPOINT\n");
        return 2;
    }
    mountpoint = argv[optind];
    request = aligned_alloc(64, BUFFER_SIZE);
    for (int i = 0; i < MAX_PAIRS; i++)
        pthread_mutex_init(&pairs[i].lock, NULL);

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
    notifier.notify_fd = fd;
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

    serve_fd(fd, request, 1);     /* INIT */
    if (want_uring) {
        int ncpu = possible_cpus();

        layout.in_header_size = sizeof(struct fuse_in_header);
        layout.len_offset = offsetof(struct fuse_in_header, len);
        layout.opcode_offset = offsetof(struct fuse_in_header, opcode);
        layout.op_size[FUSE_IOCTL] = sizeof(struct fuse_ioctl_in);
        layout.op_size[FUSE_POLL] = sizeof(struct fuse_poll_in);
        rings = calloc((size_t)ncpu, sizeof(*rings));
        for (nloops = 0; nloops < ncpu; nloops++) {
            rings[nloops].queue.fuse_fd = fd;
            rings[nloops].queue.qid = (unsigned)nloops;
            rings[nloops].layout = &layout;
            pthread_create(&rings[nloops].thread, NULL, uring_loop, &rings[nloops]);
        }
        for (int i = 0; i < nloops; i++) {
            while (!__atomic_load_n(&rings[i].ready, __ATOMIC_ACQUIRE))
                usleep(1000);
            if (rings[i].ready < 0) {
                fprintf(stderr, "fuse-floor: io_uring queue %d: %s\n", i, strerror(-rings[i].ready));
                return 1;
            }
        }
    } else {
        for (nloops = 0; nloops < workers - 1; nloops++) {
            int clone = open("/dev/fuse", O_RDWR | O_CLOEXEC);
            uint32_t master = (uint32_t)fd;

            if (clone < 0 || ioctl(clone, FUSE_DEV_IOC_CLONE, &master) < 0) {
                perror("fuse-floor: cloning /dev/fuse");
                return 1;
            }
            pthread_create(&clones[nloops], NULL, clone_loop, (void *)(intptr_t)clone);
        }
    }
    printf("ready\n");
    fflush(stdout);

    gone = !serve_fd(fd, request, 0);
    if (!gone && umount2(mountpoint, 0) < 0 && errno == EBUSY)
        umount2(mountpoint, MNT_DETACH);
    /* clients still holding the file get errors once the fd is closed */
    for (int i = 0; i < nloops; i++) {
        if (rings) {
            rings[i].queue.stop = 1;
            pthread_join(rings[i].thread, NULL);
        } else {
            pthread_join(clones[i], NULL);
        }
    }
    close(fd);
    if (created)
        unlink(mountpoint);
    return 0;

fail:
    if (created)
        unlink(mountpoint);
    return 1;
}
