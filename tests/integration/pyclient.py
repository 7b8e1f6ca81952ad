"""A netmap client in Python for integration tests: the real ioctls on the
mounted device, the real mmap, rings read through the project's ffi.  The
request body lives in this process; the daemon reads it with
process_vm_readv, as it does for any client."""

import fcntl
import mmap
import os

from nmfuse.netmap.abi import Ioctl, RegMode, ReqType, ffi


def _addr(cdata) -> int:
    return int(ffi.cast("uintptr_t", cdata))


class Port:
    def __init__(self, device: str, name: str, mode=RegMode.ALL_NIC, mem_id=0, **fields):
        self.fd = os.open(device, os.O_RDWR)
        self.reg = ffi.new("struct nmreq_register *")
        self.reg.nr_mode, self.reg.nr_mem_id = mode, mem_id
        for k, v in fields.items():
            setattr(self.reg, k, v)
        hdr = ffi.new("struct nmreq_header *")
        hdr.nr_version, hdr.nr_reqtype = 14, ReqType.REGISTER
        hdr.nr_name = name.encode()
        hdr.nr_body = _addr(self.reg)
        buf = bytearray(ffi.buffer(hdr))
        fcntl.ioctl(self.fd, Ioctl.NIOCCTRL, buf)
        self.map = mmap.mmap(self.fd, self.reg.nr_memsize, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.base = ffi.cast("char *", ffi.from_buffer(self.map))
        self.nifp = ffi.cast("struct netmap_if *", self.base + self.reg.nr_offset)

    def txring(self, i=0):
        return ffi.cast("struct netmap_ring *", ffi.cast("char *", self.nifp) + self.nifp.ring_ofs[i])

    def rxring(self, i=0):
        n = self.nifp.ni_tx_rings + self.nifp.ni_host_tx_rings
        return ffi.cast("struct netmap_ring *", ffi.cast("char *", self.nifp) + self.nifp.ring_ofs[n + i])

    def buf(self, ring, idx) -> memoryview:
        start = int(ffi.cast("uintptr_t", ring)) - int(ffi.cast("uintptr_t", self.base)) + ring.buf_ofs
        start += idx * ring.nr_buf_size
        return memoryview(self.map)[start:start + ring.nr_buf_size]

    def txsync(self):
        fcntl.ioctl(self.fd, Ioctl.NIOCTXSYNC)

    def rxsync(self):
        fcntl.ioctl(self.fd, Ioctl.NIOCRXSYNC)

    def close(self):
        self.nifp = self.base = None
        try:
            self.map.close()
        except BufferError:
            pass
        os.close(self.fd)
