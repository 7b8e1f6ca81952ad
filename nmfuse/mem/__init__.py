"""The shared memory region and its allocator (netmap's memory layout).

Knows nothing about FUSE: the global region is a memfd that the device
layer hands to the kernel as the passthrough backing file of /dev/netmap;
an external region is memory the layer above mapped and hands in.
"""

from nmfuse.mem.allocator import MemoryAllocator, PoolConfig, PoolsInfo
from nmfuse.mem.region import ExternalRegion, Region
from nmfuse.mem.table import MemoryTable

__all__ = ["ExternalRegion", "MemoryAllocator", "MemoryTable", "PoolConfig", "PoolsInfo", "Region"]
