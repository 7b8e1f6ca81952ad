"""Who serves a mount path: a lease file per path, flock'ed by its daemon.

``/run/nmfuse/<key>.lease`` (``key`` as for the status socket) holds a
JSON record ``{"pid", "path", "placeholder"}`` written by the daemon that
serves the path, and that daemon holds an exclusive ``flock`` on it for
its whole life.  The kernel drops the lock when the process dies, however
it dies (SIGKILL, OOM killer), so:

* the lock is held       -> a live daemon serves the path: refuse, naming
                            its pid (``LeaseHeld``);
* the lock is free       -> nobody serves it; the record, if any, is what a
                            dead daemon left (its pid, and whether it made
                            the placeholder file the mount sits on), for the
                            janitor to clean before the new daemon mounts.

A clean stop removes the file.  Removing a locked file races with another
process that opened it just before: ``acquire`` checks after locking that
the file it locked is still the one at the path, and starts over if not.
"""

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from nmfuse.dev import DeviceError

RUN_DIR = Path("/run/nmfuse")
_TRIES = 100  # how often a lock held by a reader, not by a live daemon, is tried again


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseHeld(DeviceError):
    """A live daemon holds the lease of the path."""

    def __init__(self, path: str, pid: int | None):
        who = f"nmfuse pid {pid}" if pid else "another nmfuse daemon"
        super().__init__(f"{path} is already served by {who} (stop it with `nmfuse umount {path}`)")
        self.pid = pid


@dataclass(frozen=True)
class Record:
    """What a lease file says: the daemon's pid, the mount path, and whether
    that daemon created the placeholder file it mounted on."""

    pid: int
    path: str
    placeholder: bool = False

    @classmethod
    def parse(cls, text: str) -> "Record | None":
        """The record in ``text``, or None when it is empty or unreadable
        (a daemon killed between creating the file and writing it)."""
        try:
            d = json.loads(text)
            return cls(int(d["pid"]), str(d["path"]), bool(d.get("placeholder", False)))
        except (ValueError, KeyError, TypeError):
            return None


def runtime_key(path: str) -> str:
    """A file name for per-mount runtime files (lease, status socket)."""
    return os.path.abspath(path).strip("/").replace("/", "-") or "root"


def lease_path(path: str, run_dir: Path = RUN_DIR) -> Path:
    """The lease file of mount path ``path``."""
    return run_dir / f"{runtime_key(path)}.lease"


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class Lease:
    """The lease of one mount path, held from ``acquire`` until ``release``.

    ``previous`` is the record a dead daemon left (None if there was none).
    """

    def __init__(self, path: str, fd: int, file: Path, previous: Record | None):
        self.path = os.path.abspath(path)
        self._fd = fd
        self.file = file
        self.previous = previous

    @classmethod
    def acquire(cls, path: str, run_dir: Path = RUN_DIR) -> "Lease":
        """Take the lease of ``path`` and write this process's pid in it.

        Raises:
            LeaseHeld: a live process holds it (its pid in the message).
            OSError: the run directory cannot be made or the file opened.
        """
        run_dir.mkdir(parents=True, exist_ok=True)
        file = lease_path(path, run_dir)
        tries = _TRIES
        while True:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                record = Record.parse(_read(fd))
                os.close(fd)
                tries -= 1
                if record is not None and tries > 0 and not alive(record.pid):
                    time.sleep(0.01)  # a reader (``holder``) holds it shared for a moment
                    continue
                raise LeaseHeld(os.path.abspath(path), record.pid if record else None) from None
            try:
                same = os.stat(file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder removed it after we opened it: take the new one
        lease = cls(path, fd, file, Record.parse(_read(fd)))
        lease.write(placeholder=False)
        return lease

    def write(self, placeholder: bool) -> None:
        """Record this process as the server, and whether it creates (or
        created) the placeholder file of the mount."""
        data = json.dumps({"pid": os.getpid(), "path": self.path, "placeholder": placeholder}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Remove the lease file and drop the lock (idempotent)."""
        if self._fd < 0:
            return
        self.file.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _peek(path: str, run_dir: Path) -> tuple[bool, "Record | None"] | None:
    """(held by a live daemon, its record) of the lease of ``path``; None
    if there is no lease file."""
    try:
        fd = os.open(lease_path(path, run_dir), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            return True, Record.parse(_read(fd))
        return False, Record.parse(_read(fd))
    finally:
        os.close(fd)


def holder(path: str, run_dir: Path = RUN_DIR) -> int | None:
    """The pid of the live daemon holding the lease of ``path``, 0 if one
    holds it without a readable record, None if the lease is free."""
    peek = _peek(path, run_dir)
    if peek is None or not peek[0]:
        return None
    return peek[1].pid if peek[1] else 0


def dead_record(path: str, run_dir: Path = RUN_DIR) -> Record | None:
    """The record a dead daemon left for ``path`` (None if there is none or
    a live daemon holds the lease)."""
    peek = _peek(path, run_dir)
    return None if peek is None or peek[0] else peek[1]
