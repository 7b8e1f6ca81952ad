"""TAP ports: ``netmap:NAME`` is the Linux TAP interface NAME.

Which names are TAP ports
-------------------------
* the interfaces the daemon creates (``nmfuse mount --tap NAME[:QUEUES]``):
  they exist, non-persistent, for the daemon's life and are deleted when it
  exits (after SIGINT/SIGTERM too; were it killed, closing its fds deletes
  them all the same);
* an existing *persistent* TAP nobody else has attached to (``ip tuntap
  add NAME mode tap [multi_queue]``): the daemon attaches to it with the
  same single/multi-queue kind while a port is bound, and detaches when the
  last binding leaves, so the interface is as it was.
Anything else is not a TAP port: the lookup passes, and the core answers
ENXIO as netmap does for an unknown interface (a TUN or a TAP in use by
another program, i.e. not persistent or with queues attached: EBUSY).

Geometry
--------
Hardware ring i is TAP queue i (IFF_MULTI_QUEUE): as many TX as RX rings,
the queues of a created TAP, or for a persistent multi-queue TAP the rings
the first registration asks for (nr_tx_rings/nr_rx_rings, default 1, at
most MAX_QUEUES).  Slots: DEFAULT_SLOTS unless the request that finds the
port unbound asks for others (nr_tx_slots/nr_rx_slots, bounded as netmap's
nm_bound_var bounds them).  Host rings: one pair, or as many as a request
that finds the port unbound asks (nr_host_tx_rings/nr_host_rx_rings, as
netmap_get_na sets them; at most MAX_QUEUES).  PORT_INFO_GET and NIOCGINFO
report these.

Data path (netmap's native NIC driver, with a TAP fd for the NIC)
-----------------------------------------------------------------
* txsync writes the frames of [hwcur, head) to the queue fd, one writev per
  frame (an NS_MOREFRAG chain is one frame), and moves hwcur past what
  left; slots are reclaimed at once (hwtail = hwcur - 1).  If the fd is
  full the rest stays pending, the fd is armed for writing, and when room
  returns the daemon writes them and wakes the ring's pollers, with or
  without a sync, as a NIC would.  A frame the kernel refuses (the link is
  administratively down: EIO) is dropped and counted.
* rxsync returns the released slots, then reads frames into the free
  ones until the fd is empty or the ring full; a frame longer than a
  buffer becomes an NS_MOREFRAG chain (one that does not fit the free
  slots waits, whole, until the program releases enough).  The core
  stamps the ring after every rxsync, as netmap does.
* PORT_HDR_SET 10 or 12 makes every frame carry that virtio-net header in
  front, passed through the TAP's own (IFF_VNET_HDR, TUNSETVNETHDRSZ) with
  checksum and TSO offloads enabled, so offloaded frames keep their
  metadata both ways.  With 0 (the default) the queues have no header at
  all and offloads are off: the kernel hands over finished frames only.
  (A header costs the kernel about a fifth more per frame, so it is not
  kept on "just in case".)  The interface takes IFF_VNET_HDR only from
  its first queue attached, so turning the header on or off re-attaches
  every queue, the interface held persistent meanwhile; netmap allows the
  change at any time, and so does nmfuse (frames queued in the TAP at that
  moment are lost).
* Per ring counters: frames, bytes (without the virtio-net header), drops.

Host rings: where the kernel's stack is
---------------------------------------
netmap puts a program between a NIC and its host stack: hardware rings
reach the wire, host rings (``NAME^``) the stack.  A TAP has one far end
only, the kernel's stack behind interface NAME, so that stack is attached
to exactly one ring set, chosen the way netmap detaches a NIC's stack:

    nobody holds a host ring             a binding holds a host ring
    (netmap:NAME, NAME-i)                (NAME^, NAME*, NR_REG_ONE_SW, ...)

    hw TX ring i --> queue i --> stack   host TX ring j --> queue j mod Q --> stack
    hw RX ring i <-- queue i <-- stack   host RX ring j <-- queues q, q mod H = j <-- stack
                                         hw TX rings --> (no cable: dropped, counted)
                                         hw RX rings <-- (nothing)

With the host rings taken, the hardware rings are those of a NIC whose
cable is unplugged, which is what netmap shows of a NIC with no wire.  So
a bridge between ``NAME`` and ``NAME^`` (or a program in NR_FORWARD
transparent mode, see netmap/forward.py) never loops a frame back into the
kernel that sent it: the stack's frames reach the host RX ring and leave
through hardware TX into nothing, exactly as on an unplugged NIC.  Frames
forwarded *up* (NS_FORWARD on a hardware RX ring) take the host TX path:
into the stack through queue 0.

Wake-ups and threads
--------------------
All netmap state is touched under ``core.lock``.  The TAP fds sit in the
core's ``FdWaiter`` (fdwait.py), whose epoll fd the daemon's trio loop
waits on (``run_waiters``).  An RX fd is armed only when a poller waits
on its ring (``poll_wait``), a TX fd only while frames are pending: an
idle daemon sleeps.

Link state
----------
When the first port binds, the daemon drains frames queued while nobody
was bound, brings the interface up (netlink, in whatever namespace the
interface now lives) and, for the interfaces it created, turns the carrier
on; when the last binding leaves, the carrier goes off (a persistent TAP
loses it by being detached).  A created interface starts down, without
carrier, with its MTU set so that a frame fits one buffer (buffer size -
14); a larger MTU set later works (frames become chains).  The MTU of a
persistent TAP is left as its owner set it.
"""

