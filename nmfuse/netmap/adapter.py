"""The port object every driver extends (netmap's netmap_adapter).

A driver module (nmfuse/drivers/*.py) subclasses ``Adapter`` and overrides
what its port type does differently; every method and capability below has
a default that fits a port moved only by syncs:

    krings_create/krings_delete   kernel-side rings    one per ring, plain
    register(on)                  first bind/last unbind  nothing
    txsync/rxsync(kring)          the per-ring work     succeed, move nothing
    poll_wait(kring)              a poller waits        nothing to arm
    destroy()                     last reference gone   nothing
    set_virt_hdr_len(n)           PORT_HDR_SET          ENXIO (no header)
    forward_up(kring)             transparent mode      nothing
    has_host_rings, supports_offsets, kind              class attributes

Everything shared by all port types (reference counting, rings in shared
memory, wake-ups) is here once.  The port-type side of the contract (name
lookups, extra requests) is ``driver.Driver``.
"""

import errno
import logging
from contextlib import ExitStack

from nmfuse._helper import ffi, lib
from nmfuse.mem.allocator import ring_bytes
from nmfuse.netmap.kring import DIRECTIONS, RX, TX, Kring

log = logging.getLogger("nmfuse.netmap")


def bound_var(value: int, default: int, lo: int, hi: int) -> int:
    """netmap's nm_bound_var: below lo takes the default, above hi is clamped."""
    default = min(max(default, lo), hi)
    if value < lo:
        return default
    return min(value, hi)


