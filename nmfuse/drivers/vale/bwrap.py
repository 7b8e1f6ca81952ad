"""A port of another type joined to a switch (netmap_bwrap_adapter).

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
"""

import errno
import os
from contextlib import ExitStack

from nmfuse._helper import ffi, lib
from nmfuse.abi.netmap import RegMode
from nmfuse.drivers.vale.polling import Polling
from nmfuse.drivers.vale.port import VPort
from nmfuse.netmap.adapter import Adapter
from nmfuse.netmap.binding import Binding, do_regif, do_unregif
from nmfuse.netmap.kring import DIRECTIONS, RX, TX


class BwrapHost(VPort):
    """The host rings of a wrapped port as a switch port of their own
    (``NAME^``): its krings are the bwrap's host krings."""

    c_sync = lib.NMH_SYNC_PYTHON    # the bwrap's rings: Python syncs them

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
    c_sync = lib.NMH_SYNC_PYTHON    # hw's rings: their syncs and notifies are Python's

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
        self.saved_na_vp = hw.na_vp
        hw.na_vp = self
        hw.owned_by_kernel = True
        self.na_vp = self

    # -- krings and rings: the bwrap's are hw's, directions swapped --

    def krings_create(self) -> None:
        hw = self.hw
        with ExitStack() as undo:
            Adapter.krings_create(self)
            undo.callback(Adapter.krings_delete, self)
            if hw.krings is None:
                hw.krings_create()
                undo.callback(hw.krings_delete)
            # The bwrap holds hw's hardware rings, and its host rings only
            # when they joined the switch too (netmap holds them all; a
            # driver may tell from the host rings' users where its host
            # stack goes).
            host_on = self.host is not None and self.host.bridge is not None
            self._hw_used = [k for d in DIRECTIONS
                             for k in hw.krings[d][:None if host_on else hw.num_rings[d]]]
            for k in self._hw_used:
                k.users += 1
            undo.callback(self._hw_release)
            hw.rings_create()
            undo.pop_all()
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

    def _hw_release(self) -> None:
        """Give back hw's rings taken by ``krings_create``."""
        for k in self._hw_used:
            k.users -= 1
        self._hw_used = []
        self.hw.rings_delete()

    def krings_delete(self) -> None:
        """Give back hw's rings (and delete hw's krings if no binding holds hw),
        then drop the bwrap's own krings (netmap_bwrap_krings_delete_common)."""
        hw = self.hw
        self.bdg_hide()               # out of the switch's view before hw's rings go
        if self.host is not None:
            self.host.bdg_hide()
        if hw.krings is not None:
            self._hw_release()
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
            raise OSError(errno.EINVAL, "only all NIC rings, with or without the host rings, can be attached")
        if self.owned_by_any():
            raise OSError(errno.EBUSY, f"{self.name} busy")
        if self.kbinding is not None:
            return
        kreg = ffi.new("struct nmreq_register *")
        kreg.nr_mode, kreg.nr_ringid = reg.nr_mode, 0
        binding = Binding(-1, os.getpid())
        do_regif(binding, self, kreg)
        self.kbinding = binding
        self.owned_by_kernel = True

    def bdg_ctl_detach(self) -> None:
        """Undo ``bdg_ctl_attach``: unregister hw and drop the reference the
        attachment held, so the bwrap goes (netmap_bwrap_bdg_ctl).

        Raises:
            OSError: EINVAL, the bwrap is not attached; nothing changes.
        """
        if self.active_fds == 0 or self.kbinding is None:
            raise OSError(errno.EINVAL, f"{self.name} is not registered")
        binding, self.kbinding = self.kbinding, None
        do_unregif(binding)
        self.owned_by_kernel = False
        self.put()   # the reference the attachment held: the bwrap goes

    def destroy(self) -> None:
        """netmap_bwrap_dtor: leave the switch and give hw back."""
        self._polling_halt()
        if self.kbinding is not None:
            binding, self.kbinding = self.kbinding, None
            do_unregif(binding)
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
        """Start polling hw's RX rings (nm_bdg_ctl_polling_start); polling
        holds the port, as netmap's does.

        Raises:
            OSError: EFAULT (already polling), EINVAL (the configuration).
        """
        if self.polling is not None:
            raise OSError(errno.EFAULT, "already polling")
        self.polling = Polling(self, req)
        self.get()

    def polling_stop(self) -> None:
        """Stop polling.  Raises OSError(EFAULT) if the port is not polling."""
        if self.polling is None:
            raise OSError(errno.EFAULT, "not polling")
        self._polling_halt()
        self.put()

    def _polling_halt(self) -> None:
        if self.polling is not None:
            polling, self.polling = self.polling, None
            polling.halt()
