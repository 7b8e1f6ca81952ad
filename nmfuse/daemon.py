"""The daemon: one memory region, the netmap core, and the FUSE device.

Threads:
* the *request threads* run the device layer's blocking serve loops (one
  per CPU: clones of the /dev/fuse channel, or with ``uring`` one pinned
  io_uring queue per CPU beside the /dev/fuse reader); every
  open/ioctl/poll/release is answered there, synchronously, under the core
  lock (netmap's syscalls never block, so neither does a request);
* the *main thread* runs trio: signals, the status socket, and the wait
  on interfaces (each driver's ``serve``).  It touches netmap state only
  under the lock.

Under ``nmfuse run`` the main thread also runs the program and passes its
exit status through.

Shutdown (SIGINT/SIGTERM, or the mount going away): detach the mount,
abort the FUSE connection so clients get errors instead of hanging, remove
what the daemon created, and return.

Before anything else, ``run`` takes the path's lease (``nmfuse.lease``: a
live daemon there refuses the start, naming its pid) and lets the janitor
remove what a dead one left (``nmfuse.janitor``: its dead mount, its
placeholder file, its status socket).

Exit statuses: 0 after a signal or an unmount; ``EXIT_FAILED`` when a
request worker or a task raised (one line on stderr, after unmounting);
under ``nmfuse run`` the program's status.
"""

import json
import logging
import os
import signal
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import trio

from nmfuse import janitor, runner
from nmfuse.dev import userfds
from nmfuse.dev.channel import FuseChannel
from nmfuse.dev.session import Session
from nmfuse.dev.usermem import UserMemory
from nmfuse.drivers import all_drivers
from nmfuse.lease import RUN_DIR, Lease, runtime_key
from nmfuse.mem import MemoryAllocator, PoolConfig
from nmfuse.netmap.core import Core
from nmfuse.netmap.device import NetmapDevice

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # trio's dependency before 3.11

log = logging.getLogger("nmfuse")

GRACE_SECONDS = 5  # what a program gets after Ctrl-C before it is killed
EXIT_FAILED = 70  # a worker or task raised while serving (sysexits' EX_SOFTWARE)


@dataclass(frozen=True)
class MountOptions:
    path: str = "/dev/netmap"
    mode: int = 0o600
    uid: int = 0
    gid: int = 0
    pools: PoolConfig = PoolConfig()
    taps: tuple[tuple[str, int], ...] = ()   # (name, queues) of --tap
    uring: bool = False                      # FUSE over io_uring where the kernel allows it
    workers: int | None = None               # /dev/fuse readers; None: one per CPU


def status_socket(path: str, private: bool = False) -> Path:
    """Where the daemon serving ``path`` answers ``nmfuse status``.  A daemon
    of ``nmfuse run`` serves a private mount, so its socket carries its pid
    and never collides with the host's daemon for the same path."""
    suffix = f".run{os.getpid()}" if private else ""
    return RUN_DIR / f"{runtime_key(path)}{suffix}.sock"


