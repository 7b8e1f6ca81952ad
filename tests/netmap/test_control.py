"""The NIOCCTRL control plane with netmap's exact errors, through a fake
caller address space (no FUSE)."""

import errno

from nmfuse.abi.netmap import Ioctl, OptType, RegFlag, RegMode, ReqType, ffi
from tests.netmap.conftest import CALLER


def test_version_outside_14_15_is_einval_and_header_untouched(h):
    fh = h.open()
    for version, want in ((13, errno.EINVAL), (16, errno.EINVAL)):
        hdr = h.header("x" * 64, ReqType.PORT_INFO_GET, version=version)
        err, back = h.ctrl_raw(fh, hdr)
        assert err == want
        assert bytes(ffi.buffer(back)) == bytes(ffi.buffer(hdr))


def test_version_15_accepted(h):
    fh = h.open()
    body = h.user.place(ffi.new("struct nmreq_port_info_get *"))
    err, _ = h.ctrl_raw(fh, h.header("", ReqType.PORT_INFO_GET, version=15, body=body))
    assert err == 0


def test_reserved_unknown_type_and_body_mismatch_are_einval(h):
    fh = h.open()
    body = h.user.place(bytes(64))
    assert h.ctrl_raw(fh, h.header("", ReqType.PORT_INFO_GET, body=body, reserved=1))[0] == errno.EINVAL
    for reqtype in (0, 99):
        assert h.ctrl_raw(fh, h.header("", reqtype))[0] == errno.EINVAL
        assert h.ctrl_raw(fh, h.header("", reqtype, body=body))[0] == errno.EINVAL
    assert h.ctrl_raw(fh, h.header("n", ReqType.REGISTER, body=0))[0] == errno.EINVAL
    assert h.ctrl_raw(fh, h.header("n", ReqType.VALE_DELIF, body=body))[0] == errno.EINVAL


def test_unreadable_body_or_option_is_efault(h):
    fh = h.open()
    assert h.ctrl_raw(fh, h.header("n", ReqType.REGISTER, body=8))[0] == errno.EFAULT
    body = h.user.place(ffi.new("struct nmreq_port_info_get *"))
    assert h.ctrl_raw(fh, h.header("", ReqType.PORT_INFO_GET, body=body, options=8))[0] == errno.EFAULT
    dangling = h.option(OptType.OFFSETS, nxt=0x7777000, ctype="struct nmreq_opt_offsets")
    assert h.ctrl_raw(fh, h.header("", ReqType.PORT_INFO_GET, body=body, options=dangling))[0] == errno.EFAULT


def test_name_is_terminated_in_the_header_written_back(h):
    fh = h.open()
    body = h.user.place(ffi.new("struct nmreq_port_info_get *"))
    err, back = h.ctrl_raw(fh, h.header(b"a" * 64, ReqType.PORT_INFO_GET, body=body))
    assert err == errno.ENXIO
    assert ffi.buffer(back.nr_name)[63:] == b"\0" and ffi.string(back.nr_name) == b"a" * 63
    assert back.nr_body == body


def test_looping_chains_are_duplicates_or_emsgsize_and_oversized_options_emsgsize(h):
    fh = h.open()
    body = h.user.place(ffi.new("struct nmreq_port_info_get *"))
    loop = h.option(OptType.OFFSETS, ctype="struct nmreq_opt_offsets")
    h.user.write(loop, loop.to_bytes(8, "little"))  # nro_next points at itself
    assert h.ctrl_raw(fh, h.header("", ReqType.PORT_INFO_GET, body=body, options=loop))[0] == errno.EINVAL
    assert h.option_status(loop) == errno.EINVAL, "netmap on Linux: the second copy is a duplicate"
    unknown = h.option(1000)
    h.user.write(unknown, unknown.to_bytes(8, "little"))
    err, back = h.ctrl_raw(fh, h.header("", ReqType.PORT_INFO_GET, body=body, options=unknown))
    assert err == errno.EMSGSIZE and back.nr_options == unknown and back.nr_reserved == 0
    big = h.option(OptType.SYNC_KLOOP_EVENTFDS, size=8192)
    assert h.ctrl_raw(fh, h.header("", ReqType.PORT_INFO_GET, body=body, options=big))[0] == errno.EMSGSIZE


