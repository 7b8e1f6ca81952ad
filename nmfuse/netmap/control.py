"""NIOCCTRL: one handler per request type (netmap_ioctl's NIOCCTRL case).

``handle`` takes the 88 header bytes the kernel delivered and returns the
errno and the header bytes to copy back; body and options travel through
``request.copyin`` / ``copyout``.  Each handler raises OSError with the errno
netmap returns, and leaves the request body filled on success.
"""

import dataclasses
import errno
import logging
from contextlib import ExitStack

from nmfuse.abi.netmap import NETMAP_MAX_API, NETMAP_MIN_API, OptType, RegFlag, RegMode, ReqType, ffi
from nmfuse.netmap import extmem, kloop
from nmfuse.netmap.binding import do_regif, do_unregif, extra_buffers
from nmfuse.netmap.kring import RX, TX
from nmfuse.netmap.request import Request, RequestError, copyin, copyout, new_header

log = logging.getLogger("nmfuse.netmap")

VALID_HDR_LEN = (0, 10, 12)  # no header, virtio-net header, with num_buffers


def _register_body(mode=RegMode.ALL_NIC, mem_id=0, **geometry):
    reg = ffi.new("struct nmreq_register *")
    reg.nr_mode = mode
    reg.nr_mem_id = mem_id
    for key, value in geometry.items():
        setattr(reg, key, value)
    return reg


def handle(core, binding, data: bytes, mem, take_fds=None) -> "tuple[int, bytes] | kloop.Later":
    """Serve one NIOCCTRL; returns (errno, header bytes to copy back), or
    for a SYNC_KLOOP_START that runs (and a STOP that waits for its loop)
    a ``kloop.Later`` that gives them when the loop ends.  ``take_fds(fds)``
    duplicates the caller's file descriptors (the kloop's eventfds)."""
    hdr = new_header(data)
    if not NETMAP_MIN_API <= hdr.nr_version <= NETMAP_MAX_API:
        return errno.EINVAL, bytes(data)
    try:
        req = copyin(hdr, mem)
    except RequestError as e:
        # the header as netmap leaves it: the user's pointers, nr_reserved
        # 1 if copyin failed before building its copy, 0 after
        return e.errno, bytes(ffi.buffer(hdr))
    hdr.nr_name[len(hdr.nr_name) - 1] = b"\0"

    def answer(err: int) -> tuple[int, bytes]:
        return copyout(req, mem, err), req.header_bytes()

    if req.reqtype in (ReqType.SYNC_KLOOP_START, ReqType.SYNC_KLOOP_STOP):
        try:
            if req.reqtype == ReqType.SYNC_KLOOP_START:
                later = kloop.start(core, binding, req, take_fds, answer)
            else:
                later = kloop.stop(binding, answer)
        except OSError as e:
            return answer(e.errno or errno.EIO)
        return answer(0) if later is None else later
    return answer(dispatch(core, binding, req))


def dispatch(core, binding, req: Request) -> int:
    """Run the handler of ``req``; returns 0 or the errno netmap gives."""
    handler = HANDLERS.get(req.reqtype) or core.requests.get(req.reqtype)
    if handler is None:
        return errno.EINVAL
    try:
        handler(core, binding, req)
    except OSError as e:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %r: %s", ReqType(req.reqtype).name, req.name, e)
        return e.errno or errno.EIO
    return 0


NI_PRIV_MEM = 0x1


def ctrl_register(core, binding, req: Request) -> None:
    """REGISTER: bind the fd to the named port's rings and fill the body with
    the geometry, memory and netmap_if offset (netmap_do_regif).  With an
    EXTMEM option, a port made now lives in the memory it names.

    Raises:
        OSError: EBUSY (the fd is already bound, or a switch owns the port),
            EIO (a virtio-net header the program does not accept),
            EOPNOTSUPP (an option left unhandled), an EXTMEM or CSB option's
            status, or the errors of ``core.get_adapter`` and ``do_regif``;
            the fd then stays unbound and the port as it was.
    """
    if binding.registered:
        raise OSError(errno.EBUSY, "this fd is already bound to a port")
    with ExitStack() as undo:
        ext = req.option(OptType.EXTMEM)
        mem = None
        if ext is not None:
            try:
                mem = extmem.open_external(core.memories, ext, req.memory)
            except OSError as e:
                ext.status = e.errno
                raise
            ext.status = 0
            undo.callback(mem.drop)   # the request's hold: the ports made in it hold it now
        _register(core, binding, req, mem)


