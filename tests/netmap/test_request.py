"""nmreq copyin/copyout from bytes: hand-annotated fixtures, truncations,
and a fuzzer over random headers and option chains."""

import errno
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmfuse.abi.netmap import OptType, ReqType, ffi
from nmfuse.netmap.request import (
    COPY_BUFFER_SIZE,
    OPTION_SIZE,
    RequestError,
    copyin,
    copyout,
    new_header,
)
from tests.netmap.fakemem import FakeUserMemory

BODY = 0x20000     # where the fixtures put the body in the fake address space
OPTION = 0x30000   # and the option

# struct nmreq_header, 88 bytes: a PORT_INFO_GET for "p{1" with one option
HEADER = bytes.fromhex(
    "0e00 0200 00000000"      # nr_version 14, nr_reqtype 2 (PORT_INFO_GET), nr_reserved 0
    "707b310000000000"        # nr_name "p{1" ...
    + "00" * 56 +             # ... the rest of the 64-byte name
    "0000030000000000"        # nr_options 0x30000
    "0000020000000000"        # nr_body 0x20000
)

# struct nmreq_opt_offsets, 56 bytes
OFFSETS_OPTION = bytes.fromhex(
    "0000000000000000"        # nro_next 0 (end of chain)
    "05000000 00000000"       # nro_reqtype 5 (OFFSETS), nro_status 0
    "0000000000000000"        # nro_size 0
    "0001000000000000"        # nro_max_offset 256
    "4000000000000000"        # nro_initial_offset 64
    "00000000 00000000"       # nro_offset_bits 0, nro_tx_align 0
    "0000000000000000"        # nro_min_gap 0
)


def fake(body=bytes(32), option=OFFSETS_OPTION):
    mem = FakeUserMemory()
    mem.blocks[BODY] = bytearray(body)
    mem.blocks[OPTION] = bytearray(option)
    return mem


def test_fixture_sizes_match_the_abi():
    assert len(HEADER) == ffi.sizeof("struct nmreq_header")
    assert len(OFFSETS_OPTION) == ffi.sizeof("struct nmreq_opt_offsets")


def test_header_and_option_decode():
    req = copyin(new_header(HEADER), fake())
    assert req.reqtype == ReqType.PORT_INFO_GET and req.name == "p{1"
    opt = req.option(OptType.OFFSETS)
    assert opt.status == errno.EOPNOTSUPP, "every option starts unsupported"
    s = opt.struct()
    assert (s.nro_max_offset, s.nro_initial_offset) == (256, 64)


def test_copyout_on_success_writes_body_and_option_statuses():
    mem = fake()
    req = copyin(new_header(HEADER), mem)
    req.body.nr_memsize = 0x1234
    req.option(OptType.OFFSETS).status = 0
    assert copyout(req, mem, 0) == 0
    assert mem.get(BODY, "struct nmreq_port_info_get").nr_memsize == 0x1234
    assert mem.get(OPTION, "struct nmreq_option").nro_status == 0


def test_copyout_on_error_keeps_the_body_and_writes_only_option_headers():
    mem = fake(body=b"\xaa" * 32)
    req = copyin(new_header(HEADER), mem)
    req.body.nr_memsize = 0x1234
    opt = req.option(OptType.OFFSETS)
    opt.struct().nro_max_offset = 7
    assert copyout(req, mem, errno.ENXIO) == errno.ENXIO
    assert bytes(mem.blocks[BODY]) == b"\xaa" * 32
    back = mem.get(OPTION, "struct nmreq_opt_offsets")
    assert back.nro_opt.nro_status == errno.EOPNOTSUPP and back.nro_max_offset == 256


@pytest.mark.parametrize("cut", [8, 20, 31])
def test_a_truncated_body_or_option_is_efault(cut):
    with pytest.raises(RequestError) as e:
        copyin(new_header(HEADER), fake(body=bytes(cut)))
    assert e.value.errno == errno.EFAULT
    with pytest.raises(RequestError) as e:
        copyin(new_header(HEADER), fake(option=OFFSETS_OPTION[:cut]))
    assert e.value.errno == errno.EFAULT


def test_reserved_and_body_rules():
    hdr = new_header(HEADER)
    hdr.nr_reserved = 1
    with pytest.raises(RequestError) as e:
        copyin(hdr, fake())
    assert e.value.errno == errno.EINVAL
    hdr = new_header(HEADER)
    hdr.nr_body = 0
    with pytest.raises(RequestError):
        copyin(hdr, fake())


