"""The init of ``nmfuse run``'s pid namespace (see nmfuse/runner.py).

    python3 -I runinit.py ALIVE_FD -- COMMAND [ARGS...]

Runs as pid 1 of a fresh pid namespace: asks for SIGKILL when its parent
(the daemon) dies, waits until the parent writes "g" on ALIVE_FD (the
read end of a pipe whose write end only the parent holds: end of file
means it died or could not start: then the command never runs), mounts
a /proc of its own namespace, runs COMMAND, passes it the signals it
gets, reaps every orphan, and exits with COMMAND's status
(128 + signal if a signal ended it).  Its exit ends the namespace: the
kernel kills whatever COMMAND left running.

Standard library only: it starts with ``-I``, without the package.
"""

import ctypes
import os
import select
import signal
import sys

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

_libc = ctypes.CDLL(None, use_errno=True)


def _parent_gone(alive_fd: int) -> bool:
    p = select.poll()
    p.register(alive_fd, select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in p.poll(0))


def _own_proc() -> None:
    """A /proc that shows this pid namespace (in a mount namespace of our
    own, below the daemon's, so the daemon keeps its /proc)."""
    if _libc.unshare(CLONE_NEWNS) != 0 or \
            _libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        err = ctypes.get_errno()
        print(f"nmfuse run: keeping the host's /proc: {os.strerror(err)}", file=sys.stderr)


def main(argv: list[str]) -> int:
    """Run the command under this init; returns the exit status."""
    alive_fd = int(argv[0])
    command = argv[2:] if argv[1:2] == ["--"] else argv[1:]
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        print(f"nmfuse run: PR_SET_PDEATHSIG: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 127
    if _parent_gone(alive_fd):
        return 128 + signal.SIGKILL
    # Armed: now wait for the device ("g"); end of file is a daemon that
    # could not start (or died), and the command never runs.
    go = os.read(alive_fd, 1)  # no signal handler yet: nothing interrupts it
    os.close(alive_fd)
    if go != b"g":
        return 128 + signal.SIGKILL
    if os.getpid() == 1:
        _own_proc()
    child_pid = [0]

    def forward(signum, frame):
        if child_pid[0]:
            os.kill(child_pid[0], signum)

    for s in FORWARDED:
        signal.signal(s, forward)
    pid = os.fork()
    if pid == 0:
        for s in FORWARDED:
            signal.signal(s, signal.SIG_DFL)
        if os.getppid() != 1:  # no pid namespace (see runner): at least the program dies with us
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        try:
            os.execvp(command[0], command)
        except OSError as e:
            print(f"nmfuse: cannot run {command[0]}: {e.strerror}", file=sys.stderr)
        os._exit(127)
    child_pid[0] = pid
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 127  # cannot happen while the command runs: it is our child
        except InterruptedError:
            continue
        if reaped == pid:
            break
    if os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)  # what the command left behind (the namespace ends with us anyway)
        except ProcessLookupError:
            pass  # nothing was left
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
