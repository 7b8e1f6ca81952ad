"""Ports of a VALE switch (netmap_vp_adapter): what the switch sees of a
port, and ephemeral and persistent VALE ports."""

import errno
from contextlib import contextmanager

from nmfuse._helper import ffi, lib
from nmfuse.drivers.vale.switch import (
    NM_BDG_MAXRINGS,
    NM_BDG_MAXSLOTS,
    NM_BRIDGE_RINGSIZE,
    Bridge,
)
from nmfuse.netmap.adapter import Adapter, bound_var
from nmfuse.netmap.kring import RX, TX

# what ``bdg_attach`` answers for a port that joins a switch only wrapped
NEED_BWRAP = object()

# -- ports of a switch --------------------------------------------------------


class VPort(Adapter):
    """A port as the switch sees it (netmap_vp_adapter): its C view and the
    txsync that switches what it sends, the rxsync that returns slots.

    Both syncs are C (csrc/vale.c, NMH_SYNC_VALE), called by the Python
    path below and by the C fast path alike; a port type whose rings
    another port's driver shares (a bwrap) keeps the Python path only.
    """

    kind = "vale"
    supports_offsets = True
    rx_base = 0     # index of the first kring that is this port's RX ring 0
    c_sync = lib.NMH_SYNC_VALE

    def __init__(self, core, name: str, **geometry):
        self.cport = ffi.new("struct nmh_vale_port *")
        self.cport.last_smac = (1 << 64) - 1
        self.bridge: Bridge | None = None
        self._tx: dict[int, object] = {}    # TX ring index -> struct nmh_vale_tx
        super().__init__(core, name, **geometry)
        # the switch reads a sender's frames and writes a receiver's in each one's memory
        self.cport.bufs = self.mem.region.base + self.mem.bufs.offset
        self.cport.buf_size = self.mem.bufs.objsize
        self.cport.objtotal = self.mem.bufs.objtotal
        self.bdg_port = -1
        self.na_vp = None           # the port that answers VALE_DETACH for this one
        self.on = False             # in netmap mode: the switch may fill its rings

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

    def ring_c_sync(self, kring) -> int:
        """NMH_SYNC_VALE for the TX rings and the RX rings the switch fills
        (the C view has 16), else Python's."""
        if kring.is_tx or kring.index - self.rx_base < NM_BDG_MAXRINGS:
            return self.c_sync
        return lib.NMH_SYNC_PYTHON

    def kring_callbacks_changed(self, kring) -> None:
        """A monitor or a sync-kloop took a ring's callbacks over or gave
        them back: the switch counts again who needs Python (``c_plain``)."""
        if self.bridge is not None:
            self.bridge.c_refresh()

    def c_plain(self) -> bool:
        """Whether a flush may fill this port's RX rings from C: each one's
        notify is the plain wake-up (no monitor, bwrap or kloop took it over)."""
        return all(k.c.c_sync == lib.NMH_SYNC_VALE for k in self.bdg_rx_krings())

    def c_moves(self, kring) -> list:
        """A TX ring's C flush may move the RX rings of every port of the switch."""
        if not kring.is_tx or self.bridge is None:
            return []
        return [k for port in self.bridge.active_ports() if port is not None for k in port.bdg_rx_krings()]

    def notify(self, kring) -> None:
        """The switch filled RX ``kring`` (after a flush from Python, or from
        the waker after a C flush): a ring whose sync is Python's gets the
        switch's new hwtail first, as netmap's flush writes it, since its
        notify may look at it; one whose sync is C pulls it in its rxsync
        (only its owner writes its kring).  Then its nm_notify runs."""
        i = kring.index - self.rx_base
        if kring.c.c_sync == lib.NMH_SYNC_PYTHON and not kring.is_tx and i < NM_BDG_MAXRINGS:
            cr = self.cport.rx[i]
            if cr.slot != ffi.NULL:
                kring.hwtail = cr.hwtail
        kring.nm_notify(kring)

    def bdg_refresh(self, gone=()) -> None:
        """Bring the C view of the RX rings in step with the krings, under
        the switch's lock; the krings in ``gone`` (or whose ring is None)
        leave it.  A ring keeps its hwcur and hwtail while it stays in the
        view (the switch's and its owner's, see vale.h); one that enters
        starts from its kring's."""
        c = self.cport
        rx = self.bdg_rx_krings()
        with self._locked():
            for i in range(NM_BDG_MAXRINGS):
                cr = c.rx[i]
                kring = rx[i] if i < len(rx) else None
                if kring is None or kring.ring is None or kring in gone:
                    cr.slot, cr.kring = ffi.NULL, ffi.NULL
                    continue
                if cr.slot != kring.ring.slot:
                    cr.slot = kring.ring.slot
                    cr.num_slots = kring.num_slots
                    cr.hwcur, cr.hwtail = kring.hwcur, kring.hwtail
                cr.kring = kring.c
                cr.offset_mask = kring.offset_mask
            c.num_rx = min(len(rx), NM_BDG_MAXRINGS) if self.on else 0
        if self.bridge is not None:
            self.bridge.c_refresh()

    def bdg_hide(self) -> None:
        """Take every RX ring out of the C view (before rings or krings go)."""
        self.bdg_refresh(gone=self.bdg_rx_krings())

    @contextmanager
    def _locked(self):
        if self.bridge is None:
            yield                   # no switch: no flush reads the view
        else:
            with self.bridge.locked():
                yield

    def tx_state(self, kring):
        """The C txsync's state of TX ``kring`` (struct nmh_vale_tx)."""
        t = self._tx.get(kring.index)
        if t is None:
            t = self._tx[kring.index] = ffi.new("struct nmh_vale_tx *", {"port": self.cport,
                                                                          "ring_nr": kring.index})
        return t

    def txsync(self, kring) -> int:
        """Switch [hwcur, rhead) and give every slot back at once
        (netmap_vale_vp_txsync, csrc/vale.c); without a switch the frames
        are dropped.  The destinations are notified here."""
        bridge = self.bridge
        nout = lib.nmh_vale_txsync(kring.c, self.tx_state(kring), ffi.NULL, ffi.NULL,
                                   ffi.NULL if bridge is None else bridge.out)
        if nout:
            bridge.deliver(nout)
        return 0

    def rxsync(self, kring) -> int:
        """Take the frames the switch delivered, return the released slots
        (netmap_vp_rxsync, csrc/vale.c)."""
        i = kring.index - self.rx_base
        if i < NM_BDG_MAXRINGS:
            lib.nmh_vale_rxsync(kring.c, ffi.addressof(self.cport.rx[i]))
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

    def krings_create(self) -> None:
        """The krings, each pointing to its C sync's state (kring.c.driver)."""
        Adapter.krings_create(self)
        for kring in self.krings[TX]:
            kring.c.driver = self.tx_state(kring)
        for i, kring in enumerate(self.bdg_rx_krings()):
            kring.c.driver = ffi.addressof(self.cport.rx[i])

    def rings_create(self) -> None:
        try:
            Adapter.rings_create(self)
        finally:
            self.bdg_refresh()

    def rings_delete(self) -> None:
        # out of the switch's view before the memory goes
        self.bdg_refresh(gone=[k for k in self.bdg_rx_krings() if not k.wants_ring()])
        Adapter.rings_delete(self)
        self.bdg_refresh()

    def krings_delete(self) -> None:
        """Delete the krings, out of the switch's C view first."""
        self.bdg_hide()
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

