"""nmfuse: netmap's /dev/netmap served from user space through FUSE."""

__version__ = "0.1.0"
