"""nmfuse.dev.session without a mount: the session rules, driven through a
SOCK_SEQPACKET socket pair that behaves like /dev/fuse (one request per
read, one reply per writev).  The test plays the kernel on the other end,
with the request fixtures of test_request.py."""

import errno
import os
import socket
import sys
import threading

import pytest

from nmfuse.abi.fuse import InitFlag, NotifyCode, OpenOutFlag, ffi
from nmfuse.dev import Caller, NoPassthrough, Session
from nmfuse.dev.session import MAX_WRITE
from tests.dev.test_request import (
    BATCH_FORGET,
    DESTROY,
    FLUSH,
    FORGET,
    GETATTR,
    INIT_7_23,
    INIT_7_45,
    INTERRUPT,
    IOCTL,
    IOCTL_NO_DATA,
    LOOKUP,
    OPEN,
    POLL,
    RELEASE,
)

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="fixtures are little-endian")


class SocketChannel:
    """The part of FuseChannel a session uses, over one end of a socket pair."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.fd = sock.fileno()
        self.path = "/test/device"
        self.mounted = True
        self.notified: list[int] = []
        self.backing: list[int] = []

    def read_into(self, buf) -> int:
        return os.readv(self.fd, (buf,))  # 0 once the "kernel" end is closed

    def send(self, iov) -> bool:
        os.writev(self.fd, iov)
        return True

    def notify_poll(self, kh) -> bool:
        self.notified.append(kh)
        return True

    def backing_open(self, fd) -> int:
        self.backing.append(fd)
        return 1

    def unmount(self, detach=True):
        self.mounted = False

    def abort(self) -> bool:
        return True

    def close(self):
        self.sock.close()


class Recorder:
    """A handler that records calls and answers from ``self.answer``."""

    def __init__(self):
        self.calls = []
        self.answer = {}

    def _reply(self, name, default):
        value = self.answer.get(name, default)
        if isinstance(value, BaseException):
            raise value
        return value

    def open(self, caller, flags):
        self.calls.append(("open", caller, flags))
        return self._reply("open", 3)

    def release(self, fh):
        self.calls.append(("release", fh))
        return self._reply("release", None)

    def ioctl(self, caller, fh, cmd, arg, data, out_size):
        self.calls.append(("ioctl", caller, fh, cmd, arg, data, out_size))
        return self._reply("ioctl", (0, bytes(b ^ 0xFF for b in data)))

    def poll(self, caller, fh, events, kh):
        self.calls.append(("poll", caller, fh, events, kh))
        return self._reply("poll", 0x4)


class Kernel:
    """The test's end of the pair: writes requests, reads replies."""

    def __init__(self, sock):
        self.sock = sock
        sock.settimeout(5)

    def request(self, wire: bytes) -> None:
        self.sock.send(wire)

    def reply(self) -> tuple[int, int, bytes]:
        """(error, unique, body) of the next reply."""
        data = self.sock.recv(1 << 16)
        header = ffi.new("struct fuse_out_header *")
        ffi.memmove(header, data, ffi.sizeof(header[0]))
        assert header.len == len(data)
        return header.error, header.unique, data[ffi.sizeof(header[0]):]

    def no_reply(self) -> None:
        self.sock.settimeout(0.2)
        try:
            with pytest.raises(TimeoutError):
                self.sock.recv(1 << 16)
        finally:
            self.sock.settimeout(5)


def decode(ctype: str, body: bytes):
    out = ffi.new(ctype + " *")
    assert len(body) >= ffi.sizeof(out[0])
    ffi.memmove(out, body, ffi.sizeof(out[0]))
    return out


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    backing = os.memfd_create("rules", os.MFD_CLOEXEC)
    os.ftruncate(backing, 8192)
    handler = Recorder()
    session = Session(SocketChannel(a), handler, mode=0o640, uid=7, gid=8, backing_fd=backing)
    session.threads = []
    yield session, Kernel(b), handler
    # The "kernel" end first: serve() then reads 0 and returns.  Only then
    # may the session's end close, or a later test could reuse its fd number
    # under a still-blocked reader.
    b.close()
    for thread in session.threads:
        thread.join(5)
        assert not thread.is_alive()
    a.close()
    os.close(backing)


