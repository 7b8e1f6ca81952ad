/*
 * packet-floor: the plain C AF_PACKET programs the generic adapter is
 * measured against (bench/generic.py).
 *
 *  -t  send: the same test frames nm-send builds (nm_port.h's format, each
 *      filled before it is sent), -b frames per batch laid out as a netmap
 *      ring's buffers (2048 bytes apart), one sendmmsg per batch on a
 *      PACKET_QDISC_BYPASS socket: what nmfuse's txsync does, without
 *      netmap and the daemon in between.
 *  -r  receive: a TPACKET_V3 ring like each of nmfuse's (blocks of 256
 *      KiB, 2048-byte tp_frame_size, 1 ms block timeout; 16 blocks where
 *      nmfuse has 64, nmfuse/host/packet.py BLOCK_NR: the count only
 *      bounds how much may wait: nmfuse with 16 measured the same as
 *      with 64), polled, each frame copied out once (as into
 *      a netmap buffer) and counted, until -n frames or an idle second
 *      after the first.
 *
 * Prints frames per second; with -j a JSON line too.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>

#include "nm_port.h"

#define BUF 2048
#define BLOCK (1u << 18)
#define NBLOCKS 16

static void usage(void)
{
    fprintf(stderr, "usage: packet-floor -t|-r -i IFNAME [-s size=60] [-n count=1000000] [-b batch=512] [-j]\n");
    exit(2);
}

static int sock(const char *ifname, int proto)
{
    struct sockaddr_ll sll;
    int fd = socket(AF_PACKET, SOCK_RAW, 0);

    if (fd < 0) {
        perror("socket");
        exit(1);
    }
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(proto);
    sll.sll_ifindex = (int)if_nametoindex(ifname);
    if (sll.sll_ifindex == 0) {
        perror(ifname);
        exit(1);
    }
    if (proto == 0) {
        int one = 1, sndbuf = 8 << 20;
        setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
    } else {
        int v = TPACKET_V3;
        struct tpacket_req3 req = { .tp_block_size = BLOCK, .tp_block_nr = NBLOCKS, .tp_frame_size = 2048,
                                    .tp_frame_nr = BLOCK / 2048 * NBLOCKS, .tp_retire_blk_tov = 1 };
        if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) < 0 ||
            setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0) {
            perror("TPACKET_V3");
            exit(1);
        }
    }
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        perror("bind");
        exit(1);
    }
    return fd;
}

static double send_frames(const char *ifname, size_t size, uint64_t count, unsigned batch, uint64_t *sent)
{
    static const unsigned char dst[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src[6] = {2, 0, 0, 0, 0, 1};
    int fd = sock(ifname, 0);
    unsigned char *bufs = calloc(batch, BUF);
    struct mmsghdr *msgs = calloc(batch, sizeof(*msgs));
    struct iovec *iov = calloc(batch, sizeof(*iov));
    uint64_t seq = 0, t0 = nmp_now_ns();

    for (unsigned i = 0; i < batch; i++) {
        iov[i].iov_base = bufs + (size_t)i * BUF;
        iov[i].iov_len = size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (seq < count) {
        unsigned n = count - seq < batch ? (unsigned)(count - seq) : batch, done = 0;
        for (unsigned i = 0; i < n; i++)
            nmp_frame_fill(iov[i].iov_base, size, dst, src, NMP_FRAME_ETHERTYPE, 1, seq + i);
        while (done < n) {
            int r = sendmmsg(fd, msgs + done, n - done, 0);
            if (r < 0) {
                if (errno == EINTR || errno == ENOBUFS)
                    continue;
                perror("sendmmsg");
                exit(1);
            }
            done += (unsigned)r;
        }
        seq += n;
    }
    *sent = seq;
    return (nmp_now_ns() - t0) / 1e9;
}

static double recv_frames(const char *ifname, uint64_t count, uint64_t *got)
{
    int fd = sock(ifname, ETH_P_ALL);
    char *map = mmap(NULL, (size_t)BLOCK * NBLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    static char out[65536];
    uint64_t n = 0, t0 = 0, tlast = 0;
    unsigned b = 0;

    if (map == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    while (n < count) {
        struct tpacket_block_desc *d = (void *)(map + (size_t)b * BLOCK);
        if (!(__atomic_load_n(&d->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            struct pollfd p = { .fd = fd, .events = POLLIN };
            if (poll(&p, 1, 1000) == 0 && n > 0)
                break;      /* idle for a second: the sender is done */
            continue;
        }
        struct tpacket3_hdr *h = (void *)((char *)d + d->hdr.bh1.offset_to_first_pkt);
        for (unsigned i = 0; i < d->hdr.bh1.num_pkts; i++) {
            memcpy(out, (char *)h + h->tp_mac, h->tp_snaplen);
            h = (void *)((char *)h + h->tp_next_offset);
        }
        if (n == 0)
            t0 = nmp_now_ns();
        n += d->hdr.bh1.num_pkts;
        tlast = nmp_now_ns();
        __atomic_store_n(&d->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        b = (b + 1) % NBLOCKS;
    }
    *got = n;
    return (tlast - t0) / 1e9;
}

int main(int argc, char **argv)
{
    const char *ifname = NULL;
    size_t size = 60;
    uint64_t count = 1000000, n = 0;
    unsigned batch = 512;
    int mode = 0, json = 0, c;
    double secs;

    while ((c = getopt(argc, argv, "tri:s:n:b:j")) != -1) {
        switch (c) {
        case 't': case 'r': mode = c; break;
        case 'i': ifname = optarg; break;
        case 's': size = strtoul(optarg, NULL, 0); break;
        case 'n': count = strtoull(optarg, NULL, 0); break;
        case 'b': batch = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'j': json = 1; break;
        default: usage();
        }
    }
    if (!ifname || !mode || size < NMP_FRAME_HDR || size > BUF || batch == 0)
        usage();
    secs = mode == 't' ? send_frames(ifname, size, count, batch, &n) : recv_frames(ifname, count, &n);
    double pps = secs > 0 ? n / secs : 0;
    printf("%s %" PRIu64 " frames of %zu bytes on %s in %.3f s: %.0f pps\n",
           mode == 't' ? "sent" : "received", n, size, ifname, secs, pps);
    if (json)
        printf("{\"tool\":\"packet-floor\",\"mode\":\"%s\",\"frames\":%" PRIu64 ",\"seconds\":%.6f,\"pps\":%.1f}\n",
               mode == 't' ? "tx" : "rx", n, secs, pps);
    return 0;
}
