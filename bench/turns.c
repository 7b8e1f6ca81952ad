/*
 * turns: two processes taking turns through the fuse-floor server, as the
 * sender and the receiver of a pipe do when a batch fills the ring.
 *
 *     turns [-n 20000] [-c cpu] [-C cpu] [-b] FLOOR_FILE
 *
 * Opens FLOOR_FILE twice (the floor pairs the two files: see
 * bench/fuse-floor.c), then one process per file polls for POLLIN in a
 * loop: each poll hands the turn over, waits for it to come back and is
 * woken by the other's poll.  -c pins the first process, -C the second
 * (default: where the scheduler puts them).  -b: busy-waiting, as a netmap
 * program that never sleeps (nm-recv -w ioctl): polls that do not wait
 * (timeout 0) and sched_yield in a loop, so the turn costs its polls and
 * no wake-up.  One cycle is a turn of each;
 * after a warm-up it times n cycles in batches of 1000 and prints, over
 * the per-batch averages, the median, 10th and 90th percentile of the
 * cycle in microseconds as one JSON line.  A pipe moving one ring-sized
 * batch per cycle cannot go faster than batch / cycle through this server.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include "nm_port.h"
#include "timing.h"

#define BATCH 1000

static void usage(void)
{
    fprintf(stderr, "usage: turns [-n 20000] [-c cpu] [-C cpu] [-b] FLOOR_FILE\n");
    exit(2);
}

static void pin(int cpu)
{
    if (pin_to_cpu(cpu) < 0) {
        fprintf(stderr, "turns: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
        exit(1);
    }
}

static int busy;                /* -b */

/* Wait for the turn; 0, or -1 on an error from poll or the file. */
static int turn(int fd)
{
    struct pollfd pfd = {fd, POLLIN, 0};

    for (;;) {
        int rv = poll(&pfd, 1, busy ? 0 : 1000);

        if (rv < 0 && errno != EINTR)
            return -1;
        if (rv > 0)
            return pfd.revents & POLLIN ? 0 : -1;
        if (busy)
            sched_yield();
    }
}

int main(int argc, char **argv)
{
    long n = 20000, nbatches, b, i;
    int cpu_a = -1, cpu_b = -1, opt, fd_a, fd_b;
    double *us;
    pid_t other;

    while ((opt = getopt(argc, argv, "n:c:C:bh")) != -1) {
        switch (opt) {
        case 'n': n = strtol(optarg, NULL, 0); break;
        case 'c': cpu_a = atoi(optarg); break;
        case 'C': cpu_b = atoi(optarg); break;
        case 'b': busy = 1; break;
        default: usage();
        }
    }
    if (argc - optind != 1 || n < BATCH)
        usage();
    nbatches = n / BATCH;
    /* in this order: the floor pairs a file with the one opened next */
    fd_a = open(argv[optind], O_RDWR | O_CLOEXEC);
    fd_b = fd_a < 0 ? -1 : open(argv[optind], O_RDWR | O_CLOEXEC);
    if (fd_b < 0) {
        fprintf(stderr, "turns: %s: %s\n", argv[optind], strerror(errno));
        return 1;
    }
    other = fork();
    if (other < 0) {
        perror("turns: fork");
        return 1;
    }
    if (other == 0) {
        pin(cpu_b);
        while (turn(fd_b) == 0)
            ;
        _exit(1);
    }
    pin(cpu_a);
    us = calloc((size_t)nbatches, sizeof(double));
    for (i = 0; us != NULL && i < BATCH; i++)   /* warm-up */
        if (turn(fd_a) < 0)
            break;
    for (b = 0; us != NULL && i == BATCH && b < nbatches; b++) {
        uint64_t t0 = nmp_now_ns();

        for (i = 0; i < BATCH; i++)
            if (turn(fd_a) < 0)
                break;
        us[b] = (double)(nmp_now_ns() - t0) / 1e3 / (double)BATCH;
    }
    kill(other, SIGKILL);
    waitpid(other, NULL, 0);
    if (us == NULL || b < nbatches) {
        fprintf(stderr, "turns: %s: %s\n", argv[optind], us ? "the poll failed" : strerror(errno));
        return 1;
    }
    qsort(us, (size_t)nbatches, sizeof(double), cmp_double);
    printf("{\"cycles\":%ld,\"median_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,\"cpu_a\":%d,\"cpu_b\":%d,"
           "\"busy\":%s}\n",
           nbatches * BATCH, percentile(us, nbatches, 0.5), percentile(us, nbatches, 0.1),
           percentile(us, nbatches, 0.9),
           cpu_a, cpu_b, busy ? "true" : "false");
    free(us);
    return 0;
}
