"""The driver contract: what a port type gives the core.

The core never imports a driver.  The layer above builds one ``Driver``
object per port type and hands the list to ``Core``; the core then asks
them, in order, to resolve port names (netmap_get_na's cascade of
netmap_get_*_na), and dispatches the control requests they add.

    what                 who provides it          default
    -------------------  -----------------------  ----------------------
    name lookup          Driver.lookup            not mine (None)
    extra NIOCCTRL       Driver.requests          none
    ports that are       Driver.interfaces        False
      interfaces (ifunit)
    daemon lifetime      Driver.start/stop/serve  nothing to do
    a port's rings,      Adapter (adapter.py)     see there
      syncs, wake-ups

A port type is one module in ``nmfuse/drivers``: an ``Adapter`` subclass
and a ``Driver`` subclass; ``nmfuse/drivers/null.py`` is the smallest.
"""

from collections.abc import Callable, Mapping
from typing import ClassVar

# A control request handler: (core, binding, request) -> None; raises
# OSError with netmap's errno, fills the request body on success.
RequestHandler = Callable[[object, object, object], None]


class Driver:
    """One port type as the core sees it.

    Subclasses override what they provide; every method has a default
    that means "nothing of mine".
    """

    #: the type's name in ``Core.driver(name)`` and status output
    name: ClassVar[str] = "port"
    #: whether its ports are interfaces that exist on their own (netmap's
    #: ifunit finds them): a switch wraps them, pipes hang off them
    interfaces: ClassVar[bool] = False

    def __init__(self) -> None:
        self.core = None

    def attach(self, core) -> None:
        """Called once by ``Core``: the core this driver serves."""
        self.core = core

    def lookup(self, name: str, reg, create: bool, mem_given):
        """The adapter ``name`` stands for, unreferenced, or None when the
        name (or ``reg.nr_mode``) is not for this driver.

        ``create`` is False for requests that must not make a port (a
        header query, say); ``mem_given`` is the memory allocator the
        request names (EXTMEM option or nr_mem_id), None when it names
        none: a port created for it lives there.

        Raises:
            OSError: the name is this driver's but cannot be served.
        """
        return None

    def requests(self) -> Mapping[int, RequestHandler]:
        """The NIOCCTRL request types this driver serves, by type."""
        return {}

    def start(self) -> None:
        """The daemon starts: create the ports configured at mount time.
        Raises OSError; then nothing of this driver's is left."""

    def stop(self) -> None:
        """The daemon stops: remove what the driver created, release what
        it borrowed.  Never raises; problems are logged."""

    async def serve(self) -> None:
        """A task the daemon runs in its event loop while it serves (e.g.
        waiting on interface fds); returns at once when there is none."""
