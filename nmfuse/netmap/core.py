"""The netmap core: memory, the ports that exist, and how names resolve.

``Core`` is what every request works against.  It is used from the FUSE
request thread and from the daemon's event loop, always under ``lock``.
Its drivers are handed to it (see ``driver.py``): it imports none.
"""

import errno
import threading
from collections.abc import Iterable

from nmfuse.abi.netmap import RegMode, ffi
from nmfuse.mem import MemoryTable
from nmfuse.netmap.driver import Driver, RequestHandler
from nmfuse.netmap.fastwait import CWaiter, FastWaker


class Core:
    """Ports, memory and drivers of one daemon.

    ``wake(kh)`` tells the device layer to wake a poller; it is called with
    the lock held and must not block.  ``fast_hooks``, if the device layer
    offers them (set by the top), takes ``install(fh, ioctl, poll, ctx)``
    and ``remove(fh)`` of C request hooks for a bound file, and gives
    ``notifier()``, the C function that wakes a poller (binding.py).
    """

    fast_waker = None   # wakes pollers of rings the C fast path moved (fastwait.FastWaker)
    c_waiter = None     # waits on the rings' fds for polls the C fast path left waiting (fastwait.CWaiter)
    _fast_hooks = None

    def __init__(self, mem, drivers: Iterable[Driver] = (), wake=lambda kh: None):
        self.mem = mem
        self.memories = MemoryTable(mem)     # mem_id -> allocator, external memory too
        self.wake = wake
        self.lock = threading.RLock()
        self.named: dict[str, object] = {}   # ports that exist on their own (TAP, persistent VALE, ...)
        # netmap_get_na's cascade: the first driver that claims a name wins
        self.drivers: tuple[Driver, ...] = tuple(drivers)
        self.requests: dict[int, RequestHandler] = {}
        for driver in self.drivers:
            driver.attach(self)
            self.requests.update(driver.requests())

    @property
    def fast_hooks(self):
        """The device layer's C request hooks, or None."""
        return self._fast_hooks

    @fast_hooks.setter
    def fast_hooks(self, hooks) -> None:
        self._fast_hooks = hooks
        if hooks is not None and self.fast_waker is None:
            self.fast_waker = FastWaker(self)
            self.c_waiter = CWaiter(hooks.notifier(), self.fast_waker.fd)

    def stop_fast(self) -> None:
        """Stop waking pollers from C (before the device goes): no C thread
        writes a wake-up after this returns."""
        if self.c_waiter is not None:
            self.c_waiter.stop()

    def driver(self, name: str) -> Driver:
        """The driver registered as ``name``.  Raises KeyError."""
        for driver in self.drivers:
            if driver.name == name:
                return driver
        raise KeyError(name)

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
        for driver in self.drivers:
            adapter = driver.lookup(name, reg, create, mem_given)
            if adapter is not None:
                return adapter.get()
        port = self.named.get(name)
        if port is None:
            raise OSError(errno.ENXIO, f"no port named {name!r}")
        return port.get()

    def find_interface(self, ifname: str, reg=None, mem_given=None):
        """A port that exists on its own under ``ifname`` (netmap's ifunit):
        a named port, or one an interface driver knows (a TAP, say).
        Unreferenced; None if there is none.

        Raises:
            OSError: an interface driver's error other than "no such
                interface" (ENXIO, ENODEV).
        """
        port = self.named.get(ifname)
        if port is not None:
            return port
        if reg is None:
            reg = _plain_register()
        for driver in self.drivers:
            if not driver.interfaces:
                continue
            try:
                port = driver.lookup(ifname, reg, False, mem_given)
            except OSError as e:
                if e.errno in (errno.ENXIO, errno.ENODEV):
                    continue
                raise
            if port is not None:
                return port
        return None


def _plain_register():
    reg = ffi.new("struct nmreq_register *")
    reg.nr_mode = RegMode.ALL_NIC
    return reg
