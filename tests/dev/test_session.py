"""nmfuse.dev.session on a real mount: a small echo device served by
``Session.serve`` in a thread, driven by this process and by child
processes through open, ioctl, poll, mmap and close.  Every test runs with
each transport: one /dev/fuse reader, three cloned readers, and FUSE over
io_uring (one pinned queue per CPU beside the /dev/fuse reader).

Every client fd of this process is closed before the fixture's shutdown or
fails harmlessly after it: a process that exits while holding a file its
own request thread serves would wait on itself.
"""

import ast
import errno
import fcntl
import itertools
import logging
import mmap
import os
import select
import stat
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest

from nmfuse.dev import AlreadyServed, BadMountPoint, Caller, FuseChannel, Session

pytestmark = pytest.mark.needs_fuse

BACKING_SIZE = 1 << 20
MODE, UID, GID = 0o640, 1234, 5678


def _iowr(kind: str, number: int, size: int) -> int:
    return 3 << 30 | size << 16 | ord(kind) << 8 | number


ECHO = _iowr("i", 0x97, 88)        # 0xc0586997: answers the bytes inverted
ECHO_EINVAL = _iowr("i", 0x98, 88)  # answers b"E" * 88 with EINVAL
BOOM = _iowr("i", 0x99, 88)         # the handler raises
NOT_A_COMMAND = 3 << 30 | 88 << 16 | ord("z") << 8 | 1
DISCONNECTED = (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO)


