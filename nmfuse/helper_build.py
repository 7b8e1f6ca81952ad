"""Build script of the C helper (``nmfuse._helper``), run by cffi at install.

It compiles ``csrc/helper.c`` against ``netmap/netmap_abi.h``. Because the
netmap structs are declared in full (no ``...``), cffi also checks at build
time that its idea of every layout matches the C compiler's.
"""

from pathlib import Path

import cffi

HERE = Path(__file__).parent
HEADER = HERE / "netmap" / "netmap_abi.h"
HELPER_H = HERE / "csrc" / "helper.h"
HELPER_C = HERE / "csrc" / "helper.c"


def _netmap_cdef() -> str:
    # Same filtering as nmfuse.netmap.abi.cdef_source, without importing the
    # package (it is not importable while it is being built).
    import re

    keep = re.compile(r"#define\s+\w+\s+(0x[0-9a-fA-F]+|\d+)\s*$")
    lines = HEADER.read_text().splitlines()
    return "\n".join(l for l in lines if not l.strip().startswith("#") or keep.match(l.strip()))


ffibuilder = cffi.FFI()
ffibuilder.cdef(_netmap_cdef())
ffibuilder.cdef(HELPER_H.read_text())
ffibuilder.set_source(
    "nmfuse._helper",
    '#include "netmap_abi.h"\n#include "helper.h"\n#include "helper.c"\n',
    include_dirs=[str(HEADER.parent), str(HELPER_H.parent)],
    extra_compile_args=["-O2", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent), verbose=True)
