"""External memory on a real mount: nm-extmem registers pipe and VALE ports
in its own memory and checks every frame; the errno cases; ports of two
processes sharing a region; nothing left after the last port or a kill."""

import errno
import fcntl
import json
import mmap
import os
import signal
import subprocess

import cffi
import pytest

from nmfuse.abi.netmap import Ioctl, OptType, ReqType, ffi
from tests.integration.conftest import client

_ffi = cffi.FFI()
_ffi.cdef("void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);"
          "int munmap(void *addr, size_t length);")
_libc = _ffi.dlopen(None)
MIB = 1 << 20


def _json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _hugepages_free() -> int:
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["HugePages_Free"].split()[0])


def _no_leak(status, bufs_before) -> bool:
    return status["external_memory"] == [] and status["ports"] == [] and \
        status["pools"]["buf"]["used"] == bufs_before


@pytest.mark.parametrize("kind", ["memfd", "file", "shm", "shared", "hugetlb"])
def test_example_moves_frames_through_pipe_and_vale_in_its_memory(mount, tmp_path, kind):
    if kind == "hugetlb" and _hugepages_free() < 8:
        pytest.skip("no free hugepages on this machine (HugePages_Free in /proc/meminfo is below 8 x 2 MiB)")
    if kind == "shm" and not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm tmpfs on this machine")
    memory = {"file": f"file:{tmp_path / 'region'}", "shm": f"file:/dev/shm/nmfuse-extmem-{os.getpid()}"}.get(kind, kind)
    before = mount.status()["pools"]["buf"]["used"]
    try:
        res = mount.run(client("nm-extmem"), "-m", memory, "-n", "20000", "-p", "extp", "-v", "vale3")
    finally:
        if kind == "shm":
            os.unlink(f"/dev/shm/nmfuse-extmem-{os.getpid()}")
    got = _json(res.stdout)
    assert got["ok"] is True, res.stdout
    assert got["pipe_mem_id"] == [2, 2] and got["vale_mem_id"] == [2, 2, 1], "one region by pointer; g global"
    assert got["priv_mem"] == 1
    for flow in ("pipe", "a_to_b", "a_to_g", "g_to_a", "g_to_b"):
        assert got[flow] == {"sent": 20000, "received": 20000, "bad": 0}
    assert _no_leak(mount.settled(lambda s: _no_leak(s, before), timeout=10), before)


@pytest.mark.parametrize("args, code", [(["-m", "private"], errno.EFAULT), (["-o", "100"], errno.EINVAL)])
def test_example_refused_with_netmaps_errno_and_option_status(mount, args, code):
    res = mount.run(client("nm-extmem"), "-t", "pipe", *args, check=False)
    assert res.returncode == 1
    got = _json(res.stdout)
    assert (got["errno"], got["status"]) == (code, code)
    assert mount.status()["external_memory"] == []


def _register(device: str, name: str, usrptr: int, memsize: int, **pools):
    """REGISTER ``name`` with an EXTMEM option from this process; returns
    (errno, option status, reg body, fd or None)."""
    fd = os.open(device, os.O_RDWR)
    reg = ffi.new("struct nmreq_register *")
    reg.nr_mode = 1
    opt = ffi.new("struct nmreq_opt_extmem *")
    opt.nro_opt.nro_reqtype = OptType.EXTMEM
    opt.nro_usrptr = usrptr
    opt.nro_info.nr_memsize = memsize
    opt.nro_info.nr_if_pool_objtotal, opt.nro_info.nr_ring_pool_objtotal = 8, 8
    for key, value in pools.items():
        setattr(opt.nro_info, key, value)
    hdr = ffi.new("struct nmreq_header *")
    hdr.nr_version, hdr.nr_reqtype = 14, ReqType.REGISTER
    hdr.nr_name = name.encode()
    hdr.nr_body = int(ffi.cast("uintptr_t", reg))
    hdr.nr_options = int(ffi.cast("uintptr_t", opt))
    try:
        fcntl.ioctl(fd, Ioctl.NIOCCTRL, bytearray(ffi.buffer(hdr)))
    except OSError as e:
        os.close(fd)
        return e.errno, opt.nro_opt.nro_status, reg, None
    return 0, opt.nro_opt.nro_status, reg, fd


def _map(size: int, prot=mmap.PROT_READ | mmap.PROT_WRITE, fd=-1, flags=mmap.MAP_SHARED) -> int:
    addr = _libc.mmap(_ffi.NULL, size, prot, flags | (mmap.MAP_ANONYMOUS if fd < 0 else 0), fd, 0)
    assert int(_ffi.cast("intptr_t", addr)) != -1
    return int(_ffi.cast("uintptr_t", addr))


