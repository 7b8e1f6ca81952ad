"""Netmap pipes (netmap_pipe.c): ``NAME{ID`` is the master end, ``NAME}ID``
the slave; TX ring i of one end feeds RX ring i of the other.

Slot k of a TX ring and slot k of its peer RX ring are one position: txsync
copies the slot (buffer index, length, flags) across and rxsync copies it
back when the receiver releases it, so frames move without their bytes
being copied.  Only TX rings own buffers; an RX ring starts with buffer 0 in
every slot and only ever shows the peer's buffers in [head, tail).

    end A (master)                 end B (slave)
    TX ring i  --- pipe_tail --->  RX ring i      (A sends, B receives)
    RX ring j  <-- pipe_tail ----  TX ring j      (B sends, A receives)

``pipe_tail`` is where the peer lets a ring's hwtail advance to: the
receiving RX ring's after a complete frame is forwarded, the sending TX
ring's after the receiver releases slots.

Both ends are created together and live while either is referenced.  A
pipe's parent is any existing named port, or else an implicit parent
(netmap creates an auto-deleting persistent VALE port there).  Both ends
live in the memory the request named (EXTMEM or nr_mem_id), where netmap
moves an idle parent, or else in the parent's (the daemon's global region
for every parent nmfuse has); a parent in use keeps its memory and the
pipe goes there too.
"""

import errno

from nmfuse._helper import lib
from nmfuse.abi.netmap import RegMode
from nmfuse.netmap.adapter import Adapter, bound_var
from nmfuse.netmap.driver import Driver
from nmfuse.netmap.kring import DIRECTIONS, RX, TX

MAX_RINGS = 256
MAX_SLOTS = 4096
DEFAULT_SLOTS = 1024  # the slots of an implicit parent (a VALE port's default)


class PipeAdapter(Adapter):
    kind = "pipe"
    supports_offsets = True
    c_sync = lib.NMH_SYNC_PIPE    # the C fast path serves its syncs (csrc/sync.c)

    def __init__(self, core, name, pair, role, **geometry):
        super().__init__(core, name, **geometry)
        self.pair = pair
        self.role = role
        self.peer: PipeAdapter = None

    # krings of both ends exist together, while either end is registered
    def krings_create(self) -> None:
        if self.peer.krings is not None:
            return
        for end in (self, self.peer):
            Adapter.krings_create(end)
        for d in DIRECTIONS:
            other = RX if d == TX else TX
            for mine, theirs in zip(self.krings[d], self.peer.krings[other]):
                mine.peer, theirs.peer = theirs, mine
        for end in (self, self.peer):
            for kring in end.krings[TX] + end.krings[RX]:
                kring.pipe_tail = kring.hwtail

    def krings_delete(self) -> None:
        """Delete the krings of both ends together, once the peer has no binding
        left either (netmap_pipe_krings_delete)."""
        if self.peer.active_fds == 0:
            for end in (self, self.peer):
                Adapter.krings_delete(end)

    def register(self, on: bool) -> None:
        pass

    def _mark_needed(self) -> None:
        """A bound ring needs its peer's ring too."""
        for end in (self, self.peer):
            for kring in end.krings[TX] + end.krings[RX]:
                kring.need_ring = kring.peer.users > 0

    def rings_create(self) -> None:
        self._mark_needed()
        for end in (self, self.peer):
            Adapter.rings_create(end)

    def rings_delete(self) -> None:
        if self.krings is None:
            return
        self._mark_needed()
        for end in (self, self.peer):
            Adapter.rings_delete(end)

    def ring_owns_buffers(self, kring) -> bool:
        # RX slots only ever show the peer's buffers
        return kring.direction == TX

    def txsync(self, kring) -> int:
        # the rules are C (csrc/sync.c), shared with the C fast path
        if lib.nmh_pipe_txsync(kring.c):
            kring.peer.adapter.notify(kring.peer)
        return 0

    def rxsync(self, kring) -> int:
        if lib.nmh_pipe_rxsync(kring.c):
            kring.peer.adapter.notify(kring.peer)
        return 0

    def destroy(self) -> None:
        if self.peer.refs == 0:
            self.pair.forget()


