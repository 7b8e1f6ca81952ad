"""Answers out of order (nmfuse.dev.session, "Answers out of order"): an
ioctl handler returns a DeferredAnswer, the worker goes on serving, and
the answer is sent later from another thread; an INTERRUPT answers EINTR
and tells the handler, also when it came before the request was deferred;
shutdown drops what is still owed.  On a real mount with every transport
(the fixtures of test_session), plus pure tests of the bookkeeping."""

import errno
import fcntl
import os
import signal
import threading
from types import SimpleNamespace

import pytest

from nmfuse.abi.fuse import ffi
from nmfuse.dev import FuseChannel, Session
from nmfuse.dev.handler import DeferredAnswer
from nmfuse.dev.session import Worker
from tests.dev.test_session import (  # noqa: F401  (transport: every test runs on each transport)
    DISCONNECTED,
    ECHO,
    EchoDevice,
    _iowr,
    child,
    serve,
    stop,
    transport,
    wait_for,
)

LATER = _iowr("i", 0x9A, 88)  # answered when the test says so


class Later:
    """A DeferredAnswer the test completes by hand."""

    def __init__(self):
        self.deliver = None
        self.interrupted = threading.Event()
        self.ready = threading.Event()

    def when_done(self, deliver):
        self.deliver = deliver
        self.ready.set()

    def interrupt(self):
        self.interrupted.set()


class LaterDevice(EchoDevice):
    """EchoDevice whose LATER ioctls answer through a ``Later``."""

    def __init__(self):
        super().__init__()
        self.laters: list[Later] = []

    def ioctl(self, caller, fh, cmd, arg, data, out_size):
        if cmd == LATER:
            later = Later()
            with self.lock:
                self.laters.append(later)
            return later
        return super().ioctl(caller, fh, cmd, arg, data, out_size)


def test_the_protocol_accepts_a_later():
    assert isinstance(Later(), DeferredAnswer)
    assert not isinstance((0, b""), DeferredAnswer)


@pytest.fixture
def later_served(tmp_path):
    s = serve(str(tmp_path / "netmap"), LaterDevice())
    try:
        yield s
    finally:
        stop(s)


def _ioctl_in_thread(path, results, key):
    def run():
        fd = os.open(path, os.O_RDWR)
        try:
            buf = bytearray(88)
            try:
                results[key] = (fcntl.ioctl(fd, LATER, buf), bytes(buf))
            except OSError as e:
                results[key] = (e.errno, b"")
        finally:
            os.close(fd)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_a_deferred_answer_does_not_hold_the_worker_and_answers_come_out_of_order(later_served):
    dev = later_served.device
    results: dict = {}
    first = _ioctl_in_thread(later_served.path, results, "first")
    wait_for(lambda: len(dev.laters) == 1 and dev.laters[0].ready.is_set())
    second = _ioctl_in_thread(later_served.path, results, "second")
    wait_for(lambda: len(dev.laters) == 2 and dev.laters[1].ready.is_set())
    fd = os.open(later_served.path, os.O_RDWR)  # still served while two answers are owed
    try:
        assert fcntl.ioctl(fd, ECHO, bytearray(88)) == 0
    finally:
        os.close(fd)
    assert results == {}
    dev.laters[1].deliver(errno.EAGAIN, b"2" * 88)
    second.join(10)
    assert results == {"second": (errno.EAGAIN, b"")}
    dev.laters[0].deliver(0, b"1" * 88)
    first.join(10)
    assert results["first"] == (0, b"1" * 88)
    assert later_served.session.statistics().deferred == 2


CLIENT = """
    import fcntl, os, signal, sys
    class Stop(Exception):
        pass
    def on_signal(signum, frame):
        raise Stop()
    signal.signal(signal.SIGUSR1, on_signal)
    fd = os.open({path!r}, os.O_RDWR)
    print("ready", flush=True)
    try:
        fcntl.ioctl(fd, {cmd}, bytearray(88))
        print("answered", flush=True)
    except Stop:
        print("interrupted", flush=True)
    except OSError as e:
        print("error", e.errno, flush=True)
    os.close(fd)
"""


def test_an_interrupt_answers_eintr_and_tells_the_handler(later_served, tmp_path):
    dev = later_served.device
    proc = child(tmp_path, CLIENT.format(path=later_served.path, cmd=LATER))
    try:
        wait_for(lambda: dev.laters and dev.laters[0].ready.is_set())
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert out.strip() == "interrupted", out + err
    assert dev.laters[0].interrupted.wait(10)
    dev.laters[0].deliver(0, b"late")  # nobody waits: ignored
    fd = os.open(later_served.path, os.O_RDWR)
    try:
        assert fcntl.ioctl(fd, ECHO, bytearray(88)) == 0
    finally:
        os.close(fd)
    assert later_served.session.statistics().interrupted == 1


def test_shutdown_drops_what_is_owed_and_tells_the_handler(tmp_path):
    s = serve(str(tmp_path / "netmap"), LaterDevice())
    proc = child(tmp_path, CLIENT.format(path=s.path, cmd=LATER))
    try:
        wait_for(lambda: s.device.laters and s.device.laters[0].ready.is_set())
        stop(s)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    words = out.split()
    assert words[0] == "error" and int(words[1]) in DISCONNECTED, out + err
    assert s.device.laters[0].interrupted.is_set()


# ---- the bookkeeping alone ----------------------------------------------------

class Recorder:
    """A transport that keeps what is sent."""

    def __init__(self):
        self.sent = []

    def send(self, iov):
        self.sent.append(b"".join(bytes(p) for p in iov))
        return True


def _session():
    backing = os.memfd_create("nmfuse-test", os.MFD_CLOEXEC)
    channel = FuseChannel()
    session = Session(channel, LaterDevice(), backing_fd=backing)
    os.close(backing)
    return session, channel


def _out_header(raw: bytes):
    return ffi.cast("struct fuse_out_header *", ffi.from_buffer(raw))


def test_an_interrupt_that_came_first_is_applied_when_the_request_is_deferred():
    session, channel = _session()
    try:
        worker = Worker("w", Recorder())
        session._interrupt(SimpleNamespace(arg=SimpleNamespace(unique=40)), worker)
        later = Later()
        assert session._defer(worker, 40, later, 88) is None
        assert later.interrupted.is_set()
        (raw,) = worker.transport.sent
        head = _out_header(raw)
        assert head.unique == 40 and head.error == -errno.EINTR
        later.deliver(0, b"x")  # ignored
        assert len(worker.transport.sent) == 1
    finally:
        channel.close()


def test_a_deferred_answer_goes_to_the_transport_it_came_from():
    session, channel = _session()
    try:
        a, b = Worker("a", Recorder()), Worker("b", Recorder())
        la, lb = Later(), Later()
        session._defer(a, 2, la, 88)
        session._defer(b, 4, lb, 4)
        lb.deliver(0, b"12345678")
        la.deliver(errno.EBUSY, b"")
        assert [_out_header(r).unique for r in a.transport.sent] == [2]
        (rb,) = b.transport.sent
        assert _out_header(rb).unique == 4 and rb.endswith(b"1234")  # out_size bounds the bytes
        assert session.statistics().deferred == 2 and session.statistics().errors == 1
    finally:
        channel.close()


def test_a_handler_answering_with_something_else_fails_the_request():
    session, channel = _session()
    try:
        with pytest.raises(TypeError):
            session._defer(Worker("w", Recorder()), 6, object(), 88)
    finally:
        channel.close()
