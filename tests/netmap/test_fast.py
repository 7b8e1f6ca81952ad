"""The C fast path of bound files (csrc/fast.c) against the Python sync
engine: two null ports get the same user actions, one synced through the
device handler (Python), the other through its C request hooks; their rings
must end byte for byte the same.  Also: which bindings get hooks, that a
busy ring is skipped, and that unbinding removes them."""

import os
import platform
import select
import threading
import time
from contextlib import contextmanager

import pytest
from nmfuse._helper import lib

from nmfuse.abi.fuse import Opcode, PollFlag
from nmfuse.abi.fuse import ffi as fuse_ffi
from nmfuse.abi.netmap import Ioctl, RegFlag, RegMode
from nmfuse.dev.hooks import RequestHooks
from nmfuse.dev.hooks import ffi as hooks_ffi
from nmfuse.dev.hooks import lib as hooks_lib
from tests.netmap.conftest import CALLER

SYS_WRITE = 1   # x86-64

GEOMETRY = {"nr_tx_rings": 2, "nr_rx_rings": 2, "nr_tx_slots": 8, "nr_rx_slots": 8}


@pytest.fixture
def hooked(h):
    h.core.fast_hooks = RequestHooks()
    return h


@pytest.fixture
def c_pipes(monkeypatch):
    """Pipes on the C fast path (their default; explicit for these tests)."""
    from nmfuse.drivers.pipe import PipeAdapter
    monkeypatch.setattr(PipeAdapter, "c_sync", lib.NMH_SYNC_PIPE)


def bound(h, name, **fields):
    fh = h.open()
    err, reg, _ = h.register(fh, name, **(GEOMETRY | fields))
    assert err == 0
    nifp = h.nifp(reg.nr_offset)
    rings = [h.ring(nifp, i) for i in range(4)]   # tx0 tx1 rx0 rx1
    return fh, rings


def fuse(opcode, **arg) -> bytes:
    ctype = {Opcode.IOCTL: "struct fuse_ioctl_in", Opcode.POLL: "struct fuse_poll_in"}[opcode]
    body = fuse_ffi.new(ctype + " *", arg)
    header = fuse_ffi.new("struct fuse_in_header *", {"opcode": opcode, "unique": 1})
    return bytes(fuse_ffi.buffer(header)) + bytes(fuse_ffi.buffer(body))


def in_c(h, data: bytes) -> bytes | None:
    """The reply body the hooks give, or None if they left it to Python."""
    out = hooks_ffi.new("uint8_t[64]")
    n = hooks_lib.nmu_hooks_answer(h.core.fast_hooks._table, data, len(data), out, 64)
    return bytes(hooks_ffi.buffer(out, n))[16:] if n else None


def c_sync(h, fh, cmd) -> int:
    body = in_c(h, fuse(Opcode.IOCTL, fh=fh, cmd=cmd))
    assert body is not None, "the C path declined"
    return fuse_ffi.cast("struct fuse_ioctl_out *", fuse_ffi.from_buffer(body)).result


def c_poll(h, fh, events, notify=True) -> int | None:
    body = in_c(h, fuse(Opcode.POLL, fh=fh, kh=5, flags=PollFlag.SCHEDULE_NOTIFY if notify else 0,
                        events=events))
    return None if body is None else fuse_ffi.cast("struct fuse_poll_out *", fuse_ffi.from_buffer(body)).revents


@contextmanager
def wakeups(h):
    """The FUSE poll wake-ups the device layer writes, readable from the
    pipe yielded (kh at bytes 16..24 of each)."""
    r, w = os.pipe()
    h.core.fast_hooks.set_notify_fd(w)
    try:
        yield r
    finally:
        h.core.fast_hooks.set_notify_fd(-1)
        os.close(r)
        os.close(w)


