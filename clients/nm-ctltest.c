/*
 * nm-ctltest: control-plane conformance test for a netmap device.
 *
 * Written only against the netmap user ABI (netmap_abi.h, nm_user.h): every
 * check states the answer the netmap kernel module gives, and the netmap
 * function (netmap.c, netmap_legacy.c, netmap_null.c, netmap_pipe.c, ...)
 * that gives it, so the program passes against the real module on Linux and
 * against any user-space implementation that wants to be indistinguishable.
 *
 *     nm-ctltest [-l] [-v] [-P] [-s SEED] [-t SECONDS] [CHECK...]
 *
 * Output is TAP-like: "ok N - name" or "not ok N - name: what was expected
 * and what came back", then "P passed, F failed".  Exit 0 only if all pass.
 * Every check opens its own fds on nm_device_path() ($NETMAP_DEVICE or
 * /dev/netmap) and closes them (and its mappings) before the next one.
 *
 * What "the bytes netmap writes back" means here (netmap on Linux copies
 * the nmreq_header back to the caller after every NIOCCTRL, even on error):
 *
 *   WB_SAME   rejected before nmreq_copyin touched anything (API version,
 *             nr_reserved): the header comes back byte for byte.
 *   WB_EARLY  nmreq_copyin failed before it built its kernel copy (body
 *             pointer/type mismatch): nr_body, nr_options, nr_name are the
 *             user's, and nr_reserved is 1 (nmreq_copyin sets it before this
 *             exit and only nmreq_copyout clears it, L3400-3415).
 *   WB_FULL   everything else: nr_body/nr_options are the user's pointers
 *             again and nr_reserved is 0 (nmreq_copyout, also on the
 *             out_restore path of nmreq_copyin), and on success nr_name[63]
 *             is 0 (netmap_ioctl sanitizes the name).
 *
 * The request body is written back only on success (nmreq_copyout), so on
 * every expected error the body must be unchanged; option headers are
 * written back with their nro_status whenever nmreq_copyout runs, which on
 * Linux includes a failed copy of the options (see section 3); an option
 * never reached keeps the sentinel status the test wrote.
 *
 * Numbers in parentheses are lines of FreeBSD's netmap.c; "L" numbers are
 * lines of netmap.c as netmap on Linux has it (upstream 89607e14), whose
 * request copy differs and is the one followed here.
 *
 * Checks marked [pipe] need netmap pipes (x{N / x}N names created on demand
 * by netmap_get_pipe_na); -P skips them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>

#include "nm_user.h"

#define BUF_SIZE 2048            /* buffer size of netmap's global allocator */
#define NOSUCH "nosuchport0"     /* a port name that must not exist */
#define OPT_SENTINEL 0x5eedu     /* nro_status value that no netmap path writes */
#define MAX_FDS 8
#define MAX_MAPS 8
#define MAX_ALLOCS 64

/* CSB entries (struct nm_csb_atok / nm_csb_ktoa of netmap.h): 64 bytes each. */
struct csb_atok {
    uint32_t head, cur, appl_need_kick, sync_flags;
    uint32_t pad[12];
};
struct csb_ktoa {
    uint32_t hwcur, hwtail, kern_need_kick;
    uint32_t pad[13];
};

/* ------------------------------------------------------------------ */
/* Harness                                                             */

static struct {
    int verbose;
    int skip_pipes;
    uint64_t seed;
    unsigned timeout_s;
    size_t page;
    char *edge;   /* a read-write page, immediately followed by ... */
    char *hole;   /* ... a page that is never mapped */
} g = { .seed = 0x6e6d66757a7aull, .timeout_s = 30 };

struct ctx {
    const char *name;
    jmp_buf jb;
    char msg[1024];
    char step[200];
    int fds[MAX_FDS];
    int nfds;
    struct { void *p; size_t len; } maps[MAX_MAPS];
    int nmaps;
    void *allocs[MAX_ALLOCS];
    int nallocs;
};

static struct ctx cur_ctx;   /* static: it survives the longjmp of fail() */

/* Watchdog: a check stuck in an ioctl (daemon hung) ends the run cleanly. */
static struct {
    pthread_mutex_t mu;
    int armed, number, passed, failed;
    time_t deadline;
    unsigned long cmd;   /* the ioctl under way, if any */
    char name[64];
    char step[200];
} wd = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        char line[512];
        int n = 0;

        usleep(100000);
        pthread_mutex_lock(&wd.mu);
        if (wd.armed && time(NULL) > wd.deadline)
            n = snprintf(line, sizeof(line),
                         "not ok %d - %s: timed out (no answer from the device to ioctl %#lx; "
                         "last step: %s)\n%d passed, %d failed\n",
                         wd.number, wd.name, wd.cmd, wd.step[0] ? wd.step : "-", wd.passed, wd.failed + 1);
        pthread_mutex_unlock(&wd.mu);
        if (n > 0) {
            if (write(STDOUT_FILENO, line, (size_t)n) < 0)
                _exit(3);
            _exit(1);
        }
    }
    return NULL;
}

static const char *ename(int e)
{
    static char buf[4][24];
    static int k;

    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case ENOTTY: return "ENOTTY";
    case ENOSPC: return "ENOSPC";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case EPROTO: return "EPROTO";
    case EMSGSIZE: return "EMSGSIZE";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOTCONN: return "ENOTCONN";
    case ENOBUFS: return "ENOBUFS";
    case ETIMEDOUT: return "ETIMEDOUT";
    }
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "errno %d", e);
    return buf[k];
}

/* "EINVAL (Invalid argument)" or "success". */
static const char *edesc(int e)
{
    static char buf[4][96];
    static int k;

    if (e == 0)
        return "success";
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s (%s)", ename(e), strerror(e));
    return buf[k];
}

/* An nro_status value. */
static const char *sdesc(uint32_t s)
{
    if (s == OPT_SENTINEL)
        return "untouched (the sentinel the test wrote)";
    return s == 0 ? "0" : edesc((int)s);
}

