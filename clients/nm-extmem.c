/*
 * nm-extmem: netmap ports in the program's own memory (NETMAP_REQ_OPT_EXTMEM).
 *
 * The program allocates a region itself (a memfd, a file, hugepages, or
 * anonymous memory), registers ports in it with the EXTMEM option, finds
 * their rings in its own mapping (the device is never mmapped for them)
 * and moves test frames (see nm_port.h), checking every one:
 *
 *   pipe   PARENT{1 -> PARENT}1, both ends registered with the option on
 *          the same pointer, so both are in one region (one mem_id)
 *   vale   SWITCH:a and SWITCH:b in the region, SWITCH:g in the device's
 *          global memory; a floods to b and g, then g floods to a and b
 *          (the switch copies across the two memories)
 *
 * Frames go in batches no larger than a ring, each received before the
 * next is sent, so nothing may be lost.  One JSON line reports the memory
 * ids and sizes and, per test, frames sent, received and damaged; the exit
 * status is 0 only if every frame arrived intact where it should.
 *
 * With -w the program registers the ports, prints their memory ids, and
 * sleeps (to be killed: the daemon must then free everything).  A port
 * the device refuses prints the errno and the option's nro_status, exit 1.
 */
#define _GNU_SOURCE   /* memfd_create */
#include <getopt.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "nm_port.h"

#define FRAME_LEN 60
#define BATCH 256
#define SEED 0x6e6d657874ull

struct region {
    const char *kind;      /* memfd, hugetlb, file:PATH, shared, private */
    char *mem;
    size_t size;
};

struct flow {
    uint64_t sent, received, bad;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: nm-extmem [-m memfd|hugetlb|file:PATH|shared|private] [-s MiB=16]\n"
            "                 [-n frames=10000] [-t pipe|vale|both] [-p parent=extp]\n"
            "                 [-v switch=vale0] [-o offset_bytes=0] [-w seconds]\n"
            "  -o  register at mem+offset (for the errno of an unaligned pointer)\n"
            "  -w  register the ports, print their memory ids, hold them that long\n");
    exit(2);
}

