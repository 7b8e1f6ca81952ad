"""The calling process's file descriptors, taken as a kernel driver would
take them from its file table (netmap's eventfd_fget).

A program hands netmap eventfds by number (the sync-kloop's ioeventfd and
irqfd); the numbers mean something only in its file table.  The daemon
gets its own reference to the same open file with pidfd_open(2) and
pidfd_getfd(2) (root, same pid namespace as FUSE's in_header.pid), so the
program's writes and the daemon's reads meet on one eventfd.
"""

import errno
import os

from nmfuse.abi.fuse import ffi, libc

EVENTFD_LINK = "anon_inode:[eventfd]"


def _tgid(pid: int) -> int:
    """The process of thread ``pid`` (FUSE reports the calling thread; a
    pidfd names a process)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass  # gone: reported as ESRCH below
    raise OSError(errno.ESRCH, f"process of thread {pid} not found")


def take(pid: int, fds: list[int], eventfd_only: bool = True) -> list[int]:
    """Duplicates, in the daemon, of the descriptors ``fds`` of the process
    of thread ``pid`` (close them when done).  With ``eventfd_only``, each
    must be an eventfd.

    Raises:
        OSError: EBADF (not an open descriptor there), EINVAL (not an
            eventfd), ESRCH (the process is gone), EPERM.  Nothing is left
            open on failure.
    """
    pidfd = libc.pidfd_open(_tgid(pid), 0)
    if pidfd < 0:
        err = ffi.errno
        raise OSError(err, f"pidfd_open({pid}): {os.strerror(err)}")
    taken: list[int] = []
    try:
        for fd in fds:
            dup = libc.pidfd_getfd(pidfd, fd, 0)
            if dup < 0:
                err = ffi.errno
                raise OSError(err, f"fd {fd} of {pid}: {os.strerror(err)}")
            taken.append(dup)
            os.set_inheritable(dup, False)
            if eventfd_only and os.readlink(f"/proc/self/fd/{dup}") != EVENTFD_LINK:
                raise OSError(errno.EINVAL, f"fd {fd} of {pid} is not an eventfd")
    except BaseException:
        for dup in taken:
            os.close(dup)
        raise
    finally:
        os.close(pidfd)
    return taken
