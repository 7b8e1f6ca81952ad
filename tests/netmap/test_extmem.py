"""REGISTER with NETMAP_REQ_OPT_EXTMEM through the device handler: ports in
the client's memory, shared by pointer, released with their last port,
and netmap's errno and option status for memory that cannot be used."""

import errno

from nmfuse.mem.external import PoolsRequest, plan
from nmfuse.abi.netmap import Ioctl, OptType, RegMode, ReqType, ffi

MIB = 1 << 20
SIZE = 16 * MIB   # netmap's default 4098 buffers need 8 MiB
POOLS = {"nr_if_pool_objtotal": 16, "nr_ring_pool_objtotal": 16}


def extmem(h, usrptr, memsize, **pools):
    info = {"nr_memsize": memsize, **POOLS, **pools}
    return h.option(OptType.EXTMEM, ctype="struct nmreq_opt_extmem", nro_usrptr=usrptr, nro_info=info)


def register(h, fh, name, opt=0, mode=RegMode.ALL_NIC, mem_id=0):
    return h.register(fh, name=name, mode=mode, mem_id=mem_id, options=opt)


def externals(h):
    return h.core.memories.externals()


def test_pipe_ends_live_in_the_clients_memory(h):
    usr = h.user.place_shared(SIZE)
    opt = extmem(h, usr, SIZE)
    fh = h.open()
    err, reg, _ = register(h, fh, "x{1", opt)
    assert err == 0 and reg.nr_mem_id == 2 and h.option_status(opt) == 0
    expect = plan(PoolsRequest(memsize=SIZE, if_num=16, ring_num=16).with_defaults())
    assert reg.nr_memsize == expect.memsize
    back = h.user.get(opt, "struct nmreq_opt_extmem").nro_info
    assert (back.nr_ring_pool_objsize, back.nr_buf_pool_objsize, back.nr_if_pool_objsize) == (20480, 2048, 1024)
    # the netmap_if and the ring are in the client's pages, at the offsets it was told
    nifp = ffi.cast("struct netmap_if *", ffi.from_buffer(h.user.shared_view(usr + reg.nr_offset, 1024)))
    assert nifp.ni_flags & 1 and nifp.ni_tx_rings == 1 and nifp.ring_ofs[0] > 0
    ring_at = usr + reg.nr_offset + nifp.ring_ofs[0]
    ring = ffi.cast("struct netmap_ring *", ffi.from_buffer(h.user.shared_view(ring_at, 256)))
    assert ring.num_slots == reg.nr_tx_slots and ring_at + ring.buf_ofs == usr + expect.bufs.offset
    assert h.mem.statistics()["ring"].used == 0, "nothing in the global memory"


def test_ports_share_a_region_by_pointer_or_mem_id_and_it_goes_with_the_last(h):
    usr = h.user.place_shared(SIZE)
    fhs = [h.open() for _ in range(3)]
    assert register(h, fhs[0], "y{1", extmem(h, usr, SIZE))[1].nr_mem_id == 2
    assert register(h, fhs[1], "y}1", extmem(h, usr, SIZE))[1].nr_mem_id == 2
    assert register(h, fhs[2], "n", mode=RegMode.NULL, mem_id=2)[1].nr_mem_id == 2
    (mem,) = externals(h)
    assert h.user.mapped == 1, "the second registration found the region, its own mapping is gone"
    other = h.user.place_shared(SIZE)
    fh = h.open()
    assert register(h, fh, "z{1", extmem(h, other, SIZE))[1].nr_mem_id == 3
    h.dev.release(fh)
    assert externals(h) == [mem]
    for fh in fhs[:2]:
        h.dev.release(fh)
    assert externals(h) == [mem], "the null port still uses it"
    h.dev.release(fhs[2])
    assert externals(h) == [] and h.user.mapped == 0 and mem.region.base is None


def test_memory_that_cannot_be_used_gets_netmaps_errno_in_the_option(h):
    usr = h.user.place_shared(SIZE)
    private = h.user.place(bytes(8192))
    cases = [
        (extmem(h, usr + 8, SIZE - 8), errno.EINVAL),          # unaligned
        (extmem(h, private, 4096), errno.EFAULT),                # not shared memory
        (extmem(h, usr, 2 * SIZE), errno.EFAULT),                 # runs past it
        (extmem(h, 0, 4096), errno.EFAULT),                      # no pointer
        (extmem(h, usr, 64 * 1024), errno.ENOMEM),               # the default buffers do not fit
        (extmem(h, usr, SIZE, nr_buf_pool_objsize=32), errno.EINVAL),
    ]
    fh = h.open()
    for opt, code in cases:
        err, _, _ = register(h, fh, "w{1", opt)
        assert (err, h.option_status(opt)) == (code, code)
    assert externals(h) == [] and h.user.mapped == 0 and not h.core.driver("pipe").pairs
    assert register(h, fh, "w{1", extmem(h, usr, SIZE))[0] == 0, "the fd is still free to register"


def test_too_little_memory_for_the_rings_is_enomem_at_register(h):
    usr = h.user.place_shared(SIZE)
    opt = extmem(h, usr, 3 * 4096, nr_if_pool_objtotal=2, nr_ring_pool_objtotal=1, nr_ring_pool_objsize=4096,
                 nr_buf_pool_objtotal=1)
    fh = h.open()
    err, _, _ = register(h, fh, "v{1", opt)
    # the option was fine (status 0, as netmap's ext_create); the pipe's rings were not
    assert err == errno.ENOMEM and h.option_status(opt) == 0
    assert externals(h) == [] and h.user.mapped == 0


