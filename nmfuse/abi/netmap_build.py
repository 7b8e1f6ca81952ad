"""Build script of ``nmfuse.abi._netmap``, run by cffi at install.

The module is the one cffi view of ``netmap_abi.h``: every netmap struct
and constant.  The header is compiled with the cdef (no ``...`` in it), so
cffi checks at build time that its layout of every struct matches the C
compiler's.  The C helper includes this ffi, so both share struct types.
"""

import importlib.util
from pathlib import Path

import cffi

HERE = Path(__file__).parent


def _load_cdef_module():
    # The package is not importable while it is being built: load by path.
    spec = importlib.util.spec_from_file_location("_nmfuse_abi_cdef", HERE / "cdef.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cdef = _load_cdef_module()

ffibuilder = cffi.FFI()
ffibuilder.cdef(cdef.cdef_source(cdef.NETMAP_HEADER))
ffibuilder.set_source("nmfuse.abi._netmap", '#include "netmap_abi.h"\n',
                      include_dirs=[str(HERE)], extra_compile_args=["-std=gnu11"])

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent.parent), verbose=False)
