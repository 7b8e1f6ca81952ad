"""Build script of the C helper (``nmfuse._helper``), run by cffi at install.

The helper module carries the one cffi view of the netmap ABI (the cdef of
``netmap/netmap_abi.h``) plus the per-slot loops of ``csrc/helper.c``.
Because the netmap structs are declared in full (no ``...``), cffi checks
at build time that its layout of every struct matches the C compiler's.
"""

import importlib.util
from pathlib import Path

import cffi

HERE = Path(__file__).parent
HELPER_H = HERE / "csrc" / "helper.h"


def _load_cdef_module():
    # The package is not importable while it is being built: load by path.
    spec = importlib.util.spec_from_file_location("_nmfuse_cdef", HERE / "netmap" / "cdef.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cdef = _load_cdef_module()

ffibuilder = cffi.FFI()
ffibuilder.cdef(_cdef.cdef_source())
ffibuilder.cdef(HELPER_H.read_text())
ffibuilder.set_source(
    "nmfuse._helper",
    '#include "netmap_abi.h"\n#include "helper.h"\n#include "helper.c"\n',
    include_dirs=[str(_cdef.HEADER.parent), str(HELPER_H.parent)],
    extra_compile_args=["-O2", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent), verbose=True)