def ring_state(ring, initial):
    """What the rules write: the pointers, and each slot's buffer (by its
    place in the ring's first buffers, so two rings compare), length, flags."""
    where = {idx: i for i, idx in enumerate(initial)}
    slots = [(where.get(s.buf_idx, ("raw", s.buf_idx)), s.len, s.flags)
             for s in (ring.slot[i] for i in range(ring.num_slots))]
    return ring.head, ring.cur, ring.tail, ring.flags, slots


def buffers(ring):
    return [ring.slot[i].buf_idx for i in range(ring.num_slots)]


# user actions: (ring index, head, cur, slot scribbles {slot: (buf_idx, len)})
SCRIPT = [
    (0, 3, 3, {}), (0, 5, 6, {}), (1, 7, 7, {1: (10**7, 60)}),   # a bad buffer handed over: reinit
    (0, 2, 2, {}),                                              # behind rhead: reinit
    (2, 0, 0, {}), (2, 3, 1, {}), (3, 0, 0, {4: (0, 9999)}),
    (1, 2, 4, {}), (0, 9, 9, {}),                               # out of range
]


def test_c_syncs_leave_the_rings_python_leaves(hooked):
    h = hooked
    py_fh, py = bound(h, "py")
    c_fh, c = bound(h, "c")
    assert h.dev.bindings[c_fh].fast is not None
    py_bufs, c_bufs = [buffers(r) for r in py], [buffers(r) for r in c]
    for index, head, cur, scribbles in SCRIPT:
        for rings in (py, c):
            ring = rings[index]
            ring.head, ring.cur = head, cur
            for slot, (idx, length) in scribbles.items():
                ring.slot[slot].buf_idx, ring.slot[slot].len = idx, length
        cmd = Ioctl.NIOCTXSYNC if index < 2 else Ioctl.NIOCRXSYNC
        assert h.dev.ioctl(CALLER, py_fh, cmd, 0, b"", 0)[0] == 0
        assert c_sync(h, c_fh, cmd) == 0
        for a, b, a0, b0 in zip(py, c, py_bufs, c_bufs, strict=True):
            assert ring_state(a, a0) == ring_state(b, b0), (index, head, cur)
    # poll, with and without something ready
    for events in (select.POLLOUT, select.POLLIN, select.POLLIN | select.POLLOUT):
        want = h.dev.poll(CALLER, py_fh, events, None)
        got = c_poll(h, c_fh, events, notify=False)
        assert got == want, events
    py_errors = [k.stats_errors for k in h.dev.bindings[py_fh].all_krings()]
    c_errors = [k.stats_errors for k in h.dev.bindings[c_fh].all_krings()]
    assert py_errors == c_errors and sum(c_errors) > 0


def test_a_poll_that_must_wait_waits_in_c(hooked):
    h = hooked
    fh, _ = bound(h, "w")
    assert c_poll(h, fh, select.POLLIN, notify=False) == 0
    assert all(k.c.waiting == lib.NMH_WAIT_NONE for k in h.dev.bindings[fh].krings(1))
    assert c_poll(h, fh, select.POLLIN) == 0             # nothing to read: waits, answered now
    for kring in h.dev.bindings[fh].krings(1):
        assert (kring.c.waiting, kring.c.nkh, kring.c.kh[0]) == (lib.NMH_WAIT_ARMED, 1, 5)
    assert all(k.c.waiting == lib.NMH_WAIT_NONE for k in h.dev.bindings[fh].krings(0))


def test_python_wakes_the_pollers_c_left_waiting(hooked):
    h = hooked
    fh, _ = bound(h, "wp")
    assert c_poll(h, fh, select.POLLIN) == 0
    kring = h.dev.bindings[fh].krings(1)[0]
    with h.core.lock:
        kring.adapter.notify(kring)                      # a Python move of the ring
    assert h.woken == [5]
    assert kring.c.waiting == lib.NMH_WAIT_NONE
    with h.core.lock:
        kring.adapter.notify(kring)
    assert h.woken == [5], "woken once"


