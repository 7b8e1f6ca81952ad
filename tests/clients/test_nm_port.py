"""clients/nm_port.h: the port-spec parser, the requests it sends, the test
frame format.  A small C program includes the header and stands in for the
device: it defines its own ioctl(), which records the request and answers it,
so no mount is needed."""

import errno
import os
import subprocess
from pathlib import Path

import pytest

from nmfuse.abi.netmap import LegacyRingId, RegFlag, RegMode

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
#include <stdarg.h>

#include "nm_port.h"

static struct nmreq last_legacy;
static struct nmreq_header last_hdr;
static struct nmreq_register last_reg;

/* The device: record the request, answer a register with fixed values. */
int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    void *arg;

    (void)fd;
    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (req == NIOCREGIF) {
        struct nmreq *r = arg;
        last_legacy = *r;
        r->nr_memsize = 4096;
        r->nr_arg2 = 3;
        r->nr_arg3 = r->nr_arg3 / 2;
        return 0;
    }
    if (req == NIOCCTRL) {
        struct nmreq_header *h = arg;
        last_hdr = *h;
        last_reg = *(struct nmreq_register *)(uintptr_t)h->nr_body;
        ((struct nmreq_register *)(uintptr_t)h->nr_body)->nr_mem_id = 2;
        return 0;
    }
    errno = ENOTTY;
    return -1;
}

int main(int argc, char **argv)
{
    struct nm_port p;
    int i;

    if (strcmp(argv[1], "parse") == 0) {
        for (i = 2; i < argc; i++) {
            if (nmp_parse(&p, argv[i]) < 0)
                printf("ERR %d\n", errno);
            else
                printf("OK %s %u %u %llu %u\n", p.name, p.reg.nr_mode, p.reg.nr_ringid,
                       (unsigned long long)p.reg.nr_flags, p.reg.nr_mem_id);
        }
        return 0;
    }
    if (strcmp(argv[1], "legacy") == 0 || strcmp(argv[1], "ctrl") == 0) {
        unsigned flags = (unsigned)strtoul(argv[3], NULL, 0);
        if (strcmp(argv[1], "legacy") == 0)
            flags |= NMP_LEGACY;
        if (nmp_parse(&p, argv[2]) < 0)
            return 1;
        p.reg.nr_extra_bufs = (uint32_t)strtoul(argv[4], NULL, 0);
        if (nmp_register(&p, flags) < 0) {
            printf("ERR %d\n", errno);
            return 0;
        }
        if (flags & NMP_LEGACY)
            printf("REQ %s %u %u %u %u %u\n", last_legacy.nr_name, last_legacy.nr_version,
                   last_legacy.nr_ringid, last_legacy.nr_flags, last_legacy.nr_arg2,
                   last_legacy.nr_arg3);
        else
            printf("REQ %s %u %u %u %u %llu %u %u\n", last_hdr.nr_name, last_hdr.nr_version,
                   last_hdr.nr_reqtype, last_reg.nr_mode, last_reg.nr_ringid,
                   (unsigned long long)last_reg.nr_flags, last_reg.nr_mem_id,
                   last_reg.nr_extra_bufs);
        printf("ANS %u %u %llu\n", p.reg.nr_mem_id, p.reg.nr_extra_bufs,
               (unsigned long long)p.reg.nr_memsize);
        nmp_close(&p);
        return 0;
    }
    if (strcmp(argv[1], "frame") == 0) {
        static unsigned char f[NMP_FRAME_MAX];
        const unsigned char d[6] = {1, 2, 3, 4, 5, 6}, s[6] = {7, 8, 9, 10, 11, 12};
        size_t len;

        for (len = NMP_FRAME_HDR; len <= 2100; len++) {
            nmp_frame_fill(f, len, d, s, NMP_FRAME_ETHERTYPE, 5, 1234 + len);
            if (nmp_get_be(f + 12, 2) != NMP_FRAME_ETHERTYPE || nmp_get_be(f + 14, 8) != 1234 + len ||
                nmp_get_be(f + 22, 2) != len || memcmp(f, d, 6) || memcmp(f + 6, s, 6) ||
                !nmp_frame_pattern_ok(f, len, 5, 1234 + len))
                return printf("bad frame of %zu bytes\n", len), 1;
            if (len > NMP_FRAME_HDR) {
                if (nmp_frame_pattern_ok(f, len, 6, 1234 + len) ||
                    nmp_frame_pattern_ok(f, len, 5, 1235 + len))
                    return printf("pattern of %zu bytes ignores seed or seq\n", len), 1;
                f[len - 1] ^= 0x40;
                if (nmp_frame_pattern_ok(f, len, 5, 1234 + len))
                    return printf("flipped bit unseen in %zu bytes\n", len), 1;
            }
        }
        printf("frames ok\n");
        return 0;
    }
    return 2;
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    d = tmp_path_factory.mktemp("nm_port")
    (d / "probe.c").write_text(PROBE)
    exe = d / "probe"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror",
                    f"-I{ROOT / 'nmfuse' / 'abi'}", f"-I{ROOT / 'clients'}",
                    "-o", str(exe), str(d / "probe.c")], check=True)

    def run(*args):
        env = {**os.environ, "NETMAP_DEVICE": "/dev/null"}
        out = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, check=True)
        return out.stdout.splitlines()

    return run


