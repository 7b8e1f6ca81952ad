"""Integration tests: a real `nmfuse mount` on a temporary path, driven by
the project's C clients.  They need root and /dev/fuse; where those are
truly missing they skip with the reason."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2.netns import setns

from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "clients" / "bin"


def pytest_collection_modifyitems(config, items):
    reason = missing("root", "fuse")
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.needs_fuse)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def client(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is not built: run `make clients`")
    return str(path)


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


class Mount:
    """A running `nmfuse mount PATH` daemon."""

    def __init__(self, path: str, *args: str, netns: str | None = None):
        self.path = path
        self.log = open(Path(path).parent / "daemon.log", "w+")
        # netns: the daemon serves the interfaces of that network namespace
        # (the mount stays in ours, so clients need not enter it)
        enter = (lambda: setns(netns)) if netns else None
        self.proc = subprocess.Popen([sys.executable, "-m", "nmfuse", "-v", "mount", path, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=enter)  # noqa: PLW1509 (setns before exec: no threads run then)
        deadline = time.monotonic() + 20
        while not (_mounted(path) and self.status_or_none() is not None):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nmfuse mount failed:\n{self.output()}")
            time.sleep(0.05)

    @property
    def env(self) -> dict:
        return {**os.environ, "NETMAP_DEVICE": self.path}

    def status_or_none(self):
        from nmfuse.cli import _query

        try:
            return _query(self.path)
        except OSError:
            return None

    def status(self) -> dict:
        out = subprocess.run([sys.executable, "-m", "nmfuse", "status", "--json", self.path],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def settled(self, check=None, timeout: float = 20) -> dict:
        """The status once ``check(status)`` holds (by default: no port and no
        open file left; a release is served after its client is gone), or the
        last one seen."""
        check = check or (lambda s: not s["ports"] and s["open_files"] == 0)
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if check(status) or time.monotonic() > deadline:
                return status
            time.sleep(0.1)

    def run(self, *cmd, timeout=120, check=True, **kw):
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, **kw)
        if check and res.returncode != 0:
            raise AssertionError(f"{cmd} exited {res.returncode}\n{res.stdout}\n{res.stderr}\n"
                                 f"daemon log:\n{self.output()}")
        return res

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def python_clients(mount: Mount, template: str, count: int, rounds: int, tag: str) -> list:
    """``count`` Python clients running ``template`` (formatted with the
    project's root and the device; argv: a port tag and ``rounds``), each
    past its "ready" line."""
    code = template.format(root=os.getcwd(), device=mount.path)
    procs = [subprocess.Popen([sys.executable, "-c", code, f"{tag}{i}", str(rounds)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(count)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return procs


def stop_cleanly(m: Mount) -> None:
    """SIGTERM: the daemon unmounts and exits 0."""
    code = m.stop()
    assert not _mounted(m.path), "unmounted after SIGTERM"
    assert code == 0, m.output()


def uring_served(path: str) -> Mount:
    """`nmfuse mount --uring` once its queues have registered (they do in the
    background); a fall-back to /dev/fuse fails the test."""
    m = Mount(path, "--buf-num", "32768", "--uring")
    deadline = time.monotonic() + 20
    while m.status()["workers"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    transport = m.status()["transport"]
    if transport != "io_uring":
        m.stop()  # not left mounted by a failed set-up
        pytest.fail(f"asked for io_uring, served through {transport}: {m.output()}")
    return m


@pytest.fixture
def mount(tmp_path):
    m = Mount(str(tmp_path / "netmap"), "--buf-num", "32768")
    yield m
    stop_cleanly(m)


@pytest.fixture
def uring_mount(tmp_path, uring_enabled):
    m = uring_served(str(tmp_path / "netmap"))
    yield m
    stop_cleanly(m)