class Adapter:
    """A netmap port: its ring geometry, krings, users and references.

    Attributes a driver sets: ``kind`` (shown by status), ``has_host_rings``
    (NAF_HOST_RINGS), ``supports_offsets`` (NAF_OFFSETS).
    """

    kind = "port"
    has_host_rings = False
    supports_offsets = False
    #: the switch port this port is attached as (netmap's na_vp), if any
    na_vp = None
    #: how many monitors were opened on this port (names them: NAME/r#N)
    monitor_id = 0
    #: the C sync (csrc/sync.h NMH_SYNC_*) doing what txsync/rxsync do, which
    #: lets the C fast path serve the port's syncs; NMH_SYNC_PYTHON: none
    c_sync = lib.NMH_SYNC_PYTHON

    def __init__(self, core, name: str, *, tx_rings: int, rx_rings: int,
                 tx_slots: int, rx_slots: int, host_tx_rings: int = 0, host_rx_rings: int = 0,
                 mem=None):
        self.core = core
        self.mem = (mem or core.mem).hold()   # held until the port goes (release_memory)
        self._mem_held = True
        self.name = name
        self.num_rings = [tx_rings, rx_rings]
        self.num_slots = [tx_slots, rx_slots]
        self.num_host_rings = [host_tx_rings, host_rx_rings] if self.has_host_rings else [0, 0]
        self.krings: list[list[Kring]] | None = None
        self.active_fds = 0
        self.refs = 0
        self.virt_hdr_len = 0
        self.owned_by_kernel = False   # e.g. attached to a VALE switch
        self.bindings: set = set()
        self.waiters: set[int] = set()  # pollers bound to all rings of a direction

    # -- the driver interface ------------------------------------------------

    def krings_create(self) -> None:
        """Create the kernel-side rings (hardware then host, per direction)."""
        self.krings = [
            [Kring(self, d, i, self.num_slots[d], host=i >= self.num_rings[d])
             for i in range(self.all_rings(d))]
            for d in DIRECTIONS
        ]

    def krings_delete(self) -> None:
        """Drop the kernel-side rings (netmap_krings_delete)."""
        self.krings = None

    def register(self, on: bool) -> None:
        """Called when the first binding arrives (True) or the last leaves."""

    def ring_c_sync(self, kring: Kring) -> int:
        """The C sync of ``kring`` (NMH_SYNC_*): ``c_sync`` for every ring
        unless the driver says otherwise."""
        return self.c_sync

    def kring_callbacks_changed(self, kring: Kring) -> None:
        """``kring``'s nm_sync or nm_notify changed (a monitor, a switch or
        a sync-kloop took them over or gave them back; its ``c.c_sync``
        says whether the C fast path may still sync it).  Nothing by
        default."""

    def c_moves(self, kring: Kring) -> list:
        """The krings besides ``kring`` that its C sync may move, whose
        wake-ups it may leave flagged for the waker (FastWaker): a pipe's
        peer by default."""
        return [] if kring.peer is None else [kring.peer]

    def txsync(self, kring: Kring) -> int:
        """Send [hwcur, rhead); return 0 or an errno."""
        return 0

    def rxsync(self, kring: Kring) -> int:
        """Deliver new frames by moving hwtail; return 0 or an errno."""
        return 0

    def destroy(self) -> None:
        """The last reference is gone."""

    def set_virt_hdr_len(self, value: int) -> None:
        """PORT_HDR_SET: frames now carry a ``value``-byte virtio-net header.

        Raises:
            OSError: ENXIO, the default: this port type has no such header.
        """
        raise OSError(errno.ENXIO, f"{self.name} has no port header")

    def poll_wait(self, kring: Kring) -> None:
        """A poller now waits on ``kring`` (its handle is in kring.waiters).
        A driver whose frames arrive on their own arms its wake-up here;
        drivers moved only by syncs need nothing."""

    def forward_up(self, kring: Kring) -> None:
        """Transparent mode: give the host stack the frames released on
        hardware RX ring ``kring`` [hwcur, rhead) whose slot has NS_FORWARD,
        clearing the flag (see netmap/forward.py).  Asked only of adapters
        with host rings."""

    # -- shared machinery ------------------------------------------------

    def nrings(self, d: int) -> int:
        """Hardware rings in direction ``d`` (nma_get_nrings)."""
        return self.num_rings[d]

    def all_rings(self, d: int) -> int:
        """Hardware and host rings in direction ``d`` (netmap_real_rings)."""
        return self.num_rings[d] + self.num_host_rings[d]

    def get(self) -> "Adapter":
        """Take a reference; returns the adapter (netmap_adapter_get)."""
        if not self._mem_held:   # a port found again after its last put (a pipe end, a TAP)
            self.mem.hold()
            self._mem_held = True
        self.refs += 1
        return self

    def put(self) -> None:
        """Drop a reference; the last one calls ``destroy`` (netmap_adapter_put)."""
        self.refs -= 1
        if self.refs == 0:
            self.destroy()
            self.release_memory()

    def release_memory(self) -> None:
        """The port is gone: drop its hold on its memory (once), so that
        external memory goes with the last port in it."""
        if self._mem_held:
            self._mem_held = False
            self.mem.drop()

    def rings_create(self) -> None:
        """Give every kring that needs one a ring in shared memory.

        Raises:
            OSError(ENOMEM): memory ran out; rings made so far remain and
                are undone by ``rings_delete`` once their users are gone.
        """
        for d in DIRECTIONS:
            for kring in self.krings[d]:
                if kring.ring is None and kring.wants_ring():
                    self._ring_create(kring)

    def rings_delete(self) -> None:
        """Drop the rings no binding needs any more; their buffers return
        to the pool at the next sweep."""
        for d in DIRECTIONS:
            for kring in self.krings[d] if self.krings else ():
                if kring.ring is not None and not kring.wants_ring():
                    self.mem.ring_free(kring.ring_offset)
                    kring.ring = None
                    kring.ring_offset = 0
                    kring.offset_mask = kring.offset_max = kring.offset_gap = 0

    def ring_owns_buffers(self, kring: Kring) -> bool:
        """Whether a new ring gets buffers of its own (else buffer 0 everywhere)."""
        return True

    def _ring_create(self, kring: Kring) -> None:
        mem, n = self.mem, kring.num_slots
        if n == 0:
            raise OSError(errno.EINVAL, f"{kring.name}: zero slots")
        with ExitStack() as undo:
            offset = mem.ring_alloc(n)
            undo.callback(mem.ring_free, offset)
            bufs = mem.bufs.alloc(n) if self.ring_owns_buffers(kring) else ffi.new("uint32_t[]", n)
            undo.pop_all()
        ring = mem.region.ptr("struct netmap_ring *", offset)
        ffi.memmove(ring, bytes(ffi.sizeof("struct netmap_ring")), ffi.sizeof("struct netmap_ring"))
        ring.buf_ofs = mem.bufs.offset - offset
        ring.num_slots = n
        ring.nr_buf_size = mem.buf_size
        ring.ringid = kring.index
        ring.dir = kring.direction
        kring.reset_pointers()
        ring.head = ring.cur = kring.hwcur
        ring.tail = kring.hwtail
        lib.nmh_slots_fill(ring.slot, n, bufs, mem.buf_size if self.ring_owns_buffers(kring) else 0)
        kring.ring = ring
        kring.ring_offset = offset

    def notify(self, kring: Kring) -> None:
        """``kring`` moved (netmap's nm_notify): run its notify callback,
        which wakes its pollers unless a monitor or a switch took it over."""
        kring.nm_notify(kring)

    def wake_pollers(self, kring: Kring) -> None:
        """Wake the pollers of ``kring`` and of its whole direction."""
        wake = self.core.wake
        before = kring.take_waiters()   # with the handles a C poll left
        if kring.waiters:
            for kh in kring.waiters:
                wake(kh)
            kring.waiters.clear()
        kring.c.nkh = 0
        # a poll that goes on waiting says so again; one of ours in progress keeps the ring
        kring.c.waiting = lib.NMH_WAIT_BUSY if before == lib.NMH_WAIT_BUSY else lib.NMH_WAIT_NONE
        if self.waiters:
            for kh in self.waiters:
                wake(kh)
            self.waiters.clear()

    def monitors_stop(self) -> None:
        """The port leaves netmap mode: its monitors lose it (netmap_monitor_stop)."""
        for d in DIRECTIONS:
            for kring in self.krings[d] if self.krings else ():
                if kring.mon is not None:
                    kring.mon.stop(kring)

    def info(self) -> dict:
        """Geometry as the REGISTER / PORT_INFO_GET bodies report it."""
        return {
            "nr_tx_rings": self.num_rings[TX], "nr_rx_rings": self.num_rings[RX],
            "nr_tx_slots": self.num_slots[TX], "nr_rx_slots": self.num_slots[RX],
            "nr_host_tx_rings": self.num_host_rings[TX], "nr_host_rx_rings": self.num_host_rings[RX],
        }

    def bounded_slots(self, asked: int, limits: tuple[int, int, int]) -> int:
        """netmap's nm_bound_var for a ring's slots: ``limits`` = (default,
        least, most), the most also bounded by what a ring of this memory holds."""
        default, lo, hi = limits
        return bound_var(asked, default, lo, min(hi, self.max_slots()))

    def ask_slots_and_host_rings(self, reg, limits: tuple[int, int, int], max_host_rings: int) -> None:
        """What a request that finds a hardware-like port unbound chooses:
        its slots (``bounded_slots``) and, when it asks, its host rings
        (netmap_get_na: a nonzero count sets them, and the choice sticks)."""
        self.num_slots = [self.bounded_slots(reg.nr_tx_slots, limits), self.bounded_slots(reg.nr_rx_slots, limits)]
        for d, asked in ((TX, reg.nr_host_tx_rings), (RX, reg.nr_host_rx_rings)):
            if asked:
                self.num_host_rings[d] = min(asked, max_host_rings)

    def max_slots(self) -> int:
        """The most slots a ring of this memory can have."""
        return (self.mem.rings.objsize - ring_bytes(0)) // ffi.sizeof("struct netmap_slot")