class EchoDevice:
    """A device handler that records what it is asked."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fhs = itertools.count(1)
        self.opened: list[tuple[int, Caller]] = []
        self.released: list[int] = []
        self.kh: int | None = None
        self.ready = 0  # revents poll reports
        self.refuse_open: int | None = None

    def open(self, caller, flags):
        if self.refuse_open:
            raise OSError(self.refuse_open, "refused")
        with self.lock:
            fh = next(self.fhs)
            self.opened.append((fh, caller))
        return fh

    def release(self, fh):
        with self.lock:
            self.released.append(fh)

    def ioctl(self, caller, fh, cmd, arg, data, out_size):
        if cmd == ECHO:
            return 0, bytes(b ^ 0xFF for b in data)
        if cmd == ECHO_EINVAL:
            return errno.EINVAL, b"E" * out_size
        if cmd == BOOM:
            raise RuntimeError("a bug in the device")
        return errno.ENOTTY, b""

    def poll(self, caller, fh, events, kh):
        with self.lock:
            if kh is not None:
                self.kh = kh
            return self.ready & events


@dataclass
class Served:
    path: str
    session: Session
    device: EchoDevice
    backing: int
    thread: threading.Thread


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass  # after shutdown, FLUSH fails: that is the point


# The Session options of the transport the running test is parametrized with.
TRANSPORT: dict = {}


@pytest.fixture(autouse=True, params=["one-reader", "cloned-readers", "io_uring"])
def transport(request):
    if request.param == "io_uring":
        request.getfixturevalue("uring_enabled")
    options = {"one-reader": {}, "cloned-readers": {"workers": 3}, "io_uring": {"uring": True}}
    TRANSPORT.clear()
    TRANSPORT.update(options[request.param])
    yield request.param
    TRANSPORT.clear()


def serve(path: str, device=None, channel=None) -> Served:
    backing = os.memfd_create("nmfuse-test", os.MFD_CLOEXEC)
    os.ftruncate(backing, BACKING_SIZE)
    device = device or EchoDevice()
    session = Session(channel or FuseChannel(), device, mode=MODE, uid=UID, gid=GID, backing_fd=backing,
                      **TRANSPORT)
    try:
        session.start(path)
    except BaseException:
        os.close(backing)
        raise
    thread = threading.Thread(target=session.serve, name="test-requests", daemon=True)
    thread.start()
    return Served(path, session, device, backing, thread)


def stop(served: Served) -> None:
    served.session.shutdown()
    served.thread.join(10)
    assert not served.thread.is_alive(), "serve() returned after shutdown()"
    os.close(served.backing)


@pytest.fixture
def served(tmp_path):
    s = serve(str(tmp_path / "netmap"))
    try:
        yield s
    finally:
        stop(s)


def child(tmp_path, source: str) -> subprocess.Popen:
    """A client process running ``source``; it prints "ready" when set up."""
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(source))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise AssertionError(f"client did not start: {line!r} {proc.stderr.read()}")
    return proc


# ---- attributes ---------------------------------------------------------------

def test_stat_shows_a_regular_file(served):
    before = os.stat(served.path)  # no open yet: GETATTR before any OPEN
    assert stat.S_ISREG(before.st_mode) and stat.S_IMODE(before.st_mode) == MODE
    assert (before.st_uid, before.st_gid, before.st_nlink, before.st_size) == (UID, GID, 1, BACKING_SIZE)
    fd = os.open(served.path, os.O_RDWR)
    try:
        fcntl.ioctl(fd, ECHO, bytearray(88))
        after = os.fstat(fd)  # and after: the file never turns bad
        assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, UID, GID)
        fcntl.ioctl(fd, ECHO, bytearray(88))
    finally:
        os.close(fd)
    assert served.session.statistics().requests["GETATTR"] >= 1


# ---- ioctl -----------------------------------------------------------------

def test_ioctl_returns_data(served):
    fd = os.open(served.path, os.O_RDWR)
    try:
        buf = bytearray(range(88))
        assert fcntl.ioctl(fd, ECHO, buf) == 0
        assert buf == bytes(b ^ 0xFF for b in range(88))
    finally:
        os.close(fd)


def test_ioctl_error_comes_with_data(served):
    fd = os.open(served.path, os.O_RDWR)
    try:
        buf = bytearray(88)
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, ECHO_EINVAL, buf)
        assert e.value.errno == errno.EINVAL
        assert buf == b"E" * 88  # copied back before the error
    finally:
        os.close(fd)


def test_unknown_command_is_enotty(served):
    fd = os.open(served.path, os.O_RDWR)
    try:
        buf = bytearray(b"untouched".ljust(88, b"."))
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, NOT_A_COMMAND, buf)
        assert e.value.errno == errno.ENOTTY
        assert buf == b"untouched".ljust(88, b".")  # no bytes sent back: the caller's stay
    finally:
        os.close(fd)


def test_handler_exception_is_eio_and_serving_goes_on(served, caplog):
    fd = os.open(served.path, os.O_RDWR)
    try:
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, BOOM, bytearray(88))
        assert e.value.errno == errno.EIO
        assert fcntl.ioctl(fd, ECHO, bytearray(88)) == 0
    finally:
        os.close(fd)
    assert served.session.statistics().handler_exceptions == 1
    assert "a bug in the device" in caplog.text


def test_open_refused_with_the_handlers_errno(served):
    served.device.refuse_open = errno.EBUSY
    with pytest.raises(OSError) as e:
        os.open(served.path, os.O_RDWR)
    assert e.value.errno == errno.EBUSY
    served.device.refuse_open = None
    os.close(os.open(served.path, os.O_RDWR))


def test_other_operations_are_not_served(served):
    with pytest.raises(OSError) as e:
        os.getxattr(served.path, "user.netmap")
    assert e.value.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENODATA)
    assert served.session.statistics().parse_errors >= 1


# ---- poll ------------------------------------------------------------------

def test_notify_poll_wakes_a_poller(served):
    fd = os.open(served.path, os.O_RDWR)
    try:
        result = []
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        waiter = threading.Thread(target=lambda: result.append(poller.poll(10_000)))
        waiter.start()
        wait_for(lambda: served.device.kh is not None)
        time.sleep(0.05)
        assert waiter.is_alive() and not result  # nothing ready yet: it waits
        with served.device.lock:
            served.device.ready = select.POLLIN
        served.session.notify_poll(served.device.kh)  # from this thread, not the request thread
        waiter.join(10)
        assert result == [[(fd, select.POLLIN)]]
        assert served.session.statistics().notifications == 1
    finally:
        os.close(fd)


# ---- mmap through passthrough ----------------------------------------------------

def test_mmap_is_coherent_with_the_backing_file(served):
    fd = os.open(served.path, os.O_RDWR)
    try:
        with mmap.mmap(fd, BACKING_SIZE, mmap.MAP_SHARED) as m:
            m[4096:4101] = b"hello"
            assert os.pread(served.backing, 5, 4096) == b"hello"
            os.pwrite(served.backing, b"world", 8192)
            assert m[8192:8197] == b"world"
    finally:
        os.close(fd)


def test_two_opens_share_the_backing_file(served):
    a = os.open(served.path, os.O_RDWR)
    b = os.open(served.path, os.O_RDWR)
    try:
        with mmap.mmap(a, BACKING_SIZE) as ma, mmap.mmap(b, BACKING_SIZE) as mb:
            ma[100:103] = b"abc"
            assert mb[100:103] == b"abc"
        fhs = [fh for fh, _ in served.device.opened]
        assert len(fhs) == 2 and len(set(fhs)) == 2
        assert all(caller.pid == threading.get_native_id() for _, caller in served.device.opened)
    finally:
        os.close(a)
        os.close(b)


# ---- release -------------------------------------------------------------------

def test_release_on_close(served):
    fd = os.open(served.path, os.O_RDWR)
    fh, _ = served.device.opened[-1]
    assert fh not in served.device.released
    os.close(fd)
    wait_for(lambda: fh in served.device.released)


def test_release_when_the_client_is_killed(served, tmp_path):
    proc = child(tmp_path, f"""
        import os, time
        fd = os.open({served.path!r}, os.O_RDWR)
        print("ready", flush=True)
        time.sleep(60)
    """)
    try:
        fh = next(fh for fh, caller in served.device.opened if caller.pid == proc.pid)
        assert fh not in served.device.released
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: fh in served.device.released)


# ---- shutdown ------------------------------------------------------------------

CLIENT_AFTER_SHUTDOWN = """
    import fcntl, os, select, sys
    fd = os.open({path!r}, os.O_RDWR)
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        fcntl.ioctl(fd, {cmd}, bytearray(88))
        print("ioctl 0")
    except OSError as e:
        print("ioctl", e.errno)
    p = select.poll()
    p.register(fd, select.POLLIN)
    print("poll", p.poll(5000))
