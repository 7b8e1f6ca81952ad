"""Build script of the C helper (``nmfuse._helper``), run by cffi at install.

The helper holds the per-slot loops and OS calls of ``csrc/`` (buffer
accounting, ring loops, VALE forwarding, TAP queues,
AF_PACKET rings and tcx programs of the generic driver).  It includes the
netmap ABI module (``nmfuse.abi._netmap``), so the netmap struct types it
takes are the very ones the rest of nmfuse creates.
"""

import runpy
from pathlib import Path
from types import SimpleNamespace

import cffi

HERE = Path(__file__).parent
CSRC = HERE / "csrc"
# One header + one source per concern; the order is the cdef order.
PARTS = ("pool", "rings", "sync", "fast", "vale", "tap", "guard", "packet")


# The package is not importable while it is being built: run the ABI build script by path.
_abi = SimpleNamespace(**runpy.run_path(str(HERE / "abi" / "netmap_build.py")))

ffibuilder = cffi.FFI()
ffibuilder.include(_abi.ffibuilder)
for part in PARTS:
    ffibuilder.cdef(_abi.cdef.cdef_source(CSRC / f"{part}.h"))
# One translation unit: the sources are included, so no object file of
# ours lands anywhere but in the build's own temporary directory.
ffibuilder.set_source(
    "nmfuse._helper",
    '#include "netmap_abi.h"\n' + "".join(f'#include "{part}.c"\n' for part in PARTS),
    include_dirs=[str(_abi.HERE), str(CSRC)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    _abi.ffibuilder.compile(tmpdir=str(HERE.parent))
    ffibuilder.compile(tmpdir=str(HERE.parent))
