"""The calling process's memory, read and written as a kernel driver would.

A restricted FUSE ioctl brings only the bytes its _IOC size names; pointers
inside them (netmap's nr_body, nr_options) point into the caller's address
space.  process_vm_readv/process_vm_writev reach them from the daemon (root,
same pid namespace as FUSE's in_header.pid).  Every failure reads as EFAULT,
which is what a kernel copyin/copyout would return to the caller.
"""

import errno

from nmfuse.abi.fuse import ffi, libc
from nmfuse.dev.usermap import UserMapping, map_user_range


def _efault(what: str, addr: int, size: int) -> OSError:
    return OSError(errno.EFAULT, f"{what} {size} bytes at {addr:#x}: bad address")


class UserMemory:
    """The address space of process (or thread) ``pid``.

    Sizes are bounded by the caller (the netmap core never asks for more
    than a request's maximum size); this class allocates what it is asked.
    """

    __slots__ = ("pid",)

    def __init__(self, pid: int):
        self.pid = pid

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr`` in the process.

        Raises:
            OSError(EFAULT): address 0, an unmapped range, a short transfer,
                or a process that is gone or cannot be reached.
        """
        if addr == 0:
            raise _efault("read", addr, size)
        if size == 0:
            return b""
        local = ffi.new("char[]", size)
        if self._transfer(libc.process_vm_readv, local, addr, size) != size:
            raise _efault("read", addr, size)
        return ffi.unpack(local, size)

    def write(self, addr: int, data: bytes) -> None:
        """Copy ``data`` to ``addr`` in the process.

        Raises:
            OSError(EFAULT): as for ``read``.  A short transfer may have
                written a prefix of ``data``, as a failed copyout does.
        """
        size = len(data)
        if addr == 0:
            raise _efault("write", addr, size)
        if size == 0:
            return
        local = ffi.from_buffer(data)
        if self._transfer(libc.process_vm_writev, local, addr, size) != size:
            raise _efault("write", addr, size)

    def map_shared(self, addr: int, size: int) -> UserMapping:
        """The process's pages at [addr, addr+size) mapped into the daemon
        (see ``usermap``).  Raises OSError: EINVAL (unaligned), EFAULT."""
        return map_user_range(self.pid, addr, size)

    def _transfer(self, call, local, addr: int, size: int) -> int:
        iov = ffi.new("struct iovec[2]")  # [0] ours, [1] theirs
        iov[0].iov_base, iov[0].iov_len = local, size
        iov[1].iov_base, iov[1].iov_len = ffi.cast("void *", addr), size
        return call(self.pid, iov, 1, iov + 1, 1, 0)

    def __repr__(self) -> str:
        return f"UserMemory(pid={self.pid})"