def test_a_python_poll_keeps_the_handles_c_left(hooked):
    h = hooked
    fh, _ = bound(h, "wk")
    assert c_poll(h, fh, select.POLLIN) == 0             # kh 5 waits in C
    assert h.dev.poll(CALLER, fh, select.POLLIN, 9) == 0  # kh 9 through Python
    kring = h.dev.bindings[fh].krings(1)[0]
    assert kring.c.waiting == lib.NMH_WAIT_ARMED
    assert sorted(kring.c.kh[i] for i in range(kring.c.nkh)) == [5, 9]


def test_too_many_pollers_for_c_go_to_python(hooked):
    h = hooked
    fh, _ = bound(h, "wm")
    kring = h.dev.bindings[fh].krings(1)[0]
    for kh in range(1, lib.NMH_KH + 1):
        assert lib.nmh_kring_wait_add(kring.c, kh) == 0
    assert lib.nmh_kring_wait_add(kring.c, 4) == 0        # already there
    assert lib.nmh_kring_wait_add(kring.c, 99) == -1
    assert c_poll(h, fh, select.POLLIN) is None          # Python holds the rest
    kring.c.waiting = lib.NMH_WAIT_BUSY
    assert lib.nmh_kring_wait_add(kring.c, 1) == -1       # Python holds kh[]


def test_the_c_waiter_wakes_a_poller_when_the_rings_fd_fires(hooked):
    h = hooked
    with wakeups(h) as r:
        efd = os.eventfd(0, os.EFD_NONBLOCK)
        try:
            fh, _ = bound(h, "wf", nr_rx_rings=1)
            kring = h.dev.bindings[fh].krings(1)[0]
            with kring.held():
                kring.wait_on(efd)                           # as a driver whose fd says "can move"
            assert kring.c.watched == 1
            assert c_poll(h, fh, select.POLLIN) == 0
            os.eventfd_write(efd, 1)
            got = os.read(r, 64)                             # written by the waiter thread
            assert got[16:] == (5).to_bytes(8, "little"), "a FUSE poll wake-up for kh 5"
            kring.wait_on(None)
            assert kring.c.watched == 0 and kring.c.wait_fd == -1
        finally:
            os.close(efd)


def test_a_c_poll_waiting_on_a_pipe_is_woken_by_the_peers_c_sync(hooked, c_pipes):
    h = hooked
    with wakeups(h) as r:
        (a, tx), (b, _) = pipe(h, "cw")
        assert c_poll(h, b, select.POLLIN) == 0          # waits in C
        tx.slot[0].len = 60
        tx.head = tx.cur = 1
        assert c_sync(h, a, Ioctl.NIOCTXSYNC) == 0
        assert os.read(r, 64)[16:] == (5).to_bytes(8, "little")
        assert c_poll(h, b, select.POLLIN) == select.POLLIN


def test_a_busy_ring_is_skipped_by_both_paths(hooked):
    h = hooked
    fh, rings = bound(h, "b")
    kring = h.dev.bindings[fh].krings(0)[0]
    assert lib.nmh_kring_tryget(kring.c) == 0           # a sync in flight elsewhere
    rings[0].head = rings[0].cur = 4
    assert c_sync(h, fh, Ioctl.NIOCTXSYNC) == 0
    assert h.sync(fh, Ioctl.NIOCTXSYNC) == 0
    assert kring.rhead == 0                              # neither touched it
    lib.nmh_kring_put(kring.c)
    assert c_sync(h, fh, Ioctl.NIOCTXSYNC) == 0
    assert kring.rhead == 4


def test_only_bindings_whose_rings_sync_in_c_get_hooks(hooked):
    h = hooked
    fh, _ = bound(h, "n")
    assert h.dev.bindings[fh].fast is not None
    v, a, b = h.open(), h.open(), h.open()
    assert h.register(v, "vale1:x", mode=1, mem_id=0)[0] == 0    # a VALE port: C syncs
    assert h.dev.bindings[v].fast is not None
    assert h.register(a, "vale1:x", mode=1, mem_id=0, nr_flags=RegFlag.MONITOR_RX)[0] == 0   # a monitor: Python
    assert h.dev.bindings[a].fast is None
    assert in_c(h, fuse(Opcode.IOCTL, fh=a, cmd=Ioctl.NIOCTXSYNC)) is None
    assert in_c(h, fuse(Opcode.IOCTL, fh=b, cmd=Ioctl.NIOCTXSYNC)) is None   # not bound


