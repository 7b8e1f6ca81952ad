/*
 * sync-rtt: time back-to-back empty sync ioctls on a netmap device.
 *
 *     sync-rtt [-n 100000] [-c cpu] [-o txsync|rxsync] DEVICE [PORTSPEC]
 *
 * Opens DEVICE (a netmap device, or the fuse-floor server's file).  With a
 * PORTSPEC the fd is first bound to that port through NIOCCTRL ("null:NAME"
 * binds a null port: NR_REG_NULL in memory 1); without one the ioctls go
 * out unregistered, which is all the floor server needs (it answers 0; a
 * real device's errors are counted and reported, not fatal).
 *
 * After a warm-up batch it issues n ioctls in batches of 1000 and prints,
 * over the per-batch averages, the median, 10th and 90th percentile in
 * microseconds as one JSON line, with the CPU it ran on.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <sched.h>

#include "nm_port.h"
#include "timing.h"

#define BATCH 1000

static void usage(void)
{
    fprintf(stderr, "usage: sync-rtt [-n 100000] [-c cpu] [-o txsync|rxsync] DEVICE [PORTSPEC]\n"
                    "  PORTSPEC: a netmap port spec, or null:NAME for a null port\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *device, *spec = NULL, *op = "txsync";
    unsigned long cmd = NIOCTXSYNC;
    struct nm_port port;
    long n = 100000, batch = BATCH, nbatches, b, i;
    int cpu = -1, fd, opt, first_errno = 0;
    long errors = 0;
    double *us;

    while ((opt = getopt(argc, argv, "n:c:o:h")) != -1) {
        switch (opt) {
        case 'n': n = strtol(optarg, NULL, 0); break;
        case 'c': cpu = atoi(optarg); break;
        case 'o':
            if (strcmp(optarg, "txsync") == 0)
                cmd = NIOCTXSYNC;
            else if (strcmp(optarg, "rxsync") == 0)
                cmd = NIOCRXSYNC;
            else
                usage();
            op = optarg;
            break;
        default: usage();
        }
    }
    if (argc - optind < 1 || argc - optind > 2 || n < 1)
        usage();
    device = argv[optind];
    if (argc - optind == 2)
        spec = argv[optind + 1];
    if (n < batch)
        batch = n;
    nbatches = n / batch;

    if (pin_to_cpu(cpu) < 0) {
        fprintf(stderr, "sync-rtt: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
        return 1;
    }

    memset(&port, 0, sizeof(port));
    port.fd = -1;
    if (spec) {
        unsigned flags = NMP_NO_MMAP;
        const char *name = spec;

        if (strncmp(spec, "null:", 5) == 0) {
            flags |= NMP_NULL;
            name = spec + 5;
        }
        setenv("NETMAP_DEVICE", device, 1);
        if (nmp_open(&port, name, flags) < 0) {
            fprintf(stderr, "sync-rtt: cannot register %s on %s: %s\n", spec, device, strerror(errno));
            return 1;
        }
        fd = port.fd;
    } else {
        fd = open(device, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "sync-rtt: %s: %s\n", device, strerror(errno));
            return 1;
        }
    }

    us = calloc((size_t)nbatches, sizeof(double));
    if (us == NULL) {
        perror("sync-rtt");
        return 1;
    }
    for (i = 0; i < batch; i++)         /* warm-up: caches, wake-up paths */
        (void)ioctl(fd, cmd);
    for (b = 0; b < nbatches; b++) {
        uint64_t t0 = nmp_now_ns();

        for (i = 0; i < batch; i++) {
            if (ioctl(fd, cmd) < 0) {
                if (errors++ == 0)
                    first_errno = errno;
            }
        }
        us[b] = (double)(nmp_now_ns() - t0) / 1e3 / (double)batch;
    }
    qsort(us, (size_t)nbatches, sizeof(double), cmp_double);

    printf("{\"op\":\"%s\",\"n\":%ld,\"median_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,"
           "\"cpu\":%d,\"pinned\":%s,\"batch\":%ld,\"errors\":%ld,\"errno\":",
           op, nbatches * batch, percentile(us, nbatches, 0.5), percentile(us, nbatches, 0.1),
           percentile(us, nbatches, 0.9), cpu >= 0 ? cpu : sched_getcpu(),
           cpu >= 0 ? "true" : "false", batch, errors);
    nmp_json_str(stdout, errors ? strerror(first_errno) : "");
    printf(",\"device\":");
    nmp_json_str(stdout, device);
    printf(",\"port\":");
    nmp_json_str(stdout, spec ? spec : "");
    printf("}\n");

    free(us);
    if (spec)
        nmp_close(&port);
    else
        close(fd);
    return 0;
}
