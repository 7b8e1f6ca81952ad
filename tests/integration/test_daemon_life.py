"""Issue 15: a daemon that can die at any moment.  After SIGKILL (mid-traffic,
or in the middle of start-up) the next `nmfuse mount` takes over at once
and clients work; a live daemon is refused by pid; a worker that raises
ends the daemon non-zero after unmounting; `nmfuse umount --dead` cleans
by hand; and when it is all over nothing is left at the path."""

import os
import signal
import subprocess
import sys
import time

import pytest

from nmfuse.lease import holder, lease_path
from tests.integration.conftest import Mount, _mounted, client

# `nmfuse mount` with one fault injected from outside the package: the
# request loop meets an exception of its own when a client opens the device.
WORKER_RAISES = """
import sys
from nmfuse.abi.fuse import Opcode
from nmfuse.dev import request
real = request.parse
def parse(buffer, n):
    req = real(buffer, n)
    if req.op == int(Opcode.OPEN):
        raise RuntimeError("injected failure in the request loop")
    return req
request.parse = parse
from nmfuse.cli import main
sys.exit(main(["mount", sys.argv[1]]))
"""

# `nmfuse mount` killed (SIGKILL) in the middle of start-up: after the
# mount is made, before INIT is answered.
KILLED_IN_START = """
import os, signal, sys
from nmfuse.dev.session import Session
Session._serve_until_init = lambda self: os.kill(os.getpid(), signal.SIGKILL)
from nmfuse.cli import main
sys.exit(main(["mount", sys.argv[1]]))
"""


_STARTED: list[Mount] = []


def started(m: Mount) -> Mount:
    """``m``, ended after the test whatever happens in it."""
    _STARTED.append(m)
    return m


@pytest.fixture(autouse=True)
def _end_daemons(tmp_path):
    yield
    while _STARTED:
        _STARTED.pop().stop(signal.SIGKILL)
    subprocess.run([sys.executable, "-m", "nmfuse", "umount", "--dead", str(tmp_path / "netmap")],
                   capture_output=True, check=False)


def traffic(m: Mount, tag: str, n: int = 20000) -> None:
    """Frames through a pipe, checked by the receiver."""
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{tag}}}1", "-n", str(n), "-c"], env=m.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)
    m.run(client("nm-send"), "-i", f"netmap:{tag}{{1", "-n", str(n))
    out, _ = recv.communicate(timeout=60)
    assert recv.returncode == 0, out + m.output()


def nothing_left(path: str) -> None:
    assert not _mounted(path), "no mount"
    assert not os.path.lexists(path), "no placeholder"
    assert holder(path) is None and not lease_path(path).exists(), "no lease"


def test_sigkill_then_mount_takes_over_and_clients_work(tmp_path):
    path = str(tmp_path / "netmap")
    first = started(Mount(path))
    traffic(first, "a")
    recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:b}1", "-n", "100000000"], env=first.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.3)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert recv.wait(timeout=30) != 0, "the client gets an error, no hang"
    assert _mounted(path), "a dead mount is left"
    second = started(Mount(path))  # takes over at once
    assert "detached the dead nmfuse mount" in second.output()
    assert f"removed the placeholder {path} left by pid {first.proc.pid}" in second.output()
    traffic(second, "c")
    assert second.stop() == 0, second.output()
    nothing_left(path)


def test_a_live_daemon_is_refused_by_pid(tmp_path):
    path = str(tmp_path / "netmap")
    m = started(Mount(path))
    try:
        res = subprocess.run([sys.executable, "-m", "nmfuse", "mount", path], capture_output=True, text=True,
                             timeout=60, check=False)
        assert res.returncode == 1
        assert f"already served by nmfuse pid {m.proc.pid}" in res.stderr
        res = subprocess.run([sys.executable, "-m", "nmfuse", "umount", "--dead", path], capture_output=True,
                             text=True, timeout=60, check=False)
        assert res.returncode == 1 and f"pid {m.proc.pid}" in res.stderr, "--dead leaves a live daemon alone"
        traffic(m, "d")
    finally:
        assert m.stop() == 0
    nothing_left(path)


def test_a_raising_worker_ends_the_daemon_non_zero_after_unmounting(tmp_path):
    path = str(tmp_path / "netmap")
    proc = subprocess.Popen([sys.executable, "-c", WORKER_RAISES, path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _mounted(path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _mounted(path)
    with pytest.raises(OSError):
        os.close(os.open(path, os.O_RDWR))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 70, err
    last = err.strip().splitlines()[-1]
    assert "RuntimeError: injected failure in the request loop" in last, err
    nothing_left(path)


def test_killed_in_the_middle_of_start_up(tmp_path):
    path = str(tmp_path / "netmap")
    res = subprocess.run([sys.executable, "-c", KILLED_IN_START, path], timeout=60, check=False)
    assert res.returncode == -signal.SIGKILL
    assert _mounted(path), "it left its mount (and the placeholder under it)"
    m = started(Mount(path))
    assert "removed the placeholder" in m.output()
    traffic(m, "e")
    assert m.stop() == 0
    nothing_left(path)


def test_umount_dead_cleans_by_hand(tmp_path):
    path = str(tmp_path / "netmap")
    m = started(Mount(path))
    m.stop(signal.SIGKILL)
    res = subprocess.run([sys.executable, "-m", "nmfuse", "umount", "--dead", path], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "detached the dead nmfuse mount" in res.stderr and "removed the placeholder" in res.stderr
    nothing_left(path)
    res = subprocess.run([sys.executable, "-m", "nmfuse", "umount", "--dead", path], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0 and "nothing to clean" in res.stdout


def test_sigterm_with_clients_attached(tmp_path):
    path = str(tmp_path / "netmap")
    m = started(Mount(path))
    waiting = [subprocess.Popen([client("nm-recv"), "-i", f"netmap:w{i}}}1", "-n", "100000000"], env=m.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(4)]
    time.sleep(0.5)
    assert len(m.status()["ports"]) == 4
    assert m.stop(signal.SIGTERM) == 0, m.output()  # Mount.stop waits a bounded time, then kills
    for w in waiting:
        assert w.wait(timeout=30) != 0, "each client gets an error"
    nothing_left(path)


def test_a_real_file_at_the_path_is_never_removed(tmp_path):
    """A file that was there before the daemon (say, a device node) stays,
    after a clean stop and after a SIGKILL and takeover."""
    path = tmp_path / "netmap"
    path.write_bytes(b"")
    m = started(Mount(str(path)))
    m.stop(signal.SIGKILL)
    m = started(Mount(str(path)))
    assert m.stop() == 0
    assert path.exists() and not _mounted(str(path))
