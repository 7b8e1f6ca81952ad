"""Pages of a calling process, mapped into the daemon (for netmap's external memory).

A kernel driver takes a process's pages themselves (get_user_pages).  The
daemon can share them only where they belong to a file: a shared mapping
of a file, a memfd, a hugetlbfs file or MAP_SHARED|MAP_ANONYMOUS memory (a
shmem file) has an entry in /proc/PID/map_files that the daemon opens and
maps shared, so both see the same pages.  A private mapping, anonymous or
of a file, has no such view: its pages are the process's own copies, and
what the daemon mapped from the file would silently differ.  It is refused
with EFAULT, netmap's errno for pages it cannot get.

The mapping is laid out as in the process (each mapping it spans at the
same distance from the first), populated at once (so a page that cannot
be had, say from an empty hugepage pool, is an error now and not a fault
later), and identified by the file pages it covers: two processes that
map the same pages share one region, as netmap finds them by their pages.
"""

import errno
import logging
import mmap
import os
from dataclasses import dataclass

import cffi

log = logging.getLogger("nmfuse.dev")

PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_ALIGN = 1 << 30            # the largest huge page the layout keeps aligned

_ffi = cffi.FFI()
_ffi.cdef("""
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
int munmap(void *addr, size_t length);
int madvise(void *addr, size_t length, int advice);
""")
_libc = _ffi.dlopen(None)
_MAP_FAILED = _ffi.cast("void *", -1)
PROT_RW = 0x3                  # PROT_READ | PROT_WRITE
MAP_FIXED = 0x10
MAP_NORESERVE = 0x4000
MADV_POPULATE_WRITE = 23


def _efault(pid: int, why: str) -> OSError:
    log.info("pid %d: external memory refused: %s", pid, why)
    return OSError(errno.EFAULT, why)


@dataclass(frozen=True)
class Vma:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int

    @property
    def shared_rw(self) -> bool:
        """Whether the mapping is shared and writable (what the daemon can use)."""
        return self.perms[:2] == "rw" and self.perms[3] == "s"


@dataclass
class UserMapping:
    """``size`` bytes at ``address`` in the daemon, the same pages as the
    process's, of ``page`` bytes (a huge page for hugetlbfs); ``key``
    identifies them; ``close`` unmaps."""

    address: int
    size: int
    key: tuple
    page: int = PAGE
    _reserved: tuple = (0, 0)

    def close(self) -> None:
        """Unmap the daemon's view of the pages."""
        start, length = self._reserved
        if length:
            _libc.munmap(_ffi.cast("void *", start), length)
            self._reserved = (0, 0)


def read_maps(pid: int) -> list[Vma]:
    """The mappings of ``pid``.  Raises OSError (the process is gone)."""
    vmas = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            start, end = fields[0].split("-")
            vmas.append(Vma(int(start, 16), int(end, 16), fields[1], int(fields[2], 16)))
    return vmas


def map_user_range(pid: int, addr: int, size: int) -> UserMapping:
    """Map ``size`` bytes at ``addr`` of process ``pid`` into the daemon.

    Raises:
        OSError(EINVAL): ``addr`` is not page aligned.
        OSError(EFAULT): a page of the range is unmapped, private, not
            writable, beyond the end of its file, cannot be populated, or
            the process cannot be reached.
    """
    if addr % PAGE:
        raise OSError(errno.EINVAL, f"{addr:#x} is not page aligned")
    if size == 0:
        return UserMapping(0, 0, ("empty",))
    end = addr + size
    try:
        covering = [v for v in read_maps(pid) if v.end > addr and v.start < end]
    except OSError as e:
        raise _efault(pid, f"cannot read its mappings: {e}") from None
    if not covering or covering[0].start > addr or covering[-1].end < end or \
            any(a.end != b.start for a, b in zip(covering, covering[1:])):
        raise _efault(pid, f"{addr:#x}+{size:#x} is not mapped throughout")
    for v in covering:
        if not v.shared_rw:
            raise _efault(pid, f"{v.start:#x}-{v.end:#x} ({v.perms}) is not a shared writable mapping")
    fds = []
    try:
        files = []
        for v in covering:
            try:
                fd = os.open(f"/proc/{pid}/map_files/{v.start:x}-{v.end:x}", os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                raise _efault(pid, f"{v.start:#x}-{v.end:#x} cannot be opened: {e}") from None
            fds.append(fd)
            files.append(os.fstat(fd))
        key = []
        for v, st in zip(covering, files):
            lo, hi = max(v.start, addr), min(v.end, end)
            file_end = v.offset + hi - v.start
            if (st.st_size + PAGE - 1) // PAGE * PAGE < file_end:
                raise _efault(pid, f"{v.start:#x}-{v.end:#x} maps past the end of its file")
            key.append((st.st_dev, st.st_ino, v.offset + lo - v.start, hi - lo))
        align = min(MAX_ALIGN, max(max(st.st_blksize for st in files), PAGE))
        return _map(pid, covering, fds, align, addr, size, tuple(key))
    finally:
        for fd in fds:
            os.close(fd)


def _map(pid, covering, fds, align, addr, size, key) -> UserMapping:
    """Reserve the span at the alignment of the process's, then map each
    mapping in place and populate the range."""
    first = covering[0].start
    span = covering[-1].end - first
    raw_len = span + align
    raw = _libc.mmap(_ffi.NULL, raw_len, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if raw == _MAP_FAILED:
        raise OSError(_ffi.errno, "cannot reserve address space")
    raw_addr = int(_ffi.cast("uintptr_t", raw))
    # same remainder modulo align as the process's first mapping: huge pages stay aligned
    base = raw_addr + (first - raw_addr) % align
    if base > raw_addr:
        _libc.munmap(raw, base - raw_addr)
    if raw_addr + raw_len > base + span:
        _libc.munmap(_ffi.cast("void *", base + span), raw_addr + raw_len - base - span)
    mapping = UserMapping(base + addr - first, size, key, align, (base, span))
    try:
        for v, fd in zip(covering, fds):
            at = _libc.mmap(_ffi.cast("void *", base + v.start - first), v.end - v.start, PROT_RW,
                            mmap.MAP_SHARED | MAP_FIXED, fd, v.offset)
            if at == _MAP_FAILED:
                raise _efault(pid, f"{v.start:#x}-{v.end:#x}: mmap: {os.strerror(_ffi.errno)}")
        start = _ffi.cast("void *", mapping.address)
        if _libc.madvise(start, (size + PAGE - 1) // PAGE * PAGE, MADV_POPULATE_WRITE) != 0:
            raise _efault(pid, f"its pages cannot be populated: {os.strerror(_ffi.errno)}")
    except BaseException:
        mapping.close()
        raise
    return mapping
