"""Generic ports (netmap_generic.c): ``netmap:IFNAME`` for any existing
Linux interface no earlier driver claimed (veth, loopback, bridges, NICs),
emulated over AF_PACKET as netmap emulates a NIC without native support.

Which names
-----------
The last in the cascade: a name is generic if it is an interface of the
daemon's network namespace (rtnetlink) and no other driver took it (TAPs
nmfuse made, or free persistent ones, stay with the TAP driver).  Any
other name passes, and the core answers ENXIO as netmap does for an
unknown interface.  A port is known by its ifindex: a binding survives a
rename; a port whose interface was deleted or moved to another namespace
reports ENXIO from every sync (NAF_ZOMBIE's effect) until unbound.

Geometry
--------
As netmap_get_generic_na: one hardware ring per transmit/receive queue
the interface uses (its active channels, netif.active_queues; at most
MAX_QUEUES), DEFAULT_SLOTS slots (netmap's
generic_ringsize) unless the request that finds the port unbound asks for
others, one host ring pair (or as many as asked, as netmap_get_na).

Data path (host/packet.py, csrc/packet.c)
----------------------------------------
* hw TX ring i: txsync hands [hwcur, head) to a qdisc-bypassing
  AF_PACKET socket with one sendmmsg per batch; what the device refuses
  (link down, its queue full) is dropped and counted, as the generic
  adapter drops; slots are reclaimed at once.  A full socket buffer
  leaves the rest pending; the daemon sends it when room returns.
* hw RX ring i: a TPACKET_V3 socket (PACKET_FANOUT by queue when there
  are several); rxsync copies the frames the kernel handed over into the
  free slots, a frame longer than a buffer as an NS_MOREFRAG chain.
* host rings: a TAP the daemon holds, wired to the interface by tcx
  programs (host/tc.py): the host RX ring gets what the stack sends on
  the interface, the host TX ring reaches the stack as if received on it.
  Those frames pass the interface's AF_PACKET taps on their way in, so
  the hw RX sockets get a filter that skips them (tc.MARK) -- from the
  first host TX sync on: it costs every frame from the wire, and a port
  whose host TX ring never sends needs none.
* while the port is registered the interface's ingress drops everything
  else: the stack no longer sees the wire, as with the kernel module.
* Copies: one per frame each way (netmap buffer <-> kernel), where a
  native netmap driver has none.

Nothing of this survives the daemon: sockets, tcx links and the TAP are
fds, and the kernel undoes them all when the process ends, however it
ends.  The interface's flags, MTU, offloads and addresses are never
changed (a down interface stays down: its frames are dropped).
"""

import errno
import logging
import os
from contextlib import ExitStack
from functools import partial

from nmfuse._helper import ffi, lib
from nmfuse.host import netif, packet, tc
from nmfuse.host.fdwait import READ, WRITE, FdWaiter
from nmfuse.netmap.adapter import Adapter
from nmfuse.netmap.driver import Driver
from nmfuse.netmap.kring import RX, TX

log = logging.getLogger("nmfuse.generic")

DEFAULT_SLOTS = 1024        # netmap_generic_ringsize
MIN_SLOTS = 2
MAX_SLOTS = 4096
MAX_QUEUES = 64
SLOT_LIMITS = (DEFAULT_SLOTS, MIN_SLOTS, MAX_SLOTS)
GONE = (errno.ENXIO, errno.ENODEV)


