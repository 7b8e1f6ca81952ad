/*
 * nm_port.h: open, register, map and wait on a netmap port, in the spirit
 * of libnetmap's nmport_*() (header-only; every tool in clients/ is one
 * translation unit).
 *
 * Contract, as in libnetmap: every function returns 0 (or a count) on
 * success and -1 with errno set on failure, and a failed call leaves the
 * port as it was.  EINVAL is used only when nothing more specific is known.
 *
 * Port spec grammar (what nmp_parse() accepts):
 *
 *     [netmap:]NAME[RINGS][/FLAGS][@MEMID]
 *
 *   NAME   every character up to the first of  - * + ^ / @  .  Pipe ends
 *          ("x{1" master, "x}1" slave) and VALE ports ("vale0:a") are part
 *          of the name and reach the device unchanged.
 *   RINGS  (nothing)  all hardware ring pairs        NR_REG_ALL_NIC
 *          -N         hardware ring pair N           NR_REG_ONE_NIC
 *          *  or  +   hardware and host ring pairs   NR_REG_NIC_SW
 *          ^          every host ring pair           NR_REG_SW
 *          ^N         host ring pair N               NR_REG_ONE_SW
 *   FLAGS  letters: R rx rings only, T tx rings only, x exclusive,
 *          r monitor rx, t monitor tx, z zero-copy monitor
 *   MEMID  @N asks for memory region N (nr_mem_id)
 *
 * Staged use (nmp_open() runs the three stages with undo on failure):
 *
 *     nmp_parse(p, spec)          fills p->name and p->reg (mode, ringid, flags)
 *        |   the caller may now adjust p->reg: nr_extra_bufs, slots, rings
 *     nmp_register(p, flags)      opens the device (nm_device_path()) and
 *        |                        registers with NIOCCTRL, or NIOCREGIF with
 *        |                        NMP_LEGACY; p->reg then holds the answer
 *     nmp_mmap(p)                 maps the region (one mapping per mem_id per
 *                                 process, shared by every port on it) and
 *                                 finds the rings bound to this fd
 *     ...
 *     nmp_close(p)                undoes whatever was done
 *
 * Waiting: nmp_wait() / nmp_wait_many() block until rings are ready with
 * poll(), select() or a busy loop of NIOCTXSYNC/NIOCRXSYNC + sched_yield(),
 * so every waiting style a netmap client may use can be exercised.
 *
 * The end of the file holds the test frame format that nm-send writes and
 * nm-recv checks, and the few helpers the tools share.
 */
#ifndef NMFUSE_NM_PORT_H
#define NMFUSE_NM_PORT_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>

#include "nm_user.h"

/* Flags for nmp_register() / nmp_open(). */
#define NMP_LEGACY 0x01       /* register with NIOCREGIF and struct nmreq */
#define NMP_NO_MMAP 0x02      /* nmp_open(): register only, map nothing */
#define NMP_NULL 0x04         /* NR_REG_NULL (null port), memory 1 unless @N */
#define NMP_NO_TX_POLL 0x08   /* poll()/select() do not push TX by themselves */
#define NMP_DO_RX_POLL 0x10   /* poll()/select() always sync RX */
#define NMP_PRIVATE_MAP 0x20  /* map the region again even if already mapped */

/* Waiting styles for nmp_wait(). */
enum nmp_wait_mode {
    NMP_WAIT_POLL = 0,
    NMP_WAIT_SELECT = 1,
    NMP_WAIT_IOCTL = 2
};

#define NMP_MAX_MAPS 8        /* distinct memory regions mapped at once */
#define NMP_WAIT_MAX 8        /* ports one nmp_wait_many() call may watch */

