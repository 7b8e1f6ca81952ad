"""VALE software switches (netmap_vale.c, netmap_bdg.c).

A switch is named by what precedes the colon of a port name: ``vale0:a``
is port ``a`` of switch ``vale0``.  Switches and their ephemeral ports are
created by the first REGISTER of such a name; a port goes away with its
last reference, a switch with its last port.  Persistent ports
(VALE_NEWIF) exist on their own under a plain name (``core.named``) and
join a switch with VALE_ATTACH; any other port found by that plain name
(a TAP port, say) joins through a *bwrap* that takes the port over.

The switch is a learning bridge.  Each frame a port transmits teaches the
switch that its source MAC lives behind that port (unless the first slot
says NS_NO_LEARN); the destination MAC then picks one port, or, for
broadcast and unknown unicast, every port but the sender.  Frames are
copied (never swapped: each port has its own rings and ring sizes) by the
C helper's ``nmh_vale_flush``, which does the per-frame work: learning,
lookup, and the copy into each destination RX ring that has room for the
whole frame (the rest is dropped, as netmap does).

Who owns which counter of a destination RX ring:

    hwcur (port's rxsync)      hwtail (the switch)
      |                          |
    --+------ frames the user ---+------ free: the switch fills these ----
      |       has not released   |       up to hwcur - 1

The C view of the ring (``struct nmh_vale_ring``) holds both; the port's
rxsync copies hwtail into its kring and writes hwcur back, and after a
flush ``Bridge.deliver`` copies hwtail into the krings that got frames and
notifies them (wakes pollers, or runs whoever intercepted nm_notify: a
monitor, or a bwrap that pushes the frames on into the port it wraps).

The bwrap (netmap_bdg.c) lets a port that is not a VALE port join a
switch.  It registers that port (``hw``) on the switch's behalf and shares
its rings with the directions swapped:

    hw RX ring i  ==  bwrap TX ring i : frames hw received enter the switch
    hw TX ring i  ==  bwrap RX ring i : frames the switch sends leave by hw

1. hw receives (its driver notifies hw RX ring i): ``_intr_notify`` runs
   hw's rxsync, hands [hwcur, hwtail) to the bwrap's txsync (a flush), and
   releases the slots back to hw.
2. the switch fills bwrap RX ring i: ``_bwrap_notify`` runs hw's txsync on
   the new slots and gives the switch back what hw has sent.
The bwrap waits on hw as a poller would: it tells hw's driver
(``poll_wait``) that someone waits on each RX ring it took over, again
after each batch, and on a TX ring that still holds frames hw could not
take; when hw notifies that TX ring (room again), step 2 runs once more.
Host rings work the same way through a second bridge port, ``NAME^``,
attached with NR_REG_NIC_SW (vale-ctl -h).

Polling (VALE_POLLING_ENABLE, bwraps only, as netmap): a daemon thread per
polling "CPU" runs step 1 on its hw RX rings in a loop, so frames enter
the switch even if hw's driver never notifies.  It loops while frames flow
and sleeps up to a millisecond when idle; it is pinned to the CPU the
request names when that CPU exists.

Limits are netmap's: 8 switches (ENOMEM beyond), 254 port indexes of which
at most 252 can be taken (ENOMEM), 16 rings and 4096 slots per ring.
"""

import errno
import os
import threading

from nmfuse.netmap.abi import RegMode, ReqType, ffi, lib
from nmfuse.netmap.adapter import Adapter, bound_var
from nmfuse.netmap.binding import Binding
from nmfuse.netmap.binding import register as regif_register
from nmfuse.netmap.binding import unregister as regif_unregister
from nmfuse.netmap.kring import DIRECTIONS, RX, TX

NM_BDG_NAME = "vale"
NM_BRIDGES = 8                        # netmap's default vale_max_bridges
NM_BDG_MAXPORTS = lib.NMH_VALE_MAXPORTS
NM_BDG_NOPORT = lib.NMH_VALE_NOPORT
NM_BDG_MAXRINGS = 16
NM_BDG_MAXSLOTS = 4096
NM_BRIDGE_RINGSIZE = 1024
IFNAMSIZ = 16
POLLING_MODE_SINGLE_CPU = lib.NETMAP_POLLING_MODE_SINGLE_CPU
POLLING_MODE_MULTI_CPU = lib.NETMAP_POLLING_MODE_MULTI_CPU
POLL_IDLE_MAX_S = 0.001               # the longest nap of an idle poller