class GenericAdapter(Adapter):
    """Interface ``info`` as a netmap port; its sockets exist while it is
    registered."""

    kind = "generic"
    has_host_rings = True
    c_sync = lib.NMH_SYNC_PACKET   # hw rings: csrc/packet.c, also for the C fast path

    def __init__(self, driver: "GenericDriver", info: netif.IfInfo):
        rings = [min(info.tx_queues, MAX_QUEUES), min(info.rx_queues, MAX_QUEUES)]
        super().__init__(driver.core, info.name, tx_rings=rings[TX], rx_rings=rings[RX],
                         tx_slots=DEFAULT_SLOTS, rx_slots=DEFAULT_SLOTS, host_tx_rings=1, host_rx_rings=1)
        self.num_slots = [self.bounded_slots(0, SLOT_LIMITS), self.bounded_slots(0, SLOT_LIMITS)]
        self.driver = driver
        self.ifindex = info.index
        self.waiter = driver.waiter
        self.gone = False
        self.tx_fds: list[int] = []
        self.txq: list = []          # struct nmh_pkt_txq per hw TX ring (a sending thread each)
        self.rx: list[packet.RxRing] = []
        self._c_rings: list = []     # struct nmh_pkt_ring per hw ring (the C syncs' state), TX then RX
        self.host: tc.HostPath | None = None
        self.host_frames_skipped = False   # the hw RX sockets skip what the host TX ring sends
        self._io = ffi.new("struct nmh_tap_io *")
        self._io.bufbase = self.mem.region.base + self.mem.bufs.offset
        self._io.bufsize = self.mem.buf_size
        self._io.objtotal = self.mem.bufs.objtotal
        self._spill = ffi.new("char[]", lib.NMH_TAP_SPILL)
        self._hostq = ffi.new("struct nmh_tap_rxq *", {"spill": self._spill})

    # -- geometry ----------------------------------------------------------

    def configure(self, reg) -> None:
        """Slots and host rings asked by a request that finds the port unbound."""
        self.ask_slots_and_host_rings(reg, SLOT_LIMITS, MAX_QUEUES)

    # -- binding -------------------------------------------------------------

    def register(self, on: bool) -> None:
        """Open the sockets and divert the host stack (on), or undo it.

        Raises:
            OSError: a socket or a tcx program could not be set up (then
                nothing is left), ENXIO if the interface is gone.
        """
        if not on:
            self._close()
            return
        if netif.by_index(self.ifindex) is None:
            raise OSError(errno.ENXIO, f"{self.name}: the interface is gone")
        with ExitStack() as undo:
            undo.callback(self._close)
            self.tx_fds = [packet.open_tx(self.ifindex) for _ in range(self.num_rings[TX])]
            for fd in self.tx_fds:
                self.txq.append(packet.TxQueue(fd, self._io))
            fanout = ((os.getpid() << 6) ^ self.ifindex) & 0xFFFF or 1 if self.num_rings[RX] > 1 else 0
            for _ in range(self.num_rings[RX]):
                self.rx.append(packet.RxRing(self.ifindex, fanout))
            self.host_frames_skipped = False
            self.host = tc.HostPath(self.ifindex)
            for i, ring in enumerate(self.rx):
                self.waiter.add(ring.fileno(), partial(self._rx_ready, i))
            for i, q in enumerate(self.txq):
                self.waiter.add(q.efd, partial(self._tx_ready, i))
            self.waiter.add(self.host.fd, self._host_ready)
            self.gone = False
            self._c_attach()
            undo.pop_all()

    def ring_c_sync(self, kring) -> int:
        """Hardware rings sync in C (csrc/packet.c); host rings in Python."""
        return lib.NMH_SYNC_PYTHON if kring.host else self.c_sync

    def _hw_krings(self):
        """The hardware krings that have C sync state, with that state."""
        if self.krings is None:
            return []
        return [*zip(self.krings[TX], self._c_rings[:len(self.txq)]),
                *zip(self.krings[RX], self._c_rings[len(self.txq):])]

    def _c_attach(self) -> None:
        """Give each hardware kring its C sync state (struct nmh_pkt_ring)."""
        for queues, field in ((self.txq, "txq"), (self.rx, "rx")):
            for q in queues:
                st = ffi.new("struct nmh_pkt_ring *")
                st.io.bufbase, st.io.bufsize, st.io.objtotal = self._io.bufbase, self._io.bufsize, self._io.objtotal
                setattr(st, field, q.state)
                self._c_rings.append(st)
        for kring, st in self._hw_krings():
            kring.c.driver = st
            if kring.is_tx:   # its sending thread wakes the pollers when frames leave
                kring.c.c_notify = 1
                self.txq[kring.index].state.kring = kring.c
            else:             # the C waiter's epoll, when the socket has frames
                kring.wait_on(self.rx[kring.index].fileno())

    def _c_detach(self) -> None:
        """Take the C sync state away from the krings; a C sync running on
        one (the fast path needs no core lock) finishes first."""
        for kring, _ in self._hw_krings():
            with kring.held():
                if kring.is_tx:
                    self.txq[kring.index].state.kring = ffi.NULL
                    kring.c.c_notify = 0
                else:
                    kring.wait_on(None)
                kring.c.driver = ffi.NULL
        self._c_rings = []

    def _close(self) -> None:
        """Close every socket and the host path (what a failed start left too)."""
        self._c_detach()
        for ring in self.rx:
            self.waiter.remove(ring.fileno())
            ring.close()
        for q in self.txq:
            self.waiter.remove(q.efd)
            q.close()
        for fd in self.tx_fds:
            os.close(fd)
        if self.host is not None:
            self.waiter.remove(self.host.fd)
            self.host.close()
        self.rx, self.tx_fds, self.txq, self.host = [], [], [], None

    def destroy(self) -> None:
        """The last reference is gone: the driver forgets the port."""
        self.driver.forget(self)

    # -- the data path -------------------------------------------------------

    def _io_for(self):
        io = self._io
        io.packets = io.bytes = io.drops = 0
        io.error = io.last_error = 0
        io.hdrlen = 0
        return io

    def _account(self, kring, io) -> None:
        kring.stats_packets += io.packets
        kring.stats_bytes += io.bytes
        kring.stats_drops += io.drops
        if io.last_error in GONE:
            self._lost()

    def _lost(self) -> None:
        if not self.gone and netif.by_index(self.ifindex) is None:
            self.gone = True
            for st in self._c_rings:
                st.gone = 1
            log.warning("%s: the interface is gone; its rings report ENXIO until unbound", self.name)

    def txsync(self, kring) -> int:
        n = kring.num_slots
        if self.gone or self.host is None:
            kring.hwcur = kring.rhead    # nothing can leave any more
            kring.hwtail = (kring.hwcur - 1) % n
            return errno.ENXIO if self.gone else 0
        if kring.host:
            if kring.hwcur != kring.rhead:
                try:
                    self._skip_host_frames()
                except OSError as e:
                    log.warning("%s: %s; the host TX ring's frames wait", self.name, e)
                    return e.errno or errno.EIO
                io, fd = self._io_for(), self.host.fd
                kring.hwcur = lib.nmh_tap_tx(io, fd, kring.ring.slot, n, kring.hwcur, kring.rhead, lib.NMH_TAP_SEND)
                self._account(kring, io)
                if io.error == errno.EAGAIN:
                    self.waiter.arm(fd, WRITE)
            kring.hwtail = (kring.hwcur - 1) % n
            return 0
        # hw ring: its thread sends [done, head); reclaimed up to done
        ret = lib.nmh_pkt_txsync(kring.c)
        self._c_error(kring)
        return errno.ENXIO if self.gone else ret

    def _skip_host_frames(self) -> None:
        """Before the first frame of the host TX ring goes to the stack: the
        hw RX sockets stop taking frames so marked (they meet them at the
        interface's taps).  Raises OSError (then nothing may be sent)."""
        if not self.host_frames_skipped:
            for ring in self.rx:
                ring.skip_mark(tc.MARK)
            self.host_frames_skipped = True

    def rings_delete(self) -> None:
        """A TX ring's thread finishes with its slots before the ring goes."""
        for kring in self.krings[TX][:self.num_rings[TX]] if self.krings else ():
            if kring.ring is not None and not kring.wants_ring() and kring.index < len(self.txq):
                self.txq[kring.index].drain()
        super().rings_delete()

    def rxsync(self, kring) -> int:
        n = kring.num_slots
        kring.hwcur = kring.rhead
        if self.host is None or self.gone:
            return errno.ENXIO if self.gone else 0
        if not kring.host:
            ret = lib.nmh_pkt_rxsync(kring.c)
            self._c_error(kring)
            return errno.ENXIO if self.gone else ret
        io = self._io_for()
        kring.hwtail = lib.nmh_tap_rx(io, self._hostq, self.host.fd, kring.ring.slot, n, kring.hwtail,
                                      kring.space())
        if io.error == errno.EINVAL:
            kring.stats_errors += 1   # a free slot with a bad buffer: the program broke the ring
        self._account(kring, io)
        return errno.ENXIO if self.gone else 0

    # -- wake-ups --------------------------------------------------------------

    def poll_wait(self, kring) -> None:
        """Arm the socket (or TAP) that feeds RX ``kring``; a full ring can
        only move after the program releases slots."""
        if self.host is None or self.gone:
            return
        if kring.direction == TX:
            if not kring.host and kring.index < len(self.txq) and self.txq[kring.index].done() != kring.hwcur:
                self.waiter.arm(self.txq[kring.index].efd, READ)   # frames in flight: their completion
            return   # host TX: armed while the TAP is full
        if kring.space() == 0:
            return
        if kring.host:
            self.waiter.arm(self.host.fd, READ)
        elif kring.index < len(self.rx):
            self.waiter.arm(self.rx[kring.index].fileno(), READ)

    def _c_error(self, kring) -> None:
        """An error the C sync of hw ``kring`` left for us (a socket error, a
        send refused): is the interface gone?"""
        if kring.c.driver_error:
            kring.c.driver_error = 0
            self._lost()

    def _rx_ready(self, i: int, events: int) -> None:
        if self.krings is not None:
            drops = lib.nmh_pkt_rx_drops(self.rx[i].state)
            if drops > 0:
                # the socket's ring was full (a count a C sync adding at this instant may lose)
                self.krings[RX][i].stats_drops += drops
            self.notify(self.krings[RX][i])

    def _host_ready(self, events: int) -> None:
        if self.krings is None:
            return
        if events & WRITE:
            self._tx_pending(self.krings[TX][self.num_rings[TX]:])
        if events & READ:
            for kring in self.krings[RX][self.num_rings[RX]:]:
                self.notify(kring)

    def _tx_ready(self, i: int, events: int) -> None:
        """Hw TX ring ``i``'s thread made progress a poller waits for."""
        if self.krings is not None and i < len(self.txq):
            self.txq[i].clear()
            kring = self.krings[TX][i]
            # publish the progress (the C txsync with nothing new handed
            # over); a ring a sync holds publishes it itself
            if kring.ring is not None and not self.gone and lib.nmh_kring_tryget(kring.c) == 0:
                try:
                    lib.nmh_pkt_txsync(kring.c)
                    kring.finalize()
                finally:
                    lib.nmh_kring_put(kring.c)
            self.notify(kring)

    def _tx_pending(self, krings) -> None:
        """Room returned: send what waited, and wake the ring's pollers."""
        for kring in krings:
            if kring.ring is not None and kring.hwcur != kring.rhead:
                self.txsync(kring)
                self.notify(kring)