def test_a_binding_without_rings_is_answered_in_c(hooked):
    # NR_REG_NULL binds no ring: its syncs have nothing to do, and C answers
    # them as netmap does (0), as the empty-sync benchmark relies on
    h = hooked
    fh = h.open()
    assert h.register(fh, "nrt", mode=RegMode.NULL)[0] == 0
    assert h.dev.bindings[fh].fast is not None
    assert c_sync(h, fh, Ioctl.NIOCTXSYNC) == 0
    assert c_sync(h, fh, Ioctl.NIOCRXSYNC) == 0


def test_csb_mode_and_unbinding_leave_it_to_python(hooked):
    h = hooked
    fh, _ = bound(h, "u")
    binding = h.dev.bindings[fh]
    binding.csb = (1, 2)
    assert in_c(h, fuse(Opcode.IOCTL, fh=fh, cmd=Ioctl.NIOCTXSYNC)) is None
    binding.csb = None
    assert in_c(h, fuse(Opcode.IOCTL, fh=fh, cmd=Ioctl.NIOCTXSYNC)) is not None
    h.dev.release(fh)
    assert binding.fast is None
    assert in_c(h, fuse(Opcode.IOCTL, fh=fh, cmd=Ioctl.NIOCTXSYNC)) is None


def test_a_monitor_on_a_ring_takes_it_back_to_python(hooked):
    h = hooked
    fh, _ = bound(h, "m")
    kring = h.dev.bindings[fh].krings(0)[0]
    saved = kring.nm_sync
    kring.nm_sync = lambda k: saved(k)                  # what a monitor does
    assert in_c(h, fuse(Opcode.IOCTL, fh=fh, cmd=Ioctl.NIOCTXSYNC)) is None
    assert in_c(h, fuse(Opcode.IOCTL, fh=fh, cmd=Ioctl.NIOCRXSYNC)) is not None
    kring.nm_sync = saved
    assert in_c(h, fuse(Opcode.IOCTL, fh=fh, cmd=Ioctl.NIOCTXSYNC)) is not None



def pipe(h, name):
    a, b = h.open(), h.open()
    ea, ra, _ = h.register(a, name + "{1", mode=1, mem_id=0, nr_tx_slots=8, nr_rx_slots=8)
    eb, rb, _ = h.register(b, name + "}1", mode=1, mem_id=0, nr_tx_slots=8, nr_rx_slots=8)
    assert ea == eb == 0
    na, nb = h.nifp(ra.nr_offset), h.nifp(rb.nr_offset)
    return (a, h.ring(na, 0)), (b, h.ring(nb, 1))     # master TX, slave RX


PIPE_SCRIPT = [  # (which end, head advance); TX slots get lengths 60 + k
    ("tx", 3), ("rx", 0), ("rx", 2), ("tx", 4), ("rx", 1), ("tx", 2), ("rx", 4), ("tx", 7), ("rx", 0),
]


def test_c_pipe_syncs_leave_the_rings_python_leaves(hooked, c_pipes):
    h = hooked
    (pa, ptx), (pb, prx) = pipe(h, "pp")
    (ca, ctx), (cb, crx) = pipe(h, "cp")
    assert h.dev.bindings[ca].fast is not None and h.dev.bindings[cb].fast is not None
    bufs = {id(r): buffers(r) for r in (ptx, prx)}
    cbufs = {id(r): buffers(r) for r in (ctx, crx)}
    for end, advance in PIPE_SCRIPT:
        for tx, rx, a, b, via_c in ((ptx, prx, pa, pb, False), (ctx, crx, ca, cb, True)):
            ring, fh, cmd = (tx, a, Ioctl.NIOCTXSYNC) if end == "tx" else (rx, b, Ioctl.NIOCRXSYNC)
            room = (ring.tail - ring.head) % ring.num_slots
            for k in range(min(advance, room)):
                ring.slot[(ring.head + k) % ring.num_slots].len = 60 + k
            ring.head = ring.cur = (ring.head + min(advance, room)) % ring.num_slots
            if via_c:
                assert c_sync(h, fh, cmd) == 0
            else:
                assert h.dev.ioctl(CALLER, fh, cmd, 0, b"", 0)[0] == 0
        assert ring_state(ptx, bufs[id(ptx)]) == ring_state(ctx, cbufs[id(ctx)]), (end, advance)
        assert ring_state(prx, bufs[id(ptx)]) == ring_state(crx, cbufs[id(ctx)]), (end, advance)


