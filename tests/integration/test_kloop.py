"""The sync-kloop on a real mount: clients/nm-kloop moves frames through a
pipe in CSB mode without a sync ioctl (busy-wait and eventfds), other
clients' traffic goes on while loops run, nm-ctltest's START/STOP orders
and options pass, a killed program's loop ends with it, and all of it
also over FUSE io_uring (a START holds its queue entry: the CPU gets a
spare one)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.integration.conftest import client

FRAMES = 1_000_000


def _kloop(mount, name, *args, timeout=600):
    res = mount.run(client("nm-kloop"), "-p", name, "-j", *args, timeout=timeout)
    summary = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("{")))
    assert summary["ok"] and summary["frames"] == int(args[args.index("-n") + 1]), res.stdout
    assert "sent" in res.stdout
    return summary


@pytest.mark.parametrize("mode", [[], ["-e"]], ids=["busy-wait", "eventfds"])
def test_a_million_frames_through_a_kloop_pipe(mount, mode):
    _kloop(mount, f"km{len(mode)}", "-n", str(FRAMES), *mode)


def test_csb_enable_after_register_and_a_sleeping_loop(mount):
    _kloop(mount, "kc", "-n", "100000", "-C", "-S", "50")


def test_ctltest_kloop_checks(mount):
    res = mount.run(client("nm-ctltest"), "csb_enable", "csb_register", "kloop_unbound", "kloop_start",
                    "kloop_order", "kloop_options", check=False)
    assert res.returncode == 0 and " 0 failed" in res.stdout, res.stdout + res.stderr + mount.output()


def test_other_clients_traffic_goes_on_while_kloops_run(mount):
    n = 300_000
    kl = subprocess.Popen([client("nm-kloop"), "-p", "kt", "-n", str(3 * FRAMES), "-e"], env=mount.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:ot}1", "-n", str(n), "-c", "-j"],
                                env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        send = mount.run(client("nm-send"), "-i", "netmap:ot{1", "-n", str(n), "-w", "poll", timeout=300)
        out, err = recv.communicate(timeout=300)
        assert recv.returncode == 0, out + err
        got = json.loads(out.strip().splitlines()[-1])
        assert got["pkts"] == n and got["lost"] == got["corrupt"] == 0, got
        assert send.returncode == 0
        assert kl.poll() is None, "the kloop pair should still be running"  # it has 3 M frames to move
        out, err = kl.communicate(timeout=600)
        assert kl.returncode == 0 and "received 3000000 ok" in out, out + err
    finally:
        kl.kill()


HOLDER = """
    import fcntl, os, sys
    from nmfuse.abi.netmap import Ioctl, OptType, RegFlag, RegMode, ReqType, ffi

    def addr(c):
        return int(ffi.cast("uintptr_t", c))

    def ctrl(fd, reqtype, name="", body=None, opt=None):
        hdr = ffi.new("struct nmreq_header *")
        hdr.nr_version, hdr.nr_reqtype, hdr.nr_name = 14, reqtype, name.encode()
        hdr.nr_body = addr(body) if body is not None else 0
        hdr.nr_options = addr(opt) if opt is not None else 0
        fcntl.ioctl(fd, Ioctl.NIOCCTRL, bytearray(ffi.buffer(hdr)))

    fd = os.open({path!r}, os.O_RDWR)
    reg = ffi.new("struct nmreq_register *")
    reg.nr_mode, reg.nr_flags = RegMode.ALL_NIC, RegFlag.EXCLUSIVE
    raw = ffi.new("char[]", 5 * 64)  # the entries must be aligned to their size
    base = (addr(raw) + 63) // 64 * 64
    atok = ffi.cast("struct nm_csb_atok *", base)
    ktoa = ffi.cast("struct nm_csb_ktoa *", base + 2 * 64)
    csb = ffi.new("struct nmreq_opt_csb *")
    csb.nro_opt.nro_reqtype, csb.nro_opt.nro_size = OptType.CSB, ffi.sizeof(csb[0])
    csb.csb_atok, csb.csb_ktoa = addr(atok), addr(ktoa)
    ctrl(fd, ReqType.REGISTER, "kh{{1", reg, csb)
    print("ready", flush=True)
    ctrl(fd, ReqType.SYNC_KLOOP_START, body=ffi.new("struct nmreq_sync_kloop_start *"))
    print("START returned", flush=True)
"""


def test_a_killed_programs_loop_ends_and_its_port_goes(mount, tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(HOLDER.format(path=mount.path)))
    root = str(client("nm-kloop")).rsplit("/clients/", 1)[0]   # the holder imports this tree's nmfuse
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=root, env={**os.environ, "PYTHONPATH": root})
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(0.5)  # let START reach the daemon (it answers only when the loop ends)
        assert any(p["name"] == "kh{1" for p in mount.status()["ports"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(20)
    finally:
        proc.kill()
    deadline = time.monotonic() + 20
    while any(p["name"] == "kh{1" for p in mount.status()["ports"]):
        assert time.monotonic() < deadline, mount.status()
        time.sleep(0.05)
    _kloop(mount, "ka", "-n", "10000")  # still serving


def test_kloops_over_io_uring(uring_mount):
    assert uring_mount.status()["transport"] == "io_uring"
    _kloop(uring_mount, "ku", "-n", "200000", timeout=120)
    _kloop(uring_mount, "kv", "-n", "200000", "-e", timeout=120)
    res = uring_mount.run(client("nm-ctltest"), "kloop_order", "kloop_options", check=False)
    assert res.returncode == 0 and " 0 failed" in res.stdout, res.stdout + res.stderr + uring_mount.output()
