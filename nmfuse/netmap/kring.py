"""Kernel-side ring state and the sync prologues (netmap's netmap_kring).

Ring ownership, as netmap defines it.  The user owns the slots from head
up to (not including) tail; the kernel owns the rest.  For one ring:

      hwcur        rhead=head    cur          rtail=tail     hwtail
    ----+-------------+-----------+---------------+---------------+----
        | kernel busy |   user    |    user       |  kernel free  |
        | (TX: being  |  (filled, |  (not yet     |  (TX: room    |
        |  sent)      |  released)|   released)   |   later)      |

* TX: the user fills [head, tail) and moves head; txsync sends
  [hwcur, head), makes hwcur = head, and reports reclaimed room by moving
  hwtail (and so tail).  One slot always stays empty: tail starts at n-1.
* RX: rxsync delivers new frames by moving hwtail; the user consumes
  [head, tail) and returns slots by moving head, which becomes hwcur.

rhead/rcur/rtail are the values the kernel last accepted.  A prologue
checks the user's head/cur against them; a nonsensical ring (head outside
its window, cur behind head, ...) is refused and reinitialised, never
trusted.

Each kring carries netmap's two callbacks, ``nm_sync(kring)`` (the
adapter's txsync or rxsync) and ``nm_notify(kring)`` (what ``notify``
runs: by default, waking the pollers).  Whoever must see a ring's traffic
without being its driver (a monitor, a switch wrapping a port) replaces
them and calls the saved ones, as netmap does; ``mon`` holds a monitor's
state for the ring.
"""

import time

from nmfuse.abi.netmap import RingFlag

TX, RX = 0, 1
DIRECTIONS = (TX, RX)
DIR_NAME = ("tx", "rx")


# netmap's netmap_no_timestamp sysctl, off by default: rxsyncs stamp the ring.
NO_TIMESTAMP = False


