"""The bytes an allocator lays its pools in.

``Region``: one memfd, mapped shared in the daemon, the memory every client
mmaps.  ``ExternalRegion``: pages the layer above has already mapped into
the daemon (a client's own memory, netmap's external memory); this layer
only needs their address and knows nothing of where they come from.
"""

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


class ExternalRegion:
    """``size`` bytes at address ``address`` of the daemon, mapped by the
    layer above; ``release()`` unmaps them when the allocator goes.

    Same interface as ``Region`` (``base``, ``ptr``, ``view``, ``close``)
    but no fd: nobody mmaps it through the device.
    """

    fd = None

    def __init__(self, address: int, size: int, release):
        self.size = size
        self.base = ffi.cast("char *", address)
        self._release = release

    def ptr(self, ctype: str, offset: int):
        """A typed pointer to ``offset`` bytes into the region."""
        return ffi.cast(ctype, self.base + offset)

    def view(self, offset: int, size: int) -> memoryview:
        """A memoryview of ``size`` bytes at ``offset``."""
        return memoryview(ffi.buffer(self.base + offset, size))

    def close(self) -> None:
        """Give the pages back (once)."""
        if self.base is not None:
            self.base = None
            self._release()