# ---------------------------------------------------------------------------
# Option chains as netmap on Linux copies them: one pass, first error wins.

SENTINEL = 0x5EED  # an nro_status no netmap path writes: "never written back"


def head(nxt: int, reqtype: int, size: int = 0, status: int = SENTINEL) -> bytes:
    """struct nmreq_option, 24 bytes: nro_next u64, nro_reqtype u32,
    nro_status u32, nro_size u64 (little-endian)."""
    return struct.pack("<QIIQ", nxt, reqtype, status, size)


def info_header(options: int) -> bytes:
    """HEADER (PORT_INFO_GET, body at BODY) with another nr_options."""
    return HEADER[:72] + struct.pack("<Q", options) + HEADER[80:]


def status_at(mem, addr: int) -> int:
    return struct.unpack_from("<I", mem.read(addr + 12, 4))[0]


def next_at(mem, addr: int) -> int:
    return struct.unpack_from("<Q", mem.read(addr, 8))[0]


def run(mem, options: int):
    """copyin of a PORT_INFO_GET with that chain: (errno, header after it)."""
    hdr = new_header(info_header(options))
    try:
        copyin(hdr, mem)
    except RequestError as e:
        return e.errno, hdr
    return 0, hdr


def layout(*options: bytes) -> tuple[FakeUserMemory, list[int]]:
    """A PORT_INFO_GET body at BODY and each option in its own block,
    nro_next fields rewritten by ``link`` afterwards."""
    mem = FakeUserMemory(start=0x100000)  # above BODY
    mem.blocks[BODY] = bytearray(32)
    return mem, [mem.place(o) for o in options]


def link(mem, addrs, order):
    """Point each option's nro_next at the next index in ``order`` (None ends)."""
    for i, j in order:
        mem.write(addrs[i], (addrs[j] if j is not None else 0).to_bytes(8, "little"))


def test_body_mismatch_leaves_nr_reserved_1_and_copyout_clears_it():
    hdr = new_header(HEADER)
    hdr.nr_body = 0
    with pytest.raises(RequestError) as e:
        copyin(hdr, fake())
    assert e.value.errno == errno.EINVAL and hdr.nr_reserved == 1, "nmreq_copyin sets it before the body check"
    mem = fake()
    hdr = new_header(HEADER)
    req = copyin(hdr, mem)
    assert hdr.nr_reserved == 1
    copyout(req, mem, 0)
    assert hdr.nr_reserved == 0 and bytes(ffi.buffer(hdr)) == HEADER


def test_type_zero_is_einval_and_ends_the_copy():
    # OFFSETS -> type 0 -> CSB: the copy stops at type 0
    mem, (off, zero, csb) = layout(OFFSETS_OPTION[:12] + struct.pack("<I", SENTINEL) + OFFSETS_OPTION[16:],
                                   head(0, 0), head(0, OptType.CSB) + bytes(16))
    link(mem, [off, zero, csb], [(0, 1), (1, 2)])
    err, hdr = run(mem, off)
    assert err == errno.EINVAL and hdr.nr_reserved == 0
    assert status_at(mem, off) == 0, "copied before the error: written back with status 0"
    assert mem.read(off + 24, 32) == OFFSETS_OPTION[24:], "option bodies are not written back on error"
    assert status_at(mem, zero) == errno.EINVAL and next_at(mem, zero) == csb
    assert status_at(mem, csb) == SENTINEL, "never reached"


def test_a_chain_looping_onto_a_known_option_is_a_duplicate():
    mem, (a,) = layout(head(0, OptType.SYNC_KLOOP_MODE) + bytes(8))
    link(mem, [a], [(0, 0)])
    err, _ = run(mem, a)
    assert err == errno.EINVAL and status_at(mem, a) == errno.EINVAL and next_at(mem, a) == a
    # OFFSETS -> SYNC_KLOOP_MODE -> back to OFFSETS
    mem, (off, mode) = layout(OFFSETS_OPTION, head(0, OptType.SYNC_KLOOP_MODE) + bytes(8))
    link(mem, [off, mode], [(0, 1), (1, 0)])
    err, _ = run(mem, off)
    assert err == errno.EINVAL
    assert status_at(mem, off) == errno.EINVAL and status_at(mem, mode) == 0
    assert (next_at(mem, off), next_at(mem, mode)) == (mode, off), "user next pointers restored"