"""


def _check_client_gets_errors(proc):
    out, err = proc.communicate("go\n", timeout=20)
    ioctl_line, poll_line = out.splitlines()
    assert int(ioctl_line.split()[1]) in DISCONNECTED, out + err
    events = ast.literal_eval(poll_line.split(" ", 1)[1])
    assert events and events[0][1] & select.POLLERR, out  # woken with an error, not a timeout


def test_shutdown_gives_clients_errors_not_a_hang(tmp_path):
    s = serve(str(tmp_path / "netmap"))
    proc = child(tmp_path, CLIENT_AFTER_SHUTDOWN.format(path=s.path, cmd=ECHO))
    try:
        stop(s)  # shutdown() and serve() returned, with the client still holding the file
        assert not os.path.exists(s.path)
        _check_client_gets_errors(proc)
    finally:
        proc.kill()
        proc.wait()


def test_shutdown_without_fusectl_still_ends_the_connection(tmp_path, caplog):
    """Fallback: the /dev/fuse fd is retired; the connection ends at the
    client's next request instead of at once, and nothing hangs."""
    caplog.set_level(logging.INFO, logger="nmfuse.dev")
    s = serve(str(tmp_path / "netmap"), channel=FuseChannel(fusectl=str(tmp_path / "no-fusectl")))
    proc = child(tmp_path, CLIENT_AFTER_SHUTDOWN.format(path=s.path, cmd=ECHO))
    try:
        s.session.shutdown()
        _check_client_gets_errors(proc)
        s.thread.join(10)
        assert not s.thread.is_alive()
        assert "fd retired" in caplog.text
    finally:
        proc.kill()
        proc.wait()
        stop(s)


def test_a_blocked_poller_wakes_at_shutdown(tmp_path):
    s = serve(str(tmp_path / "netmap"))
    proc = child(tmp_path, f"""
        import os, select
        fd = os.open({s.path!r}, os.O_RDWR)
        p = select.poll()
        p.register(fd, select.POLLIN)
        print("ready", flush=True)
        print(p.poll(20000), flush=True)
    """)
    try:
        wait_for(lambda: s.device.kh is not None)
        stop(s)
        out, _ = proc.communicate(timeout=20)
        assert ast.literal_eval(out)[0][1] & select.POLLERR
    finally:
        proc.kill()
        proc.wait()


def test_shutdown_is_idempotent(served):
    served.session.shutdown()
    served.session.shutdown()


# ---- the mount point -------------------------------------------------------------

def test_placeholder_is_removed_after_unmount(tmp_path):
    path = str(tmp_path / "netmap")
    s = serve(path)
    assert os.path.exists(path)
    stop(s)
    assert not os.path.exists(path)


def test_an_existing_file_is_mounted_over_and_kept(tmp_path):
    path = tmp_path / "netmap"
    path.write_bytes(b"underneath")
    os.chmod(path, 0o644)
    s = serve(str(path))
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == MODE
    finally:
        stop(s)
    assert path.read_bytes() == b"underneath"


def test_a_served_path_is_refused(served):
    backing = os.memfd_create("nmfuse-test", os.MFD_CLOEXEC)
    try:
        second = Session(FuseChannel(), EchoDevice(), backing_fd=backing)
        with pytest.raises(AlreadyServed, match="already served"):
            second.start(served.path)
    finally:
        os.close(backing)
    fd = os.open(served.path, os.O_RDWR)  # the first mount is untouched
    os.close(fd)


def test_a_directory_is_refused(tmp_path):
    backing = os.memfd_create("nmfuse-test", os.MFD_CLOEXEC)
    try:
        with pytest.raises(BadMountPoint, match="directory"):
            Session(FuseChannel(), EchoDevice(), backing_fd=backing).start(str(tmp_path))
    finally:
        os.close(backing)


def test_statistics(served):
    fd = os.open(served.path, os.O_RDWR)
    for _ in range(3):
        fcntl.ioctl(fd, ECHO, bytearray(88))
    with pytest.raises(OSError):
        fcntl.ioctl(fd, ECHO_EINVAL, bytearray(88))
    os.close(fd)
    wait_for(lambda: served.device.released)
    stats = served.session.statistics()
    assert stats.requests["INIT"] == 1 and stats.requests["OPEN"] == 1
    assert stats.requests["IOCTL"] == 4 and stats.requests["RELEASE"] == 1
    assert stats.errors == 1
    with pytest.raises(TypeError):
        stats.requests["IOCTL"] = 0  # a snapshot, read-only
