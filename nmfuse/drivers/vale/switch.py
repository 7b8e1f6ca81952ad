"""VALE switches and their forwarding (netmap_vale.c, netmap_bdg.c).

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
rxsync copies hwtail into its kring and writes hwcur back (csrc/vale.c
nmh_vale_rxsync, with the kring held).  A flush (nmh_vale_txsync) runs
under the switch's lock, on whatever thread syncs the sending ring: the C
fast path's workers, without the core lock, or the daemon's Python.  After
a C flush the workers wake the destination rings' pollers themselves;
after a Python one ``Bridge.deliver`` notifies each destination ring (wakes
pollers, or runs whoever intercepted nm_notify: a monitor, or a bwrap that
pushes the frames on into the port it wraps).  While a port of the switch
needs such a notify (``VPort.c_plain``), the C fast path leaves the
switch's TX syncs to Python, so those notifies run as before, in the
sending sync.

The daemon changes the switch and the ports' C views (attach, detach,
rings that come and go, netmap mode) only under the same lock
(``Bridge.locked``), and a ring leaves the view before its memory goes.
The C structs of the switches are allocated once per daemon
(``Switches``) and never freed: a C sync may look at its port's switch
before it takes that lock.
"""

from contextlib import contextmanager

from nmfuse._helper import ffi, lib

NM_BDG_NAME = "vale"
NM_BRIDGES = 8                        # netmap's default vale_max_bridges
NM_BDG_MAXPORTS = lib.NMH_VALE_MAXPORTS
NM_BDG_NOPORT = lib.NMH_VALE_NOPORT
NM_BDG_MAXRINGS = 16
NM_BDG_MAXSLOTS = 4096
NM_BRIDGE_RINGSIZE = 1024
IFNAMSIZ = 16



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

    def __init__(self, switches: "Switches", index: int, name: str):
        self.switches = switches
        self.core = switches.core
        self.index = index
        self.name = name
        self.c = switches.c + index     # the slot's C switch, reset (and its lock kept)
        lib.nmh_vale_bridge_reset(self.c)
        self.out = ffi.new("uint16_t[4096]")
        self.ports: list = [None] * NM_BDG_MAXPORTS
        # active port indexes first, then the free ones (freed last, reused first)
        self.port_index = list(range(NM_BDG_MAXPORTS))
        self.active = 0

    def active_ports(self):
        """The attached ports, in the order of the active indexes."""
        return [self.ports[i] for i in self.port_index[:self.active]]

    def find(self, name: str):
        """The attached port named ``name``, or None (the port scan of
        netmap_get_bdg_na)."""
        for port in self.active_ports():
            if port is not None and port.name == name:
                return port
        return None

    @contextmanager
    def locked(self):
        """Hold the switch's lock: no flush runs meanwhile (see the module
        docstring)."""
        lib.nmh_vale_lock(self.c)
        try:
            yield
        finally:
            lib.nmh_vale_unlock(self.c)

    def c_refresh(self) -> None:
        """Count again the ports whose RX rings need Python when the switch
        fills them (``struct nmh_vale_bridge.python``)."""
        with self.locked():
            self.c.python = sum(1 for port in self.active_ports() if port is not None and not port.c_plain())

    def attach(self, port) -> None:
        """Give ``port`` the next free index."""
        idx = self.port_index[self.active]
        with self.locked():
            self.ports[idx] = port
            self.c.ports[idx] = port.cport
            self.active += 1
            self._sync()
            port.bridge, port.bdg_port = self, idx
            port.cport.last_smac = (1 << 64) - 1
            port.cport.me = idx
            port.cport.bridge = self.c
        self.c_refresh()

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
        with self.locked():
            for idx in tmp[lim:self.active]:
                port = self.ports[idx]
                if port is not None:
                    port.bridge, port.bdg_port = None, -1
                    port.cport.bridge = ffi.NULL
                self.ports[idx] = None
                self.c.ports[idx] = ffi.NULL
            self.active = lim
            self._sync()
        self.c_refresh()
        self.free_if_empty()

    def free_if_empty(self) -> None:
        """Give the switch's slot in the table back once no port is left
        (netmap_bdg_free)."""
        if self.active == 0 and self.switches.bridges[self.index] is self:
            self.switches.bridges[self.index] = None

    def _sync(self) -> None:
        self.c.active = self.active
        for j in range(self.active):
            self.c.port_index[j] = self.port_index[j]

    def deliver(self, nout: int) -> None:
        """After a flush from Python: notify each destination ring the C
        loop listed (``VPort.notify``)."""
        for e in ffi.unpack(self.out, nout):  # a copy: notify may flush again
            port = self.ports[e >> 4]
            if port is None:
                continue
            kring = port.rx_kring(e & 0xF)
            if kring is None:
                continue
            kring.adapter.notify(kring)


class Switches:
    """The switch table of a daemon (netmap's nm_bridges array)."""

    def __init__(self, core):
        self.core = core
        self.bridges: list[Bridge | None] = [None] * NM_BRIDGES
        # one C switch per slot, for the daemon's life (see the module docstring)
        self.c = ffi.new("struct nmh_vale_bridge[]", NM_BRIDGES)
        for i in range(NM_BRIDGES):
            lib.nmh_vale_bridge_init(self.c + i)

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
        b = Bridge(self, free, name[:namelen])
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