def test_errno_cases_from_a_python_client(mount):
    region = _map(16 * MIB)
    read_only = _map(16 * MIB, prot=mmap.PROT_READ)
    cases = [
        (region, 64 * 1024, errno.ENOMEM),         # netmap's default 4098 buffers do not fit
        (read_only, 16 * MIB, errno.EFAULT),
        (0x1000, 16 * MIB, errno.EFAULT),          # nothing mapped there
        (region + 4096, 16 * MIB, errno.EFAULT),   # runs past the mapping
    ]
    for usrptr, memsize, code in cases:
        err, status, _, fd = _register(mount.path, "errp{1", usrptr, memsize)
        assert fd is None and (err, status) == (code, code), (hex(usrptr), memsize)
    status = mount.status()
    assert status["external_memory"] == [] and status["open_files"] == 0


def test_two_processes_share_one_region_and_it_goes_with_the_last_port(mount):
    memfd = os.memfd_create("nmfuse-extmem-test")
    os.ftruncate(memfd, 16 * MIB)
    region = _map(16 * MIB, fd=memfd)
    err, _, reg, fd = _register(mount.path, "shp{1", region, 16 * MIB)
    assert err == 0 and reg.nr_mem_id == 2
    said, hold = os.pipe(), os.pipe()
    child = os.fork()
    if child == 0:   # the same pages, seen by another process; it holds its port until told
        err, _, creg, cfd = _register(mount.path, "shp}1", region, 16 * MIB)
        os.write(said[1], b"y" if err == 0 and creg.nr_mem_id == 2 else b"n")
        os.read(hold[0], 1)
        os._exit(0)
    assert os.read(said[0], 1) == b"y", "the child's port is in the same region"
    (ext,) = mount.status()["external_memory"]
    assert ext["mem_id"] == 2 and ext["users"] == 2     # both pipe ends live there
    os.write(hold[1], b"x")
    os.waitpid(child, 0)
    for end in said + hold:
        os.close(end)
    os.close(fd)
    assert mount.settled(lambda s: s["external_memory"] == [], timeout=10)["external_memory"] == []
    _libc.munmap(_ffi.cast("void *", region), 16 * MIB)
    os.close(memfd)


def test_a_killed_client_leaks_nothing(mount):
    before = mount.status()["pools"]["buf"]["used"]
    proc = subprocess.Popen([client("nm-extmem"), "-w", "60", "-p", "killp", "-v", "vale4"], env=mount.env,
                            stdout=subprocess.PIPE, text=True)
    try:
        got = json.loads(proc.stdout.readline())
        assert got["pipe_mem_id"] == [2, 2] and got["vale_mem_id"] == [2, 2, 1]
        during = mount.status()
        assert [m["mem_id"] for m in during["external_memory"]] == [2]
        assert during["external_memory"][0]["pools"]["buf"]["used"] > 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _no_leak(mount.settled(lambda s: _no_leak(s, before), timeout=10), before)
    # and the daemon keeps serving: a fresh client gets the id after the last one
    res = mount.run(client("nm-extmem"), "-t", "pipe", "-n", "1000", "-p", "killp")
    assert _json(res.stdout)["pipe_mem_id"] == [3, 3]


def test_a_client_that_truncates_its_memory_does_not_bring_the_daemon_down(mount):
    memfd = os.memfd_create("nmfuse-extmem-cut")
    os.ftruncate(memfd, 16 * MIB)
    region = _map(16 * MIB, fd=memfd)
    err, _, reg, fd = _register(mount.path, "cutp{1", region, 16 * MIB)
    assert err == 0
    os.ftruncate(memfd, 0)           # the pages under the daemon's mapping are gone
    fcntl.ioctl(fd, Ioctl.NIOCTXSYNC)  # the daemon reads the ring there: a zero page now
    fcntl.ioctl(fd, Ioctl.NIOCRXSYNC)
    os.close(fd)
    assert mount.settled(lambda s: s["external_memory"] == [], timeout=10)["external_memory"] == []
    res = mount.run(client("nm-extmem"), "-t", "pipe", "-n", "1000", "-p", "cutq")
    assert _json(res.stdout)["ok"] is True and mount.proc.poll() is None
    _libc.munmap(_ffi.cast("void *", region), 16 * MIB)
    os.close(memfd)