class Kring:
    """One ring of an adapter, in one direction.

    ``ring`` is the netmap_ring in shared memory (None while no binding
    needs it); the rest is the kernel's private view.
    """

    __slots__ = (
        "adapter", "direction", "index", "host", "num_slots", "name",
        "ring", "ring_offset", "hwcur", "hwtail", "rhead", "rcur", "rtail",
        "users", "exclusive", "need_ring", "offset_mask", "offset_max", "offset_gap",
        "waiters", "peer", "pipe_tail", "stats_packets", "stats_bytes", "stats_drops", "stats_errors",
        "nm_sync", "nm_notify", "mon", "__weakref__",
    )

    def __init__(self, adapter, direction: int, index: int, num_slots: int, host: bool = False):
        self.adapter = adapter
        self.direction = direction
        self.index = index
        self.host = host
        self.num_slots = num_slots
        self.name = f"{adapter.name} {DIR_NAME[direction]}{index}"
        self.ring = None
        self.ring_offset = 0
        self.users = 0
        self.exclusive = False
        self.need_ring = False       # a peer needs this ring even without users (pipes)
        self.offset_mask = self.offset_max = self.offset_gap = 0
        self.waiters: set[int] = set()  # FUSE poll handles to wake
        self.peer = None
        self.pipe_tail = 0
        self.stats_packets = self.stats_bytes = self.stats_drops = self.stats_errors = 0
        self.nm_sync = adapter.txsync if direction == TX else adapter.rxsync
        self.nm_notify = adapter.wake_pollers
        self.mon = None              # monitor state (nmfuse.drivers.monitor)
        self.reset_pointers()

    def reset_pointers(self) -> None:
        """Put the kernel's view back at the start: an empty RX ring, a TX ring
        with every slot but one free."""
        self.hwcur = self.rhead = self.rcur = 0
        # netmap keeps one slot empty: a TX ring starts with n-1 free slots
        self.hwtail = self.rtail = (self.num_slots - 1) if self.direction == TX else 0

    @property
    def is_tx(self) -> bool:
        """Whether this is a TX ring."""
        return self.direction == TX

    def wants_ring(self) -> bool:
        """Whether the kring needs a ring in shared memory: a binding uses it, or
        a peer does (pipes)."""
        return self.users > 0 or self.need_ring

    # -- the prologues; both return False on a ring the user broke --

    def txsync_prologue(self, head: int | None = None, cur: int | None = None) -> bool:
        """Check head/cur of a TX ring (netmap's nm_txsync_prologue): the
        ring's, or the ``head``/``cur`` given (CSB mode: the ring's tail is
        then the application's business and left alone).

        We want  hwcur <= rhead <= head <= cur <= tail = rtail <= hwtail.
        """
        ring = self.ring
        shadow = head is not None
        if not shadow:
            head, cur = ring.head, ring.cur
        rtail = self.rtail
        if not in_window(head, cur, self.rhead, rtail, self.num_slots):
            return False
        if not shadow and ring.tail != rtail:
            ring.tail = rtail
        self.rhead, self.rcur = head, cur
        return True

    def rxsync_prologue(self, head: int | None = None, cur: int | None = None) -> bool:
        """Check head/cur of an RX ring (netmap's nm_rxsync_prologue), the
        ring's or those given (as for ``txsync_prologue``).

        We want  hwcur <= head <= cur <= tail <= hwtail.
        """
        ring = self.ring
        shadow = head is not None
        if not shadow:
            head, cur = ring.head, ring.cur
        self.rcur, self.rhead = cur, head
        if not in_window(head, cur, self.hwcur, self.hwtail, self.num_slots):
            return False
        if not shadow and ring.tail != self.rtail:
            ring.tail = self.rtail
        return True

    def finalize(self) -> None:
        """After a successful sync: publish hwtail as the user's tail."""
        self.ring.tail = self.rtail = self.hwtail

    def reinit(self, pool) -> bool:
        """Repair a ring the user broke (netmap's netmap_ring_reinit).

        Invalid buffer indexes become 0 with length 0 and oversized lengths
        0; if head, cur or tail were out of range they are reset from the
        kernel's hwcur/hwtail.  Returns True if the pointers were reset.
        """
        ring = self.ring
        lim = self.num_slots - 1
        self.rhead, self.rcur, self.rtail = ring.head, ring.cur, ring.tail
        errors = (ring.cur > lim) + (ring.head > lim) + (ring.tail > lim)
        buf_size = pool.objsize
        slot = ring.slot
        for i in range(self.num_slots):
            s = slot[i]
            if not pool.valid(s.buf_idx):
                s.buf_idx = 0
                s.len = 0
            elif s.len > buf_size:
                s.len = 0
        self.stats_errors += 1
        if errors:
            ring.head = ring.cur = self.rhead = self.rcur = self.hwcur
            ring.tail = self.rtail = self.hwtail
        return bool(errors)

    def timestamp(self) -> None:
        """ring->ts = the wall clock in microseconds (netmap's microtime),
        after every rxsync: always, unless NO_TIMESTAMP is set and the ring
        does not ask for it with NR_TIMESTAMP (ring_timestamp_set)."""
        if not NO_TIMESTAMP or self.ring.flags & RingFlag.TIMESTAMP:
            now = time.time_ns() // 1000
            self.ring.ts.tv_sec, self.ring.ts.tv_usec = divmod(now, 1_000_000)

    # -- slot accounting, used by drivers --

    def space(self) -> int:
        """RX: slots the kernel may still fill; TX: slots pending to send."""
        n = self.num_slots
        if self.direction == TX:
            return (self.rhead - self.hwcur) % n
        return (self.hwcur - 1 - self.hwtail) % n


def in_window(head: int, cur: int, lo: int, hi: int, n: int) -> bool:
    """lo <= head <= cur <= hi on a ring of n slots, where [lo, hi] may wrap
    (the check both of netmap's sync prologues make)."""
    if head >= n or cur >= n:
        return False
    if hi >= lo:
        return lo <= head <= cur <= hi
    if hi < head < lo:
        return False
    if head <= hi:
        return head <= cur <= hi
    return not hi < cur < head