def test_option_type_zero_unknown_and_duplicate(h):
    fh = h.open()
    reg = ffi.new("struct nmreq_register *")
    reg.nr_mode, reg.nr_mem_id = RegMode.NULL, 1
    zero = h.option(0)
    assert h.ctrl(fh, "n", ReqType.REGISTER, reg, zero)[0] == errno.EINVAL
    assert h.option_status(zero) == errno.EINVAL
    unknown = h.option(1000)
    assert h.ctrl(fh, "n", ReqType.REGISTER, reg, unknown)[0] == errno.EOPNOTSUPP
    assert h.option_status(unknown) == errno.EOPNOTSUPP
    second = h.option(OptType.OFFSETS, ctype="struct nmreq_opt_offsets")
    first = h.option(OptType.OFFSETS, nxt=second, ctype="struct nmreq_opt_offsets")
    assert h.ctrl(fh, "n", ReqType.REGISTER, reg, first)[0] == errno.EINVAL
    assert h.option_status(first) == h.option_status(second) == errno.EINVAL
    assert h.register(fh)[0] == 0, "failed requests left no binding behind"


def test_unconsumed_option_undoes_the_registration(h):
    fh = h.open()
    mode = h.option(OptType.SYNC_KLOOP_MODE, ctype="struct nmreq_opt_sync_kloop_mode")
    err, _, _ = h.register(fh, options=mode, nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=8, nr_rx_slots=8)
    assert err == errno.EOPNOTSUPP and h.option_status(mode) == errno.EOPNOTSUPP
    assert h.mem.statistics()["ring"].used == 0 and h.mem.statistics()["buf"].used == 0
    assert h.register(fh, nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=8, nr_rx_slots=8)[0] == 0


def test_unknown_option_before_a_consumed_one_fails_register_after_the_fact(h):
    # netmap on Linux copies past an unknown type; REGISTER consumes OFFSETS
    # (status 0), then nmreq_checkoptions finds the unknown one: EOPNOTSUPP
    fh = h.open()
    off = h.option(OptType.OFFSETS, ctype="struct nmreq_opt_offsets", nro_max_offset=64)
    unknown = h.option(1000, nxt=off)
    err, _, _ = h.register(fh, options=unknown, nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=8, nr_rx_slots=8)
    assert err == errno.EOPNOTSUPP
    assert h.option_status(unknown) == errno.EOPNOTSUPP and h.option_status(off) == 0
    assert h.mem.statistics()["ring"].used == 0 and h.mem.statistics()["buf"].used == 0


def test_unconsumed_option_elsewhere_is_only_marked(h):
    fh = h.open()
    opt = h.option(OptType.SYNC_KLOOP_MODE, ctype="struct nmreq_opt_sync_kloop_mode")
    err, info, _ = h.ctrl(fh, "", ReqType.PORT_INFO_GET, ffi.new("struct nmreq_port_info_get *"), opt)
    assert err == 0 and info.nr_mem_id == 1 and h.option_status(opt) == errno.EOPNOTSUPP


def test_null_port_registration_and_layout(h):
    fh = h.open()
    err, reg, _ = h.register(fh, nr_tx_rings=2, nr_rx_rings=3, nr_tx_slots=64, nr_rx_slots=128)
    assert err == 0
    assert (reg.nr_tx_rings, reg.nr_rx_rings, reg.nr_tx_slots, reg.nr_rx_slots) == (2, 3, 64, 128)
    assert reg.nr_mem_id == 1 and reg.nr_memsize == h.mem.memsize
    nifp = h.nifp(reg.nr_offset)
    assert (nifp.ni_tx_rings, nifp.ni_rx_rings, nifp.ni_host_tx_rings) == (2, 3, 0)
    seen = set()
    for i in range(5):
        ring = h.ring(nifp, i)
        tx = i < 2
        assert ring.dir == (0 if tx else 1) and ring.ringid == (i if tx else i - 2)
        assert ring.num_slots == (64 if tx else 128) and ring.nr_buf_size == 2048
        assert (ring.head, ring.cur, ring.tail) == (0, 0, ring.num_slots - 1 if tx else 0)
        bufs = {ring.slot[k].buf_idx for k in range(ring.num_slots)}
        assert min(bufs) >= 2 and not bufs & seen
        seen |= bufs
    assert h.sync(fh, Ioctl.NIOCTXSYNC) == 0 and h.sync(fh, Ioctl.NIOCRXSYNC) == 0


