/*
 * nm-recv: a netmap traffic sink that checks what nm-send sent.
 *
 * It waits for RX slots (poll, select or the RXSYNC busy loop), walks every
 * bound RX ring from head to tail, hands the slots back by moving head and
 * cur to tail, and accounts for each frame:
 *
 *  - a frame is one slot, or a chain of slots with NS_MOREFRAG set on all
 *    but the last.  A chain is copied into a per-ring reassembly buffer as it
 *    arrives, so it may end in a later sync than it started;
 *  - frames of another ethertype are counted as "other" and ignored;
 *  - the sequence number feeds a window of 2^20 recent numbers, which tells
 *    in-order, lost (holes below the highest number seen), late (out of
 *    order, filling a hole) and duplicated frames apart;
 *  - with -c the pattern is checked too; a bad header or pattern counts as
 *    corrupted.
 *
 * With -z the frames are not read at all: slots, frames (chains) and bytes
 * are counted from the slots, as netmap's pkt-gen receives by default (the
 * sender's nm-send -z repeats sequence numbers).
 *
 * Exit status 0 only if -n count frames arrived (when given) and, with -c,
 * nothing was lost, duplicated or corrupted.
 */
#include <getopt.h>
#include <inttypes.h>

#include "nm_port.h"

#define MAX_FRAGS 64
#define WINDOW_BITS 20
#define WINDOW (1ull << WINDOW_BITS)

struct chain {                  /* a frame arriving in several slots */
    unsigned char *buf;
    size_t len;
    unsigned frags;
    int broken;                 /* too long: counted corrupted at its end */
};

struct receiver {
    struct nm_port port;
    const char *spec;
    uint64_t count;
    int mode;
    double idle_s;
    int check;
    int blind;                  /* -z: count slots, never read a frame */
    uint64_t seed;
    uint16_t ethertype;

    struct chain *chains;       /* one per RX ring */
    size_t chain_max;
    uint64_t *seen;             /* bit (seq % WINDOW) for seq in (next - WINDOW, next) */

    uint64_t frames, bytes, slots, multislot;
    uint64_t other, corrupt, dup, lost;
    uint64_t late;              /* out of order: filled a hole ("ooo") */
    uint64_t next;              /* highest sequence number seen + 1 */
    uint64_t t_first, t_last;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: nm-recv -i PORT [-n count] [-w poll|select|ioctl] [-T idle_timeout_s=10]\n"
            "               [-c | -z] [-p seed] [-e ethertype] [-L] [-j]\n"
            "  -c  check every payload byte      -T 0  wait forever\n"
            "  -z  count slots and lengths only, never read a frame (pkt-gen's way)\n"
            "  -L  register with the legacy NIOCREGIF\n"
            "  -j  also print a JSON summary line\n");
    exit(2);
}

static int seen_test(const struct receiver *r, uint64_t seq)
{
    uint64_t b = seq % WINDOW;
    return (r->seen[b / 64] >> (b % 64)) & 1;
}

static void seen_set(struct receiver *r, uint64_t seq, int on)
{
    uint64_t b = seq % WINDOW, m = 1ull << (b % 64);

    if (on)
        r->seen[b / 64] |= m;
    else
        r->seen[b / 64] &= ~m;
}

/* Account for sequence number seq (see the cases in the file comment). */
static void track(struct receiver *r, uint64_t seq)
{
    if (seq >= r->next) {
        uint64_t gap = seq - r->next, x;

        if (gap >= WINDOW)
            memset(r->seen, 0, WINDOW / 8);
        else
            for (x = r->next; x < seq; x++)
                seen_set(r, x, 0);
        seen_set(r, seq, 1);
        r->lost += gap;
        r->next = seq + 1;
    } else if (r->next - seq > WINDOW) {
        r->late++;              /* too old to tell; assume it fills a hole */
        if (r->lost)
            r->lost--;
    } else if (seen_test(r, seq)) {
        r->dup++;
    } else {
        seen_set(r, seq, 1);
        r->late++;
        r->lost--;
    }
}

