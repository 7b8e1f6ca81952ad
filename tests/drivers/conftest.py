"""Helpers for the driver tests: the in-process device of tests/netmap
(real core, fake caller memory, no FUSE), ports as a client sees them, test
frames, and a fake NIC that stands in for any non-VALE port a switch can
take over (a TAP port, say)."""

import errno
from dataclasses import dataclass

import pytest

from nmfuse.abi.netmap import Ioctl, RegMode, ReqType, ffi
from nmfuse.drivers import all_drivers
from nmfuse.drivers.vale import Bwrap
from nmfuse.mem import MemoryAllocator, PoolConfig
from nmfuse.netmap.adapter import Adapter
from nmfuse.netmap.core import Core
from nmfuse.netmap.device import NetmapDevice
from nmfuse.netmap.kring import RX, TX
from tests.netmap.conftest import Harness
from tests.netmap.fakemem import FakeUserMemory

BCAST = "ff:ff:ff:ff:ff:ff"


def make_harness(**pools) -> Harness:
    """A Harness with its pool geometry changed by ``pools``."""
    h = Harness.__new__(Harness)
    config = {"if_num": 16, "ring_num": 32, "buf_num": 8192, **pools}
    h.mem = MemoryAllocator(PoolConfig(**config))
    h.woken = []
    h.core = Core(h.mem, all_drivers(), wake=h.woken.append)
    h.user = FakeUserMemory()
    h.dev = NetmapDevice(h.core, lambda pid: h.user)
    return h


@pytest.fixture
def h():
    harness = make_harness()
    yield harness
    with harness.core.lock:
        for bridge in harness.core.driver("vale").switches.bridges:
            for port in bridge.active_ports() if bridge else ():
                if isinstance(port, Bwrap):
                    port._polling_halt()   # no poller may outlive the memory
    for binding in list(harness.dev.bindings):
        harness.dev.release(binding)
    harness.mem.close()


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def frame(dst: str, src: str, payload: bytes = b"", size: int = 60) -> bytes:
    """An Ethernet frame of ``size`` bytes (payload padded with zeros)."""
    f = mac(dst) + mac(src) + b"\x88\xb5" + payload
    return f + bytes(max(0, size - len(f)))


@dataclass
class Port:
    """A registered port as its client sees it."""

    h: Harness
    fh: int
    reg: object
    nifp: object

    def tx(self, i=0):
        return self.h.ring(self.nifp, i)

    def rx(self, i=0):
        return self.h.ring(self.nifp, self.nifp.ni_tx_rings + self.nifp.ni_host_tx_rings + i)

    @property
    def adapter(self):
        return self.h.dev.bindings[self.fh].adapter

    def send(self, frames, ring=0, flags=0, sync=True) -> None:
        """Put ``frames`` (bytes, or lists of bytes for NS_MOREFRAG chains)
        on TX ring ``ring`` and sync."""
        tx = self.tx(ring)
        for f in frames:
            parts = f if isinstance(f, list) else [f]
            for k, part in enumerate(parts):
                s = tx.slot[tx.cur]
                self.h.mem.buffer(s.buf_idx)[:len(part)] = part
                s.len = len(part)
                s.flags = flags | (0x20 if k + 1 < len(parts) else 0)
                tx.head = tx.cur = (tx.cur + 1) % tx.num_slots
        if sync:
            assert self.h.sync(self.fh, Ioctl.NIOCTXSYNC) == 0

    def recv(self, ring=0, slots=False, release=True):
        """Sync RX ring ``ring`` and take what it holds: the frames'
        bytes, or (bytes, flags) per slot with ``slots``."""
        assert self.h.sync(self.fh, Ioctl.NIOCRXSYNC) == 0
        rx = self.rx(ring)
        out = []
        while rx.head != rx.tail:
            s = rx.slot[rx.head]
            data = bytes(self.h.mem.buffer(s.buf_idx)[:s.len])
            out.append((data, s.flags) if slots else data)
            rx.head = rx.cur = (rx.head + 1) % rx.num_slots
        if release:
            self.h.sync(self.fh, Ioctl.NIOCRXSYNC)
        return out

    def close(self) -> None:
        self.h.dev.release(self.fh)


def open_port(h, name, mode=RegMode.ALL_NIC, slots=16, expect=0, **fields) -> Port | int:
    """REGISTER ``name``; the Port, or the errno when ``expect`` is not 0."""
    fields.setdefault("nr_tx_slots", slots)
    fields.setdefault("nr_rx_slots", slots)
    fh = h.open()
    err, reg, _ = h.register(fh, name, mode=mode, mem_id=0, **fields)
    assert err == expect, f"register {name}: {err} != {expect}"
    if err:
        h.dev.release(fh)
        return err
    return Port(h, fh, reg, h.nifp(reg.nr_offset))


