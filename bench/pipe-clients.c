/*
 * pipe-clients: N clients at once, each moving frames through a pipe of its
 * own, timing every sync.
 *
 *     pipe-clients [-N clients] [-t seconds] [-b batch] [-s slots] [-f] DEVICE
 *
 * Each client is a process that registers both ends of its pipe (NAME{1
 * and NAME}1, `slots` slots per ring), then, until the time is up: fills
 * up to `batch` TX slots with 60-byte frames, NIOCTXSYNC on the first end,
 * NIOCRXSYNC on the second, and releases what arrived.  Every sync is
 * timed.  All clients start together once every one is registered.
 *
 * With -f (floor), DEVICE is the fuse-floor server's file: each client
 * opens it and issues the same two ioctls per round, unregistered, which
 * the floor answers at once: the cost of the round trips alone.
 *
 * Prints one JSON line: clients, seconds, batch, frames moved, syncs,
 * aggregate pps and syncs/s, and per-sync latency: the median of the
 * clients' medians, the worst client's 99th percentile, and the largest
 * ratio of a client's 99th percentile to that overall median.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <sys/wait.h>

#include "nm_port.h"
#include "timing.h"

#define MAX_CLIENTS 1024
#define MAX_SAMPLES (1 << 21)

struct result {
    uint64_t frames, syncs;
    double median_us, p99_us;
};

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    fprintf(stderr, "usage: pipe-clients [-N clients] [-t seconds] [-b batch] [-s slots] [-f] DEVICE\n");
    exit(2);
}

/* Register one end of pipe NAME (a netmap port spec) with `slots` slots. */
static int open_end(struct nm_port *p, const char *spec, unsigned slots)
{
    if (nmp_parse(p, spec) < 0)
        return -1;
    p->reg.nr_tx_slots = p->reg.nr_rx_slots = slots;
    if (nmp_register(p, 0) < 0)
        return -1;
    if (nmp_mmap(p) < 0) {
        nmp_close(p);
        return -1;
    }
    return 0;
}

