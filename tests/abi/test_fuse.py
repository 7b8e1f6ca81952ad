"""nmfuse.abi.fuse: struct sizes, an encode->decode round trip of every
declared struct, and constants that must agree with the struct sizes."""

import errno
import itertools

import pytest

from nmfuse.abi.cdef import FUSE_HEADER
from nmfuse.abi.fuse import (
    IN_HEADER_SIZE,
    OUT_HEADER_SIZE,
    DevIoctl,
    InitFlag,
    Opcode,
    OpenOutFlag,
    ffi,
    libc,
)

FUSE_STRUCTS = sorted({line.split()[1] for line in FUSE_HEADER.read_text().splitlines()
                       if line.startswith("struct fuse_") and line.rstrip().endswith("{")})

# Sizes from fuse_kernel.h 7.45 (and FUSE.md for the ones checked on this kernel).
SIZES = {
    "fuse_in_header": 40,
    "fuse_out_header": 16,
    "fuse_init_in": 64,
    "fuse_init_out": 64,
    "fuse_attr": 88,
    "fuse_attr_out": 104,
    "fuse_getattr_in": 16,
    "fuse_open_in": 8,
    "fuse_open_out": 16,
    "fuse_release_in": 24,
    "fuse_flush_in": 24,
    "fuse_forget_in": 8,
    "fuse_forget_one": 16,
    "fuse_batch_forget_in": 8,
    "fuse_interrupt_in": 8,
    "fuse_ioctl_in": 32,
    "fuse_ioctl_out": 16,
    "fuse_poll_in": 24,
    "fuse_poll_out": 8,
    "fuse_notify_poll_wakeup_out": 8,
    "fuse_uring_ent_in_out": 32,
    "fuse_uring_req_header": 288,
    "fuse_uring_cmd_req": 24,
    "fuse_backing_map": 16,
}


def test_every_struct_has_a_known_size():
    assert set(FUSE_STRUCTS) == set(SIZES)


@pytest.mark.parametrize("name", FUSE_STRUCTS)
def test_size(name):
    assert ffi.sizeof(f"struct {name}") == SIZES[name]


def test_header_sizes_exported():
    assert (IN_HEADER_SIZE, OUT_HEADER_SIZE) == (40, 16)


def _leaves(ctype, prefix=()):
    """(path, ctype) of every scalar field, arrays and nested structs unrolled."""
    for name, field in ctype.fields:
        t = field.type
        if t.kind == "struct":
            yield from _leaves(t, prefix + (name,))
        elif t.kind == "array":
            for i in range(t.length):
                yield prefix + (name, i), t.item
        else:
            yield prefix + (name,), t


def _get(obj, path):
    for step in path:
        obj = obj[step] if isinstance(step, int) else getattr(obj, step)
    return obj


def _set(obj, path, value):
    *head, last = path
    obj = _get(obj, head)
    if isinstance(last, int):
        obj[last] = value
    else:
        setattr(obj, last, value)


@pytest.mark.parametrize("name", FUSE_STRUCTS)
def test_round_trip(name):
    """Fill every field with a distinct value, serialise, decode the bytes
    into a fresh struct: every field comes back and no two fields overlap."""
    ctype = ffi.typeof(f"struct {name}")
    src = ffi.new(f"struct {name} *")
    counter = itertools.count(1)
    expected = {}
    for path, t in _leaves(ctype):
        value = next(counter) * 0x0101 % (1 << (8 * ffi.sizeof(t) - 1))  # positive, fits signed too
        _set(src[0], path, value)
        expected[path] = value
    wire = bytes(ffi.buffer(src))
    assert len(wire) == SIZES[name]
    received = ffi.from_buffer(bytearray(wire))  # keep it alive while dst points into it
    dst = ffi.cast(f"struct {name} *", received)
    assert {path: _get(dst[0], path) for path in expected} == expected


def _ioc(direction: int, kind: int, number: int, size: int) -> int:
    """Linux asm-generic _IOC: dir << 30 | size << 16 | type << 8 | nr."""
    return direction << 30 | size << 16 | kind << 8 | number


def test_dev_ioctls_match_struct_sizes():
    write, read = 1, 2
    assert DevIoctl.CLONE == _ioc(read, 229, 0, ffi.sizeof("uint32_t"))
    assert DevIoctl.BACKING_OPEN == _ioc(write, 229, 1, ffi.sizeof("struct fuse_backing_map"))
    assert DevIoctl.BACKING_CLOSE == _ioc(write, 229, 2, ffi.sizeof("uint32_t"))


def test_init_flags_split_into_two_words():
    flags = InitFlag.INIT_EXT | InitFlag.MAX_PAGES | InitFlag.PASSTHROUGH
    assert flags.words() == (0x40400000, 0x20)
    assert InitFlag.from_words(0x40400000, 0x20) == flags
    # What this kernel offers (FUSE.md) includes passthrough.
    assert InitFlag.from_words(0x73FFFFFB, 0x5FD) & InitFlag.PASSTHROUGH


def test_constants():
    assert OpenOutFlag.PASSTHROUGH == 0x80
    assert (Opcode.GETATTR, Opcode.OPEN, Opcode.INIT, Opcode.IOCTL, Opcode.POLL) == (3, 14, 26, 39, 40)


def test_libc_sets_errno():
    assert libc.umount2(b"/nonexistent/nmfuse-test", 0) == -1
    assert ffi.errno in (errno.ENOENT, errno.EPERM)
