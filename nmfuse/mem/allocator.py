"""netmap's memory layout in one region: netmap_if, ring and buffer pools.

    offset 0                if_pool_offset = 0
    +---------------------+
    | netmap_if objects   |  if_num  x if_size
    +---------------------+ ring_pool_offset
    | netmap_ring objects |  ring_num x ring_size (a ring and its slots)
    +---------------------+ buf_pool_offset
    | buffers             |  buf_num  x buf_size; 0 and 1 never handed out
    +---------------------+ memsize

Clients locate everything from offsets: nr_offset gives their netmap_if,
ring_ofs[] their rings (relative to the netmap_if), and each ring's buf_ofs
the buffer pool (relative to the ring).

Buffer ownership is the hard part, because clients move buffer indexes
between slots, rings and the extra-buffer lists themselves (zero-copy).
The pool only remembers which indexes are *in use*; ``release`` ignores an
index that is invalid or already free, so a client that duplicated an index
can never make the pool hand a buffer out twice.
"""

import errno
from dataclasses import dataclass

from nmfuse._helper import ffi, lib
from nmfuse.mem.region import Region

PAGE = 4096
RESERVED_BUFS = 2  # netmap never hands out buffers 0 and 1


def _oserror(code: int, what: str) -> OSError:
    return OSError(code, f"{what}: {errno.errorcode[code]}")


