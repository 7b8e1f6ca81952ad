"""nmfuse.dev.request: requests written by hand as the kernel sends them
(little-endian, 8 bytes per row, fields named in the comments), parsed in
place; truncation tests slice the same fixtures."""

import errno
import sys

import pytest

from nmfuse.abi.fuse import InitFlag, Opcode, ffi
from nmfuse.dev import request as rq

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="fixtures are little-endian")


def rows(*hex_rows: str) -> bytes:
    return b"".join(bytes.fromhex(r) for r in hex_rows)


# The header rows after len/opcode and unique are the same in most fixtures.
NODE1_ROOT_PID99 = (
    "01000000 00000000",  # nodeid 1
    "00000000 00000000",  # uid 0, gid 0
    "63000000 0000 0000",  # pid 99, total_extlen 0, padding 0
)

INIT_7_45 = rows(
    "68000000 1a000000",  # len 104, opcode 26 (INIT)
    "02000000 00000000",  # unique 2
    "00000000 00000000",  # nodeid 0
    "00000000 00000000",  # uid 0, gid 0
    "00000000 0000 0000",  # pid 0, total_extlen 0, padding 0
    "07000000 2d000000",  # major 7, minor 45
    "00000200 fbffff73",  # max_readahead 0x20000, flags 0x73fffffb
    "fd050000 00000000",  # flags2 0x5fd, unused[0]
    "00000000 00000000",  # unused[1..2]
    "00000000 00000000",  # unused[3..4]
    "00000000 00000000",  # unused[5..6]
    "00000000 00000000",  # unused[7..8]
    "00000000 00000000",  # unused[9..10]
)

INIT_7_23 = rows(  # an older kernel: fuse_init_in ends after flags
    "38000000 1a000000",  # len 56, opcode 26 (INIT)
    "02000000 00000000",  # unique 2
    "00000000 00000000",  # nodeid 0
    "00000000 00000000",  # uid 0, gid 0
    "00000000 0000 0000",  # pid 0, total_extlen 0, padding 0
    "07000000 17000000",  # major 7, minor 23
    "00000200 fbffff01",  # max_readahead 0x20000, flags 0x01fffffb
)

IOCTL = rows(
    "50000000 27000000",  # len 80, opcode 39 (IOCTL)
    "34120000 00000000",  # unique 0x1234
    "01000000 00000000",  # nodeid 1
    "e8030000 e8030000",  # uid 1000, gid 1000
    "e1100000 0000 0000",  # pid 4321, total_extlen 0, padding 0
    "03000000 00000000",  # fh 3
    "00000000 976908c0",  # flags 0, cmd 0xc0086997 (_IOWR('i', 0x97, 8 bytes))
    "78563412 fd7f0000",  # arg 0x7ffd12345678 (the caller's pointer)
    "08000000 08000000",  # in_size 8, out_size 8
    "01020304 05060708",  # the 8 bytes the caller passed in
)

IOCTL_NO_DATA = rows(
    "48000000 27000000",  # len 72, opcode 39 (IOCTL)
    "35120000 00000000",  # unique 0x1235
    *NODE1_ROOT_PID99,
    "03000000 00000000",  # fh 3
    "00000000 94690000",  # flags 0, cmd 0x6994 (_IO('i', 0x94): no data either way)
    "00000000 00000000",  # arg 0
    "00000000 00000000",  # in_size 0, out_size 0
)

POLL = rows(
    "40000000 28000000",  # len 64, opcode 40 (POLL)
    "07000000 00000000",  # unique 7
    *NODE1_ROOT_PID99,
    "03000000 00000000",  # fh 3
    "78563412 8888ffff",  # kh 0xffff888812345678
    "01000000 41000000",  # flags SCHEDULE_NOTIFY, events POLLIN|POLLRDNORM
)

OPEN = rows(
    "30000000 0e000000",  # len 48, opcode 14 (OPEN)
    "04000000 00000000",  # unique 4
    *NODE1_ROOT_PID99,
    "02800000 00000000",  # flags O_RDWR|O_LARGEFILE, open_flags 0
)

GETATTR = rows(
    "38000000 03000000",  # len 56, opcode 3 (GETATTR)
    "03000000 00000000",  # unique 3
    *NODE1_ROOT_PID99,
    "01000000 00000000",  # getattr_flags FUSE_GETATTR_FH, dummy 0
    "03000000 00000000",  # fh 3
)

RELEASE = rows(
    "40000000 12000000",  # len 64, opcode 18 (RELEASE)
    "05000000 00000000",  # unique 5
    *NODE1_ROOT_PID99,
    "03000000 00000000",  # fh 3
    "02800000 00000000",  # flags O_RDWR|O_LARGEFILE, release_flags 0
    "00000000 00000000",  # lock_owner 0
)

FLUSH = rows(
    "40000000 19000000",  # len 64, opcode 25 (FLUSH)
    "06000000 00000000",  # unique 6
    *NODE1_ROOT_PID99,
    "03000000 00000000",  # fh 3
    "00000000 00000000",  # unused 0, padding 0
    "efbeadde 00000000",  # lock_owner 0xdeadbeef
)

