"""Names to switch ports (netmap_get_bdg_na)."""

import errno

from nmfuse.abi.netmap import RegMode, ReqType
from nmfuse.drivers.vale.bwrap import Bwrap
from nmfuse.drivers.vale.port import NEED_BWRAP, ValePort, VPort
from nmfuse.drivers.vale.switch import NM_BDG_MAXPORTS, NM_BDG_NAME


def get_port(switches, name: str, reg, create: bool, reqtype: int, mem_given=None):
    """The port of one of ``switches`` called ``name`` (netmap_get_bdg_na), unreferenced,
    or None when the name is not a VALE name.

    With ``create``, a missing port is made: an ephemeral VALE port for a
    REGISTER, or, for VALE_ATTACH, the port named after the colon joined
    to the switch (directly if it is a persistent VALE port, else through
    a bwrap; with NR_REG_NIC_SW its host rings join too).

    Raises:
        OSError: ENOMEM (no switch slot, bad switch name when creating, or
            the switch is full), ENXIO (no such switch or port),
            EINVAL (an interface name used for a REGISTER, or a missing
            interface for an attach), EBUSY (the interface is in use).
    """
    # netmap compares one character less than the prefix: "valX..." counts too
    if not name.startswith(NM_BDG_NAME[:-1]):
        return None
    core = switches.core
    bridge = switches.find(name, create)
    if bridge is None:
        raise OSError(errno.ENOMEM if create else errno.ENXIO, f"no switch for {name!r}")
    try:
        port = bridge.find(name)
        if port is not None:
            return port
        if not create:
            raise OSError(errno.ENXIO, f"no port {name!r}")
        if bridge.active + 2 >= NM_BDG_MAXPORTS:
            raise OSError(errno.ENOMEM, f"switch {bridge.name} is full")
        ifname = name[len(bridge.name) + 1:]
        hw = core.find_interface(ifname, reg, mem_given)
        if hw is None:
            if reqtype != ReqType.REGISTER:
                raise OSError(errno.EINVAL, f"no interface {ifname!r} to attach")
            port = ValePort.create(core, name, reg, mem=mem_given)
            bridge.attach(port)
            return port
        if reqtype not in (ReqType.VALE_ATTACH, ReqType.VALE_DETACH,
                           ReqType.VALE_POLLING_ENABLE, ReqType.VALE_POLLING_DISABLE):
            raise OSError(errno.EINVAL, f"{ifname!r} is an interface: attach it with VALE_ATTACH")
        hw.get()
        try:
            joined = hw.bdg_attach(name, bridge) if isinstance(hw, VPort) else NEED_BWRAP
            if joined is NEED_BWRAP:
                if hw.active_fds > 0 or hw.owned_by_kernel:
                    raise OSError(errno.EBUSY, f"{ifname} busy, cannot attach it to a switch")
                port = Bwrap(core, name, hw)
                host = port.host
            else:
                port, host = joined
        finally:
            hw.put()
        if reqtype == ReqType.VALE_ATTACH and reg.nr_mode != RegMode.NIC_SW:
            host = None
        bridge.attach(port)
        if host is not None:
            bridge.attach(host)
        return port
    finally:
        bridge.free_if_empty()