def test_a_c_pipe_sync_wakes_the_peer_poller_itself(hooked, c_pipes):
    h = hooked
    with wakeups(h) as r:
        (a, tx), (b, _) = pipe(h, "wp")
        assert h.dev.poll(CALLER, b, select.POLLIN, 77) == 0     # Python arms the wake-up
        tx.slot[0].len = 60
        tx.head = tx.cur = 1
        assert c_sync(h, a, Ioctl.NIOCTXSYNC) == 0
        assert os.read(r, 64) == bytes(fuse_ffi.buffer(fuse_ffi.new("struct fuse_out_header *", {
            "len": 24, "error": 1, "unique": 0}))) + (77).to_bytes(8, "little"), "a FUSE poll wake-up for kh 77"
        assert c_poll(h, b, select.POLLIN) == select.POLLIN
        # woken once: a second move wakes nobody until a poll waits again
        tx.slot[1].len = 60
        tx.head = tx.cur = 2
        assert c_sync(h, a, Ioctl.NIOCTXSYNC) == 0
        assert h.core.fast_hooks.notified == 1


def on_cpu(cpu, fn, *args):
    """fn(*args) from a thread pinned to cpu (where an io_uring queue would
    serve a poll from that CPU)."""
    got = []

    def run():
        os.sched_setaffinity(0, {cpu})
        got.append(fn(*args))
    t = threading.Thread(target=run)
    t.start()
    t.join()
    return got[0]


CPUS = sorted(os.sched_getaffinity(0))[:2]
two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs")


def receiver_waiting_on_cpu1(h, name):
    """A C pipe whose receiver waits in a C poll served on CPUS[1]."""
    (a, tx), (b, _) = pipe(h, name)
    assert on_cpu(CPUS[1], c_poll, h, b, select.POLLIN) == 0
    return (a, tx), b


@two_cpus
@pytest.mark.parametrize("same_cpu", [False, True])
def test_a_pipe_peer_polling_on_another_cpu_is_woken_before_the_slots_are_checked(hooked, c_pipes, same_cpu):
    h = hooked
    with wakeups(h):
        (a, tx), b = receiver_waiting_on_cpu1(h, "early" + str(same_cpu))
        tx.slot[0].buf_idx = 10**7                                          # a batch the check refuses
        tx.slot[0].len = 60
        tx.head = tx.cur = 1
        assert on_cpu(CPUS[1] if same_cpu else CPUS[0], c_sync, h, a, Ioctl.NIOCTXSYNC) == 0
        assert (tx.head, tx.tail) == (0, 7), "the bad batch was refused: the ring reinit, nothing moved"
        assert h.core.fast_hooks.notified == (0 if same_cpu else 1), \
            "across CPUs the wake-up goes first (spurious for a ring that is then reinit); on one CPU only after a move"
        assert c_poll(h, b, select.POLLIN) == 0


