"""Issue: the device. A real mount driven by the project's C conformance
client and by a Python client; robustness against garbage and killed
clients; the CLI's one-line errors."""

import errno
import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from nmfuse.abi.netmap import Ioctl, RegMode
from tests.integration.conftest import Mount, client
from tests.integration.pyclient import Port


def test_conformance_client_passes_every_check(mount):
    res = mount.run(client("nm-ctltest"), check=False)
    assert res.returncode == 0, res.stdout + res.stderr + mount.output()
    assert " 0 failed" in res.stdout


def test_stat_shows_a_regular_file_with_the_configured_mode(mount):
    st = os.stat(mount.path)
    assert oct(st.st_mode) == oct(0o100600) and st.st_uid == 0


def test_status_reports_ports_and_bindings(mount):
    port = Port(mount.path, "st{1", nr_extra_bufs=4)
    try:
        report = mount.status()
        names = {p["name"]: p for p in report["ports"]}
        assert names["st{1"]["fds"] == 1 and names["st{1"]["type"] == "pipe"
        assert names["st{1"]["bindings"][0]["pid"] == os.getpid()
        text = mount.run(sys.executable, "-m", "nmfuse", "status", mount.path).stdout
        assert "port st{1 (pipe)" in text
    finally:
        port.close()
    assert mount.status()["ports"] == []


def test_killed_client_frees_bindings_and_extra_buffers(mount):
    before = mount.status()["pools"]["buf"]["used"]
    code = (
        "import time, sys; sys.path.insert(0, %r)\n"
        "from tests.integration.pyclient import Port\n"
        "p = Port(%r, 'kill{1', nr_extra_bufs=100)\n"
        "print('ready', flush=True); time.sleep(60)\n"
    ) % (os.getcwd(), mount.path)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    during = mount.status()
    assert during["pools"]["buf"]["used"] >= before + 100
    assert any(p["name"] == "kill{1" for p in during["ports"])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while mount.status()["ports"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = mount.status()
    assert after["ports"] == [] and after["pools"]["buf"]["used"] == before
    assert after["open_files"] == 0


def test_garbage_requests_leave_the_daemon_serving(mount):
    res = mount.run(client("nm-ctltest"), "-s", "7", "fuzz", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    port = Port(mount.path, "n", mode=RegMode.NULL, mem_id=1, nr_tx_rings=1, nr_tx_slots=8)
    port.txsync()
    port.close()
    assert mount.proc.poll() is None


def test_second_mount_on_the_same_path_is_refused_in_one_line(mount):
    res = subprocess.run([sys.executable, "-m", "nmfuse", "mount", mount.path], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "already served" in lines[0]


def test_sigterm_with_a_client_still_open_gives_it_an_error(tmp_path):
    m = Mount(str(tmp_path / "netmap"))
    fd = os.open(m.path, os.O_RDWR)
    assert m.stop() == 0, m.output()
    with pytest.raises(OSError) as e:
        fcntl.ioctl(fd, Ioctl.NIOCTXSYNC)
    assert e.value.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO, errno.ENODEV)
    try:
        os.close(fd)
    except OSError as e:
        assert e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    assert not os.path.exists(m.path), "the placeholder is removed"


def test_umount_command_stops_the_daemon_cleanly(tmp_path):
    m = Mount(str(tmp_path / "netmap"))
    res = subprocess.run([sys.executable, "-m", "nmfuse", "umount", m.path], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    assert m.proc.wait(timeout=30) == 0, m.output()
    assert not os.path.exists(m.path)
    res = subprocess.run([sys.executable, "-m", "nmfuse", "status", m.path], capture_output=True, text=True)
    assert res.returncode == 1 and "not served" in res.stderr


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_an_idle_daemon_uses_no_cpu(mount):
    # a receiver blocked in poll on an idle pipe: the daemon must sleep too
    recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:idle}1", "-n", "1", "-T", "0"], env=mount.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        before = _cpu_ticks(mount.proc.pid)
        time.sleep(3)
        used = _cpu_ticks(mount.proc.pid) - before
    finally:
        recv.kill()
        recv.wait()
    assert used <= 3, f"{used} clock ticks of CPU in 3 idle seconds"
