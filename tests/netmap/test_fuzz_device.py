"""Garbage through the whole device: random headers and bodies for every
request type (and the legacy ioctls), then the pools must be whole again."""

import errno
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmfuse.abi.fuse import Opcode
from nmfuse.abi.fuse import ffi as fuse_ffi
from nmfuse.abi.netmap import Ioctl, RegFlag, RegMode, ReqType, ffi
from nmfuse.dev.hooks import RequestHooks
from nmfuse.dev.hooks import ffi as hooks_ffi
from nmfuse.dev.hooks import lib as hooks_lib
from tests.netmap.conftest import CALLER, Harness

NAMES = [b"", b"n0", b"p{1", b"p}1", b"q{2", b"vale0:a", b"vale0:b", b"vale1:x", b"p{1/r", b"vale0:a/z",
         b"nosuch", b"a" * 64]


@st.composite
def register_body(draw) -> bytes:
    """A plausible nmreq_register (most random bytes die on nr_mode)."""
    reg = ffi.new("struct nmreq_register *")
    reg.nr_mode = draw(st.sampled_from([RegMode.ALL_NIC, RegMode.NULL, RegMode.ONE_NIC, RegMode.SW, 9]))
    reg.nr_mem_id = draw(st.sampled_from([0, 1, 2]))
    reg.nr_tx_rings, reg.nr_rx_rings = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    reg.nr_tx_slots = draw(st.sampled_from([0, 1, 8, 64, 1024, 5000]))
    reg.nr_rx_slots = draw(st.sampled_from([0, 1, 8, 64, 1024, 5000]))
    reg.nr_ringid = draw(st.integers(0, 5))
    reg.nr_extra_bufs = draw(st.sampled_from([0, 3, 10, 100000]))
    reg.nr_flags = draw(st.sampled_from([0, RegFlag.EXCLUSIVE, RegFlag.TX_RINGS_ONLY, RegFlag.RX_RINGS_ONLY,
                                         RegFlag.MONITOR_RX, RegFlag.ZCOPY_MON, RegFlag.NO_TX_POLL]))
    return bytes(ffi.buffer(reg)) + bytes(40)


request = st.tuples(
    st.sampled_from([Ioctl.NIOCCTRL] * 6 + [Ioctl.NIOCREGIF, Ioctl.NIOCGINFO, Ioctl.NIOCTXSYNC, Ioctl.NIOCRXSYNC]),
    st.sampled_from([ReqType.REGISTER] * 12 + list(range(17))),  # nr_reqtype, mostly REGISTER
    st.sampled_from(NAMES),
    st.one_of(register_body(), st.binary(min_size=96, max_size=96)),   # the body's bytes
    st.integers(0, 3),                               # which fd
    st.integers(0, 2**32 - 1),                       # what the client scribbles into its rings
)


def _scribble(h, fh, value: int) -> None:
    """A client writing nonsense into one of its rings: a pointer or a slot."""
    binding = h.dev.bindings[fh]
    if not binding.registered or value % 3 != 0:
        return
    krings = [k for k in binding.all_krings() if k.ring is not None]
    if not krings:
        return
    ring = krings[value % len(krings)].ring
    field = (value >> 8) % 5
    if field == 0:
        ring.head = value >> 16
    elif field == 1:
        ring.cur = value >> 12
    else:
        slot = ring.slot[(value >> 4) % ring.num_slots]
        if field == 2:
            slot.buf_idx = value >> 10
        elif field == 3:
            slot.len = value & 0xFFFF
        else:
            slot.buf_idx = ring.slot[0].buf_idx  # a duplicated index


def _in_c(h, fh, cmd) -> bool:
    """A sync as a request worker serves it: through the C request hooks
    of the binding if it has them (then True), else it is Python's."""
    arg = fuse_ffi.new("struct fuse_ioctl_in *", {"fh": fh, "cmd": cmd})
    header = fuse_ffi.new("struct fuse_in_header *", {"opcode": Opcode.IOCTL, "unique": 1})
    data = bytes(fuse_ffi.buffer(header)) + bytes(fuse_ffi.buffer(arg))
    out = hooks_ffi.new("uint8_t[64]")
    n = hooks_lib.nmu_hooks_answer(h.core.fast_hooks.table, data, len(data), out, 64)
    if n:
        assert fuse_ffi.cast("struct fuse_ioctl_out *", fuse_ffi.from_buffer(bytes(hooks_ffi.buffer(out, n))[16:])).result == 0
    return bool(n)


def _send(h, fh, cmd, reqtype, name, body, scribble) -> None:
    """One request on ``fh``, after the client scribbled into its rings."""
    _scribble(h, fh, scribble)
    if cmd in (Ioctl.NIOCTXSYNC, Ioctl.NIOCRXSYNC) and h.core.fast_hooks is not None and _in_c(h, fh, cmd):
        return
    if cmd == Ioctl.NIOCCTRL:
        hdr = ffi.new("struct nmreq_header *")
        hdr.nr_version = 14
        hdr.nr_reqtype = ReqType.REGISTER if reqtype == 16 else reqtype
        ffi.memmove(hdr.nr_name, name, min(len(name), 63))
        hdr.nr_body = h.user.place(body)
        data = bytes(ffi.buffer(hdr))
    elif cmd in (Ioctl.NIOCREGIF, Ioctl.NIOCGINFO):
        nmr = ffi.new("struct nmreq *")
        ffi.memmove(nmr, body[:60], 60)
        nmr.nr_version = 14
        ffi.memmove(nmr.nr_name, name[:15] + b"\0", min(len(name), 15) + 1)
        data = bytes(ffi.buffer(nmr))
    else:
        data = b""
    err, out = h.dev.ioctl(CALLER, fh, cmd, 0, data, len(data))
    assert err == 0 or err in errno.errorcode, err
    assert len(out) <= max(len(data), 88)


def _whole_again(h, fds) -> None:
    for fh in fds:
        h.dev.release(fh)
    stats = h.mem.statistics()
    assert stats["if"].used == stats["ring"].used == 0
    assert stats["buf"].used == 0, "every buffer came back"
    assert not h.core.driver("pipe").pairs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(request, min_size=1, max_size=25))
def test_random_requests_never_break_the_device(requests):
    h = Harness()
    try:
        fds = [h.open() for _ in range(4)]
        for cmd, reqtype, name, body, which, scribble in requests:
            _send(h, fds[which], cmd, reqtype, name, body, scribble)
        _whole_again(h, fds)
    finally:
        h.mem.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(request, min_size=1, max_size=25), min_size=4, max_size=4))
def test_random_requests_from_several_workers_at_once(per_worker):
    """What several request workers do: each thread drives its own fd (the
    names collide, so threads meet on the same pipes and switches), all
    starting together; then every fd closes and the pools must be whole.
    Syncs of null ports and pipes go through their C request hooks, as the
    workers serve them, without the core lock."""
    h = Harness()
    h.core.fast_hooks = RequestHooks()
    try:
        fds = [h.open() for _ in per_worker]
        start = threading.Barrier(len(fds))
        failures = []

        def worker(fh, requests):
            start.wait()
            try:
                for cmd, reqtype, name, body, _, scribble in requests:
                    _send(h, fh, cmd, reqtype, name, body, scribble)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                failures.append(e)

        threads = [threading.Thread(target=worker, args=(fh, reqs)) for fh, reqs in zip(fds, per_worker)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
        _whole_again(h, fds)
    finally:
        h.mem.close()

