/*
 * nm-send: a netmap traffic source for the project's tests and benchmarks.
 *
 * Every frame is a test frame (see nm_port.h): Ethernet header, a 64-bit
 * sequence number counting from 0, the frame length, and a pattern derived
 * from (seed, sequence number), so nm-recv can check each one.
 *
 * Per round the sender fills the free slots of each bound TX ring (up to the
 * batch size), advances head and cur past them (cur up to tail when the room
 * left cannot hold a whole frame), and then waits for room with poll, select
 * or the TXSYNC busy loop; that wait is also the sync that hands the slots
 * to the device.  Frames longer than a buffer (or than -F)
 * span several slots chained with NS_MOREFRAG.  With -E the frames are built
 * in extra buffers and swapped into the slots (NS_BUF_CHANGED).  At the end
 * it waits until every TX ring has handed all its slots back.
 *
 * With -z a buffer's frame is written only the first time the buffer is
 * sent (or when its slot says NS_BUF_CHANGED); after that the slot goes out
 * with the bytes it holds, as netmap's pkt-gen sends by default.  Sequence
 * numbers then repeat, so the receiver counts with nm-recv -z.  What is
 * measured is the device, not the writing of the frames.
 */
#include <getopt.h>
#include <inttypes.h>

#include "nm_port.h"

#define MAX_FRAGS 64

struct sender {
    struct nm_port port;
    const char *spec;
    size_t size;            /* frame length */
    uint64_t count;         /* frames to send, 0: no limit */
    unsigned batch;         /* frames per ring per round, 0: ring space */
    double rate;            /* frames per second, 0: as fast as possible */
    double duration;        /* seconds, 0: no limit */
    double drain_s;         /* how long to wait for the TX rings to empty */
    int mode;               /* NMP_WAIT_* */
    unsigned frag;          /* max bytes per slot, 0: buffer size */
    unsigned extra;         /* extra buffers asked for -E */
    uint64_t seed;
    uint16_t ethertype;
    unsigned char dst[6], src[6];

    size_t frag_len;        /* bytes per slot actually used */
    unsigned nfrags;        /* slots per frame */
    unsigned char *scratch; /* frame being split into fragments */
    int reuse;              /* -z: write a buffer's frame once */
    uint8_t *written;       /* -z: a bit per buffer index already holding a frame */
    uint32_t nbufs;         /* buffer indexes the bitmap covers */

    uint64_t seq;           /* frames sent (= next sequence number) */
    uint64_t bytes;
    uint64_t slots;
    uint64_t swapped;       /* slots filled by swapping in an extra buffer */
    uint64_t built;         /* frames written into their buffer */
};

static void usage(void)
{
    fprintf(stderr,
            "usage: nm-send -i PORT [-s size=60] [-n count (0=forever)] [-b batch=ring]\n"
            "               [-r rate_pps (0=max)] [-w poll|select|ioctl] [-L] [-p seed]\n"
            "               [-T seconds] [-D dst_mac] [-S src_mac] [-e ethertype]\n"
            "               [-F frag_bytes] [-E extra_bufs] [-W drain_seconds=5] [-z] [-j]\n"
            "  -L  register with the legacy NIOCREGIF\n"
            "  -z  write each buffer's frame once, then send it as it is (pkt-gen's default;\n"
            "      count with nm-recv -z); one-slot frames without -E only\n"
            "  -F  split every frame into slots of at most frag_bytes (NS_MOREFRAG)\n"
            "  -E  ask for extra buffers and send by swapping them into the slots\n"
            "  -j  also print a JSON summary line\n");
    exit(2);
}

static double seconds_since(uint64_t t0)
{
    return (double)(nmp_now_ns() - t0) / 1e9;
}

/* With -z: whether the slot's buffer already holds a frame of ours (and,
 * if not, that it will once the caller has written it). */
static int already_written(struct sender *s, const struct netmap_slot *slot)
{
    uint32_t b = slot->buf_idx;

    if (!s->reuse || b >= s->nbufs)
        return 0;
    if (!(slot->flags & NS_BUF_CHANGED) && (s->written[b / 8] >> (b % 8) & 1))
        return 1;
    s->written[b / 8] |= (uint8_t)(1u << (b % 8));
    return 0;
}

