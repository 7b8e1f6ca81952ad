"""The sync rules of csrc/sync.c, byte by byte: what each prologue accepts,
what a refused ring looks like after its reinit, and what finalize
publishes (netmap's nm_txsync_prologue, nm_rxsync_prologue,
netmap_ring_reinit, nm_sync_finalize).

Each case builds a ring in a bytearray, runs one rule, and compares the
whole ring with a copy to which only the expected writes were applied, so
a rule that writes anything else fails.
"""

import pytest
from nmfuse._helper import ffi, lib

from nmfuse.mem.allocator import ring_bytes

N = 8
OBJTOTAL = 64
BUFSIZE = 2048


class Ring:
    """A ring of N slots in a bytearray (buffers 10.., length 60) and its kring."""

    def __init__(self, tx: bool, hwcur: int, hwtail: int, rhead=None, rtail=None):
        self.buf = bytearray(ring_bytes(N))
        self.ring = self.view(self.buf)
        self.ring.num_slots = N
        for i in range(N):
            self.ring.slot[i].buf_idx = 10 + i
            self.ring.slot[i].len = 60
        self.k = ffi.new("struct nmh_kring *", {"nkr_num_slots": N, "tx": int(tx), "ring": self.ring})
        lib.nmh_kring_reset(self.k)
        rhead = hwcur if rhead is None else rhead
        rtail = hwtail if rtail is None else rtail
        self.k.nr_hwcur, self.k.nr_hwtail = hwcur, hwtail
        self.k.rhead = self.k.rcur = rhead
        self.k.rtail = rtail
        self.ring.head = self.ring.cur = rhead
        self.ring.tail = rtail

    @staticmethod
    def view(buf):
        return ffi.cast("struct netmap_ring *", ffi.from_buffer(buf))

    def expect(self, **fields):
        """A copy of the ring's bytes with ``fields`` (head, cur, tail) written."""
        copy = bytearray(self.buf)
        ring = self.view(copy)
        for name, value in fields.items():
            setattr(ring, name, value)
        return copy, ring

    def kstate(self):
        k = self.k
        return k.nr_hwcur, k.nr_hwtail, k.rhead, k.rcur, k.rtail


# -- the prologues alone: accepted values --

def test_tx_prologue_accepts_and_restores_tail():
    r = Ring(tx=True, hwcur=2, hwtail=1, rhead=3, rtail=1)   # window [3, 1] wraps
    r.ring.tail = 5                                          # the user overwrote tail
    want, _ = r.expect(tail=1)
    assert lib.nmh_txsync_prologue(r.k, 6, 0) == 6
    assert bytes(r.buf) == bytes(want)
    assert r.kstate() == (2, 1, 6, 0, 1)


def test_rx_prologue_accepts_and_restores_tail():
    r = Ring(tx=False, hwcur=5, hwtail=2)
    r.k.rtail = 2
    r.ring.tail = 7
    want, _ = r.expect(tail=2)
    assert lib.nmh_rxsync_prologue(r.k, 7, 1) == 7
    assert bytes(r.buf) == bytes(want)
    assert r.kstate() == (5, 2, 7, 1, 2)


# every way a TX ring can be broken: (rhead, rtail, head, cur)
TX_BROKEN = [
    (2, 6, 1, 3),   # head behind rhead
    (2, 6, 7, 7),   # head beyond rtail
    (2, 6, 4, 3),   # cur behind head
    (2, 6, 4, 7),   # cur beyond rtail
    (6, 2, 4, 4),   # wrapped window: head in the kernel's part
    (6, 2, 1, 0),   # wrapped, head after the wrap, cur behind it
    (6, 2, 1, 3),   # wrapped, head after the wrap, cur beyond rtail
    (6, 2, 7, 4),   # wrapped, head before the wrap, cur in the kernel's part
    (2, 6, N, 3),   # head out of range
    (2, 6, 3, N),   # cur out of range
]


@pytest.mark.parametrize("rhead, rtail, head, cur", TX_BROKEN)
def test_tx_prologue_refuses_and_begin_reinits(rhead, rtail, head, cur):
    hwcur, hwtail = rhead, (rtail + 1) % N
    r = Ring(tx=True, hwcur=hwcur, hwtail=hwtail, rhead=rhead, rtail=rtail)
    before = r.kstate()
    assert lib.nmh_txsync_prologue(r.k, head, cur) == N
    assert r.kstate() == before                 # a refusal changes nothing
    r.ring.head, r.ring.cur = head, cur
    want, _ = r.expect(head=hwcur, cur=hwcur, tail=hwtail)
    errors = r.k.stats_errors
    assert lib.nmh_txsync_begin(r.k, head, cur, OBJTOTAL, BUFSIZE) == -1
    assert bytes(r.buf) == bytes(want)
    assert r.kstate() == (hwcur, hwtail, hwcur, hwcur, hwtail)
    assert r.k.stats_errors == errors + 1


# every way an RX ring can be broken: (hwcur, hwtail, head, cur)
RX_BROKEN = [
    (2, 6, 1, 3), (2, 6, 7, 7), (2, 6, 4, 3), (2, 6, 4, 7),
    (6, 2, 4, 4), (6, 2, 1, 0), (6, 2, 1, 3), (6, 2, 7, 4),
    (2, 6, N, 3), (2, 6, 3, N),
]


