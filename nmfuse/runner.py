"""``nmfuse run -- COMMAND``: one program against a private /dev/netmap.

What ``nmfuse run`` sets up, and why nothing outlives it on the host:

    nmfuse run (the daemon, host pid namespace, private mount namespace)
      |  FUSE mount of PATH, visible only in this mount namespace; when PATH
      |  did not exist, its placeholder lives in a private tmpfs (below)
      `- init (pid 1 of a new pid namespace, nmfuse/runinit.py)
           `- COMMAND (and whatever it starts)

* Mount namespace: ``enter_private_namespaces`` unshares it and makes every
  mount private, so the FUSE mount never propagates to the host.  The
  kernel tears the namespace down with its last process.
* No placeholder on the host: files are shared between mount namespaces,
  so a missing PATH cannot simply be created.  ``private_parent`` mounts an
  overlay over PATH's directory in this namespace only (upper layer on a
  tmpfs, lower layer the real directory, its sub-mounts bound again on
  top): the placeholder is created in the tmpfs, the host's directory is
  never written, and the overlay goes with the namespace whatever ends it.
* The command dies with ``nmfuse run``, even on SIGKILL (as
  ``unshare --fork --pid --kill-child``): it runs under a small init, pid 1
  of a new pid namespace, which asks for SIGKILL when its parent dies
  (PR_SET_PDEATHSIG).  When pid 1 of a pid namespace dies the kernel kills
  every other process in it, so no descendant escapes, not even one that
  daemonized.  PDEATHSIG follows the *thread* that forked, so the init is
  forked from the main thread (which lives as long as the daemon), never
  from a worker thread; the init also checks a pipe from its parent once
  PDEATHSIG is armed, for a parent that died before that.
"""

import logging
import os
import re
import subprocess
import sys
from contextlib import ExitStack

import cffi

log = logging.getLogger("nmfuse")

_ffi = cffi.FFI()
_ffi.cdef("""
int unshare(int flags);
int setns(int fd, int nstype);
int umount2(const char *target, int flags);
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
""")
_libc = _ffi.dlopen(None)

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV = 2, 4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
RUNINIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runinit.py")
_UNSAFE_IN_OPTIONS = re.compile(r"[,:\\\n]")  # what overlayfs' option string cannot carry


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = _ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter_private_namespaces() -> None:
    """Enter a new mount namespace whose mounts are all private.  Call it
    before any thread starts (the kernel refuses a new mount namespace to
    a multi-threaded process).

    Raises:
        OSError: the kernel refuses (not root, or no namespaces).
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", _ffi.NULL, MS_REC | MS_PRIVATE, _ffi.NULL), "making / private")


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _submounts(directory: str) -> list[str]:
    """Mount points below ``directory`` that are not below another one of
    them (binding those again brings the rest: MS_REC), relative to it."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point.startswith(directory.rstrip("/") + "/"):
                points.append(os.path.relpath(point, directory))
    points = sorted(set(points))
    top = [p for p in points if not any(p.startswith(q + "/") for q in points if q != p)]
    return top


def private_parent(path: str) -> bool:
    """Make ``path``'s directory writable in this mount namespace only (an
    overlay with a tmpfs upper layer), so that the mount's placeholder never
    reaches the host.  Returns True if done.  Does nothing (returns False)
    when ``path`` exists (it is mounted over), or its directory is /,
    missing, or cannot be named in overlay options; and when the kernel
    refuses a step (no overlayfs, say: logged, what was mounted is undone).
    Then the placeholder is made in the real directory, as under ``nmfuse
    mount``.  Call it in the private mount namespace.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if os.path.lexists(path) or parent == "/" or _UNSAFE_IN_OPTIONS.search(parent) or not os.path.isdir(parent):
        return False  # (a missing directory: the mount says so, in its words)
    st = os.stat(parent)
    subs = _submounts(parent)
    lower = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with ExitStack() as undo:
            below = f"/proc/self/fd/{lower}"
            _check(_libc.mount(b"tmpfs", parent.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0700"),
                   f"tmpfs on {parent}")
            undo.callback(_libc.umount2, parent.encode(), MNT_DETACH)
            upper, work = os.path.join(parent, "upper"), os.path.join(parent, "work")
            os.mkdir(upper)
            os.mkdir(work)
            os.chmod(upper, st.st_mode & 0o7777)
            os.chown(upper, st.st_uid, st.st_gid)
            options = f"lowerdir={below},upperdir={upper},workdir={work}".encode()
            _check(_libc.mount(b"nmfuse-run", parent.encode(), b"overlay", 0, options), f"overlay on {parent}")
            undo.callback(_libc.umount2, parent.encode(), MNT_DETACH)  # the bindings below go with it
            for rel in subs:
                _check(_libc.mount(f"{below}/{rel}".encode(), os.path.join(parent, rel).encode(), _ffi.NULL,
                                   MS_BIND | MS_REC, _ffi.NULL), f"binding {parent}/{rel} again")
            undo.pop_all()
    except OSError as e:
        log.warning("%s: no private overlay (%s): the placeholder of %s is made in the real directory",
                    parent, e.strerror, path)
        return False
    finally:
        os.close(lower)
    log.info("%s: private overlay (the placeholder of %s stays in this mount namespace)", parent, path)
    return True


class Init:
    """The init of the command's pid namespace.

    Made before any thread starts, from the main thread (PDEATHSIG follows
    the thread that forks, and the kernel creates no thread while this
    thread's children go to another pid namespace): this thread enters a
    new pid namespace for its children, forks the init, and comes back.
    The init waits, armed, until ``go`` (the device is mounted) and then
    runs the command; if we end before ``go``, it exits without running it.
    """

    def __init__(self, command: list[str], env: dict):
        self.command = command
        alive_r, self._alive_w = os.pipe2(os.O_CLOEXEC)
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
                isolated = True
            except OSError as e:
                # Then the program is killed with us (PDEATHSIG, in runinit) but
                # not what it started: no namespace whose end takes them along.
                log.warning("no pid namespace for the program (%s): what it starts may outlive nmfuse run",
                            e.strerror)
                isolated = False
            try:
                self._proc = subprocess.Popen([sys.executable, "-I", RUNINIT, str(alive_r), "--", *command],
                                              env=env, pass_fds=(alive_r,))
            finally:
                if isolated:
                    _check(_libc.setns(own, CLONE_NEWPID), "back to our pid namespace")
        except BaseException:
            os.close(self._alive_w)
            raise
        finally:
            os.close(own)
            os.close(alive_r)
        self.pid = self._proc.pid
        self.pidfd = os.pidfd_open(self.pid)

    def go(self) -> None:
        """Let the init run the command."""
        os.write(self._alive_w, b"g")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the init (it passes it to the command)."""
        self._proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the init: the kernel kills the whole pid namespace."""
        self._proc.kill()

    def wait(self) -> int:
        """Reap the init (call once ``pidfd`` is readable); its exit status
        is the command's (128 + signal if a signal ended it)."""
        code = self._proc.wait()
        self.close()
        return 128 - code if code < 0 else code

    def close(self) -> None:
        """Release the init: one that never got ``go`` sees the pipe close
        and exits without running the command; reap it (idempotent)."""
        if self._alive_w < 0:
            return
        os.close(self._alive_w)
        self._alive_w = -1
        self._proc.wait()
        os.close(self.pidfd)
