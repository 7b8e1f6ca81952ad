/*
 * nm-churn: a netmap client that spends its life in one kind of call, so
 * that a SIGKILL at any moment lands in the middle of that call.  The kill
 * campaign (tests/integration/test_kill_campaign.py) kills it hundreds of
 * times and then checks that every pool is back to its starting count.
 *
 *   nm-churn -i NAME -m MODE [-x EXTRA] [-n ROUNDS]
 *
 * NAME is a pipe name: the client registers both ends, NAME{1 and NAME}1,
 * with EXTRA extra buffers (default 4) on the master.  MODE:
 *
 *   register  open, register both ends, close; again (no mapping)
 *   mmap      open, register, map, touch the rings, unmap, close; again
 *   sync      register and map once, then forever: fill TX slots (one
 *             slot's buffer swapped with an extra buffer, NS_BUF_CHANGED),
 *             TXSYNC on the master, RXSYNC, release, RXSYNC on the slave
 *   poll      register and map once, then forever: poll() on the slave for
 *             frames that come only every other round (half the polls
 *             wait out their timeout), TXSYNC from the master between them
 *
 * It prints "ready" once the first round has run (the campaign kills only
 * after that), and exits 0 after ROUNDS rounds (default: never) if every
 * round succeeded: a short run of it is the "working client" check.
 * Exit status 1 on the first failed call, with the call and errno.
 */
#include <getopt.h>

#include "nm_port.h"

enum mode { M_REGISTER, M_MMAP, M_SYNC, M_POLL };

struct churn {
    char master[NETMAP_REQ_IFNAMSIZ + 8], slave[NETMAP_REQ_IFNAMSIZ + 8];
    unsigned extra;
    struct nm_port a, b;   /* master and slave end */
};

static int fail(const char *what)
{
    fprintf(stderr, "nm-churn: %s: %s\n", what, strerror(errno));
    return -1;
}

/* Open both ends (mapped or not); returns 0 or -1 with both closed. */
static int open_pair(struct churn *c, int map)
{
    if (nmp_parse(&c->a, c->master) < 0 || nmp_parse(&c->b, c->slave) < 0)
        return fail("parse");
    c->a.reg.nr_extra_bufs = c->extra;
    if (nmp_register(&c->a, 0) < 0)
        return fail("register master");
    if (nmp_register(&c->b, 0) < 0) {
        fail("register slave");
        goto fail;
    }
    if (map && (nmp_mmap(&c->a) < 0 || nmp_mmap(&c->b) < 0)) {
        fail("mmap");
        goto fail;
    }
    return 0;
fail:
    nmp_close(&c->b);
    nmp_close(&c->a);
    return -1;
}

static void close_pair(struct churn *c)
{
    nmp_close(&c->b);
    nmp_close(&c->a);
}

/* Put up to @n frames on the master's TX ring; one slot gets an extra buffer. */
static unsigned fill_tx(struct churn *c, unsigned n)
{
    struct netmap_ring *tx = nmp_txring(&c->a, 0);
    unsigned i, k = nm_ring_space(tx);
    uint32_t cur = tx->cur;

    if (k > n)
        k = n;
    for (i = 0; i < k; i++) {
        struct netmap_slot *s = &tx->slot[cur];
        if (i == 0) {
            uint32_t e = nmp_extra_pop(&c->a);
            if (e != 0) {
                nmp_extra_push(&c->a, s->buf_idx);
                s->buf_idx = e;
                s->flags |= NS_BUF_CHANGED;
            }
        }
        s->len = 60;
        memset(nmp_buf(&c->a, s->buf_idx), 0x5a, 60);
        cur = nm_ring_next(tx, cur);
    }
    tx->head = tx->cur = cur;
    return k;
}

/* Hand every received slot back. */
static void release_rx(struct churn *c)
{
    struct netmap_ring *rx = nmp_rxring(&c->b, 0);

    rx->head = rx->cur = rx->tail;
}

static int round_once(struct churn *c, enum mode m, unsigned long r)
{
    struct pollfd pfd;

    switch (m) {
    case M_REGISTER:
    case M_MMAP:
        if (open_pair(c, m == M_MMAP) < 0)
            return -1;
        if (m == M_MMAP)
            fill_tx(c, 4);  /* touch the mapping */
        close_pair(c);
        return 0;
    case M_SYNC:
        fill_tx(c, 16);
        if (ioctl(c->a.fd, NIOCTXSYNC, NULL) < 0)
            return fail("TXSYNC");
        if (ioctl(c->b.fd, NIOCRXSYNC, NULL) < 0)
            return fail("RXSYNC");
        release_rx(c);
        if (ioctl(c->b.fd, NIOCRXSYNC, NULL) < 0)
            return fail("RXSYNC");
        return 0;
    case M_POLL:
        if (r % 2 == 0) {
            fill_tx(c, 8);
            if (ioctl(c->a.fd, NIOCTXSYNC, NULL) < 0)
                return fail("TXSYNC");
        }
        pfd.fd = c->b.fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 5) < 0)
            return fail("poll");
        if (pfd.revents & (POLLERR | POLLNVAL)) {
            errno = EIO;
            return fail("poll revents");
        }
        release_rx(c);
        if (ioctl(c->b.fd, NIOCRXSYNC, NULL) < 0)
            return fail("RXSYNC");
        return 0;
    }
    errno = EINVAL;
    return -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: nm-churn -i NAME -m register|mmap|sync|poll [-x EXTRA] [-n ROUNDS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct churn c;
    const char *name = NULL;
    int m = -1, opt;
    unsigned long rounds = 0, r;

    memset(&c, 0, sizeof(c));
    c.extra = 4;
    c.a.fd = c.b.fd = -1;
    while ((opt = getopt(argc, argv, "i:m:x:n:")) != -1) {
        switch (opt) {
        case 'i':
            name = optarg;
            break;
        case 'm':
            m = !strcmp(optarg, "register") ? M_REGISTER : !strcmp(optarg, "mmap") ? M_MMAP
                : !strcmp(optarg, "sync") ? M_SYNC : !strcmp(optarg, "poll") ? M_POLL : -1;
            break;
        case 'x':
            c.extra = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 'n':
            rounds = strtoul(optarg, NULL, 0);
            break;
        default:
            usage();
        }
    }
    if (name == NULL || m < 0 || strlen(name) >= NETMAP_REQ_IFNAMSIZ - 3)
        usage();
    snprintf(c.master, sizeof(c.master), "%s{1", name);
    snprintf(c.slave, sizeof(c.slave), "%s}1", name);

    if ((m == M_SYNC || m == M_POLL) && open_pair(&c, 1) < 0)
        return 1;
    for (r = 0; rounds == 0 || r < rounds; r++) {
        if (round_once(&c, (enum mode)m, r) < 0)
            return 1;
        if (r == 0) {
            printf("ready\n");
            fflush(stdout);
        }
    }
    close_pair(&c);
    return 0;
}
