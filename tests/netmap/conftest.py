import errno
from types import SimpleNamespace

import pytest

from nmfuse.abi.netmap import Ioctl, RegMode, ReqType, ffi
from nmfuse.drivers import all_drivers
from nmfuse.mem import MemoryAllocator, PoolConfig
from nmfuse.netmap.core import Core
from nmfuse.netmap.device import NetmapDevice
from tests.netmap.fakemem import FakeUserMemory

CALLER = SimpleNamespace(pid=1234, uid=0, gid=0)


class Harness:
    """A device over a small memory, driven as a client would through ioctl."""

    def __init__(self):
        self.mem = MemoryAllocator(PoolConfig(if_num=16, ring_num=32, buf_num=8192))
        self.woken: list[int] = []
        self.core = Core(self.mem, all_drivers(), wake=self.woken.append)
        self.user = FakeUserMemory()
        self.dev = NetmapDevice(self.core, lambda pid: self.user)

    def open(self) -> int:
        return self.dev.open(CALLER, 0)

    def header(self, name="", reqtype=ReqType.REGISTER, version=14, body=0, options=0, reserved=0):
        hdr = ffi.new("struct nmreq_header *")
        hdr.nr_version, hdr.nr_reqtype, hdr.nr_reserved = version, reqtype, reserved
        hdr.nr_name = name.encode() if isinstance(name, str) else name
        hdr.nr_body, hdr.nr_options = body, options
        return hdr

    def ctrl_raw(self, fh, hdr):
        err, out = self.dev.ioctl(CALLER, fh, Ioctl.NIOCCTRL, 0, bytes(ffi.buffer(hdr)), 88)
        back = ffi.new("struct nmreq_header *")
        ffi.memmove(back, out, 88)
        return err, back

    def ctrl(self, fh, name, reqtype, body=None, options=0):
        """Returns (errno, the body as written back, header written back)."""
        addr = self.user.place(body) if body is not None else 0
        err, back = self.ctrl_raw(fh, self.header(name, reqtype, body=addr, options=options))
        out = self.user.get(addr, ffi.typeof(body).item.cname) if body is not None else None
        return err, out, back

    def option(self, reqtype, size=0, nxt=0, ctype="struct nmreq_option", **fields):
        opt = ffi.new(ctype + " *")
        head = ffi.cast("struct nmreq_option *", opt)
        head.nro_next, head.nro_reqtype, head.nro_size = nxt, reqtype, size
        for k, v in fields.items():
            setattr(opt, k, v)
        return self.user.place(opt)

    def option_status(self, addr) -> int:
        return self.user.get(addr, "struct nmreq_option").nro_status

    def register(self, fh, name="n0", mode=RegMode.NULL, mem_id=1, options=0, **fields):
        reg = ffi.new("struct nmreq_register *")
        reg.nr_mode, reg.nr_mem_id = mode, mem_id
        for k, v in fields.items():
            setattr(reg, k, v)
        return self.ctrl(fh, name, ReqType.REGISTER, reg, options)

    def nifp(self, offset):
        return self.mem.region.ptr("struct netmap_if *", offset)

    def ring(self, nifp, index):
        return ffi.cast("struct netmap_ring *", ffi.cast("char *", nifp) + nifp.ring_ofs[index])

    def sync(self, fh, cmd):
        return self.dev.ioctl(CALLER, fh, cmd, 0, b"", 0)[0]


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.core.stop_fast()
    harness.mem.close()


E = errno
