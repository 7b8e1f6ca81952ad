"""nmfuse.dev.reply: the exact bytes of every reply, written by hand
(little-endian, 8 bytes per row, fields named in the comments)."""

import errno
import select
import stat
import sys

import pytest

from nmfuse.abi.fuse import FOPEN_PASSTHROUGH, InitFlag
from nmfuse.dev import reply

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="fixtures are little-endian")


def rows(*hex_rows: str) -> bytes:
    return b"".join(bytes.fromhex(r) for r in hex_rows)


def wire(iov) -> bytes:
    """What one writev of ``iov`` puts on /dev/fuse; the header comes first and alone."""
    assert len(bytes(iov[0])) == 16
    return b"".join(bytes(part) for part in iov)


def test_error():
    assert wire(reply.reply_error(0x1234, errno.ENOENT)) == rows(
        "10000000 feffffff",  # len 16, error -ENOENT
        "34120000 00000000",  # unique 0x1234
    )


@pytest.mark.parametrize("bad", [0, -errno.EIO])
def test_error_wants_a_positive_errno(bad):
    with pytest.raises(ValueError):
        reply.reply_error(1, bad)


def test_empty():
    assert wire(reply.reply_empty(5)) == rows(
        "10000000 00000000",  # len 16, error 0
        "05000000 00000000",  # unique 5
    )


def test_open_with_passthrough():
    assert wire(reply.reply_open(4, fh=3, open_flags=FOPEN_PASSTHROUGH, backing_id=1)) == rows(
        "20000000 00000000",  # len 32, error 0
        "04000000 00000000",  # unique 4
        "03000000 00000000",  # fh 3
        "80000000 01000000",  # open_flags FOPEN_PASSTHROUGH, backing_id 1
    )


def test_ioctl():
    assert wire(reply.reply_ioctl(0x1234, 0, bytes(range(0xF1, 0xF9)), 8)) == rows(
        "28000000 00000000",  # len 40, error 0
        "34120000 00000000",  # unique 0x1234
        "00000000 00000000",  # result 0, flags 0
        "00000000 00000000",  # in_iovs 0, out_iovs 0
        "f1f2f3f4 f5f6f7f8",  # out bytes
    )


def test_ioctl_error_still_carries_the_bytes():
    assert wire(reply.reply_ioctl(0x1234, errno.EINVAL, b"EEEEEEEE", 8)) == rows(
        "28000000 00000000",  # len 40, error 0 (the request itself succeeded)
        "34120000 00000000",  # unique 0x1234
        "eaffffff 00000000",  # result -EINVAL, flags 0
        "00000000 00000000",  # in_iovs 0, out_iovs 0
        "45454545 45454545",  # out bytes, copied back before the caller sees EINVAL
    )


def test_ioctl_out_is_cut_to_out_size():
    sent = wire(reply.reply_ioctl(1, 0, bytes(range(1, 13)), 8))
    assert len(sent) == 16 + 16 + 8 and sent.endswith(bytes(range(1, 9)))


def test_ioctl_short_out_is_sent_as_is():
    """The kernel copies back only what it gets: the caller's other bytes stay."""
    assert wire(reply.reply_ioctl(1, errno.ENOTTY, b"", 88)) == rows(
        "20000000 00000000",  # len 32, error 0
        "01000000 00000000",  # unique 1
        "e7ffffff 00000000",  # result -ENOTTY, flags 0
        "00000000 00000000",  # in_iovs 0, out_iovs 0
    )


def test_poll():
    assert wire(reply.reply_poll(7, select.POLLIN | select.POLLOUT)) == rows(
        "18000000 00000000",  # len 24, error 0
        "07000000 00000000",  # unique 7
        "05000000 00000000",  # revents POLLIN|POLLOUT, padding 0
    )


def test_notify_poll():
    assert wire(reply.notify_poll(0xFFFF888812345678)) == rows(
        "18000000 01000000",  # len 24, error = FUSE_NOTIFY_POLL
        "00000000 00000000",  # unique 0: unsolicited
        "78563412 8888ffff",  # kh
    )


def test_init():
    flags = InitFlag.INIT_EXT | InitFlag.MAX_PAGES | InitFlag.PASSTHROUGH
    iov = reply.reply_init(2, minor=45, max_readahead=0x20000, flags=flags, max_write=0x8000,
                           max_pages=8, max_stack_depth=1)
    assert wire(iov) == rows(
        "50000000 00000000",  # len 80, error 0
        "02000000 00000000",  # unique 2
        "07000000 2d000000",  # major 7, minor 45
        "00000200 00004040",  # max_readahead 0x20000, flags INIT_EXT|MAX_PAGES
        "1000 0c00 00800000",  # max_background 16, congestion_threshold 12, max_write 32 KiB
        "01000000 0800 0000",  # time_gran 1, max_pages 8, map_alignment 0
        "20000000 01000000",  # flags2 PASSTHROUGH (bit 37 - 32), max_stack_depth 1
        "0000 000000000000",  # request_timeout 0, unused[0..2]
        "00000000 00000000",  # unused[3..6]
        "00000000 00000000",  # unused[7..10]
    )


def test_attr():
    attr = reply.attr_out(mode=stat.S_IFREG | 0o640, uid=1234, gid=5678, size=0x100000,
                          time_ns=1_700_000_000_500_000_000, valid_ns=86400 * 10**9)
    assert wire(reply.reply_attr(3, attr)) == rows(
        "78000000 00000000",  # len 120, error 0
        "03000000 00000000",  # unique 3
        "80510100 00000000",  # attr_valid 86400 s
        "00000000 00000000",  # attr_valid_nsec 0, dummy 0
        "01000000 00000000",  # ino 1
        "00001000 00000000",  # size 1 MiB
        "00000000 00000000",  # blocks 0
        "00f15365 00000000",  # atime 1700000000
        "00f15365 00000000",  # mtime
        "00f15365 00000000",  # ctime
        "0065cd1d 0065cd1d",  # atimensec, mtimensec 500000000
        "0065cd1d a0810000",  # ctimensec, mode S_IFREG|0640
        "01000000 d2040000",  # nlink 1, uid 1234
        "2e160000 00000000",  # gid 5678, rdev 0
        "00100000 00000000",  # blksize 4096, flags 0
    )


def test_reused_replies_make_the_same_bytes():
    reused = reply.ReusedReplies()
    cases = [
        (reused.ioctl, reply.reply_ioctl, (0x1234, errno.EINVAL, b"EEEEEEEE", 8)),
        (reused.ioctl, reply.reply_ioctl, (0x1235, 0, b"", 0)),  # shorter, after a longer one
        (reused.ioctl, reply.reply_ioctl, (0x1236, 0, bytes(12), 4)),
        (reused.poll, reply.reply_poll, (7, select.POLLIN)),
        (reused.error, reply.reply_error, (9, errno.ENOENT)),
        (reused.empty, reply.reply_empty, (10,)),  # after an error: error field back to 0
    ]
    for fast, constructor, args in cases:
        assert wire(fast(*args)) == wire(constructor(*args)), constructor.__name__
    with pytest.raises(ValueError):
        reused.error(1, 0)
