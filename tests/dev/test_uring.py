"""FUSE over io_uring (nmfuse.dev.uring) on a real mount: requests are
served by the queue of the CPU their caller runs on, and every way the
rings can be refused leaves /dev/fuse serving, with one log line."""

import logging
import os
import threading

import pytest

from nmfuse.dev import uring
from tests.conftest import uring_parameter
from tests.dev.test_session import ECHO, TRANSPORT, serve, stop, wait_for

pytestmark = pytest.mark.needs_fuse


def _echo(path: str) -> bytes:
    import fcntl
    fd = os.open(path, os.O_RDWR)
    try:
        buf = bytearray(range(88))
        fcntl.ioctl(fd, ECHO, buf)
        return bytes(buf)
    finally:
        os.close(fd)


def _pinned_echoes(path: str, cpu: int, n: int) -> None:
    """n echo ioctls from a thread pinned to ``cpu``."""
    def run():
        os.sched_setaffinity(0, {cpu})
        for _ in range(n):
            assert _echo(path) == bytes(b ^ 0xFF for b in range(88))
    t = threading.Thread(target=run)
    t.start()
    t.join(30)


def test_each_cpu_is_served_by_its_own_queue(tmp_path, uring_enabled, monkeypatch):
    monkeypatch.setitem(TRANSPORT, "uring", True)
    s = serve(str(tmp_path / "netmap"))
    try:
        # serve() sets the queues up in its own thread: wait for them
        wait_for(lambda: s.session.statistics().workers == len(uring.possible_cpus()) + 1)
        assert s.session.statistics().transport == "io_uring"
        cpus = sorted(os.sched_getaffinity(0))
        for cpu in cpus:
            before = dict(s.session.statistics().per_worker)
            _pinned_echoes(s.path, cpu, 50)
            after = s.session.statistics().per_worker
            moved = {name: after[name] - before.get(name, 0) for name in after}
            # open, 1 ioctl, flush (and maybe a release) per round: all on this CPU's queue
            # (its entry and its spare entry, "uringN+K", kept for deferred answers)
            here = sum(n for name, n in moved.items() if name == f"uring{cpu}" or name.startswith(f"uring{cpu}+"))
            assert here >= 150, moved
            assert sum(moved.values()) - here <= 50, moved  # RELEASE may come from elsewhere
    finally:
        stop(s)


def test_parameter_off_serves_through_dev_fuse_with_one_log_line(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="nmfuse.dev")
    monkeypatch.setitem(TRANSPORT, "uring", True)
    with uring_parameter("N"):
        s = serve(str(tmp_path / "netmap"))
    try:
        assert s.session.statistics().transport == "/dev/fuse"
        lines = [r.getMessage() for r in caplog.records if "io_uring unavailable" in r.getMessage()]
        assert len(lines) == 1 and "enable_uring is N" in lines[0], lines
        assert _echo(s.path) == bytes(b ^ 0xFF for b in range(88))
    finally:
        stop(s)


def test_a_queue_the_kernel_refuses_falls_back_to_dev_fuse(tmp_path, caplog, monkeypatch, uring_enabled):
    """INIT announced io_uring; then one queue fails: the session makes the
    kernel leave io_uring mode, and opens (which waited for the rings) go
    through /dev/fuse instead of hanging."""
    caplog.set_level(logging.INFO, logger="nmfuse.dev")
    monkeypatch.setitem(TRANSPORT, "uring", True)
    last = uring.possible_cpus()[-1]
    real_open = uring.UringQueue.open

    def failing_open(self):
        if self.cpu == last:
            raise OSError(12, "refused for the test")
        real_open(self)

    monkeypatch.setattr(uring.UringQueue, "open", failing_open)
    s = serve(str(tmp_path / "netmap"))
    try:
        wait_for(lambda: "io_uring unavailable" in caplog.text)
        stats = s.session.statistics()
        assert stats.transport == "/dev/fuse"
        assert _echo(s.path) == bytes(b ^ 0xFF for b in range(88))
        assert s.session.statistics().per_worker["fuse0"] > stats.per_worker["fuse0"]
        lines = [r.getMessage() for r in caplog.records if "io_uring unavailable" in r.getMessage()]
        assert len(lines) == 1 and f"queue {last}: refused for the test" in lines[0], lines
    finally:
        stop(s)


def test_possible_cpus_unreadable_counts_online_cpus_and_says_so(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(uring, "POSSIBLE_CPUS", tmp_path / "no-such-file")
    with caplog.at_level("WARNING", logger="nmfuse.dev"):
        cpus = uring.possible_cpus()
    assert cpus == list(range(os.cpu_count() or 1))
    assert "no-such-file" in caplog.text