def test_port_and_pools_info_by_mem_id(h):
    usr = h.user.place_shared(SIZE)
    fh = h.open()
    register(h, fh, "u{1", extmem(h, usr, SIZE))
    info = ffi.new("struct nmreq_port_info_get *")
    info.nr_mem_id = 2
    err, got, _ = h.ctrl(h.open(), "", ReqType.PORT_INFO_GET, info)
    assert err == 0 and (got.nr_mem_id, got.nr_memsize) == (2, externals(h)[0].memsize)
    err, got, _ = h.ctrl(h.open(), "u}1", ReqType.PORT_INFO_GET, ffi.new("struct nmreq_port_info_get *"))
    assert err == 0 and got.nr_mem_id == 2
    pools = ffi.new("struct nmreq_pools_info *")
    pools.nr_mem_id = 2
    err, got, _ = h.ctrl(h.open(), "null0", ReqType.POOLS_INFO_GET, pools)
    assert err == errno.ENXIO
    err, got, _ = h.ctrl(h.open(), "u{1", ReqType.POOLS_INFO_GET, pools)
    expect = externals(h)[0].pools_info()
    assert err == 0 and (got.nr_mem_id, got.nr_buf_pool_offset, got.nr_buf_pool_objtotal) == \
        (2, expect.buf_pool_offset, expect.buf_pool_objtotal)
    h.dev.release(fh)
    assert h.ctrl(h.open(), "", ReqType.PORT_INFO_GET, info)[0] == errno.EINVAL


def _send(h, mem, reg, payload: bytes):
    nifp = mem.region.ptr("struct netmap_if *", reg.nr_offset)
    ring = h.ring(nifp, 0)
    slot = ring.slot[ring.head]
    start = ffi.cast("char *", ring) + ring.buf_ofs + slot.buf_idx * ring.nr_buf_size
    ffi.memmove(start, payload, len(payload))
    slot.len = len(payload)
    ring.head = ring.cur = (ring.head + 1) % ring.num_slots


def _receive(h, mem, reg) -> bytes:
    nifp = mem.region.ptr("struct netmap_if *", reg.nr_offset)
    ring = h.ring(nifp, nifp.ni_tx_rings + nifp.ni_host_tx_rings)
    if ring.cur == ring.tail:
        return b""
    slot = ring.slot[ring.cur]
    start = ffi.cast("char *", ring) + ring.buf_ofs + slot.buf_idx * ring.nr_buf_size
    return bytes(ffi.buffer(start, slot.len))


def test_vale_ports_of_two_memories_exchange_frames(h):
    usr = h.user.place_shared(SIZE)
    fa, fg = h.open(), h.open()
    err, ra, _ = register(h, fa, "vale1:a", extmem(h, usr, SIZE))
    assert err == 0 and ra.nr_mem_id == 2
    err, rg, _ = register(h, fg, "vale1:g")
    assert err == 0 and rg.nr_mem_id == 1
    ext = externals(h)[0]
    frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x0a" + b"\x88\xb5" + bytes(range(50))
    _send(h, ext, ra, frame)
    assert h.sync(fa, Ioctl.NIOCTXSYNC) == 0 and h.sync(fg, Ioctl.NIOCRXSYNC) == 0
    assert _receive(h, h.mem, rg) == frame
    back = b"\x02\x00\x00\x00\x00\x0a" + b"\x02\x00\x00\x00\x00\x09" + b"\x88\xb5" + bytes(40)
    _send(h, h.mem, rg, back)
    assert h.sync(fg, Ioctl.NIOCTXSYNC) == 0 and h.sync(fa, Ioctl.NIOCRXSYNC) == 0
    assert _receive(h, ext, ra) == back


def test_an_existing_port_keeps_its_memory_and_the_region_goes_at_once(h):
    usr = h.user.place_shared(SIZE)
    fh = h.open()
    assert register(h, fh, "vale2:p")[0] == 0
    opt = extmem(h, usr, SIZE)
    err, reg, _ = register(h, h.open(), "vale2:p", opt)
    assert err == 0 and reg.nr_mem_id == 1 and h.option_status(opt) == 0
    assert externals(h) == [] and h.user.mapped == 0


def test_a_persistent_vale_port_in_external_memory_holds_it_until_deleted(h):
    usr = h.user.place_shared(SIZE)
    fh = h.open()
    register(h, fh, "t{1", extmem(h, usr, SIZE))
    newif = ffi.new("struct nmreq_vale_newif *")
    newif.nr_mem_id = 2
    err, got, _ = h.ctrl(h.open(), "pv0", ReqType.VALE_NEWIF, newif)
    assert err == 0 and got.nr_mem_id == 2
    h.dev.release(fh)
    assert [m.mem_id for m in externals(h)] == [2]
    fp = h.open()
    err, reg, _ = register(h, fp, "pv0")
    assert err == 0 and reg.nr_mem_id == 2
    h.dev.release(fp)
    assert h.ctrl(h.open(), "pv0", ReqType.VALE_DELIF)[0] == 0
    assert externals(h) == [] and h.user.mapped == 0


def test_a_pipe_end_opened_again_holds_the_memory_again(h):
    usr = h.user.place_shared(SIZE)
    master, slave = h.open(), h.open()
    register(h, master, "r{1", extmem(h, usr, SIZE))
    register(h, slave, "r}1", mem_id=2)
    h.dev.release(slave)                       # the slave's last reference goes, the pair stays
    again = h.open()
    assert register(h, again, "r}1", mem_id=2)[1].nr_mem_id == 2
    h.dev.release(master)
    (mem,) = externals(h)
    assert mem.users == 1, "the slave, found again, holds it; the master let go"
    assert h.sync(again, Ioctl.NIOCTXSYNC) == 0 and mem.region.base is not None
    h.dev.release(again)
    assert externals(h) == [] and h.user.mapped == 0
