"""Issue: the TAP driver, end to end.  `nmfuse mount --tap` makes real
interfaces; the project's C clients use them through the mounted device:
a responder answers ping from a network namespace, the sender's frames are
counted by the kernel and captured frame for frame, each of four queues
carries its ring, and the daemon deletes its interfaces when it stops,
wherever they were moved."""

import itertools
import json
import os
import signal
import socket
import subprocess

import pytest
from pyroute2 import IPRoute, netns

from tests.conftest import needs
from tests.integration.conftest import Mount, client

ETH_P_TEST = 0x88B5
PACKET_OUTGOING = 4     # linux/if_packet.h
SO_RCVBUFFORCE = 33     # asm-generic/socket.h (root may pass rmem_max)
_names = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 10000}x{next(_names)}"


def _json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _rx_packets(name: str) -> int:
    with open(f"/sys/class/net/{name}/statistics/rx_packets") as f:
        return int(f.read())


def _link_exists(name: str, ns: str | None = None) -> bool:
    with IPRoute(netns=ns) if ns else IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


@pytest.fixture
def taps(tmp_path):
    """A mount with a 1-queue and a 4-queue TAP; the interfaces must be
    gone once the daemon stopped (SIGTERM)."""
    one, four = _name("nmi"), _name("nmq")
    m = Mount(str(tmp_path / "netmap"), "--buf-num", "32768", "--tap", one, "--tap", f"{four}:4")
    for name in (one, four):
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
    m.names = (one, four)
    m.moved_to = None
    yield m
    code = m.stop()
    assert code == 0, m.output()
    for name in (one, four):
        assert not _link_exists(name), f"{name} outlived the daemon"
    if m.moved_to:
        assert not _link_exists(one, m.moved_to), f"{one} outlived the daemon in its namespace"
        netns.remove(m.moved_to)


def _capture(name: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    s.bind((name, 0))
    s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # ENETDOWN from before the link was up
    s.settimeout(2)
    return s


def _frames(s: socket.socket, limit: int) -> list[bytes]:
    """What the interface received, until ``limit`` frames or a quiet second."""
    out = []
    s.settimeout(1)
    while len(out) < limit:
        try:
            data, addr = s.recvfrom(65536)
        except TimeoutError:
            break
        if addr[2] != PACKET_OUTGOING:
            out.append(data)
    return out


@needs("ip", "ping")
def test_ping_from_a_namespace_answered_by_the_responder(taps):
    name = taps.names[0]
    ns = taps.moved_to = _name("nmns")
    netns.create(ns)
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], net_ns_fd=ns)
    with IPRoute(netns=ns) as ipr:
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=idx, address="198.18.0.1", prefixlen=24)
    responder = subprocess.Popen([client("nm-responder"), "-i", f"netmap:{name}", "-a", "198.18.0.2", "-j"],
                                 env=taps.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert " is 198.18.0.2 at " in responder.stderr.readline(), "bound"
        with IPRoute(netns=ns) as ipr:
            link = ipr.link("get", index=idx)[0]
            assert link["flags"] & 1, "brought up by the binding, in its namespace"
        ping = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "100", "-i", "0.01", "-W", "2", "-q",
                               "198.18.0.2"], capture_output=True, text=True, timeout=60)
        assert " 100 received" in ping.stdout, ping.stdout + ping.stderr + taps.output()
        port = next(p for p in taps.status()["ports"] if p["name"] == name)
        assert port["type"] == "tap"
        rings = {(r["dir"], r["index"]): r for r in port["rings"]}
        assert rings[("rx", 0)]["packets"] >= 101 and rings[("tx", 0)]["packets"] >= 101
        assert rings[("tx", 0)]["drops"] == 0
    finally:
        responder.send_signal(signal.SIGTERM)
        out, err = responder.communicate(timeout=20)
    assert responder.returncode == 0, out + err
    summary = _json(out)
    assert summary["echo"] >= 100 and summary["arp"] >= 1 and summary["dropped"] == 0


def test_sender_frames_counted_by_the_kernel_and_captured_in_order(taps):
    name, n = taps.names[0], 20_000
    s = _capture(name)
    before, in_c = _rx_packets(name), taps.status()["answered_in_c"]
    send = taps.run(client("nm-send"), "-i", f"netmap:{name}", "-n", str(n), "-s", "128", "-r", "200000", "-j")
    assert _json(send.stdout)["pkts"] == n
    assert taps.status()["answered_in_c"] > in_c, "the TX syncs were served by the C sync of TAP rings"
    assert _rx_packets(name) - before == n, "the kernel counted every frame"
    got = _frames(s, n)
    assert len(got) == n
    assert [int.from_bytes(f[14:22], "big") for f in got] == list(range(n)), "every frame, in order"
    assert all(len(f) == 128 and int.from_bytes(f[22:24], "big") == 128 for f in got)


def test_large_frames_leave_as_morefrag_chains(taps):
    name = taps.names[0]
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], mtu=9000)
    s = _capture(name)
    taps.run(client("nm-send"), "-i", f"netmap:{name}", "-n", "500", "-s", "8000", "-j")
    got = _frames(s, 500)
    assert len(got) == 500 and all(len(f) == 8000 for f in got)
    assert [int.from_bytes(f[14:22], "big") for f in got] == list(range(500))


def test_each_of_four_queues_carries_its_ring(taps):
    name, n = taps.names[1], 2000
    s = _capture(name)
    before = _rx_packets(name)
    for ring in range(4):
        out = taps.run(client("nm-send"), "-i", f"netmap:{name}-{ring}", "-n", str(n), "-p", str(ring + 1), "-j")
        assert _json(out.stdout)["pkts"] == n
    assert _rx_packets(name) - before == 4 * n
    got = _frames(s, 4 * n)
    assert len(got) == 4 * n
    assert sorted(int.from_bytes(f[14:22], "big") for f in got) == sorted(list(range(n)) * 4)