static void vnote(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vnote(struct ctx *c, const char *fmt, ...)
{
    va_list ap;

    if (!g.verbose)
        return;
    printf("# %s: ", c->name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* Name the step under way (shown in failures, in -v output and on timeouts). */
static void vstep(struct ctx *c, const char *fmt, va_list ap)
{
    vsnprintf(c->step, sizeof(c->step), fmt, ap);
    pthread_mutex_lock(&wd.mu);
    snprintf(wd.step, sizeof(wd.step), "%s", c->step);
    pthread_mutex_unlock(&wd.mu);
    vnote(c, "-- %s", c->step);
}

static void step(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void step(struct ctx *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vstep(c, fmt, ap);
    va_end(ap);
}

static void fail(struct ctx *c, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void fail(struct ctx *c, const char *fmt, ...)
{
    va_list ap;
    int n = 0;

    if (c->step[0])
        n = snprintf(c->msg, sizeof(c->msg), "[%s] ", c->step);
    va_start(ap, fmt);
    vsnprintf(c->msg + n, sizeof(c->msg) - (size_t)n, fmt, ap);
    va_end(ap);
    longjmp(c->jb, 1);
}

#define CHECK(c, cond, ...) do { if (!(cond)) fail((c), __VA_ARGS__); } while (0)

static void expect_err(struct ctx *c, int got, int want, const char *what)
{
    CHECK(c, got == want, "%s: expected %s, got %s", what, edesc(want), edesc(got));
    vnote(c, "%s -> %s", what, edesc(got));
}

static int dev_open(struct ctx *c)
{
    int fd = open(nm_device_path(), O_RDWR | O_CLOEXEC);

    CHECK(c, fd >= 0, "open %s: %s", nm_device_path(), edesc(errno));
    CHECK(c, c->nfds < MAX_FDS, "harness: too many fds");
    c->fds[c->nfds++] = fd;
    return fd;
}

static void dev_close(struct ctx *c, int fd)
{
    int i;

    for (i = 0; i < c->nfds; i++) {
        if (c->fds[i] == fd) {
            c->fds[i] = c->fds[--c->nfds];
            break;
        }
    }
    close(fd);
}

static void *zalloc(struct ctx *c, size_t n)
{
    void *p = NULL;

    CHECK(c, c->nallocs < MAX_ALLOCS, "harness: too many allocations");
    CHECK(c, posix_memalign(&p, 64, n ? n : 1) == 0, "harness: out of memory");
    memset(p, 0, n);
    c->allocs[c->nallocs++] = p;
    return p;
}

static char *map_fd(struct ctx *c, int fd, size_t len)
{
    void *p;

    CHECK(c, c->nmaps < MAX_MAPS, "harness: too many mappings");
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(c, p != MAP_FAILED, "mmap(%zu, PROT_READ|PROT_WRITE, MAP_SHARED) of the fd: %s", len, edesc(errno));
    c->maps[c->nmaps].p = p;
    c->maps[c->nmaps++].len = len;
    return p;
}

static void unmap_all(struct ctx *c)
{
    while (c->nmaps > 0) {
        c->nmaps--;
        munmap(c->maps[c->nmaps].p, c->maps[c->nmaps].len);
    }
}

static void cleanup(struct ctx *c)
{
    unmap_all(c);
    while (c->nfds > 0)
        close(c->fds[--c->nfds]);
    while (c->nallocs > 0)
        free(c->allocs[--c->nallocs]);
}

/* The unmapped page (checked to be still unmapped). */
static void *hole(struct ctx *c)
{
    CHECK(c, msync(g.hole, g.page, MS_ASYNC) < 0 && errno == ENOMEM,
          "harness: the page kept unmapped for EFAULT tests got mapped again");
    return g.hole;
}

/* The last n bytes of the read-write page that precedes the hole, zeroed. */
static void *edge_tail(struct ctx *c, size_t n)
{
    (void)hole(c);
    memset(g.edge, 0, g.page);
    return g.edge + g.page - n;
}

static int xioctl(int fd, unsigned long cmd, void *arg)
{
    int rv;

    pthread_mutex_lock(&wd.mu);
    wd.cmd = cmd;
    pthread_mutex_unlock(&wd.mu);
    rv = ioctl(fd, cmd, arg) < 0 ? errno : 0;
    return rv;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

enum wb { WB_SAME, WB_EARLY, WB_FULL };

static const char *reqname(unsigned t)
{
    static const char *const names[] = {
        "type 0", "REGISTER", "PORT_INFO_GET", "VALE_ATTACH", "VALE_DETACH", "VALE_LIST",
        "PORT_HDR_SET", "PORT_HDR_GET", "VALE_NEWIF", "VALE_DELIF", "VALE_POLLING_ENABLE",
        "VALE_POLLING_DISABLE", "POOLS_INFO_GET", "SYNC_KLOOP_START", "SYNC_KLOOP_STOP",
        "CSB_ENABLE",
    };
    static char buf[24];

    if (t < sizeof(names) / sizeof(names[0]))
        return names[t];
    snprintf(buf, sizeof(buf), "type %u", t);
    return buf;
}

static void describe(const struct nmreq_header *h, char *out, size_t len)
{
    snprintf(out, len, "NIOCCTRL %s \"%.*s\"", reqname(h->nr_reqtype),
             (int)strnlen(h->nr_name, sizeof(h->nr_name)), h->nr_name);
}

static void hdr_init(struct nmreq_header *h, uint16_t type, const char *name, void *body)
{
    memset(h, 0, sizeof(*h));
    h->nr_version = NETMAP_API;
    h->nr_reqtype = type;
    if (name)
        memcpy(h->nr_name, name, strnlen(name, sizeof(h->nr_name)));
    h->nr_body = (uintptr_t)body;
}

static void opt_init(void *opt, uint32_t type)
{
    struct nmreq_option *o = opt;

    memset(o, 0, sizeof(*o));
    o->nro_reqtype = type;
    o->nro_status = OPT_SENTINEL;
}

static void opt_link(void *a, void *b)
{
    ((struct nmreq_option *)a)->nro_next = (uintptr_t)b;
}

/* The header netmap leaves behind (see WB_* at the top). */
static void check_hdr(struct ctx *c, const struct nmreq_header *sent, const struct nmreq_header *got,
                      int err, enum wb wb, const char *what)
{
    if (wb == WB_SAME) {
        CHECK(c, memcmp(sent, got, sizeof(*got)) == 0,
              "%s: header changed (version %u->%u, reserved %u->%u, body %#" PRIx64 "->%#" PRIx64
              ", options %#" PRIx64 "->%#" PRIx64 "); netmap rejects this before touching it",
              what, sent->nr_version, got->nr_version, sent->nr_reserved, got->nr_reserved,
              sent->nr_body, got->nr_body, sent->nr_options, got->nr_options);
        return;
    }
    CHECK(c, got->nr_version == sent->nr_version && got->nr_reqtype == sent->nr_reqtype,
          "%s: header came back with nr_version %u nr_reqtype %u, sent %u %u",
          what, got->nr_version, got->nr_reqtype, sent->nr_version, sent->nr_reqtype);
    CHECK(c, got->nr_body == sent->nr_body,
          "%s: nr_body came back as %#" PRIx64 ", expected the user's pointer %#" PRIx64,
          what, got->nr_body, sent->nr_body);
    CHECK(c, got->nr_options == sent->nr_options,
          "%s: nr_options came back as %#" PRIx64 ", expected the user's pointer %#" PRIx64,
          what, got->nr_options, sent->nr_options);
    if (wb == WB_EARLY) {
        CHECK(c, got->nr_reserved == 1,
              "%s: nr_reserved came back as %u, expected 1 (nmreq_copyin sets it before this exit, L3400)",
              what, got->nr_reserved);
    } else {
        CHECK(c, got->nr_reserved == 0, "%s: nr_reserved came back as %u, expected 0", what, got->nr_reserved);
    }
    CHECK(c, memcmp(got->nr_name, sent->nr_name, sizeof(got->nr_name) - 1) == 0,
          "%s: nr_name changed: \"%.64s\"", what, got->nr_name);
    if (err == 0)
        CHECK(c, got->nr_name[sizeof(got->nr_name) - 1] == '\0',
              "%s: nr_name[63] came back as %#x, expected 0 (netmap_ioctl sanitizes nr_name)",
              what, (unsigned char)got->nr_name[63]);
    else
        CHECK(c, got->nr_name[63] == '\0' || got->nr_name[63] == sent->nr_name[63],
              "%s: nr_name[63] came back as %#x", what, (unsigned char)got->nr_name[63]);
}

/*
 * Send h on fd and check errno and header; when the request is expected to
 * fail, also check that the first body_len bytes of the body are unchanged.
 * Returns the errno (0 on success).
 */
static int ctrl_expect(struct ctx *c, int fd, struct nmreq_header *h, size_t body_len, int want, enum wb wb)
{
    struct nmreq_header sent = *h;
    unsigned char body[NETMAP_REQ_MAXSIZE];
    char what[160];
    int err;
    size_t i;

    describe(&sent, what, sizeof(what));
    if (body_len > sizeof(body))
        body_len = sizeof(body);
    if (body_len)
        memcpy(body, (void *)(uintptr_t)h->nr_body, body_len);
    err = xioctl(fd, NIOCCTRL, h);
    expect_err(c, err, want, what);
    check_hdr(c, &sent, h, err, wb, what);
    if (err && body_len) {
        const unsigned char *now = (const unsigned char *)(uintptr_t)sent.nr_body;
        for (i = 0; i < body_len && now[i] == body[i]; i++)
            ;
        CHECK(c, i == body_len,
              "%s: body byte %zu changed (%#x -> %#x) although the request failed "
              "(nmreq_copyout copies the body back only on success)", what, i, body[i], now[i]);
    }
    return err;
}

/* The common case: build h (type, name, body), name the step, send it and
 * check errno, header and body as ctrl_expect does with WB_FULL. */
static int expect_req(struct ctx *c, int fd, struct nmreq_header *h, uint16_t type, const char *name, void *body,
                      size_t body_len, int want, const char *fmt, ...) __attribute__((format(printf, 9, 10)));
static int expect_req(struct ctx *c, int fd, struct nmreq_header *h, uint16_t type, const char *name, void *body,
                      size_t body_len, int want, const char *fmt, ...)
{
    va_list ap;

    hdr_init(h, type, name, body);
    va_start(ap, fmt);
    vstep(c, fmt, ap);
    va_end(ap);
    return ctrl_expect(c, fd, h, body_len, want, WB_FULL);
}

static void expect_opt(struct ctx *c, const void *opt, uint32_t type, const void *next,
                       uint32_t status, const char *label)
{
    const struct nmreq_option *o = opt;

    CHECK(c, o->nro_next == (uintptr_t)next,
          "%s: nro_next came back as %#" PRIx64 ", expected the user's pointer %#" PRIxPTR,
          label, o->nro_next, (uintptr_t)next);
    CHECK(c, o->nro_reqtype == type, "%s: nro_reqtype came back as %u, sent %u", label, o->nro_reqtype, type);
    CHECK(c, o->nro_status == status, "%s: nro_status is %s, expected %s", label,
          sdesc(o->nro_status), sdesc(status));
    vnote(c, "%s: nro_status %s", label, sdesc(o->nro_status));
}

/* The fd is not bound to any port (netmap_ioctl NIOCTXSYNC: np_nifp == NULL). */
static void expect_unbound(struct ctx *c, int fd)
{
    expect_err(c, xioctl(fd, NIOCTXSYNC, NULL), ENXIO, "NIOCTXSYNC (fd must not be registered)");
}

/* ------------------------------------------------------------------ */
/* Null ports and their memory                                         */

static void reg_null(struct nmreq_register *r, uint16_t txr, uint16_t rxr, uint32_t txs, uint32_t rxs)
{
    memset(r, 0, sizeof(*r));
    r->nr_mode = NR_REG_NULL;
    r->nr_mem_id = 1;
    r->nr_tx_rings = txr;
    r->nr_rx_rings = rxr;
    r->nr_tx_slots = txs;
    r->nr_rx_slots = rxs;
}

/*
 * REGISTER the null port described by *r (options: a chain or NULL) and
 * check the body netmap writes back (netmap_ioctl REGISTER, 2854-2886):
 * a null adapter takes rings and slots from the request
 * (netmap_get_null_na), has no host rings, lives in the allocator asked for.
 */
static void null_register(struct ctx *c, int fd, const char *name, struct nmreq_register *r, void *opts)
{
    struct nmreq_register want = *r;
    struct nmreq_header h;

    hdr_init(&h, NETMAP_REQ_REGISTER, name, r);
    h.nr_options = (uintptr_t)opts;
    ctrl_expect(c, fd, &h, 0, 0, WB_FULL);
    CHECK(c, r->nr_tx_rings == want.nr_tx_rings && r->nr_rx_rings == want.nr_rx_rings,
          "body: nr_tx_rings/nr_rx_rings %u/%u, expected %u/%u",
          r->nr_tx_rings, r->nr_rx_rings, want.nr_tx_rings, want.nr_rx_rings);
    CHECK(c, r->nr_tx_slots == want.nr_tx_slots && r->nr_rx_slots == want.nr_rx_slots,
          "body: nr_tx_slots/nr_rx_slots %u/%u, expected %u/%u",
          r->nr_tx_slots, r->nr_rx_slots, want.nr_tx_slots, want.nr_rx_slots);
    CHECK(c, r->nr_host_tx_rings == 0 && r->nr_host_rx_rings == 0,
          "body: nr_host_tx_rings/nr_host_rx_rings %u/%u, expected 0/0 (null ports have no host rings)",
          r->nr_host_tx_rings, r->nr_host_rx_rings);
    CHECK(c, r->nr_mem_id == want.nr_mem_id, "body: nr_mem_id %u, expected %u", r->nr_mem_id, want.nr_mem_id);
    CHECK(c, r->nr_memsize > 0, "body: nr_memsize is 0");
    CHECK(c, r->nr_offset < r->nr_memsize, "body: nr_offset %" PRIu64 " outside nr_memsize %" PRIu64,
          r->nr_offset, r->nr_memsize);
    CHECK(c, r->nr_extra_bufs == want.nr_extra_bufs, "body: nr_extra_bufs %u, expected %u",
          r->nr_extra_bufs, want.nr_extra_bufs);
    CHECK(c, r->nr_mode == want.nr_mode && r->nr_ringid == want.nr_ringid && r->nr_flags == want.nr_flags,
          "body: nr_mode/nr_ringid/nr_flags changed to %u/%u/%#" PRIx64,
          r->nr_mode, r->nr_ringid, r->nr_flags);
    vnote(c, "registered: nr_offset %" PRIu64 " nr_memsize %" PRIu64 " mem_id %u",
          r->nr_offset, r->nr_memsize, r->nr_mem_id);
}

static int null_open(struct ctx *c, struct nmreq_register *r, uint16_t txr, uint16_t rxr,
                     uint32_t slots, uint32_t extra, uint64_t flags)
{
    int fd = dev_open(c);

    reg_null(r, txr, rxr, slots, slots);
    r->nr_extra_bufs = extra;
    r->nr_flags = flags;
    step(c, "REGISTER null port %u tx / %u rx rings, %u slots, %u extra buffers, flags %#" PRIx64,
         txr, rxr, slots, extra, flags);
    null_register(c, fd, "ctlnull", r, NULL);
    return fd;
}

struct portview {
    char *mem;
    size_t size;
    struct netmap_if *nifp;
};

static int in_map(const struct portview *pv, const void *p, size_t len)
{
    const char *q = p;
    return q >= pv->mem && len <= pv->size && (size_t)(q - pv->mem) <= pv->size - len;
}

static void map_port(struct ctx *c, int fd, const struct nmreq_register *r, struct portview *pv)
{
    step(c, "mmap nr_memsize %" PRIu64 " and find the netmap_if at nr_offset %" PRIu64,
         r->nr_memsize, r->nr_offset);
    pv->size = (size_t)r->nr_memsize;
    pv->mem = map_fd(c, fd, pv->size);
    pv->nifp = NETMAP_IF(pv->mem, r->nr_offset);
    CHECK(c, in_map(pv, pv->nifp, sizeof(*pv->nifp)), "netmap_if at nr_offset is outside the mapping");
}

/* A set of buffer indexes, to check that they are distinct. */
struct idxset {
    uint32_t *v;
    size_t n, cap;
};

static void idx_init(struct ctx *c, struct idxset *s, size_t cap)
{
    s->v = zalloc(c, cap * sizeof(uint32_t));
    s->n = 0;
    s->cap = cap;
}

static void idx_add(struct ctx *c, struct idxset *s, uint32_t idx)
{
    CHECK(c, s->n < s->cap, "more buffers than the rings and lists should hold (%zu)", s->cap);
    s->v[s->n++] = idx;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void idx_unique(struct ctx *c, struct idxset *s, const char *what)
{
    size_t i;

    qsort(s->v, s->n, sizeof(uint32_t), cmp_u32);
    for (i = 1; i < s->n; i++)
        CHECK(c, s->v[i] != s->v[i - 1], "%s: buffer index %u used twice", what, s->v[i]);
    vnote(c, "%s: %zu distinct buffer indexes", what, s->n);
}

static struct netmap_ring *ring_at(const struct portview *pv, ssize_t ofs)
{
    return (struct netmap_ring *)(void *)((char *)pv->nifp + ofs);
}

/*
 * One bound ring as netmap creates it: num_slots from the request, buffer
 * size of the allocator, ringid = index, head = cur = 0 and tail = the
 * kring's hwtail: num_slots - 1 for TX, 0 for RX (netmap_krings_create,
 * 908-912); every slot holds a valid buffer (0 and 1 are netmap's reserved
 * indexes), distinct from every other.
 */
static void check_ring(struct ctx *c, const struct portview *pv, const struct netmap_ring *ring,
                       int rx, unsigned i, uint32_t slots, struct idxset *set, int dir[2])
{
    const char *t = rx ? "RX" : "TX";
    uint32_t j;

    CHECK(c, in_map(pv, ring, sizeof(*ring)), "%s ring %u: outside the mapping", t, i);
    CHECK(c, ring->num_slots == slots, "%s ring %u: num_slots %u, expected %u", t, i, ring->num_slots, slots);
    CHECK(c, in_map(pv, ring, sizeof(*ring) + (size_t)slots * sizeof(struct netmap_slot)),
          "%s ring %u: slots extend past the mapping", t, i);
    CHECK(c, ring->nr_buf_size == BUF_SIZE, "%s ring %u: nr_buf_size %u, expected %u",
          t, i, ring->nr_buf_size, BUF_SIZE);
    CHECK(c, ring->ringid == i, "%s ring %u: ringid %u", t, i, ring->ringid);
    CHECK(c, ring->dir <= 1, "%s ring %u: dir %u", t, i, ring->dir);
    if (dir[rx] < 0)
        dir[rx] = ring->dir;
    CHECK(c, ring->dir == dir[rx], "%s ring %u: dir %u, other %s rings have %d", t, i, ring->dir, t, dir[rx]);
    CHECK(c, ring->head == 0 && ring->cur == 0, "%s ring %u: head/cur %u/%u, expected 0/0",
          t, i, ring->head, ring->cur);
    CHECK(c, ring->tail == (rx ? 0 : slots - 1), "%s ring %u: tail %u, expected %u",
          t, i, ring->tail, rx ? 0 : slots - 1);
    for (j = 0; j < slots; j++) {
        uint32_t idx = ring->slot[j].buf_idx;
        CHECK(c, idx >= 2, "%s ring %u slot %u: buf_idx %u (0 and 1 are reserved)", t, i, j, idx);
        CHECK(c, in_map(pv, NETMAP_BUF(ring, idx), ring->nr_buf_size),
              "%s ring %u slot %u: buffer %u lies outside the mapping", t, i, j, idx);
        idx_add(c, set, idx);
    }
}

/* A null port registered on a new fd and mapped, with an index set sized
 * for its ring slots and extra buffers; returns the fd. */
struct nullport {
    struct nmreq_register r;
    struct portview pv;
    struct idxset set;
};

static int null_mapped(struct ctx *c, struct nullport *np, uint16_t txr, uint16_t rxr, uint32_t slots,
                       uint32_t extra, uint64_t flags)
{
    int fd = null_open(c, &np->r, txr, rxr, slots, extra, flags);

    map_port(c, fd, &np->r, &np->pv);
    idx_init(c, &np->set, (txr + rxr) * slots + extra);
    return fd;
}

/*
 * The netmap_if of a registration: ring counts from the request; ring_ofs
 * holds TX (hw, host) then RX (hw, host) entries, 0 for every ring this fd
 * did not bind (netmap_interp_ringid: NR_TX_RINGS_ONLY / NR_RX_RINGS_ONLY
 * leave a direction empty).  netmap itself reports one (fake, unbound) host
 * ring per direction for ports without host rings; 0 is accepted too.
 */
static void check_rings(struct ctx *c, const struct portview *pv, const struct nmreq_register *r,
                        int tx_bound, int rx_bound, struct idxset *set)
{
    const struct netmap_if *ni = pv->nifp;
    unsigned ntx = ni->ni_tx_rings, nrx = ni->ni_rx_rings;
    unsigned htx = ni->ni_host_tx_rings, hrx = ni->ni_host_rx_rings;
    int dir[2] = { -1, -1 }, rx;
    unsigned i;

    step(c, "walk the netmap_if and its rings");
    CHECK(c, ntx == r->nr_tx_rings && nrx == r->nr_rx_rings,
          "netmap_if: ni_tx_rings/ni_rx_rings %u/%u, expected %u/%u", ntx, nrx, r->nr_tx_rings, r->nr_rx_rings);
    CHECK(c, htx <= 1 && hrx <= 1,
          "netmap_if: ni_host_tx_rings/ni_host_rx_rings %u/%u for a port without host rings "
          "(netmap reports 1/1, fake; 0/0 accepted)", htx, hrx);
    vnote(c, "ni_host_tx_rings/ni_host_rx_rings %u/%u (netmap: 1/1)", htx, hrx);
    CHECK(c, in_map(pv, ni, sizeof(*ni) + (ntx + htx + nrx + hrx) * sizeof(ssize_t)),
          "netmap_if: ring_ofs[] extends past the mapping");
    CHECK(c, ni->ni_bufs_head == 0 || r->nr_extra_bufs > 0,
          "netmap_if: ni_bufs_head %u but no extra buffers were granted", ni->ni_bufs_head);
    for (rx = 0; rx < 2; rx++) {
        unsigned n = rx ? nrx : ntx, h = rx ? hrx : htx, base = rx ? ntx + htx : 0;
        int bound = rx ? rx_bound : tx_bound;
        const char *t = rx ? "RX" : "TX";

        for (i = 0; i < n + h; i++) {
            ssize_t ofs = ni->ring_ofs[base + i];
            if (i >= n) {
                CHECK(c, ofs == 0, "%s host ring %u: ring_ofs %zd, expected 0 (no host rings bound)", t, i - n, ofs);
            } else if (!bound) {
                CHECK(c, ofs == 0, "%s ring %u: ring_ofs %zd, expected 0 (direction not bound: NR_%s_RINGS_ONLY)",
                      t, i, ofs, rx ? "TX" : "RX");
            } else {
                CHECK(c, ofs != 0, "%s ring %u: ring_ofs is 0, expected a bound ring", t, i);
                check_ring(c, pv, ring_at(pv, ofs), rx, i, rx ? r->nr_rx_slots : r->nr_tx_slots, set, dir);
            }
        }
    }
    if (dir[0] >= 0 && dir[1] >= 0) {
        CHECK(c, dir[0] != dir[1], "TX and RX rings have the same dir %d", dir[0]);
        vnote(c, "ring dir: TX %d, RX %d (netmap.h comment: TX 0, RX 1; netmap writes kring->tx: TX 1, RX 0)",
              dir[0], dir[1]);
    }
}

/* A ring bound to this fd (for NETMAP_BUF), or fail. */
static struct netmap_ring *any_ring(struct ctx *c, const struct portview *pv)
{
    const struct netmap_if *ni = pv->nifp;
    unsigned i, n = ni->ni_tx_rings + ni->ni_host_tx_rings + ni->ni_rx_rings + ni->ni_host_rx_rings;

    for (i = 0; i < n; i++)
        if (ni->ring_ofs[i])
            return ring_at(pv, ni->ring_ofs[i]);
    fail(c, "no ring bound to this fd");
}

/*
 * The extra buffers: ni_bufs_head, each buffer's first uint32 the next
 * index, 0 at the end (netmap.4 NIOCREGIF; netmap.h "Added in API 11").
 */
static void check_extra(struct ctx *c, const struct portview *pv, uint32_t want, struct idxset *set)
{
    const struct netmap_ring *ring = any_ring(c, pv);
    uint32_t idx = pv->nifp->ni_bufs_head, n = 0;

    step(c, "walk the %u extra buffers from ni_bufs_head %u", want, idx);
    while (idx != 0) {
        const char *buf = NETMAP_BUF(ring, idx);
        CHECK(c, n < want, "extra buffer list holds more than the %u granted (no 0 at the end?)", want);
        CHECK(c, idx >= 2, "extra buffer %u: index %u is reserved", n, idx);
        CHECK(c, in_map(pv, buf, ring->nr_buf_size), "extra buffer %u (index %u) lies outside the mapping", n, idx);
        idx_add(c, set, idx);
        n++;
        memcpy(&idx, buf, sizeof(idx));
    }
    CHECK(c, n == want, "extra buffer list holds %u buffers, expected %u", n, want);
}

/* ------------------------------------------------------------------ */
/* 1. ioctls outside NIOCCTRL                                          */

/* netmap_ioctl NIOCTXSYNC/NIOCRXSYNC: no binding (np_nifp NULL) -> ENXIO (3161-3163). */
static void ck_sync_unbound(struct ctx *c)
{
    int fd = dev_open(c);

    expect_err(c, xioctl(fd, NIOCTXSYNC, NULL), ENXIO, "NIOCTXSYNC on a fresh fd");
    expect_err(c, xioctl(fd, NIOCRXSYNC, NULL), ENXIO, "NIOCRXSYNC on a fresh fd");
}

/*
 * netmap_ioctl default -> netmap_ioctl_legacy default: EOPNOTSUPP on Linux
 * (netmap_legacy.c); a FUSE file may answer ENOTTY: both accepted.
 */
static void ck_unknown_ioctl(struct ctx *c)
{
    unsigned long cmds[] = { _IO('i', 160), _IOWR('i', 161, struct nmreq) };
    struct nmreq arg;
    unsigned i;
    int fd = dev_open(c);

    for (i = 0; i < 2; i++) {
        int err;
        memset(&arg, 0, sizeof(arg));
        err = xioctl(fd, cmds[i], &arg);
        CHECK(c, err == EOPNOTSUPP || err == ENOTTY, "ioctl %#lx: expected EOPNOTSUPP (netmap) or ENOTTY, got %s",
              cmds[i], edesc(err));
        vnote(c, "ioctl %#lx -> %s", cmds[i], ename(err));
    }
    expect_unbound(c, fd);
}

/* ------------------------------------------------------------------ */
/* 2. The request header                                               */

/* netmap_ioctl NIOCCTRL: nr_version outside [NETMAP_MIN_API, NETMAP_MAX_API] = [14, 15] -> EINVAL (2754). */
static void ck_hdr_version(struct ctx *c)
{
    uint16_t bad[] = { 0, 13, 16, 0xffff }, good[] = { 14, 15 };
    struct nmreq_port_info_get b;
    struct nmreq_header h;
    unsigned i;
    int fd = dev_open(c);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&b, 0, sizeof(b));
        hdr_init(&h, NETMAP_REQ_PORT_INFO_GET, "", &b);
        h.nr_version = bad[i];
        step(c, "nr_version %u", bad[i]);
        ctrl_expect(c, fd, &h, sizeof(b), EINVAL, WB_SAME);
    }
    for (i = 0; i < 2; i++) {
        memset(&b, 0, sizeof(b));
        hdr_init(&h, NETMAP_REQ_PORT_INFO_GET, "", &b);
        h.nr_version = good[i];
        step(c, "nr_version %u", good[i]);
        ctrl_expect(c, fd, &h, 0, 0, WB_FULL);
        CHECK(c, b.nr_mem_id == 1 && b.nr_memsize > 0, "body: nr_mem_id %u nr_memsize %" PRIu64,
              b.nr_mem_id, b.nr_memsize);
    }
}

/* nmreq_copyin: nr_reserved != 0 -> EINVAL before anything is touched (3372). */
static void ck_hdr_reserved(struct ctx *c)
{
    uint32_t bad[] = { 1, 0x80000000u };
    struct nmreq_port_info_get b;
    struct nmreq_header h;
    unsigned i;
    int fd = dev_open(c);

    for (i = 0; i < 2; i++) {
        memset(&b, 0, sizeof(b));
        hdr_init(&h, NETMAP_REQ_PORT_INFO_GET, "", &b);
        h.nr_reserved = bad[i];
        step(c, "nr_reserved %#x", bad[i]);
        ctrl_expect(c, fd, &h, sizeof(b), EINVAL, WB_SAME);
    }
}

/*
 * Unknown nr_reqtype: nmreq_size_by_type is 0, so without a body
 * nmreq_copyin succeeds and netmap_ioctl's default answers EINVAL (3148);
 * with a body nmreq_copyin refuses it (body not expected, 3389).
 */
static void ck_hdr_reqtype(struct ctx *c)
{
    uint16_t types[] = { 0, 16, 99, 0xffff };
    unsigned char body[64];
    struct nmreq_header h;
    unsigned i;
    int fd = dev_open(c);

    for (i = 0; i < 4; i++) {
        expect_req(c, fd, &h, types[i], "", NULL, 0, EINVAL, "nr_reqtype %u, no body", types[i]);
    }
    for (i = 0; i < 4; i += 2) {
        memset(body, 0xa5, sizeof(body));
        hdr_init(&h, types[i], "", body);
        step(c, "nr_reqtype %u with a body", types[i]);
        ctrl_expect(c, fd, &h, sizeof(body), EINVAL, WB_EARLY);
    }
}

/* nmreq_copyin: a request type with a body but nr_body NULL -> EINVAL (3389). */
static void ck_hdr_body_missing(struct ctx *c)
{
    uint16_t types[] = { NETMAP_REQ_REGISTER, NETMAP_REQ_PORT_INFO_GET, NETMAP_REQ_PORT_HDR_GET,
                         NETMAP_REQ_POOLS_INFO_GET, NETMAP_REQ_SYNC_KLOOP_START };
    struct nmreq_header h;
    unsigned i;
    int fd = dev_open(c);

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        hdr_init(&h, types[i], "", NULL);
        step(c, "%s with nr_body NULL", reqname(types[i]));
        ctrl_expect(c, fd, &h, 0, EINVAL, WB_EARLY);
    }
    expect_unbound(c, fd);
}

/* nmreq_copyin: a body-less type (nmreq_size_by_type 0) with nr_body set -> EINVAL (3390). */
static void ck_hdr_body_unexpected(struct ctx *c)
{
    uint16_t types[] = { NETMAP_REQ_VALE_DELIF, NETMAP_REQ_SYNC_KLOOP_STOP, NETMAP_REQ_CSB_ENABLE };
    unsigned char body[64];
    struct nmreq_header h;
    unsigned i;
    int fd = dev_open(c);

    for (i = 0; i < 3; i++) {
        memset(body, 0x5a, sizeof(body));
        hdr_init(&h, types[i], "", body);
        step(c, "%s with a body", reqname(types[i]));
        ctrl_expect(c, fd, &h, sizeof(body), EINVAL, WB_EARLY);
    }
}

/* nmreq_copyin: the body cannot be read -> EFAULT, user pointers restored (3437, out_restore). */
static void ck_hdr_body_efault(struct ctx *c)
{
    struct nmreq_header h;
    unsigned char *tail;
    size_t i;
    int fd = dev_open(c);

    expect_req(c, fd, &h, NETMAP_REQ_REGISTER, "ctlnull", hole(c), 0, EFAULT,
               "REGISTER with nr_body on an unmapped page");
    expect_unbound(c, fd);

    tail = edge_tail(c, 16);
    expect_req(c, fd, &h, NETMAP_REQ_PORT_INFO_GET, "", tail, 0, EFAULT,
               "PORT_INFO_GET with a body whose last bytes are on an unmapped page");
    for (i = 0; i < 16; i++)
        CHECK(c, tail[i] == 0, "readable part of the body changed at byte %zu", i);
}

/*
 * nmreq_copyin: the first option header cannot be read -> EFAULT (L3472-3474);
 * out_restore runs nmreq_copyout, so the header comes back in full (L3552).
 */
static void ck_hdr_options_efault(struct ctx *c)
{
    struct nmreq_port_info_get b;
    struct nmreq_header h;
    int fd = dev_open(c);

    memset(&b, 0, sizeof(b));
    hdr_init(&h, NETMAP_REQ_PORT_INFO_GET, "", &b);
    h.nr_options = (uintptr_t)hole(c);
    step(c, "nr_options on an unmapped page");
    ctrl_expect(c, fd, &h, sizeof(b), EFAULT, WB_FULL);

    hdr_init(&h, NETMAP_REQ_PORT_INFO_GET, "", &b);
    h.nr_options = (uintptr_t)edge_tail(c, 8);
    step(c, "nr_options straddling into an unmapped page");
    ctrl_expect(c, fd, &h, sizeof(b), EFAULT, WB_FULL);
}

/* netmap_ioctl: nr_name[63] = '\0' after nmreq_copyin (2773): a 64-byte name works, truncated. */
static void ck_hdr_name_unterminated(struct ctx *c)
{
    struct nmreq_register r;
    char name[64];
    int fd = dev_open(c);

    memset(name, 'a', sizeof(name));
    reg_null(&r, 1, 1, 64, 64);
    step(c, "REGISTER null port named by 64 'a' and no NUL");
    null_register(c, fd, name, &r, NULL);   /* check_hdr: name[63] must come back 0 */
}

/* ------------------------------------------------------------------ */
/* 3. Option chains                                                    */
/*
 * netmap on Linux copies the body and the options in one pass into one
 * buffer of (2 + NETMAP_REQ_OPT_MAX) * 8 + NETMAP_REQ_MAXSIZE +
 * NETMAP_REQ_OPT_MAX * 8 bytes and stops at the first error (nmreq_copyin,
 * L3383-3555).  The options copied up to that point are written back by
 * nmreq_copyout (L3552-3553) with the status they have then: 0, or EINVAL
 * for the culprit; the options after it are never touched.  Only after a
 * complete copy is every status EOPNOTSUPP (L3546-3549).
 *
 * Each check below is a table of cases run by run_opt_cases(): the chain
 * is laid out as described, sent on one fd, and the errno, the header,
 * every option header (type, the user's nro_next, the status) and every
 * option body (unchanged unless the call and the option succeeded) are
 * checked; a refused REGISTER must leave the fd unbound, and after the
 * table the same fd must still register normally.
 */

#define OPT_END  (-1)   /* nro_next NULL */
#define OPT_HOLE (-2)   /* nro_next on the unmapped page */
#define OPT_ROOM 128    /* bytes given to an option (header + body) unless nro_size asks more */

enum opt_place {
    AT_HEAP,   /* OPT_ROOM bytes (or nro_size) of readable memory */
    AT_EDGE,   /* only the 24-byte header, at the end of the page before the hole */
};

struct opt_spec {
    uint32_t type;
    uint64_t size;          /* nro_size */
    int next;               /* index of the next option, OPT_END or OPT_HOLE */
    enum opt_place place;
    uint32_t status;        /* nro_status expected back; OPT_SENTINEL: never written back */
};

struct opt_case {
    const char *what;       /* the step, as shown in failures */
    const char *cite;       /* the netmap code that gives the answer */
    uint16_t reqtype;       /* NETMAP_REQ_REGISTER ("ctlnull") or NETMAP_REQ_PORT_INFO_GET ("") */
    unsigned repeat;        /* > 0: a chain of that many copies of opts[0], in order */
    unsigned nopts;
    struct opt_spec opts[4];
    int want;               /* errno of the call */
    enum wb wb;
};

#define NCASES(t) (sizeof(t) / sizeof((t)[0]))

/* A body netmap would accept for this option type (OFFSETS within a buffer). */
static void opt_fill(void *opt, uint32_t type)
{
    if (type == NETMAP_REQ_OPT_OFFSETS)
        ((struct nmreq_opt_offsets *)opt)->nro_max_offset = 64;
    else if (type == NETMAP_REQ_OPT_SYNC_KLOOP_MODE)
        ((struct nmreq_opt_sync_kloop_mode *)opt)->mode = 3;
}

static size_t opt_room(const struct opt_spec *s)
{
    return s->size > OPT_ROOM && s->size <= 2 * NETMAP_REQ_MAXSIZE ? (size_t)s->size : OPT_ROOM;
}

static void run_opt_case(struct ctx *c, int fd, const struct opt_case *k)
{
    unsigned n = k->repeat ? k->repeat : k->nopts, i;
    char **at = zalloc(c, n * sizeof(*at)), **copy = zalloc(c, n * sizeof(*copy));
    struct nmreq_port_info_get info;
    struct nmreq_register r;
    struct nmreq_header h;
    char *block = NULL, *copies;
    size_t body_len, total = 0;
    int err;

    for (i = 0; i < n; i++)
        total += opt_room(&k->opts[k->repeat ? 0 : i]);
    copies = zalloc(c, total);   /* what each option held before the call */
    for (i = 0; i < n; i++) {
        const struct opt_spec *s = &k->opts[k->repeat ? 0 : i];
        size_t room = opt_room(s);

        if (s->place == AT_EDGE) {
            at[i] = edge_tail(c, sizeof(struct nmreq_option));
            room = sizeof(struct nmreq_option);
        } else if (k->repeat) {
            if (block == NULL)
                block = zalloc(c, n * room);
            at[i] = block + i * room;
        } else {
            at[i] = zalloc(c, room);
        }
        opt_init(at[i], s->type);
        ((struct nmreq_option *)at[i])->nro_size = s->size;
        if (s->place != AT_EDGE)   /* there the body is the unmapped page */
            opt_fill(at[i], s->type);
        copy[i] = copies;
        copies += opt_room(s);
        memcpy(copy[i], at[i], room);
    }
    for (i = 0; i < n; i++) {
        int next = k->repeat ? (i + 1 < n ? (int)i + 1 : OPT_END) : k->opts[i].next;
        opt_link(at[i], next == OPT_END ? NULL : next == OPT_HOLE ? hole(c) : at[next]);
        ((struct nmreq_option *)copy[i])->nro_next = ((struct nmreq_option *)at[i])->nro_next;
    }

    if (k->reqtype == NETMAP_REQ_REGISTER) {
        reg_null(&r, 1, 1, 64, 64);
        hdr_init(&h, NETMAP_REQ_REGISTER, "ctlnull", &r);
        body_len = sizeof(r);
    } else {
        memset(&info, 0, sizeof(info));
        hdr_init(&h, NETMAP_REQ_PORT_INFO_GET, "", &info);
        body_len = sizeof(info);
    }
    h.nr_options = (uintptr_t)at[0];
    step(c, "%s (%s)", k->what, k->cite);
    err = ctrl_expect(c, fd, &h, body_len, k->want, k->wb);

    for (i = 0; i < n; i++) {
        const struct opt_spec *s = &k->opts[k->repeat ? 0 : i];
        const struct nmreq_option *o = (const void *)at[i];
        size_t room = s->place == AT_EDGE ? sizeof(*o) : opt_room(s), j;
        char label[64];

        snprintf(label, sizeof(label), "option %u (type %u)", i, s->type);
        expect_opt(c, o, s->type, (void *)(uintptr_t)((struct nmreq_option *)copy[i])->nro_next,
                   s->status, label);
        if (err == 0 && o->nro_status == 0)
            continue;   /* nmreq_copyout may have written the body back */
        for (j = sizeof(*o); j < room && at[i][j] == copy[i][j]; j++)
            ;
        CHECK(c, j == room, "%s: body byte %zu changed although %s (nmreq_copyout writes an option "
              "body back only on success with status 0, L3605)", label, j,
              err ? "the call failed" : "its status is not 0");
    }
    if (k->reqtype == NETMAP_REQ_REGISTER && err)
        expect_unbound(c, fd);
    if (k->reqtype == NETMAP_REQ_PORT_INFO_GET && err == 0)
        CHECK(c, info.nr_mem_id == 1 && info.nr_memsize > 0, "body: nr_mem_id %u nr_memsize %" PRIu64,
              info.nr_mem_id, info.nr_memsize);
}

/* Run a table of cases on one fd, then check that the fd registers normally. */
static void run_opt_cases(struct ctx *c, const struct opt_case *cases, size_t ncases)
{
    struct nmreq_register r;
    size_t i;
    int fd = dev_open(c);

    for (i = 0; i < ncases; i++)
        run_opt_case(c, fd, &cases[i]);
    step(c, "the fd registers normally afterwards");
    reg_null(&r, 1, 1, 64, 64);
    null_register(c, fd, "ctlnull", &r, NULL);
}

/* A check that is one table of cases. */
#define OPT_CHECK(name, table) \
    static void name(struct ctx *c) { run_opt_cases(c, table, NCASES(table)); }

#define OPT(t, nx, st)            { (t), 0, (nx), AT_HEAP, (st) }
#define OPT_SIZED(t, sz, nx, st)  { (t), (sz), (nx), AT_HEAP, (st) }
#define EINVAL_S ((uint32_t)EINVAL)
#define UNSUPP_S ((uint32_t)EOPNOTSUPP)
#define MODE     NETMAP_REQ_OPT_SYNC_KLOOP_MODE
#define OFFSETS  NETMAP_REQ_OPT_OFFSETS
#define EVENTFDS NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS

/*
 * A chain that loops back onto a known option meets it again as a duplicate
 * (L3507-3514): EINVAL on both copies (the same user option), at once.  A
 * loop of unknown types is never indexed, so it fills the copy buffer:
 * EMSGSIZE, and no option is written back since the list may loop (L3461-3468).
 */
static const struct opt_case loop_cases[] = {
    { "REGISTER with an option whose nro_next points to itself", "L3507-3514",
      NETMAP_REQ_REGISTER, 0, 1, { OPT(MODE, 0, EINVAL_S) }, EINVAL, WB_FULL },
    { "REGISTER with SYNC_KLOOP_MODE -> OFFSETS -> back to SYNC_KLOOP_MODE", "L3507-3514",
      NETMAP_REQ_REGISTER, 0, 2, { OPT(MODE, 1, EINVAL_S), OPT(OFFSETS, 0, 0) }, EINVAL, WB_FULL },
    { "REGISTER with an option of type 1000 pointing to itself", "L3461-3468",
      NETMAP_REQ_REGISTER, 0, 1, { OPT(1000, 0, OPT_SENTINEL) }, EMSGSIZE, WB_FULL },
    { "PORT_INFO_GET with a cycle of types 1000 and 7", "L3461-3468",
      NETMAP_REQ_PORT_INFO_GET, 0, 2, { OPT(1000, 1, OPT_SENTINEL), OPT(7, 0, OPT_SENTINEL) }, EMSGSIZE, WB_FULL },
};

OPT_CHECK(ck_opt_loop, loop_cases)

/*
 * The copy buffer is 4208 bytes (L3424); a REGISTER takes 16 (saved
 * pointers) + 56 (body) + 48 (option table) = 120, each option 8 (saved
 * next) + 24: 127 options fit (120 + 127 * 32 = 4184), a 128th needs
 * 4216 -> EMSGSIZE with nothing written back (L3461-3468).  127 unknown
 * options are copied, REGISTER runs and nmreq_checkoptions refuses it (L2908).
 */
static const struct opt_case chain_too_long_cases[] = {
    { "REGISTER with 128 options of type 1000", "L3461-3468",
      NETMAP_REQ_REGISTER, 128, 1, { OPT(1000, OPT_END, OPT_SENTINEL) }, EMSGSIZE, WB_FULL },
};

static const struct opt_case chain_at_limit_cases[] = {
    { "REGISTER with 127 options of type 1000", "L3546-3549, L2908",
      NETMAP_REQ_REGISTER, 127, 1, { OPT(1000, OPT_END, UNSUPP_S) }, EOPNOTSUPP, WB_FULL },
};

OPT_CHECK(ck_opt_chain_too_long, chain_too_long_cases)
OPT_CHECK(ck_opt_chain_at_limit, chain_at_limit_cases)

/*
 * nmreq_opt_size_by_type: SYNC_KLOOP_EVENTFDS is as big as its nro_size
 * (L3305-3307); body + option headers + option bodies above
 * NETMAP_REQ_MAXSIZE, or nro_size above it, is EMSGSIZE before the body
 * is read (L3521-3527: the option at the end of a page would fault), and
 * the header is written back with status 0.  REGISTER (56) + header (24) +
 * nro_size 4040 - 24 is exactly 4096: copied, then unconsumed (L2908).
 */
static const struct opt_case eventfds_cases[] = {
    { "REGISTER with SYNC_KLOOP_EVENTFDS nro_size 8192 (header only mapped)", "L3521-3527",
      NETMAP_REQ_REGISTER, 0, 1, { { EVENTFDS, 8192, OPT_END, AT_EDGE, 0 } }, EMSGSIZE, WB_FULL },
    { "REGISTER with SYNC_KLOOP_EVENTFDS nro_size 4041: 4097 bytes", "L3521-3527",
      NETMAP_REQ_REGISTER, 0, 1, { OPT_SIZED(EVENTFDS, 4041, OPT_END, 0) }, EMSGSIZE, WB_FULL },
    { "REGISTER with SYNC_KLOOP_EVENTFDS nro_size 4040: 4096 bytes", "L3521-3527, L2908",
      NETMAP_REQ_REGISTER, 0, 1, { OPT_SIZED(EVENTFDS, 4040, OPT_END, UNSUPP_S) }, EOPNOTSUPP, WB_FULL },
};

OPT_CHECK(ck_opt_eventfds_size, eventfds_cases)

/*
 * nro_size is bounded for every known type, even those of fixed size
 * (L3521: opt->nro_size > NETMAP_REQ_MAXSIZE): EMSGSIZE, status 0; within
 * the bound it is ignored.
 */
static const struct opt_case nro_size_cases[] = {
    { "REGISTER with OFFSETS nro_size 4097", "L3521",
      NETMAP_REQ_REGISTER, 0, 1, { OPT_SIZED(OFFSETS, 4097, OPT_END, 0) }, EMSGSIZE, WB_FULL },
    { "PORT_INFO_GET with SYNC_KLOOP_MODE nro_size 1<<40", "L3521",
      NETMAP_REQ_PORT_INFO_GET, 0, 1, { OPT_SIZED(MODE, 1ull << 40, OPT_END, 0) }, EMSGSIZE, WB_FULL },
    { "PORT_INFO_GET with SYNC_KLOOP_MODE nro_size 4096", "L3521, L3546-3549",
      NETMAP_REQ_PORT_INFO_GET, 0, 1, { OPT_SIZED(MODE, 4096, OPT_END, UNSUPP_S) }, 0, WB_FULL },
};

OPT_CHECK(ck_opt_nro_size, nro_size_cases)

/* nro_reqtype 0 -> its status and the call EINVAL, at once (L3491-3497). */
static const struct opt_case type_zero_cases[] = {
    { "REGISTER with an option of type 0", "L3491-3497",
      NETMAP_REQ_REGISTER, 0, 1, { OPT(0, OPT_END, EINVAL_S) }, EINVAL, WB_FULL },
    { "REGISTER with OFFSETS -> type 0 -> SYNC_KLOOP_MODE", "L3491-3497",
      NETMAP_REQ_REGISTER, 0, 3, { OPT(OFFSETS, 1, 0), OPT(0, 2, EINVAL_S), OPT(MODE, OPT_END, OPT_SENTINEL) },
      EINVAL, WB_FULL },
};

OPT_CHECK(ck_opt_type_zero, type_zero_cases)

/*
 * nro_reqtype >= NETMAP_REQ_OPT_MAX is skipped (L3499-3502) and keeps the
 * EOPNOTSUPP every option gets after the copy (L3546-3549); REGISTER still
 * runs, consumes the options it knows (OFFSETS: status 0) and then fails in
 * nmreq_checkoptions with EOPNOTSUPP, undone (L2908-2911).
 */
static const struct opt_case type_unknown_cases[] = {
    { "REGISTER with an option of type 1000", "L3499-3502, L2908",
      NETMAP_REQ_REGISTER, 0, 1, { OPT(1000, OPT_END, UNSUPP_S) }, EOPNOTSUPP, WB_FULL },
    { "REGISTER with an option of type NETMAP_REQ_OPT_MAX", "L3499-3502, L2908",
      NETMAP_REQ_REGISTER, 0, 1, { OPT(NETMAP_REQ_OPT_MAX, OPT_END, UNSUPP_S) }, EOPNOTSUPP, WB_FULL },
    { "REGISTER with a valid OFFSETS option followed by an option of type 1000", "L3499-3502, L2908",
      NETMAP_REQ_REGISTER, 0, 2, { OPT(OFFSETS, 1, 0), OPT(1000, OPT_END, UNSUPP_S) }, EOPNOTSUPP, WB_FULL },
    { "REGISTER with an option of type 1000 followed by a valid OFFSETS option", "L3499-3502, L2908",
      NETMAP_REQ_REGISTER, 0, 2, { OPT(1000, 1, UNSUPP_S), OPT(OFFSETS, OPT_END, 0) }, EOPNOTSUPP, WB_FULL },
};

OPT_CHECK(ck_opt_type_unknown, type_unknown_cases)

/*
 * The same option type twice -> both copies EINVAL and the call EINVAL at
 * once (L3507-3514): an option between them was copied (status 0), one
 * after them never (untouched).
 */
static const struct opt_case duplicate_cases[] = {
    { "REGISTER with two OFFSETS options", "L3507-3514",
      NETMAP_REQ_REGISTER, 0, 2, { OPT(OFFSETS, 1, EINVAL_S), OPT(OFFSETS, OPT_END, EINVAL_S) }, EINVAL, WB_FULL },
    { "REGISTER with OFFSETS, SYNC_KLOOP_MODE, OFFSETS", "L3507-3514",
      NETMAP_REQ_REGISTER, 0, 3, { OPT(OFFSETS, 1, EINVAL_S), OPT(MODE, 2, 0), OPT(OFFSETS, OPT_END, EINVAL_S) },
      EINVAL, WB_FULL },
    { "REGISTER with OFFSETS, OFFSETS, SYNC_KLOOP_MODE", "L3507-3514",
      NETMAP_REQ_REGISTER, 0, 3, { OPT(OFFSETS, 1, EINVAL_S), OPT(OFFSETS, 2, EINVAL_S), OPT(MODE, OPT_END, OPT_SENTINEL) },
      EINVAL, WB_FULL },
};

OPT_CHECK(ck_opt_duplicate, duplicate_cases)

/*
 * netmap_ioctl REGISTER: an option left EOPNOTSUPP makes nmreq_checkoptions
 * fail the request after the registration, which is undone (L2908-2911).
 */
static const struct opt_case unconsumed_register_cases[] = {
    { "REGISTER null port with SYNC_KLOOP_MODE (not consumed by REGISTER)", "L2908-2911",
      NETMAP_REQ_REGISTER, 0, 1, { OPT(MODE, OPT_END, UNSUPP_S) }, EOPNOTSUPP, WB_FULL },
};

OPT_CHECK(ck_opt_unconsumed_register, unconsumed_register_cases)

/*
 * PORT_INFO_GET never calls nmreq_checkoptions: it succeeds and an unknown-
 * to-it option keeps the EOPNOTSUPP nmreq_copyin gave it (L3546-3549).
 */
static const struct opt_case unconsumed_info_cases[] = {
    { "PORT_INFO_GET (empty name) with SYNC_KLOOP_MODE", "L3546-3549",
      NETMAP_REQ_PORT_INFO_GET, 0, 1, { OPT(MODE, OPT_END, UNSUPP_S) }, 0, WB_FULL },
    { "PORT_INFO_GET (empty name) with an option of type 1000", "L3499-3502, L3546-3549",
      NETMAP_REQ_PORT_INFO_GET, 0, 1, { OPT(1000, OPT_END, UNSUPP_S) }, 0, WB_FULL },
};

OPT_CHECK(ck_opt_unconsumed_info, unconsumed_info_cases)

/*
 * A valid option whose nro_next cannot be read -> EFAULT (L3472-3474); the
 * options copied before are written back, status 0 (L3552-3553).
 */
static const struct opt_case dangling_next_cases[] = {
    { "REGISTER with OFFSETS whose nro_next is unmapped", "L3472-3474",
      NETMAP_REQ_REGISTER, 0, 1, { OPT(OFFSETS, OPT_HOLE, 0) }, EFAULT, WB_FULL },
    { "REGISTER with type 1000 -> OFFSETS -> unmapped", "L3472-3474",
      NETMAP_REQ_REGISTER, 0, 2, { OPT(1000, 1, 0), OPT(OFFSETS, OPT_HOLE, 0) }, EFAULT, WB_FULL },
};

OPT_CHECK(ck_opt_dangling_next, dangling_next_cases)

/*
 * The option header is readable but its body is not -> EFAULT while copying
 * the body (L3531-3533): pointers restored, the header written back, status 0.
 */
static const struct opt_case body_efault_cases[] = {
    { "REGISTER with an OFFSETS option whose body is on an unmapped page", "L3531-3533",
      NETMAP_REQ_REGISTER, 0, 1, { { OFFSETS, 0, OPT_END, AT_EDGE, 0 } }, EFAULT, WB_FULL },
};

OPT_CHECK(ck_opt_body_efault, body_efault_cases)

#undef OPT
#undef OPT_SIZED
#undef MODE
#undef OFFSETS
#undef EVENTFDS

/* ------------------------------------------------------------------ */
/* 4. Null ports                                                       */

/* A null-port REGISTER with this nr_mem_id is refused with EINVAL, leaving the fd unbound. */
static void null_memid_refused(struct ctx *c, uint16_t mem_id, const char *what)
{
    struct nmreq_register r;
    struct nmreq_header h;
    int fd = dev_open(c);

    reg_null(&r, 1, 1, 64, 64);
    r.nr_mem_id = mem_id;
    expect_req(c, fd, &h, NETMAP_REQ_REGISTER, "ctlnull", &r, sizeof(r), EINVAL, "%s", what);
    expect_unbound(c, fd);
}

/* netmap_get_null_na: no allocator (nr_mem_id 0) -> EINVAL "null ports must use an existing allocator". */
static void ck_null_memid0(struct ctx *c)
{
    null_memid_refused(c, 0, "REGISTER null port with nr_mem_id 0");
}

/* netmap_ioctl REGISTER: netmap_mem_find(nr_mem_id) fails -> EINVAL (2806-2815). */
static void ck_null_memid_bad(struct ctx *c)
{
    null_memid_refused(c, 7, "REGISTER null port with nr_mem_id 7 (no such allocator)");
}

/*
 * netmap_get_null_na + netmap_do_regif: a null port with the rings and
 * slots asked for, mapped and usable; the mapping is shared (a second
 * mmap of the fd sees what the first wrote).
 */
static void ck_null_register(struct ctx *c)
{
    struct nmreq_register r;
    struct portview pv;
    struct idxset set;
    char *second;
    unsigned i, n;
    int fd = dev_open(c);

    reg_null(&r, 2, 3, 64, 128);
    step(c, "REGISTER null port 2 tx / 3 rx rings, 64 / 128 slots, mem 1");
    null_register(c, fd, "ctlnull", &r, NULL);
    map_port(c, fd, &r, &pv);
    idx_init(c, &set, 2 * 64 + 3 * 128);
    check_rings(c, &pv, &r, 1, 1, &set);
    idx_unique(c, &set, "slots of all rings");

    step(c, "write each ring's first buffer, read it back through a second mapping");
    second = map_fd(c, fd, pv.size);
    n = pv.nifp->ni_tx_rings + pv.nifp->ni_host_tx_rings + pv.nifp->ni_rx_rings + pv.nifp->ni_host_rx_rings;
    for (i = 0; i < n; i++) {
        struct netmap_ring *ring;
        char *buf;
        size_t k;

        if (!pv.nifp->ring_ofs[i])
            continue;
        ring = ring_at(&pv, pv.nifp->ring_ofs[i]);
        buf = NETMAP_BUF(ring, ring->slot[0].buf_idx);
        for (k = 0; k < ring->nr_buf_size; k++)
            buf[k] = (char)(k * 7 + i);
        for (k = 0; k < ring->nr_buf_size; k++)
            CHECK(c, second[(size_t)(buf - pv.mem) + k] == (char)(k * 7 + i),
                  "ring_ofs[%u]: byte %zu of buffer %u differs in the second mapping",
                  i, k, ring->slot[0].buf_idx);
    }
}

/* netmap_ioctl REGISTER: a registered fd refuses another REGISTER with EBUSY (2787). */
static void ck_null_busy(struct ctx *c)
{
    struct nmreq_register r, r2;
    struct nmreq_header h;
    int fd = null_open(c, &r, 1, 1, 64, 0, 0);

    reg_null(&r2, 1, 1, 64, 64);
    expect_req(c, fd, &h, NETMAP_REQ_REGISTER, "ctlnull", &r2, sizeof(r2), EBUSY,
               "second REGISTER of a null port on the same fd");
    memset(&r2, 0, sizeof(r2));
    r2.nr_mode = NR_REG_ALL_NIC;
    expect_req(c, fd, &h, NETMAP_REQ_REGISTER, NOSUCH, &r2, sizeof(r2), EBUSY,
               "second REGISTER of a missing port: EBUSY comes before the lookup");
    expect_err(c, xioctl(fd, NIOCTXSYNC, NULL), 0, "NIOCTXSYNC on the first binding");
}

/* netmap_interp_ringid: NR_TX_RINGS_ONLY / NR_RX_RINGS_ONLY bind one direction (1895-1899). */
static void ck_null_one_direction(struct ctx *c)
{
    uint64_t flags[] = { NR_TX_RINGS_ONLY, NR_RX_RINGS_ONLY };
    unsigned i;

    for (i = 0; i < 2; i++) {
        struct nullport np;

        null_mapped(c, &np, 2, 2, 64, 0, flags[i]);
        check_rings(c, &np.pv, &np.r, i == 0, i == 1, &np.set);
        idx_unique(c, &np.set, "slots of the bound rings");
    }
}

/* netmap_ioctl NIOCTXSYNC/NIOCRXSYNC on a null port: 0, rings as they were (netmap_null_sync). */
static void ck_null_sync(struct ctx *c)
{
    struct nullport np;
    int fd = null_mapped(c, &np, 2, 2, 64, 0, 0);

    expect_err(c, xioctl(fd, NIOCTXSYNC, NULL), 0, "NIOCTXSYNC");
    expect_err(c, xioctl(fd, NIOCRXSYNC, NULL), 0, "NIOCRXSYNC");
    check_rings(c, &np.pv, &np.r, 1, 1, &np.set);
}

static int64_t tv_us(const struct timeval *tv)
{
    return (int64_t)tv->tv_sec * 1000000 + tv->tv_usec;
}

static int64_t ring_ts_us(const struct netmap_ring *ring)
{
    return (int64_t)ring->ts.tv_sec * 1000000 + ring->ts.tv_usec;
}

/*
 * ring_timestamp_set (L2732-2736): every NIOCRXSYNC (L3236) and every poll
 * asking for POLLIN (L3894) stamps each bound RX ring with microtime(), the
 * wall clock in microseconds, whether or not the ring has NR_TIMESTAMP
 * (netmap_no_timestamp is 0 by default).  TX rings are not stamped.
 */
static void ck_null_rx_timestamp(struct ctx *c)
{
    struct nmreq_register r;
    struct portview pv;
    struct timeval before, after;
    struct netmap_ring *rx, *tx;
    struct pollfd pfd;
    int fd = null_open(c, &r, 1, 1, 64, 0, 0), round;

    map_port(c, fd, &r, &pv);
    tx = NETMAP_TXRING(pv.nifp, 0);
    rx = NETMAP_RXRING(pv.nifp, 0);
    CHECK(c, in_map(&pv, rx, sizeof(*rx)) && in_map(&pv, tx, sizeof(*tx)), "rings outside the mapping");
    CHECK(c, !(rx->flags & NR_TIMESTAMP), "RX ring flags %#x: NR_TIMESTAMP set without being asked", rx->flags);
    for (round = 0; round < 2; round++) {
        const char *how = round ? "poll(POLLIN)" : "NIOCRXSYNC";

        step(c, "%s on a null port with ring->ts zeroed", how);
        memset(&rx->ts, 0, sizeof(rx->ts));
        memset(&tx->ts, 0, sizeof(tx->ts));
        gettimeofday(&before, NULL);
        if (round) {
            pfd.fd = fd;
            pfd.events = POLLIN;
            pfd.revents = 0;
            CHECK(c, poll(&pfd, 1, 0) >= 0, "poll: %s", edesc(errno));
        } else {
            expect_err(c, xioctl(fd, NIOCRXSYNC, NULL), 0, how);
        }
        gettimeofday(&after, NULL);
        CHECK(c, ring_ts_us(rx) >= tv_us(&before) && ring_ts_us(rx) <= tv_us(&after),
              "%s: RX ring ts %" PRId64 " us, expected the wall clock between %" PRId64 " and %" PRId64,
              how, ring_ts_us(rx), tv_us(&before), tv_us(&after));
        CHECK(c, ring_ts_us(tx) == 0, "%s: TX ring ts changed to %" PRId64, how, ring_ts_us(tx));
    }
}

/*
 * netmap_ioctl REGISTER: nr_extra_bufs -> netmap_extra_alloc, the list at
 * ni_bufs_head (2875-2885), made of buffers no ring uses.
 */
static void ck_null_extra_bufs(struct ctx *c)
{
    struct nullport np;

    null_mapped(c, &np, 1, 1, 64, 10, 0);
    CHECK(c, np.pv.nifp->ni_bufs_head != 0, "ni_bufs_head is 0 with 10 extra buffers granted");
    check_rings(c, &np.pv, &np.r, 1, 1, &np.set);
    check_extra(c, &np.pv, 10, &np.set);
    idx_unique(c, &np.set, "ring slots and extra buffers");
}

/* Two fds, two null ports: their own netmap_if, disjoint buffers (netmap_mem_if_new per priv). */
static void ck_null_two_fds(struct ctx *c)
{
    struct nmreq_register r1, r2;
    struct portview p1, p2;
    struct idxset set;
    int fd1 = null_open(c, &r1, 1, 2, 64, 4, 0);
    int fd2 = null_open(c, &r2, 2, 1, 64, 4, 0);

    CHECK(c, r1.nr_offset != r2.nr_offset, "both fds got the netmap_if at offset %" PRIu64, r1.nr_offset);
    map_port(c, fd1, &r1, &p1);
    map_port(c, fd2, &r2, &p2);
    idx_init(c, &set, 6 * 64 + 8);
    check_rings(c, &p1, &r1, 1, 1, &set);
    check_extra(c, &p1, 4, &set);
    check_rings(c, &p2, &r2, 1, 1, &set);
    check_extra(c, &p2, 4, &set);
    idx_unique(c, &set, "buffers of both fds");
}

/* ------------------------------------------------------------------ */
/* 5. Register modes on a port that does not exist                     */

/*
 * netmap_get_na: deprecated pipe modes -> EINVAL (1569); every other mode
 * cascades through null/monitor/pipe/vale and ends in ifunit_ref -> ENXIO
 * (1627-1630); the mode itself is only checked later (interp_ringid).
 * A monitor of a missing port fails in the parent lookup (netmap_monitor.c).
 */
static void ck_modes_nosuchport(struct ctx *c)
{
    static const struct { uint32_t mode; uint64_t flags; int want; } cases[] = {
        { NR_REG_DEFAULT, 0, ENXIO }, { NR_REG_ALL_NIC, 0, ENXIO }, { NR_REG_SW, 0, ENXIO },
        { NR_REG_NIC_SW, 0, ENXIO }, { NR_REG_ONE_NIC, 0, ENXIO }, { NR_REG_ONE_SW, 0, ENXIO },
        { 9, 0, ENXIO }, { NR_REG_PIPE_MASTER, 0, EINVAL }, { NR_REG_PIPE_SLAVE, 0, EINVAL },
        { NR_REG_ALL_NIC, NR_MONITOR_TX, ENXIO }, { NR_REG_ALL_NIC, NR_EXCLUSIVE, ENXIO },
    };
    struct nmreq_register r;
    struct nmreq_header h;
    unsigned i;
    int fd = dev_open(c);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&r, 0, sizeof(r));
        r.nr_mode = cases[i].mode;
        r.nr_flags = cases[i].flags;
        expect_req(c, fd, &h, NETMAP_REQ_REGISTER, NOSUCH, &r, sizeof(r), cases[i].want,
                   "REGISTER \"%s\" nr_mode %u nr_flags %#" PRIx64, NOSUCH, cases[i].mode, cases[i].flags);
    }
    expect_unbound(c, fd);
}

/* ------------------------------------------------------------------ */
/* 6. PORT_INFO_GET, POOLS_INFO_GET                                    */

/*
 * netmap_ioctl PORT_INFO_GET, empty name: allocator nr_mem_id or 1, only
 * nr_memsize and nr_mem_id filled, the rest comes back as sent (2944-2962).
 */
static void ck_info_empty(struct ctx *c)
{
    struct nmreq_port_info_get b;
    struct nmreq_header h;
    struct nmreq_register r;
    uint16_t ids[] = { 0, 1 };
    uint64_t memsize = 0;
    unsigned i;
    int fd = dev_open(c), fd2;

    for (i = 0; i < 2; i++) {
        memset(&b, 0, sizeof(b));
        b.nr_tx_slots = 7;
        b.nr_rx_slots = 9;
        b.nr_tx_rings = 3;
        b.nr_rx_rings = 4;
        b.nr_host_tx_rings = 5;
        b.nr_host_rx_rings = 6;
        b.nr_mem_id = ids[i];
        expect_req(c, fd, &h, NETMAP_REQ_PORT_INFO_GET, "", &b, 0, 0, "PORT_INFO_GET empty name, nr_mem_id %u", ids[i]);
        CHECK(c, b.nr_mem_id == 1, "nr_mem_id %u, expected 1", b.nr_mem_id);
        CHECK(c, b.nr_memsize > 0, "nr_memsize 0");
        CHECK(c, b.nr_tx_slots == 7 && b.nr_rx_slots == 9 && b.nr_tx_rings == 3 && b.nr_rx_rings == 4 &&
                 b.nr_host_tx_rings == 5 && b.nr_host_rx_rings == 6,
              "slot/ring fields changed (%u %u %u %u %u %u); with no port netmap fills only memsize and mem_id",
              b.nr_tx_slots, b.nr_rx_slots, b.nr_tx_rings, b.nr_rx_rings, b.nr_host_tx_rings, b.nr_host_rx_rings);
        CHECK(c, !memsize || memsize == b.nr_memsize, "nr_memsize %" PRIu64 " then %" PRIu64, memsize, b.nr_memsize);
        memsize = b.nr_memsize;
    }
    fd2 = null_open(c, &r, 1, 1, 64, 0, 0);
    (void)fd2;
    CHECK(c, r.nr_memsize == memsize, "REGISTER on mem 1 says nr_memsize %" PRIu64 ", PORT_INFO_GET %" PRIu64,
          r.nr_memsize, memsize);
}

/* netmap_ioctl PORT_INFO_GET, empty name: netmap_mem_find(5) fails -> EINVAL (2945-2952). */
static void ck_info_bad_memid(struct ctx *c)
{
    struct nmreq_port_info_get b;
    struct nmreq_header h;
    int fd = dev_open(c);

    memset(&b, 0, sizeof(b));
    b.nr_mem_id = 5;
    expect_req(c, fd, &h, NETMAP_REQ_PORT_INFO_GET, "", &b, sizeof(b), EINVAL, "PORT_INFO_GET empty name, nr_mem_id 5");
}

/* netmap_ioctl PORT_INFO_GET / POOLS_INFO_GET with a name: netmap_get_na -> ENXIO (2935, 3093, 1629). */
static void ck_info_nosuchport(struct ctx *c)
{
    struct nmreq_port_info_get b;
    struct nmreq_pools_info p;
    struct nmreq_header h;
    int fd = dev_open(c);

    memset(&b, 0, sizeof(b));
    expect_req(c, fd, &h, NETMAP_REQ_PORT_INFO_GET, NOSUCH, &b, sizeof(b), ENXIO, "PORT_INFO_GET \"%s\"", NOSUCH);
    memset(&p, 0, sizeof(p));
    expect_req(c, fd, &h, NETMAP_REQ_POOLS_INFO_GET, NOSUCH, &p, sizeof(p), ENXIO, "POOLS_INFO_GET \"%s\"", NOSUCH);
}

/*
 * [pipe] netmap_ioctl POOLS_INFO_GET on a pipe (netmap_get_pipe_na creates
 * it and its parent; nr_mem_id 1 keeps both in the global allocator, which
 * netmap_vi_create would otherwise replace by a private one): the pools of
 * mem 1, laid out if < ring < buf (netmap_mem_pools_info_get), consistent
 * with what a null port on mem 1 gets.
 */
static void ck_pools_pipe(struct ctx *c)
{
    struct nmreq_pools_info p;
    struct nmreq_header h;
    struct nmreq_register r;
    struct portview pv;
    struct netmap_ring *ring;
    int fd = dev_open(c), fd2;
    uint64_t ifo, ro, bo, rel;

    memset(&p, 0, sizeof(p));
    p.nr_mem_id = 1;
    expect_req(c, fd, &h, NETMAP_REQ_POOLS_INFO_GET, "ctlp{1", &p, 0, 0, "POOLS_INFO_GET \"ctlp{1\" nr_mem_id 1");
    ifo = p.nr_if_pool_offset;
    ro = p.nr_ring_pool_offset;
    bo = p.nr_buf_pool_offset;
    vnote(c, "memsize %" PRIu64 " mem_id %u if %" PRIu64 "+%ux%u ring %" PRIu64 "+%ux%u buf %" PRIu64 "+%ux%u",
          p.nr_memsize, p.nr_mem_id, ifo, p.nr_if_pool_objtotal, p.nr_if_pool_objsize,
          ro, p.nr_ring_pool_objtotal, p.nr_ring_pool_objsize, bo, p.nr_buf_pool_objtotal, p.nr_buf_pool_objsize);
    CHECK(c, p.nr_mem_id == 1, "nr_mem_id %u, expected 1", p.nr_mem_id);
    CHECK(c, p.nr_buf_pool_objsize == BUF_SIZE, "buf objsize %u, expected %u", p.nr_buf_pool_objsize, BUF_SIZE);
    CHECK(c, p.nr_if_pool_objtotal && p.nr_if_pool_objsize && p.nr_ring_pool_objtotal &&
             p.nr_ring_pool_objsize && p.nr_buf_pool_objtotal, "a pool is empty");
    CHECK(c, ifo < ro && ro < bo, "pool offsets if %" PRIu64 " ring %" PRIu64 " buf %" PRIu64 " not increasing",
          ifo, ro, bo);
    CHECK(c, ro >= ifo + (uint64_t)p.nr_if_pool_objtotal * p.nr_if_pool_objsize, "if pool overlaps the ring pool");
    CHECK(c, bo >= ro + (uint64_t)p.nr_ring_pool_objtotal * p.nr_ring_pool_objsize, "ring pool overlaps the buf pool");
    CHECK(c, p.nr_memsize >= bo + (uint64_t)p.nr_buf_pool_objtotal * p.nr_buf_pool_objsize,
          "nr_memsize %" PRIu64 " < end of the buf pool", p.nr_memsize);

    fd2 = null_open(c, &r, 1, 1, 64, 0, 0);
    CHECK(c, r.nr_memsize == p.nr_memsize, "REGISTER on mem 1 says nr_memsize %" PRIu64 ", POOLS_INFO_GET %" PRIu64,
          r.nr_memsize, p.nr_memsize);
    CHECK(c, r.nr_offset >= ifo && r.nr_offset < ro, "nr_offset %" PRIu64 " not in the if pool", r.nr_offset);
    map_port(c, fd2, &r, &pv);
    ring = any_ring(c, &pv);
    rel = (uint64_t)((char *)ring - pv.mem);
    CHECK(c, rel >= ro && rel < bo, "ring at %" PRIu64 " not in the ring pool", rel);
    CHECK(c, rel + (uint64_t)ring->buf_ofs == bo, "buffer 0 (ring + buf_ofs) at %" PRIu64 ", buf pool at %" PRIu64,
          rel + (uint64_t)ring->buf_ofs, bo);
    CHECK(c, ring->slot[0].buf_idx < p.nr_buf_pool_objtotal, "buf_idx %u >= buf objtotal %u",
          ring->slot[0].buf_idx, p.nr_buf_pool_objtotal);
}

/* ------------------------------------------------------------------ */
/* 7. PORT_HDR_SET / PORT_HDR_GET                                      */

/*
 * netmap_ioctl PORT_HDR_SET: nr_hdr_len not 0, 10 or 12 -> EINVAL before any
 * lookup (3000-3007); a valid length on a non-VALE name: netmap_get_vale_na
 * finds nothing -> ENXIO (3024-3026).  PORT_HDR_GET: netmap_get_na -> ENXIO.
 */
static void ck_port_hdr(struct ctx *c)
{
    static const struct { uint16_t type; uint32_t len; int want; } cases[] = {
        { NETMAP_REQ_PORT_HDR_SET, 5, EINVAL }, { NETMAP_REQ_PORT_HDR_SET, 11, EINVAL },
        { NETMAP_REQ_PORT_HDR_SET, 10, ENXIO }, { NETMAP_REQ_PORT_HDR_SET, 12, ENXIO },
        { NETMAP_REQ_PORT_HDR_SET, 0, ENXIO }, { NETMAP_REQ_PORT_HDR_GET, 0, ENXIO },
    };
    struct nmreq_port_hdr b;
    struct nmreq_header h;
    unsigned i;
    int fd = dev_open(c);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&b, 0, sizeof(b));
        b.nr_hdr_len = cases[i].len;
        expect_req(c, fd, &h, cases[i].type, NOSUCH, &b, sizeof(b), cases[i].want,
                   "%s \"%s\" nr_hdr_len %u", reqname(cases[i].type), NOSUCH, cases[i].len);
    }
}

