"""A caller's address space for unit tests: blocks of bytes at fake addresses.

Unit tests of the core use it in place of the device layer's UserMemory;
reading or writing outside a block is EFAULT, as process_vm_readv gives.
"""

import errno

from nmfuse.abi.netmap import ffi


class FakeUserMemory:
    def __init__(self, start: int = 0x10000):
        """``place`` allocates from ``start`` upwards; tests that also set
        blocks at fixed addresses start above them."""
        self.blocks: dict[int, bytearray] = {}
        self._next = start

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
