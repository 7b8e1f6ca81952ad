"""Build script of the FUSE-over-io_uring extension (``nmfuse._uring``),
run by cffi at install, or by hand: ``python3 nmfuse/uring_build.py``
compiles it in place.

A module apart from the netmap helper: it knows FUSE and nothing of
netmap (it belongs to the device layer: nmfuse.dev.uring, and the request
hooks of nmfuse.dev.hooks), and it uses only the kernel's io_uring system
calls, so it needs no library.
"""

import importlib.util
from pathlib import Path

import cffi

HERE = Path(__file__).parent
URING_H = HERE / "csrc" / "uring.h"
HOOK_H = HERE / "csrc" / "hook.h"      # request hooks by file handle (nmfuse.dev.hooks)


def _load_cdef_module():
    # The package is not importable while it is being built: load by path.
    spec = importlib.util.spec_from_file_location("_nmfuse_abi_cdef", HERE / "abi" / "cdef.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cdef = _load_cdef_module()

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