/* Put one frame (s->nfrags slots) into ring at slot index i; returns the next index. */
static uint32_t put_frame(struct sender *s, struct netmap_ring *ring, uint32_t i)
{
    struct nm_port *p = &s->port;
    size_t off = 0;
    unsigned k;

    if (s->nfrags == 1 && s->extra == 0) {
        struct netmap_slot *slot = &ring->slot[i];

        if (!already_written(s, slot)) {
            nmp_frame_fill((unsigned char *)NETMAP_BUF(ring, slot->buf_idx), s->size, s->dst,
                           s->src, s->ethertype, s->seed, s->seq);
            s->built++;
        }
        slot->len = (uint16_t)s->size;
        slot->flags = 0;
        return nm_ring_next(ring, i);
    }

    nmp_frame_fill(s->scratch, s->size, s->dst, s->src, s->ethertype, s->seed, s->seq);
    s->built++;
    for (k = 0; k < s->nfrags; k++, i = nm_ring_next(ring, i)) {
        struct netmap_slot *slot = &ring->slot[i];
        size_t len = s->size - off < s->frag_len ? s->size - off : s->frag_len;
        uint16_t flags = k + 1 < s->nfrags ? NS_MOREFRAG : 0;

        if (s->extra) {
            /* build in an extra buffer, then trade it for the slot's buffer */
            uint32_t b = nmp_extra_pop(p);

            memcpy(nmp_buf(p, b), s->scratch + off, len);
            nmp_extra_push(p, slot->buf_idx);
            slot->buf_idx = b;
            flags |= NS_BUF_CHANGED;
            s->swapped++;
        } else {
            memcpy(NETMAP_BUF(ring, slot->buf_idx), s->scratch + off, len);
        }
        slot->len = (uint16_t)len;
        slot->flags = flags;
        off += len;
    }
    return i;
}

/*
 * Fill up to budget frames into ring from head; returns how many were
 * queued.  head and cur move past them; but when the room left is too small
 * for another frame, cur goes on to tail, so that the wait blocks until the
 * device frees more slots instead of reporting the few free ones at once.
 */
static uint64_t fill_ring(struct sender *s, struct netmap_ring *ring, uint64_t budget)
{
    uint32_t i = ring->head;
    uint32_t space = (ring->tail + ring->num_slots - i) % ring->num_slots;
    uint64_t n = 0;

    if (s->batch && budget > s->batch)
        budget = s->batch;
    while (n < budget && space >= s->nfrags) {
        i = put_frame(s, ring, i);
        space -= s->nfrags;
        s->seq++;
        s->bytes += s->size;
        s->slots += s->nfrags;
        n++;
    }
    ring->head = i;
    ring->cur = space < s->nfrags ? ring->tail : i;
    return n;
}

/* Frames the rate allows now (UINT64_MAX without a rate). */
static uint64_t rate_budget(const struct sender *s, uint64_t t0)
{
    double allowed;

    if (s->rate <= 0)
        return UINT64_MAX;
    allowed = s->rate * seconds_since(t0) + 1;
    return allowed > (double)s->seq ? (uint64_t)(allowed - (double)s->seq) : 0;
}

static int setup(struct sender *s, unsigned flags)
{
    struct nm_port *p = &s->port;
    int ring_slots;

    if (nmp_parse(p, s->spec) < 0) {
        fprintf(stderr, "nm-send: bad port spec '%s': %s\n", s->spec, strerror(errno));
        return -1;
    }
    p->reg.nr_extra_bufs = s->extra;
    if (nmp_register(p, flags) < 0 || nmp_mmap(p) < 0) {
        fprintf(stderr, "nm-send: cannot open %s on %s: %s\n", s->spec, nm_device_path(),
                strerror(errno));
        nmp_close(p);
        return -1;
    }
    if (p->last_tx_ring < p->first_tx_ring) {
        fprintf(stderr, "nm-send: %s has no TX ring bound\n", s->spec);
        return -1;
    }
    if (s->extra && (p->reg.nr_extra_bufs == 0 || p->nifp->ni_bufs_head == 0)) {
        fprintf(stderr, "nm-send: asked for %u extra buffers, got none\n", s->extra);
        return -1;
    }
    s->frag_len = p->buf_size;
    if (s->frag && s->frag < s->frag_len)
        s->frag_len = s->frag;
    s->nfrags = (unsigned)((s->size + s->frag_len - 1) / s->frag_len);
    ring_slots = (int)nmp_txring(p, p->first_tx_ring)->num_slots;
    if (s->nfrags > MAX_FRAGS || (int)s->nfrags >= ring_slots) {
        fprintf(stderr, "nm-send: a %zu-byte frame needs %u slots of %zu bytes: too many\n",
                s->size, s->nfrags, s->frag_len);
        return -1;
    }
    if (s->reuse && (s->nfrags > 1 || s->extra)) {
        fprintf(stderr, "nm-send: -z sends one-slot frames without extra buffers only\n");
        return -1;
    }
    if (s->reuse) {
        s->nbufs = (uint32_t)(((char *)p->mem + p->reg.nr_memsize - p->buf_base) / p->buf_size);
        s->written = calloc((size_t)s->nbufs / 8 + 1, 1);
    }
    s->scratch = malloc(s->size);
    if (s->scratch == NULL || (s->reuse && s->written == NULL)) {
        perror("nm-send");
        return -1;
    }
    fprintf(stderr,
            "nm-send: %s mem_id %u, tx rings %d..%d of %u slots, buffers of %u bytes, "
            "%zu-byte frames in %u slot(s), extra buffers %u, wait %s%s\n",
            s->spec, p->reg.nr_mem_id, p->first_tx_ring, p->last_tx_ring, p->reg.nr_tx_slots,
            p->buf_size, s->size, s->nfrags, p->reg.nr_extra_bufs, nmp_wait_mode_name(s->mode),
            (flags & NMP_LEGACY) ? ", legacy NIOCREGIF" : "");
    return 0;
}

