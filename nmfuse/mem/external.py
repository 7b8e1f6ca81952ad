"""External memory (netmap_mem_ext_create): pools laid out in memory that a
client allocated itself.

The client names the pools it wants (``PoolsRequest``, from the EXTMEM
option's nmreq_pools_info; zero fields take netmap's defaults for private
memory) and how many bytes it offers.  As netmap does:

1. a request whose pools do not fit the bytes offered is ENOMEM; what is
   left over becomes more buffers;
2. the pools are laid out back to back from the first page, objects one
   after the other, each pool starting on a page boundary;
3. a pool takes objects while they start inside the memory: it gets
   fewer than asked when memory runs out, and its last object may overrun
   the end.  That one is counted (pools info reports it) but never used.
   The daemon also stops at MAX_BUFFERS buffers.

netmap maps the pages one by one into the kernel and also drops objects
that straddle two physically discontiguous pages; the daemon maps the
client's memory contiguously, so only an object overrunning the end is
dropped.
"""

import errno
from dataclasses import dataclass, replace

from nmfuse.mem.allocator import PAGE, MemLayout, PoolLayout

# netmap_min_priv_params: what a zero field of the request means
DEFAULT_IF = (2, 1024)
DEFAULT_RING = (4, 5 * PAGE)
DEFAULT_BUF = (4098, 2048)

# The smallest buffer the daemon serves: a buffer must hold the link of an
# extra-buffer list, and counting tiny buffers would cost the daemon more
# than the memory they describe.  netmap checks nothing here.
MIN_BUF_SIZE = 64
# The most buffers the daemon keeps count of in one external region (five
# bytes each): memory beyond them stays unused, as if it ran out.
MAX_BUFFERS = 1 << 24


@dataclass(frozen=True)
class PoolsRequest:
    """The pools a client asks for in ``memsize`` bytes of its memory."""

    memsize: int
    if_num: int = 0
    if_size: int = 0
    ring_num: int = 0
    ring_size: int = 0
    buf_num: int = 0
    buf_size: int = 0

    def with_defaults(self) -> "PoolsRequest":
        """Zero fields replaced by netmap's defaults (what the client gets back)."""
        pick = lambda value, default: value or default  # noqa: E731
        return replace(self,
                       if_num=pick(self.if_num, DEFAULT_IF[0]), if_size=pick(self.if_size, DEFAULT_IF[1]),
                       ring_num=pick(self.ring_num, DEFAULT_RING[0]),
                       ring_size=pick(self.ring_size, DEFAULT_RING[1]),
                       buf_num=pick(self.buf_num, DEFAULT_BUF[0]), buf_size=pick(self.buf_size, DEFAULT_BUF[1]))


def pages(memsize: int) -> int:
    """Pages of ``memsize`` bytes from a page-aligned address."""
    return (memsize + PAGE - 1) // PAGE


def plan(request: PoolsRequest) -> MemLayout:
    """The pools of ``request`` (defaults applied) in its memory.

    Raises:
        OSError(ENOMEM): a pool does not fit ``memsize`` (checked in order,
            as _netmap_mem_private_new).
        OSError(EINVAL): buffers smaller than the daemon serves.
    """
    if request.buf_size < MIN_BUF_SIZE:
        raise OSError(errno.EINVAL, f"buffers of {request.buf_size} bytes: nmfuse needs {MIN_BUF_SIZE}")
    wanted = [[request.if_num, request.if_size], [request.ring_num, request.ring_size],
              [request.buf_num, request.buf_size]]
    if request.memsize:
        left = request.memsize
        for what, (num, size) in zip(("netmap_if", "ring", "buffer"), wanted):
            if left < num * size:
                raise OSError(errno.ENOMEM, f"{what} pool ({num} x {size}) does not fit {request.memsize} bytes")
            left -= num * size
        wanted[2][0] += (left + request.buf_size - 1) // request.buf_size
    wanted[2][0] = min(wanted[2][0], MAX_BUFFERS)
    end = pages(request.memsize) * PAGE
    laid, offset = [], 0
    for num, size in wanted:
        pool = _lay(offset, num, size, end)
        laid.append(pool)
        offset += pool.memtotal
    return MemLayout(*laid)


def _lay(offset: int, num: int, size: int, end: int) -> PoolLayout:
    """Up to ``num`` objects of ``size`` from ``offset``: as many as start
    before ``end``; the last is unusable if it overruns it."""
    if offset >= end:
        return PoolLayout(offset, size, 0, 0)
    total = min(num, (end - offset + size - 1) // size)
    usable = total - (offset + total * size > end)
    return PoolLayout(offset, size, total, usable)
