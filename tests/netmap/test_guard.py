"""The external memory guard: a truncated file under the daemon's mapping
gives zero pages instead of SIGBUS (run in a child: a broken guard kills it,
not the test run)."""

import os
import subprocess
import sys

CHILD = r"""
import mmap, os
from types import SimpleNamespace
from nmfuse._helper import ffi, lib
from nmfuse.netmap.extmem import _guard

fd = os.memfd_create("guard-test")
os.ftruncate(fd, 4 * 4096)
pages = mmap.mmap(fd, 4 * 4096, mmap.MAP_SHARED)
address = int(ffi.cast("uintptr_t", ffi.from_buffer(pages)))
pages[4096:4099] = b"abc"
release = _guard(SimpleNamespace(address=address, size=4 * 4096, page=4096, close=lambda: None))
view = ffi.cast("char *", address)
assert ffi.buffer(view + 4096, 3)[:] == b"abc"
os.ftruncate(fd, 4096)                      # pages 1..3 are gone
before = lib.nmh_guard_faults()
assert ffi.buffer(view + 4096, 3)[:] == b"\0\0\0"
view[3 * 4096] = b"x"
assert view[3 * 4096] == b"x" and lib.nmh_guard_faults() == before + 2
release()
print("survived")
"""


def test_a_truncated_file_under_a_guarded_range_reads_zeros():
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60,
                         cwd=os.getcwd())
    assert res.returncode == 0 and res.stdout.strip() == "survived", res.stderr


OUTSIDE = r"""
import mmap, os
from types import SimpleNamespace
from nmfuse._helper import ffi
from nmfuse.netmap.extmem import _guard

fd = os.memfd_create("guard-test")
os.ftruncate(fd, 4 * 4096)
pages = mmap.mmap(fd, 4 * 4096, mmap.MAP_SHARED)
address = int(ffi.cast("uintptr_t", ffi.from_buffer(pages)))
_guard(SimpleNamespace(address=address, size=4096, page=4096, close=lambda: None))   # page 0 only
os.ftruncate(fd, 0)
print(ffi.cast("char *", address)[0], flush=True)           # guarded: a zero page
ffi.cast("char *", address)[2 * 4096]                        # not guarded
print("not reached")
"""


def test_a_fault_outside_every_range_still_kills():
    res = subprocess.run([sys.executable, "-c", OUTSIDE], capture_output=True, text=True, timeout=60,
                         cwd=os.getcwd())
    assert res.returncode == -7 and res.stdout == "b'\\x00'\n", (res.returncode, res.stdout, res.stderr)
