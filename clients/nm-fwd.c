/*
 * nm-fwd: a zero-copy forwarder between two netmap ports.
 *
 * Frames received on A's RX rings go out on B's TX rings (and B to A with
 * -b).  When both ports live in the same memory region (same nr_mem_id) the
 * forwarder trades buffers instead of bytes:
 *
 *     A rx slot:  buf_idx X  ----.   .---->  buf_idx Y, NS_BUF_CHANGED
 *                                 \ /
 *                                  X
 *                                 / \
 *     B tx slot:  buf_idx Y  ----'   '---->  buf_idx X, len, NS_BUF_CHANGED
 *
 * so the RX ring gets an empty buffer back and the frame's own buffer goes
 * out on B.  Otherwise (or with -C) the bytes are copied.  A frame chained
 * over several slots (NS_MOREFRAG) is only moved whole, into one TX ring,
 * and only once its last slot has arrived.  A ring that must wait (an
 * unfinished chain on RX, too little room for a chain on TX) gets cur = tail,
 * so that the wait blocks until the device adds slots: netmap's poll reports
 * a ring ready as soon as tail differs from cur.
 *
 * A round moves what it can, pushes the TX rings that got frames with a
 * zero-timeout wait (a sync in the chosen style), then blocks until a source
 * has frames or a full destination has room again.
 */
#include <getopt.h>
#include <inttypes.h>

#include "nm_port.h"

#define MAX_FRAGS 64

struct direction {
    struct nm_port *src, *dst;
    const char *label;
    int zerocopy;
    uint64_t frames, slots, swapped, copied, truncated;
    int tx_ring;                /* next destination ring to try */
};

static int verbose;

static void usage(void)
{
    fprintf(stderr,
            "usage: nm-fwd -i PORT_A -o PORT_B [-b] [-n count] [-w poll|select|ioctl]\n"
            "              [-T idle_timeout_s=0] [-C] [-L] [-v] [-j]\n"
            "  -b  bidirectional        -n  stop after count frames (both ways)\n"
            "  -C  copy bytes even when the ports share memory\n"
            "  -L  register with the legacy NIOCREGIF\n"
            "  -v  print the first buffer swaps   -j  also print a JSON summary line\n");
    exit(2);
}

/*
 * Slots of the frame starting at rx slot i, given avail filled slots from i;
 * 0 while its chain is unfinished.  A chain longer than netmap allows is
 * cut into MAX_FRAGS pieces rather than blocking the ring.
 */
static uint32_t frame_slots(const struct netmap_ring *rx, uint32_t i, uint32_t avail)
{
    uint32_t n = 0;

    while (n < avail && n < MAX_FRAGS) {
        uint16_t fl = rx->slot[i].flags;
        n++;
        if (!(fl & NS_MOREFRAG))
            return n;
        i = nm_ring_next(rx, i);
    }
    return n == MAX_FRAGS ? n : 0;
}

/* Move one slot from rx slot rs to tx slot ts. */
static void move_slot(struct direction *d, struct netmap_ring *rx, struct netmap_slot *rs,
                      struct netmap_ring *tx, struct netmap_slot *ts)
{
    uint16_t more = rs->flags & NS_MOREFRAG;

    if (d->zerocopy) {
        uint32_t idx = ts->buf_idx;

        if (verbose && d->swapped < 16)
            fprintf(stderr, "nm-fwd: %s swap rx buf %u <-> tx buf %u (len %u)\n", d->label,
                    rs->buf_idx, idx, rs->len);
        ts->buf_idx = rs->buf_idx;
        ts->len = rs->len;
        ts->flags = NS_BUF_CHANGED | more;
        rs->buf_idx = idx;
        rs->flags = NS_BUF_CHANGED;
        d->swapped++;
    } else {
        uint16_t len = rs->len;

        if (len > tx->nr_buf_size) {
            len = (uint16_t)tx->nr_buf_size;
            d->truncated++;
        }
        if (len > rx->nr_buf_size)
            len = (uint16_t)rx->nr_buf_size;
        memcpy(NETMAP_BUF(tx, ts->buf_idx), NETMAP_BUF(rx, rs->buf_idx), len);
        ts->len = len;
        ts->flags = more;
        d->copied++;
    }
}

/*
 * Forward what one direction can; returns the frames moved.  *pending is
 * set when frames are left in a source RX ring for lack of TX room.
 */