struct nm_port {
    int fd;                          /* -1 when not registered */
    unsigned flags;                  /* NMP_* given to nmp_register() */
    char name[NETMAP_REQ_IFNAMSIZ];  /* name as the device receives it */
    struct nmreq_register reg;       /* request, then the device's answer */
    void *mem;                       /* mapped region, NULL if not mapped */
    struct netmap_if *nifp;
    int first_tx_ring, last_tx_ring; /* bound rings, inclusive; */
    int first_rx_ring, last_rx_ring; /* last < first means none */
    char *buf_base;                  /* buffer 0 of the region, or NULL */
    uint32_t buf_size;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

/* Monotonic time in nanoseconds. */
static inline uint64_t nmp_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * nmp_parse_uint - parse a decimal number in [0, max] from *s, moving *s
 * past it.  Returns 0, or -1 with errno EINVAL (no digits, or too big).
 */
static inline int nmp_parse_uint(const char **s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    const char *c = *s;

    if (*c < '0' || *c > '9')
        goto fail;
    for (; *c >= '0' && *c <= '9'; c++) {
        v = v * 10 + (unsigned long)(*c - '0');
        if (v > max)
            goto fail;
    }
    *s = c;
    *out = v;
    return 0;
fail:
    errno = EINVAL;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Stage 1: the port spec                                              */

/*
 * nmp_parse - reset *p and fill it from a port spec (grammar above).
 * @p:    the port; fully overwritten on success, untouched on failure
 * @spec: "netmap:eth0-1/T", "vale0:a", "x{3", "tap0*@1", ...
 *
 * Returns 0, or -1 with errno EINVAL (bad syntax) or ENAMETOOLONG.
 */
static inline int nmp_parse(struct nm_port *p, const char *spec)
{
    struct nm_port d;
    const char *s = spec, *name;
    size_t len;
    unsigned long v;

    memset(&d, 0, sizeof(d));
    d.fd = -1;
    d.first_tx_ring = d.first_rx_ring = 0;
    d.last_tx_ring = d.last_rx_ring = -1;
    d.reg.nr_mode = NR_REG_ALL_NIC;

    if (spec == NULL)
        goto fail_inval;
    if (strncmp(s, "netmap:", 7) == 0)
        s += 7;
    name = s;
    len = strcspn(s, "-*+^/@");
    if (len == 0)
        goto fail_inval;
    if (len >= sizeof(d.name)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(d.name, name, len);
    s += len;

    /* ring selector */
    switch (*s) {
    case '-':
        s++;
        if (nmp_parse_uint(&s, NETMAP_RING_MASK, &v) < 0)
            return -1;
        d.reg.nr_mode = NR_REG_ONE_NIC;
        d.reg.nr_ringid = (uint16_t)v;
        break;
    case '*':
    case '+':
        s++;
        d.reg.nr_mode = NR_REG_NIC_SW;
        break;
    case '^':
        s++;
        if (*s >= '0' && *s <= '9') {
            if (nmp_parse_uint(&s, NETMAP_RING_MASK, &v) < 0)
                return -1;
            d.reg.nr_mode = NR_REG_ONE_SW;
            d.reg.nr_ringid = (uint16_t)v;
        } else {
            d.reg.nr_mode = NR_REG_SW;
        }
        break;
    default:
        break;
    }

    /* flags */
    if (*s == '/') {
        for (s++; *s && *s != '@'; s++) {
            switch (*s) {
            case 'R': d.reg.nr_flags |= NR_RX_RINGS_ONLY; break;
            case 'T': d.reg.nr_flags |= NR_TX_RINGS_ONLY; break;
            case 'x': d.reg.nr_flags |= NR_EXCLUSIVE; break;
            case 'r': d.reg.nr_flags |= NR_MONITOR_RX; break;
            case 't': d.reg.nr_flags |= NR_MONITOR_TX; break;
            case 'z': d.reg.nr_flags |= NR_ZCOPY_MON; break;
            default: goto fail_inval;
            }
        }
    }

    /* memory region */
    if (*s == '@') {
        s++;
        if (nmp_parse_uint(&s, 0xffff, &v) < 0)
            return -1;
        if (v == 0)
            goto fail_inval;
        d.reg.nr_mem_id = (uint16_t)v;
    }

    if (*s != '\0')
        goto fail_inval;
    *p = d;
    return 0;

fail_inval:
    errno = EINVAL;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Stage 2: registration                                               */

/* Register through NIOCCTRL + NETMAP_REQ_REGISTER. */
static inline int nmp_register_ctrl(int fd, const char *name, struct nmreq_register *reg)
{
    struct nmreq_header hdr;

    memset(&hdr, 0, sizeof(hdr));
    hdr.nr_version = NETMAP_API;
    hdr.nr_reqtype = NETMAP_REQ_REGISTER;
    memcpy(hdr.nr_name, name, strlen(name) + 1);
    hdr.nr_body = (uint64_t)(uintptr_t)reg;
    return ioctl(fd, NIOCCTRL, &hdr) < 0 ? -1 : 0;
}

/*
 * Register through the legacy NIOCREGIF, encoding the request as the old
 * nm_open() of netmap_user.h did: mode in the low byte of nr_flags, ring in
 * nr_ringid, the poll flags as nr_ringid bits, mem_id in nr_arg2, extra
 * buffers in nr_arg3, and a numeric pipe suffix as PIPE_MASTER/PIPE_SLAVE.
 * Fields the legacy answer lacks (host ring counts) are left to nmp_mmap().
 */
static inline int nmp_register_legacy(int fd, const char *name, struct nmreq_register *reg)
{
    struct nmreq r;
    size_t len = strcspn(name, "{}");
    const char *id = name[len] ? name + len + 1 : "";
    uint32_t mode = reg->nr_mode;
    uint16_t ringid = reg->nr_ringid;
    unsigned long v;

    memset(&r, 0, sizeof(r));
    if (mode == NR_REG_ALL_NIC && nmp_parse_uint(&id, NETMAP_RING_MASK, &v) == 0 && *id == '\0') {
        mode = name[len] == '{' ? NR_REG_PIPE_MASTER : NR_REG_PIPE_SLAVE;
        ringid = (uint16_t)v;
    } else {
        len = strlen(name);
    }
    if (len >= sizeof(r.nr_name)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(r.nr_name, name, len);
    r.nr_version = NETMAP_API;
    r.nr_tx_slots = reg->nr_tx_slots;
    r.nr_rx_slots = reg->nr_rx_slots;
    r.nr_tx_rings = reg->nr_tx_rings;
    r.nr_rx_rings = reg->nr_rx_rings;
    r.nr_ringid = ringid & NETMAP_RING_MASK;
    if (reg->nr_flags & NR_NO_TX_POLL)
        r.nr_ringid |= NETMAP_NO_TX_POLL;
    if (reg->nr_flags & NR_DO_RX_POLL)
        r.nr_ringid |= NETMAP_DO_RX_POLL;
    r.nr_flags = mode | (uint32_t)(reg->nr_flags & ~(uint64_t)(NR_REG_MASK | NR_NO_TX_POLL | NR_DO_RX_POLL));
    r.nr_arg2 = reg->nr_mem_id;
    r.nr_arg3 = reg->nr_extra_bufs;
    if (ioctl(fd, NIOCREGIF, &r) < 0)
        return -1;
    reg->nr_offset = r.nr_offset;
    reg->nr_memsize = r.nr_memsize;
    reg->nr_tx_slots = r.nr_tx_slots;
    reg->nr_rx_slots = r.nr_rx_slots;
    reg->nr_tx_rings = r.nr_tx_rings;
    reg->nr_rx_rings = r.nr_rx_rings;
    reg->nr_mem_id = r.nr_arg2;
    reg->nr_extra_bufs = r.nr_arg3;
    return 0;
}

/*
 * nmp_register - open the netmap device and bind the parsed port to it.
 * @p:     a port filled by nmp_parse(), not yet registered
 * @flags: NMP_LEGACY, NMP_NULL, NMP_NO_TX_POLL, NMP_DO_RX_POLL (others are
 *         kept in p->flags for nmp_mmap())
 *
 * On success p->fd is open and p->reg holds the device's answer (offset,
 * memsize, slots, rings, mem_id, extra buffers granted).  On failure the
 * device is closed again and *p is unchanged.
 * Returns 0, or -1 with errno from open() or the ioctl (EBUSY, ENOENT, ...).
 */
static inline int nmp_register(struct nm_port *p, unsigned flags)
{
    struct nmreq_register reg = p->reg;
    int fd, rv, saved;

    if (p->fd >= 0) {
        errno = EBUSY;
        return -1;
    }
    if (flags & NMP_NULL) {
        reg.nr_mode = NR_REG_NULL;
        if (reg.nr_mem_id == 0)
            reg.nr_mem_id = 1;
    }
    if (flags & NMP_NO_TX_POLL)
        reg.nr_flags |= NR_NO_TX_POLL;
    if (flags & NMP_DO_RX_POLL)
        reg.nr_flags |= NR_DO_RX_POLL;

    fd = open(nm_device_path(), O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (flags & NMP_LEGACY)
        rv = nmp_register_legacy(fd, p->name, &reg);
    else
        rv = nmp_register_ctrl(fd, p->name, &reg);
    if (rv < 0)
        goto fail;
    p->fd = fd;
    p->flags = flags;
    p->reg = reg;
    return 0;

fail:
    saved = errno;
    close(fd);
    errno = saved ? saved : EINVAL;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Stage 3: the shared memory                                          */

/* The process-wide table of mapped regions (one entry per mem_id). */
struct nmp_map {
    void *mem;
    size_t size;
    uint16_t mem_id;
    int refs;
};

static inline struct nmp_map *nmp_maps(void)
{
    static struct nmp_map maps[NMP_MAX_MAPS];
    return maps;
}

/* First ring bound to this fd among ring_ofs[base .. base+n-1], and last. */
static inline void nmp_bound_range(const struct netmap_if *nifp, unsigned base,
                                   unsigned n, int *first, int *last)
{
    unsigned i = 0;

    while (i < n && nifp->ring_ofs[base + i] == 0)
        i++;
    *first = (int)i;
    while (i < n && nifp->ring_ofs[base + i] != 0)
        i++;
    *last = (int)i - 1;
}

/*
 * nmp_locate - find the port's netmap_if and rings in its memory region.
 * @p:   a registered port
 * @mem: the region as this process sees it: its mapping of the device,
 *       or its own memory for a port registered with external memory
 *
 * Fills p->mem, p->nifp, the bound ring ranges (rings whose ring_ofs is
 * not 0) and p->buf_base.
 */
static inline void nmp_locate(struct nm_port *p, void *mem)
{
    struct netmap_if *nifp = NETMAP_IF(mem, p->reg.nr_offset);
    unsigned ntx = nifp->ni_tx_rings + nifp->ni_host_tx_rings;
    unsigned nrx = nifp->ni_rx_rings + nifp->ni_host_rx_rings;
    int ftx, ltx, frx, lrx;

    nmp_bound_range(nifp, 0, ntx, &ftx, &ltx);
    nmp_bound_range(nifp, ntx, nrx, &frx, &lrx);
    p->mem = mem;
    p->nifp = nifp;
    p->first_tx_ring = ftx;
    p->last_tx_ring = ltx;
    p->first_rx_ring = frx;
    p->last_rx_ring = lrx;
    if (p->flags & NMP_LEGACY) {
        /* the legacy answer carries no host ring counts */
        p->reg.nr_host_tx_rings = (uint16_t)nifp->ni_host_tx_rings;
        p->reg.nr_host_rx_rings = (uint16_t)nifp->ni_host_rx_rings;
    }
    p->buf_base = NULL;
    p->buf_size = 0;
    if (ltx >= ftx || lrx >= frx) {
        struct netmap_ring *r = ltx >= ftx ? NETMAP_TXRING(nifp, ftx) : NETMAP_RXRING(nifp, frx);
        p->buf_base = (char *)r + r->buf_ofs;
        p->buf_size = r->nr_buf_size;
    }
}

/*
 * nmp_mmap - map the port's memory region and locate its rings.
 * @p: a registered port, not yet mapped
 *
 * Reuses this process's mapping of the same mem_id (and size) unless the
 * port was registered with NMP_PRIVATE_MAP, then runs nmp_locate().
 * Returns 0, or -1 with errno (ENOMEM for a full table, mmap's errno).
 */
static inline int nmp_mmap(struct nm_port *p)
{
    struct nmp_map *maps = nmp_maps(), *m = NULL;
    size_t size = (size_t)p->reg.nr_memsize;
    int i;
    void *mem;

    if (p->fd < 0 || p->mem != NULL) {
        errno = p->fd < 0 ? EBADF : EBUSY;
        return -1;
    }
    if (size == 0 || p->reg.nr_offset >= size) {
        errno = EINVAL;
        return -1;
    }
    for (i = 0; i < NMP_MAX_MAPS && !(p->flags & NMP_PRIVATE_MAP); i++) {
        if (maps[i].refs > 0 && maps[i].mem_id == p->reg.nr_mem_id && maps[i].size == size) {
            m = &maps[i];
            break;
        }
    }
    if (m == NULL) {
        for (i = 0; i < NMP_MAX_MAPS && maps[i].refs > 0; i++)
            ;
        if (i == NMP_MAX_MAPS) {
            errno = ENOMEM;
            return -1;
        }
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
        if (mem == MAP_FAILED)
            return -1;
        m = &maps[i];
        m->mem = mem;
        m->size = size;
        m->mem_id = p->reg.nr_mem_id;
        m->refs = 0;
    }
    m->refs++;
    nmp_locate(p, m->mem);
    return 0;
}

/* Drop this port's reference to its mapping (unmapping the last one). */
static inline void nmp_munmap(struct nm_port *p)
{
    struct nmp_map *maps = nmp_maps();
    int i;

    if (p->mem == NULL)
        return;
    for (i = 0; i < NMP_MAX_MAPS; i++) {
        if (maps[i].refs > 0 && maps[i].mem == p->mem) {
            if (--maps[i].refs == 0) {
                munmap(maps[i].mem, maps[i].size);
                maps[i].mem = NULL;
            }
            break;
        }
    }
    p->mem = NULL;
    p->nifp = NULL;
    p->buf_base = NULL;
    p->last_tx_ring = p->last_rx_ring = -1;
}

/*
 * nmp_close - unmap and close what nmp_open() (or its stages) set up.
 * Safe on a port that is only parsed, or already closed.
 */
static inline void nmp_close(struct nm_port *p)
{
    nmp_munmap(p);
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

/*
 * nmp_open - parse, register and map a port in one call.
 * @p:     the port (overwritten)
 * @spec:  port spec, see the grammar at the top of this file
 * @flags: NMP_* flags (NMP_NO_MMAP: stop after registering)
 *
 * To ask for extra buffers or ring sizes, run the stages by hand:
 * nmp_parse(), set p->reg fields, nmp_register(), nmp_mmap().
 * Returns 0, or -1 with errno set and p->fd == -1.
 */
static inline int nmp_open(struct nm_port *p, const char *spec, unsigned flags)
{
    int saved;

    if (nmp_parse(p, spec) < 0)
        return -1;
    if (nmp_register(p, flags) < 0)
        return -1;
    if (!(flags & NMP_NO_MMAP) && nmp_mmap(p) < 0)
        goto fail;
    return 0;

fail:
    saved = errno;
    nmp_close(p);
    errno = saved;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Rings, buffers and extra buffers                                    */

static inline struct netmap_ring *nmp_txring(const struct nm_port *p, int i)
{
    return NETMAP_TXRING(p->nifp, i);
}

static inline struct netmap_ring *nmp_rxring(const struct nm_port *p, int i)
{
    return NETMAP_RXRING(p->nifp, i);
}

static inline char *nmp_buf(const struct nm_port *p, uint32_t idx)
{
    return p->buf_base + (size_t)idx * p->buf_size;
}

/* Take a buffer from the extra-buffer list (ni_bufs_head); 0 when empty. */
static inline uint32_t nmp_extra_pop(struct nm_port *p)
{
    uint32_t idx = p->nifp->ni_bufs_head;

    if (idx != 0)
        memcpy(&p->nifp->ni_bufs_head, nmp_buf(p, idx), sizeof(uint32_t));
    return idx;
}

/* Put a buffer back on the extra-buffer list, freed by the device at close. */
static inline void nmp_extra_push(struct nm_port *p, uint32_t idx)
{
    memcpy(nmp_buf(p, idx), &p->nifp->ni_bufs_head, sizeof(uint32_t));
    p->nifp->ni_bufs_head = idx;
}

/*
 * Number of TX slots not yet handed back, over every bound TX ring: on a
 * TX ring the device owns tail .. head-1, of which one slot is always kept
 * empty, so all is back when tail == head - 1.
 */
static inline unsigned nmp_tx_pending(const struct nm_port *p)
{
    unsigned n = 0;
    int i;

    for (i = p->first_tx_ring; i <= p->last_tx_ring; i++) {
        const struct netmap_ring *r = nmp_txring(p, i);
        n += (r->head + r->num_slots - 1 - r->tail) % r->num_slots;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Waiting                                                             */

/* "poll", "select" or "ioctl" to an enum nmp_wait_mode; -1 if unknown. */
static inline int nmp_wait_mode_parse(const char *s)
{
    if (strcmp(s, "poll") == 0)
        return NMP_WAIT_POLL;
    if (strcmp(s, "select") == 0)
        return NMP_WAIT_SELECT;
    if (strcmp(s, "ioctl") == 0)
        return NMP_WAIT_IOCTL;
    return -1;
}

/* getopt() for a receiving loop: takes the options every one shares (-i spec,
 * -n count, -w wait mode, -T idle seconds) itself and returns the others;
 * '?' for a bad wait mode, as for an unknown option. */
static inline int nmp_loop_getopt(int argc, char **argv, const char *optstring, const char **spec,
                                  uint64_t *count, int *mode, double *idle_s)
{
    int opt;

    while ((opt = getopt(argc, argv, optstring)) != -1) {
        switch (opt) {
        case 'i': *spec = optarg; continue;
        case 'n': *count = strtoull(optarg, NULL, 0); continue;
        case 'w':
            if ((*mode = nmp_wait_mode_parse(optarg)) < 0)
                return '?';
            continue;
        case 'T': *idle_s = atof(optarg); continue;
        }
        return opt;
    }
    return -1;
}

static inline const char *nmp_wait_mode_name(int mode)
{
    return mode == NMP_WAIT_SELECT ? "select" : mode == NMP_WAIT_IOCTL ? "ioctl" : "poll";
}

/* What a port is ready for, judged from its rings (no system call). */
static inline short nmp_ready(const struct nm_port *p, short events)
{
    short ready = 0;
    int i;

    if (p->nifp == NULL)
        return events;
    if (events & POLLOUT) {
        for (i = p->first_tx_ring; i <= p->last_tx_ring && !ready; i++)
            if (!nm_ring_empty(nmp_txring(p, i)))
                ready |= POLLOUT;
    }
    if (events & POLLIN) {
        for (i = p->first_rx_ring; i <= p->last_rx_ring; i++) {
            if (!nm_ring_empty(nmp_rxring(p, i))) {
                ready |= POLLIN;
                break;
            }
        }
    }
    return ready;
}

/*
 * One round of the ioctl style: NIOCTXSYNC when POLLOUT is asked (or nothing
 * is: a plain flush), NIOCRXSYNC when POLLIN is asked; then look at the rings.
 */
static inline int nmp_ioctl_round(struct nm_port *const *ports, const short *events,
                                  short *revents, int n)
{
    int i, nready = 0;

    for (i = 0; i < n; i++) {
        const struct nm_port *p = ports[i];

        if (((events[i] & POLLOUT) || !(events[i] & POLLIN)) && ioctl(p->fd, NIOCTXSYNC) < 0)
            return -1;
        if ((events[i] & POLLIN) && ioctl(p->fd, NIOCRXSYNC) < 0)
            return -1;
        revents[i] = nmp_ready(p, events[i]);
        if (revents[i])
            nready++;
    }
    return nready;
}

/*
 * nmp_wait_many - wait until one of several ports is ready.
 * @ports:      the ports (at most NMP_WAIT_MAX)
 * @events:     per port, POLLIN and/or POLLOUT; 0 asks for nothing but still
 *              syncs TX with poll (netmap's poll pushes TX) and ioctl
 *              (NIOCTXSYNC); select leaves such a port out
 * @revents:    per port, what is ready (out)
 * @n:          number of ports
 * @timeout_ms: < 0 waits forever, 0 only syncs and looks
 * @mode:       NMP_WAIT_POLL, NMP_WAIT_SELECT or NMP_WAIT_IOCTL
 *
 * Returns the number of ready ports (0 on timeout), or -1 with errno:
 * EINTR (a signal), EIO (POLLERR/POLLHUP from the device), EBADF, or the
 * ioctl's errno in the ioctl style.
 */
static inline int nmp_wait_many(struct nm_port *const *ports, const short *events,
                                short *revents, int n, int timeout_ms, int mode)
{
    int i, rv;

    if (n < 1 || n > NMP_WAIT_MAX) {
        errno = EINVAL;
        return -1;
    }
    for (i = 0; i < n; i++)
        revents[i] = 0;

    if (mode == NMP_WAIT_POLL) {
        struct pollfd pfd[NMP_WAIT_MAX];

        for (i = 0; i < n; i++) {
            pfd[i].fd = ports[i]->fd;
            pfd[i].events = events[i];
            pfd[i].revents = 0;
        }
        rv = poll(pfd, (nfds_t)n, timeout_ms);
        if (rv <= 0)
            return rv;
        for (i = 0; i < n; i++) {
            if (pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
                errno = (pfd[i].revents & POLLNVAL) ? EBADF : EIO;
                return -1;
            }
            revents[i] = pfd[i].revents & (POLLIN | POLLOUT);
        }
        return rv;
    }

    if (mode == NMP_WAIT_SELECT) {
        fd_set rfds, wfds;
        struct timeval tv, *tvp = NULL;
        int maxfd = -1;

        FD_ZERO(&rfds);
        FD_ZERO(&wfds);
        for (i = 0; i < n; i++) {
            int fd = ports[i]->fd;

            if (fd < 0 || fd >= FD_SETSIZE) {
                errno = EBADF;
                return -1;
            }
            if (events[i] & POLLIN)
                FD_SET(fd, &rfds);
            if (events[i] & POLLOUT)
                FD_SET(fd, &wfds);
            if (fd > maxfd)
                maxfd = fd;
        }
        if (timeout_ms >= 0) {
            tv.tv_sec = timeout_ms / 1000;
            tv.tv_usec = (timeout_ms % 1000) * 1000;
            tvp = &tv;
        }
        rv = select(maxfd + 1, &rfds, &wfds, NULL, tvp);
        if (rv <= 0)
            return rv;
        rv = 0;
        for (i = 0; i < n; i++) {
            if (FD_ISSET(ports[i]->fd, &rfds))
                revents[i] |= POLLIN;
            if (FD_ISSET(ports[i]->fd, &wfds))
                revents[i] |= POLLOUT;
            if (revents[i])
                rv++;
        }
        return rv;
    }

    if (mode == NMP_WAIT_IOCTL) {
        uint64_t deadline = nmp_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;

        for (;;) {
            rv = nmp_ioctl_round(ports, events, revents, n);
            if (rv != 0)
                return rv;
            if (timeout_ms == 0 || (timeout_ms > 0 && nmp_now_ns() >= deadline))
                return 0;
            sched_yield();
        }
    }

    errno = EINVAL;
    return -1;
}

/*
 * nmp_wait - nmp_wait_many() for one port.
 * Returns the ready events (POLLIN/POLLOUT), 0 on timeout, -1 with errno.
 */
static inline int nmp_wait(struct nm_port *p, short events, int timeout_ms, int mode)
{
    short revents;
    int rv = nmp_wait_many(&p, &events, &revents, 1, timeout_ms, mode);

    return rv <= 0 ? rv : revents;
}

/*
 * nmp_drain_tx - sync until every bound TX ring has handed back all its
 * slots (tail == head - 1) or timeout_ms passes.  Syncs in the given style.
 * Returns 0, or -1 with errno ETIMEDOUT (slots still pending) or the wait's.
 */
static inline int nmp_drain_tx(struct nm_port *p, int timeout_ms, int mode)
{
    uint64_t deadline = nmp_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        if (nmp_tx_pending(p) == 0)
            return 0;
        if (nmp_now_ns() >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (nmp_wait(p, POLLOUT, 100, mode) < 0 && errno != EINTR)
            return -1;
        usleep(50);
    }
}

/* ------------------------------------------------------------------ */
/* Test frames: what nm-send writes and nm-recv checks                 */
/*
 *   0  dst MAC           6 bytes
 *   6  src MAC           6 bytes
 *  12  ethertype         2 bytes, big endian (NMP_FRAME_ETHERTYPE)
 *  14  sequence number   8 bytes, big endian, from 0
 *  22  frame length      2 bytes, big endian (the whole frame)
 *  24  pattern           derived from (seed, sequence number) only
 */
#define NMP_FRAME_ETHERTYPE 0x88b5
#define NMP_FRAME_HDR 24
#define NMP_FRAME_MAX 65535

static inline uint64_t nmp_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* The 8 pattern bytes at pattern offset 8*k of frame seq. */
static inline uint64_t nmp_pattern_word(uint64_t seed, uint64_t seq, size_t k)
{
    return nmp_mix64(seed ^ (seq * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)k << 48));
}

static inline void nmp_put_be(unsigned char *p, uint64_t v, int bytes)
{
    while (bytes-- > 0) {
        p[bytes] = (unsigned char)v;
        v >>= 8;
    }
}

static inline uint64_t nmp_get_be(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < bytes; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Write frame seq of len bytes (NMP_FRAME_HDR <= len <= NMP_FRAME_MAX). */
static inline void nmp_frame_fill(unsigned char *f, size_t len, const unsigned char dst[6],
                                  const unsigned char src[6], uint16_t ethertype,
                                  uint64_t seed, uint64_t seq)
{
    size_t k, off;

    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    nmp_put_be(f + 12, ethertype, 2);
    nmp_put_be(f + 14, seq, 8);
    nmp_put_be(f + 22, len, 2);
    for (k = 0, off = NMP_FRAME_HDR; off < len; k++, off += 8) {
        uint64_t w = nmp_pattern_word(seed, seq, k);
        memcpy(f + off, &w, len - off < 8 ? len - off : 8);
    }
}

/* 1 if the pattern of a frame (its first `len` bytes) is intact, else 0. */
static inline int nmp_frame_pattern_ok(const unsigned char *f, size_t len, uint64_t seed, uint64_t seq)
{
    size_t k, off;

    for (k = 0, off = NMP_FRAME_HDR; off < len; k++, off += 8) {
        uint64_t w = nmp_pattern_word(seed, seq, k);
        if (memcmp(f + off, &w, len - off < 8 ? len - off : 8) != 0)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* Shared bits of the tools                                            */

/* Parse "aa:bb:cc:dd:ee:ff" into mac[6]; returns 0, or -1 (mac untouched). */
static inline int nmp_parse_mac(const char *s, unsigned char mac[6])
{
    unsigned v[6];
    int i, n = 0;

    if (sscanf(s, "%x:%x:%x:%x:%x:%x%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &n) != 6 ||
        s[n] != '\0')
        return -1;
    for (i = 0; i < 6; i++)
        if (v[i] > 0xff)
            return -1;
    for (i = 0; i < 6; i++)
        mac[i] = (unsigned char)v[i];
    return 0;
}

/* Set by SIGINT/SIGTERM once nmp_catch_stop_signals() ran. */
static inline volatile sig_atomic_t *nmp_stop_flag(void)
{
    static volatile sig_atomic_t stop;
    return &stop;
}

static inline void nmp_on_stop_signal(int sig)
{
    (void)sig;
    *nmp_stop_flag() = 1;
}

/* SIGINT/SIGTERM set the stop flag and interrupt waits (no SA_RESTART). */
static inline void nmp_catch_stop_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = nmp_on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Print s as a JSON string literal. */
static inline void nmp_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

#endif /* NMFUSE_NM_PORT_H */
