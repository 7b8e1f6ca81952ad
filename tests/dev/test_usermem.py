"""nmfuse.dev.usermem: this process's own memory, reached through its pid
(and a thread's id, which is what FUSE reports) as the daemon reaches a
client's."""

import errno
import os
import subprocess
import sys
import threading

import pytest

from nmfuse.abi.fuse import ffi
from nmfuse.dev.usermem import UserMemory

UNMAPPED = 0x1000  # below mmap_min_addr: never mapped


def address(cdata) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def test_read():
    block = ffi.new("char[]", b"hello, netmap")
    assert UserMemory(os.getpid()).read(address(block), 13) == b"hello, netmap"


def test_write():
    block = ffi.new("char[16]")
    UserMemory(os.getpid()).write(address(block) + 2, b"ring")
    assert ffi.unpack(block, 8) == b"\0\0ring\0\0"


def test_a_thread_id_works_too():
    """FUSE reports the calling thread's id, not the process id."""
    block = ffi.new("char[]", b"thread")
    ready, done = threading.Event(), threading.Event()
    tid = []

    def helper():
        tid.append(threading.get_native_id())
        ready.set()
        done.wait(10)

    t = threading.Thread(target=helper)
    t.start()
    ready.wait(10)
    try:
        assert tid[0] != os.getpid()
        assert UserMemory(tid[0]).read(address(block), 6) == b"thread"
    finally:
        done.set()
        t.join()


def test_empty_transfers():
    block = ffi.new("char[1]")
    mem = UserMemory(os.getpid())
    assert mem.read(address(block), 0) == b""
    mem.write(address(block), b"")


@pytest.mark.parametrize("addr", [0, UNMAPPED])
def test_bad_address_read(addr):
    with pytest.raises(OSError) as e:
        UserMemory(os.getpid()).read(addr, 8)
    assert e.value.errno == errno.EFAULT


@pytest.mark.parametrize("addr", [0, UNMAPPED])
def test_bad_address_write(addr):
    with pytest.raises(OSError) as e:
        UserMemory(os.getpid()).write(addr, b"x")
    assert e.value.errno == errno.EFAULT


def test_address_zero_even_for_nothing():
    with pytest.raises(OSError) as e:
        UserMemory(os.getpid()).read(0, 0)
    assert e.value.errno == errno.EFAULT


def _end_of_a_mapping_before_a_hole() -> int:
    starts, ends = set(), []
    with open("/proc/self/maps") as f:
        for line in f:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            starts.add(start)
            ends.append((end, "r" in line.split()[1]))
    return next(end for end, readable in ends if readable and end not in starts)


def test_read_running_off_a_mapping():
    """A range that starts mapped and ends in a hole is a short transfer: EFAULT."""
    end = _end_of_a_mapping_before_a_hole()
    with pytest.raises(OSError) as e:
        UserMemory(os.getpid()).read(end - 4, 8)
    assert e.value.errno == errno.EFAULT
    assert len(UserMemory(os.getpid()).read(end - 4, 4)) == 4


def test_process_gone():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    block = ffi.new("char[8]")
    with pytest.raises(OSError) as e:
        UserMemory(int(child.stdout)).read(address(block), 8)
    assert e.value.errno == errno.EFAULT