/* Allocate the region the way -m asks.  Returns 0, or -1 with errno. */
static int region_alloc(struct region *r)
{
    int fd = -1, flags = MAP_SHARED;

    if (strcmp(r->kind, "memfd") == 0) {
        fd = memfd_create("nm-extmem", MFD_CLOEXEC);
    } else if (strcmp(r->kind, "hugetlb") == 0) {
        r->size = (r->size + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
        fd = memfd_create("nm-extmem", MFD_CLOEXEC | MFD_HUGETLB);
    } else if (strncmp(r->kind, "file:", 5) == 0) {
        fd = open(r->kind + 5, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    } else if (strcmp(r->kind, "shared") == 0) {
        flags = MAP_SHARED | MAP_ANONYMOUS;
    } else if (strcmp(r->kind, "private") == 0) {
        flags = MAP_PRIVATE | MAP_ANONYMOUS;
    } else {
        errno = EINVAL;
        return -1;
    }
    if (fd >= 0 && ftruncate(fd, (off_t)r->size) < 0) {
        close(fd);
        return -1;
    }
    if (fd < 0 && !(flags & MAP_ANONYMOUS))
        return -1;
    r->mem = mmap(NULL, r->size, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (fd >= 0)
        close(fd);      /* the mapping keeps the file */
    if (r->mem == MAP_FAILED)
        return -1;
    return 0;
}

/*
 * Register port `spec` in the region at r->mem + offset with the EXTMEM
 * option (ring and buffer pools sized for this program, buffers filling
 * the rest).  On success the port's rings are located in the region.
 * Returns 0, or -1 with errno; *status gets the option's nro_status.
 */
static int register_extmem(struct nm_port *p, const char *spec, const struct region *r,
                           size_t offset, uint32_t *status)
{
    struct nmreq_opt_extmem opt;
    struct nmreq_header hdr;
    int fd, saved;

    if (nmp_parse(p, spec) < 0)
        return -1;
    memset(&opt, 0, sizeof(opt));
    opt.nro_opt.nro_reqtype = NETMAP_REQ_OPT_EXTMEM;
    opt.nro_usrptr = (uint64_t)(uintptr_t)(r->mem + offset);
    opt.nro_info.nr_memsize = r->size - offset;
    opt.nro_info.nr_if_pool_objtotal = 16;
    opt.nro_info.nr_ring_pool_objtotal = 32;
    memset(&hdr, 0, sizeof(hdr));
    hdr.nr_version = NETMAP_API;
    hdr.nr_reqtype = NETMAP_REQ_REGISTER;
    memcpy(hdr.nr_name, p->name, strlen(p->name) + 1);
    hdr.nr_body = (uint64_t)(uintptr_t)&p->reg;
    hdr.nr_options = (uint64_t)(uintptr_t)&opt;

    fd = open(nm_device_path(), O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (ioctl(fd, NIOCCTRL, &hdr) < 0) {
        saved = errno;
        *status = opt.nro_opt.nro_status;
        close(fd);
        errno = saved;
        return -1;
    }
    *status = opt.nro_opt.nro_status;
    p->fd = fd;
    nmp_locate(p, r->mem + offset);
    return 0;
}

/* Fill up to n free slots of p's first TX ring with frames seq, seq+1, ...
 * and sync.  Returns how many were queued, or -1 with errno. */
static int send_batch(struct nm_port *p, const unsigned char src[6], uint64_t seq, unsigned n)
{
    static const unsigned char bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    struct netmap_ring *r = nmp_txring(p, p->first_tx_ring);
    unsigned k, room = nm_ring_space(r);

    if (n > room)
        n = room;
    for (k = 0; k < n; k++) {
        struct netmap_slot *s = &r->slot[r->head];
        nmp_frame_fill((unsigned char *)NETMAP_BUF(r, s->buf_idx), FRAME_LEN, bcast, src,
                       NMP_FRAME_ETHERTYPE, SEED, seq + k);
        s->len = FRAME_LEN;
        s->flags = 0;
        r->head = r->cur = nm_ring_next(r, r->head);
    }
    return ioctl(p->fd, NIOCTXSYNC, NULL) < 0 ? -1 : (int)n;
}

/* Take every frame waiting on p's first RX ring: each must be the next in
 * sequence from `src`, intact.  Returns 0, or -1 with errno. */
static int receive(struct nm_port *p, const unsigned char src[6], struct flow *f)
{
    struct netmap_ring *r = nmp_rxring(p, p->first_rx_ring);

    if (ioctl(p->fd, NIOCRXSYNC, NULL) < 0)
        return -1;
    while (!nm_ring_empty(r)) {
        struct netmap_slot *s = &r->slot[r->cur];
        const unsigned char *b = (const unsigned char *)NETMAP_BUF(r, s->buf_idx);

        if (s->len != FRAME_LEN || memcmp(b + 6, src, 6) != 0 ||
            nmp_get_be(b + 14, 8) != f->received || !nmp_frame_pattern_ok(b, FRAME_LEN, SEED, f->received))
            f->bad++;
        f->received++;
        r->head = r->cur = nm_ring_next(r, r->cur);
    }
    return 0;
}

/* Send `count` frames from tx, each batch received by all of rx[0..nrx). */
static int move(struct nm_port *tx, const unsigned char src[6], struct nm_port **rx,
                struct flow *flows, int nrx, uint64_t count)
{
    uint64_t sent = 0;
    int i, stalls = 0;

    while (sent < count) {
        int n = send_batch(tx, src, sent, count - sent < BATCH ? (unsigned)(count - sent) : BATCH);
        if (n < 0)
            return -1;
        sent += (uint64_t)n;
        stalls = n ? 0 : stalls + 1;
        if (stalls > 1000) {
            errno = ETIMEDOUT;
            return -1;
        }
        for (i = 0; i < nrx; i++) {
            flows[i].sent = sent;
            if (receive(rx[i], src, &flows[i]) < 0)
                return -1;
        }
    }
    return 0;
}

static void refused(const char *spec, uint32_t status)
{
    int e = errno;

    printf("{\"port\": \"%s\", \"errno\": %d, \"error\": \"%s\", \"status\": %u}\n",
           spec, e, strerror(e), status);
}

static void print_flow(const char *name, const struct flow *f, int last)
{
    printf("\"%s\": {\"sent\": %" PRIu64 ", \"received\": %" PRIu64 ", \"bad\": %" PRIu64 "}%s",
           name, f->sent, f->received, f->bad, last ? "" : ", ");
}

static int flow_ok(const struct flow *f)
{
    return f->received == f->sent && f->bad == 0;
}

int main(int argc, char **argv)
{
    static const unsigned char mac_a[6] = { 2, 0, 0, 0, 0, 0xa }, mac_g[6] = { 2, 0, 0, 0, 0, 0x9 };
    struct region r = { "memfd", NULL, 16u << 20 };
    const char *tests = "both", *parent = "extp", *sw = "vale0";
    struct nm_port m, s, a, b, g;
    struct flow pipe_flow = { 0, 0, 0 }, vale_flows[4];
    uint64_t count = 10000;
    double hold = -1;
    size_t offset = 0;
    uint32_t status = 0;
    char spec[3][64];
    int c, ok = 1, do_pipe, do_vale;

    while ((c = getopt(argc, argv, "m:s:n:t:p:v:o:w:h")) != -1) {
        switch (c) {
        case 'm': r.kind = optarg; break;
        case 's': r.size = (size_t)strtoull(optarg, NULL, 0) << 20; break;
        case 'n': count = strtoull(optarg, NULL, 0); break;
        case 't': tests = optarg; break;
        case 'p': parent = optarg; break;
        case 'v': sw = optarg; break;
        case 'o': offset = (size_t)strtoull(optarg, NULL, 0); break;
        case 'w': hold = atof(optarg); break;
        default: usage();
        }
    }
    do_pipe = strcmp(tests, "vale") != 0;
    do_vale = strcmp(tests, "pipe") != 0;
    if (region_alloc(&r) < 0) {
        fprintf(stderr, "nm-extmem: %s memory of %zu bytes: %s\n", r.kind, r.size, strerror(errno));
        return 2;
    }
    memset(vale_flows, 0, sizeof(vale_flows));
    printf("{\"memory\": \"%s\", \"size\": %zu", r.kind, r.size);

    if (do_pipe) {
        snprintf(spec[0], sizeof(spec[0]), "%s{1", parent);
        snprintf(spec[1], sizeof(spec[1]), "%s}1", parent);
        if (register_extmem(&m, spec[0], &r, offset, &status) < 0) {
            printf("}\n");
            refused(spec[0], status);
            return 1;
        }
        if (register_extmem(&s, spec[1], &r, offset, &status) < 0) {
            printf("}\n");
            refused(spec[1], status);
            return 1;
        }
        printf(", \"pipe_mem_id\": [%u, %u], \"memsize\": %" PRIu64 ", \"priv_mem\": %u",
               m.reg.nr_mem_id, s.reg.nr_mem_id, m.reg.nr_memsize, m.nifp->ni_flags & NI_PRIV_MEM);
    }
    if (do_vale) {
        snprintf(spec[0], sizeof(spec[0]), "%s:a", sw);
        snprintf(spec[1], sizeof(spec[1]), "%s:b", sw);
        snprintf(spec[2], sizeof(spec[2]), "%s:g", sw);
        if (register_extmem(&a, spec[0], &r, offset, &status) < 0 ||
            register_extmem(&b, spec[1], &r, offset, &status) < 0) {
            printf("}\n");
            refused(spec[0], status);
            return 1;
        }
        if (nmp_open(&g, spec[2], 0) < 0) {
            printf("}\n");
            refused(spec[2], 0);
            return 1;
        }
        printf(", \"vale_mem_id\": [%u, %u, %u]", a.reg.nr_mem_id, b.reg.nr_mem_id, g.reg.nr_mem_id);
    }
    if (hold >= 0) {
        printf("}\n");
        fflush(stdout);
        usleep((useconds_t)(hold * 1e6));
        return 0;
    }

    if (do_pipe) {
        struct nm_port *rx[1] = { &s };
        if (move(&m, mac_a, rx, &pipe_flow, 1, count) < 0)
            fprintf(stderr, "nm-extmem: pipe: %s\n", strerror(errno));
        ok &= flow_ok(&pipe_flow);
    }
    if (do_vale) {
        struct nm_port *from_a[2] = { &b, &g }, *from_g[2] = { &a, &b };
        if (move(&a, mac_a, from_a, &vale_flows[0], 2, count) < 0 ||
            move(&g, mac_g, from_g, &vale_flows[2], 2, count) < 0)
            fprintf(stderr, "nm-extmem: vale: %s\n", strerror(errno));
        for (c = 0; c < 4; c++)
            ok &= flow_ok(&vale_flows[c]);
    }
    printf(", ");
    if (do_pipe)
        print_flow("pipe", &pipe_flow, !do_vale);
    if (do_vale) {
        print_flow("a_to_b", &vale_flows[0], 0);
        print_flow("a_to_g", &vale_flows[1], 0);
        print_flow("g_to_a", &vale_flows[2], 0);
        print_flow("g_to_b", &vale_flows[3], 1);
    }
    printf(", \"ok\": %s}\n", ok ? "true" : "false");
    if (do_pipe) {
        nmp_close(&m);
        nmp_close(&s);
    }
    if (do_vale) {
        nmp_close(&a);
        nmp_close(&b);
        nmp_close(&g);
    }
    munmap(r.mem, r.size);
    return ok ? 0 : 1;
}
