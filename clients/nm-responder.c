/*
 * nm-responder: a host made of one netmap port.  It answers ARP requests
 * for its IPv4 address and ICMP echo requests sent to it, so that `ping`
 * from the other side of the port (a TAP interface, say) gets replies.
 *
 * Each round waits for RX slots (poll, select or the RXSYNC busy loop),
 * walks every bound RX ring from head to tail, builds each reply in a slot
 * of a TX ring (the one with the RX ring's index if bound, else the first
 * with room), hands the RX slots back and pushes the TX rings with
 * NIOCTXSYNC.  Frames spread over several slots (NS_MOREFRAG) and
 * everything that is not a request for this host are counted as "other".
 * A reply that finds no TX slot even after a TXSYNC is dropped (counted).
 *
 *   ARP request   who-has IP  ->  ARP reply    IP is-at MAC
 *   ICMP echo     to IP       ->  ICMP echo reply, same id, sequence, data
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <sys/ioctl.h>

#include "nm_port.h"

#define ETH_HDR 14
#define ARP_LEN 28
#define ETH_MIN 60

struct responder {
    struct nm_port port;
    const char *spec;
    int mode;
    uint64_t count;          /* stop after this many replies, 0: never */
    double idle_s;           /* stop after this long without a request, 0: never */
    unsigned char mac[6];
    unsigned char ip[4];

    uint64_t arp, echo, other, dropped;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: nm-responder -i PORT -a IPV4 [-m MAC=02:4e:4d:00:00:01] [-n replies (0=forever)]\n"
            "                    [-w poll|select|ioctl] [-T idle_seconds=0] [-j]\n"
            "  answers ARP requests for IPV4 and ICMP echo requests to it on PORT\n"
            "  -j  also print a JSON summary line\n");
    exit(2);
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/* The internet checksum of len bytes (RFC 1071), ready to store. */
static uint16_t inet_csum(const unsigned char *p, size_t len)
{
    uint32_t sum = 0;
    size_t i;

    for (i = 0; i + 1 < len; i += 2)
        sum += get16(p + i);
    if (len & 1)
        sum += (uint32_t)p[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/*
 * The reply to frame f (len bytes) written to out (room bytes); returns its
 * length, or 0 if f asks this host nothing.  Counts the kind of request.
 */
static size_t reply(struct responder *r, const unsigned char *f, size_t len, unsigned char *out, size_t room)
{
    uint16_t type;

    if (len < ETH_HDR)
        return 0;
    type = get16(f + 12);
    if (type == 0x0806 && len >= ETH_HDR + ARP_LEN) {
        const unsigned char *a = f + ETH_HDR;
        /* Ethernet, IPv4, 6-byte and 4-byte addresses, a request for our address */
        if (get16(a) != 1 || get16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4 || get16(a + 6) != 1 ||
            memcmp(a + 24, r->ip, 4) != 0 || room < ETH_MIN)
            return 0;
        memset(out, 0, ETH_MIN);
        memcpy(out, a + 8, 6);                 /* to the asker's hardware address */
        memcpy(out + 6, r->mac, 6);
        put16(out + 12, 0x0806);
        unsigned char *b = out + ETH_HDR;
        memcpy(b, a, 6);                       /* htype, ptype, hlen, plen */
        put16(b + 6, 2);                       /* reply */
        memcpy(b + 8, r->mac, 6);
        memcpy(b + 14, r->ip, 4);
        memcpy(b + 18, a + 8, 10);             /* the asker's addresses become the target */
        r->arp++;
        return ETH_MIN;
    }
    if (type == 0x0800 && len >= ETH_HDR + 20) {
        const unsigned char *ip = f + ETH_HDR;
        size_t ihl = (size_t)(ip[0] & 15) * 4, total = get16(ip + 2);

        if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl + 8 || ETH_HDR + total > len || ip[9] != 1 ||
            memcmp(ip + 16, r->ip, 4) != 0 || ip[ihl] != 8 || (get16(ip + 6) & 0x3fff) != 0 ||
            ETH_HDR + total > room)
            return 0;                          /* not an unfragmented echo request to us */
        memcpy(out, f + 6, 6);
        memcpy(out + 6, r->mac, 6);
        put16(out + 12, 0x0800);
        unsigned char *o = out + ETH_HDR;
        memcpy(o, ip, total);
        memcpy(o + 12, ip + 16, 4);            /* from us ... */
        memcpy(o + 16, ip + 12, 4);            /* ... to the asker */
        o[8] = 64;
        put16(o + 10, 0);
        put16(o + 10, inet_csum(o, ihl));
        o[ihl] = 0;                            /* echo reply */
        put16(o + ihl + 2, 0);
        put16(o + ihl + 2, inet_csum(o + ihl, total - ihl));
        r->echo++;
        size_t n = ETH_HDR + total;
        if (n < ETH_MIN) {
            memset(out + n, 0, ETH_MIN - n);
            n = ETH_MIN;
        }
        return n;
    }
    return 0;
}

/* A TX ring with a free slot, trying ring `prefer` first; NULL if none. */
static struct netmap_ring *tx_room(struct nm_port *p, int prefer)
{
    int i;

    if (prefer >= p->first_tx_ring && prefer <= p->last_tx_ring && !nm_ring_empty(nmp_txring(p, prefer)))
        return nmp_txring(p, prefer);
    for (i = p->first_tx_ring; i <= p->last_tx_ring; i++)
        if (!nm_ring_empty(nmp_txring(p, i)))
            return nmp_txring(p, i);
    return NULL;
}

/* Answer what RX ring `ri` holds; returns how many replies were queued. */
static unsigned serve_ring(struct responder *r, int ri)
{
    struct nm_port *p = &r->port;
    struct netmap_ring *rx = nmp_rxring(p, ri);
    unsigned queued = 0;
    uint32_t i = rx->head;
    int in_chain = 0;

    for (; i != rx->tail; i = nm_ring_next(rx, i)) {
        struct netmap_slot *s = &rx->slot[i];
        int chained = in_chain || (s->flags & NS_MOREFRAG);

        in_chain = (s->flags & NS_MOREFRAG) != 0;
        if (chained) {
            if (!in_chain)
                r->other++;                    /* the last slot of a long frame */
            continue;
        }
        struct netmap_ring *tx = tx_room(p, ri);
        if (tx == NULL) {
            ioctl(p->fd, NIOCTXSYNC, NULL);
            tx = tx_room(p, ri);
        }
        unsigned char scratch[NMP_FRAME_MAX];
        struct netmap_slot *t = tx ? &tx->slot[tx->head] : NULL;
        unsigned char *out = t ? (unsigned char *)NETMAP_BUF(tx, t->buf_idx) : scratch;
        size_t n = reply(r, (unsigned char *)NETMAP_BUF(rx, s->buf_idx), s->len, out,
                         t ? p->buf_size : sizeof(scratch));
        if (n == 0) {
            r->other++;
        } else if (t == NULL) {
            r->dropped++;
        } else {
            t->len = (uint16_t)n;
            t->flags = 0;
            tx->head = tx->cur = nm_ring_next(tx, tx->head);
            queued++;
        }
    }
    rx->head = rx->cur = i;
    return queued;
}

static int run(struct responder *r)
{
    struct nm_port *p = &r->port;
    volatile sig_atomic_t *stop = nmp_stop_flag();
    uint64_t idle_ns = (uint64_t)(r->idle_s * 1e9), idle_since = nmp_now_ns();

    while (!*stop && !(r->count && r->arp + r->echo >= r->count)) {
        uint64_t before = r->arp + r->echo + r->other;
        unsigned queued = 0;
        int i;

        if (nmp_wait(p, POLLIN, 200, r->mode) < 0 && errno != EINTR) {
            fprintf(stderr, "nm-responder: wait (%s): %s\n", nmp_wait_mode_name(r->mode), strerror(errno));
            return -1;
        }
        for (i = p->first_rx_ring; i <= p->last_rx_ring; i++)
            queued += serve_ring(r, i);
        if (queued && ioctl(p->fd, NIOCTXSYNC, NULL) < 0) {
            fprintf(stderr, "nm-responder: NIOCTXSYNC: %s\n", strerror(errno));
            return -1;
        }
        uint64_t now = nmp_now_ns();
        if (r->arp + r->echo + r->other != before)
            idle_since = now;
        else if (idle_ns && now - idle_since >= idle_ns)
            break;
    }
    nmp_drain_tx(p, 2000, r->mode);
    return 0;
}

int main(int argc, char **argv)
{
    static const unsigned char default_mac[6] = {0x02, 0x4e, 0x4d, 0x00, 0x00, 0x01};
    struct responder r;
    const char *addr = NULL;
    int json = 0, opt, status;
    char mac_text[18];

    memset(&r, 0, sizeof(r));
    r.port.fd = -1;
    memcpy(r.mac, default_mac, 6);
    while ((opt = nmp_loop_getopt(argc, argv, "i:a:m:n:w:T:jh", &r.spec, &r.count, &r.mode, &r.idle_s)) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'm': if (nmp_parse_mac(optarg, r.mac) < 0) usage(); break;
        case 'j': json = 1; break;
        default: usage();
        }
    }
    if (r.spec == NULL || addr == NULL || inet_pton(AF_INET, addr, r.ip) != 1 || optind != argc ||
        r.idle_s < 0)
        usage();

    nmp_catch_stop_signals();
    if (nmp_open(&r.port, r.spec, 0) < 0) {
        fprintf(stderr, "nm-responder: cannot open %s on %s: %s\n", r.spec, nm_device_path(), strerror(errno));
        return 1;
    }
    if (r.port.last_rx_ring < r.port.first_rx_ring || r.port.last_tx_ring < r.port.first_tx_ring) {
        fprintf(stderr, "nm-responder: %s needs RX and TX rings\n", r.spec);
        nmp_close(&r.port);
        return 1;
    }
    snprintf(mac_text, sizeof(mac_text), "%02x:%02x:%02x:%02x:%02x:%02x", r.mac[0], r.mac[1], r.mac[2],
             r.mac[3], r.mac[4], r.mac[5]);
    fprintf(stderr, "nm-responder: %s is %s at %s, wait %s\n", r.spec, addr, mac_text,
            nmp_wait_mode_name(r.mode));
    /* the line above is the sign that the port is bound: let a script see it now */
    fflush(stderr);

    status = run(&r) < 0 ? 1 : 0;
    printf("answered %" PRIu64 " arp %" PRIu64 " echo; other %" PRIu64 " dropped %" PRIu64 "\n",
           r.arp, r.echo, r.other, r.dropped);
    if (json) {
        printf("{\"tool\":\"nm-responder\",\"port\":");
        nmp_json_str(stdout, r.spec);
        printf(",\"arp\":%" PRIu64 ",\"echo\":%" PRIu64 ",\"other\":%" PRIu64 ",\"dropped\":%" PRIu64
               ",\"ok\":%s}\n", r.arp, r.echo, r.other, r.dropped, status == 0 ? "true" : "false");
    }
    fflush(stdout);
    nmp_close(&r.port);
    return status;
}
