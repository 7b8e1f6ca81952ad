"""Monitor ports (netmap_monitor.c).

A REGISTER with NR_MONITOR_RX and/or NR_MONITOR_TX (clients spell them
``/r``, ``/t``, ``/rt`` after the port name) gets a monitor of the port
named, which must be in netmap mode (registered by someone: else EINVAL).
NR_ZCOPY_MON (``/z``) asks for a zero-copy monitor and implies both
directions.  A monitor is a new anonymous port each time, named
``PORT/[z][r][t]#N``; it has one TX ring (txsync: EIO) and as many RX rings
as the larger ring count of the port: monitor RX ring i receives what
passes on the port's TX ring i and RX ring i (and its host RX ring the
port's host rings).  Frames seen on a TX ring carry NS_TXMON.

Monitors work by taking over the monitored krings' callbacks (``nm_sync``
and, on RX rings, ``nm_notify``) and calling the saved ones:

* copy monitors copy the bytes of each frame into their own buffers and
  see frames *before* they are consumed: TX frames when the sender's
  txsync hands them over (before the driver sends them), RX frames as soon
  as the driver delivers them (the RX notify runs the port's rxsync for
  them), whether or not anyone reads the port.  When a monitor ring is
  short of room the oldest frames of the batch are dropped;
* zero-copy monitors swap buffers with the port and see frames *after*
  they are consumed: TX slots once the port gives them back (hwtail
  moves), RX slots when the reader releases them.  A second zero-copy
  monitor of the same ring is chained behind the first: it receives what
  the first one's reader releases (as netmap does, without NS_TXMON).

When the monitored port leaves netmap mode (its last binding goes) its
monitors lose it: their rxsync then fails with EIO (poll reports
POLLERR), as netmap's does.  A monitor cannot itself be monitored by name
(it has none a lookup can find), as in netmap.
"""

import errno
from contextlib import ExitStack

from nmfuse._helper import ffi, lib
from nmfuse.abi.netmap import RegFlag, SlotFlag
from nmfuse.netmap.adapter import Adapter, bound_var
from nmfuse.netmap.binding import interp_ringid
from nmfuse.netmap.driver import Driver
from nmfuse.netmap.kring import DIRECTIONS, RX, TX

NM_MONITOR_MAXSLOTS = 4096
DIRECTION_FLAG = {TX: RegFlag.MONITOR_TX, RX: RegFlag.MONITOR_RX}
MONITOR_FLAGS = RegFlag.MONITOR_TX | RegFlag.MONITOR_RX


class MonState:
    """What a kring keeps for monitoring (netmap's kring monitor fields).

    On a monitored kring: its copy monitors, the tail of its zero-copy
    chain (``zprev``) and the head (``znext``), the saved callbacks and
    ``mon_tail``.  On a monitor's kring: its place in those lists.
    """

    __slots__ = ("monitors", "znext", "zprev", "mon_pos", "mon_tail", "saved_sync", "saved_notify")

    def __init__(self):
        self.monitors: list = []
        self.znext = [None, None]
        self.zprev = [None, None]
        self.mon_pos = [0, 0]
        self.mon_tail = 0
        self.saved_sync = None
        self.saved_notify = None

    def stop(self, kring) -> None:
        """The port of ``kring`` leaves netmap mode: its monitors lose it and its
        saved callbacks come back (netmap_monitor_stop)."""
        _stop_kring(kring)


def _ms(kring) -> MonState:
    if kring.mon is None:
        kring.mon = MonState()
    return kring.mon


def _none(kring) -> bool:
    """No monitor on this kring (nm_monitor_none)."""
    ms = kring.mon
    return ms is None or (not ms.monitors and ms.znext[TX] is None and ms.znext[RX] is None)


def _is_zmon(adapter) -> bool:
    return isinstance(adapter, MonitorAdapter) and adapter.zcopy


# -- taking over a monitored kring ---------------------------------------------


def _intercept(kring) -> None:
    ms = _ms(kring)
    ms.saved_sync, ms.saved_notify = kring.nm_sync, kring.nm_notify
    if kring.direction == TX:
        kring.nm_sync = _parent_txsync
    else:
        kring.nm_sync = _parent_rxsync
        kring.nm_notify = _parent_notify
        ms.mon_tail = kring.hwtail


def _restore(kring) -> None:
    ms = kring.mon
    if ms is None or ms.saved_sync is None:
        return
    kring.nm_sync = ms.saved_sync
    if kring.direction == RX:
        kring.nm_notify = ms.saved_notify
    ms.saved_sync = ms.saved_notify = None


def _monitor_add(mkring, kring, zmon: bool) -> None:
    """Put monitor ring ``mkring`` on ``kring`` (netmap_monitor_add)."""
    t = kring.direction
    z, mz = _ms(kring), _ms(mkring)
    ikring = kring
    if zmon and z.zprev[t] is not None:
        ikring = z.zprev[t]           # a later zero-copy monitor watches the previous one
    if _none(ikring):
        _intercept(ikring)
    if zmon:
        _ms(ikring).znext[t] = mkring
        z.zprev[t] = mkring
        mz.zprev[t], mz.znext[t] = ikring, None
    else:
        mz.mon_pos[t] = len(z.monitors)
        z.monitors.append(mkring)