/* One complete frame of len bytes. */
static void frame(struct receiver *r, const unsigned char *f, size_t len)
{
    uint64_t seq, flen;

    if (len < 14 || nmp_get_be(f + 12, 2) != r->ethertype) {
        r->other++;
        return;
    }
    r->frames++;
    r->bytes += len;
    if (len < NMP_FRAME_HDR) {
        r->corrupt++;
        return;
    }
    seq = nmp_get_be(f + 14, 8);
    flen = nmp_get_be(f + 22, 2);
    /* the length must match; a short frame may come padded to 60 bytes */
    if (flen < NMP_FRAME_HDR || flen > len || (len != flen && len > 60)) {
        r->corrupt++;
        return;
    }
    if (r->check && !nmp_frame_pattern_ok(f, (size_t)flen, r->seed, seq))
        r->corrupt++;
    track(r, seq);
}

/* Consume every slot of one RX ring from head to tail. */
static void drain_ring(struct receiver *r, struct netmap_ring *ring, struct chain *c)
{
    uint32_t i = ring->head, tail = ring->tail;
    uint64_t before = r->frames;
    /* the clock is read once per batch, not per frame: at these rates a
     * read per frame costs as much as the rest of the receiver */
    uint64_t start = before == 0 && i != tail ? nmp_now_ns() : 0;

    for (; i != tail; i = nm_ring_next(ring, i)) {
        struct netmap_slot *slot = &ring->slot[i];
        const unsigned char *data = (const unsigned char *)NETMAP_BUF(ring, slot->buf_idx);
        size_t len = slot->len < ring->nr_buf_size ? slot->len : ring->nr_buf_size;

        r->slots++;
        if (r->blind) {
            r->bytes += len;
            c->frags++;
            if (!(slot->flags & NS_MOREFRAG)) {
                r->frames++;
                r->multislot += c->frags > 1;
                c->frags = 0;
            }
            continue;
        }
        if (c->frags == 0 && !(slot->flags & NS_MOREFRAG)) {
            frame(r, data, len);
            continue;
        }
        if (c->frags >= MAX_FRAGS || c->len + len > r->chain_max)
            c->broken = 1;
        else
            memcpy(c->buf + c->len, data, len);
        c->len += len;
        c->frags++;
        if (slot->flags & NS_MOREFRAG)
            continue;
        r->multislot++;
        if (c->broken) {
            r->frames++;
            r->corrupt++;
        } else {
            frame(r, c->buf, c->len);
        }
        c->len = 0;
        c->frags = 0;
        c->broken = 0;
    }
    ring->head = ring->cur = i;
    if (r->frames != before) {
        if (before == 0)
            r->t_first = start;
        r->t_last = nmp_now_ns();
    }
}

static int setup(struct receiver *r, unsigned flags)
{
    struct nm_port *p = &r->port;
    int n, i;

    if (nmp_open(p, r->spec, flags) < 0) {
        fprintf(stderr, "nm-recv: cannot open %s on %s: %s\n", r->spec, nm_device_path(),
                strerror(errno));
        return -1;
    }
    if (p->last_rx_ring < p->first_rx_ring) {
        fprintf(stderr, "nm-recv: %s has no RX ring bound\n", r->spec);
        return -1;
    }
    n = p->last_rx_ring + 1;
    r->chain_max = (size_t)MAX_FRAGS * p->buf_size;
    r->chains = calloc((size_t)n, sizeof(*r->chains));
    r->seen = calloc(WINDOW / 64, sizeof(uint64_t));
    if (r->chains == NULL || r->seen == NULL)
        goto fail_nomem;
    for (i = p->first_rx_ring; i < n; i++) {
        r->chains[i].buf = malloc(r->chain_max);
        if (r->chains[i].buf == NULL)
            goto fail_nomem;
    }
    fprintf(stderr, "nm-recv: %s mem_id %u, rx rings %d..%d of %u slots, buffers of %u bytes, wait %s%s\n",
            r->spec, p->reg.nr_mem_id, p->first_rx_ring, p->last_rx_ring, p->reg.nr_rx_slots,
            p->buf_size, nmp_wait_mode_name(r->mode), (flags & NMP_LEGACY) ? ", legacy NIOCREGIF" : "");
    return 0;

fail_nomem:
    perror("nm-recv");
    return -1;
}

