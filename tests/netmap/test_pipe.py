"""Pipes and the sync engine: zero-copy transfer, ring ownership, abuse."""

import errno
import select
import time

from nmfuse.abi.netmap import Ioctl, RegFlag, RegMode, RingFlag, SlotFlag
from nmfuse.netmap import kring as kring_mod
from tests.netmap.conftest import CALLER


def pipe_pair(h, name="p", slots=8, **fields):
    a, b = h.open(), h.open()
    ea, ra, _ = h.register(a, f"{name}{{1", mode=RegMode.ALL_NIC, mem_id=0, nr_tx_slots=slots, nr_rx_slots=slots, **fields)
    eb, rb, _ = h.register(b, f"{name}}}1", mode=RegMode.ALL_NIC, mem_id=0, **fields)
    assert ea == eb == 0
    na, nb = h.nifp(ra.nr_offset), h.nifp(rb.nr_offset)
    return a, b, h.ring(na, 0), h.ring(nb, 1), ra, rb


def send(tx, lens):
    for n in lens:
        tx.slot[tx.cur].len = n
        tx.cur = tx.head = (tx.cur + 1) % tx.num_slots


def test_frames_move_by_index_not_bytes(h):
    a, b, tx, rx, ra, rb = pipe_pair(h)
    assert rb.nr_tx_slots == ra.nr_rx_slots and rb.nr_rx_slots == ra.nr_tx_slots == 8
    sent = [tx.slot[k].buf_idx for k in range(3)]
    h.mem.buffer(sent[0])[:4] = b"ping"
    send(tx, [60, 61, 62])
    assert h.sync(a, Ioctl.NIOCTXSYNC) == 0
    assert h.sync(b, Ioctl.NIOCRXSYNC) == 0
    assert (rx.head, rx.tail) == (0, 3)
    assert [rx.slot[k].buf_idx for k in range(3)] == sent
    assert [rx.slot[k].len for k in range(3)] == [60, 61, 62]
    assert bytes(h.mem.buffer(rx.slot[0].buf_idx)[:4]) == b"ping"
    # the receiver releases: the sender gets its slots back
    rx.head = rx.cur = 3
    h.sync(b, Ioctl.NIOCRXSYNC)
    h.sync(a, Ioctl.NIOCTXSYNC)
    assert tx.tail == 2  # 7 slots free again: one always stays empty


def test_morefrag_publishes_only_complete_frames(h):
    a, b, tx, rx, *_ = pipe_pair(h)
    tx.slot[0].flags = SlotFlag.MOREFRAG
    send(tx, [100])
    h.sync(a, Ioctl.NIOCTXSYNC)
    h.sync(b, Ioctl.NIOCRXSYNC)
    assert rx.tail == 0, "half a frame is not delivered"
    send(tx, [50])
    h.sync(a, Ioctl.NIOCTXSYNC)
    h.sync(b, Ioctl.NIOCRXSYNC)
    assert rx.tail == 2 and rx.slot[0].flags & SlotFlag.MOREFRAG


def test_ring_full_then_room(h):
    a, b, tx, rx, *_ = pipe_pair(h)
    send(tx, [60] * 7)
    h.sync(a, Ioctl.NIOCTXSYNC)
    assert tx.tail == tx.head, "no room until the receiver releases"


def test_poll_wakes_the_receiver(h):
    a, b, tx, rx, *_ = pipe_pair(h)
    assert h.dev.poll(CALLER, b, select.POLLIN, 42) == 0
    assert h.woken == []
    send(tx, [60])
    h.dev.poll(CALLER, a, select.POLLOUT, 43)  # poll does the TX sync
    assert 42 in h.woken
    assert h.dev.poll(CALLER, b, select.POLLIN, 42) & select.POLLIN


def test_poll_wakes_the_sender_when_room_returns(h):
    a, b, tx, rx, *_ = pipe_pair(h)
    send(tx, [60] * 7)
    assert h.dev.poll(CALLER, a, select.POLLOUT, 7) == 0
    h.sync(b, Ioctl.NIOCRXSYNC)
    rx.head = rx.cur = rx.tail
    h.sync(b, Ioctl.NIOCRXSYNC)
    assert 7 in h.woken
    assert h.dev.poll(CALLER, a, select.POLLOUT, 7) & select.POLLOUT


def test_head_outside_its_window_reinitialises_the_ring(h):
    a, b, tx, rx, *_ = pipe_pair(h)
    send(tx, [60, 60])
    h.sync(a, Ioctl.NIOCTXSYNC)
    tx.head = tx.cur = 1  # behind hwcur: nonsense
    assert h.sync(a, Ioctl.NIOCTXSYNC) == 0
    assert (tx.head, tx.cur, tx.tail) == (2, 2, 7), "back to the kernel's view"
    h.sync(b, Ioctl.NIOCRXSYNC)
    assert rx.tail == 2, "nothing was sent twice"
    tx.head = 99  # out of range
    assert h.dev.poll(CALLER, a, select.POLLOUT, None) & select.POLLERR
    assert (tx.head, tx.cur, tx.tail) == (2, 2, 7)


def test_invalid_buffer_index_is_refused_and_not_sent(h):
    a, b, tx, rx, *_ = pipe_pair(h)
    tx.slot[0].buf_idx = 1  # reserved
    tx.slot[1].buf_idx = 10**6  # beyond the pool
    tx.slot[2].len = 4000  # beyond the buffer
    send(tx, [60, 60, 60])
    tx.slot[2].len = 4000
    assert h.sync(a, Ioctl.NIOCTXSYNC) == 0
    assert (tx.head, tx.tail) == (0, 7), "the batch came back to the user"
    assert (tx.slot[0].buf_idx, tx.slot[1].buf_idx, tx.slot[2].len) == (0, 0, 0)
    h.sync(b, Ioctl.NIOCRXSYNC)
    assert rx.tail == 0