NEED_BWRAP = object()


def _err(code: int, why: str) -> OSError:
    return OSError(code, why)


def _is_id_char(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9")


def bridge_name_len(name: str, prefixlen: int) -> int:
    """Where the colon ends the switch name, or -1 (nm_bdg_name_validate).

    The switch part is letters, digits and '_' (the prefix included) and
    the colon must come within IFNAMSIZ characters; what follows the colon
    is at most IFNAMSIZ - 1 characters.
    """
    if len(name) < prefixlen:
        return -1
    colon = -1
    for i, c in enumerate(name[:IFNAMSIZ]):
        if c == ":":
            colon = i
            break
        if not _is_id_char(c):
            return -1
    if colon < 0 or len(name) - colon > IFNAMSIZ:
        return -1
    return colon


# -- switches ---------------------------------------------------------------


class Bridge:
    """One switch (netmap's nm_bridge): its ports by index and the C state."""

    def __init__(self, core, index: int, name: str):
        self.core = core
        self.index = index
        self.name = name
        self.c = ffi.new("struct nmh_vale_bridge *")
        self.out = ffi.new("uint16_t[4096]")
        self.ports: list = [None] * NM_BDG_MAXPORTS
        # active port indexes first, then the free ones (freed last, reused first)
        self.port_index = list(range(NM_BDG_MAXPORTS))
        self.active = 0

    def active_ports(self):
        return [self.ports[i] for i in self.port_index[:self.active]]

    def find(self, name: str):
        for port in self.active_ports():
            if port is not None and port.name == name:
                return port
        return None

    def attach(self, port) -> None:
        """Give ``port`` the next free index."""
        idx = self.port_index[self.active]
        self.ports[idx] = port
        self.c.ports[idx] = port.cport
        self.active += 1
        self._sync()
        port.bridge, port.bdg_port = self, idx
        port.cport.last_smac = (1 << 64) - 1

    def detach(self, hw: int, sw: int = -1) -> None:
        """Remove the ports at indexes hw and sw (netmap_bdg_detach_common):
        each swaps places with the last active index."""
        lim = self.active
        tmp = self.port_index
        i = 0
        while (hw >= 0 or sw >= 0) and i < lim:
            if hw >= 0 and tmp[i] == hw:
                lim -= 1
                tmp[i], tmp[lim] = tmp[lim], hw
                hw = -1
            elif sw >= 0 and tmp[i] == sw:
                lim -= 1
                tmp[i], tmp[lim] = tmp[lim], sw
                sw = -1
            else:
                i += 1
        for idx in tmp[lim:self.active]:
            port = self.ports[idx]
            if port is not None:
                port.bridge, port.bdg_port = None, -1
            self.ports[idx] = None
            self.c.ports[idx] = ffi.NULL
        self.active = lim
        self._sync()
        self.free_if_empty()

    def free_if_empty(self) -> None:
        if self.active == 0 and self.core.switches.bridges[self.index] is self:
            self.core.switches.bridges[self.index] = None

    def _sync(self) -> None:
        self.c.active = self.active
        for j in range(self.active):
            self.c.port_index[j] = self.port_index[j]

    def deliver(self, nout: int) -> None:
        """After a flush: publish the new hwtail of each destination ring
        the C loop listed, and notify it."""
        for e in ffi.unpack(self.out, nout):  # a copy: notify may flush again
            port = self.ports[e >> 4]
            if port is None:
                continue
            kring = port.rx_kring(e & 0xF)
            if kring is None:
                continue
            kring.hwtail = port.cport.rx[e & 0xF].hwtail
            kring.adapter.notify(kring)


class Switches:
    """The switch table of a daemon (netmap's nm_bridges array)."""

    def __init__(self, core):
        self.core = core
        self.bridges: list[Bridge | None] = [None] * NM_BRIDGES

    def find(self, name: str, create: bool, prefixlen: int = len(NM_BDG_NAME)) -> Bridge | None:
        """The switch a port name belongs to (nm_find_bridge); a new one in
        the first free slot with ``create``.  None: bad name or no slot."""
        namelen = bridge_name_len(name, prefixlen)
        if namelen < 0:
            return None
        free = None
        for i, b in enumerate(self.bridges):
            if b is None:
                if free is None:
                    free = i
            elif b.name == name[:namelen]:
                return b
        if not create or free is None:
            return None
        b = Bridge(self.core, free, name[:namelen])
        self.bridges[free] = b
        return b

    def list_entry(self, bridge_idx: int, port_idx: int):
        """The first port at or after (bridge_idx, port_idx), as
        (bridge_idx, port_idx, port), or None at the end (VALE_LIST)."""
        i, j = bridge_idx, port_idx
        while i < NM_BRIDGES:
            b = self.bridges[i]
            while b is not None and j < NM_BDG_MAXPORTS:
                if b.ports[j] is not None:
                    return i, j, b.ports[j]
                j += 1
            i, j = i + 1, 0
        return None


# -- ports of a switch --------------------------------------------------------


class VPort(Adapter):
    """A port as the switch sees it (netmap_vp_adapter): its C view and the
    txsync that switches what it sends, the rxsync that returns slots."""

    kind = "vale"
    supports_offsets = True
    rx_base = 0     # index of the first kring that is this port's RX ring 0

    def __init__(self, core, name: str, **geometry):
        self.cport = ffi.new("struct nmh_vale_port *")
        self.cport.last_smac = (1 << 64) - 1
        super().__init__(core, name, **geometry)
        # the switch reads a sender's frames and writes a receiver's in each one's memory
        self.cport.bufs = self.mem.region.base + self.mem.bufs.offset
        self.cport.buf_size = self.mem.bufs.objsize
        self.cport.objtotal = self.mem.bufs.objtotal
        self.bridge: Bridge | None = None
        self.bdg_port = -1
        self.na_vp = None           # the port that answers VALE_DETACH for this one
        self.on = False             # in netmap mode: the switch may fill its rings
        self._src: dict[int, object] = {}

    @property
    def virt_hdr_len(self) -> int:
        return self.cport.virt_hdr_len

    @virt_hdr_len.setter
    def virt_hdr_len(self, value: int) -> None:
        self.cport.virt_hdr_len = value

    def set_virt_hdr_len(self, value: int) -> None:
        """PORT_HDR_SET: frames in and out of this port carry a virtio-net
        header of ``value`` bytes (0, 10 or 12)."""
        self.virt_hdr_len = value

    def bdg_rx_krings(self) -> list:
        """The RX krings the switch fills: at most NM_BDG_MAXRINGS, as netmap."""
        n = min(self.num_rings[RX], NM_BDG_MAXRINGS)
        return self.krings[RX][:n] if self.krings else []

    def rx_kring(self, i: int):
        rx = self.bdg_rx_krings()
        return rx[i] if i < len(rx) else None

    def bdg_refresh(self) -> None:
        """Bring the C view of the RX rings in step with the krings."""
        c = self.cport
        rx = self.bdg_rx_krings()
        for i in range(NM_BDG_MAXRINGS):
            cr = c.rx[i]
            kring = rx[i] if i < len(rx) else None
            if kring is None or kring.ring is None:
                cr.slot = ffi.NULL
                continue
            cr.slot = kring.ring.slot
            cr.num_slots = kring.num_slots
            cr.hwcur, cr.hwtail = kring.hwcur, kring.hwtail
            cr.offset_mask = kring.offset_mask
        c.num_rx = min(len(rx), NM_BDG_MAXRINGS) if self.on else 0
        self._src.clear()

    def _source(self, kring):
        src = self._src.get(kring.index)
        if src is None:
            src = ffi.new("struct nmh_vale_src *")
            src.slot = kring.ring.slot
            src.num_slots = kring.num_slots
            src.ring_nr = kring.index
            self._src[kring.index] = src
        src.offset_mask = kring.offset_mask
        return src

    def txsync(self, kring) -> int:
        """Switch [hwcur, rhead) and give every slot back at once
        (netmap_vale_vp_txsync); without a switch the frames are dropped."""
        head, cur, n = kring.rhead, kring.hwcur, kring.num_slots
        if head != cur:
            bridge = self.bridge
            if bridge is not None and kring.ring is not None:
                count = (head - cur) % n
                nout = lib.nmh_vale_flush(bridge.c, self.bdg_port, self._source(kring), cur, count, bridge.out)
                kring.stats_packets += count
                if nout:
                    bridge.deliver(nout)
        kring.hwcur = head
        kring.hwtail = (head - 1) % n
        return 0

    def rxsync(self, kring) -> int:
        """Take the frames the switch delivered, return the released slots
        (netmap_vp_rxsync)."""
        i = kring.index - self.rx_base
        cr = self.cport.rx[i] if i < NM_BDG_MAXRINGS else None
        if cr is not None and cr.slot != ffi.NULL:
            kring.hwtail = cr.hwtail
            cr.offset_mask = kring.offset_mask
            if kring.rhead != kring.hwcur:
                kring.stats_packets += (kring.rhead - kring.hwcur) % kring.num_slots
                kring.hwcur = cr.hwcur = kring.rhead
        else:
            kring.hwcur = kring.rhead
        return 0

    def bdg_attach(self, name: str, bridge: Bridge):
        """How this port joins ``bridge`` (nm_bdg_attach): itself, or
        NEED_BWRAP.  Only persistent VALE ports join without a bwrap."""
        return NEED_BWRAP

    def owned_by_any(self) -> bool:
        return self.active_fds > 0 or self.owned_by_kernel


class ValePort(VPort):
    """An ephemeral (first REGISTER of ``valeX:Y``) or persistent
    (VALE_NEWIF) VALE port."""

    def __init__(self, core, name: str, persistent: bool = False, **geometry):
        super().__init__(core, name, **geometry)
        self.persistent = persistent
        self.ifname = name          # a persistent port's own name

    @classmethod
    def create(cls, core, name: str, reg, persistent: bool = False, mem=None) -> "ValePort":
        """A port with the geometry ``reg`` asks for, bounded as netmap does;
        the bounded values are written back into ``reg``.  It lives in
        ``mem`` if given (external memory, nr_mem_id), else in the global
        region (netmap would give it a private one)."""
        reg.nr_tx_rings = bound_var(reg.nr_tx_rings, 1, 1, NM_BDG_MAXRINGS)
        reg.nr_rx_rings = bound_var(reg.nr_rx_rings, 1, 1, NM_BDG_MAXRINGS)
        reg.nr_tx_slots = bound_var(reg.nr_tx_slots, NM_BRIDGE_RINGSIZE, 1, NM_BDG_MAXSLOTS)
        reg.nr_rx_slots = bound_var(reg.nr_rx_slots, NM_BRIDGE_RINGSIZE, 1, NM_BDG_MAXSLOTS)
        if hasattr(reg, "nr_extra_bufs"):
            reg.nr_extra_bufs = bound_var(reg.nr_extra_bufs, 0, 0, 128 * NM_BDG_MAXSLOTS)
        return cls(core, name, persistent=persistent, mem=mem,
                   tx_rings=reg.nr_tx_rings, rx_rings=reg.nr_rx_rings,
                   tx_slots=reg.nr_tx_slots, rx_slots=reg.nr_rx_slots)

    def register(self, on: bool) -> None:
        self.on = on
        self.bdg_refresh()

    def rings_create(self) -> None:
        try:
            Adapter.rings_create(self)
        finally:
            self.bdg_refresh()

    def rings_delete(self) -> None:
        Adapter.rings_delete(self)
        self.bdg_refresh()

    def krings_delete(self) -> None:
        Adapter.krings_delete(self)
        self.bdg_refresh()

    def bdg_attach(self, name: str, bridge: Bridge):
        # netmap_vale_vp_bdg_attach; the ownership check is netmap's
        # VALE_ATTACH one, made before the port joins rather than after
        if self.bridge is not None:
            return NEED_BWRAP
        if self.owned_by_any():
            raise _err(errno.EBUSY, f"{self.name} is in use")
        self.na_vp = self
        self.name = name
        return self, None

    def bdg_ctl_attach(self, reg) -> None:
        """Nothing to do: the port itself is the switch port."""

    def bdg_ctl_detach(self) -> None:
        """Leave the switch; the name is the port's own again."""
        if self.bridge is not None:
            self.bridge.detach(self.bdg_port)
        self.na_vp = None
        self.name = self.ifname
        self.put()   # the reference the attachment held

    def destroy(self) -> None:
        if self.bridge is not None:
            self.bridge.detach(self.bdg_port)


class BwrapHost(VPort):
    """The host rings of a wrapped port as a switch port of their own
    (``NAME^``): its krings are the bwrap's host krings."""

    def __init__(self, core, bwrap, **geometry):
        super().__init__(core, bwrap.name + "^", mem=bwrap.mem, **geometry)
        self.bwrap = bwrap
        self.owned_by_kernel = True   # nobody registers it (netmap: NAF_BUSY)
        self.na_vp = bwrap

    @property
    def rx_base(self) -> int:
        return self.bwrap.num_rings[RX]

    def bdg_rx_krings(self) -> list:
        b = self.bwrap
        return b.krings[RX][b.num_rings[RX]:] if b.krings else []


class Bwrap(VPort):
    """A port that is not a VALE port, joined to a switch (netmap_bwrap_adapter)."""

    kind = "bwrap"

    def __init__(self, core, name: str, hw):
        self.has_host_rings = hw.has_host_rings
        super().__init__(core, name,
                         tx_rings=hw.num_rings[RX], rx_rings=hw.num_rings[TX],
                         tx_slots=hw.num_slots[RX], rx_slots=hw.num_slots[TX],
                         host_tx_rings=hw.num_host_rings[RX], host_rx_rings=hw.num_host_rings[TX],
                         mem=hw.mem)
        self.hw = hw
        self.virt_hdr_len = hw.virt_hdr_len
        self.host = None
        if hw.has_host_rings:
            self.host = BwrapHost(core, self, tx_rings=hw.num_host_rings[RX], rx_rings=hw.num_host_rings[TX],
                                  tx_slots=hw.num_slots[RX], rx_slots=hw.num_slots[TX])
        self.kbinding: Binding | None = None
        self._hw_used: list = []
        self.polling = None
        self._saved_notify: dict = {}
        self._busy: set = set()
        # take hw over (netmap_bwrap_attach_common)
        hw.get()
        self.saved_na_vp = getattr(hw, "na_vp", None)
        hw.na_vp = self
        hw.owned_by_kernel = True
        self.na_vp = self

    # -- krings and rings: the bwrap's are hw's, directions swapped --

    def krings_create(self) -> None:
        hw = self.hw
        Adapter.krings_create(self)
        created = hw.krings is None
        if created:
            hw.krings_create()
        # The bwrap holds hw's hardware rings, and its host rings only when
        # they joined the switch too (netmap holds them all; a driver may
        # tell from the host rings' users where its host stack goes).
        host_on = self.host is not None and self.host.bridge is not None
        self._hw_used = [k for d in DIRECTIONS
                         for k in hw.krings[d][:None if host_on else hw.num_rings[d]]]
        for k in self._hw_used:
            k.users += 1
        try:
            hw.rings_create()
        except BaseException:
            for k in self._hw_used:
                k.users -= 1
            hw.rings_delete()
            if created:
                hw.krings_delete()
            Adapter.krings_delete(self)
            raise
        for d in DIRECTIONS:
            other = RX if d == TX else TX
            for bk, hk in zip(self.krings[d], hw.krings[other]):
                bk.num_slots = hk.num_slots
                bk.ring, bk.ring_offset = hk.ring, hk.ring_offset
                bk.reset_pointers()
        host = self.host
        for d in DIRECTIONS:
            for bk in self.krings[d][self.num_rings[d]:]:
                if host is not None:
                    bk.adapter = host
                    bk.nm_sync = host.txsync if d == TX else host.rxsync
        for bk in self.krings[RX]:
            bk.nm_notify = self._bwrap_notify
        self.bdg_refresh()
        if host is not None:
            host.bdg_refresh()

    def krings_delete(self) -> None:
        hw = self.hw
        if hw.krings is not None:
            for k in self._hw_used:
                k.users -= 1
            self._hw_used = []
            hw.rings_delete()
            if hw.active_fds == 0:
                hw.krings_delete()
        for d in DIRECTIONS:
            for bk in self.krings[d] if self.krings else ():
                bk.ring = None
        Adapter.krings_delete(self)
        self.bdg_refresh()
        if self.host is not None:
            self.host.bdg_refresh()

    def rings_create(self) -> None:
        """The rings are hw's, made in krings_create."""

    def rings_delete(self) -> None:
        """hw's rings go with krings_delete."""

    def register(self, on: bool) -> None:
        hw, host = self.hw, self.host
        host_on = host is not None and host.bridge is not None
        if on:
            hw.register(True)
            hw.active_fds += 1
            nrx, ntx = hw.num_rings[RX], hw.num_rings[TX]
            rx = hw.krings[RX][:nrx] + (hw.krings[RX][nrx:] if host_on else [])
            tx = hw.krings[TX][:ntx] + (hw.krings[TX][ntx:] if host_on else [])
            for hk in rx + tx:
                self._saved_notify[hk] = hk.nm_notify
                hk.nm_notify = self._intr_notify if hk.direction == RX else self._tx_room
            for hk in rx:
                hw.poll_wait(hk)
        else:
            self._polling_halt()
            hw.monitors_stop()
            for hk, notify in self._saved_notify.items():
                hk.nm_notify = notify
            self._saved_notify.clear()
            hw.active_fds -= 1
            hw.register(False)
        self.on = on
        if host is not None:
            host.on = on and host_on
            host.bdg_refresh()
        self.bdg_refresh()

    # -- the two directions --

    def _intr_notify(self, hk) -> None:
        """hw RX ring ``hk`` has frames: push them into the switch
        (netmap_bwrap_intr_notify)."""
        if hk in self._busy or self.krings is None:
            return
        self._busy.add(hk)
        try:
            if hk.nm_sync(hk):
                return
            bk = self.krings[TX][hk.index]
            for _ in range(hk.num_slots):     # while the release brings more frames
                if hk.hwcur == hk.hwtail:
                    break
                bk.rhead = bk.rcur = hk.hwtail
                bk.nm_sync(bk)
                hk.rhead = hk.rcur = hk.rtail = hk.hwtail
                if hk.nm_sync(hk):
                    return
        finally:
            self._busy.discard(hk)
        if self.hw.krings is not None:
            self.hw.poll_wait(hk)             # one-shot wake-ups: wait again

    def _bwrap_notify(self, kring) -> None:
        """The switch filled bwrap RX ring ``kring``: send it on through hw's
        TX ring and take back what hw has sent (netmap_bwrap_notify)."""
        if kring in self._busy or self.hw.krings is None:
            return
        self._busy.add(kring)
        try:
            port = kring.adapter
            hk = self.hw.krings[TX][kring.index]
            VPort.rxsync(port, kring)
            hk.rhead = hk.rcur = kring.hwtail
            if hk.nm_sync(hk) == 0:
                kring.rhead = kring.rcur = (hk.hwtail + 1) % kring.num_slots
                VPort.rxsync(port, kring)
            if hk.hwcur != hk.rhead:
                self.hw.poll_wait(hk)         # hw kept some: tell us when it has room
        finally:
            self._busy.discard(kring)

    def _tx_room(self, hk) -> None:
        """hw TX ring ``hk`` moved (room again): push what the switch left there."""
        if self.krings is not None:
            self._bwrap_notify(self.krings[RX][hk.index])

    # -- VALE_ATTACH / VALE_DETACH (netmap_bwrap_bdg_ctl) --

    def bdg_ctl_attach(self, reg) -> None:
        """Register hw on the switch's behalf, with all its NIC rings
        (NR_REG_ALL_NIC) or its host rings too (NR_REG_NIC_SW).

        Raises:
            OSError: EINVAL (a ring index, another mode), EBUSY, ENOMEM.
        """
        if reg.nr_ringid != 0 or reg.nr_mode not in (RegMode.ALL_NIC, RegMode.NIC_SW):
            raise _err(errno.EINVAL, "only all NIC rings, with or without the host rings, can be attached")
        if self.owned_by_any():
            raise _err(errno.EBUSY, f"{self.name} busy")
        if self.kbinding is not None:
            return
        kreg = ffi.new("struct nmreq_register *")
        kreg.nr_mode, kreg.nr_ringid = reg.nr_mode, 0
        binding = Binding(-1, os.getpid())
        regif_register(binding, self, kreg)
        self.kbinding = binding
        self.owned_by_kernel = True

    def bdg_ctl_detach(self) -> None:
        if self.active_fds == 0 or self.kbinding is None:
            raise _err(errno.EINVAL, f"{self.name} is not registered")
        binding, self.kbinding = self.kbinding, None
        regif_unregister(binding)
        self.owned_by_kernel = False
        self.put()   # the reference the attachment held: the bwrap goes

    def destroy(self) -> None:
        """netmap_bwrap_dtor: leave the switch and give hw back."""
        self._polling_halt()
        if self.kbinding is not None:
            binding, self.kbinding = self.kbinding, None
            regif_unregister(binding)
        host = self.host
        if self.bridge is not None:
            sw = host.bdg_port if host is not None and host.bridge is self.bridge else -1
            self.bridge.detach(self.bdg_port, sw)
        hw = self.hw
        hw.na_vp = self.saved_na_vp
        hw.owned_by_kernel = False
        hw.put()

    # -- VALE_POLLING_ENABLE / DISABLE --

    def polling_start(self, req) -> None:
        """Start polling hw's RX rings (nm_bdg_ctl_polling_start).

        Raises:
            OSError: EFAULT (already polling), EINVAL (the configuration).
        """
        if self.polling is not None:
            raise _err(errno.EFAULT, "already polling")
        ncpus = os.cpu_count() or 1
        first, req_cpus = req.nr_first_cpu_id, req.nr_num_polling_cpus
        if req_cpus == 0 or req_cpus >= ncpus:
            raise _err(errno.EINVAL, "nr_num_polling_cpus must be in 1..CPUs-1")
        if req.nr_mode == POLLING_MODE_MULTI_CPU:
            if first + req_cpus > self.num_rings[RX]:
                raise _err(errno.EINVAL, "rings out of range")
            qfirst, qlast, cpu_from = first, first + req_cpus, first
        elif req.nr_mode == POLLING_MODE_SINGLE_CPU:
            if req_cpus != 1:
                raise _err(errno.EINVAL, "single-CPU polling takes one CPU")
            qfirst, qlast, cpu_from = 0, self.num_rings[RX], first
        else:
            raise _err(errno.EINVAL, "invalid polling mode")
        stop = threading.Event()
        threads = []
        for i in range(req_cpus):
            whole = req_cpus == 1 and req.nr_mode == POLLING_MODE_SINGLE_CPU
            cpu = cpu_from + i
            q0 = qfirst if whole else cpu
            q1 = qlast if whole else q0 + 1
            threads.append(threading.Thread(target=self._poll_loop, args=(stop, q0, q1, cpu),
                                            name=f"nmfuse-poll-{self.name}-{i}", daemon=True))
        self.polling = (stop, threads)
        self.get()   # polling holds the port, as netmap's does
        for t in threads:
            t.start()

    def polling_stop(self) -> None:
        """Raises OSError(EFAULT) if the port is not polling."""
        if self.polling is None:
            raise _err(errno.EFAULT, "not polling")
        self._polling_halt()
        self.put()

    def _polling_halt(self) -> None:
        if self.polling is None:
            return
        # The pollers may be waiting for the core lock the caller holds, so
        # they are not joined: each sees the flag when it gets the lock.
        stop, _threads = self.polling
        self.polling = None
        stop.set()

    def _poll_loop(self, stop: threading.Event, qfirst: int, qlast: int, cpu: int) -> None:
        try:
            os.sched_setaffinity(0, {cpu})
        except (OSError, ValueError):
            pass
        idle = 0.0
        while not stop.is_set():
            moved = False
            with self.core.lock:
                if stop.is_set() or self.hw.krings is None or self.krings is None:
                    return
                for i in range(qfirst, min(qlast, self.hw.num_rings[RX])):
                    hk, bk = self.hw.krings[RX][i], self.krings[TX][i]
                    before = bk.hwcur
                    hk.nm_notify(hk)
                    moved |= bk.hwcur != before
            if moved:
                idle = 0.0
            else:
                idle = min(POLL_IDLE_MAX_S, idle * 2 or 0.00005)
                stop.wait(idle)


# -- finding ports --------------------------------------------------------------


# the lookups of ports that are no interfaces (netmap's non-hardware adapters)
_VIRTUAL = ("nmfuse.drivers.null", "nmfuse.drivers.monitor", "nmfuse.drivers.pipe", __name__)


def find_interface(core, ifname: str, reg=None, mem_given=None):
    """A port that exists on its own under ``ifname`` (netmap's ifunit): a
    named port, or one another driver's lookup knows (a TAP, say).
    Unreferenced; None if there is none."""
    port = core.named.get(ifname)
    if port is not None:
        return port
    if reg is None:
        reg = ffi.new("struct nmreq_register *")
        reg.nr_mode = RegMode.ALL_NIC
    for other in core.lookups:
        if getattr(other, "__module__", None) in _VIRTUAL:
            continue
        try:
            port = other(core, ifname, reg, False, mem_given)
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.ENODEV):
                continue
            raise
        if port is not None:
            return port
    return None


