"""The allocators of one daemon by mem_id (netmap's list of memory allocators).

mem_id 1 is the global allocator, which lives as long as the daemon.  Each
external memory gets the next free id after the last one given (netmap's
nm_mem_assign_id, wrapping past 65535), is found again by the identity of
the pages it lies in (several ports, even of several processes, share one
region), and is closed, its id free again, when its last user drops it.
"""

import errno

from nmfuse.mem.allocator import MemoryAllocator

MAX_MEM_ID = 0xFFFF


class MemoryTable:
    """mem_id -> allocator, and external allocators by the identity of
    their pages."""

    def __init__(self, global_mem: MemoryAllocator):
        self.global_mem = global_mem
        self.by_id: dict[int, MemoryAllocator] = {global_mem.mem_id: global_mem}
        self._by_key: dict[object, MemoryAllocator] = {}
        self._last_id = global_mem.mem_id

    def find(self, mem_id: int) -> MemoryAllocator | None:
        """The allocator with ``mem_id`` (netmap_mem_find), or None."""
        return self.by_id.get(mem_id)

    def find_external(self, key) -> MemoryAllocator | None:
        """The external allocator over the pages ``key`` names, held once
        more for the caller; None if there is none."""
        mem = self._by_key.get(key)
        return mem.hold() if mem is not None else None

    def add_external(self, key, mem: MemoryAllocator) -> MemoryAllocator:
        """Give ``mem`` an id and list it under ``key``; it comes back held
        once for the caller and is closed when its last user drops it.

        Raises:
            OSError(ENOMEM): every id is taken (``mem`` is left to the caller).
        """
        mem_id = self._next_id()
        mem.mem_id = mem_id
        mem.key = key
        mem.on_unused = self._release
        self.by_id[mem_id] = mem
        self._by_key[key] = mem
        return mem.hold()

    def externals(self) -> list[MemoryAllocator]:
        """Every region of external memory that exists now."""
        return [m for m in self.by_id.values() if m is not self.global_mem]

    def _next_id(self) -> int:
        candidate = self._last_id
        for _ in range(MAX_MEM_ID):
            candidate = candidate % MAX_MEM_ID + 1   # 1..65535, 0 is no id
            if candidate not in self.by_id:
                self._last_id = candidate
                return candidate
        raise OSError(errno.ENOMEM, "no memory id left")

    def _release(self, mem: MemoryAllocator) -> None:
        self.by_id.pop(mem.mem_id, None)
        self._by_key.pop(mem.key, None)
        mem.close()