import errno
import logging
import os
from contextlib import ExitStack
from functools import partial
from weakref import WeakKeyDictionary

from nmfuse._helper import ffi, lib
from nmfuse.host import tuntap
from nmfuse.host.fdwait import READ, WRITE, FdWaiter
from nmfuse.netmap.adapter import Adapter, bound_var
from nmfuse.netmap.driver import Driver
from nmfuse.netmap.kring import RX, TX

log = logging.getLogger("nmfuse.tap")

DEFAULT_SLOTS = 1024
MIN_SLOTS = 2
MAX_SLOTS = 4096
MAX_QUEUES = 64
SLOT_LIMITS = (DEFAULT_SLOTS, MIN_SLOTS, MAX_SLOTS)
# characters a netmap port spec or the pipe syntax gives a meaning to: a
# created interface whose name has one could not be opened by programs
RESERVED_CHARS = "-*+^/@{}:"

_waiters: "WeakKeyDictionary[object, FdWaiter]" = WeakKeyDictionary()


def waiter(core) -> FdWaiter:
    """The FdWaiter of ``core``'s TAP fds (made on first use)."""
    w = _waiters.get(core)
    if w is None:
        w = _waiters[core] = FdWaiter()
    return w


async def run_waiters(core) -> None:
    """The daemon's hook: serve the wake-ups of ``core``'s TAP ports from
    trio until cancelled (run it in the main thread's nursery)."""
    await waiter(core).run(core.lock)


