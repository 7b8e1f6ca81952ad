"""What a dead daemon leaves, recognized and removed before a new one serves.

A daemon that dies without its shutdown (SIGKILL, the OOM killer, a crash
in the middle of start-up) can leave three things:

1. its FUSE mount on the path, now *dead*: the kernel ended the connection
   when the daemon's /dev/fuse fd closed, so every request on it fails with
   ENOTCONN (ECONNABORTED while the abort is in flight) -- statfs(2) sends
   one and tells;
2. the empty placeholder file it created when the path did not exist (its
   lease record says so), under that mount;
3. its status socket in /run/nmfuse.

``clean`` detaches (MNT_DETACH) dead nmfuse mounts at the path, removes the
placeholder the dead daemon recorded (only an empty regular file: never a
device node that appeared meanwhile) and the stale socket.  A mount that
still answers is left alone: its server is alive.  The daemon calls it
under the path's lease (so no live nmfuse daemon serves the path);
``nmfuse umount --dead`` calls it by hand.
"""

import errno
import logging
import os
import re
import stat
import threading
from pathlib import Path

from nmfuse.abi.fuse import UmountFlag, ffi, libc
from nmfuse.dev.channel import FSTYPE, fuse_mount_at
from nmfuse.lease import Record, alive, runtime_key

log = logging.getLogger("nmfuse")

DEAD_ERRNOS = (errno.ENOTCONN, errno.ECONNABORTED)  # a FUSE connection without its server
PROBE_SECONDS = 5  # a mount that neither answers nor fails by then is treated as alive (hung)
_RUN_SOCKET = re.compile(r"\.run(\d+)\.sock$")


def probe(path: str, timeout: float = PROBE_SECONDS) -> int | None:
    """statfs(2) of ``path`` in a helper thread: None if it answered (or did
    not answer within ``timeout``: a hung server is not a dead one), else
    its errno."""
    result: list[int | None] = [None]

    def ask() -> None:
        try:
            os.statvfs(path)
        except OSError as e:
            result[0] = e.errno

    t = threading.Thread(target=ask, name="nmfuse-probe", daemon=True)
    t.start()
    t.join(timeout)
    return None if t.is_alive() else result[0]


def dead_mount(path: str) -> bool:
    """Whether the top mount at ``path`` is an nmfuse FUSE mount whose
    daemon is gone."""
    return fuse_mount_at(path) == FSTYPE and probe(path) in DEAD_ERRNOS


def detach(path: str) -> None:
    """Lazily unmount the top mount at ``path`` (clients holding it get
    errors, the path is free at once).

    Raises:
        OSError: umount2 failed (not EINVAL: nothing mounted any more).
    """
    if libc.umount2(os.fsencode(path), UmountFlag.DETACH) != 0:
        err = ffi.errno
        if err != errno.EINVAL:
            raise OSError(err, f"detaching {path}: {os.strerror(err)}")


def _remove_placeholder(path: str) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != 0 or fuse_mount_at(path):
        log.info("%s is not an empty file any more: left in place", path)
        return False
    os.unlink(path)
    return True


def clean(path: str, record: Record | None, run_dir: Path, private: bool = False) -> list[str]:
    """Remove what dead daemons left at ``path``; returns one line per thing
    removed (also logged).  ``record`` is the dead daemon's lease record.

    With ``private`` (``nmfuse run``, in its own mount namespace) every
    nmfuse mount at the path is detached -- only this namespace's copy goes,
    the host's mount stays -- and of the host's files only stale ``nmfuse
    run`` sockets in ``run_dir`` are removed.

    Raises:
        OSError: a detach or unlink failed (not "already gone").
    """
    path = os.path.abspath(path)
    done = []
    while fuse_mount_at(path) == FSTYPE and (private or probe(path) in DEAD_ERRNOS):
        detach(path)
        done.append(f"detached the {'copied' if private else 'dead'} nmfuse mount at {path}")
    if not private and record is not None and record.placeholder and _remove_placeholder(path):
        done.append(f"removed the placeholder {path} left by pid {record.pid}")
    done += _sweep_sockets(None if private else path, run_dir)
    for line in done:
        log.warning("%s", line)
    return done


def _sweep_sockets(path: str | None, run_dir: Path) -> list[str]:
    """The path's own status socket (its daemon is dead: we hold the lease;
    none for ``nmfuse run``), and ``nmfuse run`` sockets whose daemon pid
    is gone."""
    if not run_dir.is_dir():
        return []
    done = []
    own = run_dir / f"{runtime_key(path)}.sock" if path is not None else None
    for sock in run_dir.glob("*.sock"):
        m = _RUN_SOCKET.search(sock.name)
        if sock == own or (m and not alive(int(m.group(1)))):
            sock.unlink(missing_ok=True)
            done.append(f"removed the stale status socket {sock}")
    return done