class Daemon:
    """Serves one mount point until stopped."""

    def __init__(self, options: MountOptions, private: bool = False):
        self.options = options
        self.private = private  # serving a private mount namespace (nmfuse run)
        self._socket_path = status_socket(options.path, private)
        self.mem = MemoryAllocator(options.pools)
        self.core = Core(self.mem, all_drivers(taps=options.taps))
        self.device = NetmapDevice(self.core, UserMemory, userfds.take)
        self.channel = FuseChannel()
        self.session = Session(self.channel, self.device, mode=options.mode, uid=options.uid,
                               gid=options.gid, backing_fd=self.mem.region.fd,
                               workers=options.workers or len(os.sched_getaffinity(0)),
                               uring=options.uring)
        self.core.wake = self.session.notify_poll
        self.core.fast_hooks = self.session.hooks   # syncs of bound files answered in C
        self._thread: threading.Thread | None = None
        self.failure: str | None = None  # one line: why a worker or task ended the daemon

    def start(self) -> None:
        """Start the drivers (e.g. create the ``--tap`` interfaces), mount
        and answer INIT.  Raises OSError (a driver) or the device layer's
        DeviceError; then nothing is left."""
        with ExitStack() as undo:
            for driver in self.core.drivers:
                driver.start()
                undo.callback(driver.stop)
            self.session.start(self.options.path)
            undo.pop_all()
        self._thread = threading.Thread(target=self._serve, name="nmfuse-requests", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.session.serve()
        except Exception as e:  # noqa: BLE001 -- the session shut the connection down and logged it; recorded
            self._failed("request worker", e)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Record the first failure as one line (the traceback goes to the
        debug log)."""
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        line = f"{what} failed: {type(exc).__name__}: {exc}"
        log.debug("%s", line, exc_info=exc)
        if self.failure is None:
            self.failure = line

    def prepare(self, undo: ExitStack) -> None:
        """Before mounting: under ``nmfuse mount`` take the path's lease
        (pushing its release on ``undo``) and clean what a dead daemon left
        there; under ``nmfuse run`` (a private mount namespace) detach this
        namespace's copy of any nmfuse mount at the path.

        Raises:
            LeaseHeld: a live daemon serves the path.
            OSError: the lease or the clean-up failed.
        """
        path = os.path.abspath(self.options.path)
        if self.private:
            janitor.clean(path, None, RUN_DIR, private=True)
            runner.private_parent(path)
            return
        lease = undo.enter_context(Lease.acquire(path))
        janitor.clean(path, lease.previous, RUN_DIR)
        # Recorded before the mount: a daemon killed half-way through start
        # leaves a record that names the placeholder for the next janitor.
        lease.write(placeholder=not os.path.lexists(path))

    def run(self, command: "runner.Init | None" = None) -> int:
        """Take over the path (``prepare``), start, serve until a signal or
        unmount (or, with ``command``, until that program exits), clean up.
        A ``command`` whose daemon cannot start is abandoned (never runs).
        Returns an exit code: 0, the program's (128 + signal if a signal
        ended it), or ``EXIT_FAILED`` (after one error line) when a worker
        or a task raised."""
        with ExitStack() as undo:
            if command is not None:
                undo.callback(command.close)  # never ran (a failed start): it exits without running
            self.prepare(undo)
            self.start()
            log.info("serving %s (%d MiB shared memory)", self.options.path, self.mem.memsize >> 20)
            try:
                code = trio.run(self._main, command)
            except Exception as e:  # noqa: BLE001 -- any task's failure: recorded, logged, exit status 70
                self._failed("the daemon", e)
                code = EXIT_FAILED
            finally:
                self.stop()
            if self.failure is not None:
                log.error("%s", self.failure)
                return EXIT_FAILED
            return code

    async def _main(self, command) -> int:
        code = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_serve_thread, nursery.cancel_scope)
            nursery.start_soon(self._status_server)
            for driver in self.core.drivers:
                nursery.start_soon(driver.serve)
            if command is None:
                nursery.start_soon(self._watch_signals, nursery.cancel_scope)
            else:
                code = await self._run_command(command)
                nursery.cancel_scope.cancel()
        return code

    async def _run_command(self, init: "runner.Init") -> int:
        """Let the program run under its init (``runner.Init``, made before
        the daemon: it dies with us, even on SIGKILL); Ctrl-C and SIGTERM go
        to it first, and it gets a grace period to close its ports before it is killed."""
        init.go()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                async def forward():
                    async for signum in signals:
                        init.signal(signum)
                        await trio.sleep(GRACE_SECONDS)
                        init.kill()
                nursery.start_soon(forward)
                try:
                    await trio.lowlevel.wait_readable(init.pidfd)
                except BaseException:
                    init.kill()  # the daemon is ending first (a failure): so does the program
                    raise
                finally:
                    code = init.wait()
                nursery.cancel_scope.cancel()
        return code

    async def _watch_signals(self, scope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                scope.cancel()
                return

    async def _watch_serve_thread(self, scope) -> None:
        await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)
        if self.failure is None:
            log.info("the mount went away: shutting down")
        scope.cancel()

    async def _status_server(self) -> None:
        sock_path = self._socket_path
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        sock_path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(sock_path))
        sock.listen(8)
        listener = trio.SocketListener(sock)
        try:
            await trio.serve_listeners(self._send_status, [listener])
        finally:
            sock_path.unlink(missing_ok=True)

    async def _send_status(self, stream) -> None:
        async with stream:
            report = self.status()
            await stream.send_all(json.dumps(report).encode() + b"\n")

    def status(self) -> dict:
        """What ``nmfuse status`` shows: the device's snapshot, with the mount
        path, the daemon's pid and whether the mount is private."""
        report = self.device.status()
        stats = self.session.statistics()
        report.update({"path": os.path.abspath(self.options.path), "pid": os.getpid(),
                       "private": self.private, "transport": stats.transport, "workers": stats.workers,
                       "requests": dict(stats.per_worker), "answered_in_c": stats.hooked})
        return report

    def stop(self) -> None:
        """Undo ``start``: detach the mount and end the FUSE connection, stop the
        drivers (last started first), remove the status socket.  A failed
        session shutdown is logged, not raised."""
        self.core.stop_fast()        # no wake-up from C once the device goes
        try:
            self.session.shutdown()  # logs its own errors; anything else is our bug, still stop the drivers
        except Exception:
            log.exception("shutdown of the FUSE session")
        for driver in reversed(self.core.drivers):
            driver.stop()
        self._socket_path.unlink(missing_ok=True)

