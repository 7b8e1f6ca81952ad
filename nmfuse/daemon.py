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
"""

import json
import logging
import os
import signal
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import trio

from nmfuse.dev import userfds
from nmfuse.dev.channel import FuseChannel
from nmfuse.dev.session import Session
from nmfuse.dev.usermem import UserMemory
from nmfuse.drivers import all_drivers
from nmfuse.mem import MemoryAllocator, PoolConfig
from nmfuse.netmap.core import Core
from nmfuse.netmap.device import NetmapDevice

log = logging.getLogger("nmfuse")

RUN_DIR = Path("/run/nmfuse")
GRACE_SECONDS = 5  # what a program gets after Ctrl-C before it is killed


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


def runtime_key(path: str) -> str:
    """A file name for per-mount runtime files (status socket, pid)."""
    return os.path.abspath(path).strip("/").replace("/", "-") or "root"


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
        self._thread: threading.Thread | None = None

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
        except Exception:
            log.exception("request loop failed")

    def run(self, command: list[str] | None = None) -> int:
        """Start, serve until a signal or unmount (or, with ``command``,
        until that program exits), clean up.  Returns an exit code: 0, or
        the program's (128 + signal if a signal ended it)."""
        self.start()
        log.info("serving %s (%d MiB shared memory)", self.options.path, self.mem.memsize >> 20)
        try:
            return trio.run(self._main, command)
        finally:
            self.stop()

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

    async def _run_command(self, command: list[str]) -> int:
        """Run the program; Ctrl-C and SIGTERM go to it first, and it gets
        a grace period to close its ports before it is killed."""
        env = {**os.environ, "NETMAP_DEVICE": self.options.path}
        try:
            proc = await trio.lowlevel.open_process(command, env=env)
        except OSError as e:
            log.error("cannot run %s: %s", command[0], e.strerror)
            return 127
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                async def forward():
                    async for signum in signals:
                        proc.send_signal(signum)
                        await trio.sleep(GRACE_SECONDS)
                        proc.kill()
                nursery.start_soon(forward)
                await proc.wait()
                nursery.cancel_scope.cancel()
        return 128 - proc.returncode if proc.returncode < 0 else proc.returncode

    async def _watch_signals(self, scope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                scope.cancel()
                return

    async def _watch_serve_thread(self, scope) -> None:
        await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)
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
                       "requests": dict(stats.per_worker)})
        return report

    def stop(self) -> None:
        """Undo ``start``: detach the mount and end the FUSE connection, stop the
        drivers (last started first), remove the status socket.  A failed
        session shutdown is logged, not raised."""
        try:
            self.session.shutdown()
        except Exception:
            log.exception("shutdown of the FUSE session")
        for driver in reversed(self.core.drivers):
            driver.stop()
        self._socket_path.unlink(missing_ok=True)