static uint64_t forward(struct direction *d, uint64_t budget, int *pending)
{
    struct nm_port *src = d->src, *dst = d->dst;
    uint64_t moved = 0;
    int r;

    *pending = 0;
    for (r = src->first_rx_ring; r <= src->last_rx_ring; r++) {
        struct netmap_ring *rx = nmp_rxring(src, r);
        uint32_t i = rx->head;
        int nrings = dst->last_tx_ring - dst->first_tx_ring + 1, tries = nrings;

        while (moved < budget && tries > 0) {
            struct netmap_ring *tx = nmp_txring(dst, d->tx_ring);
            uint32_t avail = (rx->tail + rx->num_slots - i) % rx->num_slots;
            uint32_t n = frame_slots(rx, i, avail), j = tx->head, k;

            if (n == 0)
                break;
            if ((tx->tail + tx->num_slots - tx->head) % tx->num_slots < n) {
                /* no room for this frame: wake up when this ring gets more, try the next */
                tx->cur = tx->tail;
                if (++d->tx_ring > dst->last_tx_ring)
                    d->tx_ring = dst->first_tx_ring;
                tries--;
                continue;
            }
            for (k = 0; k < n; k++, i = nm_ring_next(rx, i), j = nm_ring_next(tx, j))
                move_slot(d, rx, &rx->slot[i], tx, &tx->slot[j]);
            tx->head = tx->cur = j;
            d->slots += n;
            d->frames++;
            moved++;
            tries = nrings;
        }
        rx->head = i;
        /* a chain still arriving: wake up only when more slots come */
        rx->cur = (i != rx->tail && tries > 0 && moved < budget) ? rx->tail : i;
        if (i != rx->tail && tries == 0)
            *pending = 1;
    }
    return moved;
}

static int open_port(struct nm_port *p, const char *spec, unsigned flags)
{
    if (nmp_open(p, spec, flags) < 0) {
        fprintf(stderr, "nm-fwd: cannot open %s on %s: %s\n", spec, nm_device_path(), strerror(errno));
        return -1;
    }
    return 0;
}