def started(pair):
    session, kernel, handler = pair
    kernel.request(INIT_7_45)
    session.start()
    err, unique, body = kernel.reply()
    assert (err, unique) == (0, 2)
    thread = threading.Thread(target=session.serve, daemon=True)
    thread.start()
    session.threads.append(thread)
    return session, kernel, handler, thread, body


def test_init_enables_passthrough(pair):
    session, kernel, handler, thread, body = started(pair)
    out = decode("struct fuse_init_out", body)
    flags = InitFlag.from_words(out.flags, out.flags2)
    assert (out.major, out.minor) == (7, 45)
    assert flags == InitFlag.INIT_EXT | InitFlag.PASSTHROUGH | InitFlag.MAX_PAGES
    assert (out.max_stack_depth, out.max_write, out.max_readahead) == (1, MAX_WRITE, 0x20000)
    assert session._channel.backing and session.backing_id == 1


def test_a_kernel_without_passthrough_is_refused(pair):
    session, kernel, handler = pair
    kernel.request(INIT_7_23)
    with pytest.raises(NoPassthrough, match="passthrough"):
        session.start()
    err, unique, _ = kernel.reply()
    assert (err, unique) == (-errno.EPROTO, 2)
    assert session._channel.backing == []


def test_requests_before_init_get_eio(pair):
    session, kernel, handler = pair
    kernel.request(GETATTR)
    kernel.request(FORGET)  # no reply, even now
    kernel.request(INIT_7_45)
    session.start()
    assert kernel.reply()[:2] == (-errno.EIO, 3)
    assert kernel.reply()[:2] == (0, 2)
    assert handler.calls == []


def test_getattr_answers_a_regular_file(pair):
    session, kernel, handler, thread, _ = started(pair)
    kernel.request(GETATTR)
    err, unique, body = kernel.reply()
    attr = decode("struct fuse_attr_out", body)
    assert (err, unique) == (0, 3)
    assert (attr.attr.mode, attr.attr.uid, attr.attr.gid, attr.attr.nlink) == (0o100640, 7, 8, 1)
    assert attr.attr.size == 8192 and attr.attr_valid >= 3600


def test_open_answers_passthrough_to_the_backing_file(pair):
    session, kernel, handler, thread, _ = started(pair)
    for _ in range(2):
        kernel.request(OPEN)
        err, unique, body = kernel.reply()
        out = decode("struct fuse_open_out", body)
        assert (err, unique, out.fh, out.open_flags, out.backing_id) == (0, 4, 3, OpenOutFlag.PASSTHROUGH, 1)
    assert handler.calls[0] == ("open", Caller(99, 0, 0), 0o100002)


def test_open_refused(pair):
    session, kernel, handler, thread, _ = started(pair)
    handler.answer["open"] = OSError(errno.EBUSY, "busy")
    kernel.request(OPEN)
    assert kernel.reply()[:2] == (-errno.EBUSY, 4)


def test_open_never_answers_enosys(pair):
    """ENOSYS to OPEN would make the kernel stop asking: later opens would bypass us."""
    session, kernel, handler, thread, _ = started(pair)
    handler.answer["open"] = OSError(errno.ENOSYS, "no")
    kernel.request(OPEN)
    assert kernel.reply()[0] == -errno.EIO


def test_ioctl(pair):
    session, kernel, handler, thread, _ = started(pair)
    kernel.request(IOCTL)
    err, unique, body = kernel.reply()
    out = decode("struct fuse_ioctl_out", body)
    assert (err, unique, out.result) == (0, 0x1234, 0)
    assert body[ffi.sizeof("struct fuse_ioctl_out"):] == bytes(b ^ 0xFF for b in range(1, 9))
    assert handler.calls[0] == ("ioctl", Caller(4321, 1000, 1000), 3, 0xC0086997, 0x7FFD12345678,
                                bytes(range(1, 9)), 8)


def test_ioctl_error_with_bytes(pair):
    session, kernel, handler, thread, _ = started(pair)
    handler.answer["ioctl"] = (errno.EINVAL, b"E" * 20)
    kernel.request(IOCTL)
    err, unique, body = kernel.reply()
    assert (err, decode("struct fuse_ioctl_out", body).result) == (0, -errno.EINVAL)
    assert body[ffi.sizeof("struct fuse_ioctl_out"):] == b"E" * 8  # cut to out_size
    assert session.statistics().errors == 1


