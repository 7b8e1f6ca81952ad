"""The legacy ioctls NIOCGINFO and NIOCREGIF (netmap_legacy.c).

A legacy ``struct nmreq`` is translated into a NIOCCTRL request built here
(nothing is copied from the caller's memory beyond the 60 bytes the kernel
delivered), dispatched like any other, and the fields a legacy caller
expects are written back on success.  The whole struct always goes back,
with nr_name NUL-terminated.
"""

import errno

from nmfuse.abi.netmap import (
    NETMAP_API,
    NETMAP_BDG_HOST,
    NETMAP_RING_MASK,
    NR_REG_MASK,
    Ioctl,
    LegacyCmd,
    LegacyRingId,
    RegFlag,
    RegMode,
    ReqType,
    ffi,
    lib,
)
from nmfuse.netmap import control
from nmfuse.netmap.request import Request, new_body

LEGACY_SIZE = ffi.sizeof("struct nmreq")


def _register_from_legacy(nmr, hdr, reg) -> None:
    """nmreq_register_from_legacy; raises OSError(ENOMEM), as netmap does, if a pipe suffix does not fit."""
    reg.nr_offset, reg.nr_memsize = nmr.nr_offset, nmr.nr_memsize
    reg.nr_tx_slots, reg.nr_rx_slots = nmr.nr_tx_slots, nmr.nr_rx_slots
    reg.nr_tx_rings, reg.nr_rx_rings = nmr.nr_tx_rings, nmr.nr_rx_rings
    reg.nr_mem_id = nmr.nr_arg2
    reg.nr_ringid = nmr.nr_ringid & NETMAP_RING_MASK
    mode = nmr.nr_flags & NR_REG_MASK
    if mode == RegMode.DEFAULT:
        if nmr.nr_ringid & LegacyRingId.SW_RING:
            mode = RegMode.SW
        elif nmr.nr_ringid & LegacyRingId.HW_RING:
            mode = RegMode.ONE_NIC
        else:
            mode = RegMode.ALL_NIC
    reg.nr_mode = mode
    if mode in (RegMode.PIPE_MASTER, RegMode.PIPE_SLAVE):
        name = ffi.string(hdr.nr_name)
        suffix = b"{" if mode == RegMode.PIPE_MASTER else b"}"
        suffix += str(reg.nr_ringid).encode()
        if len(name) + len(suffix) >= len(hdr.nr_name):
            raise OSError(errno.ENOMEM, "no room for the pipe suffix")  # netmap: its "oom" exit
        hdr.nr_name = name + suffix
        reg.nr_mode, reg.nr_ringid = RegMode.ALL_NIC, 0
    flags = nmr.nr_flags & ~NR_REG_MASK
    if nmr.nr_ringid & LegacyRingId.NO_TX_POLL:
        flags |= RegFlag.NO_TX_POLL
    if nmr.nr_ringid & LegacyRingId.DO_RX_POLL:
        flags |= RegFlag.DO_RX_POLL
    reg.nr_flags = flags
    reg.nr_extra_bufs = nmr.nr_arg3


