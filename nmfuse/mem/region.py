"""One memfd, mapped shared in the daemon: the memory every client mmaps."""

import mmap
import os

from nmfuse.abi.netmap import ffi


class Region:
    """A sparse shared memory file of ``size`` bytes.

    Pages cost nothing until touched, so a netmap-sized default (hundreds of
    MiB) is cheap. ``fd`` is what the device layer registers as the backing
    file; ``base`` is a ``char *`` to the daemon's own mapping.

    Raises:
        OSError: memfd_create, ftruncate or mmap failed (the fd is closed).
    """

    def __init__(self, size: int, name: str = "nmfuse"):
        self.size = size
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self._map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(self.fd)
            raise
        self.base = ffi.cast("char *", ffi.from_buffer(self._map))

    def ptr(self, ctype: str, offset: int):
        """A typed pointer to ``offset`` bytes into the region."""
        return ffi.cast(ctype, self.base + offset)

    def view(self, offset: int, size: int) -> memoryview:
        """A memoryview of ``size`` bytes at ``offset`` (not a copy)."""
        return memoryview(self._map)[offset:offset + size]

    def close(self) -> None:
        """Close the fd and the daemon's mapping (which stays until exit while a
        cffi view of it exists)."""
        self.base = None
        try:
            self._map.close()
        except BufferError:
            pass  # a cffi view still exists; the mapping dies with the process
        os.close(self.fd)
