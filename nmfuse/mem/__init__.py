"""The shared memory region and its allocator (netmap's memory layout).

Knows nothing about FUSE: the region is a memfd that the device layer hands
to the kernel as the passthrough backing file of /dev/netmap.
"""

from nmfuse.mem.allocator import MemoryAllocator, PoolConfig, PoolsInfo
from nmfuse.mem.region import Region

__all__ = ["MemoryAllocator", "PoolConfig", "PoolsInfo", "Region"]
