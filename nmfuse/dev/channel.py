"""The /dev/fuse connection: mount, read, reply, notify, passthrough backing.

A ``FuseChannel`` is one open /dev/fuse fd and at most one mount made with
it.  The mount's root is a *regular file* (rootmode S_IFREG|mode), so the
mount point is a file: an existing regular file or character node (such as
/dev/netmap) is mounted over, and a missing one is created as an empty
placeholder that ``unmount`` removes again.

Threads: ``read_into`` and ``send`` belong to one request thread; more
threads read the same connection through ``clone`` (FUSE_DEV_IOC_CLONE), a
channel of its own per thread.
``notify_poll`` may be called from any thread (each write to /dev/fuse is
one whole message, so writers need no lock between them; the lock only
keeps the fd from being closed under a writer).  ``unmount`` and ``abort``
may be called from another thread while the request thread is blocked in
``read_into``: ``abort`` makes that read return 0.
"""

import errno
import fcntl
import logging
import os
import re
import stat
import threading

from nmfuse.abi.fuse import DevIoctl, MountFlag, UmountFlag, ffi, libc
from nmfuse.dev import errors, reply
from nmfuse.dev.errors import DeviceError

__all__ = ["FuseChannel", "DeviceError", "fuse_mount_at"]

log = logging.getLogger("nmfuse.dev")

