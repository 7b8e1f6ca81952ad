"""The wire formats, declared once: netmap's user ABI (``netmap_abi.h``,
``netmap.py``) and FUSE's kernel ABI (``fuse_abi.h``, ``fuse.py``).

The bottom of the package: it imports nothing else of nmfuse.  The C
helper, the C clients and the benchmarks compile against the same headers.
"""
