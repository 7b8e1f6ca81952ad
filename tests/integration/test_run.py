"""Issue: running real programs. `nmfuse run -- COMMAND` leaves no mount,
no interface and no process behind: after success, failure and Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import ROOT, client


def _fuse_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if " - fuse.nmfuse " in line]


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _processes(argv_start: str) -> list[int]:
    """Processes whose argv begins with ``argv_start`` (NUL-separated)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().startswith(argv_start.encode()):
                        found.append(int(pid))
            except OSError:
                pass
    return found


def _run(tmp_path, *command, tap=None, **kw):
    args = [sys.executable, "-m", "nmfuse", "run", "--path", str(tmp_path / "netmap")]
    if tap:
        args += ["--tap", tap]
    return subprocess.Popen(args + ["--", *command], cwd=ROOT, **kw)


@pytest.fixture
def clean_before():
    before = (_fuse_mounts(), _links())
    yield before
    # only what appeared counts: other tests' lazily detached mounts may go meanwhile
    assert not set(_fuse_mounts()) - set(before[0]), "no mount left behind"
    assert not _links() - before[1], "no interface left behind"


def test_one_liner_passes_traffic_and_the_exit_status(tmp_path, clean_before):
    script = (f"{client('nm-recv')} -i 'netmap:one}}1' -n 200000 -c & sleep 0.3; "
              f"{client('nm-send')} -i 'netmap:one{{1' -n 200000 || exit 9; wait $! || exit 8; "
              f"ip link show runtap0 >/dev/null || exit 7; exit 3")
    proc = _run(tmp_path, "sh", "-c", script, tap="runtap0")
    assert proc.wait(timeout=120) == 3
    assert not (tmp_path / "netmap").exists()


def test_failing_command(tmp_path, clean_before):
    assert _run(tmp_path, "false").wait(timeout=60) == 1
    assert _run(tmp_path, "/nonexistent/program").wait(timeout=60) == 127


def test_ctrl_c_reaches_the_program_and_everything_goes(tmp_path, clean_before):
    marker = f"{time.time_ns() % 1000000}.5"
    proc = _run(tmp_path, "sleep", marker, tap="runtap1")
    deadline = time.monotonic() + 30
    while not _processes(f"sleep\0{marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes(f"sleep\0{marker}"), "the program started"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 128 + signal.SIGINT
    assert not _processes(f"sleep\0{marker}"), "no process left behind"


def test_the_device_is_invisible_outside(tmp_path, clean_before):
    path = tmp_path / "netmap"
    proc = _run(tmp_path, "sh", "-c", f"test -e {path} && grep -q ' {path} ' /proc/self/mountinfo")
    assert proc.wait(timeout=60) == 0, "inside: mounted"
    assert not any(str(path) in line for line in _fuse_mounts())