FUSE_DEVICE = "/dev/fuse"
FSTYPE = "fuse.nmfuse"
FUSECTL = "/sys/fs/fuse/connections"  # fusectl: one directory per connection, with an abort file
_FUSE_FSTYPES = ("fuse", "fuseblk")


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes come as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts():
    """(mount point, fstype, "major:minor") for each mount of this namespace."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            yield _unescape(fields[4]), right.split()[0], fields[2]


def fuse_mount_at(path: str) -> str | None:
    """The fstype of the last FUSE mount at ``path``, or None."""
    found = None
    for point, fstype, _ in _mounts():
        if point == path and (fstype in _FUSE_FSTYPES or fstype.startswith("fuse.")):
            found = fstype
    return found


class FuseChannel:
    """One /dev/fuse connection.  ``fusectl`` is where ``abort`` looks for
    (or mounts) the fusectl file system.

    Raises (from the constructor):
        NoFuseDevice: /dev/fuse is missing.
        NotRoot: /dev/fuse cannot be opened for lack of permission.
    """

    def __init__(self, device: str = FUSE_DEVICE, fusectl: str = FUSECTL):
        try:
            self._fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise errors.NoFuseDevice(device) from None
        except PermissionError as e:
            raise errors.NotRoot(f"opening {device}") from e
        self._lock = threading.Lock()
        self.path: str | None = None      # the mount point while mounted
        self.connection: int | None = None  # the kernel's id of the connection (fusectl name)
        self._placeholder = False         # we created the mount point file
        self._fusectl = fusectl          # where fusectl is (or gets) mounted
        self._clones: list[FuseChannel] = []

    @property
    def fd(self) -> int:
        """The /dev/fuse file descriptor of this connection."""
        return self._fd

    @property
    def mounted(self) -> bool:
        """Whether the connection is mounted (``path`` is set)."""
        return self.path is not None

    # ---- mount --------------------------------------------------------

    def mount(self, path: str, mode: int = 0o600, uid: int = 0, gid: int = 0) -> None:
        """Mount this connection on ``path`` as a regular file.

        ``mode`` (permission bits), ``uid`` and ``gid`` are those of the
        root until the first GETATTR answers them (the session answers the
        same).  The kernel sends INIT right away; read it next.

        Raises:
            AlreadyServed: a FUSE mount is already at ``path``.
            BadMountPoint: ``path`` is a directory, or its directory is missing.
            NotRoot: mount(2) said EPERM.
            MountFailed: any other mount(2) error.
        Nothing is left behind on failure (a created placeholder is removed).
        """
        if self.path is not None:
            raise RuntimeError(f"already mounted on {self.path}")
        path = os.path.abspath(path)
        if fuse_mount_at(path):
            raise errors.AlreadyServed(path)
        created = self._prepare_mount_point(path)
        data = (f"fd={self._fd},rootmode={stat.S_IFREG | (mode & 0o7777):o},user_id={uid},"
                f"group_id={gid},allow_other,default_permissions")
        if libc.mount(b"nmfuse", os.fsencode(path), FSTYPE.encode(),
                      MountFlag.NOSUID | MountFlag.NODEV, data.encode()) != 0:
            err = ffi.errno
            if created:
                os.unlink(path)
            if err == errno.EPERM:
                raise errors.NotRoot(f"mounting {path}")
            raise errors.MountFailed(path, err, os.strerror(err))
        self.path, self._placeholder = path, created
        self.connection = self._connection_of(path)
        log.info("mounted %s (FUSE connection %s)", path, self.connection)

    @staticmethod
    def _prepare_mount_point(path: str) -> bool:
        """Check the mount point; create it if missing.  Returns True if created."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            except FileNotFoundError:
                raise errors.BadMountPoint(path, "its directory does not exist") from None
            except PermissionError as e:
                raise errors.NotRoot(f"creating {path}") from e
            return True
        if stat.S_ISDIR(st.st_mode):
            raise errors.BadMountPoint(path, "it is a directory (the device is a file: name a file in it)")
        return False

    @staticmethod
    def _connection_of(path: str) -> int | None:
        """The connection id: the mount's device number as the kernel prints
        it (major << 20 | minor), read from mountinfo.  (stat() would ask the
        daemon for attributes before INIT is answered: a deadlock.)"""
        found = None
        for point, fstype, dev in _mounts():
            if point == path and fstype == FSTYPE:
                major, minor = (int(x) for x in dev.split(":"))
                found = major << 20 | minor
        return found

    def unmount(self, detach: bool = True) -> None:
        """Unmount, and remove the placeholder file if ``mount`` created it.

        With ``detach`` (MNT_DETACH) the path is free at once even while
        clients hold the file; the connection lives on until they close
        or ``abort`` ends it.  Unmounting what is already gone is not an
        error.

        Raises:
            OSError: umount2 failed (EBUSY without ``detach``); still mounted.
        """
        path = self.path
        if path is None:
            return
        if libc.umount2(os.fsencode(path), UmountFlag.DETACH if detach else 0) != 0:
            err = ffi.errno
            if err not in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
                raise OSError(err, f"unmounting {path}: {os.strerror(err)}")
        self.path = None
        if self._placeholder:
            try:
                os.unlink(path)
            except OSError as e:
                log.warning("could not remove the placeholder %s: %s", path, e.strerror)
        log.info("unmounted %s", path)

    def clone(self) -> "FuseChannel":
        """Another fd on this connection (FUSE_DEV_IOC_CLONE), for one more
        reader thread: the kernel gives each request to one reader, and the
        reply must go back through the fd that read it.  The clone has no
        mount of its own; ``abort`` and ``close`` of this channel reach it.

        Raises:
            OSError: the kernel refused (EINVAL: this channel is not mounted).
        """
        clone = FuseChannel(FUSE_DEVICE, self._fusectl)
        try:
            fcntl.ioctl(clone._fd, DevIoctl.CLONE, ffi.buffer(ffi.new("uint32_t *", self._fd)))
        except OSError:
            clone.close()
            raise
        clone.connection = self.connection
        with self._lock:
            self._clones.append(clone)
        return clone

    # ---- requests and replies (the request thread) -----------------------

    def read_into(self, buf: bytearray) -> int:
        """Read one request into ``buf``; returns its length, or 0 once the
        connection has ended (unmounted, aborted, or the fd retired).

        Raises:
            OSError: an unexpected read error (EINVAL: ``buf`` is too small).
        """
        while True:
            try:
                return os.readv(self._fd, (buf,))
            except OSError as e:
                if e.errno in (errno.EINTR, errno.ENOENT, errno.EAGAIN):
                    continue  # ENOENT: the request was interrupted before we read it
                if e.errno in (errno.ENODEV, errno.EBADF):
                    return 0
                raise

    def send(self, iov) -> bool:
        """Write one reply (an iovec list whose first element is the out header).

        Returns False if the kernel no longer wants it: the request was
        interrupted (ENOENT) or the connection ended (ENODEV).

        Raises:
            OSError: the kernel rejected the reply (EINVAL: malformed).
        """
        try:
            os.writev(self._fd, iov)
            return True
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENODEV, errno.EBADF):
                return False
            raise

    # ---- any thread --------------------------------------------------------

    def notify_poll(self, kh: int) -> bool:
        """Tell the kernel to poll again every waiter registered under ``kh``.
        Safe from any thread.  Returns False if the connection has ended."""
        iov = reply.notify_poll(kh)
        with self._lock:  # the fd may be closed by another thread meanwhile
            if self._fd < 0:
                return False
            return self.send(iov)

    def backing_open(self, fd: int) -> int:
        """Register ``fd`` as a passthrough backing file; returns its backing id.

        Raises:
            NoPassthrough: the kernel refused (EPERM: INIT did not enable
                passthrough; ENOTTY/EINVAL: a kernel without it).
            OSError: any other error.
        """
        arg = ffi.new("struct fuse_backing_map *")
        arg.fd = fd
        try:
            return fcntl.ioctl(self._fd, DevIoctl.BACKING_OPEN, ffi.buffer(arg))
        except OSError as e:
            if e.errno in (errno.EPERM, errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                raise errors.NoPassthrough(f"registering a backing file: {e.strerror}") from e
            raise

    def backing_close(self, backing_id: int) -> None:
        """Unregister a backing id (open files keep their backing file).

        Raises:
            OSError: unknown id, or the connection has ended.
        """
        fcntl.ioctl(self._fd, DevIoctl.BACKING_CLOSE, ffi.buffer(ffi.new("uint32_t *", backing_id)))

    def abort(self) -> bool:
        """End the connection so that clients get errors instead of waiting.

        Pending and later requests fail (ECONNABORTED, then ENOTCONN), poll
        waiters see POLLERR, existing mappings stay usable, and a blocked
        ``read_into`` returns 0.  First choice: fusectl's per-connection
        ``abort`` file (fusectl is mounted for the moment if it is not).
        Fallback: the fd is *retired*: /dev/null is duplicated over it, which
        drops our reference to the connection without freeing the fd number
        (a concurrent read or write then talks to /dev/null, never to a file
        opened meanwhile); the kernel ends the connection when no read is
        in progress any more.  Returns True if fusectl aborted it.
        """
        if self.connection is not None and self._abort_by_fusectl(self.connection):
            return True
        self._retire_fd()
        return False

    def _abort_by_fusectl(self, connection: int) -> bool:
        ctl = self._fusectl
        mounted_here = False
        if not any(point == ctl and fstype == "fusectl" for point, fstype, _ in _mounts()):
            if libc.mount(b"fusectl", os.fsencode(ctl), b"fusectl", 0, ffi.NULL) != 0:
                log.debug("cannot mount fusectl on %s: %s", ctl, os.strerror(ffi.errno))
                return False
            mounted_here = True
        try:
            with open(os.path.join(ctl, str(connection), "abort"), "w") as f:
                f.write("1")
            log.info("aborted FUSE connection %d", connection)
            return True
        except FileNotFoundError:
            return True  # the connection is already gone
        except OSError as e:
            log.debug("fusectl abort of connection %d: %s", connection, e.strerror)
            return False
        finally:
            if mounted_here:
                libc.umount2(os.fsencode(ctl), UmountFlag.DETACH)

    def _retire_fd(self) -> None:
        # The connection ends when its last fd goes: the clones' too.
        with self._lock:
            clones = list(self._clones)
        for clone in clones:
            clone._retire_fd()
        with self._lock:
            if self._fd < 0:
                return
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                os.dup2(null, self._fd, inheritable=False)
            finally:
                os.close(null)
        log.info("FUSE connection %s: /dev/fuse fd retired", self.connection)

    def close(self) -> None:
        """Close the fd and those of the clones (idempotent).  Call once no
        thread reads or sends."""
        with self._lock:
            fd, self._fd = self._fd, -1
            clones, self._clones = self._clones, []
        for clone in clones:
            clone.close()
        if fd >= 0:
            os.close(fd)

    def __repr__(self) -> str:
        return f"FuseChannel(fd={self._fd}, path={self.path!r}, connection={self.connection})"