class PipePair:
    """The two ends of one pipe, known to the driver until both are gone."""

    def __init__(self, driver: "PipeDriver", key):
        self.driver, self.key = driver, key

    def forget(self) -> None:
        """Both ends are gone: the name ``key`` is free again; an end never
        opened still held its memory."""
        self.driver.pairs.pop(self.key, None)
        self.master.release_memory()
        self.slave.release_memory()


class PipeDriver(Driver):
    """Pipes ``NAME{ID`` / ``NAME}ID`` (netmap_get_pipe_na); ``pairs`` holds
    the pipes that exist, by (parent name, id)."""

    name = "pipe"

    def __init__(self) -> None:
        super().__init__()
        self.pairs: dict[tuple[str, str], PipePair] = {}

    def lookup(self, name: str, reg, create: bool, mem_given):
        """The pipe end ``name``, made with its peer on first use.

        Raises:
            OSError: EINVAL (no parent or id, a mode pipes refuse), EBUSY
                (the parent is owned by a switch), ENODEV (no such pipe
                and ``create`` is False).
        """
        return _lookup(self, name, reg, create, mem_given)


def _lookup(driver: PipeDriver, name: str, reg, create: bool, mem_given):
    core = driver.core
    brace = name.rfind("{")
    role = "master"
    if brace < 0:
        brace = name.rfind("}")
        role = "slave"
        if brace < 0:
            return None
    parent, pipe_id = name[:brace], name[brace + 1:]
    if not pipe_id or not parent:
        raise OSError(errno.EINVAL, "pipe name needs a parent and an id")
    if reg.nr_mode not in (RegMode.ALL_NIC, RegMode.ONE_NIC):
        raise OSError(errno.EINVAL, "pipes accept only NR_REG_ALL_NIC and NR_REG_ONE_NIC")
    parent_port = core.named.get(parent)
    if parent_port is not None and parent_port.owned_by_kernel:
        raise OSError(errno.EBUSY, "parent busy")
    key = (parent, pipe_id)
    pair = driver.pairs.get(key)
    if pair is None:
        if not create:
            raise OSError(errno.ENODEV, f"pipe {name} not found")
        mem = mem_given
        if parent_port is not None and (mem is None or parent_port.active_fds > 0):
            mem = parent_port.mem
        pair = _create(driver, key, reg, parent_port, mem)
    return pair.master if role == "master" else pair.slave


def _create(driver: PipeDriver, key, reg, parent_port, mem) -> PipePair:
    core = driver.core
    parent, pipe_id = key
    default_slots = parent_port.num_slots if parent_port is not None else [DEFAULT_SLOTS] * 2
    tx_rings = bound_var(reg.nr_tx_rings, 1, 1, MAX_RINGS)
    rx_rings = bound_var(reg.nr_rx_rings, 1, 1, MAX_RINGS)
    tx_slots = bound_var(reg.nr_tx_slots, default_slots[TX], 1, MAX_SLOTS)
    rx_slots = bound_var(reg.nr_rx_slots, default_slots[RX], 1, MAX_SLOTS)
    pair = PipePair(driver, key)
    pair.master = PipeAdapter(core, f"{parent}{{{pipe_id}", pair, "master", mem=mem,
                              tx_rings=tx_rings, rx_rings=rx_rings, tx_slots=tx_slots, rx_slots=rx_slots)
    pair.slave = PipeAdapter(core, f"{parent}}}{pipe_id}", pair, "slave", mem=mem,
                             tx_rings=rx_rings, rx_rings=tx_rings, tx_slots=rx_slots, rx_slots=tx_slots)
    pair.master.peer, pair.slave.peer = pair.slave, pair.master
    driver.pairs[key] = pair
    return pair
