"""nmreq copyin/copyout from bytes: hand-annotated fixtures, truncations,
and a fuzzer over random headers and option chains."""

import errno

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmfuse.abi.netmap import OptType, ReqType, ffi
from nmfuse.netmap.request import OPTION_SIZE, RequestError, copyin, copyout, new_header
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
    with pytest.raises(OSError) as e:
        copyin(new_header(HEADER), fake(body=bytes(cut)))
    assert e.value.errno == errno.EFAULT
    with pytest.raises(OSError) as e:
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
        assert e.errno in (errno.EINVAL, errno.EMSGSIZE, errno.EOPNOTSUPP)
        return
    except OSError as e:
        assert e.errno == errno.EFAULT
        return
    assert len(req.options) <= 4096 // OPTION_SIZE
    assert copyout(req, mem, 0) in (0, errno.EFAULT)