class TapAdapter(Adapter):
    """A TAP interface as a netmap port; ``fds[i]`` is queue i.

    ``created``: the daemon made the interface and holds its queues for its
    whole life; otherwise it attaches while a port is bound.
    """

    kind = "tap"
    has_host_rings = True
    c_sync = lib.NMH_SYNC_TAP    # hw TX rings: csrc/tap.c, also for the C fast path

    def __init__(self, core, name: str, queues: int, multi_queue: bool, fds=()):
        super().__init__(core, name, tx_rings=queues, rx_rings=queues, tx_slots=DEFAULT_SLOTS,
                         rx_slots=DEFAULT_SLOTS, host_tx_rings=1, host_rx_rings=1)
        self.num_slots = [self.bounded_slots(0, SLOT_LIMITS), self.bounded_slots(0, SLOT_LIMITS)]
        self.multi_queue = multi_queue
        self.created = bool(fds)
        self.fds: list[int] = list(fds)
        self.waiter = waiter(core)
        self.gone = False            # the interface was deleted under us
        self.vnet = False            # the queues were opened with IFF_VNET_HDR
        self.started = False         # register(True) ran: fds watched, carrier on
        self._io = ffi.new("struct nmh_tap_io *")
        self._io.bufbase = self.mem.region.base + self.mem.bufs.offset
        self._io.bufsize = self.mem.buf_size
        self._io.objtotal = self.mem.bufs.objtotal
        self._rxq: dict = {}         # RX kring -> (struct nmh_tap_rxq, its spill)
        self._rx_turn = 0            # host RX: the queue read first
        self._c_rings: list = []     # struct nmh_tap_ring per hw TX ring while started (C sync state)
        self._c_host = None          # the host krings they look at

    # -- geometry ----------------------------------------------------------

    def configure(self, reg) -> None:
        """Rings and slots asked by a request that finds the port unbound."""
        if not self.created and self.multi_queue:
            q = bound_var(max(reg.nr_tx_rings, reg.nr_rx_rings), 1, 1, MAX_QUEUES)
            self.num_rings = [q, q]
        self.ask_slots_and_host_rings(reg, SLOT_LIMITS, MAX_QUEUES)

    def krings_create(self) -> None:
        super().krings_create()
        self._rxq.clear()

    def krings_delete(self) -> None:
        """Delete the krings and the receive queue state kept for the RX ones."""
        super().krings_delete()
        self._rxq.clear()

    # -- binding ---------------------------------------------------------

    def register(self, on: bool) -> None:
        if on:
            self._start()
        else:
            self._stop()

    def _start(self) -> None:
        """Raises OSError (attach, ioctl); then nothing has changed."""
        if not self.created:
            self.vnet = bool(self.virt_hdr_len)
            self.fds = tuntap.open_queues(self.name, self.num_rings[TX], self.multi_queue, self.vnet)
        with ExitStack() as undo:
            undo.callback(self._release_fds)
            for fd in self.fds:
                tuntap.set_hdr(fd, self.virt_hdr_len)
                tuntap.drain(fd)
            if self.created:
                tuntap.set_carrier(self.fds[0], True)
            undo.pop_all()
        self._watch()
        self.started, self.gone = True, False
        self._c_attach()
        try:
            tuntap.link_set(self.fds[0], state="up")
        except OSError as e:
            log.warning("%s: could not bring the link up: %s", self.name, e)

    def _stop(self) -> None:
        self._c_detach()
        self._unwatch()
        self.started = False
        if self.created:
            try:
                tuntap.set_carrier(self.fds[0], False)
            except OSError as e:
                if e.errno != errno.EBADFD:  # EBADFD: the interface was deleted under its queues
                    log.warning("%s: could not drop the carrier: %s", self.name, e.strerror)
        self._release_fds()

    def ring_c_sync(self, kring) -> int:
        """Hardware TX rings sync in C (csrc/tap.c); the others in Python."""
        return self.c_sync if kring.is_tx and not kring.host else lib.NMH_SYNC_PYTHON

    def _c_attach(self) -> None:
        """Give each hardware TX kring its C sync state (struct nmh_tap_ring)."""
        if self.krings is None:
            return
        self._c_host = ffi.new("struct nmh_kring *[]", [k.c for d in (TX, RX) for k in self._host(d)] or 1)
        for kring in self.krings[TX][:self.num_rings[TX]]:
            st = ffi.new("struct nmh_tap_ring *", {"host": self._c_host, "nhost": sum(self.num_host_rings)})
            st.io.bufbase, st.io.bufsize, st.io.objtotal = self._io.bufbase, self._io.bufsize, self._io.objtotal
            self._c_rings.append(st)
        self._c_update()
        for kring, st in zip(self.krings[TX], self._c_rings):
            kring.c.driver = st

    def _c_update(self) -> None:
        """Tell the C state what changed (queues re-attached, header),
        each ring held so that no C sync runs on it meanwhile."""
        for i, st in enumerate(self._c_rings):
            with self.krings[TX][i].held():
                st.fd = self.fds[i] if i < len(self.fds) else -1
                st.io.hdrlen = self.virt_hdr_len

    def _c_detach(self) -> None:
        """Take the C sync state away (each ring held: a C sync finishes first)."""
        for kring, _ in zip(self.krings[TX] if self.krings else (), self._c_rings):
            with kring.held():
                kring.c.driver = ffi.NULL
        self._c_rings, self._c_host = [], None

    def _watch(self) -> None:
        for q, fd in enumerate(self.fds):
            self.waiter.add(fd, partial(self._fd_ready, q))

    def _unwatch(self) -> None:
        for fd in self.fds:
            self.waiter.remove(fd)

    def _release_fds(self) -> None:
        if not self.created:
            for fd in self.fds:
                os.close(fd)
            self.fds = []

    def set_virt_hdr_len(self, hdrlen: int) -> None:
        """PORT_HDR_SET: frames carry a ``hdrlen``-byte virtio-net header.

        Raises:
            OSError: the queues could not be re-attached (they are
                restored as they were when possible).
        """
        if self.fds and bool(hdrlen) != self.vnet:
            self._reattach(bool(hdrlen))
        for fd in self.fds:
            tuntap.set_hdr(fd, hdrlen)
        self.virt_hdr_len = hdrlen
        self._c_update()

    def _reattach(self, vnet: bool) -> None:
        """Reopen every queue with (or without) IFF_VNET_HDR, in whatever
        namespace the interface lives now.  A created interface is made
        persistent meanwhile, so that closing its queues keeps it."""
        old, count = self.fds, len(self.fds)
        name = tuntap.current_name(old[0])
        nsfd = tuntap.netns_of(old[0])
        try:
            if self.created:
                tuntap.set_persist(old[0], True)
            if self.started:
                self._unwatch()
            for fd in old:
                os.close(fd)
            self.fds = []
            try:
                self.fds = tuntap.open_queues(name, count, self.multi_queue, vnet, netns=nsfd)
                self.vnet = vnet
            except OSError:
                self.fds = tuntap.open_queues(name, count, self.multi_queue, self.vnet, netns=nsfd)
                for fd in self.fds:
                    tuntap.set_hdr(fd, self.virt_hdr_len)
                raise
            finally:
                if self.fds:
                    if self.created:
                        tuntap.set_persist(self.fds[0], False)
                        tuntap.set_carrier(self.fds[0], self.started)
                    if self.started:
                        self._watch()
                self._c_update()
        finally:
            os.close(nsfd)

    def stack_on_host(self) -> bool:
        """Whether the kernel's stack talks to the host rings (see above)."""
        return self.krings is not None and any(k.users > 0 for d in (TX, RX) for k in self._host(d))

    def _host(self, d: int):
        """The host krings of direction ``d``."""
        return self.krings[d][self.num_rings[d]:]

    def _host_tx_fd(self, kring) -> int:
        return self.fds[(kring.index - self.num_rings[TX]) % len(self.fds)]

    def _host_rx_for_queue(self, q: int):
        return self.krings[RX][self.num_rings[RX] + q % self.num_host_rings[RX]]

    # -- the data path -----------------------------------------------------

    def _io_for(self, kring):
        """The helper's transfer state, counters zeroed."""
        io = self._io
        io.packets = io.bytes = io.drops = 0
        io.error = io.last_error = 0
        io.hdrlen = self.virt_hdr_len
        return io

    def _account(self, kring, io) -> None:
        kring.stats_packets += io.packets
        kring.stats_bytes += io.bytes
        kring.stats_drops += io.drops
        if errno.EBADFD in (io.error, io.last_error):
            self._lost()

    def _lost(self) -> None:
        if not self.gone:
            self.gone = True
            log.warning("%s: the interface is gone; its rings report errors until unbound", self.name)
            for st in self._c_rings:
                st.gone = 1   # a flag each C sync reads once: set without holding the rings (we may be in one)

    def txsync(self, kring) -> int:
        n = kring.num_slots
        if kring.c.driver != ffi.NULL:   # a hw ring: the C sync (held by the caller)
            ret = lib.nmh_tap_txsync(kring.c)
            event, kring.c.driver_error = kring.c.driver_error, 0
            if event == errno.EAGAIN:
                self.waiter.arm(self.fds[kring.index], WRITE)
            elif event == errno.EBADFD:
                self._lost()
            return errno.ENXIO if self.gone else ret
        if kring.hwcur != kring.rhead and self.fds:
            if kring.host:
                fd, mode = self._host_tx_fd(kring), lib.NMH_TAP_SEND
            else:
                fd = self.fds[kring.index]
                mode = lib.NMH_TAP_DISCARD if self.stack_on_host() or self.gone else lib.NMH_TAP_SEND
            io = self._io_for(kring)
            kring.hwcur = lib.nmh_tap_tx(io, fd, kring.ring.slot, n, kring.hwcur, kring.rhead, mode)
            self._account(kring, io)
            if io.error == errno.EAGAIN:
                self.waiter.arm(fd, WRITE)
        kring.hwtail = (kring.hwcur - 1) % n
        return errno.ENXIO if self.gone else 0

    def _rx_fds(self, kring) -> list[int]:
        """The queue fds whose frames arrive on RX ``kring``."""
        if not kring.host:
            return [] if self.stack_on_host() else self.fds[kring.index:kring.index + 1]
        j, nhost = kring.index - self.num_rings[RX], self.num_host_rings[RX]
        mine = [fd for q, fd in enumerate(self.fds) if q % nhost == j]
        k = self._rx_turn % len(mine) if mine else 0
        return mine[k:] + mine[:k]

    def _rxq_for(self, kring):
        entry = self._rxq.get(kring)
        if entry is None:
            spill = ffi.new("char[]", lib.NMH_TAP_SPILL)
            rxq = ffi.new("struct nmh_tap_rxq *", {"spill": spill})
            entry = self._rxq[kring] = (rxq, spill)
        return entry[0]

    def rxsync(self, kring) -> int:
        n = kring.num_slots
        kring.hwcur = kring.rhead
        fds = self._rx_fds(kring)
        if not fds:
            return errno.ENXIO if self.gone else 0
        io, rxq = self._io_for(kring), self._rxq_for(kring)
        room = kring.space()
        for fd in fds:
            tail = lib.nmh_tap_rx(io, rxq, fd, kring.ring.slot, n, kring.hwtail, room)
            room -= (tail - kring.hwtail) % n
            kring.hwtail = tail
            if io.error == errno.EINVAL:
                kring.stats_errors += 1   # a free slot with a bad buffer: the program broke the ring
            if rxq.pending or io.error not in (0, errno.EAGAIN):
                break
        if kring.host:
            self._rx_turn += 1
        self._account(kring, io)
        return errno.ENXIO if self.gone else 0

    def forward_up(self, kring) -> None:
        if not self.fds or self.gone:
            return
        host = self._host(TX)[0]
        io = self._io_for(host)
        lib.nmh_tap_tx(io, self.fds[0], kring.ring.slot, kring.num_slots, kring.hwcur, kring.rhead,
                       lib.NMH_TAP_FORWARD)
        self._account(host, io)

    # -- wake-ups ------------------------------------------------------------

    def poll_wait(self, kring) -> None:
        """Arm the fds that feed RX ``kring`` (TX fds are armed while frames
        are pending); a ring with no free slot, or a frame waiting for
        room, can only move after the program releases slots."""
        if kring.direction != RX or kring.space() == 0 or self.gone:
            return
        entry = self._rxq.get(kring)
        if entry is not None and entry[0].pending:
            return
        for fd in self._rx_fds(kring):
            self.waiter.arm(fd, READ)

    def _fd_ready(self, q: int, events: int) -> None:
        """Queue ``q`` became readable/writable (the waiter holds core.lock)."""
        if self.krings is None:
            return
        if events & WRITE:
            txs = [self.krings[TX][q]] + [k for k in self._host(TX) if self._host_tx_fd(k) == self.fds[q]]
            for kring in txs:
                if kring.ring is not None and kring.hwcur != kring.rhead:
                    with kring.held():   # C syncs run without the core lock
                        self.txsync(kring)
                    self.notify(kring)
        if events & READ:
            kring = self._host_rx_for_queue(q) if self.stack_on_host() else self.krings[RX][q]
            self.notify(kring)