@dataclass(frozen=True)
class PoolConfig:
    """Pool geometry; the defaults are netmap's global allocator's."""

    if_num: int = 100
    if_size: int = 1024
    ring_num: int = 200
    ring_size: int = 9 * PAGE
    buf_num: int = 163840
    buf_size: int = 2048

    def validate(self) -> None:
        """Raises ValueError for a geometry netmap could not serve."""
        for name in ("if_num", "ring_num", "buf_num", "if_size", "ring_size", "buf_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.if_size < 64 or self.if_size % 8:
            raise ValueError("if_size must be a multiple of 8, at least 64")
        if self.ring_size < 256 + 16 or self.ring_size % 128:
            raise ValueError("ring_size must be a multiple of 128 with room for a slot")
        if self.buf_size < 64 or self.buf_size % 64 or self.buf_size > 65535:
            raise ValueError("buf_size must be a multiple of 64 in 64..65535")
        if self.buf_num <= RESERVED_BUFS:
            raise ValueError("buf_num must exceed the two reserved buffers")


@dataclass(frozen=True)
class PoolsInfo:
    """What NETMAP_REQ_POOLS_INFO_GET reports."""

    memsize: int
    mem_id: int
    if_pool_offset: int
    if_pool_objtotal: int
    if_pool_objsize: int
    ring_pool_offset: int
    ring_pool_objtotal: int
    ring_pool_objsize: int
    buf_pool_offset: int
    buf_pool_objtotal: int
    buf_pool_objsize: int


@dataclass(frozen=True)
class PoolStats:
    total: int
    used: int

    @property
    def free(self) -> int:
        """Objects not in use."""
        return self.total - self.used


class ObjectPool:
    """Fixed-size objects handed out by offset in the region.

    ``usable`` (default all) objects can be handed out; netmap reports a
    last object that overruns external memory in ``objtotal`` but never
    uses it.  Indexes never handed out are not listed, so a pool of
    millions of small objects costs nothing until they are used.
    """

    def __init__(self, offset: int, objsize: int, objtotal: int, what: str, usable: int | None = None):
        self.offset, self.objsize, self.objtotal, self.what = offset, objsize, objtotal, what
        self.usable = objtotal if usable is None else usable
        self._fresh = 0                 # indexes below it were handed out once
        self._free: list[int] = []      # returned ones, reused first
        self._used: set[int] = set()

    def alloc(self) -> int:
        """Offset of a fresh object.  Raises OSError(ENOMEM) when exhausted."""
        if self._free:
            i = self._free.pop()
        elif self._fresh < self.usable:
            i = self._fresh
            self._fresh += 1
        else:
            raise _oserror(errno.ENOMEM, f"{self.what} pool exhausted")
        self._used.add(i)
        return self.offset + i * self.objsize

    def free(self, offset: int) -> None:
        """Return the object at ``offset``; one not handed out is ignored."""
        i = (offset - self.offset) // self.objsize
        if i in self._used:
            self._used.remove(i)
            self._free.append(i)

    def stats(self) -> PoolStats:
        """Total and used objects."""
        return PoolStats(self.usable, len(self._used))


class BufferPool:
    """Buffers by index, kept by the C helper; 0 and 1 are reserved.

    ``objtotal`` is what the daemon serves and validates slots against;
    ``reported`` (default the same) what pools info tells clients, which
    for external memory counts a last buffer that overruns it.
    """

    def __init__(self, offset: int, objsize: int, objtotal: int, reported: int | None = None):
        self.offset, self.objsize, self.objtotal = offset, objsize, objtotal
        self.reported = objtotal if reported is None else reported
        self._in_use = ffi.new("uint8_t[]", objtotal)
        self._stack = ffi.new("uint32_t[]", objtotal)
        self._pool = ffi.new("struct nmh_bufpool *", {
            "objtotal": objtotal, "in_use": self._in_use, "free_stack": self._stack})
        lib.nmh_pool_init(self._pool)
        self.ignored_frees = 0  # invalid or already-free indexes passed to release()

    def valid(self, index: int) -> bool:
        """Whether ``index`` is a buffer a slot may hold: in the pool, not reserved."""
        return RESERVED_BUFS <= index < self.objtotal

    def in_use(self, index: int) -> bool:
        """Whether buffer ``index`` is valid and handed out."""
        return self.valid(index) and bool(self._in_use[index])

    def alloc(self, n: int):
        """``n`` buffer indexes as a ``uint32_t[]``, all or nothing.

        Raises:
            OSError(ENOMEM): fewer than ``n`` buffers are free.
        """
        out = ffi.new("uint32_t[]", max(n, 1))
        if lib.nmh_pool_alloc(self._pool, n, out) < 0:
            raise _oserror(errno.ENOMEM, "buffer pool exhausted")
        return out

    def release(self, indexes, n: int | None = None) -> None:
        """Return buffers; invalid and already-free indexes are skipped."""
        if not isinstance(indexes, ffi.CData):
            indexes = ffi.new("uint32_t[]", list(indexes))
        n = len(indexes) if n is None else n
        self.ignored_frees += lib.nmh_pool_release(self._pool, indexes, n)

    def rebuild(self, marks) -> None:
        """Make ``marks`` (uint8_t[objtotal]) the in-use set."""
        lib.nmh_pool_rebuild(self._pool, marks)

    def free_count(self) -> int:
        """How many buffers are free."""
        return self._pool.nfree

    def stats(self) -> PoolStats:
        """Usable (the reserved ones left out) and used buffers."""
        usable = self.objtotal - RESERVED_BUFS
        return PoolStats(usable, usable - self._pool.nfree)


@dataclass(frozen=True)
class PoolLayout:
    """Where one pool lies: ``objtotal`` objects of ``objsize`` bytes from
    ``offset``, of which the first ``usable`` can be handed out."""

    offset: int
    objsize: int
    objtotal: int
    usable: int

    @property
    def memtotal(self) -> int:
        """Bytes the pool takes, up to the page where the next one starts."""
        return _round_up(self.objtotal * self.objsize, PAGE)


@dataclass(frozen=True)
class MemLayout:
    """The three pools of a region and the size netmap reports for it."""

    ifs: PoolLayout
    rings: PoolLayout
    bufs: PoolLayout

    @property
    def memsize(self) -> int:
        """Bytes the three pools take, laid out one after the other."""
        return self.ifs.memtotal + self.rings.memtotal + self.bufs.memtotal


def global_layout(config: PoolConfig) -> MemLayout:
    """The pools of ``config`` back to back, each from a page boundary."""
    ifs = PoolLayout(0, config.if_size, config.if_num, config.if_num)
    rings = PoolLayout(ifs.memtotal, config.ring_size, config.ring_num, config.ring_num)
    bufs = PoolLayout(rings.offset + rings.memtotal, config.buf_size, config.buf_num, config.buf_num)
    return MemLayout(ifs, rings, bufs)


class MemoryAllocator:
    """A memory region and its pools: the daemon's global one (netmap
    mem_id 1, a memfd of ``config``'s geometry), or one laid out in memory
    handed in (``over``, external memory, its id given by a ``MemoryTable``).

    ``hold``/``drop`` count the ports that live in it; ``on_unused`` (if
    set) runs when the last one drops.

    Raises:
        ValueError: the configuration is unusable.
        OSError: the region could not be created.
    """

    mem_id = 1
    private = False   # netmap's NETMAP_MEM_PRIVATE (external memory sets it)

    def __init__(self, config: PoolConfig = PoolConfig()):
        config.validate()
        layout = global_layout(config)
        self._build(Region(layout.memsize), layout)

    @classmethod
    def over(cls, region, layout: MemLayout) -> "MemoryAllocator":
        """An allocator with ``layout`` in ``region``, which it then owns."""
        self = cls.__new__(cls)
        self._build(region, layout)
        return self

    def _build(self, region, layout: MemLayout) -> None:
        self.region = region
        self.memsize = layout.memsize
        self.ifs = ObjectPool(layout.ifs.offset, layout.ifs.objsize, layout.ifs.objtotal,
                              "netmap_if", layout.ifs.usable)
        self.rings = ObjectPool(layout.rings.offset, layout.rings.objsize, layout.rings.objtotal,
                                "ring", layout.rings.usable)
        self.bufs = BufferPool(layout.bufs.offset, layout.bufs.objsize, layout.bufs.usable,
                               layout.bufs.objtotal)
        self._live_rings: dict[int, int] = {}   # ring offset -> num_slots
        self._live_lists: set[int] = set()      # netmap_if offsets owning extra buffers
        self.users = 0
        self.on_unused = None

    def hold(self) -> "MemoryAllocator":
        """One more port (or request) uses this memory."""
        self.users += 1
        return self

    def drop(self) -> None:
        """Undo ``hold``; the last drop runs ``on_unused``."""
        self.users -= 1
        if self.users == 0 and self.on_unused is not None:
            self.on_unused(self)

    @property
    def buf_size(self) -> int:
        """Bytes of one buffer."""
        return self.bufs.objsize

    def buffer(self, index: int) -> memoryview:
        """The bytes of buffer ``index`` (a view into the region)."""
        return self.region.view(self.bufs.offset + index * self.bufs.objsize, self.bufs.objsize)

    def pools_info(self) -> PoolsInfo:
        """The region's size and its pools' offsets and geometry, as
        POOLS_INFO_GET reports them."""
        return PoolsInfo(
            memsize=self.memsize, mem_id=self.mem_id,
            if_pool_offset=self.ifs.offset, if_pool_objtotal=self.ifs.objtotal,
            if_pool_objsize=self.ifs.objsize,
            ring_pool_offset=self.rings.offset, ring_pool_objtotal=self.rings.objtotal,
            ring_pool_objsize=self.rings.objsize,
            buf_pool_offset=self.bufs.offset, buf_pool_objtotal=self.bufs.reported,
            buf_pool_objsize=self.bufs.objsize,
        )

    # -- extra buffers: a list linked through the first u32 of each buffer --

    def extra_alloc(self, count: int) -> tuple[int, int]:
        """Allocate up to ``count`` extra buffers as a linked list.

        Returns (head index, how many were allocated); like netmap, running
        short is not an error: fewer buffers come back.
        """
        n = min(count, self.bufs.free_count())
        got = self.bufs.alloc(n)
        link = self.region.ptr("uint32_t *", 0)
        stride = self.bufs.objsize // 4
        base = self.bufs.offset // 4
        for k in range(n):
            link[base + got[k] * stride] = got[k + 1] if k + 1 < n else 0
        return (got[0] if n else 0), n

    def extra_walk(self, head: int, limit: int) -> list[int]:
        """Indexes on the list at ``head``, stopping at 0, an invalid or
        repeated index, or ``limit`` entries (the list is client-writable)."""
        link = self.region.ptr("uint32_t *", 0)
        stride, base = self.bufs.objsize // 4, self.bufs.offset // 4
        seen: list[int] = []
        visited: set[int] = set()
        i = head
        while i and len(seen) < limit and self.bufs.valid(i) and i not in visited:
            visited.add(i)
            seen.append(i)
            i = link[base + i * stride]
        return seen

    # -- ownership: what live rings and lists hold is in use, nothing else --

    def ring_alloc(self, num_slots: int) -> int:
        """A ring object for ``num_slots`` slots, recorded as live.

        Raises:
            OSError(ENOMEM): the ring does not fit an object, or none is free.
        """
        if ring_bytes(num_slots) > self.rings.objsize:
            raise _oserror(errno.ENOMEM, f"{num_slots} slots do not fit a ring object")
        offset = self.rings.alloc()
        self._live_rings[offset] = num_slots
        return offset

    def ring_free(self, offset: int) -> None:
        """Forget a ring; its buffers go back at the next ``sweep``."""
        self._live_rings.pop(offset, None)
        self.rings.free(offset)

    def list_hold(self, nifp_offset: int) -> None:
        """The netmap_if at ``nifp_offset`` owns the list at its ni_bufs_head."""
        self._live_lists.add(nifp_offset)

    def list_drop(self, nifp_offset: int) -> None:
        """The netmap_if at ``nifp_offset`` no longer owns its extra buffer list;
        those buffers go back at the next ``sweep``."""
        self._live_lists.discard(nifp_offset)

    def sweep(self) -> None:
        """Recompute the in-use buffers from what the live rings and extra
        lists hold now (slots as the clients left them), freeing the rest.

        This is how buffers of a closed port return to the pool.  Because it
        marks from *every* live holder, an index a client duplicated into a
        ring that goes away stays in use while another ring still holds it:
        the pool never hands out a buffer twice.
        """
        total = self.bufs.objtotal
        marks = ffi.new("uint8_t[]", total)
        for offset, num_slots in self._live_rings.items():
            ring = self.region.ptr("struct netmap_ring *", offset)
            lib.nmh_mark_slots(ring.slot, num_slots, marks, total)
        bufbase = self.region.base + self.bufs.offset
        for nifp_offset in self._live_lists:
            nifp = self.region.ptr("struct netmap_if *", nifp_offset)
            lib.nmh_mark_list(bufbase, self.bufs.objsize, nifp.ni_bufs_head, marks, total, total)
        self.bufs.rebuild(marks)

    def statistics(self) -> dict[str, PoolStats]:
        """Total and used objects of the netmap_if, ring and buffer pools."""
        return {"if": self.ifs.stats(), "ring": self.rings.stats(), "buf": self.bufs.stats()}

    def close(self) -> None:
        """Unmap and close the region."""
        self.region.close()


def ring_bytes(num_slots: int) -> int:
    """Bytes of a netmap_ring with ``num_slots`` slots."""
    return ffi.sizeof("struct netmap_ring") + num_slots * ffi.sizeof("struct netmap_slot")


def _round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align
