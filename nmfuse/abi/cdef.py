"""C headers as cffi's cdef reads them.

The ABI headers beside this file are the one declaration of every netmap
and FUSE struct.  This module is imported by the install-time build of the
C extensions (by file path, before the package exists), so it must not
import the package.
"""

import re
from pathlib import Path

HERE = Path(__file__).parent
NETMAP_HEADER = HERE / "netmap_abi.h"
FUSE_HEADER = HERE / "fuse_abi.h"

_INT_DEFINE = re.compile(r"#define\s+\w+\s+(0x[0-9a-fA-F]+|\d+)\s*(/\*.*\*/)?\s*$")


def cdef_source(header: Path, text: str | None = None) -> str:
    """``header``'s text (or ``text``) without the preprocessor lines cdef
    rejects (guards, includes); ``#define NAME <integer>`` lines are kept."""
    text = header.read_text() if text is None else text
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not _INT_DEFINE.match(stripped):
            continue
        kept.append(line)
    return "\n".join(kept)
