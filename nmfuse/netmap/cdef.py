"""The netmap header as cffi's cdef reads it.

Imported by the install-time build of the C helper (by file path, before
the package exists) and by the tests; it must not import the package.
"""

import re
from pathlib import Path

HEADER = Path(__file__).with_name("netmap_abi.h")

_INT_DEFINE = re.compile(r"#define\s+\w+\s+(0x[0-9a-fA-F]+|\d+)\s*$")


def cdef_source(text: str | None = None) -> str:
    """The header's text without the preprocessor lines cdef rejects
    (guards, includes); ``#define NAME <integer>`` lines are kept."""
    text = HEADER.read_text() if text is None else text
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not _INT_DEFINE.match(stripped):
            continue
        kept.append(line)
    return "\n".join(kept)
