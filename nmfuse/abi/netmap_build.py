"""Build script of ``nmfuse.abi._netmap``, run by cffi at install.

The module is the one cffi view of ``netmap_abi.h``: every netmap struct
and constant.  The header is compiled with the cdef (no ``...`` in it), so
cffi checks at build time that its layout of every struct matches the C
compiler's.  The C helper includes this ffi, so both share struct types.
"""

import runpy
from pathlib import Path
from types import SimpleNamespace

import cffi

HERE = Path(__file__).parent



# The package is not importable while it is being built: run cdef.py by path.
cdef = SimpleNamespace(**runpy.run_path(str(HERE / "cdef.py")))

ffibuilder = cffi.FFI()
ffibuilder.cdef(cdef.cdef_source(cdef.NETMAP_HEADER))
ffibuilder.set_source("nmfuse.abi._netmap", '#include "netmap_abi.h"\n',
                      include_dirs=[str(HERE)], extra_compile_args=["-std=gnu11"])

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent.parent), verbose=False)
