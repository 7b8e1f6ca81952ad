"""The VALE control requests (netmap_ioctl's VALE_* cases; netmap_bdg.c,
netmap_vale.c): attach, detach, list, persistent ports, polling.

Each handler takes the driver's switch table, then (core, binding, req)
like the core's own handlers (``nmfuse.netmap.control``; ``HANDLERS``
below is what the VALE driver registers), raises
OSError with netmap's errno, and fills the request body on success (the
body goes back to the caller only then).  The legacy ``nr_cmd`` forms
reach these same handlers through ``legacy``.
"""

import errno
from contextlib import ExitStack

from nmfuse.abi.netmap import RegMode, ReqType, ffi
from nmfuse.drivers.vale.bwrap import Bwrap
from nmfuse.drivers.vale.lookup import get_port
from nmfuse.drivers.vale.port import ValePort
from nmfuse.drivers.vale.switch import IFNAMSIZ, NM_BDG_NAME, NM_BDG_NOPORT


def _check_mem_id(core, mem_id: int):
    """The memory ``mem_id`` names (None for 0).  Raises OSError(EINVAL)."""
    return core.find_memory(mem_id) if mem_id else None


def ctrl_vale_attach(switches, core, binding, req) -> None:
    """VALE_ATTACH ``valeX:IF``: join port IF to switch valeX (netmap_bdg_attach).

    body.reg.nr_mode is NR_REG_ALL_NIC, or NR_REG_NIC_SW to attach IF's
    host rings too (as port ``valeX:IF^``); body.port_index comes back.

    Raises:
        OSError: EBUSY (already attached, or IF in use), EINVAL (not a VALE
            name, no interface IF, a mode or ring index the attach refuses,
            unknown nr_mem_id), ENOMEM (no switch slot or port left).
    """
    body, name = req.body, req.name
    reg = body.reg
    _check_mem_id(core, reg.nr_mem_id)
    try:
        existing = get_port(switches, name, reg, False, ReqType.VALE_ATTACH)
    except OSError as e:
        if e.errno != errno.ENXIO:   # no such switch or port: not attached
            raise
        existing = None
    if existing is not None:
        raise OSError(errno.EBUSY, f"{name} is already attached")
    port = get_port(switches, name, reg, True, ReqType.VALE_ATTACH)
    if port is None:
        raise OSError(errno.EINVAL, f"{name!r} is not a VALE port name")
    with ExitStack() as undo:
        port.get()   # from now on, the attachment's reference
        undo.callback(port.put)
        port.bdg_ctl_attach(reg)
        undo.pop_all()
    body.port_index = port.bdg_port


def ctrl_vale_detach(switches, core, binding, req) -> None:
    """VALE_DETACH ``valeX:IF`` (netmap_bdg_detach).

    Raises:
        OSError: ENXIO (no such switch or port), EINVAL (not a VALE name),
            EBUSY (an ephemeral port, a port polling, or a persistent port
            also wrapped into another switch: detach that one first).
    """
    port = get_port(switches, req.name, None, False, ReqType.VALE_DETACH)
    if port is None:
        raise OSError(errno.EINVAL, f"{req.name!r} is not a VALE port name")
    port.get()
    try:
        if isinstance(port, Bwrap) and port.polling is not None:
            raise OSError(errno.EBUSY, f"{port.name} is polling")
        if port.na_vp is not port:
            raise OSError(errno.EBUSY, f"{port.name} cannot be detached")
        req.body.port_index = port.bdg_port
        port.bdg_ctl_detach()
    finally:
        port.put()


def ctrl_vale_list(switches, core, binding, req) -> None:
    """VALE_LIST (netmap_vale_list).

    With a name: the switch and port indexes of that port (port index
    NM_BDG_NOPORT when the switch exists but the port does not).  Without:
    the first port at or after (nr_bridge_idx, nr_port_idx), its name in
    the header; callers step nr_port_idx and stop at ENOENT.

    Raises:
        OSError: EINVAL (a name without the vale prefix), ENOENT (no such
            switch, or no port left).
    """
    body, name = req.body, req.name
    if name:
        if not name.startswith(NM_BDG_NAME):
            raise OSError(errno.EINVAL, f"{name!r} is not a VALE name")
        bridge = switches.find(name, False, prefixlen=0)
        if bridge is None:
            raise OSError(errno.ENOENT, f"no switch for {name!r}")
        body.nr_bridge_idx = bridge.index
        body.nr_port_idx = NM_BDG_NOPORT
        for idx in bridge.port_index[:bridge.active]:
            port = bridge.ports[idx]
            if port is not None and port.name == name:
                body.nr_port_idx = idx
                break
        return
    entry = switches.list_entry(body.nr_bridge_idx, body.nr_port_idx)
    if entry is None:
        raise OSError(errno.ENOENT, "no more ports")
    body.nr_bridge_idx, body.nr_port_idx, port = entry
    req.header.nr_name = port.name.encode("latin-1")[:len(req.header.nr_name) - 1]


