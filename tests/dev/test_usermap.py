"""Mapping a process's pages into the daemon (external memory), over real
mappings of this test process: what is shared, what is refused and why."""

import errno
import mmap
import os

import cffi
import pytest

from nmfuse.dev.usermap import PAGE, map_user_range, read_maps
from nmfuse.dev.usermem import UserMemory

_ffi = cffi.FFI()
_ffi.cdef("void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);"
          "int munmap(void *addr, size_t length);")
_libc = _ffi.dlopen(None)
ME = os.getpid()

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="/proc/PID/map_files needs root")


def _addr(m: mmap.mmap) -> int:
    return int(_ffi.cast("uintptr_t", _ffi.from_buffer(m)))


def _at(address: int, size: int) -> memoryview:
    return memoryview(_ffi.buffer(_ffi.cast("char *", address), size))


@pytest.fixture
def memfd_map():
    fd = os.memfd_create("test-usermap")
    os.ftruncate(fd, 16 * PAGE)
    m = mmap.mmap(fd, 16 * PAGE, mmap.MAP_SHARED)
    yield fd, m
    os.close(fd)


def test_shared_file_pages_are_the_same_on_both_sides(memfd_map):
    _, m = memfd_map
    um = UserMemory(ME).map_shared(_addr(m) + PAGE, 3 * PAGE)
    try:
        view = _at(um.address, 3 * PAGE)
        m[PAGE:PAGE + 5] = b"hello"
        assert bytes(view[:5]) == b"hello"
        view[PAGE:PAGE + 3] = b"abc"
        assert m[2 * PAGE:2 * PAGE + 3] == b"abc"
        assert um.size == 3 * PAGE and um.key[0][2:] == (PAGE, 3 * PAGE)
    finally:
        um.close()


def test_same_pages_mapped_twice_have_one_identity(memfd_map):
    fd, m = memfd_map
    again = mmap.mmap(fd, 16 * PAGE, mmap.MAP_SHARED)
    one = map_user_range(ME, _addr(m), 4 * PAGE)
    two = map_user_range(ME, _addr(again), 4 * PAGE)
    other = map_user_range(ME, _addr(again) + PAGE, 4 * PAGE)
    try:
        assert one.key == two.key != other.key
    finally:
        for um in (one, two, other):
            um.close()


def test_shared_anonymous_memory_is_shared():
    m = mmap.mmap(-1, 4 * PAGE, mmap.MAP_SHARED)
    um = map_user_range(ME, _addr(m), 4 * PAGE)
    try:
        m[100:103] = b"xyz"
        assert bytes(_at(um.address, PAGE)[100:103]) == b"xyz"
    finally:
        um.close()


def test_a_range_over_two_adjacent_mappings_is_contiguous():
    fds = [os.memfd_create(f"test-usermap-{i}") for i in range(2)]
    for fd in fds:
        os.ftruncate(fd, 2 * PAGE)
    base = _libc.mmap(_ffi.NULL, 4 * PAGE, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    start = int(_ffi.cast("uintptr_t", base))
    try:
        for i, fd in enumerate(fds):
            got = _libc.mmap(_ffi.cast("void *", start + 2 * i * PAGE), 2 * PAGE, 3,
                             mmap.MAP_SHARED | 0x10, fd, 0)
            assert int(_ffi.cast("uintptr_t", got)) == start + 2 * i * PAGE
        _at(start, 4 * PAGE)[2 * PAGE:2 * PAGE + 2] = b"ok"
        um = map_user_range(ME, start + PAGE, 2 * PAGE)
        try:
            assert bytes(_at(um.address, 2 * PAGE)[PAGE:PAGE + 2]) == b"ok"
            assert len(um.key) == 2
        finally:
            um.close()
    finally:
        _libc.munmap(base, 4 * PAGE)
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("flags", [mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, mmap.MAP_PRIVATE])
def test_private_memory_has_no_shared_view(memfd_map, flags):
    fd, _ = memfd_map
    m = mmap.mmap(-1 if flags & mmap.MAP_ANONYMOUS else fd, 4 * PAGE, flags)
    with pytest.raises(OSError) as e:
        map_user_range(ME, _addr(m), 4 * PAGE)
    assert e.value.errno == errno.EFAULT and "not a shared writable mapping" in str(e.value)


def test_read_only_shared_memory_is_refused(memfd_map):
    fd, _ = memfd_map
    m = mmap.mmap(fd, 4 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ)
    with pytest.raises(OSError) as e:
        map_user_range(ME, int(_ffi.cast("uintptr_t", _ffi.from_buffer(m, require_writable=False))), PAGE)
    assert e.value.errno == errno.EFAULT


def test_unaligned_pointer_is_einval_and_holes_are_efault(memfd_map):
    _, m = memfd_map
    with pytest.raises(OSError) as e:
        map_user_range(ME, _addr(m) + 8, PAGE)
    assert e.value.errno == errno.EINVAL
    # runs past a shared mapping into private pages (reserved right behind
    # it, so no other mapping of the process can land there)
    fd = os.memfd_create("test-usermap-edge")
    os.ftruncate(fd, PAGE)
    base = _libc.mmap(_ffi.NULL, 64 * PAGE, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    try:
        _libc.mmap(base, PAGE, 3, mmap.MAP_SHARED | 0x10, fd, 0)   # MAP_FIXED over the first page
        with pytest.raises(OSError) as e:
            map_user_range(ME, int(_ffi.cast("uintptr_t", base)), 64 * PAGE)
        assert e.value.errno == errno.EFAULT
    finally:
        _libc.munmap(base, 64 * PAGE)
        os.close(fd)
    with pytest.raises(OSError) as e:
        map_user_range(ME, PAGE, PAGE)              # nothing is mapped there
    assert e.value.errno == errno.EFAULT


def test_pages_past_the_end_of_the_file_are_refused():
    fd = os.memfd_create("test-usermap-short")
    os.ftruncate(fd, 2 * PAGE)
    base = _libc.mmap(_ffi.NULL, 4 * PAGE, 3, mmap.MAP_SHARED, fd, 0)
    try:
        with pytest.raises(OSError) as e:
            map_user_range(ME, int(_ffi.cast("uintptr_t", base)), 4 * PAGE)
        assert e.value.errno == errno.EFAULT and "past the end" in str(e.value)
    finally:
        _libc.munmap(base, 4 * PAGE)
        os.close(fd)


def test_a_gone_process_is_efault():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(OSError) as e:
        map_user_range(pid, PAGE, PAGE)
    assert e.value.errno == errno.EFAULT


def test_closing_unmaps(memfd_map):
    _, m = memfd_map
    um = map_user_range(ME, _addr(m), PAGE)
    address = um.address
    assert any(v.start <= address < v.end for v in read_maps(ME))
    um.close()
    assert not any(v.start <= address < v.end for v in read_maps(ME))