/* Receive until count, idle timeout or a signal; returns 0 or -1. */
static int run(struct receiver *r)
{
    struct nm_port *p = &r->port;
    volatile sig_atomic_t *stop = nmp_stop_flag();
    uint64_t idle_since = nmp_now_ns();
    uint64_t idle_ns = (uint64_t)(r->idle_s * 1e9);

    while (!*stop && !(r->count && r->frames >= r->count)) {
        uint64_t before = r->slots, now;
        int i, rv;

        /* short waits, so that signals and the idle limit are seen in every style */
        rv = nmp_wait(p, POLLIN, 200, r->mode);
        if (rv < 0 && errno != EINTR) {
            fprintf(stderr, "nm-recv: wait (%s): %s\n", nmp_wait_mode_name(r->mode), strerror(errno));
            return -1;
        }
        for (i = p->first_rx_ring; i <= p->last_rx_ring; i++)
            drain_ring(r, nmp_rxring(p, i), &r->chains[i]);
        now = nmp_now_ns();
        if (r->slots != before)
            idle_since = now;
        else if (idle_ns && now - idle_since >= idle_ns)
            break;
    }
    /* hand the consumed slots back, so that a sender's TX drain completes */
    if (nmp_wait(p, POLLIN, 0, r->mode) < 0 && errno != EINTR)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    struct receiver r;
    unsigned flags = 0;
    int json = 0, opt, status;
    double secs, pps;

    memset(&r, 0, sizeof(r));
    r.port.fd = -1;
    r.idle_s = 10;
    r.ethertype = NMP_FRAME_ETHERTYPE;

    while ((opt = nmp_loop_getopt(argc, argv, "i:n:w:T:czp:e:Ljh", &r.spec, &r.count, &r.mode, &r.idle_s)) != -1) {
        switch (opt) {
        case 'c': r.check = 1; break;
        case 'z': r.blind = 1; break;
        case 'p': r.seed = strtoull(optarg, NULL, 0); break;
        case 'e': r.ethertype = (uint16_t)strtoul(optarg, NULL, 0); break;
        case 'L': flags |= NMP_LEGACY; break;
        case 'j': json = 1; break;
        default: usage();
        }
    }
    if (r.spec == NULL || optind != argc || r.idle_s < 0 || (r.check && r.blind))
        usage();

    nmp_catch_stop_signals();
    if (setup(&r, flags) < 0)
        return 1;
    status = run(&r) < 0 ? 1 : 0;
    if (r.count && r.frames < r.count)
        status = 1;
    if (r.check && (r.lost || r.dup || r.corrupt))
        status = 1;

    secs = (double)(r.t_last - r.t_first) / 1e9;
    pps = secs > 0 ? (double)(r.frames - 1) / secs : 0.0;
    printf("received %" PRIu64 " pkts %" PRIu64 " bytes in %.3f s: %.0f pps; lost %" PRIu64
           " dup %" PRIu64 " ooo %" PRIu64 " corrupt %" PRIu64 " other %" PRIu64 "\n",
           r.frames, r.bytes, secs, pps, r.lost, r.dup, r.late, r.corrupt, r.other);
    if (json) {
        printf("{\"tool\":\"nm-recv\",\"port\":");
        nmp_json_str(stdout, r.spec);
        printf(",\"pkts\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"slots\":%" PRIu64
               ",\"multislot\":%" PRIu64 ",\"seconds\":%.6f,\"pps\":%.1f,\"lost\":%" PRIu64
               ",\"dup\":%" PRIu64 ",\"ooo\":%" PRIu64 ",\"corrupt\":%" PRIu64 ",\"other\":%" PRIu64
               ",\"next_seq\":%" PRIu64 ",\"checked\":%s,\"read\":%s,\"wait\":\"%s\",\"mem_id\":%u,\"ok\":%s}\n",
               r.frames, r.bytes, r.slots, r.multislot, secs, pps, r.lost, r.dup, r.late, r.corrupt,
               r.other, r.next, r.check ? "true" : "false", r.blind ? "false" : "true",
               nmp_wait_mode_name(r.mode),
               r.port.reg.nr_mem_id, status == 0 ? "true" : "false");
    }
    fflush(stdout);
    nmp_close(&r.port);
    return status;
}