def test_a_loop_of_unknown_types_outgrows_the_buffer_and_nothing_is_written_back():
    mem, (a, b) = layout(head(0, 1000), head(0, 7))
    link(mem, [a, b], [(0, 1), (1, 0)])
    err, hdr = run(mem, a)
    assert err == errno.EMSGSIZE and hdr.nr_reserved == 0
    assert status_at(mem, a) == status_at(mem, b) == SENTINEL


# netmap's copy buffer: (2 + OPT_MAX 6) * 8 + 4096 + 6 * 8 = 4208 bytes.  A
# PORT_INFO_GET takes 16 (saved pointers) + 32 (body) + 48 (option table) =
# 96 of them, and each option 8 (saved next) + 24 (header): 96 + 128 * 32 =
# 4192 fits, a 129th option needs 4224 > 4208.
def unknown_chain(n: int):
    mem, addrs = layout(*[head(0, 1000 + i) for i in range(n)])
    link(mem, addrs, [(i, i + 1 if i + 1 < n else None) for i in range(n)])
    return mem, addrs


def test_128_unknown_options_fit_the_copy_buffer():
    assert COPY_BUFFER_SIZE == 4208
    mem, addrs = unknown_chain(128)
    req = copyin(new_header(info_header(addrs[0])), mem)
    assert len(req.options) == 128 and not req.by_type
    assert all(o.status == errno.EOPNOTSUPP for o in req.options)
    assert copyout(req, mem, 0) == 0
    assert all(status_at(mem, a) == errno.EOPNOTSUPP for a in addrs)


def test_a_129th_option_is_emsgsize_and_no_option_is_written_back():
    mem, addrs = unknown_chain(129)
    err, hdr = run(mem, addrs[0])
    assert err == errno.EMSGSIZE and hdr.nr_reserved == 0 and hdr.nr_options == addrs[0]
    assert all(status_at(mem, a) == SENTINEL for a in addrs)


def test_duplicate_marks_both_einval_and_ends_the_copy():
    mem, (a, mode, b, after) = layout(OFFSETS_OPTION, head(0, OptType.SYNC_KLOOP_MODE) + bytes(8),
                                      OFFSETS_OPTION, head(0, OptType.CSB) + bytes(16))
    link(mem, [a, mode, b, after], [(0, 1), (1, 2), (2, 3)])
    err, _ = run(mem, a)
    assert err == errno.EINVAL
    assert [status_at(mem, x) for x in (a, mode, b, after)] == [errno.EINVAL, 0, errno.EINVAL, SENTINEL]


def test_an_unknown_type_alone_is_copied_and_left_eopnotsupp():
    mem, (u,) = layout(head(0, 1000, size=4))
    req = copyin(new_header(info_header(u)), mem)
    assert [o.reqtype for o in req.options] == [1000] and req.unconsumed()
    assert copyout(req, mem, 0) == 0, "PORT_INFO_GET does not check its options"
    assert mem.read(u, 24) == head(0, 1000, size=4, status=errno.EOPNOTSUPP)


def test_an_unknown_type_before_a_known_one():
    mem, (u, off) = layout(head(0, 6), OFFSETS_OPTION)
    link(mem, [u, off], [(0, 1)])
    req = copyin(new_header(info_header(u)), mem)
    assert list(req.by_type) == [OptType.OFFSETS]
    assert req.option(OptType.OFFSETS).struct().nro_max_offset == 256
    req.option(OptType.OFFSETS).status = 0       # as a handler that consumes it
    req.option(OptType.OFFSETS).struct().nro_max_offset = 128
    assert copyout(req, mem, 0) == 0
    assert mem.read(u, 24) == head(off, 6, status=errno.EOPNOTSUPP)
    back = mem.get(off, "struct nmreq_opt_offsets")
    assert back.nro_opt.nro_status == 0 and back.nro_max_offset == 128


