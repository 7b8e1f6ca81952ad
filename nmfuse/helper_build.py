"""Build script of the C helper (``nmfuse._helper``), run by cffi at install.

The helper holds the per-slot loops and OS calls of ``csrc/`` (buffer
accounting, ring loops, VALE forwarding, TAP queues,
AF_PACKET rings and tcx programs of the generic driver).  It includes the
netmap ABI module (``nmfuse.abi._netmap``), so the netmap struct types it
takes are the very ones the rest of nmfuse creates.
"""

import importlib.util
from pathlib import Path

import cffi

HERE = Path(__file__).parent
CSRC = HERE / "csrc"
# One header + one source per concern; the order is the cdef order.
PARTS = ("pool", "rings", "vale", "tap", "guard", "packet")


def _load(name: str, path: Path):
    # The package is not importable while it is being built: load by path.
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_abi = _load("_nmfuse_abi_build", HERE / "abi" / "netmap_build.py")

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