@pytest.mark.parametrize("hwcur, hwtail, head, cur", RX_BROKEN)
def test_rx_prologue_refuses_and_begin_reinits(hwcur, hwtail, head, cur):
    r = Ring(tx=False, hwcur=hwcur, hwtail=hwtail)
    assert lib.nmh_rxsync_prologue(r.k, head, cur) == N
    # netmap stores what the user wrote before checking it
    assert (r.k.rhead, r.k.rcur) == (head, cur)
    r.ring.head, r.ring.cur = head, cur
    want, _ = r.expect(head=hwcur, cur=hwcur, tail=hwtail)
    assert lib.nmh_rxsync_begin(r.k, head, cur, OBJTOTAL, BUFSIZE) == -1
    assert bytes(r.buf) == bytes(want)
    assert r.kstate() == (hwcur, hwtail, hwcur, hwcur, hwtail)


@pytest.mark.parametrize("tx", [True, False])
def test_begin_accepts_a_good_batch(tx):
    r = Ring(tx=tx, hwcur=1, hwtail=6)
    want = bytes(r.buf)
    begin = lib.nmh_txsync_begin if tx else lib.nmh_rxsync_begin
    assert begin(r.k, 4, 5, OBJTOTAL, BUFSIZE) == 0
    assert bytes(r.buf) == want
    assert (r.k.rhead, r.k.rcur) == (4, 5)


@pytest.mark.parametrize("tx", [True, False])
@pytest.mark.parametrize("bad", ["reserved", "beyond", "len"])
def test_a_bad_slot_handed_over_reinits_and_is_repaired(tx, bad):
    r = Ring(tx=tx, hwcur=1, hwtail=6)
    s = r.ring.slot[2]                          # inside [hwcur, head) = [1, 4)
    if bad == "reserved":
        s.buf_idx = 1
    elif bad == "beyond":
        s.buf_idx = OBJTOTAL
    else:
        s.len = BUFSIZE + 1
    r.ring.head = r.ring.cur = 4
    want, ring = r.expect(head=1, cur=1, tail=6)
    if bad == "len":
        ring.slot[2].buf_idx, ring.slot[2].len = r.ring.slot[2].buf_idx, 0
    else:
        ring.slot[2].buf_idx, ring.slot[2].len = 0, 0
    begin = lib.nmh_txsync_begin if tx else lib.nmh_rxsync_begin
    assert begin(r.k, 4, 4, OBJTOTAL, BUFSIZE) == -1
    assert bytes(r.buf) == bytes(want)


def test_a_bad_slot_outside_the_batch_is_not_looked_at():
    r = Ring(tx=True, hwcur=1, hwtail=0)
    r.ring.slot[6].buf_idx = 0                  # the user's, not handed over
    want = bytes(r.buf)
    assert lib.nmh_txsync_begin(r.k, 3, 3, OBJTOTAL, BUFSIZE) == 0
    assert bytes(r.buf) == want


def test_reinit_reports_out_of_range_pointers():
    r = Ring(tx=True, hwcur=3, hwtail=2)
    assert lib.nmh_ring_reinit(r.k, OBJTOTAL, BUFSIZE) == 0
    r.ring.tail = N
    assert lib.nmh_ring_reinit(r.k, OBJTOTAL, BUFSIZE) == 1
    assert (r.ring.head, r.ring.cur, r.ring.tail) == (3, 3, 2)
    assert r.k.stats_errors == 2


def test_reinit_repairs_every_slot():
    r = Ring(tx=False, hwcur=0, hwtail=0)
    r.ring.slot[0].buf_idx = 0
    r.ring.slot[0].len = 5
    r.ring.slot[7].len = BUFSIZE + 1
    want, ring = r.expect()
    ring.slot[0].len = 0
    ring.slot[7].len = 0
    lib.nmh_ring_reinit(r.k, OBJTOTAL, BUFSIZE)
    assert bytes(r.buf) == bytes(want)


def test_finalize_publishes_hwtail():
    r = Ring(tx=False, hwcur=0, hwtail=0)
    r.k.nr_hwtail = 5
    want, _ = r.expect(tail=5)
    lib.nmh_sync_finalize(r.k)
    assert bytes(r.buf) == bytes(want)
    assert r.k.rtail == 5


def test_reset_leaves_one_tx_slot_empty():
    r = Ring(tx=True, hwcur=4, hwtail=2)
    lib.nmh_kring_reset(r.k)
    assert r.kstate() == (0, N - 1, 0, 0, N - 1)
    r = Ring(tx=False, hwcur=4, hwtail=2)
    lib.nmh_kring_reset(r.k)
    assert r.kstate() == (0, 0, 0, 0, 0)


def test_tryget_excludes_a_second_sync():
    r = Ring(tx=True, hwcur=0, hwtail=N - 1)
    assert lib.nmh_kring_tryget(r.k) == 0
    assert lib.nmh_kring_tryget(r.k) == -1
    lib.nmh_kring_put(r.k)
    assert lib.nmh_kring_tryget(r.k) == 0
