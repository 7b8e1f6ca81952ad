"""Ports of a VALE switch (netmap_vp_adapter): what the switch sees of a
port, and ephemeral and persistent VALE ports."""

import errno

from nmfuse._helper import ffi, lib
from nmfuse.drivers.vale.switch import (
    NM_BDG_MAXRINGS,
    NM_BDG_MAXSLOTS,
    NM_BRIDGE_RINGSIZE,
    Bridge,
)
from nmfuse.netmap.adapter import Adapter, bound_var
from nmfuse.netmap.kring import RX

# what ``bdg_attach`` answers for a port that joins a switch only wrapped
NEED_BWRAP = object()

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
        """Bytes of virtio-net header on this port's frames, kept in the C view
        the switch reads."""
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
        """The RX kring the switch fills as its ring ``i``, or None past the last."""
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
        """Whether a binding or a switch holds the port (NETMAP_OWNED_BY_ANY)."""
        return self.active_fds > 0 or self.owned_by_kernel


class ValePort(VPort):
    """An ephemeral (first REGISTER of ``valeX:Y``) or persistent
    (VALE_NEWIF) VALE port."""

    def __init__(self, core, name: str, persistent: bool = False, **geometry):
        super().__init__(core, name, **geometry)
        # the switch reads a sender's frames and writes a receiver's in each one's memory
        self.cport.bufs = self.mem.region.base + self.mem.bufs.offset
        self.cport.buf_size = self.mem.bufs.objsize
        self.cport.objtotal = self.mem.bufs.objtotal
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
        """Delete the krings and bring the switch's C view in step."""
        Adapter.krings_delete(self)
        self.bdg_refresh()

    def bdg_attach(self, name: str, bridge: Bridge):
        # netmap_vale_vp_bdg_attach; the ownership check is netmap's
        # VALE_ATTACH one, made before the port joins rather than after
        if self.bridge is not None:
            return NEED_BWRAP
        if self.owned_by_any():
            raise OSError(errno.EBUSY, f"{self.name} is in use")
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

