"""VALE ports on the C fast path (csrc/vale.c nmh_vale_txsync/rxsync,
csrc/fast.c NMH_SYNC_VALE): their syncs and polls are answered in C, frames
cross the switch byte for byte as through Python, a C flush wakes a poller
C left waiting on another port, a switch with a port whose notify is
Python's (a monitor, a bwrap) leaves its TX syncs to Python, and ports come
and go while C flushes run on another thread without losing a buffer."""

import errno
import os
import select
import threading
import time

import pytest
from nmfuse._helper import lib

from nmfuse.abi.fuse import Opcode
from nmfuse.abi.netmap import Ioctl, RegFlag, RegMode, ReqType
from nmfuse.dev.hooks import RequestHooks
from tests.drivers.conftest import BCAST, add_nic, attach, ctrl, frame, open_port
from tests.netmap.conftest import CALLER
from tests.netmap.test_fast import c_poll, c_sync, fuse, in_c, wakeups

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


@pytest.fixture
def hooked(h):
    h.core.fast_hooks = RequestHooks()
    yield h
    h.core.stop_fast()


def answered(h, port) -> int:
    return h.dev.bindings[port.fh].fast.answered


def put(port, frames, ring=0) -> None:
    """Frames on TX ring ``ring``, handed over (head moved), not synced."""
    port.send(frames, ring=ring, sync=False)


def take(h, port, ring=0, via_c=True) -> list[bytes]:
    """Sync RX ring ``ring``, take its frames, release them with a second sync."""
    sync = (lambda: c_sync(h, port.fh, Ioctl.NIOCRXSYNC)) if via_c else \
        (lambda: h.sync(port.fh, Ioctl.NIOCRXSYNC))
    assert sync() == 0
    rx, out = port.rx(ring), []
    while rx.head != rx.tail:
        s = rx.slot[rx.head]
        out.append(bytes(h.mem.buffer(s.buf_idx)[:s.len]))
        rx.head = rx.cur = (rx.head + 1) % rx.num_slots
    assert sync() == 0
    return out


def frames_for(n: int, dst: str, src: str) -> list[bytes]:
    """``n`` frames of different sizes, each with its own bytes."""
    return [frame(dst, src, bytes((i * 7 + k) & 0xFF for k in range(i % 50)) + i.to_bytes(4, "big"),
                  size=60 + (i * 13) % 200) for i in range(n)]


def test_vale_syncs_and_polls_are_answered_in_c(hooked):
    h = hooked
    a, b = open_port(h, "vale0:a"), open_port(h, "vale0:b")
    assert h.dev.bindings[a.fh].fast is not None and h.dev.bindings[b.fh].fast is not None
    before = answered(h, a), answered(h, b)
    put(a, [frame(BCAST, A)])
    assert c_sync(h, a.fh, Ioctl.NIOCTXSYNC) == 0
    assert c_poll(h, b.fh, select.POLLIN, notify=False) == select.POLLIN
    assert take(h, b) == [frame(BCAST, A)]
    assert (answered(h, a), answered(h, b)) == (before[0] + 1, before[1] + 3)


def test_frames_cross_the_switch_through_c_as_through_python(hooked):
    h = hooked
    # the same traffic through two switches: one synced in C, one in Python
    ports = {how: [open_port(h, f"vale{i}:{n}", slots=32) for n in "ab"] for i, how in enumerate(("c", "py"))}
    sent = frames_for(40, B, A)
    got = {}
    for how, (a, b) in ports.items():
        via_c = how == "c"
        put(b, [frame(BCAST, B)])              # teach the switch where B is
        if via_c:
            assert c_sync(h, b.fh, Ioctl.NIOCTXSYNC) == 0
        else:
            assert h.sync(b.fh, Ioctl.NIOCTXSYNC) == 0
        assert take(h, a, via_c=via_c) == [frame(BCAST, B)]
        got[how] = []
        for chunk in (sent[:25], sent[25:]):
            put(a, chunk)
            if via_c:
                assert c_sync(h, a.fh, Ioctl.NIOCTXSYNC) == 0
            else:
                assert h.sync(a.fh, Ioctl.NIOCTXSYNC) == 0
            got[how] += take(h, b, via_c=via_c)
    assert got["c"] == sent, "byte for byte through C"
    assert got["py"] == sent
    for (ca, cb), (pa, pb) in [(ports["c"], ports["py"])]:
        for cring, pring in ((ca.tx(), pa.tx()), (cb.rx(), pb.rx())):
            assert (cring.head, cring.cur, cring.tail) == (pring.head, pring.cur, pring.tail)
    kc, kp = ports["c"][1].adapter.krings[1][0], ports["py"][1].adapter.krings[1][0]
    assert (kc.hwcur, kc.hwtail, kc.stats_packets) == (kp.hwcur, kp.hwtail, kp.stats_packets)


def test_a_c_poll_on_a_vale_rx_ring_is_woken_by_a_c_flush_from_another_port(hooked):
    h = hooked
    with wakeups(h) as r:
        a, b = open_port(h, "vale0:a"), open_port(h, "vale0:b")
        assert c_poll(h, b.fh, select.POLLIN) == 0          # nothing yet: waits in C
        kring = b.adapter.krings[1][0]
        assert kring.c.waiting == lib.NMH_WAIT_ARMED
        put(a, [frame(BCAST, A)])
        assert c_sync(h, a.fh, Ioctl.NIOCTXSYNC) == 0
        assert os.read(r, 64)[16:] == (5).to_bytes(8, "little"), "a FUSE wake-up for kh 5"
        assert h.woken == [], "woken from C, not by Python"
        assert c_poll(h, b.fh, select.POLLIN) == select.POLLIN
        assert take(h, b) == [frame(BCAST, A)]


