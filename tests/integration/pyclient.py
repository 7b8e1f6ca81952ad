"""A netmap client in Python for integration tests: the real ioctls on the
mounted device, the real mmap, rings read through the project's ffi.  The
request body lives in this process; the daemon reads it with
process_vm_readv, as it does for any client."""

import fcntl
import mmap
import os

import cffi

from nmfuse.abi.netmap import Ioctl, RegMode, ReqType, ffi

# Python's mmap module refuses lengths beyond st_size, and the device (like
# netmap's) has no size: map through libc, as a C client does.
_libc_ffi = cffi.FFI()
_libc_ffi.cdef("void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);"
               "int munmap(void *addr, size_t length);")
_libc = _libc_ffi.dlopen(None)


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
        self.size = self.reg.nr_memsize
        addr = _libc.mmap(_libc_ffi.NULL, self.size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED,
                          self.fd, 0)
        if int(_libc_ffi.cast("intptr_t", addr)) == -1:
            raise OSError(_libc_ffi.errno, "mmap of the device failed")
        self._addr = addr
        self.base = ffi.cast("char *", int(_libc_ffi.cast("uintptr_t", addr)))
        self.nifp = ffi.cast("struct netmap_if *", self.base + self.reg.nr_offset)

    def txring(self, i=0):
        return ffi.cast("struct netmap_ring *", ffi.cast("char *", self.nifp) + self.nifp.ring_ofs[i])

    def rxring(self, i=0):
        n = self.nifp.ni_tx_rings + self.nifp.ni_host_tx_rings
        return ffi.cast("struct netmap_ring *", ffi.cast("char *", self.nifp) + self.nifp.ring_ofs[n + i])

    def buf(self, ring, idx):
        """The bytes of buffer ``idx`` (a cffi buffer)."""
        start = ffi.cast("char *", ring) + ring.buf_ofs + idx * ring.nr_buf_size
        return ffi.buffer(start, ring.nr_buf_size)

    def txsync(self):
        fcntl.ioctl(self.fd, Ioctl.NIOCTXSYNC)

    def rxsync(self):
        fcntl.ioctl(self.fd, Ioctl.NIOCRXSYNC)

    def close(self):
        self.nifp = self.base = None
        _libc.munmap(self._addr, self.size)
        os.close(self.fd)
