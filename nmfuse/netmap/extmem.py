"""The EXTMEM option of REGISTER (netmap_mem_ext_create as netmap_ioctl calls it).

The client allocates the memory itself and names it with ``nro_usrptr``
and ``nro_info.nr_memsize``; the pools are laid out there (see
``nmfuse.mem.external``).  The caller's ``map_shared`` (the device layer's
user memory) maps those pages into the daemon; memory already known by
its pages is shared, as netmap finds an allocator again by its pages.

The pages stay the client's: if it truncates the file behind them, the
daemon's next access would fault.  Each region is therefore guarded (the
C helper's nmh_guard_*): such a fault gives the daemon a zero page there
and it keeps serving.  At most NMH_GUARD_MAX regions exist at once (ENOMEM).
"""

import errno

from nmfuse.mem import ExternalRegion, MemoryAllocator
from nmfuse.mem.external import PoolsRequest, plan
from nmfuse._helper import ffi, lib

# nmreq_pools_info field -> PoolsRequest field
_INFO_FIELDS = {
    "nr_if_pool_objtotal": "if_num", "nr_if_pool_objsize": "if_size",
    "nr_ring_pool_objtotal": "ring_num", "nr_ring_pool_objsize": "ring_size",
    "nr_buf_pool_objtotal": "buf_num", "nr_buf_pool_objsize": "buf_size",
}


def open_external(memories, opt, user_memory) -> MemoryAllocator:
    """The allocator for EXTMEM option ``opt``, held once for the caller.

    Zero pool fields of the option get netmap's defaults, written back
    into the option (the client sees them when the request succeeds).

    Raises:
        OSError: EINVAL (unaligned pointer, buffers too small to serve),
            EFAULT (memory the daemon cannot share: unmapped, private,
            read-only), ENOMEM (the pools do not fit).
    """
    info = opt.struct().nro_info
    request = PoolsRequest(memsize=info.nr_memsize,
                           **{ours: getattr(info, theirs) for theirs, ours in _INFO_FIELDS.items()})
    request = request.with_defaults()
    for theirs, ours in _INFO_FIELDS.items():
        setattr(info, theirs, getattr(request, ours))
    mapping = user_memory.map_shared(opt.struct().nro_usrptr, request.memsize)
    try:
        mem = memories.find_external(mapping.key)
        if mem is not None:
            mapping.close()
            return mem
        layout = plan(request)
    except BaseException:
        mapping.close()
        raise
    release = _guard(mapping)
    mem = MemoryAllocator.over(ExternalRegion(mapping.address, mapping.size, release), layout)
    mem.private = True   # netmap's NETMAP_MEM_PRIVATE: the netmap_if says NI_PRIV_MEM
    try:
        return memories.add_external(mapping.key, mem)
    except BaseException:
        mem.close()
        raise


def _guard(mapping):
    """Guard the pages of ``mapping``; returns what unguards and unmaps them.

    Raises:
        OSError: ENOMEM (every guard is taken), or the handler's install
            error (``mapping`` is closed).
    """
    start = ffi.cast("char *", mapping.address)
    length = (mapping.size + mapping.page - 1) // mapping.page * mapping.page
    installed = lib.nmh_guard_install()
    if installed < 0 or (length and lib.nmh_guard_add(start, length, mapping.page) < 0):
        mapping.close()
        code = -installed if installed < 0 else errno.ENOMEM
        raise OSError(code, "cannot guard another external region")

    def release() -> None:
        lib.nmh_guard_remove(start)
        mapping.close()
    return release