/* ------------------------------------------------------------------ */
/* 8. OFFSETS option (null ports have NAF_OFFSETS)                     */

static void offsets_reject(struct ctx *c, uint32_t bits, uint64_t max, uint64_t initial, const char *why)
{
    struct nmreq_opt_offsets *o = zalloc(c, sizeof(*o));
    struct nmreq_register r;
    struct nmreq_header h;
    int fd = dev_open(c);

    opt_init(o, NETMAP_REQ_OPT_OFFSETS);
    o->nro_offset_bits = bits;
    o->nro_max_offset = max;
    o->nro_initial_offset = initial;
    reg_null(&r, 1, 1, 64, 64);
    hdr_init(&h, NETMAP_REQ_REGISTER, "ctlnull", &r);
    h.nr_options = (uintptr_t)o;
    step(c, "REGISTER null + OFFSETS bits %u max %" PRIu64 " initial %" PRIu64 " (%s)", bits, max, initial, why);
    ctrl_expect(c, fd, &h, sizeof(r), EINVAL, WB_FULL);
    expect_opt(c, o, NETMAP_REQ_OPT_OFFSETS, NULL, EINVAL, "OFFSETS");
    CHECK(c, o->nro_max_offset == max && o->nro_initial_offset == initial && o->nro_offset_bits == bits,
          "OFFSETS body changed although it was refused");
    expect_unbound(c, fd);
    step(c, "the fd registers normally afterwards");
    reg_null(&r, 1, 1, 64, 64);
    null_register(c, fd, "ctlnull", &r, NULL);
}