class GenericDriver(Driver):
    """Every other interface of the daemon's namespace, emulated
    (netmap_get_hw_na falling back to netmap_get_generic_na)."""

    name = "generic"
    interfaces = True

    def __init__(self) -> None:
        super().__init__()
        self.waiter = FdWaiter()
        self.ports: dict[int, GenericAdapter] = {}   # by ifindex

    def lookup(self, name: str, reg, create: bool, mem_given):
        """The port of interface ``name``, or None if there is no such
        interface.

        Raises:
            OSError: netlink failed.
        """
        if not netif.valid_name(name) or any(c in name for c in "{}"):
            return None
        info = netif.lookup(name)
        if info is None:
            return None
        port = self.ports.get(info.index)
        if port is None:
            port = self.ports[info.index] = GenericAdapter(self, info)
        if port.active_fds == 0:
            port.configure(reg)
        return port

    def forget(self, port: GenericAdapter) -> None:
        """``port`` has no reference left."""
        if self.ports.get(port.ifindex) is port:
            del self.ports[port.ifindex]

    def stop(self) -> None:
        """Release every port's sockets and host path."""
        with self.core.lock:
            for port in list(self.ports.values()):
                port._close()
            self.ports.clear()

    async def serve(self) -> None:
        """Serve the sockets' wake-ups until cancelled."""
        await self.waiter.run(self.core.lock)