def _valid_ifname(name: str) -> bool:
    # the names Linux accepts for a network interface
    return bool(name) and name not in (".", "..") and not any(c in "/:" or c.isspace() for c in name)


def ctrl_vale_newif(switches, core, binding, req) -> None:
    """VALE_NEWIF NAME: a persistent VALE port (nm_vi_create), a named port
    that outlives its clients until VALE_DELIF.  The bounded geometry and
    the memory id come back in the body.

    Raises:
        OSError: EINVAL (a vale-prefixed, too long or malformed name, an
            unknown nr_mem_id), EEXIST (a port of that name exists).
    """
    body, name = req.body, req.name
    if name.startswith(NM_BDG_NAME) or len(name) >= IFNAMSIZ or not _valid_ifname(name):
        raise OSError(errno.EINVAL, f"{name!r} cannot name a persistent VALE port")
    if core.find_interface(name) is not None:
        raise OSError(errno.EEXIST, f"{name} exists")
    mem = _check_mem_id(core, body.nr_mem_id)
    reg = ffi.new("struct nmreq_register *")
    reg.nr_tx_slots, reg.nr_rx_slots = body.nr_tx_slots, body.nr_rx_slots
    reg.nr_tx_rings, reg.nr_rx_rings = body.nr_tx_rings, body.nr_rx_rings
    reg.nr_mode = RegMode.ALL_NIC
    port = ValePort.create(core, name, reg, persistent=True, mem=mem)
    core.named[name] = port.get()   # the reference VALE_DELIF drops
    body.nr_tx_slots, body.nr_rx_slots = reg.nr_tx_slots, reg.nr_rx_slots
    body.nr_tx_rings, body.nr_rx_rings = reg.nr_tx_rings, reg.nr_rx_rings
    body.nr_mem_id = port.mem.mem_id


def ctrl_vale_delif(switches, core, binding, req) -> None:
    """VALE_DELIF NAME: delete a persistent VALE port (nm_vi_destroy).

    Raises:
        OSError: ENXIO (no port of that name), EINVAL (not a persistent
            VALE port), EBUSY (registered, attached, or monitored).
    """
    name = req.name
    port = core.named.get(name)
    if port is None:
        other = core.find_interface(name)
        raise OSError(errno.EINVAL if other is not None else errno.ENXIO, f"no persistent VALE port {name!r}")
    if not isinstance(port, ValePort) or not port.persistent:
        raise OSError(errno.EINVAL, f"{name} is not a persistent VALE port")
    if port.owned_by_any() or port.refs > 1:
        raise OSError(errno.EBUSY, f"{name} is in use")
    del core.named[name]
    port.put()


def ctrl_vale_polling(switches, core, binding, req) -> None:
    """VALE_POLLING_ENABLE / DISABLE ``valeX:IF`` (nm_bdg_polling).

    Only a port joined through a bwrap polls (EOPNOTSUPP otherwise).

    Raises:
        OSError: ENXIO (no such port), EINVAL (not a VALE name, a polling
            configuration netmap refuses), EOPNOTSUPP, EFAULT (already
            polling / not polling).
    """
    port = get_port(switches, req.name, None, False, req.reqtype)
    if port is None:
        raise OSError(errno.EINVAL, f"{req.name!r} is not a VALE port name")
    if not isinstance(port, Bwrap):
        raise OSError(errno.EOPNOTSUPP, f"{port.name} is not an attached interface")
    if req.reqtype == ReqType.VALE_POLLING_ENABLE:
        port.polling_start(req.body)
    else:
        port.polling_stop()


# request type -> handler, registered by the VALE driver
HANDLERS = {
    ReqType.VALE_ATTACH: ctrl_vale_attach,
    ReqType.VALE_DETACH: ctrl_vale_detach,
    ReqType.VALE_LIST: ctrl_vale_list,
    ReqType.VALE_NEWIF: ctrl_vale_newif,
    ReqType.VALE_DELIF: ctrl_vale_delif,
    ReqType.VALE_POLLING_ENABLE: ctrl_vale_polling,
    ReqType.VALE_POLLING_DISABLE: ctrl_vale_polling,
}
