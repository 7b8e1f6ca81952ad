"""VALE software switches (netmap_vale.c, netmap_bdg.c).

A switch is named by what precedes the colon of a port name: ``vale0:a``
is port ``a`` of switch ``vale0``.  Switches and their ephemeral ports are
created by the first REGISTER of such a name; a port goes away with its
last reference, a switch with its last port.  Persistent ports
(VALE_NEWIF) exist on their own under a plain name (``core.named``) and
join a switch with VALE_ATTACH; any other port found by that plain name
(a TAP port, say) joins through a *bwrap* that takes the port over.

Limits are netmap's: 8 switches (ENOMEM beyond), 254 port indexes of which
at most 252 can be taken (ENOMEM), 16 rings and 4096 slots per ring.

The package, one file a job: ``switch`` (switches and forwarding), ``port``
(VALE ports), ``bwrap`` (a port of another type joined to a switch),
``polling`` (the threads of VALE_POLLING_ENABLE), ``lookup`` (names to
ports), ``requests`` (the VALE control requests this driver adds).
"""

from functools import partial

from nmfuse.abi.netmap import ReqType
from nmfuse.drivers.vale.bwrap import Bwrap, BwrapHost
from nmfuse.drivers.vale.lookup import get_port
from nmfuse.drivers.vale.polling import (
    POLLING_MODE_MULTI_CPU,
    POLLING_MODE_SINGLE_CPU,
    Polling,
)
from nmfuse.drivers.vale.port import ValePort, VPort
from nmfuse.drivers.vale.requests import HANDLERS
from nmfuse.drivers.vale.switch import (
    IFNAMSIZ,
    NM_BDG_MAXPORTS,
    NM_BDG_MAXRINGS,
    NM_BDG_MAXSLOTS,
    NM_BDG_NAME,
    NM_BDG_NOPORT,
    NM_BRIDGE_RINGSIZE,
    NM_BRIDGES,
    Bridge,
    Switches,
    bridge_name_len,
)
from nmfuse.netmap.driver import Driver

__all__ = ["ValeDriver", "Bridge", "Switches", "VPort", "ValePort", "Bwrap", "BwrapHost", "Polling", "get_port",
           "bridge_name_len", "IFNAMSIZ", "NM_BDG_MAXPORTS", "NM_BDG_MAXRINGS", "NM_BDG_MAXSLOTS", "NM_BDG_NAME",
           "NM_BDG_NOPORT", "NM_BRIDGE_RINGSIZE", "NM_BRIDGES", "POLLING_MODE_MULTI_CPU",
           "POLLING_MODE_SINGLE_CPU"]


class ValeDriver(Driver):
    """VALE as a port type: ``valeX:Y`` names and the VALE_* requests."""

    name = "vale"

    def attach(self, core) -> None:
        super().attach(core)
        self.switches = Switches(core)

    def lookup(self, name: str, reg, create: bool, mem_given):
        """The cascade's VALE step: REGISTER semantics (ephemeral ports)."""
        return get_port(self.switches, name, reg, create, ReqType.REGISTER, mem_given)

    def requests(self):
        return {reqtype: partial(handler, self.switches) for reqtype, handler in HANDLERS.items()}