def test_a_python_poll_is_woken_by_a_c_flush(hooked):
    h = hooked
    with wakeups(h) as r:
        a, b = open_port(h, "vale0:a"), open_port(h, "vale0:b")
        assert h.dev.poll(CALLER, b.fh, select.POLLIN, 31) == 0     # Python arms the wake-up
        put(a, [frame(BCAST, A)])
        assert c_sync(h, a.fh, Ioctl.NIOCTXSYNC) == 0
        assert os.read(r, 64)[16:] == (31).to_bytes(8, "little"), "Python's poll handle woken from C"
        assert h.woken == []


def test_a_monitored_port_takes_the_switchs_tx_syncs_back_to_python(hooked):
    h = hooked
    a, b = open_port(h, "vale0:a"), open_port(h, "vale0:b")
    tx_c = fuse(Opcode.IOCTL, fh=a.fh, cmd=Ioctl.NIOCTXSYNC)
    assert in_c(h, tx_c) is not None
    m = open_port(h, "vale0:b", nr_flags=RegFlag.MONITOR_RX, mode=RegMode.ALL_NIC)
    assert in_c(h, tx_c) is None, "b's RX notify is the monitor's: Python"
    assert in_c(h, fuse(Opcode.IOCTL, fh=b.fh, cmd=Ioctl.NIOCRXSYNC)) is None, "the monitored ring"
    a.send([frame(BCAST, A)])                                # through Python
    assert m.recv() == [frame(BCAST, A)], "the monitor saw it"
    assert b.recv() == [frame(BCAST, A)]
    m.close()
    assert in_c(h, tx_c) is not None, "back to C once the monitor goes"
    put(a, [frame(BCAST, A)])
    assert c_sync(h, a.fh, Ioctl.NIOCTXSYNC) == 0
    assert take(h, b) == [frame(BCAST, A)]


def test_a_bwrap_on_the_switch_leaves_its_tx_syncs_to_python(hooked):
    h = hooked
    nic = add_nic(h)
    a = open_port(h, "vale0:a")
    assert in_c(h, fuse(Opcode.IOCTL, fh=a.fh, cmd=Ioctl.NIOCTXSYNC)) is not None
    assert attach(h, "vale0:nic0")[0] == 0
    assert in_c(h, fuse(Opcode.IOCTL, fh=a.fh, cmd=Ioctl.NIOCTXSYNC)) is None
    a.send([frame(BCAST, A)])
    assert nic.sent[0] == [frame(BCAST, A)], "pushed on into the NIC in the sending sync"
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:nic0")[0] == 0
    assert in_c(h, fuse(Opcode.IOCTL, fh=a.fh, cmd=Ioctl.NIOCTXSYNC)) is not None


def test_a_port_that_turns_to_python_under_a_c_flush_gets_its_notify_from_the_waker(hooked):
    # The C path looked at the switch (no port needed Python) just before a
    # monitor took b's notify over: the flush then leaves b to the waker.
    h = hooked
    a, b = open_port(h, "vale0:a"), open_port(h, "vale0:b")
    kring = b.adapter.krings[1][0]
    seen = []
    with h.core.lock:
        saved = kring.nm_notify
        kring.nm_notify = lambda k: (seen.append(k.hwtail), saved(k))
        a.adapter.bridge.c.python = 0                        # the count the C path read before
    put(a, [frame(BCAST, A)])
    assert c_sync(h, a.fh, Ioctl.NIOCTXSYNC) == 0
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [1], "the waker ran b's notify, with the switch's hwtail"
    with h.core.lock:
        kring.nm_notify = saved
    assert take(h, b) == [frame(BCAST, A)]


def test_ports_come_and_go_while_c_flushes_run_and_every_buffer_comes_back(hooked):
    h = hooked
    before = {n: s.used for n, s in h.mem.statistics().items()}
    assert ctrl(h, ReqType.VALE_NEWIF, "v0", nr_tx_slots=64, nr_rx_slots=64)[0] == 0
    a, b = open_port(h, "vale0:a", slots=64), open_port(h, "vale0:b", slots=64)
    stop, errors, got = threading.Event(), [], []
    sent = frames_for(16, BCAST, A)

    def traffic():
        # the C path on this thread, without the core lock
        try:
            while not stop.is_set():
                put(a, sent)
                assert c_sync(h, a.fh, Ioctl.NIOCTXSYNC) == 0
                got.extend(take(h, b))
        except BaseException as e:   # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        for i in range(30):
            assert attach(h, "vale0:v0")[0] == 0
            v = open_port(h, "v0", slots=64)
            c = open_port(h, f"vale0:c{i}", slots=32)          # an ephemeral port joins...
            for f in v.recv() + c.recv():
                assert f in sent, "a frame that was sent, intact"
            c.close()                                          # ...and leaves
            v.close()
            assert ctrl(h, ReqType.VALE_DETACH, "vale0:v0")[0] == 0
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert got and all(f in sent for f in got)
    a.close()
    b.close()
    assert ctrl(h, ReqType.VALE_DELIF, "v0")[0] == 0
    h.mem.sweep()
    assert {n: s.used for n, s in h.mem.statistics().items()} == before, "every buffer, ring and netmap_if"
    assert h.core.driver("vale").switches.bridges == [None] * 8
    assert errno.ENXIO == ctrl(h, ReqType.VALE_DETACH, "vale0:v0")[0]