def test_null_port_errors(h):
    fh = h.open()
    assert h.register(fh, mem_id=0)[0] == errno.EINVAL
    assert h.register(fh, mem_id=7)[0] == errno.EINVAL
    assert h.register(fh, nr_tx_rings=1, nr_tx_slots=4)[0] == 0
    assert h.register(fh, nr_tx_rings=1, nr_tx_slots=4)[0] == errno.EBUSY


def test_rings_only_flags_leave_the_other_side_unbound(h):
    fh, fh2 = h.open(), h.open()
    _, reg, _ = h.register(fh, nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=4, nr_rx_slots=4,
                           nr_flags=RegFlag.TX_RINGS_ONLY)
    nifp = h.nifp(reg.nr_offset)
    assert nifp.ring_ofs[0] and not nifp.ring_ofs[1]
    _, reg, _ = h.register(fh2, nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=4, nr_rx_slots=4,
                           nr_flags=RegFlag.RX_RINGS_ONLY)
    nifp = h.nifp(reg.nr_offset)
    assert not nifp.ring_ofs[0] and nifp.ring_ofs[1]


def test_extra_buffers_are_listed_and_freed_on_close(h):
    fh = h.open()
    err, reg, _ = h.register(fh, nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=8, nr_rx_slots=8, nr_extra_bufs=10)
    assert err == 0 and reg.nr_extra_bufs == 10
    extra = h.mem.extra_walk(h.nifp(reg.nr_offset).ni_bufs_head, 100)
    assert len(set(extra)) == 10
    assert h.mem.statistics()["buf"].used == 26
    h.dev.release(fh)
    assert h.mem.statistics()["buf"].used == 0 and h.mem.statistics()["if"].used == 0


def test_other_modes_on_unknown_names(h):
    fh = h.open()
    for mode in (RegMode.DEFAULT, RegMode.ALL_NIC, RegMode.SW, RegMode.NIC_SW, RegMode.ONE_NIC,
                 RegMode.ONE_SW, 9):
        assert h.register(fh, "nosuchport0", mode=mode, mem_id=0)[0] == errno.ENXIO, mode
    for mode in (RegMode.PIPE_MASTER, RegMode.PIPE_SLAVE):
        assert h.register(fh, "nosuchport0", mode=mode, mem_id=0)[0] == errno.EINVAL


def test_port_info_pools_info_and_port_hdr(h):
    fh = h.open()
    info = ffi.new("struct nmreq_port_info_get *")
    assert h.ctrl(fh, "nosuchport0", ReqType.PORT_INFO_GET, info)[0] == errno.ENXIO
    info.nr_mem_id = 5
    assert h.ctrl(fh, "", ReqType.PORT_INFO_GET, info)[0] == errno.EINVAL
    pools = ffi.new("struct nmreq_pools_info *")
    assert h.ctrl(fh, "nosuchport0", ReqType.POOLS_INFO_GET, pools)[0] == errno.ENXIO
    err, got, _ = h.ctrl(fh, "pp{1", ReqType.POOLS_INFO_GET, pools)
    assert err == 0 and got.nr_buf_pool_objsize == 2048 and got.nr_memsize == h.mem.memsize
    assert got.nr_if_pool_offset < got.nr_ring_pool_offset < got.nr_buf_pool_offset
    assert not h.core.driver("pipe").pairs, "a pipe made only to answer a query is gone again"
    hdr = ffi.new("struct nmreq_port_hdr *")
    hdr.nr_hdr_len = 5
    assert h.ctrl(fh, "nosuchport0", ReqType.PORT_HDR_SET, hdr)[0] == errno.EINVAL
    hdr.nr_hdr_len = 10
    assert h.ctrl(fh, "nosuchport0", ReqType.PORT_HDR_SET, hdr)[0] == errno.ENXIO
    assert h.ctrl(fh, "nosuchport0", ReqType.PORT_HDR_GET, hdr)[0] == errno.ENXIO