/* Send until count, duration or a signal; returns 0 or -1 (wait error). */
static int run(struct sender *s, uint64_t t0)
{
    struct nm_port *p = &s->port;
    volatile sig_atomic_t *stop = nmp_stop_flag();

    while (!*stop) {
        uint64_t budget = s->count ? s->count - s->seq : UINT64_MAX;
        uint64_t allowed = rate_budget(s, t0);
        int i, rv;

        if (budget == 0 || (s->duration > 0 && seconds_since(t0) >= s->duration))
            break;
        if (allowed < budget)
            budget = allowed;
        for (i = p->first_tx_ring; i <= p->last_tx_ring && budget > 0; i++)
            budget -= fill_ring(s, nmp_txring(p, i), budget);

        /* the wait syncs TX, and blocks while no ring has room (cur == tail) */
        rv = nmp_wait(p, POLLOUT, 1000, s->mode);
        if (rv < 0 && errno != EINTR) {
            fprintf(stderr, "nm-send: wait (%s): %s\n", nmp_wait_mode_name(s->mode), strerror(errno));
            return -1;
        }
        if (s->rate > 0 && rate_budget(s, t0) == 0) {
            double ahead = (double)s->seq / s->rate - seconds_since(t0);
            if (ahead > 0.001)
                ahead = 0.001;
            if (ahead > 0)
                usleep((useconds_t)(ahead * 1e6));
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sender s;
    unsigned flags = 0;
    int json = 0, opt, status = 0;
    uint64_t t0;
    double secs;

    memset(&s, 0, sizeof(s));
    s.port.fd = -1;
    s.size = 60;
    s.ethertype = NMP_FRAME_ETHERTYPE;
    s.drain_s = 5;
    memset(s.dst, 0xff, 6);
    memcpy(s.src, "\x02\x00\x00\x00\x00\x01", 6);

    while ((opt = getopt(argc, argv, "i:s:n:b:r:w:Lp:T:D:S:e:F:E:W:zjh")) != -1) {
        switch (opt) {
        case 'i': s.spec = optarg; break;
        case 's': s.size = strtoul(optarg, NULL, 0); break;
        case 'n': s.count = strtoull(optarg, NULL, 0); break;
        case 'b': s.batch = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'r': s.rate = atof(optarg); break;
        case 'w':
            if ((s.mode = nmp_wait_mode_parse(optarg)) < 0)
                usage();
            break;
        case 'L': flags |= NMP_LEGACY; break;
        case 'p': s.seed = strtoull(optarg, NULL, 0); break;
        case 'T': s.duration = atof(optarg); break;
        case 'D': if (nmp_parse_mac(optarg, s.dst) < 0) usage(); break;
        case 'S': if (nmp_parse_mac(optarg, s.src) < 0) usage(); break;
        case 'e': s.ethertype = (uint16_t)strtoul(optarg, NULL, 0); break;
        case 'F': s.frag = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'E': s.extra = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'W': s.drain_s = atof(optarg); break;
        case 'z': s.reuse = 1; break;
        case 'j': json = 1; break;
        default: usage();
        }
    }
    if (s.spec == NULL || optind != argc || s.size < NMP_FRAME_HDR || s.size > NMP_FRAME_MAX ||
        s.drain_s < 0)
        usage();

    nmp_catch_stop_signals();
    if (setup(&s, flags) < 0)
        return 1;

    t0 = nmp_now_ns();
    if (run(&s, t0) < 0 || (s.count && s.seq < s.count))
        status = 1;
    if (nmp_drain_tx(&s.port, (int)(s.drain_s * 1000), s.mode) < 0) {
        fprintf(stderr, "nm-send: %u TX slots still not handed back after %.1f s: %s\n",
                nmp_tx_pending(&s.port), s.drain_s, strerror(errno));
        status = 1;
    }
    secs = seconds_since(t0);

    printf("sent %" PRIu64 " pkts %" PRIu64 " bytes in %.3f s: %.0f pps\n", s.seq, s.bytes, secs,
           secs > 0 ? (double)s.seq / secs : 0.0);
    if (json) {
        printf("{\"tool\":\"nm-send\",\"port\":");
        nmp_json_str(stdout, s.spec);
        printf(",\"pkts\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"slots\":%" PRIu64
               ",\"swapped\":%" PRIu64 ",\"built\":%" PRIu64 ",\"seconds\":%.6f,\"pps\":%.1f,\"size\":%zu"
               ",\"frags\":%u,\"wait\":\"%s\",\"legacy\":%s,\"mem_id\":%u,\"ok\":%s}\n",
               s.seq, s.bytes, s.slots, s.swapped, s.built, secs, secs > 0 ? (double)s.seq / secs : 0.0,
               s.size, s.nfrags, nmp_wait_mode_name(s.mode), (flags & NMP_LEGACY) ? "true" : "false",
               s.port.reg.nr_mem_id, status == 0 ? "true" : "false");
    }
    fflush(stdout);
    nmp_close(&s.port);
    free(s.scratch);
    free(s.written);
    return status;
}