/* One client: wait for the start byte on `start`, run, write a result to `out`. */
static int client(int id, const char *device, int floor, unsigned slots, unsigned batch, double seconds,
                  int start, int out)
{
    struct nm_port a, b;
    struct result r = {0};
    uint32_t *samples = malloc(MAX_SAMPLES * sizeof(uint32_t));
    uint64_t n = 0, deadline;
    int fd = -1;
    char spec[64], go;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    if (!samples)
        return 1;
    if (floor) {
        fd = open(device, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "pipe-clients: %s: %s\n", device, strerror(errno));
            return 1;
        }
    } else {
        setenv("NETMAP_DEVICE", device, 1);
        snprintf(spec, sizeof(spec), "netmap:pc%d_%d{1", (int)getppid(), id);
        if (open_end(&a, spec, slots) < 0) {
            fprintf(stderr, "pipe-clients: %s: %s\n", spec, strerror(errno));
            return 1;
        }
        snprintf(spec, sizeof(spec), "netmap:pc%d_%d}1", (int)getppid(), id);
        if (open_end(&b, spec, slots) < 0) {
            fprintf(stderr, "pipe-clients: %s: %s\n", spec, strerror(errno));
            return 1;
        }
    }
    if (write(out, "r", 1) != 1 || read(start, &go, 1) != 1)
        return 1;

    deadline = nmp_now_ns() + (uint64_t)(seconds * 1e9);
    while (nmp_now_ns() < deadline) {
        uint64_t t0, t1, t2;

        if (floor) {
            t0 = nmp_now_ns();
            if (ioctl(fd, NIOCTXSYNC) < 0 && errno != ENXIO)
                return 1;
            t1 = nmp_now_ns();
            if (ioctl(fd, NIOCRXSYNC) < 0 && errno != ENXIO)
                return 1;
            t2 = nmp_now_ns();
            r.frames += batch;
        } else {
            struct netmap_ring *tx = nmp_txring(&a, a.first_tx_ring);
            struct netmap_ring *rx = nmp_rxring(&b, b.first_rx_ring);
            unsigned room = nm_ring_space(tx), k = room < batch ? room : batch, head = tx->head;

            for (unsigned i = 0; i < k; i++) {
                tx->slot[head].len = 60;
                head = nm_ring_next(tx, head);
            }
            tx->head = tx->cur = head;
            t0 = nmp_now_ns();
            if (ioctl(a.fd, NIOCTXSYNC) < 0)
                return 1;
            t1 = nmp_now_ns();
            if (ioctl(b.fd, NIOCRXSYNC) < 0)
                return 1;
            t2 = nmp_now_ns();
            r.frames += nm_ring_space(rx);
            rx->head = rx->cur = rx->tail;
        }
        r.syncs += 2;
        if (n + 2 <= MAX_SAMPLES) {
            samples[n++] = (uint32_t)(t1 - t0);
            samples[n++] = (uint32_t)(t2 - t1);
        }
    }
    qsort(samples, n, sizeof(uint32_t), cmp_u32);
    r.median_us = n ? samples[n / 2] / 1e3 : 0;
    r.p99_us = n ? samples[(size_t)((n - 1) * 0.99)] / 1e3 : 0;
    if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
        return 1;
    if (floor)
        close(fd);
    else {
        nmp_close(&a);
        nmp_close(&b);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int nclients = 1, floor = 0, opt, start[2], fds[MAX_CLIENTS];
    unsigned batch = 64, slots = 256;
    double seconds = 3, medians[MAX_CLIENTS];
    pid_t pids[MAX_CLIENTS];
    struct result total = {0};
    double worst_p99 = 0, worst_ratio_own = 0;
    int failed = 0;

    while ((opt = getopt(argc, argv, "N:t:b:s:f")) != -1) {
        switch (opt) {
        case 'N': nclients = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'b': batch = (unsigned)atoi(optarg); break;
        case 's': slots = (unsigned)atoi(optarg); break;
        case 'f': floor = 1; break;
        default: usage();
        }
    }
    if (argc - optind != 1 || nclients < 1 || nclients > MAX_CLIENTS || batch < 1 || seconds <= 0)
        usage();
    if (pipe(start) < 0)
        return 1;
    for (int i = 0; i < nclients; i++) {
        int p[2];

        if (pipe(p) < 0)
            return 1;
        pids[i] = fork();
        if (pids[i] == 0) {
            close(start[1]);
            close(p[0]);
            _exit(client(i, argv[optind], floor, slots, batch, seconds, start[0], p[1]));
        }
        close(p[1]);
        fds[i] = p[0];
    }
    close(start[0]);
    for (int i = 0; i < nclients; i++) {    /* every client registered */
        char c;

        if (read(fds[i], &c, 1) != 1) {
            fprintf(stderr, "pipe-clients: client %d failed to start\n", i);
            return 1;
        }
    }
    for (int i = 0; i < nclients; i++)
        if (write(start[1], "g", 1) != 1)
            return 1;
    for (int i = 0; i < nclients; i++) {
        struct result r;
        int status;

        if (read(fds[i], &r, sizeof(r)) != (ssize_t)sizeof(r)) {
            failed++;
            memset(&r, 0, sizeof(r));
        }
        waitpid(pids[i], &status, 0);
        total.frames += r.frames;
        total.syncs += r.syncs;
        medians[i] = r.median_us;
        if (r.p99_us > worst_p99)
            worst_p99 = r.p99_us;
        if (r.median_us > 0 && r.p99_us / r.median_us > worst_ratio_own)
            worst_ratio_own = r.p99_us / r.median_us;
    }
    qsort(medians, (size_t)nclients, sizeof(double), cmp_double);
    double median = medians[nclients / 2];
    printf("{\"clients\":%d,\"seconds\":%.1f,\"batch\":%u,\"floor\":%s,\"failed\":%d,"
           "\"frames\":%llu,\"syncs\":%llu,\"pps\":%.0f,\"syncs_per_s\":%.0f,"
           "\"median_us\":%.2f,\"worst_p99_us\":%.2f,\"worst_p99_over_median\":%.2f,"
           "\"worst_p99_over_own_median\":%.2f}\n",
           nclients, seconds, batch, floor ? "true" : "false", failed,
           (unsigned long long)total.frames, (unsigned long long)total.syncs, total.frames / seconds,
           total.syncs / seconds, median, worst_p99, median > 0 ? worst_p99 / median : 0, worst_ratio_own);
    return failed ? 1 : 0;
}