F = RegFlag
PARSED = [
    ("netmap:eth0", "eth0", RegMode.ALL_NIC, 0, 0, 0),
    ("eth0", "eth0", RegMode.ALL_NIC, 0, 0, 0),
    ("netmap:eth0-3", "eth0", RegMode.ONE_NIC, 3, 0, 0),
    ("eth0-4095", "eth0", RegMode.ONE_NIC, 4095, 0, 0),
    ("eth0*", "eth0", RegMode.NIC_SW, 0, 0, 0),
    ("eth0+", "eth0", RegMode.NIC_SW, 0, 0, 0),
    ("eth0^", "eth0", RegMode.SW, 0, 0, 0),
    ("eth0^2", "eth0", RegMode.ONE_SW, 2, 0, 0),
    ("x{3", "x{3", RegMode.ALL_NIC, 0, 0, 0),
    ("netmap:x}3", "x}3", RegMode.ALL_NIC, 0, 0, 0),
    ("vale0:a", "vale0:a", RegMode.ALL_NIC, 0, 0, 0),
    ("vale0:a{pn1/T", "vale0:a{pn1", RegMode.ALL_NIC, 0, F.TX_RINGS_ONLY, 0),
    ("netmap:eth0-1/R", "eth0", RegMode.ONE_NIC, 1, F.RX_RINGS_ONLY, 0),
    ("eth0/xT@2", "eth0", RegMode.ALL_NIC, 0, F.EXCLUSIVE | F.TX_RINGS_ONLY, 2),
    ("eth0/rtz", "eth0", RegMode.ALL_NIC, 0, F.MONITOR_RX | F.MONITOR_TX | F.ZCOPY_MON, 0),
    ("eth0@1", "eth0", RegMode.ALL_NIC, 0, 0, 1),
    ("eth0^1/R@7", "eth0", RegMode.ONE_SW, 1, F.RX_RINGS_ONLY, 7),
    ("a" * 63, "a" * 63, RegMode.ALL_NIC, 0, 0, 0),
]


def test_parse_accepts_libnetmap_specs(probe):
    lines = probe("parse", *(spec for spec, *_ in PARSED))
    for (spec, name, mode, ringid, flags, mem), line in zip(PARSED, lines, strict=True):
        assert line == f"OK {name} {int(mode)} {ringid} {int(flags)} {mem}", spec


REJECTED = ["", "netmap:", "eth0-", "eth0-x", "eth0-4096", "eth0^x", "eth0/Q", "eth0@",
            "eth0@0", "eth0@65536", "eth0@1x", "eth0-1-2", "eth0**", "-1", "eth0@1/T"]


def test_parse_rejects_bad_specs(probe):
    lines = probe("parse", *REJECTED, "a" * 64)
    assert lines == [f"ERR {errno.EINVAL}"] * len(REJECTED) + [f"ERR {errno.ENAMETOOLONG}"]


def test_register_sends_nmreq_register(probe):
    req, ans = probe("ctrl", "x}7-2/T@5", "0x8", "4")  # 0x8: NMP_NO_TX_POLL
    flags = int(F.TX_RINGS_ONLY | F.NO_TX_POLL)
    assert req == f"REQ x}}7 14 1 {int(RegMode.ONE_NIC)} 2 {flags} 5 4"
    assert ans == "ANS 2 4 0"


def test_register_null_port_defaults_to_memory_1(probe):
    req, _ = probe("ctrl", "foo", "0x4", "0")  # 0x4: NMP_NULL
    assert req == f"REQ foo 14 1 {int(RegMode.NULL)} 0 0 1 0"


def test_legacy_register_encodes_like_nm_open(probe):
    # numeric pipe suffix: PIPE_SLAVE + id in nr_ringid; the rest as NIOCREGIF expects
    req, ans = probe("legacy", "x}7/T@5", "0x8", "6")
    ringid = 7 | int(LegacyRingId.NO_TX_POLL)
    assert req == f"REQ x 14 {ringid} {int(RegMode.PIPE_SLAVE) | int(F.TX_RINGS_ONLY)} 5 6"
    assert ans == "ANS 3 3 4096"
    req, _ = probe("legacy", "eth0-2", "0", "0")
    assert req == f"REQ eth0 14 2 {int(RegMode.ONE_NIC)} 0 0"
    req, _ = probe("legacy", "p{ab", "0", "0")  # not a number: stays in the name
    assert req == f"REQ p{{ab 14 0 {int(RegMode.ALL_NIC)} 0 0"


def test_legacy_register_name_limit(probe):
    assert probe("legacy", "a" * 16, "0", "0") == [f"ERR {errno.ENAMETOOLONG}"]


def test_frames_round_trip_and_detect_changes(probe):
    assert probe("frame") == ["frames ok"]