def _register(core, binding, req: Request, mem) -> None:
    reg = req.body
    with ExitStack() as undo:
        adapter = core.get_adapter(req.name, reg, create=True, mem=mem)
        undo.callback(adapter.put)
        if adapter.owned_by_kernel:
            raise OSError(errno.EBUSY, f"{adapter.name} is owned by a switch")
        if adapter.virt_hdr_len and not reg.nr_flags & RegFlag.ACCEPT_VNET_HDR:
            raise OSError(errno.EIO, f"{adapter.name} has a virtio-net header the program does not accept")
        do_regif(binding, adapter, reg, req.option(OptType.OFFSETS))
        undo.callback(do_unregif, binding)
        csb = req.option(OptType.CSB)
        if csb is not None:
            csb.status = _csb_validate(binding, csb, req.memory)
            if csb.status:
                raise OSError(csb.status, "CSB refused")
        for key, value in adapter.info().items():
            setattr(reg, key, value)
        reg.nr_memsize = adapter.mem.memsize
        reg.nr_mem_id = adapter.mem.mem_id
        if adapter.mem.private:
            adapter.mem.region.ptr("struct netmap_if *", binding.nifp_offset).ni_flags |= NI_PRIV_MEM
        if reg.nr_extra_bufs:
            reg.nr_extra_bufs = extra_buffers(binding, reg.nr_extra_bufs)
        reg.nr_offset = binding.nifp_offset
        if req.unconsumed():
            raise OSError(errno.EOPNOTSUPP, "an option was not handled")
        undo.pop_all()


def ctrl_port_info_get(core, binding, req: Request) -> None:
    """PORT_INFO_GET: the geometry of the named port (looked up as REGISTER
    would) and the memory region; without a name, the region only.

    Raises:
        OSError: EINVAL (an unknown nr_mem_id), or the errors of
            ``core.get_adapter``.
    """
    info = req.body
    if req.name:
        reg = _register_body(
            mem_id=info.nr_mem_id, nr_tx_slots=info.nr_tx_slots, nr_rx_slots=info.nr_rx_slots,
            nr_tx_rings=info.nr_tx_rings, nr_rx_rings=info.nr_rx_rings,
            nr_host_tx_rings=info.nr_host_tx_rings, nr_host_rx_rings=info.nr_host_rx_rings)
        adapter = core.get_adapter(req.name, reg, create=True)
        try:
            for key, value in adapter.info().items():
                setattr(info, key, value)
            mem = adapter.mem
        finally:
            adapter.put()
    else:
        mem = core.find_memory(info.nr_mem_id or core.mem.mem_id)
    info.nr_memsize = mem.memsize
    info.nr_mem_id = mem.mem_id


def ctrl_pools_info_get(core, binding, req: Request) -> None:
    """POOLS_INFO_GET: offsets and geometry of the memory region's pools,
    after looking the named port up as REGISTER would.

    Raises:
        OSError: the errors of ``core.get_adapter``.
    """
    body = req.body
    adapter = core.get_adapter(req.name, _register_body(mem_id=body.nr_mem_id), create=True)
    pools = adapter.mem.pools_info()
    adapter.put()
    # PoolsInfo's fields are nmreq_pools_info's without the nr_ prefix
    for field, value in dataclasses.asdict(pools).items():
        setattr(body, f"nr_{field}", value)


