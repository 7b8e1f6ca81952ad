"""TAP ports with real TAP interfaces, in process (the core of tests/netmap
with a fake caller memory, no FUSE): frames both ways checked against an
AF_PACKET socket and the kernel's counters, multi-queue, NS_MOREFRAG,
virtio-net headers, host rings and transparent mode, persistent TAPs,
link state in namespaces, wake-ups, and ping answered by a responder
that drives the rings.  A first group needs no privileges (the TX backlog
on a socketpair standing in for the TAP, and the --tap syntax)."""

import errno
import itertools
import os
import select
import socket
import time

import pytest
import trio
from nmfuse._helper import ffi
from pyroute2 import IPRoute, netns

from nmfuse.abi.netmap import Ioctl, RegFlag, RegMode, ReqType, RingFlag, SlotFlag
from nmfuse.drivers import tap
from nmfuse.host import tuntap
from nmfuse.host.fdwait import READ, WRITE
from tests.conftest import needs
from tests.drivers.conftest import ctrl, frame, mac, open_port
from tests.netmap.conftest import CALLER

ETH_P_TEST = 0x88B5
PACKET_OUTGOING = 4          # linux/if_packet.h
SOL_PACKET, PACKET_VNET_HDR = 263, 15   # linux/socket.h, linux/if_packet.h
VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4 = 1, 1  # linux/virtio_net.h
A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"

_names = itertools.count()


def unique(prefix="nmt") -> str:
    return f"{prefix}{os.getpid() % 10000}x{next(_names)}"


def quiet(name: str) -> None:
    """No IPv6 chatter from the kernel on ``name`` (router solicitations...)."""
    with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
        f.write("1")


@pytest.fixture
def made(h):
    """make(queues) -> (name, adapter): a TAP created as the daemon does."""
    def make(queues=1):
        name = unique()
        port = tap.create(h.core, name, queues)
        quiet(name)
        return name, port
    yield make
    for fh in list(h.dev.bindings):
        h.dev.release(fh)
    tap.delete_ports(h.core)


def packet_socket(name, proto=ETH_P_TEST, vnet=False):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    if vnet:
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((name, 0))
    s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # ENETDOWN if bound before the link came up
    s.settimeout(2)
    return s


def captured(s, count, size=65536):
    """``count`` frames the interface received (not the ones it sent)."""
    out = []
    while len(out) < count:
        data, addr = s.recvfrom(size)
        if addr[2] != PACKET_OUTGOING:
            out.append(data)
    return out


def counter(name, what) -> int:
    with open(f"/sys/class/net/{name}/statistics/{what}") as f:
        return int(f.read())


def link(name, netns_name=None):
    with IPRoute(netns=netns_name) if netns_name else IPRoute() as ipr:
        return ipr.link("get", ifname=name)[0]