/* netmap_offsets_init: nro_offset_bits > 64 -> EINVAL (2308). */
static void ck_offsets_bits(struct ctx *c)
{
    offsets_reject(c, 65, 0, 0, "more than 64 bits");
}

/* netmap_offsets_init: max > buffer size (2324), or max not within the bits (2331) -> EINVAL. */
static void ck_offsets_max(struct ctx *c)
{
    offsets_reject(c, 0, 4096, 0, "max offset > buffer size 2048");
    offsets_reject(c, 8, 256, 0, "256 does not fit in 8 bits");
}

/* netmap_offsets_init: initial offset > max offset -> EINVAL (2339). */
static void ck_offsets_initial(struct ctx *c)
{
    offsets_reject(c, 0, 128, 256, "initial > max");
}

/*
 * netmap_offsets_init: accepted -> nro_status 0, ring->offset_mask set
 * (bits 0 means all 64 bits, 2317-2320) and the initial offset written in
 * every slot's ptr (2388-2392); the option body is copied back.
 */
static void ck_offsets_valid(struct ctx *c)
{
    static const struct { uint32_t bits; uint64_t mask; } cases[] = { { 0, ~0ull }, { 9, 0x1ffull } };
    unsigned k;

    for (k = 0; k < 2; k++) {
        struct nmreq_opt_offsets *o = zalloc(c, sizeof(*o));
        struct nmreq_register r;
        struct portview pv;
        struct idxset set;
        unsigned i, n;
        int fd = dev_open(c);

        opt_init(o, NETMAP_REQ_OPT_OFFSETS);
        o->nro_offset_bits = cases[k].bits;
        o->nro_max_offset = 256;
        o->nro_initial_offset = 64;
        reg_null(&r, 2, 2, 64, 64);
        step(c, "REGISTER null + OFFSETS bits %u max 256 initial 64", cases[k].bits);
        null_register(c, fd, "ctlnull", &r, o);
        expect_opt(c, o, NETMAP_REQ_OPT_OFFSETS, NULL, 0, "OFFSETS");
        CHECK(c, o->nro_max_offset == 256 && o->nro_initial_offset == 64 && o->nro_offset_bits == cases[k].bits,
              "OFFSETS body came back as max %" PRIu64 " initial %" PRIu64 " bits %u",
              o->nro_max_offset, o->nro_initial_offset, o->nro_offset_bits);
        map_port(c, fd, &r, &pv);
        idx_init(c, &set, 4 * 64);
        check_rings(c, &pv, &r, 1, 1, &set);
        n = pv.nifp->ni_tx_rings + pv.nifp->ni_host_tx_rings + pv.nifp->ni_rx_rings + pv.nifp->ni_host_rx_rings;
        for (i = 0; i < n; i++) {
            struct netmap_ring *ring;
            uint32_t j;

            if (!pv.nifp->ring_ofs[i])
                continue;
            ring = ring_at(&pv, pv.nifp->ring_ofs[i]);
            CHECK(c, ring->offset_mask == cases[k].mask, "ring_ofs[%u]: offset_mask %#" PRIx64 ", expected %#" PRIx64,
                  i, ring->offset_mask, cases[k].mask);
            for (j = 0; j < ring->num_slots; j++)
                CHECK(c, (ring->slot[j].ptr & cases[k].mask) == 64, "ring_ofs[%u] slot %u: ptr %#" PRIx64
                      ", expected offset 64", i, j, ring->slot[j].ptr);
        }
    }
}

