"""Build script of the FUSE-over-io_uring extension (``nmfuse._uring``),
run by cffi at install, or by hand: ``python3 nmfuse/uring_build.py``
compiles it in place.

A module apart from the netmap helper: it knows FUSE and nothing of
netmap (it belongs to the device layer: nmfuse.dev.uring, and the request
hooks of nmfuse.dev.hooks), and it uses only the kernel's io_uring system
calls, so it needs no library.
"""

import runpy
from pathlib import Path
from types import SimpleNamespace

import cffi

HERE = Path(__file__).parent
URING_H = HERE / "csrc" / "uring.h"
HOOK_H = HERE / "csrc" / "hook.h"      # request hooks by file handle (nmfuse.dev.hooks)



# The package is not importable while it is being built: run cdef.py by path.
_cdef = SimpleNamespace(**runpy.run_path(str(HERE / "abi" / "cdef.py")))

ffibuilder = cffi.FFI()
# the FUSE structs from their one declaration, then the queue's own
ffibuilder.cdef(_cdef.cdef_source(_cdef.FUSE_HEADER))
ffibuilder.cdef(_cdef.cdef_source(URING_H))
ffibuilder.cdef(_cdef.cdef_source(HOOK_H))
ffibuilder.set_source(
    "nmfuse._uring",
    '#include "uring.h"\n#include "hook.h"\n#include "uring.c"\n#include "hook.c"\n',
    include_dirs=[str(URING_H.parent), str(_cdef.HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent), verbose=True)