def recv_all(p, ring, count, slots=False, timeout=2.0):
    """Sync RX ring ``ring`` until ``count`` frames (ETH_P_TEST ones), or
    slots (any) with ``slots``, arrived."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [x for x in p.recv(ring, slots=slots) if slots or x[12:14] == ETH_P_TEST.to_bytes(2, "big")]
        time.sleep(0.002)
    return got


def vnet_hdr(**fields) -> bytes:
    hdr = ffi.new("struct nmh_vnet_hdr *")
    for k, v in fields.items():
        setattr(hdr, k, v)
    return bytes(ffi.buffer(hdr))


def parse_vnet(data: bytes):
    hdr = ffi.new("struct nmh_vnet_hdr *")
    ffi.memmove(hdr, data[:ffi.sizeof(hdr[0])], ffi.sizeof(hdr[0]))
    return hdr


def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src, dst, proto, payload, ttl=64) -> bytes:
    hdr = bytearray(20)
    hdr[0], hdr[8], hdr[9] = 0x45, ttl, proto
    hdr[2:4] = (20 + len(payload)).to_bytes(2, "big")
    hdr[12:16], hdr[16:20] = socket.inet_aton(src), socket.inet_aton(dst)
    hdr[10:12] = inet_csum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr) + payload


def udp_frame(sport, dport=9, payload=b"x" * 18, dst=B, src=A, csum=b"\0\0") -> bytes:
    udp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") + csum
    return mac(dst) + mac(src) + b"\x08\x00" + ipv4("198.18.0.1", "198.18.0.2", 17, udp + payload)


def partial_csum(f: bytes) -> bytes:
    """``f`` (a UDP frame) with the pseudo-header sum in its checksum field,
    as a frame whose checksum is left to the device must carry."""
    ip = f[14:34]
    udp_len = int.from_bytes(ip[2:4], "big") - 20
    pseudo = ip[12:20] + b"\0\x11" + udp_len.to_bytes(2, "big")
    return f[:40] + (~inet_csum(pseudo) & 0xFFFF).to_bytes(2, "big") + f[42:]


def udp_csum_ok(f: bytes) -> bool:
    ip = f[14:34]
    udp = f[34:14 + int.from_bytes(ip[2:4], "big")]
    pseudo = ip[12:20] + b"\0\x11" + len(udp).to_bytes(2, "big")
    return inet_csum(pseudo + udp) == 0


# -- no privileges needed --------------------------------------------------


def test_tap_spec_syntax():
    assert tap.parse_spec("tap0") == ("tap0", 1)
    assert tap.parse_spec("tap0:4") == ("tap0", 4)
    for bad in ("tap-0", "x^", "a{1", "", "waytoolongname16", "t0:0", f"t0:{tap.MAX_QUEUES + 1}", "a b"):
        with pytest.raises(ValueError):
            tap.parse_spec(bad)


class FakeQueue:
    """A SOCK_SEQPACKET pair standing in for one TAP queue: frames keep
    their boundaries, and a small buffer makes writes fail with EAGAIN."""

    def __init__(self):
        self.ours, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ours.setblocking(False)
        self.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.kernel.setblocking(False)

    def received(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.kernel.recv(65536))
            except BlockingIOError:
                return out


@pytest.fixture
def fake(h, monkeypatch):
    """A TAP port over a FakeQueue: the TUN ioctls and netlink do nothing."""
    for fn in ("set_hdr", "set_carrier", "link_set"):
        monkeypatch.setattr(tap.tuntap, fn, lambda *a, **k: None)
    monkeypatch.setattr(tap.tuntap, "drain", lambda fd: 0)
    q = FakeQueue()
    port = tap.TapAdapter(h.core, "fake0", 1, False, fds=[q.ours.fileno()])
    h.core.named["fake0"] = port
    yield q, port
    for fh in list(h.dev.bindings):
        h.dev.release(fh)
    h.core.named.pop("fake0")


def test_full_queue_keeps_frames_pending_and_room_wakes_the_sender(h, fake):
    q, port = fake
    p = open_port(h, "fake0", slots=256)
    frames = [frame(B, A, i.to_bytes(4, "big"), size=1000) for i in range(200)]
    p.send(frames)
    kring = port.krings[0][0]
    sent_first = len(q.received())
    assert 0 < sent_first < 200, "the small socket buffer filled up"
    assert kring.hwcur != kring.rhead, "the rest is pending, not dropped"
    assert kring.stats_drops == 0
    assert port.waiter.armed(q.ours.fileno()) == WRITE
    assert h.dev.poll(CALLER, p.fh, select.POLLOUT, 77) & select.POLLOUT  # room for more already
    # a program waiting for every slot back is woken as the queue empties
    got = sent_first
    while True:
        got += len(q.received())
        if got == 200:
            break
        assert port.waiter.dispatch(timeout=1) == 1
    assert kring.hwcur == kring.rhead and got == 200
    assert kring.stats_packets == 200 and kring.stats_drops == 0
    assert port.waiter.armed(q.ours.fileno()) == 0, "disarmed once nothing is pending"
    h.sync(p.fh, Ioctl.NIOCTXSYNC)
    assert p.tx().tail == (p.tx().head - 1) % 256


def test_pending_frames_wake_a_tx_poller(h, fake):
    q, port = fake
    p = open_port(h, "fake0", slots=64)
    while True:   # the queue is full before anything is sent
        try:
            q.ours.send(frame(B, A, size=1500))
        except BlockingIOError:
            break
    p.send([frame(B, A, size=1500)] * 63, sync=False)
    assert h.dev.poll(CALLER, p.fh, select.POLLOUT, 5) == 0, "ring full: nothing sent is reclaimed yet"
    assert 5 not in h.woken
    while len(q.received()) or port.waiter.dispatch(timeout=0.5):
        pass
    assert 5 in h.woken
    assert h.dev.poll(CALLER, p.fh, select.POLLOUT, 5) & select.POLLOUT


def test_rx_from_fake_queue_chains_long_frames(h, fake):
    q, port = fake
    p = open_port(h, "fake0", slots=8)
    big = bytes(range(256)) * 20   # 5120 bytes: 3 buffers of 2048
    q.kernel.send(big)
    slots = p.recv(0, slots=True)
    assert [len(d) for d, _ in slots] == [2048, 2048, 1024]
    assert [bool(f & SlotFlag.MOREFRAG) for _, f in slots] == [True, True, False]
    assert b"".join(d for d, _ in slots) == big


def test_long_frame_waits_for_room_whole(h, fake):
    q, port = fake
    p = open_port(h, "fake0", slots=4)   # 3 usable slots
    q.kernel.send(frame(B, A, b"small"))
    assert h.sync(p.fh, Ioctl.NIOCRXSYNC) == 0
    rx = p.rx()
    assert rx.tail == 1                   # the program keeps this slot
    big = bytes(5000)
    q.kernel.send(big)
    q.kernel.send(frame(B, A, b"after"))
    h.sync(p.fh, Ioctl.NIOCRXSYNC)
    assert rx.tail == 1, "3 slots needed, 2 free: the frame waits"
    rx.cur = 1                            # seen, not released
    assert h.dev.poll(CALLER, p.fh, select.POLLIN, 9) == 0
    assert port.waiter.armed(q.ours.fileno()) == 0, "no wake-up can help before a release"
    rx.head = rx.cur = 1
    h.sync(p.fh, Ioctl.NIOCRXSYNC)
    assert (rx.head, rx.tail) == (1, 0), "delivered whole after the release; the next waits"
    assert [rx.slot[k].len for k in (1, 2, 3)] == [2048, 2048, 904]


# -- real TAP interfaces ------------------------------------------------------


@pytest.mark.needs_root
@needs("root", "tun")
class TestTap:
    def test_created_interface_lives_with_the_daemon(self, h, made):
        name, port = made()
        info = tuntap.probe(name)
        assert info.tap and not info.persistent
        l0 = link(name)
        assert l0["flags"] & 1 == 0, "created down"
        assert l0.get_attr("IFLA_MTU") == h.mem.buf_size - 14
        assert l0.get_attr("IFLA_CARRIER") == 0
        p = open_port(h, name)
        l1 = link(name)
        assert l1["flags"] & 1 and l1.get_attr("IFLA_CARRIER") == 1, "up, with carrier, once bound"
        p.close()
        assert link(name).get_attr("IFLA_CARRIER") == 0, "no program: no carrier"
        tap.delete_ports(h.core)
        assert tuntap.probe(name) is None

    def test_geometry_reported_and_slots_chosen_at_first_open(self, h, made):
        name, port = made(queues=2)
        err, info, _ = ctrl(h, ReqType.PORT_INFO_GET, name)
        assert err == 0
        assert (info.nr_tx_rings, info.nr_rx_rings, info.nr_host_tx_rings, info.nr_host_rx_rings) == (2, 2, 1, 1)
        assert (info.nr_tx_slots, info.nr_rx_slots) == (tap.DEFAULT_SLOTS, tap.DEFAULT_SLOTS)
        p = open_port(h, name, nr_tx_slots=512, nr_rx_slots=256, nr_tx_rings=7)
        assert (p.reg.nr_tx_slots, p.reg.nr_rx_slots, p.reg.nr_tx_rings) == (512, 256, 2)
        q = open_port(h, name, nr_tx_slots=64)
        assert q.reg.nr_tx_slots == 512, "a bound port keeps its geometry"

    def test_tx_frames_reach_the_kernel_counted(self, h, made):
        name, port = made()
        s = packet_socket(name)
        p = open_port(h, name, slots=256)
        before = counter(name, "rx_packets")
        frames = [frame(B, A, i.to_bytes(4, "big"), size=60 + i) for i in range(200)]
        for k in range(0, 200, 50):
            p.send(frames[k:k + 50])
        assert captured(s, 200) == frames
        kring = port.krings[0][0]
        assert (kring.stats_packets, kring.stats_bytes, kring.stats_drops) == (200, sum(map(len, frames)), 0)
        assert counter(name, "rx_packets") - before == 200
        assert p.tx().tail == (p.tx().head - 1) % 256, "every slot back at once"

    def test_frames_to_a_down_link_are_dropped_and_counted(self, h, made):
        name, port = made()
        p = open_port(h, name)
        with IPRoute() as ipr:
            ipr.link("set", index=link(name)["index"], state="down")
        p.send([frame(B, A)] * 3)
        assert port.krings[0][0].stats_drops == 3
        assert p.tx().tail == (p.tx().head - 1) % p.tx().num_slots

    def test_kernel_frames_arrive_on_rx_with_timestamps(self, h, made):
        name, port = made()
        s = packet_socket(name)
        p = open_port(h, name, slots=64)
        p.rx().flags |= RingFlag.TIMESTAMP
        frames = [frame(A, B, i.to_bytes(2, "big"), size=60 + 10 * i) for i in range(40)]
        for f in frames:
            s.send(f)
        t0 = time.time()
        got = recv_all(p, 0, 40)
        assert got == frames
        assert abs(p.rx().ts.tv_sec + p.rx().ts.tv_usec / 1e6 - t0) < 5
        kring = port.krings[1][0]
        assert kring.stats_packets >= 40 and kring.stats_bytes >= sum(map(len, frames))

    def test_poll_arms_only_while_waiting_and_wakes(self, h, made):
        name, port = made()
        s = packet_socket(name)
        p = open_port(h, name)
        fd = port.fds[0]
        assert port.waiter.armed(fd) == 0, "nobody waits: nothing armed"
        assert h.dev.poll(CALLER, p.fh, select.POLLIN, 31) == 0
        assert port.waiter.armed(fd) == READ
        s.send(frame(A, B))
        assert port.waiter.dispatch(timeout=2) == 1
        assert 31 in h.woken and port.waiter.armed(fd) == 0
        assert h.dev.poll(CALLER, p.fh, select.POLLIN, 31) & select.POLLIN

    def test_four_queues_each_ring_both_ways(self, h, made):
        name, port = made(queues=4)
        s = packet_socket(name)
        p = open_port(h, name, slots=512)
        assert (p.reg.nr_tx_rings, p.reg.nr_rx_rings) == (4, 4)
        sent = []
        for ring in range(4):
            frames = [frame(B, A, bytes([ring, i]), size=64) for i in range(25)]
            p.send(frames, ring=ring)
            sent += frames
            assert port.krings[0][ring].stats_packets == 25
        assert sorted(captured(s, 100)) == sorted(sent)
        # the kernel spreads flows over the queues by their hash
        u = packet_socket(name, proto=0x0800)
        flows = [udp_frame(1024 + k) for k in range(256)]
        for f in flows:
            u.send(f)
        per_ring: list[list[bytes]] = [[], [], [], []]
        deadline = time.monotonic() + 3
        while sum(map(len, per_ring)) < 256 and time.monotonic() < deadline:
            for ring in range(4):
                per_ring[ring] += [f for f in p.recv(ring) if f[12:14] == b"\x08\x00"]
        assert sorted(sum(per_ring, [])) == sorted(flows)
        assert all(per_ring), [len(r) for r in per_ring]

    def test_one_nic_binding_per_queue(self, h, made):
        name, port = made(queues=2)
        s = packet_socket(name)
        p0 = open_port(h, name, mode=RegMode.ONE_NIC, nr_ringid=0)
        p1 = open_port(h, name, mode=RegMode.ONE_NIC, nr_ringid=1)
        p1.send([frame(B, A, b"one")], ring=1)
        p0.send([frame(B, A, b"zero")], ring=0)
        assert sorted(captured(s, 2)) == sorted([frame(B, A, b"one"), frame(B, A, b"zero")])

    def test_morefrag_both_ways_with_a_large_mtu(self, h, made):
        name, port = made()
        s = packet_socket(name)
        p = open_port(h, name, slots=32)
        tuntap.link_set(port.fds[0], mtu=9000)
        big = frame(B, A, bytes(range(256)) * 19, size=5000)
        p.send([[big[:2048], big[2048:4096], big[4096:]]])
        assert captured(s, 1, 10000) == [big]
        # a chain the program has not finished waits at head
        p.send([big[:2048]], flags=SlotFlag.MOREFRAG)
        kring = port.krings[0][0]
        assert kring.hwcur == (kring.rhead - 1) % 32 and kring.stats_packets == 1
        p.send([[big[2048:4096], big[4096:]]])
        assert captured(s, 1, 10000) == [big] and kring.stats_packets == 2
        back = frame(A, B, bytes(range(256)) * 19, size=5000)
        s.send(back)
        slots = recv_all(p, 0, 3, slots=True)
        assert [len(d) for d, _ in slots] == [2048, 2048, 904]
        assert [bool(f & SlotFlag.MOREFRAG) for _, f in slots] == [True, True, False]
        assert b"".join(d for d, _ in slots) == back

    def test_vnet_header_passes_offload_metadata_both_ways(self, h, made):
        name, port = made()
        err, _, _ = ctrl(h, ReqType.PORT_HDR_SET, name, nr_hdr_len=10)
        assert err == 0
        assert open_port(h, name, expect=errno.EIO) == errno.EIO, "the program must accept the header"
        p = open_port(h, name, slots=64, nr_flags=RegFlag.ACCEPT_VNET_HDR)
        err, body, _ = ctrl(h, ReqType.PORT_HDR_GET, name)
        assert body.nr_hdr_len == 10
        s = packet_socket(name, proto=0x0800, vnet=True)
        # TX: a TCP segment of 3000 bytes to be cut in 1000-byte pieces
        tcp = (1000).to_bytes(2, "big") + (2000).to_bytes(2, "big") + bytes(8) + b"\x50\x18" + bytes(6)
        seg = mac(B) + mac(A) + b"\x08\x00" + ipv4("198.18.0.1", "198.18.0.2", 6, tcp + bytes(3000))
        hdr = vnet_hdr(flags=VNET_F_NEEDS_CSUM, gso_type=VNET_GSO_TCPV4, hdr_len=54, gso_size=1000,
                       csum_start=34, csum_offset=16)
        data = hdr + seg
        p.send([[data[:2048], data[2048:]]])
        got = captured(s, 1, 70000)[0]
        meta = parse_vnet(got)
        assert (meta.flags, meta.gso_type, meta.gso_size, meta.csum_start) == (1, 1, 1000, 34)
        assert got[10:] == seg
        # RX: a frame whose checksum the kernel leaves to the program
        f = partial_csum(udp_frame(4000))
        s.send(vnet_hdr(flags=VNET_F_NEEDS_CSUM, csum_start=34, csum_offset=6) + f)
        slot = [d for d in recv_all(p, 0, 1, slots=True) if d[0][10 + 12:10 + 14] == b"\x08\x00"][0][0]
        meta = parse_vnet(slot)
        assert (meta.flags, meta.csum_start, meta.csum_offset) == (1, 34, 6)
        assert slot[10:] == f
        assert port.krings[1][0].stats_bytes >= len(f), "bytes count the frame, not the header"

    def test_without_header_the_kernel_finishes_frames(self, h, made):
        name, port = made()
        p = open_port(h, name)
        s = packet_socket(name, proto=0x0800, vnet=True)
        f = partial_csum(udp_frame(4001))
        s.send(vnet_hdr(flags=VNET_F_NEEDS_CSUM, csum_start=34, csum_offset=6) + f)
        got = [d for d in recv_all(p, 0, 1, slots=True) if d[0][12:14] == b"\x08\x00"][0][0]
        assert got[:34] == f[:34] and udp_csum_ok(got)

    def test_twelve_byte_header(self, h, made):
        name, port = made()
        assert ctrl(h, ReqType.PORT_HDR_SET, name, nr_hdr_len=12)[0] == 0
        s = packet_socket(name)
        p = open_port(h, name, nr_flags=RegFlag.ACCEPT_VNET_HDR)
        s.send(frame(A, B, b"twelve"))
        slot = [d for d, _ in recv_all(p, 0, 1, slots=True) if d[12 + 12:12 + 14] == b"\x88\xb5"][0]
        assert slot[12:] == frame(A, B, b"twelve")
        p.send([bytes(12) + frame(B, A, b"out")])
        assert captured(s, 1) == [frame(B, A, b"out")]

    def test_host_rings_take_the_stack(self, h, made):
        name, port = made()
        s = packet_socket(name)
        nic = open_port(h, name, slots=32)
        nic.send([frame(B, A, b"hw first")])
        assert captured(s, 1) == [frame(B, A, b"hw first")]
        host = open_port(h, name, mode=RegMode.SW, slots=32)
        assert not host.nifp.ring_ofs[0] and host.nifp.ring_ofs[1], "only the host rings"
        assert port.stack_on_host()
        host_tx = h.ring(host.nifp, 1)
        host_rx = h.ring(host.nifp, 3)
        # host TX enters the stack; the hardware rings have no cable now
        nic.send([frame(B, A, b"to nowhere")])
        assert port.krings[0][0].stats_drops == 1
        slot = host_tx.slot[host_tx.cur]
        h.mem.buffer(slot.buf_idx)[:60] = frame(B, A, b"via host")
        slot.len = 60
        host_tx.head = host_tx.cur = (host_tx.cur + 1) % 32
        assert h.sync(host.fh, Ioctl.NIOCTXSYNC) == 0
        assert captured(s, 1) == [frame(B, A, b"via host")]
        # what the stack sends reaches the host RX ring, from every queue
        s.send(frame(A, B, b"stack"))
        deadline = time.monotonic() + 2
        while host_rx.tail == host_rx.head and time.monotonic() < deadline:
            h.sync(host.fh, Ioctl.NIOCRXSYNC)
        assert bytes(h.mem.buffer(host_rx.slot[host_rx.head].buf_idx)[:60]) == frame(A, B, b"stack")
        assert [f for f in nic.recv(0) if f[12:14] == b"\x88\xb5"] == []
        # the host binding leaves: the stack is the hardware rings' again
        host.close()
        assert not port.stack_on_host()
        nic.send([frame(B, A, b"hw again")])
        assert captured(s, 1) == [frame(B, A, b"hw again")]

    def test_requested_host_rings_as_netmap_get_na(self, h, made):
        # netmap's ctrl-api-test: port_register_single_host_pair, port_register_hostall_many
        name, port = made(2)
        one = open_port(h, name, mode=RegMode.ONE_SW, nr_ringid=1, nr_host_tx_rings=2, nr_host_rx_rings=2)
        assert (one.reg.nr_host_tx_rings, one.reg.nr_host_rx_rings) == (2, 2)
        ofs = [one.nifp.ring_ofs[i] for i in range(8)]   # tx: hw0 hw1 host0 host1, rx: the same
        assert [bool(o) for o in ofs] == [False, False, False, True, False, False, False, True]
        one.close()
        many = open_port(h, name, mode=RegMode.SW, nr_host_tx_rings=5, nr_host_rx_rings=4)
        assert (many.reg.nr_host_tx_rings, many.reg.nr_host_rx_rings) == (5, 4)
        s = packet_socket(name)
        for j in range(5):  # every host TX ring reaches the stack
            ring = h.ring(many.nifp, 2 + j)
            slot = ring.slot[ring.cur]
            h.mem.buffer(slot.buf_idx)[:60] = frame(B, A, b"host %d" % j)
            slot.len = 60
            ring.head = ring.cur = (ring.cur + 1) % ring.num_slots
        assert h.sync(many.fh, Ioctl.NIOCTXSYNC) == 0
        assert sorted(captured(s, 5)) == sorted(frame(B, A, b"host %d" % j) for j in range(5))
        # the stack's frames arrive on the host RX ring that owns their queue
        s.send(frame(A, B, b"up"))
        deadline = time.monotonic() + 2
        got = []
        while not got and time.monotonic() < deadline:
            h.sync(many.fh, Ioctl.NIOCRXSYNC)
            for j in range(4):
                ring = h.ring(many.nifp, 7 + 2 + j)
                if ring.tail != ring.head:
                    got.append(bytes(h.mem.buffer(ring.slot[ring.head].buf_idx)[:60]))
        assert got == [frame(A, B, b"up")]

    def test_bridge_between_nic_and_host_never_loops(self, h, made):
        name, port = made()
        s = packet_socket(name)
        nic, host = open_port(h, name, slots=32), open_port(h, name, mode=RegMode.SW, slots=32)
        before = counter(name, "rx_packets")
        s.send(frame(A, B, b"ping"))
        # one bridge round each way, as netmap's bridge does: host RX -> hw TX, hw RX -> host TX
        deadline = time.monotonic() + 1
        moved = []
        while time.monotonic() < deadline:
            h.sync(host.fh, Ioctl.NIOCRXSYNC)
            rx = h.ring(host.nifp, 3)
            while rx.head != rx.tail:
                sl = rx.slot[rx.head]
                moved.append(bytes(h.mem.buffer(sl.buf_idx)[:sl.len]))
                rx.head = rx.cur = (rx.head + 1) % 32
            if moved:
                break
        assert frame(A, B, b"ping") in moved
        nic.send(moved)
        assert nic.recv(0) == []
        time.sleep(0.05)
        assert counter(name, "rx_packets") == before, "nothing came back into the kernel"

    def test_transparent_mode_forwards_host_rx_down(self, h, made):
        name, port = made()
        s = packet_socket(name)
        p = open_port(h, name, mode=RegMode.NIC_SW, slots=32)
        host_rx, nic_tx = p.rx(1), p.tx(0)
        host_rx.flags |= RingFlag.FORWARD
        s.send(frame(A, B, b"fwd"))
        deadline = time.monotonic() + 2
        while host_rx.tail == host_rx.head and time.monotonic() < deadline:
            h.sync(p.fh, Ioctl.NIOCRXSYNC)
        k = host_rx.head
        buf = host_rx.slot[k].buf_idx
        while host_rx.head != host_rx.tail:
            host_rx.slot[host_rx.head].flags |= SlotFlag.FORWARD
            host_rx.head = host_rx.cur = (host_rx.head + 1) % 32
        old_head = nic_tx.head
        h.dev.poll(CALLER, p.fh, select.POLLIN, None)
        assert nic_tx.slot[old_head].buf_idx == buf, "the buffer moved to hardware TX"
        assert nic_tx.slot[old_head].flags & SlotFlag.BUF_CHANGED
        assert host_rx.slot[k].flags & SlotFlag.BUF_CHANGED and host_rx.slot[k].buf_idx != buf
        assert port.krings[0][0].stats_drops >= 1, "pushed by poll, out of a cable-less NIC"

    def test_transparent_mode_forwards_nic_rx_up(self, h, made):
        name, port = made()
        s = packet_socket(name)
        p = open_port(h, name, slots=32)
        rx = p.rx()
        rx.flags |= RingFlag.FORWARD
        f = frame(A, B, b"up")
        s.send(f)
        deadline = time.monotonic() + 2
        while rx.tail == rx.head and time.monotonic() < deadline:
            h.sync(p.fh, Ioctl.NIOCRXSYNC)
        while rx.head != rx.tail:
            rx.slot[rx.head].flags |= SlotFlag.FORWARD
            rx.head = rx.cur = (rx.head + 1) % 32
        h.sync(p.fh, Ioctl.NIOCRXSYNC)
        assert f in captured(s, 1), "released with NS_FORWARD: given to the stack"
        assert port.krings[0][1].stats_packets >= 1, "counted on the host TX ring"

    def test_persistent_tap_attached_while_bound(self, h):
        name = unique("nmp")
        fd = tuntap.open_queue(name, True)
        tuntap.set_persist(fd, True)
        os.close(fd)
        try:
            quiet(name)
            assert tuntap.probe(name).queues_attached == 0
            p = open_port(h, name, nr_tx_rings=3)
            assert (p.reg.nr_tx_rings, p.reg.nr_rx_rings) == (3, 3)
            assert tuntap.probe(name).queues_attached == 3
            assert link(name)["flags"] & 1, "brought up"
            s = packet_socket(name)
            p.send([frame(B, A, b"persistent")], ring=2)
            assert captured(s, 1) == [frame(B, A, b"persistent")]
            q = open_port(h, name, nr_tx_rings=1)
            assert q.reg.nr_tx_rings == 3, "a second binding shares the port"
            p.close()
            q.close()
            assert tuntap.probe(name).queues_attached == 0, "detached when the last binding leaves"
            assert tuntap.probe(name).persistent
            assert open_port(h, name).reg.nr_tx_rings == 1
        finally:
            for fh in list(h.dev.bindings):
                h.dev.release(fh)
            with IPRoute() as ipr:
                ipr.link("del", ifname=name)
        assert open_port(h, name, expect=errno.ENXIO) == errno.ENXIO, "gone: no such port"

    def test_names_that_are_no_free_tap(self, h):
        # lo is an interface (the generic driver's) but no TAP
        assert h.core.driver("tap").lookup("lo", None, False, None) is None
        assert open_port(h, unique("nope"), expect=errno.ENXIO) == errno.ENXIO
        name = unique("nmb")
        fd = tuntap.open_queue(name, False)   # a TAP another program holds
        try:
            assert open_port(h, name, expect=errno.EBUSY) == errno.EBUSY
        finally:
            os.close(fd)

    def test_header_switched_while_bound_in_another_namespace(self, h, made):
        name, port = made()
        ns = unique("nmns")
        netns.create(ns)
        try:
            with IPRoute() as ipr:
                ipr.link("set", index=link(name)["index"], net_ns_fd=ns)
            p = open_port(h, name, nr_flags=RegFlag.ACCEPT_VNET_HDR)
            index = link(name, ns)["index"]
            assert ctrl(h, ReqType.PORT_HDR_SET, name, nr_hdr_len=12)[0] == 0
            assert port.vnet and port.virt_hdr_len == 12
            assert tuntap.probe(name) is None, "re-attached where it lives, not re-created here"
            l1 = link(name, ns)
            assert l1["index"] == index and l1.get_attr("IFLA_CARRIER") == 1
            assert ctrl(h, ReqType.PORT_HDR_SET, name, nr_hdr_len=0)[0] == 0
            assert not port.vnet
            before = int(link(name, ns).get_attr("IFLA_STATS64")["rx_packets"])
            p.send([frame(B, A, b"after the switch")])
            assert port.krings[0][0].stats_packets == 1
            assert int(link(name, ns).get_attr("IFLA_STATS64")["rx_packets"]) == before + 1
            p.close()
            with IPRoute(netns=ns) as ipr:
                info = ipr.link("get", index=index)[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
                assert info.get_attr("IFLA_TUN_PERSIST") == 0, "the daemon's again, not persistent"
        finally:
            netns.remove(ns)

    def test_interface_deleted_under_a_bound_port(self, h, made):
        name, port = made()
        p = open_port(h, name)
        with IPRoute() as ipr:
            ipr.link("del", index=link(name)["index"])
        p.send([frame(B, A)], sync=False)
        h.sync(p.fh, Ioctl.NIOCTXSYNC)
        assert port.gone
        assert h.dev.poll(CALLER, p.fh, select.POLLIN | select.POLLOUT, 3) & select.POLLERR
        assert port.waiter.dispatch(timeout=0.2) <= 1, "no storm of wake-ups"
        p.close()

    def test_created_tap_followed_into_another_namespace(self, h, made):
        name, port = made()
        ns = unique("nmns")
        netns.create(ns)
        try:
            with IPRoute() as ipr:
                ipr.link("set", index=link(name)["index"], net_ns_fd=ns)
            assert tuntap.probe(name) is None
            p = open_port(h, name)
            assert link(name, ns)["flags"] & 1, "brought up where it lives"
            p.close()
            tap.delete_ports(h.core)
            with IPRoute(netns=ns) as ipr:
                assert not ipr.link_lookup(ifname=name), "deleted where it lives"
        finally:
            netns.remove(ns)


# -- ping, answered by a responder driving the rings ------------------------


def _respond(h, p, my_mac: bytes, my_ip: bytes) -> int:
    """Answer ARP requests and ICMP echo for my_ip on every frame waiting;
    returns how many replies were sent."""
    rx, tx = p.rx(), p.tx()
    replies = 0
    while rx.head != rx.tail:
        s = rx.slot[rx.head]
        f = bytes(h.mem.buffer(s.buf_idx)[:s.len])
        rx.head = rx.cur = (rx.head + 1) % rx.num_slots
        out = None
        if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01" and f[38:42] == my_ip:
            out = f[6:12] + my_mac + b"\x08\x06" + f[14:20] + b"\x00\x02" + my_mac + my_ip + f[22:32]
        elif f[12:14] == b"\x08\x00" and f[23] == 1 and f[30:34] == my_ip and f[34] == 8:
            ihl = (f[14] & 15) * 4
            icmp = bytearray(f[14 + ihl:])
            icmp[0], icmp[2:4] = 0, b"\0\0"
            icmp[2:4] = inet_csum(bytes(icmp)).to_bytes(2, "big")
            out = f[6:12] + my_mac + b"\x08\x00" + ipv4(socket.inet_ntoa(my_ip), socket.inet_ntoa(f[26:30]), 1,
                                                          bytes(icmp))
        if out is not None and tx.cur != tx.tail:
            t = tx.slot[tx.cur]
            h.mem.buffer(t.buf_idx)[:len(out)] = out
            t.len, t.flags = len(out), 0
            tx.head = tx.cur = (tx.cur + 1) % tx.num_slots
            replies += 1
    return replies


@pytest.mark.needs_root
@needs("root", "tun", "ping", "ip")
async def test_ping_answered_through_a_namespace(h, made):
    name, port = made()
    ns = unique("nmns")
    netns.create(ns)
    woken = trio.Event()
    events = {"woken": woken}

    def wake(kh):
        h.woken.append(kh)
        events["woken"].set()
    h.core.wake = wake
    try:
        with IPRoute() as ipr:
            ipr.link("set", index=link(name)["index"], net_ns_fd=ns)
        with IPRoute(netns=ns) as ipr:
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=idx, address="198.18.0.1", prefixlen=24)
            ipr.link("set", index=idx, state="up")
        p = open_port(h, name, slots=256)
        my_mac, my_ip = mac("02:00:00:00:00:99"), socket.inet_aton("198.18.0.2")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tap.run_waiters, h.core)

            async def responder():
                while True:
                    with h.core.lock:
                        ready = h.dev.poll(CALLER, p.fh, select.POLLIN, 1)
                        if ready & select.POLLIN:
                            if _respond(h, p, my_mac, my_ip):
                                h.sync(p.fh, Ioctl.NIOCTXSYNC)
                            continue
                    await events["woken"].wait()
                    events["woken"] = trio.Event()
            nursery.start_soon(responder)
            res = await trio.run_process(["ip", "netns", "exec", ns, "ping", "-c", "100", "-i", "0.01", "-W", "2",
                                          "-q", "198.18.0.2"], capture_stdout=True, check=False)
            nursery.cancel_scope.cancel()
        assert b"100 received" in res.stdout, res.stdout.decode()
        assert port.krings[1][0].stats_packets >= 101 and port.krings[0][0].stats_packets >= 101
    finally:
        netns.remove(ns)