def ctrl(h, reqtype, name="", **fields):
    """One control request on a fresh fd: (errno, body back, name back)."""
    body_type = {ReqType.VALE_ATTACH: "struct nmreq_vale_attach", ReqType.VALE_DETACH: "struct nmreq_vale_detach",
                 ReqType.VALE_LIST: "struct nmreq_vale_list", ReqType.VALE_NEWIF: "struct nmreq_vale_newif",
                 ReqType.VALE_POLLING_ENABLE: "struct nmreq_vale_polling",
                 ReqType.VALE_POLLING_DISABLE: "struct nmreq_vale_polling",
                 ReqType.PORT_INFO_GET: "struct nmreq_port_info_get",
                 ReqType.PORT_HDR_SET: "struct nmreq_port_hdr", ReqType.PORT_HDR_GET: "struct nmreq_port_hdr"}
    body = None
    if reqtype in body_type:
        body = ffi.new(body_type[reqtype] + " *")
        for key, value in fields.items():
            target = body
            for part in key.split(".")[:-1]:
                target = getattr(target, part)
            setattr(target, key.split(".")[-1], value)
    fh = h.open()
    try:
        err, out, hdr = h.ctrl(fh, name, reqtype, body)
    finally:
        h.dev.release(fh)
    return err, out, ffi.string(hdr.nr_name).decode()


def attach(h, name, host=False):
    mode = RegMode.NIC_SW if host else RegMode.ALL_NIC
    return ctrl(h, ReqType.VALE_ATTACH, name, **{"reg.nr_mode": mode})


def vale_list(h) -> list[tuple[str, int, int]]:
    """Every port VALE_LIST walks, until ENOENT."""
    out, b, p = [], 0, 0
    while True:
        err, body, name = ctrl(h, ReqType.VALE_LIST, nr_bridge_idx=b, nr_port_idx=p)
        if err:
            assert err == errno.ENOENT
            return out
        out.append((name, body.nr_bridge_idx, body.nr_port_idx))
        b, p = body.nr_bridge_idx, body.nr_port_idx + 1


class FakeNic(Adapter):
    """A port with hardware and host rings whose "wire" is two lists per
    ring: frames to receive (``inject``), frames sent (``sent``).  Its
    txsync sends everything at once; its rxsync delivers queued frames."""

    kind = "nic"
    has_host_rings = True

    def __init__(self, core, name, rings=1, slots=16):
        super().__init__(core, name, tx_rings=rings, rx_rings=rings, tx_slots=slots, rx_slots=slots,
                         host_tx_rings=1, host_rx_rings=1)
        self.wire_in = {i: [] for i in range(rings + 1)}
        self.sent = {i: [] for i in range(rings + 1)}
        self.on = False
        self.tx_budget = None       # frames the wire takes before it is full (None: no limit)
        self.waits = []             # (direction, index) of each poll_wait

    def register(self, on):
        self.on = on

    def poll_wait(self, kring):
        self.waits.append((kring.direction, kring.index))

    def txsync(self, kring):
        n, k = kring.num_slots, kring.hwcur
        while k != kring.rhead and self.tx_budget != 0:
            s = kring.ring.slot[k]
            self.sent[kring.index].append(bytes(self.mem.buffer(s.buf_idx)[:s.len]))
            k = (k + 1) % n
            if self.tx_budget is not None:
                self.tx_budget -= 1
        kring.hwcur = k
        kring.hwtail = (k - 1) % n
        return 0

    def room(self, frames):
        """The wire takes ``frames`` more: the driver notifies its TX rings."""
        self.tx_budget = frames
        for kring in self.krings[TX]:
            self.notify(kring)

    def rxsync(self, kring):
        n = kring.num_slots
        kring.hwcur = kring.rhead
        queue = self.wire_in[kring.index]
        while queue and (kring.hwtail + 1) % n != kring.hwcur:
            f = queue.pop(0)
            s = kring.ring.slot[kring.hwtail]
            self.mem.buffer(s.buf_idx)[:len(f)] = f
            s.len, s.flags = len(f), 0
            kring.hwtail = (kring.hwtail + 1) % n
        return 0

    def inject(self, ring, frames, interrupt=True):
        """Frames arrive on RX ring ``ring`` (the host ring is index
        ``rings``); ``interrupt`` notifies as a driver's interrupt would."""
        self.wire_in[ring].extend(frames)
        if interrupt and self.krings is not None:
            self.notify(self.krings[RX][ring])

    def host_ring(self, d):
        return self.num_rings[d]


def add_nic(h, name="nic0", **kw) -> FakeNic:
    nic = FakeNic(h.core, name, **kw)
    h.core.named[name] = nic.get()
    return nic


__all__ = ["BCAST", "FakeNic", "Port", "add_nic", "attach", "ctrl", "frame", "mac", "make_harness", "open_port",
           "vale_list", "TX", "RX"]
