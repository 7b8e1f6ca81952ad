/* What the timing tools of bench/ share: pinning, and percentiles of
 * sorted samples.  Header-only: each tool is one file built alone. */
#ifndef NMFUSE_BENCH_TIMING_H
#define NMFUSE_BENCH_TIMING_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>

/* Pin the calling thread to cpu (nothing for cpu < 0); 0, or -1 with errno. */
static inline int pin_to_cpu(int cpu)
{
    cpu_set_t set;

    if (cpu < 0)
        return 0;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0..1) of sorted v[0..n-1]. */
static inline double percentile(const double *v, long n, double q)
{
    return v[(long)((double)(n - 1) * q + 0.5)];
}

#endif
