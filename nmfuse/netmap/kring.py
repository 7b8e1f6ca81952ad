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

rhead/rcur/rtail are the values the kernel last accepted.  The prologues
check the user's head/cur against them; a nonsensical ring (head outside
its window, cur behind head, ...) is refused and reinitialised, never
trusted.  Those rules and the pointers themselves live in C (csrc/sync.c,
``struct nmh_kring``), shared with the C fast path: the pointer fields
here are properties over that struct.

Each kring carries netmap's two callbacks, ``nm_sync(kring)`` (the
adapter's txsync or rxsync) and ``nm_notify(kring)`` (what ``notify``
runs: by default, waking the pollers).  Whoever must see a ring's traffic
without being its driver (a monitor, a switch wrapping a port) replaces
them and calls the saved ones, as netmap does; ``mon`` holds a monitor's
state for the ring.
"""

import time
from contextlib import contextmanager

from nmfuse._helper import ffi, lib

TX, RX = 0, 1
DIRECTIONS = (TX, RX)
DIR_NAME = ("tx", "rx")


# netmap's netmap_no_timestamp sysctl, off by default: rxsyncs stamp the ring.
NO_TIMESTAMP = False


class _CField:
    """A kring attribute kept in its C struct (``kring.c``): C syncs and
    Python read and write the one value."""

    def __init__(self, doc: str, field: str | None = None):
        self.__doc__ = doc
        self.field = field

    def __set_name__(self, owner, name: str) -> None:
        self.field = self.field or name

    def __get__(self, kring, owner=None):
        return self if kring is None else getattr(kring.c, self.field)

    def __set__(self, kring, value) -> None:
        setattr(kring.c, self.field, value)


class Kring:
    """One ring of an adapter, in one direction.

    ``ring`` is the netmap_ring in shared memory (None while no binding
    needs it); the rest is the kernel's private view.
    """

    __slots__ = (
        "__weakref__",
        "_nm_notify",
        "_nm_sync",
        "_peer",
        "_ring",
        "adapter",
        "c",
        "direction",
        "exclusive",
        "host",
        "index",
        "mon",
        "name",
        "need_ring",
        "offset_gap",
        "offset_max",
        "ring_offset",
        "waiters",
    )

    def __init__(self, adapter, direction: int, index: int, num_slots: int, host: bool = False):
        self.adapter = adapter
        self.direction = direction
        self.index = index
        self.host = host
        # the C state the sync rules work on (struct nmh_kring)
        self.c = ffi.new("struct nmh_kring *", {"nkr_num_slots": num_slots, "tx": int(direction == TX),
                                                "wait_fd": -1})
        waiter = adapter.core.c_waiter
        if waiter is not None:   # pollers of this ring can be woken from C
            self.c.waiter = waiter.state
        self._ring = None
        self.name = f"{adapter.name} {DIR_NAME[direction]}{index}"
        self.ring_offset = 0
        self.exclusive = False
        self.need_ring = False       # a peer needs this ring even without users (pipes)
        self.offset_max = self.offset_gap = 0
        self.waiters: set[int] = set()  # FUSE poll handles to wake
        self._peer = None
        self._nm_notify = adapter.wake_pollers
        self.nm_sync = adapter.txsync if direction == TX else adapter.rxsync
        self.mon = None              # monitor state (nmfuse.drivers.monitor)
        self.reset_pointers()

    @property
    def nm_sync(self):
        """The ring's sync callback (netmap's nm_sync): the adapter's txsync or
        rxsync, or what a monitor or a switch put in their place.  The C
        fast path syncs the ring only while it is the adapter's own and the
        adapter's sync is C (``Adapter.c_sync``)."""
        return self._nm_sync

    @nm_sync.setter
    def nm_sync(self, fn) -> None:
        self._nm_sync = fn
        self._c_sync_update()

    @property
    def nm_notify(self):
        """The ring's notify callback (netmap's nm_notify): by default waking
        its pollers; a monitor or a switch may take it over, and then only
        Python syncs the ring (its notify must run on every move)."""
        return self._nm_notify

    @nm_notify.setter
    def nm_notify(self, fn) -> None:
        self._nm_notify = fn
        self._c_sync_update()

    def _c_sync_update(self) -> None:
        adapter = self.adapter
        own = adapter.txsync if self.direction == TX else adapter.rxsync
        mine = self._nm_sync == own and self._nm_notify == adapter.wake_pollers
        self.c.c_sync = adapter.ring_c_sync(self) if mine else lib.NMH_SYNC_PYTHON
        adapter.kring_callbacks_changed(self)

    # -- the pointers, kept in the C struct --

    @property
    def ring(self):
        """The netmap_ring in shared memory, or None."""
        return self._ring

    @ring.setter
    def ring(self, ring) -> None:
        self._ring = ring
        self.c.ring = ffi.NULL if ring is None else ring

    num_slots = _CField("Slots in the ring (nkr_num_slots).", "nkr_num_slots")
    hwcur = _CField("The next slot the kernel processes (nr_hwcur).", "nr_hwcur")
    hwtail = _CField("The first slot the kernel still owns (nr_hwtail).", "nr_hwtail")
    rhead = _CField("The head the kernel last accepted.")
    rcur = _CField("The cur the kernel last accepted.")
    rtail = _CField("The tail the kernel last published.")
    @property
    def peer(self):
        """Pipes: the peer's kring in the other direction, or None."""
        return self._peer

    @peer.setter
    def peer(self, kring) -> None:
        self._peer = kring
        self.c.peer = ffi.NULL if kring is None else kring.c

    pipe_tail = _CField("Pipes: the hwtail the peer's syncs published for this ring.")
    offset_mask = _CField("The mask of slot.ptr that holds a buffer offset (OFFSETS option), 0: none.")
    stats_packets = _CField("Slots synced.")
    stats_errors = _CField("Reinits and bad slots seen: rings the user broke.")
    users = _CField("Bindings using the ring.")
    stats_bytes = _CField("Bytes of the frames synced (drivers that count them).")
    stats_drops = _CField("Frames the driver dropped.")

    @contextmanager
    def held(self):
        """Hold the ring as a sync does (netmap's nm_kr_tryget), waiting
        out a C sync in flight (they are short): a driver changes what its
        C sync uses, or syncs outside a request, only so, since C syncs run
        without the core lock."""
        while lib.nmh_kring_tryget(self.c) < 0:
            time.sleep(0.0001)
        try:
            yield
        finally:
            lib.nmh_kring_put(self.c)

    def reset_pointers(self) -> None:
        """Put the kernel's view back at the start: an empty RX ring, a TX ring
        with every slot but one free."""
        lib.nmh_kring_reset(self.c)

    def take_waiters(self) -> int:
        """Take the ring's poll handles over from C (a C poll may have left
        some in ``c.kh``): they join ``waiters`` and the ring is
        NMH_WAIT_BUSY until ``arm`` or a wake.  Returns the state before."""
        c = self.c
        before = lib.nmh_kring_wait_take(c)
        if before == lib.NMH_WAIT_ARMED and c.nkh <= lib.NMH_KH:
            self.waiters.update(c.kh[i] for i in range(c.nkh))
        return before

    def wait_on(self, fd: int | None) -> None:
        """The driver can move this ring when ``fd`` is readable (None: no
        such fd any more): polls the C fast path leaves waiting are woken
        by the C waiter's epoll on it.  Call with the ring held (no C
        sync or poll running on it)."""
        waiter = self.adapter.core.c_waiter
        if self.c.watched and waiter is not None:
            waiter.unwatch(self)
        self.c.wait_fd = -1 if fd is None else fd
        if fd is not None and waiter is not None:
            waiter.watch(self)

    def arm(self) -> None:
        """Tell the C fast path who waits on this ring (``waiters``), so that
        a C sync moving it wakes them itself.  The caller set
        ``c.waiting`` to NMH_WAIT_BUSY first (then the C path leaves
        wake-ups to the waker while the handles change)."""
        c, khs = self.c, list(self.waiters)
        if len(khs) <= lib.NMH_KH:
            for i, kh in enumerate(khs):
                c.kh[i] = kh
            c.nkh = len(khs)
        else:
            c.nkh = lib.NMH_KH + 1   # too many: the waker wakes them
        c.wait_cpu = lib.NMH_CPU_UNKNOWN
        c.waiting = lib.NMH_WAIT_ARMED if khs else lib.NMH_WAIT_NONE

    @property
    def is_tx(self) -> bool:
        """Whether this is a TX ring."""
        return self.direction == TX

    def wants_ring(self) -> bool:
        """Whether the kring needs a ring in shared memory: a binding uses it, or
        a peer does (pipes)."""
        return self.users > 0 or self.need_ring

    def finalize(self) -> None:
        """Publish hwtail as the user's tail (netmap's nm_sync_finalize), for
        a driver that moves the ring outside a sync."""
        lib.nmh_sync_finalize(self.c)

    def timestamp(self) -> None:
        """ring->ts = the wall clock in microseconds (netmap's microtime),
        after every rxsync: always, unless NO_TIMESTAMP is set and the ring
        does not ask for it with NR_TIMESTAMP (ring_timestamp_set)."""
        lib.nmh_ring_timestamp(self.c, NO_TIMESTAMP)

    # -- slot accounting, used by drivers --

    def space(self) -> int:
        """RX: slots the kernel may still fill; TX: slots pending to send."""
        n = self.num_slots
        if self.direction == TX:
            return (self.rhead - self.hwcur) % n
        return (self.hwcur - 1 - self.hwtail) % n