def test_offsets_option(h):
    fh = h.open()
    geometry = dict(nr_tx_rings=1, nr_rx_rings=1, nr_tx_slots=8, nr_rx_slots=8)
    for fields in ({"nro_offset_bits": 65}, {"nro_max_offset": 4096}, {"nro_max_offset": 10, "nro_initial_offset": 20}):
        opt = h.option(OptType.OFFSETS, ctype="struct nmreq_opt_offsets", **fields)
        assert h.register(fh, options=opt, **geometry)[0] == errno.EINVAL
        assert h.option_status(opt) == errno.EINVAL
        stats = h.mem.statistics()
        assert stats["ring"].used == stats["buf"].used == stats["if"].used == 0, "a refused register leaks nothing"
    opt = h.option(OptType.OFFSETS, ctype="struct nmreq_opt_offsets", nro_max_offset=256, nro_initial_offset=64)
    err, reg, _ = h.register(fh, options=opt, **geometry)
    assert err == 0 and h.option_status(opt) == 0
    ring = h.ring(h.nifp(reg.nr_offset), 0)
    assert ring.offset_mask == (1 << 64) - 1
    assert all(ring.slot[k].ptr == 64 for k in range(8))


def test_csb_and_kloop(h):
    fh = h.open()
    assert h.ctrl(fh, "", ReqType.CSB_ENABLE)[0] == errno.EINVAL
    assert h.ctrl(fh, "", ReqType.SYNC_KLOOP_STOP)[0] == errno.ENXIO
    start = ffi.new("struct nmreq_sync_kloop_start *")
    assert h.ctrl(fh, "", ReqType.SYNC_KLOOP_START, start)[0] == errno.ENXIO


def test_sync_before_register_is_enxio_and_unknown_ioctl_eopnotsupp(h):
    fh = h.open()
    assert h.sync(fh, Ioctl.NIOCTXSYNC) == errno.ENXIO
    assert h.sync(fh, Ioctl.NIOCRXSYNC) == errno.ENXIO
    assert h.dev.ioctl(CALLER, fh, 0x1234, 0, b"", 0)[0] == errno.EOPNOTSUPP


def test_legacy_nmreq(h):
    fh = h.open()
    nmr = ffi.new("struct nmreq *")
    nmr.nr_version = 13
    assert h.dev.ioctl(CALLER, fh, Ioctl.NIOCGINFO, 0, bytes(ffi.buffer(nmr)), 60)[0] == errno.EINVAL
    nmr.nr_version = 14
    err, out = h.dev.ioctl(CALLER, fh, Ioctl.NIOCGINFO, 0, bytes(ffi.buffer(nmr)), 60)
    back = ffi.new("struct nmreq *")
    ffi.memmove(back, out, 60)
    assert err == 0 and back.nr_memsize == h.mem.memsize and back.nr_arg2 == 1
    nmr.nr_name = b"nosuchport0"
    assert h.dev.ioctl(CALLER, fh, Ioctl.NIOCREGIF, 0, bytes(ffi.buffer(nmr)), 60)[0] == errno.ENXIO
    nmr.nr_name = b"lp"
    nmr.nr_flags, nmr.nr_ringid, nmr.nr_arg3 = RegMode.PIPE_MASTER, 3, 5
    err, out = h.dev.ioctl(CALLER, fh, Ioctl.NIOCREGIF, 0, bytes(ffi.buffer(nmr)), 60)
    ffi.memmove(back, out, 60)
    assert err == 0 and back.nr_arg3 == 5 and back.nr_tx_slots == 1024
    assert ("lp", "3") in h.core.driver("pipe").pairs


def test_memory_exhaustion_is_enomem_and_leaves_nothing(h):
    fh = h.open()
    assert h.register(fh, "big{1", mode=RegMode.ALL_NIC, mem_id=0, nr_tx_slots=4096)[0] == errno.ENOMEM
    fds = [h.open() for _ in range(h.mem.ifs.objtotal + 1)]
    results = [h.register(f, "n", nr_tx_rings=1, nr_tx_slots=4)[0] for f in fds]
    assert results[:-1] == [0] * h.mem.ifs.objtotal and results[-1] == errno.ENOMEM
    for f in fds:
        h.dev.release(f)
    stats = h.mem.statistics()
    assert stats["if"].used == stats["ring"].used == stats["buf"].used == 0


def test_too_many_rings_for_a_netmap_if_is_enomem(h):
    fh = h.open()
    assert h.register(fh, nr_tx_rings=200, nr_rx_rings=200, nr_tx_slots=1, nr_rx_slots=1)[0] == errno.ENOMEM