def _from_legacy(nmr, cmd: int) -> Request:
    hdr = ffi.new("struct nmreq_header *")
    hdr.nr_version = NETMAP_API
    hdr.nr_name = ffi.string(nmr.nr_name)
    if cmd == Ioctl.NIOCREGIF:
        sub = nmr.nr_cmd
        if sub == LegacyCmd.REGIF:
            hdr.nr_reqtype = ReqType.REGISTER
            body = new_body(ReqType.REGISTER)
            _register_from_legacy(nmr, hdr, body)
        elif sub == LegacyCmd.BDG_ATTACH:
            hdr.nr_reqtype = ReqType.VALE_ATTACH
            body = new_body(ReqType.VALE_ATTACH)
            _register_from_legacy(nmr, hdr, body.reg)
            body.reg.nr_mode = RegMode.NIC_SW if nmr.nr_arg1 & NETMAP_BDG_HOST else RegMode.ALL_NIC
        elif sub == LegacyCmd.BDG_DETACH:
            hdr.nr_reqtype = ReqType.VALE_DETACH
            body = new_body(ReqType.VALE_DETACH)
        elif sub in (LegacyCmd.BDG_VNET_HDR, LegacyCmd.VNET_HDR_GET):
            hdr.nr_reqtype = ReqType.PORT_HDR_SET if sub == LegacyCmd.BDG_VNET_HDR else ReqType.PORT_HDR_GET
            body = new_body(hdr.nr_reqtype)
            body.nr_hdr_len = nmr.nr_arg1
        elif sub == LegacyCmd.BDG_NEWIF:
            hdr.nr_reqtype = ReqType.VALE_NEWIF
            body = new_body(ReqType.VALE_NEWIF)
            body.nr_tx_slots, body.nr_rx_slots = nmr.nr_tx_slots, nmr.nr_rx_slots
            body.nr_tx_rings, body.nr_rx_rings = nmr.nr_tx_rings, nmr.nr_rx_rings
            body.nr_mem_id = nmr.nr_arg2
        elif sub == LegacyCmd.BDG_DELIF:
            hdr.nr_reqtype = ReqType.VALE_DELIF
            body = None
        elif sub in (LegacyCmd.BDG_POLLING_ON, LegacyCmd.BDG_POLLING_OFF):
            hdr.nr_reqtype = (ReqType.VALE_POLLING_ENABLE if sub == LegacyCmd.BDG_POLLING_ON
                              else ReqType.VALE_POLLING_DISABLE)
            body = new_body(hdr.nr_reqtype)
            mode = nmr.nr_flags & NR_REG_MASK
            body.nr_mode = {RegMode.ONE_NIC: lib.NETMAP_POLLING_MODE_MULTI_CPU,
                            RegMode.ALL_NIC: lib.NETMAP_POLLING_MODE_SINGLE_CPU}.get(mode, 0)
            body.nr_first_cpu_id = nmr.nr_ringid & NETMAP_RING_MASK
            body.nr_num_polling_cpus = nmr.nr_arg1
        elif sub in (LegacyCmd.PT_HOST_CREATE, LegacyCmd.PT_HOST_DELETE):
            # passthrough host ports: netmap builds no request (its ENOMEM)
            raise OSError(errno.ENOMEM, f"legacy command {sub} not supported")
        else:
            # BDG_REGOPS, BDG_LIST through NIOCREGIF, unknown: netmap leaves
            # the request type 0, which NIOCCTRL refuses
            raise OSError(errno.EINVAL, f"legacy command {sub} not supported")
    elif nmr.nr_cmd == LegacyCmd.BDG_LIST:
        hdr.nr_reqtype = ReqType.VALE_LIST
        body = new_body(ReqType.VALE_LIST)
        body.nr_bridge_idx, body.nr_port_idx = nmr.nr_arg1, nmr.nr_arg2
    else:
        hdr.nr_reqtype = ReqType.PORT_INFO_GET
        body = new_body(ReqType.PORT_INFO_GET)
        body.nr_memsize = nmr.nr_memsize
        body.nr_tx_slots, body.nr_rx_slots = nmr.nr_tx_slots, nmr.nr_rx_slots
        body.nr_tx_rings, body.nr_rx_rings = nmr.nr_tx_rings, nmr.nr_rx_rings
        body.nr_mem_id = nmr.nr_arg2
    return Request(header=hdr, body=body, from_user=False)


def _to_legacy(req: Request, nmr) -> None:
    """nmreq_to_legacy: only the fields a legacy caller expects back."""
    body, t = req.body, req.reqtype
    if t in (ReqType.REGISTER, ReqType.VALE_ATTACH):
        reg = body if t == ReqType.REGISTER else body.reg
        nmr.nr_offset, nmr.nr_memsize = reg.nr_offset, reg.nr_memsize & 0xFFFFFFFF
        nmr.nr_tx_slots, nmr.nr_rx_slots = reg.nr_tx_slots, reg.nr_rx_slots
        nmr.nr_tx_rings, nmr.nr_rx_rings = reg.nr_tx_rings, reg.nr_rx_rings
        nmr.nr_arg2, nmr.nr_arg3 = reg.nr_mem_id, reg.nr_extra_bufs
    elif t == ReqType.PORT_INFO_GET:
        nmr.nr_memsize = body.nr_memsize & 0xFFFFFFFF
        nmr.nr_tx_slots, nmr.nr_rx_slots = body.nr_tx_slots, body.nr_rx_slots
        nmr.nr_tx_rings, nmr.nr_rx_rings = body.nr_tx_rings, body.nr_rx_rings
        nmr.nr_arg2 = body.nr_mem_id
    elif t == ReqType.VALE_LIST:
        nmr.nr_name = ffi.string(req.header.nr_name)[:15]
        nmr.nr_arg1, nmr.nr_arg2 = body.nr_bridge_idx, body.nr_port_idx
    elif t in (ReqType.PORT_HDR_SET, ReqType.PORT_HDR_GET):
        nmr.nr_arg1 = body.nr_hdr_len
    elif t == ReqType.VALE_NEWIF:
        nmr.nr_tx_slots, nmr.nr_rx_slots = body.nr_tx_slots, body.nr_rx_slots
        nmr.nr_tx_rings, nmr.nr_rx_rings = body.nr_tx_rings, body.nr_rx_rings
        nmr.nr_arg2 = body.nr_mem_id


def handle(core, binding, cmd: int, data: bytes) -> tuple[int, bytes]:
    """Serve NIOCGINFO / NIOCREGIF; returns (errno, the 60 bytes to copy back)."""
    nmr = ffi.new("struct nmreq *")
    ffi.memmove(nmr, data[:LEGACY_SIZE], min(len(data), LEGACY_SIZE))
    if nmr.nr_version < 14:
        return errno.EINVAL, bytes(data)
    nmr.nr_name[len(nmr.nr_name) - 1] = b"\0"
    try:
        req = _from_legacy(nmr, cmd)
    except OSError as e:
        return e.errno, bytes(ffi.buffer(nmr))
    error = control.dispatch(core, binding, req)
    if not error:
        _to_legacy(req, nmr)
    return error, bytes(ffi.buffer(nmr))
