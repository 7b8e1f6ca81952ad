/*
 * tap-floor: the physical limit of the TAP path, for bench/tap.py.
 *
 * A plain program writes frames into a TAP fd as fast as it can: the same
 * test frames nm-send builds (nm_port.h's format, filled per frame), one
 * write() per frame, no netmap and no daemon in between.  It creates the
 * TAP (or attaches to a persistent one), brings it up, writes, and prints
 * frames per second; with -j a JSON line too.  The kernel's own counter of
 * frames received on the interface is printed beside it.
 *
 * By default every frame is built in the same buffer, which stays in the
 * cache.  With -B N it cycles through N buffers of -S bytes each, laid out
 * as a netmap ring's are (a sender fills a ring of N slots): that floor
 * includes the cache and TLB misses of netmap's memory layout.
 */
#include <getopt.h>
#include <inttypes.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/if_tun.h>

#include "nm_port.h"

static void usage(void)
{
    fprintf(stderr, "usage: tap-floor -i TAPNAME [-s size=60] [-n count=1000000] [-B buffers=1]\n"
                    "                 [-S buffer_size=2048] [-j]\n");
    exit(2);
}

static uint64_t rx_packets(const char *name)
{
    char path[128];
    unsigned long long v = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/rx_packets", name);
    f = fopen(path, "r");
    if (f != NULL) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const unsigned char dst[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
    static const unsigned char src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
    const char *name = NULL;
    size_t size = 60;
    uint64_t count = 1000000, seq, dropped = 0, before;
    int json = 0, opt, fd, sock;
    size_t nbufs = 1, bufsize = 2048;
    unsigned char *bufs;
    struct ifreq ifr;

    while ((opt = getopt(argc, argv, "i:s:n:B:S:jh")) != -1) {
        switch (opt) {
        case 'i': name = optarg; break;
        case 's': size = strtoul(optarg, NULL, 0); break;
        case 'n': count = strtoull(optarg, NULL, 0); break;
        case 'B': nbufs = strtoul(optarg, NULL, 0); break;
        case 'S': bufsize = strtoul(optarg, NULL, 0); break;
        case 'j': json = 1; break;
        default: usage();
        }
    }
    if (name == NULL || strlen(name) >= IFNAMSIZ || size < NMP_FRAME_HDR || size > NMP_FRAME_MAX || !count ||
        !nbufs || (nbufs > 1 && bufsize < size))
        usage();
    if (nbufs == 1)
        bufsize = size;
    bufs = malloc(nbufs * bufsize);
    if (bufs == NULL) {
        perror("tap-floor");
        return 1;
    }

    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        perror("tap-floor: /dev/net/tun");
        return 1;
    }
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    sock = socket(AF_INET, SOCK_DGRAM, 0);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || sock < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) {
        perror("tap-floor: attach");
        return 1;
    }
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) {
        perror("tap-floor: up");
        return 1;
    }
    usleep(100000);                 /* let the link settle, as a bound port does */

    before = rx_packets(name);
    uint64_t t0 = nmp_now_ns();
    for (seq = 0; seq < count; seq++) {
        unsigned char *frame = bufs + (seq % nbufs) * bufsize;

        nmp_frame_fill(frame, size, dst, src, NMP_FRAME_ETHERTYPE, 0, seq);
        if (write(fd, frame, size) != (ssize_t)size)
            dropped++;
    }
    double secs = (double)(nmp_now_ns() - t0) / 1e9;
    uint64_t counted = rx_packets(name) - before;
    double pps = (double)count / secs;

    printf("tap-floor: %" PRIu64 " frames of %zu bytes from %zu buffer(s) in %.3f s: %.0f pps; kernel counted %"
           PRIu64 ", failed writes %" PRIu64 "\n", count, size, nbufs, secs, pps, counted, dropped);
    if (json)
        printf("{\"tool\":\"tap-floor\",\"pkts\":%" PRIu64 ",\"size\":%zu,\"buffers\":%zu,\"seconds\":%.6f,"
               "\"pps\":%.1f,\"kernel_rx\":%" PRIu64 ",\"failed\":%" PRIu64 "}\n",
               count, size, nbufs, secs, pps, counted, dropped);
    free(bufs);
    close(sock);
    close(fd);
    return dropped ? 1 : 0;
}