def test_abuse_never_hands_a_buffer_out_twice(h):
    a, b, tx, rx, *_ = pipe_pair(h)
    victim = h.open()
    _, rv, _ = h.register(victim, "v", nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=8, nr_rx_slots=8)
    held = {h.ring(h.nifp(rv.nr_offset), i).slot[k].buf_idx for i in (0, 1) for k in range(8)}
    # the pipe client copies one of the victim's buffers into all its slots and leaves
    stolen = next(iter(held))
    for k in range(8):
        tx.slot[k].buf_idx = stolen
    h.dev.release(a)
    h.dev.release(b)
    fresh = h.open()
    _, rf, _ = h.register(fresh, "f", nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=8, nr_rx_slots=8)
    given = {h.ring(h.nifp(rf.nr_offset), i).slot[k].buf_idx for i in (0, 1) for k in range(8)}
    assert not given & held
    assert h.mem.statistics()["buf"].used == 32
    h.dev.release(victim)
    h.dev.release(fresh)
    assert h.mem.statistics()["buf"].used == 0 and h.mem.statistics()["ring"].used == 0


def test_exclusive_and_shared_bindings(h):
    a, b, *_ = pipe_pair(h, "q")
    c = h.open()
    assert h.register(c, "q{1", mode=RegMode.ALL_NIC, mem_id=0)[0] == 0, "several fds may share a port"
    d = h.open()
    assert h.register(d, "q{1", mode=RegMode.ALL_NIC, mem_id=0, nr_flags=RegFlag.EXCLUSIVE)[0] == errno.EBUSY
    e, f = h.open(), h.open()
    assert h.register(e, "r{1", mode=RegMode.ALL_NIC, mem_id=0, nr_flags=RegFlag.EXCLUSIVE)[0] == 0
    assert h.register(f, "r{1", mode=RegMode.ALL_NIC, mem_id=0)[0] == errno.EBUSY


def test_one_nic_selects_a_ring(h):
    a = h.open()
    err, reg, _ = h.register(a, "m{1", mode=RegMode.ONE_NIC, mem_id=0, nr_ringid=2, nr_tx_rings=4, nr_rx_rings=4)
    assert err == 0
    nifp = h.nifp(reg.nr_offset)
    assert [bool(nifp.ring_ofs[i]) for i in range(8)] == [False, False, True, False] * 2
    b = h.open()
    assert h.register(b, "m{1", mode=RegMode.ONE_NIC, mem_id=0, nr_ringid=9)[0] == errno.EINVAL
    assert h.register(b, "m{1", mode=RegMode.SW, mem_id=0)[0] == errno.EINVAL


def test_pipe_gone_when_both_ends_close(h):
    a, b, *_ = pipe_pair(h, "g")
    h.dev.release(a)
    assert ("g", "1") in h.core.driver("pipe").pairs
    h.dev.release(b)
    assert not h.core.driver("pipe").pairs
    assert h.mem.statistics()["buf"].used == 0


def _ts_us(ring) -> int:
    return ring.ts.tv_sec * 1_000_000 + ring.ts.tv_usec


def test_every_rxsync_and_rx_poll_stamps_the_ring_with_the_wall_clock(h):
    a, b, tx, rx, *_ = pipe_pair(h)
    assert not rx.flags & RingFlag.TIMESTAMP, "not asked for"
    for how in ("rxsync", "poll"):
        rx.ts.tv_sec = rx.ts.tv_usec = 0
        send(tx, [60])
        h.sync(a, Ioctl.NIOCTXSYNC)
        before = time.time_ns() // 1000
        if how == "rxsync":
            assert h.sync(b, Ioctl.NIOCRXSYNC) == 0
        else:
            assert h.dev.poll(CALLER, b, select.POLLIN, None) & select.POLLIN
        after = time.time_ns() // 1000
        assert before <= _ts_us(rx) <= after, how
        rx.head = rx.cur = rx.tail
    # netmap_no_timestamp: only NR_TIMESTAMP rings are stamped
    kring_mod.NO_TIMESTAMP = True
    try:
        rx.ts.tv_sec = rx.ts.tv_usec = 0
        h.sync(b, Ioctl.NIOCRXSYNC)
        assert _ts_us(rx) == 0
        rx.flags |= RingFlag.TIMESTAMP
        h.sync(b, Ioctl.NIOCRXSYNC)
        assert _ts_us(rx) > 0
    finally:
        kring_mod.NO_TIMESTAMP = False


def test_a_reinitialised_rx_ring_is_still_synced(h):
    # netmap's NIOCRXSYNC and poll run the rxsync after netmap_ring_reinit
    a, b, tx, rx, *_ = pipe_pair(h)
    send(tx, [60, 61])
    h.sync(a, Ioctl.NIOCTXSYNC)
    rx.head = 99  # out of range
    assert h.sync(b, Ioctl.NIOCRXSYNC) == 0
    assert (rx.head, rx.cur, rx.tail) == (0, 0, 2), "reset to the kernel's view, and the frames arrived"
    rx.head = rx.cur = 2
    send(tx, [62])
    h.sync(a, Ioctl.NIOCTXSYNC)
    rx.cur = 1  # behind head
    assert h.dev.poll(CALLER, b, select.POLLIN, None) == select.POLLIN | select.POLLERR
    assert (rx.head, rx.tail) == (0, 3) and rx.slot[2].len == 62