/* ------------------------------------------------------------------ */
/* 9. CSB and sync kloop                                               */

static struct nmreq_opt_csb *csb_opt(struct ctx *c, void *atok, void *ktoa)
{
    struct nmreq_opt_csb *o = zalloc(c, sizeof(*o));

    opt_init(o, NETMAP_REQ_OPT_CSB);
    o->csb_atok = (uintptr_t)atok;
    o->csb_ktoa = (uintptr_t)ktoa;
    return o;
}

/*
 * netmap_ioctl CSB_ENABLE: no CSB option -> EINVAL (3125); with one on an
 * unbound fd netmap_csb_validate has no rings and accepts it (2149-2150);
 * on a binding without NR_EXCLUSIVE -> EINVAL in the status too (2152).
 */
static void ck_csb_enable(struct ctx *c)
{
    struct csb_atok *atok = zalloc(c, 2 * sizeof(*atok));
    struct csb_ktoa *ktoa = zalloc(c, 2 * sizeof(*ktoa));
    struct nmreq_opt_csb *o;
    struct nmreq_register r;
    struct nmreq_header h;
    int fd = dev_open(c), fd2;

    expect_req(c, fd, &h, NETMAP_REQ_CSB_ENABLE, "", NULL, 0, EINVAL, "CSB_ENABLE without a CSB option");

    o = csb_opt(c, atok, ktoa);
    h.nr_options = (uintptr_t)o;
    step(c, "CSB_ENABLE with a CSB option on an unbound fd");
    ctrl_expect(c, fd, &h, 0, 0, WB_FULL);
    expect_opt(c, o, NETMAP_REQ_OPT_CSB, NULL, 0, "CSB option");

    fd2 = null_open(c, &r, 1, 1, 64, 0, 0);
    o = csb_opt(c, atok, ktoa);
    hdr_init(&h, NETMAP_REQ_CSB_ENABLE, "", NULL);
    h.nr_options = (uintptr_t)o;
    step(c, "CSB_ENABLE on a binding without NR_EXCLUSIVE");
    ctrl_expect(c, fd2, &h, 0, EINVAL, WB_FULL);
    expect_opt(c, o, NETMAP_REQ_OPT_CSB, NULL, EINVAL, "CSB option");
}