def lookup(core, name: str, reg, create: bool, mem_given):
    """netmap:NAME for a TAP created by the daemon or a free persistent one."""
    port = core.named.get(name)
    if port is not None and not isinstance(port, TapAdapter):
        return None
    if port is not None and not port.created and port.active_fds == 0:
        # an unbound persistent TAP may have changed or gone since
        port = _attachable(core, name, port)
    elif port is None:
        port = _attachable(core, name, None)
    if port is None:
        return None
    if port.active_fds == 0:
        port.configure(reg)
    return port


def _attachable(core, name: str, port):
    """The adapter of persistent TAP ``name`` (``port`` if still valid), or
    None if ``name`` is no TAP.  Raises OSError(EBUSY) if another program
    has it."""
    if not tuntap.valid_name(name):
        return None
    info = tuntap.probe(name)
    if info is None or not info.tun or not info.tap:
        if port is not None:
            del core.named[name]
        return None
    if not info.persistent or info.queues_attached:
        raise OSError(errno.EBUSY, f"TAP {name} is in use by another program")
    if port is None or port.multi_queue != info.multi_queue:
        port = TapAdapter(core, name, 1, info.multi_queue)
        core.named[name] = port
    return port


# -- the daemon's TAP interfaces --------------------------------------------

def parse_spec(text: str) -> tuple[str, int]:
    """``NAME[:QUEUES]`` of ``--tap``.  Raises ValueError."""
    name, _, queues = text.partition(":")
    count = int(queues) if queues else 1
    if not tuntap.valid_name(name) or any(c in name for c in RESERVED_CHARS):
        raise ValueError(f"{name!r}: not an interface name netmap programs can open "
                         f"(at most 15 characters, none of {RESERVED_CHARS!r} or spaces)")
    if not 1 <= count <= MAX_QUEUES:
        raise ValueError(f"{text!r}: queues must be 1..{MAX_QUEUES}")
    return name, count