def get_port(core, name: str, reg, create: bool, reqtype: int, mem_given=None):
    """The switch port called ``name`` (netmap_get_bdg_na), unreferenced,
    or None when the name is not a VALE name.

    With ``create``, a missing port is made: an ephemeral VALE port for a
    REGISTER, or, for VALE_ATTACH, the port named after the colon joined
    to the switch (directly if it is a persistent VALE port, else through
    a bwrap; with NR_REG_NIC_SW its host rings join too).

    Raises:
        OSError: ENOMEM (no switch slot, bad switch name when creating, or
            the switch is full), ENXIO (no such switch or port),
            EINVAL (an interface name used for a REGISTER, or a missing
            interface for an attach), EBUSY (the interface is in use).
    """
    # netmap compares one character less than the prefix: "valX..." counts too
    if not name.startswith(NM_BDG_NAME[:-1]):
        return None
    switches = core.switches
    bridge = switches.find(name, create)
    if bridge is None:
        raise _err(errno.ENOMEM if create else errno.ENXIO, f"no switch for {name!r}")
    try:
        port = bridge.find(name)
        if port is not None:
            return port
        if not create:
            raise _err(errno.ENXIO, f"no port {name!r}")
        if bridge.active + 2 >= NM_BDG_MAXPORTS:
            raise _err(errno.ENOMEM, f"switch {bridge.name} is full")
        ifname = name[len(bridge.name) + 1:]
        hw = find_interface(core, ifname, reg, mem_given)
        if hw is None:
            if reqtype != ReqType.REGISTER:
                raise _err(errno.EINVAL, f"no interface {ifname!r} to attach")
            port = ValePort.create(core, name, reg, mem=mem_given)
            bridge.attach(port)
            return port
        if reqtype not in (ReqType.VALE_ATTACH, ReqType.VALE_DETACH,
                           ReqType.VALE_POLLING_ENABLE, ReqType.VALE_POLLING_DISABLE):
            raise _err(errno.EINVAL, f"{ifname!r} is an interface: attach it with VALE_ATTACH")
        hw.get()
        try:
            joined = hw.bdg_attach(name, bridge) if isinstance(hw, VPort) else NEED_BWRAP
            if joined is NEED_BWRAP:
                if hw.active_fds > 0 or hw.owned_by_kernel:
                    raise _err(errno.EBUSY, f"{ifname} busy, cannot attach it to a switch")
                port = Bwrap(core, name, hw)
                host = port.host
            else:
                port, host = joined
        finally:
            hw.put()
        if reqtype == ReqType.VALE_ATTACH and reg.nr_mode != RegMode.NIC_SW:
            host = None
        bridge.attach(port)
        if host is not None:
            bridge.attach(host)
        return port
    finally:
        bridge.free_if_empty()


def lookup(core, name: str, reg, create: bool, mem_given: bool):
    """The cascade's VALE step: REGISTER semantics (ephemeral ports)."""
    return get_port(core, name, reg, create, ReqType.REGISTER, mem_given)
