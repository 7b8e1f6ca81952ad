"""Issue: running real programs. `nmfuse run -- COMMAND` leaves no mount,
no interface and no process behind: after success, failure and Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

import pytest

from nmfuse.lease import RUN_DIR, runtime_key
from tests.integration.conftest import ROOT, Mount, _mounted, client


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


OUR_LINKS = ("runtap", "rk")  # the TAP names these tests give (other tests run beside them)


@pytest.fixture
def clean_before(tmp_path):
    def ours():
        mounts = {m for m in _fuse_mounts() if str(tmp_path) in m}
        return mounts, {link for link in _links() if link.startswith(OUR_LINKS)}
    before = ours()
    yield before
    # only what appeared counts, and only this test's: other tests run meanwhile
    after = ours()
    assert not after[0] - before[0], "no mount left behind"
    assert not after[1] - before[1], "no interface left behind"


def test_one_liner_passes_traffic_and_the_exit_status(tmp_path, clean_before):
    script = (f"{client('nm-recv')} -i 'netmap:one}}1' -n 200000 -c & sleep 0.3; "
              f"{client('nm-send')} -i 'netmap:one{{1' -n 200000 || exit 9; wait $! || exit 8; "
              f"test -e /sys/class/net/runtap0 || exit 7; exit 3")
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


def _wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_sigkill_of_run_takes_the_command_and_its_descendants(tmp_path, clean_before):
    """As `unshare --kill-child`: the program, and a daemonized grandchild,
    die with a SIGKILLed `nmfuse run`; no file, mount or TAP stays."""
    marker = f"{time.time_ns() % 1000000}"
    tap = f"rk{os.getpid() % 100000}"
    proc = _run(tmp_path, "sh", "-c", f"setsid sleep {marker}.1 & sleep {marker}.2", tap=tap)
    try:
        assert _wait_for(lambda: _processes(f"sleep\0{marker}.1") and _processes(f"sleep\0{marker}.2"))
        assert not os.path.lexists(tmp_path / "netmap"), "the placeholder is not on the host"
    finally:
        proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert _wait_for(lambda: not _processes(f"sleep\0{marker}")), "no process left behind"
    assert _wait_for(lambda: tap not in _links()), "the TAP went with its daemon"
    assert not os.path.lexists(tmp_path / "netmap")
    stale = RUN_DIR / f"{runtime_key(str(tmp_path / 'netmap'))}.run{proc.pid}.sock"
    assert stale.exists(), "the one trace: its status socket in /run/nmfuse"
    assert _run(tmp_path, "true").wait(timeout=60) == 0
    assert not stale.exists(), "removed by the next start"


def test_run_never_writes_the_placeholder_on_the_host(tmp_path, clean_before):
    path = tmp_path / "netmap"
    marker = f"{time.time_ns() % 1000000}.3"
    proc = _run(tmp_path, "sh", "-c", f"test -e {path} && ls {tmp_path} > {tmp_path}/inside && sleep {marker}")
    try:
        assert _wait_for(lambda: _processes(f"sleep\0{marker}"))
        assert not os.path.lexists(path), "outside: no file while it runs"
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not os.path.lexists(path)
    assert not (tmp_path / "inside").exists(), "the directory was private to the run: its writes stayed there"


def test_run_over_a_dead_mount(tmp_path, clean_before):
    """A dead daemon's mount at the path does not stop `nmfuse run` (it
    detaches its private copy); the host's leftovers are the host's to clean."""
    path = str(tmp_path / "netmap")
    Mount(path).stop(signal.SIGKILL)
    assert _mounted(path)
    try:
        assert _run(tmp_path, "sh", "-c", f"exec 3<>{path}").wait(timeout=60) == 0
    finally:
        subprocess.run([sys.executable, "-m", "nmfuse", "umount", "--dead", path], check=True,
                       capture_output=True)
    assert not _mounted(path)


def test_a_failed_start_never_runs_the_program(tmp_path, clean_before):
    marker = tmp_path / "ran"
    proc = _run(tmp_path / "missing", "touch", str(marker), stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "its directory does not exist" in err
    assert not marker.exists()


def test_in_dev_the_device_appears_inside_only(tmp_path, clean_before):
    """The placeholder in /dev itself: inside, /dev keeps its nodes and
    sub-mounts beside the device; outside, /dev never sees the name."""
    name = f"/dev/nmfuse-test-{os.getpid()}-{time.time_ns() % 100000}"
    script = (f"test -e {name} && test -c /dev/null && test -d /dev/pts && "
              f"grep -q ' /dev/pts ' /proc/self/mountinfo && echo x > /dev/null")
    proc = subprocess.Popen([sys.executable, "-m", "nmfuse", "run", "--path", name, "--", "sh", "-c", script],
                            cwd=ROOT)
    assert proc.wait(timeout=60) == 0
    assert not os.path.lexists(name)
    assert not any(f" {name} " in m for m in _fuse_mounts())


# In a private mount namespace, as `nmfuse run` calls it: the overlay step
# refused by the kernel (injected), then the same without the injection.
OVERLAY_REFUSED = """
import errno, sys
from nmfuse import runner
runner.enter_private_namespaces()
real = runner._libc
class NoOverlay:  # a kernel without overlayfs
    def __getattr__(self, name):
        return getattr(real, name)
    def mount(self, source, target, fstype, flags, data):
        if fstype == b"overlay":
            runner._ffi.errno = errno.ENODEV
            return -1
        return real.mount(source, target, fstype, flags, data)
runner._libc = NoOverlay()
path = sys.argv[1]
parent = path.rsplit("/", 1)[0]
mounted = lambda: [l for l in open("/proc/self/mountinfo") if l.split()[4] == parent]
assert runner.private_parent(path) is False
assert not mounted(), "what was mounted is undone"
runner._libc = real
assert runner.private_parent(path) is True and len(mounted()) == 2
print("ok")
"""


def test_private_parent_falls_back_when_the_kernel_refuses(tmp_path):
    res = subprocess.run([sys.executable, "-c", OVERLAY_REFUSED, str(tmp_path / "netmap")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.stdout.strip() == "ok", res.stderr
    assert "no private overlay (overlay on " in res.stderr and "No such device" in res.stderr


# `nmfuse run` where the kernel refuses a pid namespace (injected): the
# program still runs, and still dies when `nmfuse run` is SIGKILLed.
NO_PID_NAMESPACE = """
import errno, sys
from nmfuse import runner
real = runner._libc
class NoPidNamespace:
    def __getattr__(self, name):
        return getattr(real, name)
    def unshare(self, flags):
        if flags & runner.CLONE_NEWPID:
            runner._ffi.errno = errno.EPERM
            return -1
        return real.unshare(flags)
runner._libc = NoPidNamespace()
from nmfuse.cli import main
sys.exit(main(["run", "--path", sys.argv[1], "--", "sleep", sys.argv[2]]))
"""


def test_without_a_pid_namespace_the_program_still_dies_with_run(tmp_path, clean_before):
    marker = f"{time.time_ns() % 1000000}.7"
    proc = subprocess.Popen([sys.executable, "-c", NO_PID_NAMESPACE, str(tmp_path / "netmap"), marker], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: _processes(f"sleep\0{marker}"))
    finally:
        proc.kill()
    _, err = proc.communicate(timeout=30)
    assert "no pid namespace for the program" in err
    assert _wait_for(lambda: not _processes(f"sleep\0{marker}")), "the program died with it"