def create(core, name: str, queues: int) -> TapAdapter:
    """Create TAP ``name`` with ``queues`` queues as a port of ``core``.

    Raises:
        OSError: EEXIST (an interface has that name), ENOMEM (the rings do
            not fit a netmap_if), or the kernel's error; nothing is left.
    """
    slots = ffi.sizeof("struct netmap_if") + 2 * (queues + 1) * ffi.sizeof("ssize_t")
    if slots > core.mem.ifs.objsize:
        raise OSError(errno.ENOMEM, f"{name}: {queues} queues do not fit a netmap_if of "
                                    f"{core.mem.ifs.objsize} bytes")
    if tuntap.probe(name) is not None:
        raise OSError(errno.EEXIST, f"an interface named {name} exists already")
    with ExitStack() as undo:
        fds = tuntap.open_queues(name, queues, queues > 1)
        for fd in fds:
            undo.callback(os.close, fd)   # closing the queues deletes the interface
        tuntap.set_carrier(fds[0], False)
        mtu = max(68, min(tuntap.MAX_MTU, core.mem.buf_size - tuntap.ETH_HLEN))
        tuntap.link_set(fds[0], mtu=mtu)
        port = TapAdapter(core, name, queues, queues > 1, fds)
        core.named[name] = port
        undo.pop_all()
    return port