static int has_rings(const struct nm_port *p, const char *spec, int rx, int tx)
{
    if ((rx && p->last_rx_ring < p->first_rx_ring) || (tx && p->last_tx_ring < p->first_tx_ring)) {
        fprintf(stderr, "nm-fwd: %s lacks the %s rings it needs\n", spec, rx && tx ? "RX and TX" : rx ? "RX" : "TX");
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct nm_port a, b;
    struct nm_port *ports[2] = {&a, &b};
    struct direction dir[2];
    const char *spec_a = NULL, *spec_b = NULL;
    volatile sig_atomic_t *stop = nmp_stop_flag();
    unsigned flags = 0;
    int bidir = 0, force_copy = 0, json = 0, mode = NMP_WAIT_POLL, opt, ndir, status = 0, d;
    uint64_t count = 0, total = 0, idle_since, t0, idle_ns;
    double idle_s = 0, secs;

    while ((opt = getopt(argc, argv, "i:o:bn:w:T:CLvjh")) != -1) {
        switch (opt) {
        case 'i': spec_a = optarg; break;
        case 'o': spec_b = optarg; break;
        case 'b': bidir = 1; break;
        case 'n': count = strtoull(optarg, NULL, 0); break;
        case 'w':
            if ((mode = nmp_wait_mode_parse(optarg)) < 0)
                usage();
            break;
        case 'T': idle_s = atof(optarg); break;
        case 'C': force_copy = 1; break;
        case 'L': flags |= NMP_LEGACY; break;
        case 'v': verbose = 1; break;
        case 'j': json = 1; break;
        default: usage();
        }
    }
    if (spec_a == NULL || spec_b == NULL || optind != argc || idle_s < 0)
        usage();
    idle_ns = (uint64_t)(idle_s * 1e9);

    nmp_catch_stop_signals();
    if (open_port(&a, spec_a, flags) < 0)
        return 1;
    if (open_port(&b, spec_b, flags) < 0) {
        nmp_close(&a);
        return 1;
    }
    if (!has_rings(&a, spec_a, 1, bidir) || !has_rings(&b, spec_b, bidir, 1))
        goto fail;

    ndir = bidir ? 2 : 1;
    memset(dir, 0, sizeof(dir));
    for (d = 0; d < 2; d++) {
        dir[d].src = ports[d];
        dir[d].dst = ports[1 - d];
        dir[d].label = d == 0 ? "A->B" : "B->A";
        dir[d].tx_ring = dir[d].dst->first_tx_ring;
        dir[d].zerocopy = !force_copy && a.reg.nr_mem_id == b.reg.nr_mem_id;
    }
    if (a.reg.nr_mem_id != b.reg.nr_mem_id)
        fprintf(stderr, "nm-fwd: %s is in memory %u and %s in memory %u: copying frames\n", spec_a,
                a.reg.nr_mem_id, spec_b, b.reg.nr_mem_id);
    fprintf(stderr, "nm-fwd: %s %s %s, %s, wait %s\n", spec_a, bidir ? "<->" : "->", spec_b,
            dir[0].zerocopy ? "zero copy (buffer swaps)" : "copying", nmp_wait_mode_name(mode));

    t0 = idle_since = nmp_now_ns();
    while (!*stop && !(count && total >= count)) {
        short events[2] = {0, 0}, revents[2];
        int pending[2] = {0, 0}, pushed[2] = {0, 0}, rv;
        uint64_t moved = 0, now;

        for (d = 0; d < ndir; d++) {
            uint64_t m = forward(&dir[d], count ? count - total - moved : UINT64_MAX, &pending[d]);
            if (m)
                pushed[1 - d] = 1;
            moved += m;
        }
        total += moved;
        /* push the TX rings that got frames (a zero-timeout wait is a sync) */
        for (d = 0; d < 2; d++) {
            if (pushed[d] && nmp_wait(ports[d], POLLOUT, 0, mode) < 0 && errno != EINTR)
                goto fail_wait;
        }
        if (count && total >= count)
            break;
        /* wait for frames on an empty source, or room on a full destination */
        for (d = 0; d < ndir; d++) {
            if (pending[d])
                events[1 - d] |= POLLOUT;
            else
                events[d] |= POLLIN;
        }
        rv = nmp_wait_many(ports, events, revents, 2, 200, mode);
        if (rv < 0 && errno != EINTR)
            goto fail_wait;
        now = nmp_now_ns();
        if (moved)
            idle_since = now;
        else if (idle_ns && rv == 0 && now - idle_since >= idle_ns)
            break;
    }
    /* hand the last RX slots back (the senders wait for them), let the last frames leave */
    for (d = 0; d < ndir; d++)
        nmp_wait(dir[d].src, POLLIN, 0, mode);
    for (d = 0; d < 2; d++)
        nmp_drain_tx(ports[d], 2000, mode);
    goto report;

fail_wait:
    fprintf(stderr, "nm-fwd: wait (%s): %s\n", nmp_wait_mode_name(mode), strerror(errno));
    status = 1;
report:
    secs = (double)(nmp_now_ns() - t0) / 1e9;
    if (count && total < count)
        status = 1;
    {
        uint64_t sw = dir[0].swapped + dir[1].swapped, cp = dir[0].copied + dir[1].copied;
        uint64_t frames = dir[0].frames + dir[1].frames;

        printf("forwarded %" PRIu64 " frames (%" PRIu64 " slots swapped, %" PRIu64
               " copied) in %.3f s: A->B %" PRIu64 ", B->A %" PRIu64 "\n",
               frames, sw, cp, secs, dir[0].frames, dir[1].frames);
        if (json) {
            printf("{\"tool\":\"nm-fwd\",\"a\":");
            nmp_json_str(stdout, spec_a);
            printf(",\"b\":");
            nmp_json_str(stdout, spec_b);
            printf(",\"frames\":%" PRIu64 ",\"swapped\":%" PRIu64 ",\"copied\":%" PRIu64
                   ",\"truncated\":%" PRIu64 ",\"a_to_b\":%" PRIu64 ",\"b_to_a\":%" PRIu64
                   ",\"zero_copy\":%s,\"mem_id_a\":%u,\"mem_id_b\":%u,\"seconds\":%.6f"
                   ",\"wait\":\"%s\",\"ok\":%s}\n",
                   frames, sw, cp, dir[0].truncated + dir[1].truncated, dir[0].frames,
                   dir[1].frames, dir[0].zerocopy ? "true" : "false", a.reg.nr_mem_id,
                   b.reg.nr_mem_id, secs, nmp_wait_mode_name(mode), status == 0 ? "true" : "false");
        }
    }
    fflush(stdout);
    nmp_close(&b);
    nmp_close(&a);
    return status;

fail:
    nmp_close(&b);
    nmp_close(&a);
    return 1;
}
