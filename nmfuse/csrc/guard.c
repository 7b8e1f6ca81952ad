/* External memory guard; see guard.h for the contracts. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

#include "guard.h"

struct nmh_guard {
    uintptr_t start, end, page;
    int used;                   /* published last, read by the handler */
};

static struct nmh_guard nmh_guards[NMH_GUARD_MAX];
static struct sigaction nmh_prev_sigbus;
static int nmh_guard_installed;
static uint64_t nmh_guard_replaced;

static void nmh_on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    uintptr_t a = (uintptr_t)si->si_addr;

    for (int i = 0; i < NMH_GUARD_MAX; i++) {
        struct nmh_guard *g = &nmh_guards[i];
        if (__atomic_load_n(&g->used, __ATOMIC_ACQUIRE) && a >= g->start && a < g->end) {
            void *page = (void *)(a & ~(g->page - 1));
            if (mmap(page, g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                     -1, 0) != MAP_FAILED) {
                __atomic_add_fetch(&nmh_guard_replaced, 1, __ATOMIC_RELAXED);
                return;     /* the access is retried on the new page */
            }
            break;
        }
    }
    if ((nmh_prev_sigbus.sa_flags & SA_SIGINFO) && nmh_prev_sigbus.sa_sigaction != NULL) {
        nmh_prev_sigbus.sa_sigaction(sig, si, ctx);
    } else if (nmh_prev_sigbus.sa_handler != SIG_DFL && nmh_prev_sigbus.sa_handler != SIG_IGN) {
        nmh_prev_sigbus.sa_handler(sig);
    } else {
        signal(SIGBUS, SIG_DFL);    /* the fault comes again and kills, as without us */
    }
}

int nmh_guard_install(void)
{
    struct sigaction sa;

    if (nmh_guard_installed)
        return 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = nmh_on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &nmh_prev_sigbus) < 0)
        return -errno;
    nmh_guard_installed = 1;
    return 0;
}

int nmh_guard_add(char *start, size_t len, size_t page)
{
    for (int i = 0; i < NMH_GUARD_MAX; i++) {
        struct nmh_guard *g = &nmh_guards[i];
        if (!g->used) {
            g->start = (uintptr_t)start;
            g->end = (uintptr_t)start + len;
            g->page = page;
            __atomic_store_n(&g->used, 1, __ATOMIC_RELEASE);
            return 0;
        }
    }
    return -1;
}

void nmh_guard_remove(char *start)
{
    for (int i = 0; i < NMH_GUARD_MAX; i++) {
        struct nmh_guard *g = &nmh_guards[i];
        if (g->used && g->start == (uintptr_t)start)
            __atomic_store_n(&g->used, 0, __ATOMIC_RELEASE);
    }
}

uint64_t nmh_guard_faults(void)
{
    return __atomic_load_n(&nmh_guard_replaced, __ATOMIC_RELAXED);
}