/* A null REGISTER with a CSB option that must be refused with `want`, undone (2844-2849). */
static void csb_register_reject(struct ctx *c, uint64_t flags, void *atok, void *ktoa, int want, const char *why)
{
    struct nmreq_opt_csb *o = csb_opt(c, atok, ktoa);
    struct nmreq_register r;
    struct nmreq_header h;
    int fd = dev_open(c);

    reg_null(&r, 1, 1, 64, 64);
    r.nr_flags = flags;
    hdr_init(&h, NETMAP_REQ_REGISTER, "ctlnull", &r);
    h.nr_options = (uintptr_t)o;
    step(c, "REGISTER null + CSB (%s)", why);
    ctrl_expect(c, fd, &h, sizeof(r), want, WB_FULL);
    expect_opt(c, o, NETMAP_REQ_OPT_CSB, NULL, (uint32_t)want, "CSB option");
    expect_unbound(c, fd);
    step(c, "the fd registers normally afterwards");
    reg_null(&r, 1, 1, 64, 64);
    null_register(c, fd, "ctlnull", &r, NULL);
}

/*
 * netmap_csb_validate on REGISTER: needs NR_EXCLUSIVE (2152), entries aligned
 * to their size (2171), readable atok / writable ktoa (2181-2191); when
 * accepted it initialises both arrays, TX entries first (2198-2223), and the
 * sync ioctls refuse to run in CSB mode with EBUSY (3167-3170).
 */
static void ck_csb_register(struct ctx *c)
{
    struct csb_atok *atok = zalloc(c, 2 * sizeof(*atok));
    struct csb_ktoa *ktoa = zalloc(c, 2 * sizeof(*ktoa));
    struct nmreq_opt_csb *o;
    struct nmreq_register r;
    unsigned i, j;
    int fd;

    csb_register_reject(c, 0, atok, ktoa, EINVAL, "no NR_EXCLUSIVE");
    csb_register_reject(c, NR_EXCLUSIVE, (char *)atok + 4, ktoa, EINVAL, "misaligned csb_atok");
    csb_register_reject(c, NR_EXCLUSIVE, hole(c), ktoa, EFAULT, "csb_atok unmapped");
    csb_register_reject(c, NR_EXCLUSIVE, atok, hole(c), EFAULT, "csb_ktoa unmapped");

    memset(atok, 0xab, 2 * sizeof(*atok));
    memset(ktoa, 0xab, 2 * sizeof(*ktoa));
    o = csb_opt(c, atok, ktoa);
    fd = dev_open(c);
    reg_null(&r, 1, 1, 64, 64);
    r.nr_flags = NR_EXCLUSIVE;
    step(c, "REGISTER null NR_EXCLUSIVE + valid CSB (1 TX, 1 RX ring, 64 slots)");
    null_register(c, fd, "ctlnull", &r, o);
    expect_opt(c, o, NETMAP_REQ_OPT_CSB, NULL, 0, "CSB option");
    for (i = 0; i < 2; i++) {
        const char *t = i ? "RX" : "TX";
        CHECK(c, atok[i].head == 0 && atok[i].cur == 0 && atok[i].appl_need_kick == 1 && atok[i].sync_flags == 1,
              "csb_atok[%u] (%s): head %u cur %u appl_need_kick %u sync_flags %u, expected 0 0 1 1",
              i, t, atok[i].head, atok[i].cur, atok[i].appl_need_kick, atok[i].sync_flags);
        CHECK(c, ktoa[i].hwcur == 0 && ktoa[i].hwtail == (i ? 0u : 63u) && ktoa[i].kern_need_kick == 1,
              "csb_ktoa[%u] (%s): hwcur %u hwtail %u kern_need_kick %u, expected 0 %u 1",
              i, t, ktoa[i].hwcur, ktoa[i].hwtail, ktoa[i].kern_need_kick, i ? 0 : 63);
        for (j = 0; j < 13; j++)
            CHECK(c, ktoa[i].pad[j] == 0, "csb_ktoa[%u].pad[%u] is %#x, expected 0 (zeroed first)", i, j, ktoa[i].pad[j]);
    }
    expect_err(c, xioctl(fd, NIOCTXSYNC, NULL), EBUSY, "NIOCTXSYNC in CSB mode");
    expect_err(c, xioctl(fd, NIOCRXSYNC, NULL), EBUSY, "NIOCRXSYNC in CSB mode");
}

/*
 * netmap_sync_kloop / netmap_sync_kloop_stop (netmap_kloop.c, not part of
 * the spec files): both answer ENXIO on an fd with no binding.
 */
static void ck_kloop_unbound(struct ctx *c)
{
    struct nmreq_sync_kloop_start s;
    struct nmreq_header h;
    int fd = dev_open(c);

    expect_req(c, fd, &h, NETMAP_REQ_SYNC_KLOOP_STOP, "", NULL, 0, ENXIO, "SYNC_KLOOP_STOP on a fresh fd");
    memset(&s, 0, sizeof(s));
    s.sleep_us = 100;
    expect_req(c, fd, &h, NETMAP_REQ_SYNC_KLOOP_START, "", &s, sizeof(s), ENXIO,
               "SYNC_KLOOP_START (sleep_us 100) on a fresh fd");
}

/*
 * netmap_sync_kloop (netmap_kloop.c, not in the spec files): sleep_us >
 * 1000000 -> EINVAL before anything else; on a binding not in CSB mode ->
 * EINVAL.  netmap_sync_kloop_stop on a binding with no loop -> 0.
 */
static void ck_kloop_start(struct ctx *c)
{
    struct nmreq_sync_kloop_start s;
    struct nmreq_register r;
    struct nmreq_header h;
    int fd = dev_open(c), fd2;

    memset(&s, 0, sizeof(s));
    s.sleep_us = 1000001;
    expect_req(c, fd, &h, NETMAP_REQ_SYNC_KLOOP_START, "", &s, sizeof(s), EINVAL,
               "SYNC_KLOOP_START sleep_us 1000001 on a fresh fd");

    fd2 = null_open(c, &r, 1, 1, 64, 0, 0);
    s.sleep_us = 100;
    expect_req(c, fd2, &h, NETMAP_REQ_SYNC_KLOOP_START, "", &s, sizeof(s), EINVAL,
               "SYNC_KLOOP_START on a binding not in CSB mode");
    expect_req(c, fd2, &h, NETMAP_REQ_SYNC_KLOOP_STOP, "", NULL, 0, 0,
               "SYNC_KLOOP_STOP on a binding with no loop running");
}

/* A SYNC_KLOOP_START running in a thread of its own (it answers only when the loop ends). */
struct kloop_run {
    int fd;
    int err;
    pthread_t thread;
    struct nmreq_header h;
    struct nmreq_sync_kloop_start s;
};

static void *kloop_run_thread(void *arg)
{
    struct kloop_run *k = arg;

    k->err = ioctl(k->fd, NIOCCTRL, &k->h) < 0 ? errno : 0;
    return NULL;
}

/* A null port, 1 TX and 1 RX ring of 64 slots, NR_EXCLUSIVE, in CSB mode. */
static int csb_null_open(struct ctx *c, struct csb_atok **atok, struct csb_ktoa **ktoa)
{
    struct nmreq_register r;
    int fd = dev_open(c);

    *atok = zalloc(c, 2 * sizeof(**atok));
    *ktoa = zalloc(c, 2 * sizeof(**ktoa));
    reg_null(&r, 1, 1, 64, 64);
    r.nr_flags = NR_EXCLUSIVE;
    step(c, "REGISTER null NR_EXCLUSIVE + CSB");
    null_register(c, fd, "ctlnull", &r, csb_opt(c, *atok, *ktoa));
    return fd;
}

/* Is a loop running on fd?  CSB_ENABLE answers EBUSY then, 0 otherwise. */
static int kloop_running(struct ctx *c, int fd, struct csb_atok *atok, struct csb_ktoa *ktoa)
{
    struct nmreq_header h;

    hdr_init(&h, NETMAP_REQ_CSB_ENABLE, "", NULL);
    h.nr_options = (uintptr_t)csb_opt(c, atok, ktoa);
    return xioctl(fd, NIOCCTRL, &h) == EBUSY;
}

/* START in a thread and wait until the loop runs; with opts, the START's option chain. */
static void kloop_begin(struct ctx *c, struct kloop_run *k, int fd, void *opts,
                        struct csb_atok *atok, struct csb_ktoa *ktoa)
{
    memset(k, 0, sizeof(*k));
    k->fd = fd;
    k->err = -1;
    k->s.sleep_us = 100;
    hdr_init(&k->h, NETMAP_REQ_SYNC_KLOOP_START, "", &k->s);
    k->h.nr_options = (uintptr_t)opts;
    CHECK(c, pthread_create(&k->thread, NULL, kloop_run_thread, k) == 0, "pthread_create");
    for (int i = 0; i < 5000 && !kloop_running(c, fd, atok, ktoa); i++) {
        CHECK(c, __atomic_load_n(&k->err, __ATOMIC_ACQUIRE) == -1,
              "SYNC_KLOOP_START returned %s before any STOP", edesc(k->err));
        usleep(1000);
    }
    CHECK(c, kloop_running(c, fd, atok, ktoa), "the loop does not run 5 s after START");
}

/* Wait for the START of k to return; its errno. */
static int kloop_end(struct kloop_run *k)
{
    pthread_join(k->thread, NULL);
    return k->err;
}

static void kloop_stop(struct ctx *c, int fd, int want, const char *what)
{
    struct nmreq_header h;

    expect_req(c, fd, &h, NETMAP_REQ_SYNC_KLOOP_STOP, "", NULL, 0, want, "%s", what);
}

/*
 * START/STOP in every order (netmap_kloop.c): STOP with no loop answers 0
 * and leaves the stopping flag, so the next START returns 0 at once; a
 * running loop makes a second START (same fd, or a dup of it) and
 * CSB_ENABLE answer EBUSY, the syncs still EBUSY (CSB mode); STOP from
 * another thread or a dup of the fd ends it and START answers 0; a new
 * START afterwards runs again.
 */
static void ck_kloop_order(struct ctx *c)
{
    struct csb_atok *atok;
    struct csb_ktoa *ktoa;
    struct kloop_run k, k2;
    struct nmreq_header h;
    int fd = csb_null_open(c, &atok, &ktoa), fd2;

    kloop_stop(c, fd, 0, "STOP before any START");
    step(c, "START after a STOP with no loop: returns 0 at once");
    memset(&k, 0, sizeof(k));
    k.fd = fd;
    k.s.sleep_us = 100;
    hdr_init(&k.h, NETMAP_REQ_SYNC_KLOOP_START, "", &k.s);
    kloop_run_thread(&k);
    expect_err(c, k.err, 0, "SYNC_KLOOP_START after STOP");

    step(c, "START runs until STOP");
    kloop_begin(c, &k, fd, NULL, atok, ktoa);
    k2.fd = fd;
    k2.s.sleep_us = 0;
    hdr_init(&k2.h, NETMAP_REQ_SYNC_KLOOP_START, "", &k2.s);
    step(c, "a second START on the same fd while the loop runs");
    kloop_run_thread(&k2);
    expect_err(c, k2.err, EBUSY, "second SYNC_KLOOP_START");
    fd2 = dup(fd);
    CHECK(c, fd2 >= 0, "dup: %s", edesc(errno));
    step(c, "a second START on a dup of the fd while the loop runs");
    kloop_run_thread(&k2);
    expect_err(c, k2.err, EBUSY, "SYNC_KLOOP_START on the dup");
    hdr_init(&h, NETMAP_REQ_CSB_ENABLE, "", NULL);
    h.nr_options = (uintptr_t)csb_opt(c, atok, ktoa);
    step(c, "CSB_ENABLE while the loop runs");
    ctrl_expect(c, fd, &h, 0, EBUSY, WB_FULL);
    expect_opt(c, (void *)(uintptr_t)h.nr_options, NETMAP_REQ_OPT_CSB, NULL, EBUSY, "CSB option");
    expect_err(c, xioctl(fd, NIOCTXSYNC, NULL), EBUSY, "NIOCTXSYNC while the loop runs");
    kloop_stop(c, fd2, 0, "STOP on a dup of the fd");
    expect_err(c, kloop_end(&k), 0, "SYNC_KLOOP_START after STOP");
    close(fd2);

    step(c, "START again after the loop ended");
    kloop_begin(c, &k, fd, NULL, atok, ktoa);
    kloop_stop(c, fd, 0, "STOP from another thread on the same fd");
    expect_err(c, kloop_end(&k), 0, "SYNC_KLOOP_START after STOP");
    kloop_stop(c, fd, 0, "STOP after the loop ended");
    kloop_stop(c, fd, 0, "STOP once more");
    step(c, "START after those STOPs: returns 0 at once");
    kloop_run_thread(&k);
    expect_err(c, k.err, 0, "SYNC_KLOOP_START after STOP");
}

/* START with opts that must fail with want (the first option's status: ostatus). */
static void kloop_start_reject(struct ctx *c, int fd, void *opts, int want, uint32_t ostatus, const char *why)
{
    struct nmreq_sync_kloop_start s;
    struct nmreq_header h;
    const struct nmreq_option *o = opts;

    memset(&s, 0, sizeof(s));
    hdr_init(&h, NETMAP_REQ_SYNC_KLOOP_START, "", &s);
    h.nr_options = (uintptr_t)opts;
    step(c, "SYNC_KLOOP_START with %s", why);
    ctrl_expect(c, fd, &h, sizeof(s), want, WB_FULL);
    expect_opt(c, o, o->nro_reqtype, (void *)(uintptr_t)o->nro_next, ostatus, why);
}

static struct nmreq_opt_sync_kloop_eventfds *eventfds_opt(struct ctx *c, unsigned n, int io, int irq)
{
    size_t size = sizeof(struct nmreq_opt_sync_kloop_eventfds) + n * sizeof(struct nmreq_opt_sync_kloop_eventfd);
    struct nmreq_opt_sync_kloop_eventfds *o = zalloc(c, size);

    opt_init(o, NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS);
    o->nro_opt.nro_size = size;
    for (unsigned i = 0; i < n; i++) {
        o->eventfds[i].ioeventfd = io;
        o->eventfds[i].irqfd = irq;
    }
    return o;
}

static struct nmreq_opt_sync_kloop_mode *mode_opt(struct ctx *c, uint32_t mode)
{
    struct nmreq_opt_sync_kloop_mode *o = zalloc(c, sizeof(*o));

    opt_init(o, NETMAP_REQ_OPT_SYNC_KLOOP_MODE);
    o->nro_opt.nro_size = sizeof(*o);
    o->mode = mode;
    return o;
}

/*
 * The START options (netmap_sync_kloop): a mode with unknown bits, an
 * eventfds option whose size does not match the bound rings, a direct mode
 * without every ioeventfd -> EINVAL with the option's status EINVAL; an
 * irqfd that is not an eventfd -> EINVAL, one that is not open -> EBADF
 * (the option itself accepted); valid eventfds and a direct mode: the loop
 * runs, and both options answer 0.
 */
static void ck_kloop_options(struct ctx *c)
{
    struct csb_atok *atok;
    struct csb_ktoa *ktoa;
    struct nmreq_opt_sync_kloop_eventfds *ev;
    struct nmreq_opt_sync_kloop_mode *mo;
    struct kloop_run k;
    int fd = csb_null_open(c, &atok, &ktoa), efd[2], p[2];

    kloop_start_reject(c, fd, mode_opt(c, 4), EINVAL, EINVAL, "mode 4 (unknown bit)");
    kloop_start_reject(c, fd, eventfds_opt(c, 1, -1, -1), EINVAL, EINVAL, "eventfds for 1 ring of 2");
    kloop_start_reject(c, fd, eventfds_opt(c, 3, -1, -1), EINVAL, EINVAL, "eventfds for 3 rings of 2");
    mo = mode_opt(c, NM_OPT_SYNC_KLOOP_DIRECT_TX);
    ev = eventfds_opt(c, 2, -1, -1);
    ev->nro_opt.nro_next = (uintptr_t)mo;
    kloop_start_reject(c, fd, ev, EINVAL, EINVAL, "DIRECT_TX without ioeventfds");
    CHECK(c, pipe(p) == 0, "pipe: %s", edesc(errno));
    kloop_start_reject(c, fd, eventfds_opt(c, 2, -1, p[0]), EINVAL, 0, "a pipe as irqfd");
    close(p[0]);
    close(p[1]);
    kloop_start_reject(c, fd, eventfds_opt(c, 2, -1, 1000), EBADF, 0, "irqfd 1000 (not open)");

    efd[0] = eventfd(0, EFD_CLOEXEC);
    efd[1] = eventfd(0, EFD_CLOEXEC);
    CHECK(c, efd[0] >= 0 && efd[1] >= 0, "eventfd: %s", edesc(errno));
    ev = eventfds_opt(c, 2, -1, -1);
    ev->eventfds[0].ioeventfd = ev->eventfds[1].ioeventfd = efd[0];
    ev->eventfds[0].irqfd = ev->eventfds[1].irqfd = efd[1];
    mo = mode_opt(c, NM_OPT_SYNC_KLOOP_DIRECT_RX);
    ev->nro_opt.nro_next = (uintptr_t)mo;
    step(c, "START with eventfds and DIRECT_RX");
    kloop_begin(c, &k, fd, ev, atok, ktoa);
    kloop_stop(c, fd, 0, "STOP the eventfd loop");
    expect_err(c, kloop_end(&k), 0, "SYNC_KLOOP_START with eventfds after STOP");
    expect_opt(c, ev, NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS, mo, 0, "eventfds option");
    expect_opt(c, mo, NETMAP_REQ_OPT_SYNC_KLOOP_MODE, NULL, 0, "mode option");
    close(efd[0]);
    close(efd[1]);
}