def ctrl_port_hdr_set(core, binding, req: Request) -> None:
    """PORT_HDR_SET: frames of the named port carry a virtio-net header of
    nr_hdr_len bytes.

    Raises:
        OSError: EINVAL (a length other than 0, 10 or 12), ENXIO (no such
            port, or a port type without the header).
    """
    if req.body.nr_hdr_len not in VALID_HDR_LEN:
        raise OSError(errno.EINVAL, f"invalid header length {req.body.nr_hdr_len}")
    adapter = core.get_adapter(req.name, _register_body(), create=False)
    try:
        adapter.set_virt_hdr_len(req.body.nr_hdr_len)
    finally:
        adapter.put()


def ctrl_port_hdr_get(core, binding, req: Request) -> None:
    """PORT_HDR_GET: the virtio-net header length of the named port.

    Raises:
        OSError: the errors of ``core.get_adapter`` (ENXIO: no such port).
    """
    adapter = core.get_adapter(req.name, _register_body(), create=False)
    req.body.nr_hdr_len = adapter.virt_hdr_len
    adapter.put()


def ctrl_csb_enable(core, binding, req: Request) -> None:
    """CSB_ENABLE: put the bound rings of the fd in CSB mode, with the
    request's CSB option (netmap_csb_validate).

    Raises:
        OSError: EINVAL (no CSB option, or one refused), EFAULT (the CSB
            cannot be read or written).
    """
    csb = req.option(OptType.CSB)
    if csb is None:
        raise OSError(errno.EINVAL, "CSB_ENABLE needs a CSB option")
    csb.status = _csb_validate(binding, csb, req.memory)
    if csb.status:
        raise OSError(csb.status, "CSB refused")


def ctrl_sync_kloop(core, binding, req: Request) -> None:
    """SYNC_KLOOP_START / STOP reach ``handle``'s own path (kloop.py), whose
    answers may come later; dispatch sees them only from the legacy path,
    which has none.

    Raises:
        OSError: EINVAL, always.
    """
    raise OSError(errno.EINVAL, "sync-kloop requests go through handle()")


def _csb_validate(binding, opt, mem) -> int:
    """netmap_csb_validate: returns the option status."""
    o = opt.struct()
    if kloop.running(binding):
        return errno.EBUSY
    nrings = sum(binding.qlast[d] - binding.qfirst[d] for d in (TX, RX))
    if nrings <= 0:
        return 0
    if not binding.flags & RegFlag.EXCLUSIVE:
        return errno.EINVAL
    atok, ktoa = o.csb_atok, o.csb_ktoa
    entry = ffi.sizeof("struct nm_csb_atok")
    if atok % entry or ktoa % entry:
        return errno.EINVAL
    try:
        mem.read(atok, nrings * entry)
        mem.write(ktoa, bytes(nrings * entry))
        # Initialise one entry per bound ring, TX rings first, from the kernel's view.
        kring_list = list(binding.krings(TX)) + list(binding.krings(RX))
        for i, kring in enumerate(kring_list):
            a = ffi.new("struct nm_csb_atok *", {"head": kring.rhead, "cur": kring.rcur,
                                                 "appl_need_kick": 1, "sync_flags": 1})
            k = ffi.new("struct nm_csb_ktoa *", {"hwcur": kring.hwcur, "hwtail": kring.hwtail,
                                                 "kern_need_kick": 1})
            mem.write(atok + i * entry, bytes(ffi.buffer(a)))
            mem.write(ktoa + i * entry, bytes(ffi.buffer(k)))
    except OSError as e:
        return e.errno or errno.EFAULT
    binding.csb = (atok, ktoa)
    return 0


HANDLERS = {
    ReqType.REGISTER: ctrl_register,
    ReqType.PORT_INFO_GET: ctrl_port_info_get,
    ReqType.PORT_HDR_SET: ctrl_port_hdr_set,
    ReqType.PORT_HDR_GET: ctrl_port_hdr_get,
    ReqType.POOLS_INFO_GET: ctrl_pools_info_get,
    ReqType.SYNC_KLOOP_START: ctrl_sync_kloop,
    ReqType.SYNC_KLOOP_STOP: ctrl_sync_kloop,
    ReqType.CSB_ENABLE: ctrl_csb_enable,
}
