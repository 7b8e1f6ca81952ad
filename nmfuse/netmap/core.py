"""The netmap core: memory, the ports that exist, and how names resolve.

``Core`` is what every request works against.  It is used from the FUSE
request thread and from the daemon's event loop, always under ``lock``.
"""

import errno
import threading

from nmfuse.drivers import monitor, null, pipe, tap, vale
from nmfuse.mem import MemoryTable
from nmfuse.netmap.abi import RegMode


class Core:
    """Ports and memory of one daemon.

    ``wake(kh)`` tells the device layer to wake a poller; it is called with
    the lock held and must not block.
    """

    # netmap_get_na's cascade: the first lookup that claims a name wins
    lookups = [null.lookup, monitor.lookup, pipe.lookup, tap.lookup, vale.lookup]

    def __init__(self, mem, wake=lambda kh: None):
        self.mem = mem
        self.memories = MemoryTable(mem)     # mem_id -> allocator, external memory too
        self.wake = wake
        self.lock = threading.RLock()
        self.pipes: dict[tuple[str, str], object] = {}
        self.named: dict[str, object] = {}   # ports that exist on their own (TAP, VALE, ...)
        self.switches = vale.Switches(self)  # the VALE switches

    def find_memory(self, mem_id: int):
        """The allocator with ``mem_id`` (netmap_mem_find).  Raises OSError(EINVAL)."""
        mem = self.memories.find(mem_id)
        if mem is None:
            raise OSError(errno.EINVAL, f"no memory region with id {mem_id}")
        return mem

    def get_adapter(self, name: str, reg, create: bool = True, mem=None):
        """Resolve ``name`` to a referenced adapter (netmap_get_na).

        ``mem`` is the memory the request brought (EXTMEM); without it a
        nonzero nr_mem_id names one.  A port made now lives in that memory
        (a pipe in its parent's when the parent is in use); an existing
        one keeps its own.

        Raises:
            OSError: EINVAL (deprecated pipe modes, unknown nr_mem_id, bad
                names), ENXIO (no such port), or a driver's own error.
        """
        if reg.nr_mode in (RegMode.PIPE_MASTER, RegMode.PIPE_SLAVE):
            raise OSError(errno.EINVAL, "deprecated pipe nr_mode, use the x{y / x}y syntax")
        if mem is None and reg.nr_mem_id:
            mem = self.find_memory(reg.nr_mem_id)
        # drivers get the memory as ``mem_given``: None when the request named none
        mem_given = mem
        for lookup in self.lookups:
            adapter = lookup(self, name, reg, create, mem_given)
            if adapter is not None:
                return adapter.get()
        port = self.named.get(name)
        if port is None:
            raise OSError(errno.ENXIO, f"no port named {name!r}")
        return port.get()