def _zmon_list_head(mkring, t: int):
    k = mkring
    while _is_zmon(k.adapter) and k.mon.zprev[t] is not None:
        k = k.mon.zprev[t]
    return None if _is_zmon(k.adapter) else k


def _monitor_del(mkring, kring, t: int) -> None:
    """Take monitor ring ``mkring`` off ``kring`` (netmap_monitor_del)."""
    mz = _ms(mkring)
    ikring = kring
    if _is_zmon(mkring.adapter):
        kring = _zmon_list_head(mkring, t)
        ikring = mz.zprev[t]
        if mz.znext[t] is not None:
            _ms(mz.znext[t]).zprev[t] = mz.zprev[t]
        elif kring is not None:
            # in the monitored kring, zprev is the tail of the list
            kring.mon.zprev[t] = mz.zprev[t] if mz.zprev[t] is not kring else None
        if mz.zprev[t] is not None:
            _ms(mz.zprev[t]).znext[t] = mz.znext[t]
        mz.zprev[t] = mz.znext[t] = None
    else:
        mons = kring.mon.monitors
        pos = mz.mon_pos[t]
        last = mons.pop()
        if last is not mkring:
            mons[pos] = last
            last.mon.mon_pos[t] = pos
    if ikring is not None and _none(ikring):
        _restore(ikring)


def _forget_parent(mna) -> None:
    parent, mna.parent = mna.parent, None
    if parent is not None:
        parent.put()


def _stop_kring(kring) -> None:
    """The port of ``kring`` leaves netmap mode (netmap_monitor_stop)."""
    ms = kring.mon
    t = kring.direction
    for mkring in ms.monitors:
        _forget_parent(mkring.adapter)
    ms.monitors = []
    if not _is_zmon(kring.adapter):
        z = ms.znext[t]
        while z is not None:
            _forget_parent(z.adapter)
            z = z.mon.znext[t]
        if ms.znext[t] is not None:
            ms.znext[t].mon.zprev[t] = None   # orphan the chain
        ms.znext[t] = ms.zprev[t] = None
    _restore(kring)


# -- the callbacks of a monitored kring --------------------------------------------


def _copy_to_monitors(kring, first: int, count: int) -> None:
    """Copy slots [first, first+count) to every copy monitor of ``kring``."""
    ring = kring.ring
    if ring is None:
        return
    mem = kring.adapter.mem
    bufs = mem.region.base + mem.bufs.offset
    txmon = SlotFlag.TXMON if kring.direction == TX else 0
    for mkring in list(kring.mon.monitors):
        mring = mkring.ring
        if mring is None:
            continue
        tail = lib.nmh_mon_copy(bufs, mem.buf_size, mem.bufs.objtotal,
                                ring.slot, kring.num_slots, kring.offset_mask, first, count,
                                mring.slot, mkring.num_slots, mkring.offset_mask,
                                mkring.hwcur, mkring.hwtail, txmon)
        if tail != mkring.hwtail:
            mkring.hwtail = tail
            mkring.adapter.notify(mkring)


def _zmon_sync(kring, t: int) -> int:
    """Hand the slots the port released to the first zero-copy monitor
    (netmap_zmon_parent_sync): TX slots its txsync gave back, RX slots
    its reader released (before the port's rxsync reuses them)."""
    ms = kring.mon
    mkring = ms.znext[t]
    n = kring.num_slots
    if t == TX:
        beg = (kring.hwtail + 1) % n
        error = ms.saved_sync(kring)
        if error:
            return error
        end = (kring.hwtail + 1) % n
    else:
        beg, end = kring.hwcur, kring.rhead
    released = (end - beg) % n
    if released and kring.ring is not None and mkring.ring is not None:
        txmon = SlotFlag.TXMON if kring.direction == TX else 0
        tail = lib.nmh_mon_swap(kring.ring.slot, n, beg, released, mkring.ring.slot, mkring.num_slots,
                                mkring.hwcur, mkring.hwtail, txmon)
        if tail != mkring.hwtail:
            mkring.hwtail = tail
            mkring.adapter.notify(mkring)
    if t == RX:
        return ms.saved_sync(kring)
    return 0


def _parent_txsync(kring) -> int:
    ms = kring.mon
    if ms.monitors:
        new = (kring.rhead - kring.hwcur) % kring.num_slots
        if new:
            _copy_to_monitors(kring, kring.hwcur, new)
    if ms.znext[TX] is not None:
        return _zmon_sync(kring, TX)
    return ms.saved_sync(kring)


def _parent_rxsync(kring) -> int:
    ms = kring.mon
    if ms.znext[RX] is not None:
        error = _zmon_sync(kring, RX)
    else:
        error = ms.saved_sync(kring)
    if error:
        return error
    if ms.monitors:
        new = (kring.hwtail - ms.mon_tail) % kring.num_slots
        if new:
            _copy_to_monitors(kring, ms.mon_tail, new)
        ms.mon_tail = kring.hwtail
    return 0