DESTROY = rows(
    "28000000 26000000",  # len 40, opcode 38 (DESTROY)
    "08000000 00000000",  # unique 8
    *NODE1_ROOT_PID99,
)

FORGET = rows(
    "30000000 02000000",  # len 48, opcode 2 (FORGET)
    "09000000 00000000",  # unique 9
    *NODE1_ROOT_PID99,
    "01000000 00000000",  # nlookup 1
)

BATCH_FORGET = rows(
    "40000000 2a000000",  # len 64, opcode 42 (BATCH_FORGET)
    "0a000000 00000000",  # unique 10
    *NODE1_ROOT_PID99,
    "01000000 00000000",  # count 1, dummy 0
    "01000000 00000000",  # [0] nodeid 1
    "02000000 00000000",  # [0] nlookup 2
)

INTERRUPT = rows(
    "30000000 24000000",  # len 48, opcode 36 (INTERRUPT)
    "0b000000 00000000",  # unique 11
    *NODE1_ROOT_PID99,
    "34120000 00000000",  # unique of the interrupted request: 0x1234
)

LOOKUP = rows(
    "2f000000 01000000",  # len 47, opcode 1 (LOOKUP)
    "0c000000 00000000",  # unique 12
    *NODE1_ROOT_PID99,
    "6e65746d 617000",    # name "netmap\0" (7 bytes)
)

FIXTURES = {
    "INIT": INIT_7_45, "IOCTL": IOCTL, "POLL": POLL, "OPEN": OPEN, "GETATTR": GETATTR,
    "RELEASE": RELEASE, "FLUSH": FLUSH, "DESTROY": DESTROY, "FORGET": FORGET,
    "BATCH_FORGET": BATCH_FORGET, "INTERRUPT": INTERRUPT,
}


@pytest.fixture
def buffer():
    return rq.RequestBuffer(4096)


def load(buffer: rq.RequestBuffer, wire: bytes, declared_len: int | None = None) -> int:
    """Put ``wire`` in the buffer as a read would; optionally rewrite header.len."""
    buffer.data[:len(wire)] = wire
    if declared_len is not None:
        buffer.header.len = declared_len
    return len(wire)


def parse(buffer, wire, declared_len=None):
    return rq.parse(buffer, load(buffer, wire, declared_len))


def header_of(wire: bytes):
    """The fixture's fuse_in_header, decoded through the declared struct."""
    header = ffi.new("struct fuse_in_header *")
    ffi.memmove(header, wire, ffi.sizeof(header[0]))
    return header


# ---- each opcode ------------------------------------------------------------

def test_fixture_lengths_match_their_headers():
    for name, wire in FIXTURES.items():
        assert header_of(wire).len == len(wire), name


def test_init_7_45(buffer):
    req = parse(buffer, INIT_7_45)
    assert isinstance(req, rq.Init)
    assert (req.unique, req.arg.major, req.arg.minor) == (2, 7, 45)
    assert (req.arg.max_readahead, req.arg.flags, req.arg.flags2) == (0x20000, 0x73FFFFFB, 0x5FD)
    flags = InitFlag.from_words(req.arg.flags, req.arg.flags2)
    assert InitFlag.INIT_EXT in flags and InitFlag.PASSTHROUGH in flags


def test_init_from_an_older_kernel_is_zero_filled(buffer):
    buffer.data[:len(INIT_7_45)] = INIT_7_45  # leave stale bytes where flags2 would be
    req = parse(buffer, INIT_7_23)
    assert (req.arg.major, req.arg.minor, req.arg.flags) == (7, 23, 0x01FFFFFB)
    assert req.arg.flags2 == 0 and list(req.arg.unused) == [0] * 11


def test_init_is_a_copy(buffer):
    req = parse(buffer, INIT_7_45)
    buffer.data[:] = bytes(len(buffer))
    assert req.arg.minor == 45


def test_ioctl(buffer):
    req = parse(buffer, IOCTL)
    assert isinstance(req, rq.Ioctl)
    h, a = req.header, req.arg
    assert (h.unique, h.nodeid, h.uid, h.gid, h.pid) == (0x1234, 1, 1000, 1000, 4321)
    assert (a.fh, a.flags, a.cmd, a.arg, a.in_size, a.out_size) == (3, 0, 0xC0086997, 0x7FFD12345678, 8, 8)
    assert req.data() == bytes(range(1, 9))


def test_ioctl_data_is_a_copy(buffer):
    req = parse(buffer, IOCTL)
    data = req.data()
    buffer.data[:] = bytes(len(buffer))
    assert data == bytes(range(1, 9))


def test_ioctl_without_data(buffer):
    req = parse(buffer, IOCTL_NO_DATA)
    assert (req.arg.cmd, req.arg.in_size, req.arg.out_size) == (0x6994, 0, 0)
    assert req.data() == b""


def test_poll(buffer):
    req = parse(buffer, POLL)
    a = req.arg
    assert (a.fh, a.kh, a.flags, a.events) == (3, 0xFFFF888812345678, 1, 0x41)