@pytest.mark.parametrize("answer, expected", [
    (OSError(errno.EFAULT, "bad address"), errno.EFAULT),
    (OSError(errno.ENOSYS, "not here"), errno.ENOSYS),  # an ioctl's own result: passed on
    (RuntimeError("bug"), errno.EIO),
    ((-5, b""), errno.EIO),  # a negative errno is a handler bug
    ((0, None), errno.EIO),  # so are bytes that are not bytes
])
def test_ioctl_handler_failures(pair, answer, expected):
    session, kernel, handler, thread, _ = started(pair)
    handler.answer["ioctl"] = answer
    kernel.request(IOCTL)
    err, _, body = kernel.reply()
    assert (err, decode("struct fuse_ioctl_out", body).result) == (0, -expected)
    handler.answer.clear()
    kernel.request(IOCTL_NO_DATA)  # and the session goes on
    assert kernel.reply()[:2] == (0, 0x1235)


def test_poll(pair):
    session, kernel, handler, thread, _ = started(pair)
    kernel.request(POLL)
    err, unique, body = kernel.reply()
    assert (err, unique, decode("struct fuse_poll_out", body).revents) == (0, 7, 0x4)
    assert handler.calls[0] == ("poll", Caller(99, 0, 0), 3, 0x41, 0xFFFF888812345678)


def test_notify_poll_goes_to_the_channel(pair):
    session, kernel, handler, thread, _ = started(pair)
    session.notify_poll(42)
    assert session._channel.notified == [42]
    assert session.statistics().notifications == 1
    assert NotifyCode.POLL == 1


def test_release_and_flush(pair):
    session, kernel, handler, thread, _ = started(pair)
    kernel.request(FLUSH)
    assert kernel.reply() == (0, 6, b"")
    kernel.request(RELEASE)
    assert kernel.reply() == (0, 5, b"")
    assert handler.calls == [("release", 3)]


def test_no_reply_to_forget_and_interrupt(pair):
    session, kernel, handler, thread, _ = started(pair)
    for wire in (FORGET, BATCH_FORGET, INTERRUPT):
        kernel.request(wire)
    kernel.no_reply()
    kernel.request(GETATTR)  # still serving
    assert kernel.reply()[:2] == (0, 3)


def test_unknown_opcode_is_enosys(pair):
    session, kernel, handler, thread, _ = started(pair)
    kernel.request(LOOKUP)
    assert kernel.reply() == (-errno.ENOSYS, 12, b"")
    assert session.statistics().parse_errors == 1


def test_short_read_is_eio(pair):
    session, kernel, handler, thread, _ = started(pair)
    kernel.request(IOCTL[:60])
    assert kernel.reply() == (-errno.EIO, 0x1234, b"")


def test_destroy_ends_serve_and_later_requests_get_eio(pair):
    session, kernel, handler, thread, _ = started(pair)
    kernel.request(DESTROY)
    assert kernel.reply() == (0, 8, b"")
    thread.join(5)
    assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        session.serve()
    kernel.request(OPEN)  # answered one at a time by the session's own step
    assert session._serve_one()
    assert kernel.reply() == (-errno.EIO, 4, b"")
    assert not any(call[0] == "open" for call in handler.calls)


def test_serve_returns_when_the_connection_ends(pair):
    session, kernel, handler, thread, _ = started(pair)
    kernel.sock.close()
    thread.join(5)
    assert not thread.is_alive()


def test_serve_needs_start(pair):
    session, kernel, handler = pair
    with pytest.raises(RuntimeError, match="start"):
        session.serve()


def test_statistics_count_by_opcode(pair):
    session, kernel, handler, thread, _ = started(pair)
    for wire in (OPEN, IOCTL, IOCTL, POLL):
        kernel.request(wire)
        kernel.reply()
    stats = session.statistics()
    assert dict(stats.requests) == {"INIT": 1, "OPEN": 1, "IOCTL": 2, "POLL": 1}
    assert stats.errors == 0 and stats.handler_exceptions == 0