def _parent_notify(kring) -> None:
    """Frames arrived on a monitored RX ring: copy monitors see them now."""
    ms = kring.mon
    if ms.monitors and kring.ring is not None:
        _parent_rxsync(kring)
    notify = ms.saved_notify
    if notify is None:            # no longer monitored: the callbacks were restored
        notify = kring.adapter.wake_pollers
    notify(kring)


# -- the monitor port ----------------------------------------------------------


class MonitorAdapter(Adapter):
    """A copy or zero-copy monitor of ``parent`` (netmap_monitor_adapter)."""

    kind = "monitor"

    def __init__(self, core, name: str, parent, flags: int, zcopy: bool, **geometry):
        self.has_host_rings = parent.has_host_rings
        host = 1 if parent.has_host_rings else 0
        # a monitor lives in its parent's memory (copies and swaps stay in one pool)
        super().__init__(core, name, host_tx_rings=host, host_rx_rings=host, mem=parent.mem, **geometry)
        self.parent = parent      # netmap's priv.np_na: None once the parent left netmap mode
        self.flags = flags
        self.zcopy = zcopy
        self.supports_offsets = not zcopy
        self._added: list = []

    def txsync(self, kring) -> int:
        return errno.EIO          # monitors cannot inject frames

    def rxsync(self, kring) -> int:
        if self.parent is None:
            return errno.EIO      # the monitored port left netmap mode
        kring.hwcur = kring.rhead
        return 0

    def register(self, on: bool) -> None:
        if on:
            pna = self.parent
            if pna is None:
                raise OSError(errno.ENXIO, f"{self.name}: the monitored port left netmap mode")
            for mkring in self.krings[RX]:
                if mkring.users == 0:
                    continue
                i = mkring.index
                for s in DIRECTIONS:
                    if self.flags & DIRECTION_FLAG[s] and pna.krings is not None and i < pna.all_rings(s):
                        kring = pna.krings[s][i]
                        _monitor_add(mkring, kring, self.zcopy)
                        self._added.append((mkring, kring, s))
        else:
            added, self._added = self._added, []
            if self.parent is None:
                return
            for mkring, kring, s in added:
                _monitor_del(mkring, kring, s)

    def destroy(self) -> None:
        _forget_parent(self)


def lookup(core, name: str, reg, create: bool, mem_given):
    """The cascade's monitor step (netmap_get_monitor_na): a new monitor
    when the register flags ask for one.  NR_ZCOPY_MON adds both direction
    flags to the request, which the client sees in the body it gets back.

    Raises:
        OSError: the parent lookup's error; EINVAL if the parent is not in
            netmap mode or the ring selection does not fit it.
    """
    flags = reg.nr_flags
    zcopy = bool(flags & RegFlag.ZCOPY_MON)
    if zcopy:
        reg.nr_flags = flags = flags | MONITOR_FLAGS
    if not flags & MONITOR_FLAGS:
        return None
    preq = ffi.new("struct nmreq_register *")
    ffi.memmove(preq, reg, ffi.sizeof("struct nmreq_register"))
    preq.nr_flags &= ~(MONITOR_FLAGS | RegFlag.ZCOPY_MON)
    with ExitStack() as undo:
        pna = core.get_adapter(name, preq, create)
        undo.callback(pna.put)
        if pna.active_fds == 0 or pna.krings is None:
            raise OSError(errno.EINVAL, f"{pna.name} is not in netmap mode")
        interp_ringid(pna, reg.nr_mode, reg.nr_ringid, reg.nr_flags)
        monitor_id = pna.monitor_id
        pna.monitor_id = monitor_id + 1
        suffix = ("z" if zcopy else "") + ("r" if flags & RegFlag.MONITOR_RX else "") + \
                 ("t" if flags & RegFlag.MONITOR_TX else "")
        monitor = MonitorAdapter(
            core, f"{pna.name}/{suffix}#{monitor_id}", pna,
            flags & (MONITOR_FLAGS | RegFlag.ZCOPY_MON), zcopy,
            tx_rings=1, rx_rings=max(pna.num_rings[TX], pna.num_rings[RX]),
            tx_slots=bound_var(reg.nr_tx_slots, pna.num_slots[TX], 1, NM_MONITOR_MAXSLOTS),
            rx_slots=bound_var(reg.nr_rx_slots, pna.num_slots[RX], 1, NM_MONITOR_MAXSLOTS))
        undo.pop_all()   # the monitor holds pna now
    return monitor


class MonitorDriver(Driver):
    """Monitors of other ports (netmap_get_monitor_na): claims registrations
    whose flags ask for a monitor."""

    name = "monitor"

    def lookup(self, name: str, reg, create: bool, mem_given):
        """See the module-level ``lookup``."""
        return lookup(self.core, name, reg, create, mem_given)
