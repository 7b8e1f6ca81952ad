"""Build script of the FUSE-over-io_uring extension (``nmfuse._uring``),
run by cffi at install, or by hand: ``python3 nmfuse/uring_build.py``
compiles it in place.

A module apart from the netmap helper: it knows FUSE and nothing of
netmap (it belongs to the device layer, nmfuse.dev.uring), and it uses
only the kernel's io_uring system calls, so it needs no library.
"""

from pathlib import Path

import cffi

HERE = Path(__file__).parent
URING_H = HERE / "csrc" / "uring.h"

ffibuilder = cffi.FFI()
ffibuilder.cdef(URING_H.read_text())
ffibuilder.set_source(
    "nmfuse._uring",
    '#include <stdint.h>\n#include <stddef.h>\n#include "uring.h"\n#include "uring.c"\n',
    include_dirs=[str(URING_H.parent)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent), verbose=True)
