"""A caller's address space for unit tests: blocks of bytes at fake addresses.

Unit tests of the core use it in place of the device layer's UserMemory;
reading or writing outside a block is EFAULT, as process_vm_readv gives.
"""

import errno
import mmap
from types import SimpleNamespace

from nmfuse.abi.netmap import ffi

PAGE = 4096


class FakeUserMemory:
    def __init__(self, start: int = 0x10000):
        """``place`` allocates from ``start`` upwards; tests that also set
        blocks at fixed addresses start above them."""
        self.blocks: dict[int, bytearray] = {}
        self._next = start
        self.shared: dict[int, mmap.mmap] = {}   # fake address -> real pages
        self.mapped = 0                          # map_shared views not yet closed

    def place(self, data) -> int:
        """Put ``data`` (bytes or a cffi struct pointer) at a new address."""
        if isinstance(data, ffi.CData):
            data = bytes(ffi.buffer(data))
        addr = self._next
        self._next += (len(data) + 0xFFF) // 0x1000 * 0x1000 + 0x1000  # leave a hole after each
        self.blocks[addr] = bytearray(data)
        return addr

    def _find(self, addr: int, size: int) -> tuple[bytearray, int]:
        for base, block in self.blocks.items():
            if base <= addr and addr + size <= base + len(block):
                return block, addr - base
        raise OSError(errno.EFAULT, "bad address")

    def read(self, addr: int, size: int) -> bytes:
        block, off = self._find(addr, size)
        return bytes(block[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        block, off = self._find(addr, len(data))
        block[off:off + len(data)] = data

    def get(self, addr: int, ctype: str):
        """A private copy of the struct at ``addr``."""
        out = ffi.new(ctype + " *")
        ffi.memmove(out, self.read(addr, ffi.sizeof(ctype)), ffi.sizeof(ctype))
        return out

    def place_shared(self, size: int) -> int:
        """Shared pages of ``size`` bytes at a new page-aligned fake address:
        what ``map_shared`` can map (all other memory is private)."""
        addr = self._next
        self._next += (size + PAGE - 1) // PAGE * PAGE + PAGE
        self.shared[addr] = mmap.mmap(-1, max(size, PAGE))
        return addr

    def map_shared(self, addr: int, size: int):
        """As the device layer's UserMemory.map_shared: EINVAL unaligned,
        EFAULT outside the shared blocks; the pages' identity is their
        block and range."""
        if addr % PAGE:
            raise OSError(errno.EINVAL, "not page aligned")
        for base, pages in self.shared.items():
            if base <= addr and addr + size <= base + len(pages):
                real = int(ffi.cast("uintptr_t", ffi.from_buffer(pages))) + addr - base
                self.mapped += 1
                return SimpleNamespace(address=real, size=size, key=(base, addr - base, size),
                                       page=PAGE, close=self._unmapped)
        raise OSError(errno.EFAULT, "not a shared mapping")

    def _unmapped(self) -> None:
        self.mapped -= 1

    def shared_view(self, addr: int, size: int) -> memoryview:
        """The bytes at fake address ``addr`` of a shared block."""
        for base, pages in self.shared.items():
            if base <= addr and addr + size <= base + len(pages):
                return memoryview(pages)[addr - base:addr - base + size]
        raise OSError(errno.EFAULT, "not a shared block")
