"""The EXTMEM option of REGISTER (netmap_mem_ext_create as netmap_ioctl calls it).

The client allocates the memory itself and names it with ``nro_usrptr``
and ``nro_info.nr_memsize``; the pools are laid out there (see
``nmfuse.mem.external``).  The caller's ``map_shared`` (the device layer's
user memory) maps those pages into the daemon; memory already known by
its pages is shared, as netmap finds an allocator again by its pages.
"""

from nmfuse.mem import ExternalRegion, MemoryAllocator
from nmfuse.mem.external import PoolsRequest, plan

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
    mem = MemoryAllocator.over(ExternalRegion(mapping.address, mapping.size, mapping.close), layout)
    mem.private = True   # netmap's NETMAP_MEM_PRIVATE: the netmap_if says NI_PRIV_MEM
    try:
        return memories.add_external(mapping.key, mem)
    except BaseException:
        mem.close()
        raise