@pytest.mark.parametrize("reqtype, size, want", [
    (OptType.CSB, 4096, 0),                           # fixed size: nro_size only bounded
    (OptType.CSB, 4097, errno.EMSGSIZE),              # nro_size above NETMAP_REQ_MAXSIZE
    (OptType.SYNC_KLOOP_EVENTFDS, 4064, 0),           # 32 body + 24 + 4040 = 4096
    (OptType.SYNC_KLOOP_EVENTFDS, 4065, errno.EMSGSIZE),  # 4097 bytes of request
    (OptType.SYNC_KLOOP_EVENTFDS, 8192, errno.EMSGSIZE),
    (OptType.SYNC_KLOOP_EVENTFDS, 2**63, errno.EMSGSIZE),
])
def test_oversized_nro_size(reqtype, size, want):
    fixed = ffi.sizeof("struct nmreq_opt_csb") if reqtype == OptType.CSB else max(size, 24)
    # the option's block holds exactly what netmap may read: more would be EFAULT
    body = bytes(min(fixed, 4096) - 24)
    mem, (o,) = layout(head(0, reqtype, size=size) + body)
    err, _ = run(mem, o)
    assert err == want
    if want:
        assert status_at(mem, o) == 0, "copied header, written back with status 0"


def test_a_first_option_in_unmapped_memory_writes_nothing():
    mem, _ = layout()
    err, hdr = run(mem, 0x7770000)
    assert err == errno.EFAULT and hdr.nr_options == 0x7770000 and hdr.nr_reserved == 0


def test_a_next_pointer_into_unmapped_memory_writes_back_what_was_copied():
    mem, (off,) = layout(OFFSETS_OPTION[:12] + struct.pack("<I", SENTINEL) + OFFSETS_OPTION[16:])
    link(mem, [off], [])
    mem.write(off, (0x7770000).to_bytes(8, "little"))
    err, _ = run(mem, off)
    assert err == errno.EFAULT
    assert status_at(mem, off) == 0 and next_at(mem, off) == 0x7770000


def test_an_option_body_in_unmapped_memory_is_efault_with_the_header_written_back():
    mem, (off,) = layout(head(0, OptType.OFFSETS, size=56))   # header only: the body would follow
    err, _ = run(mem, off)
    assert err == errno.EFAULT and status_at(mem, off) == 0


def _chain(draw_opts, mem):
    """Lay random options out in fake memory; returns the first address."""
    # room for the header and a small body: a larger nro_size then reads past it (EFAULT)
    addrs = [mem.place(bytes(OPTION_SIZE + min(size, 256))) for _, size, _ in draw_opts]
    for i, (reqtype, size, link) in enumerate(draw_opts):
        head = ffi.new("struct nmreq_option *")
        head.nro_reqtype, head.nro_size = reqtype, size
        if link == "next":
            head.nro_next = addrs[i + 1] if i + 1 < len(addrs) else 0
        elif link == "self":
            head.nro_next = addrs[i]
        elif link == "wild":
            head.nro_next = 0xDEAD0000
        mem.write(addrs[i], bytes(ffi.buffer(head)))
    return addrs[0] if addrs else 0


option = st.tuples(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 1000, 2**32 - 1]),
                   st.sampled_from([0, 8, 24, 100, 5000, 2**63]),
                   st.sampled_from(["next", "next", "next", "self", "wild"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.integers(0, 0xFFFF), reqtype=st.integers(0, 20), reserved=st.sampled_from([0, 0, 1]),
       body=st.sampled_from(["none", "good", "short", "wild"]), opts=st.lists(option, max_size=6),
       name=st.binary(max_size=64))
def test_fuzz_copyin_copyout_never_crash(version, reqtype, reserved, body, opts, name):
    mem = FakeUserMemory()
    hdr = ffi.new("struct nmreq_header *")
    hdr.nr_version, hdr.nr_reqtype, hdr.nr_reserved = version, reqtype, reserved
    ffi.memmove(hdr.nr_name, name, len(name))
    hdr.nr_body = {"none": 0, "good": mem.place(bytes(128)), "short": mem.place(bytes(4)),
                   "wild": 0xBAD000}[body]
    hdr.nr_options = _chain(opts, mem)
    try:
        req = copyin(hdr, mem)
    except RequestError as e:
        assert e.errno in (errno.EINVAL, errno.EMSGSIZE, errno.EFAULT)
        return
    assert all(o.status == errno.EOPNOTSUPP for o in req.options)
    assert len(req.options) <= COPY_BUFFER_SIZE // (OPTION_SIZE + 8)
    assert copyout(req, mem, 0) in (0, errno.EFAULT)