def test_open(buffer):
    req = parse(buffer, OPEN)
    assert isinstance(req, rq.Open) and req.arg.flags == 0o100002 and req.header.pid == 99


def test_getattr(buffer):
    req = parse(buffer, GETATTR)
    assert (req.arg.getattr_flags, req.arg.fh) == (1, 3)


def test_release(buffer):
    req = parse(buffer, RELEASE)
    assert (req.arg.fh, req.arg.flags, req.arg.release_flags) == (3, 0o100002, 0)


def test_flush(buffer):
    req = parse(buffer, FLUSH)
    assert (req.arg.fh, req.arg.lock_owner) == (3, 0xDEADBEEF)


def test_destroy(buffer):
    req = parse(buffer, DESTROY)
    assert isinstance(req, rq.Destroy) and req.unique == 8


def test_forget(buffer):
    assert parse(buffer, FORGET).arg.nlookup == 1


def test_batch_forget(buffer):
    assert parse(buffer, BATCH_FORGET).arg.count == 1


def test_interrupt(buffer):
    assert parse(buffer, INTERRUPT).arg.unique == 0x1234


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_str_is_one_line(buffer, name):
    text = str(parse(buffer, FIXTURES[name]))
    assert "\n" not in text
    assert text.startswith(f"FUSE({header_of(FIXTURES[name]).unique}) {name}")


def test_ioctl_str(buffer):
    assert str(parse(buffer, IOCTL)) == \
        "FUSE(4660) IOCTL fh=3 cmd=0xc0086997 arg=0x7ffd12345678 in=8 out=8 pid=4321 uid=1000"


# ---- errors -------------------------------------------------------------------

def test_unknown_opcode(buffer):
    with pytest.raises(rq.UnknownOpcode) as e:
        parse(buffer, LOOKUP)
    assert (e.value.unique, e.value.opcode, e.value.errno) == (12, Opcode.LOOKUP, errno.ENOSYS)
    assert "LOOKUP" in str(e.value)


def test_opcode_unknown_even_by_name(buffer):
    n = load(buffer, DESTROY)
    buffer.header.opcode = 999
    with pytest.raises(rq.UnknownOpcode, match="opcode 999"):
        rq.parse(buffer, n)


@pytest.mark.parametrize("n", range(0, 40))
def test_short_header(buffer, n):
    with pytest.raises(rq.ShortHeader) as e:
        parse(buffer, IOCTL[:n])
    assert e.value.unique is None  # nothing can be answered


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_short_read(buffer, name):
    """Fewer bytes than header.len says: the header is trusted for nothing else."""
    wire = FIXTURES[name]
    for n in range(40, len(wire)):
        with pytest.raises(rq.ShortRead) as e:
            parse(buffer, wire[:n])
        assert e.value.errno == errno.EIO and e.value.unique == header_of(wire).unique


@pytest.mark.parametrize("name", ["IOCTL", "POLL", "OPEN", "GETATTR", "RELEASE", "FLUSH", "FORGET",
                                  "BATCH_FORGET", "INTERRUPT"])
def test_truncated(buffer, name):
    """header.len agrees with the read, but the argument does not fit in it."""
    wire = FIXTURES[name]
    for n in range(40, len(wire)):
        with pytest.raises(rq.Truncated) as e:
            parse(buffer, wire[:n], declared_len=n)
        assert e.value.errno == errno.EIO


def test_truncated_init(buffer):
    for n in range(40, 48):  # less than major and minor
        with pytest.raises(rq.Truncated):
            parse(buffer, INIT_7_45[:n], declared_len=n)
    for n in range(48, len(INIT_7_45)):  # anything from major and minor on parses
        assert parse(buffer, INIT_7_45[:n], declared_len=n).arg.minor == 45


# ---- the cursor ------------------------------------------------------------

def test_cursor_fetch_and_rest(buffer):
    n = load(buffer, IOCTL)
    cursor = rq.Cursor(buffer, 0, n)
    header = cursor.fetch("struct fuse_in_header")
    arg = cursor.fetch("struct fuse_ioctl_in")
    assert (header.opcode, arg.cmd, cursor.remaining) == (Opcode.IOCTL, 0xC0086997, 8)
    assert bytes(cursor.rest()) == bytes(range(1, 9))
    assert cursor.remaining == 0 and cursor.fetch("uint32_t") is None


def test_cursor_returns_views(buffer):
    n = load(buffer, POLL)
    arg = rq.Cursor(buffer, 40, n).fetch("struct fuse_poll_in")
    buffer.data[40] = 9  # the next read overwrites the buffer: the view sees it
    assert arg.fh == 9


def test_cursor_short_returns_none(buffer):
    load(buffer, POLL)
    cursor = rq.Cursor(buffer, 40, 63)
    assert cursor.fetch("struct fuse_poll_in") is None
    assert cursor.offset == 40  # nothing consumed


def test_misaligned_fetch_is_a_bug(buffer):
    with pytest.raises(AssertionError):
        rq.Cursor(buffer, 1, 64).fetch("struct fuse_poll_in")