/* ------------------------------------------------------------------ */
/* 10. Legacy API (netmap_legacy.c)                                    */

static void legacy_init(struct nmreq *q, const char *name)
{
    memset(q, 0, sizeof(*q));
    q->nr_version = NETMAP_API;
    memcpy(q->nr_name, name, strnlen(name, sizeof(q->nr_name) - 1));
}

/*
 * One legacy ioctl; on error the struct must be as sent (netmap only
 * sanitizes nr_name[15] before converting; nmreq_to_legacy runs on success).
 */
static int legacy_expect(struct ctx *c, int fd, unsigned long cmd, struct nmreq *q, int want)
{
    struct nmreq sent = *q, clean;
    char what[96];
    int err;

    snprintf(what, sizeof(what), "%s \"%.16s\" nr_cmd %u nr_flags %#x nr_ringid %#x",
             cmd == NIOCREGIF ? "NIOCREGIF" : "NIOCGINFO", sent.nr_name, sent.nr_cmd, sent.nr_flags, sent.nr_ringid);
    err = xioctl(fd, cmd, q);
    expect_err(c, err, want, what);
    if (err) {
        clean = sent;
        clean.nr_name[sizeof(clean.nr_name) - 1] = '\0';
        CHECK(c, memcmp(q, &sent, sizeof(*q)) == 0 || memcmp(q, &clean, sizeof(*q)) == 0,
              "%s: struct nmreq changed although the request failed", what);
    }
    return err;
}

/* netmap_ioctl_legacy: nr_version < 14 -> EINVAL; there is no upper bound. */
static void ck_legacy_version(struct ctx *c)
{
    struct nmreq q;
    int fd = dev_open(c);

    legacy_init(&q, "");
    q.nr_version = 13;
    step(c, "NIOCGINFO nr_version 13");
    legacy_expect(c, fd, NIOCGINFO, &q, EINVAL);
    legacy_init(&q, NOSUCH);
    q.nr_version = 0;
    step(c, "NIOCREGIF nr_version 0");
    legacy_expect(c, fd, NIOCREGIF, &q, EINVAL);
    legacy_init(&q, "");
    q.nr_version = 200;
    step(c, "NIOCGINFO nr_version 200 (only a lower bound is checked)");
    legacy_expect(c, fd, NIOCGINFO, &q, 0);
    CHECK(c, q.nr_version == 200 && q.nr_arg2 == 1, "nr_version %u nr_arg2 %u after the call", q.nr_version, q.nr_arg2);
}

/*
 * NIOCGINFO, nr_cmd 0, empty name -> PORT_INFO_GET on mem nr_arg2 (0: 1):
 * nr_memsize and nr_arg2 filled, ring/slot fields echoed (nmreq_to_legacy).
 */
static void ck_legacy_getinfo(struct ctx *c)
{
    struct nmreq_port_info_get b;
    struct nmreq_header h;
    struct nmreq q;
    int fd = dev_open(c);

    legacy_init(&q, "");
    q.nr_tx_slots = 7;
    q.nr_rx_slots = 9;
    q.nr_tx_rings = 3;
    q.nr_rx_rings = 4;
    step(c, "NIOCGINFO empty name");
    legacy_expect(c, fd, NIOCGINFO, &q, 0);
    memset(&b, 0, sizeof(b));
    expect_req(c, fd, &h, NETMAP_REQ_PORT_INFO_GET, "", &b, 0, 0, "NIOCCTRL PORT_INFO_GET empty name, for comparison");
    CHECK(c, q.nr_arg2 == 1, "nr_arg2 (mem id) %u, expected 1", q.nr_arg2);
    CHECK(c, q.nr_memsize == (uint32_t)b.nr_memsize && q.nr_memsize != 0,
          "nr_memsize %u, PORT_INFO_GET says %" PRIu64, q.nr_memsize, b.nr_memsize);
    CHECK(c, q.nr_tx_slots == 7 && q.nr_rx_slots == 9 && q.nr_tx_rings == 3 && q.nr_rx_rings == 4,
          "ring/slot fields came back %u %u %u %u, expected the values sent (7 9 3 4)",
          q.nr_tx_slots, q.nr_rx_slots, q.nr_tx_rings, q.nr_rx_rings);
}

/*
 * NIOCREGIF: a missing port -> ENXIO (netmap_get_na); an unknown nr_cmd
 * leaves nr_reqtype 0 in the converted header -> EINVAL (nmreq_from_legacy
 * has no default case; nm_os_malloc returns zeroed memory); the passthrough
 * commands make nmreq_from_legacy return NULL -> ENOMEM.
 */
static void ck_legacy_regif_errors(struct ctx *c)
{
    struct nmreq q;
    int fd = dev_open(c);

    legacy_init(&q, NOSUCH);
    step(c, "NIOCREGIF \"%s\"", NOSUCH);
    legacy_expect(c, fd, NIOCREGIF, &q, ENXIO);
    legacy_init(&q, NOSUCH);
    q.nr_flags = NR_REG_ONE_NIC;
    q.nr_ringid = 1;
    step(c, "NIOCREGIF \"%s\" ONE_NIC ring 1", NOSUCH);
    legacy_expect(c, fd, NIOCREGIF, &q, ENXIO);
    legacy_init(&q, "");
    q.nr_cmd = 99;
    step(c, "NIOCREGIF nr_cmd 99");
    legacy_expect(c, fd, NIOCREGIF, &q, EINVAL);
    legacy_init(&q, "");
    q.nr_cmd = NETMAP_PT_HOST_CREATE;
    step(c, "NIOCREGIF nr_cmd NETMAP_PT_HOST_CREATE");
    legacy_expect(c, fd, NIOCREGIF, &q, ENOMEM);
    expect_unbound(c, fd);
}

/*
 * NIOCREGIF of a null port: nr_flags carries the mode, nr_arg2 the mem id,
 * nr_arg3 the extra buffers (nmreq_register_from_legacy); the answer comes
 * back in nr_offset, nr_memsize, nr_arg2, nr_arg3 (nmreq_register_to_legacy).
 */
static void ck_legacy_regif_null(struct ctx *c)
{
    struct nmreq q;
    struct nmreq_register r;
    struct portview pv;
    struct idxset set;
    int fd = dev_open(c);

    legacy_init(&q, "ctlnull");
    q.nr_flags = NR_REG_NULL;
    q.nr_arg2 = 1;
    q.nr_arg3 = 5;
    q.nr_tx_rings = 2;
    q.nr_rx_rings = 2;
    q.nr_tx_slots = 128;
    q.nr_rx_slots = 64;
    step(c, "NIOCREGIF null port, mem 1, 5 extra buffers");
    legacy_expect(c, fd, NIOCREGIF, &q, 0);
    CHECK(c, q.nr_arg3 == 5 && q.nr_arg2 == 1, "nr_arg3 %u nr_arg2 %u, expected 5 and 1", q.nr_arg3, q.nr_arg2);
    CHECK(c, q.nr_tx_rings == 2 && q.nr_rx_rings == 2 && q.nr_tx_slots == 128 && q.nr_rx_slots == 64,
          "rings/slots came back %u/%u %u/%u", q.nr_tx_rings, q.nr_rx_rings, q.nr_tx_slots, q.nr_rx_slots);
    CHECK(c, q.nr_memsize > 0 && q.nr_offset < q.nr_memsize, "nr_offset %u nr_memsize %u", q.nr_offset, q.nr_memsize);
    CHECK(c, q.nr_flags == NR_REG_NULL && q.nr_ringid == 0, "nr_flags/nr_ringid changed to %#x/%#x",
          q.nr_flags, q.nr_ringid);

    reg_null(&r, 2, 2, 128, 64);
    r.nr_offset = q.nr_offset;
    r.nr_memsize = q.nr_memsize;
    r.nr_extra_bufs = 5;
    map_port(c, fd, &r, &pv);
    idx_init(c, &set, 2 * 128 + 2 * 64 + 5);
    check_rings(c, &pv, &r, 1, 1, &set);
    check_extra(c, &pv, 5, &set);
    idx_unique(c, &set, "ring slots and extra buffers");
    expect_err(c, xioctl(fd, NIOCTXSYNC, NULL), 0, "NIOCTXSYNC");
    step(c, "second NIOCREGIF on the same fd");
    legacy_init(&q, "ctlnull");
    q.nr_flags = NR_REG_NULL;
    q.nr_arg2 = 1;
    legacy_expect(c, fd, NIOCREGIF, &q, EBUSY);
}

/* Which of the 2 TX / 2 RX rings of a pipe end this fd bound: bit i = ring i. */
static void pipe_bound(struct ctx *c, int fd, const struct nmreq *q, unsigned mask[2])
{
    struct nmreq_register r;
    struct portview pv;
    unsigned i, rx;

    memset(&r, 0, sizeof(r));
    r.nr_offset = q->nr_offset;
    r.nr_memsize = q->nr_memsize;
    map_port(c, fd, &r, &pv);
    CHECK(c, pv.nifp->ni_tx_rings == 2 && pv.nifp->ni_rx_rings == 2, "pipe end has %u/%u rings, expected 2/2",
          pv.nifp->ni_tx_rings, pv.nifp->ni_rx_rings);
    for (rx = 0; rx < 2; rx++) {
        unsigned base = rx ? pv.nifp->ni_tx_rings + pv.nifp->ni_host_tx_rings : 0;
        mask[rx] = 0;
        for (i = 0; i < 2; i++)
            if (pv.nifp->ring_ofs[base + i])
                mask[rx] |= 1u << i;
    }
    unmap_all(c);
}

/*
 * [pipe] nmreq_register_from_legacy with NR_REG_DEFAULT: NETMAP_SW_RING ->
 * NR_REG_SW, which a pipe refuses (netmap_get_pipe_na: only ALL_NIC and
 * ONE_NIC) -> EINVAL; NETMAP_HW_RING|i -> ONE_NIC ring i; neither -> ALL_NIC;
 * a ring beyond the pipe's rings -> EINVAL (netmap_interp_ringid 1922).
 */
static void ck_legacy_ringid(struct ctx *c)
{
    static const struct { const char *name; uint16_t ringid; int want; unsigned mask; } cases[] = {
        { "ctlr{1", NETMAP_SW_RING, EINVAL, 0 },
        { "ctlr{2", NETMAP_HW_RING | 1, 0, 2 },
        { "ctlr{3", 0, 0, 3 },
        { "ctlr{4", NETMAP_HW_RING | 5, EINVAL, 0 },
    };
    unsigned i;

    for (i = 0; i < 4; i++) {
        struct nmreq q;
        int fd = dev_open(c);

        legacy_init(&q, cases[i].name);
        q.nr_ringid = cases[i].ringid;
        q.nr_tx_rings = 2;
        q.nr_rx_rings = 2;
        q.nr_arg2 = 1;
        step(c, "NIOCREGIF \"%s\" NR_REG_DEFAULT nr_ringid %#x", cases[i].name, cases[i].ringid);
        if (legacy_expect(c, fd, NIOCREGIF, &q, cases[i].want) == 0) {
            unsigned mask[2];
            pipe_bound(c, fd, &q, mask);
            CHECK(c, mask[0] == cases[i].mask && mask[1] == cases[i].mask,
                  "bound rings: TX mask %#x RX mask %#x, expected %#x", mask[0], mask[1], cases[i].mask);
        }
        dev_close(c, fd);
    }
}

/*
 * [pipe] nmreq_register_from_legacy: NR_REG_PIPE_MASTER with nr_ringid 3
 * turns "ctllp" into "ctllp{3" (ALL_NIC, ring 0).  Seen from NIOCCTRL: the
 * legacy registration is exclusive, so REGISTER "ctllp{3" is EBUSY
 * (netmap_krings_get) while "ctllp{4" is another pipe and works.
 */
static void ck_legacy_pipe_suffix(struct ctx *c)
{
    struct nmreq q;
    struct nmreq_register r;
    struct nmreq_header h;
    int fd = dev_open(c), fd2 = dev_open(c), fd3 = dev_open(c);

    legacy_init(&q, "ctllp");
    q.nr_flags = NR_REG_PIPE_MASTER | NR_EXCLUSIVE;
    q.nr_ringid = 3;
    q.nr_arg2 = 1;
    step(c, "NIOCREGIF \"ctllp\" PIPE_MASTER ringid 3, NR_EXCLUSIVE");
    legacy_expect(c, fd, NIOCREGIF, &q, 0);
    CHECK(c, q.nr_memsize > 0, "nr_memsize 0");

    memset(&r, 0, sizeof(r));
    r.nr_mode = NR_REG_ALL_NIC;
    r.nr_mem_id = 1;
    expect_req(c, fd2, &h, NETMAP_REQ_REGISTER, "ctllp{3", &r, sizeof(r), EBUSY,
               "NIOCCTRL REGISTER \"ctllp{3\": the rings are held exclusively");
    memset(&r, 0, sizeof(r));
    r.nr_mode = NR_REG_ALL_NIC;
    r.nr_mem_id = 1;
    expect_req(c, fd3, &h, NETMAP_REQ_REGISTER, "ctllp{4", &r, 0, 0, "NIOCCTRL REGISTER \"ctllp{4\": another pipe");
}

/* ------------------------------------------------------------------ */
/* 11. Fuzz                                                            */

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(rnd(s) % n);
}

#define FUZZ_BUFS 4
#define FUZZ_BUF_LEN 8192

struct fuzz {
    uint64_t s;
    unsigned char *buf[FUZZ_BUFS];
};

/* A pointer of one of the kinds the fuzzer plays with. */
static uint64_t fuzz_ptr(struct ctx *c, struct fuzz *f)
{
    switch (below(&f->s, 6)) {
    case 0: return 0;
    case 1: return (uintptr_t)hole(c);
    case 2: return (uintptr_t)(g.edge + g.page - 1 - below(&f->s, 63));   /* straddles into the hole */
    case 3: return 0xffff800000000000ull + (rnd(&f->s) & 0xffffffffff8ull); /* kernel half: never mapped */
    default: return (uintptr_t)(f->buf[below(&f->s, FUZZ_BUFS)] + 8 * below(&f->s, 64));
    }
}

/* A chain of 1..4 options in the fuzz buffers; returns its head. */
static uint64_t fuzz_options(struct ctx *c, struct fuzz *f)
{
    static const uint64_t sizes[] = { 0, 8, 24, 64, 4096, 8192, 1ull << 32, 1ull << 63 };
    struct nmreq_option *o[4];
    unsigned n = 1 + below(&f->s, 4), i;

    for (i = 0; i < n; i++) {
        o[i] = (struct nmreq_option *)(void *)(f->buf[below(&f->s, FUZZ_BUFS)] + 64 * (1 + below(&f->s, 60)));
        if (below(&f->s, 4))
            o[i]->nro_reqtype = below(&f->s, NETMAP_REQ_OPT_MAX + 2);
        if (below(&f->s, 2))
            o[i]->nro_size = sizes[below(&f->s, 8)];
        if (i)
            opt_link(o[i - 1], o[i]);
    }
    switch (below(&f->s, 4)) {   /* the end of the chain */
    case 0: o[n - 1]->nro_next = 0; break;
    case 1: o[n - 1]->nro_next = (uintptr_t)o[below(&f->s, n)]; break;   /* a loop */
    default: o[n - 1]->nro_next = fuzz_ptr(c, f); break;
    }
    return (uintptr_t)o[0];
}

static void fuzz_name(struct fuzz *f, char *name)
{
    static const char *const names[] = { "", NOSUCH, "ctlfz", "ctlfz{1", "ctlfz}2", "ctlfz{", "{1", "ctlnull" };
    unsigned i;

    memset(name, 0, NETMAP_REQ_IFNAMSIZ);
    if (below(&f->s, 5)) {
        strcpy(name, names[below(&f->s, sizeof(names) / sizeof(names[0]))]);
        return;
    }
    for (i = 0; i < NETMAP_REQ_IFNAMSIZ; i++) {   /* random bytes, no pipe braces, maybe no NUL */
        char ch = (char)rnd(&f->s);
        name[i] = (ch == '{' || ch == '}') ? 'x' : ch;
    }
}

/* A REGISTER body that a null port might accept. */
static void fuzz_plausible_register(struct fuzz *f, struct nmreq_register *r)
{
    static const uint64_t flags[] = { NR_EXCLUSIVE, NR_TX_RINGS_ONLY, NR_RX_RINGS_ONLY, NR_NO_TX_POLL,
                                      NR_DO_RX_POLL, NR_MONITOR_TX, NR_ACCEPT_VNET_HDR };
    unsigned i;

    reg_null(r, (uint16_t)(1 + below(&f->s, 4)), (uint16_t)(1 + below(&f->s, 4)),
             1 + below(&f->s, 1024), 1 + below(&f->s, 1024));
    r->nr_extra_bufs = below(&f->s, 32);
    r->nr_mode = below(&f->s, 4) ? NR_REG_NULL : below(&f->s, 10);
    for (i = 0; i < 7; i++)
        if (!below(&f->s, 6))
            r->nr_flags |= flags[i];
}