@two_cpus
def test_a_pipe_sender_waiting_for_room_on_another_cpu_is_woken_before_the_release(hooked, c_pipes):
    h = hooked
    with wakeups(h):
        (a, tx), (b, rx) = pipe(h, "room")
        for i in range(7):
            tx.slot[i].len = 60
        tx.head = tx.cur = 7
        assert c_sync(h, a, Ioctl.NIOCTXSYNC) == 0 and c_sync(h, b, Ioctl.NIOCRXSYNC) == 0
        assert rx.tail == 7
        assert on_cpu(CPUS[1], c_poll, h, a, select.POLLOUT) == 0          # the ring is full: the sender waits
        rx.slot[0].buf_idx = 10**7                                          # a release the check refuses
        rx.head = rx.cur = 1
        assert on_cpu(CPUS[0], c_sync, h, b, Ioctl.NIOCRXSYNC) == 0
        assert (rx.head, rx.tail) == (0, 7), "the bad release was refused: the ring reinit, nothing moved"
        assert h.core.fast_hooks.notified == 1, "the sender was woken before the released slots were checked"
        assert c_poll(h, a, select.POLLOUT) == 0


def writing_to(thread, fd):
    """Whether the thread is in write(2) on fd (here: held by a full pipe)."""
    with open(f"/proc/self/task/{thread.native_id}/syscall") as f:
        call = f.read().split()
    return call[:2] == [str(SYS_WRITE), hex(fd)]


@two_cpus
@pytest.mark.skipif(platform.machine() != "x86_64", reason="reads the x86-64 number of write(2) in /proc")
def test_a_pipe_peer_that_looks_before_the_slots_arrive_is_woken_again_after_them(hooked, c_pipes):
    # The early wake-up is held in a full notification pipe, so that the
    # receiver polls (and waits again) between the wake-up and the move.
    h = hooked
    r, w = os.pipe()
    h.core.fast_hooks.set_notify_fd(w)
    try:
        (a, tx), b = receiver_waiting_on_cpu1(h, "again")
        os.set_blocking(w, False)
        with pytest.raises(BlockingIOError):
            while True:
                os.write(w, bytes(24))
        os.set_blocking(w, True)
        tx.slot[0].len = 60
        tx.head = tx.cur = 1
        sync = threading.Thread(target=lambda: (os.sched_setaffinity(0, {CPUS[0]}),
                                                c_sync(h, a, Ioctl.NIOCTXSYNC)))
        sync.start()
        while not writing_to(sync, w):
            time.sleep(0.01)
        assert h.core.fast_hooks.notified == 0
        assert c_poll(h, b, select.POLLIN) == 0, "the slots have not moved: the receiver waits again"
        os.set_blocking(r, False)
        while sync.is_alive():
            try:
                os.read(r, 65536)
            except BlockingIOError:
                time.sleep(0.01)
        sync.join()
        assert h.core.fast_hooks.notified == 2, "woken early, then again after the move"
        assert c_poll(h, b, select.POLLIN) == select.POLLIN
    finally:
        h.core.fast_hooks.set_notify_fd(-1)
        os.close(r)
        os.close(w)


@two_cpus
def test_a_pipe_peer_woken_early_is_not_woken_twice_for_one_batch(hooked, c_pipes):
    h = hooked
    with wakeups(h):
        (a, tx), b = receiver_waiting_on_cpu1(h, "once")
        tx.slot[0].len = 60
        tx.head = tx.cur = 1
        assert on_cpu(CPUS[0], c_sync, h, a, Ioctl.NIOCTXSYNC) == 0
        assert h.core.fast_hooks.notified == 1
        assert c_poll(h, b, select.POLLIN) == select.POLLIN


def test_a_move_while_python_polls_goes_to_the_waker(hooked, c_pipes):
    h = hooked
    (a, tx), (b, _) = pipe(h, "wq")
    assert h.dev.poll(CALLER, b, select.POLLIN, 78) == 0
    h.dev.bindings[b].krings(1)[0].c.waiting = lib.NMH_WAIT_BUSY   # as in the middle of a poll
    tx.slot[0].len = 60
    tx.head = tx.cur = 1
    assert c_sync(h, a, Ioctl.NIOCTXSYNC) == 0
    deadline = time.monotonic() + 10
    while 78 not in h.woken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 78 in h.woken, "the waker woke the receiver"