def create_ports(core, specs) -> list[TapAdapter]:
    """Create every ``(name, queues)``; all or none."""
    made = []
    try:
        for name, queues in specs:
            made.append(create(core, name, queues))
    except BaseException:
        delete_ports(core)
        raise
    return made


def delete_ports(core) -> None:
    """At exit: delete the interfaces the daemon created, detach from the
    others.  Errors are logged; every interface is tried."""
    w = waiter(core)
    for name, port in list(core.named.items()):
        if not isinstance(port, TapAdapter):
            continue
        for fd in port.fds:
            w.remove(fd)
        if port.created and port.fds:
            try:
                tuntap.link_delete(port.fds[0])
            except OSError as e:
                log.info("%s: %s (closing its queues deletes it)", name, e)
        for fd in port.fds:
            os.close(fd)
        port.fds = []
        del core.named[name]


class TapDriver(Driver):
    """TAP interfaces as ports: those ``--tap`` asks the daemon to create
    (``specs``: (name, queues) pairs) and free persistent TAPs by name."""

    name = "tap"
    interfaces = True

    def __init__(self, specs=()) -> None:
        super().__init__()
        self.specs = tuple(specs)

    def lookup(self, name: str, reg, create: bool, mem_given):
        """See the module-level ``lookup``."""
        return lookup(self.core, name, reg, create, mem_given)

    def start(self) -> None:
        """Create the ``--tap`` interfaces; all or none (raises OSError)."""
        create_ports(self.core, self.specs)

    def stop(self) -> None:
        """Delete the interfaces the daemon created, detach from the rest."""
        with self.core.lock:
            delete_ports(self.core)

    async def serve(self) -> None:
        """Serve the TAP fds' wake-ups until cancelled."""
        await run_waiters(self.core)