static void fuzz_legacy(struct ctx *c, struct fuzz *f, int fd)
{
    static const uint16_t cmds[] = { 0, 0, 0, NETMAP_BDG_ATTACH, NETMAP_BDG_DETACH, NETMAP_BDG_LIST,
                                     NETMAP_BDG_VNET_HDR, NETMAP_BDG_DELIF, NETMAP_BDG_POLLING_ON,
                                     NETMAP_VNET_HDR_GET, 99 };   /* never NEWIF: it creates ports */
    struct nmreq q;
    char name[NETMAP_REQ_IFNAMSIZ];

    (void)c;
    memset(&q, 0, sizeof(q));
    fuzz_name(f, name);
    memcpy(q.nr_name, name, sizeof(q.nr_name));
    q.nr_version = below(&f->s, 4) ? NETMAP_API : below(&f->s, 300);
    q.nr_cmd = cmds[below(&f->s, sizeof(cmds) / sizeof(cmds[0]))];
    q.nr_flags = below(&f->s, 10) | (below(&f->s, 2) ? NR_EXCLUSIVE : 0);
    q.nr_ringid = (uint16_t)rnd(&f->s);
    q.nr_tx_rings = (uint16_t)below(&f->s, 5);
    q.nr_rx_rings = (uint16_t)below(&f->s, 5);
    q.nr_tx_slots = below(&f->s, 2048);
    q.nr_rx_slots = below(&f->s, 2048);
    q.nr_arg2 = (uint16_t)below(&f->s, 3);
    q.nr_arg3 = below(&f->s, 64);
    (void)xioctl(fd, below(&f->s, 2) ? NIOCREGIF : NIOCGINFO, &q);
}

/*
 * 2000 random NIOCCTRL headers (plus some legacy requests): any errno is
 * fine, the program must not crash, and the device must still work.
 */
static void ck_fuzz(struct ctx *c)
{
    struct fuzz f = { .s = g.seed };
    unsigned hist[256] = { 0 }, i, k;
    struct nmreq_register r;
    int fd = -1;

    vnote(c, "seed %#" PRIx64, g.seed);
    for (k = 0; k < FUZZ_BUFS; k++)
        f.buf[k] = zalloc(c, FUZZ_BUF_LEN);
    for (i = 0; i < 2000; i++) {
        struct nmreq_header h;
        int err;

        if (i % 50 == 0) {   /* a fresh fd now and then: bound fds answer EBUSY */
            if (fd >= 0)
                dev_close(c, fd);
            fd = dev_open(c);
        }
        for (k = 0; k < FUZZ_BUFS; k++) {
            uint64_t *w = (uint64_t *)(void *)f.buf[k];
            size_t j;
            for (j = 0; j < FUZZ_BUF_LEN / 8; j++)
                w[j] = below(&f.s, 3) ? rnd(&f.s) : below(&f.s, 4096);
        }
        step(c, "fuzz iteration %u", i);
        if (below(&f.s, 10) == 0) {
            fuzz_legacy(c, &f, fd);
            continue;
        }
        memset(&h, 0, sizeof(h));
        h.nr_version = below(&f.s, 8) ? NETMAP_API : (uint16_t)(below(&f.s, 2) ? 13 + below(&f.s, 4) : rnd(&f.s));
        do
            h.nr_reqtype = (uint16_t)(below(&f.s, 8) ? below(&f.s, 17) : rnd(&f.s));
        while (h.nr_reqtype == NETMAP_REQ_VALE_NEWIF);   /* it would create persistent ports */
        h.nr_reserved = below(&f.s, 16) ? 0 : (uint32_t)rnd(&f.s);
        fuzz_name(&f, h.nr_name);
        if (below(&f.s, 2)) {   /* the right kind of body for the type, half of the time */
            int bodyless = h.nr_reqtype == 0 || h.nr_reqtype > NETMAP_REQ_CSB_ENABLE ||
                           h.nr_reqtype == NETMAP_REQ_VALE_DELIF || h.nr_reqtype == NETMAP_REQ_SYNC_KLOOP_STOP ||
                           h.nr_reqtype == NETMAP_REQ_CSB_ENABLE;
            h.nr_body = bodyless ? 0 : (uintptr_t)f.buf[below(&f.s, FUZZ_BUFS)];
        } else {
            h.nr_body = fuzz_ptr(c, &f);
        }
        if (h.nr_reqtype == NETMAP_REQ_REGISTER && below(&f.s, 3) == 0) {
            h.nr_body = (uintptr_t)f.buf[0];
            fuzz_plausible_register(&f, (struct nmreq_register *)(void *)f.buf[0]);
        }
        h.nr_options = below(&f.s, 2) ? 0 : below(&f.s, 3) ? fuzz_options(c, &f) : fuzz_ptr(c, &f);
        err = xioctl(fd, NIOCCTRL, &h);
        hist[err & 0xff]++;
    }
    if (fd >= 0)
        dev_close(c, fd);
    if (g.verbose) {
        printf("# %s: errno histogram:", c->name);
        for (i = 0; i < 256; i++)
            if (hist[i])
                printf(" %s=%u", i ? ename((int)i) : "ok", hist[i]);
        putchar('\n');
    }
    (void)hole(c);
    step(c, "after the fuzz: a fresh fd registers a null port");
    fd = null_open(c, &r, 1, 1, 64, 2, 0);
    expect_err(c, xioctl(fd, NIOCTXSYNC, NULL), 0, "NIOCTXSYNC");
}

/* ------------------------------------------------------------------ */
/* Check table and main                                                */

#define CK_PIPE 0x1   /* needs netmap pipes */
#define CK_SLOW 0x2   /* gets 10x the timeout */

static const struct check {
    const char *name;
    void (*fn)(struct ctx *);
    unsigned flags;
    const char *what;
} checks[] = {
    { "sync_unbound", ck_sync_unbound, 0, "TXSYNC/RXSYNC on a fresh fd: ENXIO" },
    { "unknown_ioctl", ck_unknown_ioctl, 0, "unknown ioctl: EOPNOTSUPP (or ENOTTY)" },
    { "hdr_version", ck_hdr_version, 0, "nr_version outside 14..15: EINVAL, header untouched" },
    { "hdr_reserved", ck_hdr_reserved, 0, "nr_reserved != 0: EINVAL, header untouched" },
    { "hdr_reqtype", ck_hdr_reqtype, 0, "unknown nr_reqtype, with and without body: EINVAL" },
    { "hdr_body_missing", ck_hdr_body_missing, 0, "body expected but nr_body NULL: EINVAL" },
    { "hdr_body_unexpected", ck_hdr_body_unexpected, 0, "body-less type with a body: EINVAL" },
    { "hdr_body_efault", ck_hdr_body_efault, 0, "unreadable body: EFAULT" },
    { "hdr_options_efault", ck_hdr_options_efault, 0, "unreadable nr_options: EFAULT" },
    { "hdr_name_unterminated", ck_hdr_name_unterminated, 0, "64-byte name: used as 63, nr_name[63] = 0" },
    { "opt_loop", ck_opt_loop, 0, "looping chain: duplicate EINVAL, or EMSGSIZE through unknown types" },
    { "opt_chain_too_long", ck_opt_chain_too_long, 0, "128 options on REGISTER outgrow the copy buffer: EMSGSIZE" },
    { "opt_chain_at_limit", ck_opt_chain_at_limit, 0, "127 options on REGISTER fit the copy buffer" },
    { "opt_eventfds_size", ck_opt_eventfds_size, 0, "SYNC_KLOOP_EVENTFDS nro_size above the request size: EMSGSIZE" },
    { "opt_nro_size", ck_opt_nro_size, 0, "nro_size > 4096 on a fixed-size option: EMSGSIZE" },
    { "opt_type_zero", ck_opt_type_zero, 0, "option type 0: EINVAL, status EINVAL, copy stops" },
    { "opt_type_unknown", ck_opt_type_unknown, 0, "option type >= OPT_MAX: skipped, EOPNOTSUPP on REGISTER" },
    { "opt_duplicate", ck_opt_duplicate, 0, "two OFFSETS: EINVAL, both statuses EINVAL, copy stops" },
    { "opt_unconsumed_register", ck_opt_unconsumed_register, 0, "unconsumed option on REGISTER: EOPNOTSUPP, undone" },
    { "opt_unconsumed_info", ck_opt_unconsumed_info, 0, "unconsumed option on PORT_INFO_GET: success, EOPNOTSUPP" },
    { "opt_dangling_next", ck_opt_dangling_next, 0, "unreadable nro_next: EFAULT" },
    { "opt_body_efault", ck_opt_body_efault, 0, "unreadable option body: EFAULT" },
    { "null_memid0", ck_null_memid0, 0, "null port without allocator: EINVAL" },
    { "null_memid_bad", ck_null_memid_bad, 0, "null port on nr_mem_id 7: EINVAL" },
    { "null_register", ck_null_register, 0, "null port: body, netmap_if, rings, buffers, shared mapping" },
    { "null_busy", ck_null_busy, 0, "second REGISTER on a bound fd: EBUSY" },
    { "null_one_direction", ck_null_one_direction, 0, "NR_TX_RINGS_ONLY / NR_RX_RINGS_ONLY" },
    { "null_sync", ck_null_sync, 0, "TXSYNC/RXSYNC on a null port: 0" },
    { "null_rx_timestamp", ck_null_rx_timestamp, 0, "RXSYNC and poll(POLLIN) stamp ring->ts, no NR_TIMESTAMP needed" },
    { "null_extra_bufs", ck_null_extra_bufs, 0, "10 extra buffers: list at ni_bufs_head" },
    { "null_two_fds", ck_null_two_fds, 0, "two null ports: own netmap_if, disjoint buffers" },
    { "modes_nosuchport", ck_modes_nosuchport, 0, "every nr_mode on a missing port: ENXIO / EINVAL" },
    { "info_empty", ck_info_empty, 0, "PORT_INFO_GET empty name: mem 1, memsize" },
    { "info_bad_memid", ck_info_bad_memid, 0, "PORT_INFO_GET empty name, mem 5: EINVAL" },
    { "info_nosuchport", ck_info_nosuchport, 0, "PORT_INFO_GET / POOLS_INFO_GET missing port: ENXIO" },
    { "pools_pipe", ck_pools_pipe, CK_PIPE, "POOLS_INFO_GET on a pipe: mem 1 pool layout" },
    { "port_hdr", ck_port_hdr, 0, "PORT_HDR_SET bad length EINVAL, missing port ENXIO" },
    { "offsets_bits", ck_offsets_bits, 0, "OFFSETS bits 65: EINVAL" },
    { "offsets_max", ck_offsets_max, 0, "OFFSETS max > buffer or > bits: EINVAL" },
    { "offsets_initial", ck_offsets_initial, 0, "OFFSETS initial > max: EINVAL" },
    { "offsets_valid", ck_offsets_valid, 0, "OFFSETS accepted: offset_mask, slot offsets" },
    { "csb_enable", ck_csb_enable, 0, "CSB_ENABLE: no option EINVAL, unbound ok, not exclusive EINVAL" },
    { "csb_register", ck_csb_register, 0, "CSB on REGISTER: validation, initialisation, sync EBUSY" },
    { "kloop_unbound", ck_kloop_unbound, 0, "SYNC_KLOOP_START/STOP on a fresh fd: ENXIO" },
    { "kloop_start", ck_kloop_start, 0, "SYNC_KLOOP_START argument checks, STOP without loop" },
    { "kloop_order", ck_kloop_order, 0, "SYNC_KLOOP_START/STOP in every order, EBUSY while running" },
    { "kloop_options", ck_kloop_options, 0, "SYNC_KLOOP_START mode and eventfds options" },
    { "legacy_version", ck_legacy_version, 0, "legacy nr_version < 14: EINVAL" },
    { "legacy_getinfo", ck_legacy_getinfo, 0, "NIOCGINFO empty name" },
    { "legacy_regif_errors", ck_legacy_regif_errors, 0, "NIOCREGIF missing port ENXIO, bad nr_cmd EINVAL/ENOMEM" },
    { "legacy_regif_null", ck_legacy_regif_null, 0, "NIOCREGIF null port with extra buffers" },
    { "legacy_ringid", ck_legacy_ringid, CK_PIPE, "legacy nr_ringid SW/HW_RING translation" },
    { "legacy_pipe_suffix", ck_legacy_pipe_suffix, CK_PIPE, "legacy PIPE_MASTER + ringid -> name{N" },
    { "fuzz", ck_fuzz, CK_SLOW, "2000 random requests, then the device still works" },
};

#define NCHECKS (sizeof(checks) / sizeof(checks[0]))

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nm-ctltest [-l] [-v] [-P] [-s SEED] [-t SECONDS] [CHECK...]\n"
            "Control-plane conformance test of the netmap device ($NETMAP_DEVICE, or /dev/netmap).\n"
            "  -l          list the checks and exit\n"
            "  -v          verbose: every step and answer as '# ' lines\n"
            "  -P          skip the checks that need netmap pipes (reported as ok # SKIP)\n"
            "  -s SEED     seed of the fuzz check (default %#" PRIx64 ")\n"
            "  -t SECONDS  per-check timeout (default %u, 0: none; fuzz gets 10x)\n"
            "  CHECK       names to run (a trailing '*' matches a prefix); none: all\n"
            "Prints 'ok N - name' or 'not ok N - name: why', then 'P passed, F failed';\n"
            "exit status 0 only if every check passed.\n",
            g.seed, g.timeout_s);
}

static int selected(const char *name, int argc, char **argv)
{
    int i;

    if (argc == 0)
        return 1;
    for (i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (n && argv[i][n - 1] == '*' ? strncmp(name, argv[i], n - 1) == 0 : strcmp(name, argv[i]) == 0)
            return 1;
    }
    return 0;
}

/* Run one check; fail() comes back here through longjmp with cur_ctx.msg set. */
static void run_one(void (*fn)(struct ctx *))
{
    if (setjmp(cur_ctx.jb) == 0) {
        fn(&cur_ctx);
        cur_ctx.msg[0] = '\0';
    }
    cleanup(&cur_ctx);
}

static int setup_edge(void)
{
    char *p;

    g.page = (size_t)sysconf(_SC_PAGESIZE);
    p = mmap(NULL, 3 * g.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    if (munmap(p + g.page, g.page) < 0 || mprotect(p + 2 * g.page, g.page, PROT_NONE) < 0)
        return -1;
    g.edge = p;
    g.hole = p + g.page;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    int opt, list = 0, n = 0, passed = 0, failed = 0, i;
    unsigned k;
    pthread_t tid;

    while ((opt = getopt_long(argc, argv, "lvPs:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l': list = 1; break;
        case 'v': g.verbose = 1; break;
        case 'P': g.skip_pipes = 1; break;
        case 's': g.seed = strtoull(optarg, NULL, 0); break;
        case 't': g.timeout_s = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    argc -= optind;
    argv += optind;
    for (i = 0; i < argc; i++) {
        for (k = 0; k < NCHECKS && !selected(checks[k].name, 1, &argv[i]); k++)
            ;
        if (k == NCHECKS) {
            fprintf(stderr, "nm-ctltest: no check named '%s' (-l lists them)\n", argv[i]);
            return 2;
        }
    }
    if (list) {
        for (k = 0; k < NCHECKS; k++)
            if (selected(checks[k].name, argc, argv))
                printf("%-24s %-6s %s\n", checks[k].name, checks[k].flags & CK_PIPE ? "[pipe]" : "",
                       checks[k].what);
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pthread_create(&tid, NULL, watchdog, NULL) != 0 || setup_edge() < 0) {
        fprintf(stderr, "nm-ctltest: setup failed: %s\n", strerror(errno));
        return 2;
    }
    if (access(nm_device_path(), R_OK | W_OK) < 0)
        fprintf(stderr, "nm-ctltest: warning: %s: %s\n", nm_device_path(), strerror(errno));

    for (k = 0; k < NCHECKS; k++) {
        const struct check *ck = &checks[k];
        struct ctx *c = &cur_ctx;

        if (!selected(ck->name, argc, argv))
            continue;
        n++;
        if ((ck->flags & CK_PIPE) && g.skip_pipes) {
            printf("ok %d - %s # SKIP pipe-dependent\n", n, ck->name);
            passed++;
            continue;
        }
        memset(c, 0, sizeof(*c));
        c->name = ck->name;
        pthread_mutex_lock(&wd.mu);
        wd.armed = g.timeout_s > 0;
        wd.number = n;
        wd.passed = passed;
        wd.failed = failed;
        wd.deadline = time(NULL) + (time_t)g.timeout_s * ((ck->flags & CK_SLOW) ? 10 : 1);
        snprintf(wd.name, sizeof(wd.name), "%s", ck->name);
        wd.step[0] = '\0';
        wd.cmd = 0;
        pthread_mutex_unlock(&wd.mu);
        run_one(ck->fn);
        pthread_mutex_lock(&wd.mu);
        wd.armed = 0;
        pthread_mutex_unlock(&wd.mu);
        if (c->msg[0] == '\0') {
            printf("ok %d - %s\n", n, ck->name);
            passed++;
        } else {
            printf("not ok %d - %s: %s%s\n", n, ck->name, c->msg,
                   (ck->flags & CK_PIPE) ? " (pipe-dependent)" : "");
            failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
