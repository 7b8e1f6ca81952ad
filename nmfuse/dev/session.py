"""A FUSE session: INIT, then blocking request loops calling a device handler.

Threading and shutdown model
----------------------------

    any thread                    request thread (serve)          kernel
    ----------                    ----------------------          ------
    start(path)  -- mount ------------------------------------->  INIT
                 <-- read INIT, answer it, BACKING_OPEN ---------
                                  loop:
                                    read_into(buffer)  <--------  request
                                    parse (views, no copies)
                                    handler.open/ioctl/poll/...
                                    send(one writev)  ---------->  reply
    notify_poll(kh) -- one write, no lock with the loop ------->  re-poll
    shutdown() -- unmount (detach), abort --------------------->  ENODEV
                                    read_into returns 0: return

* ``start`` runs in the caller's thread and answers INIT itself, so that a
  kernel without passthrough is reported before anything is served.
* ``serve`` is a plain blocking loop meant for one dedicated thread: a
  request costs one read into the preallocated buffer, a dict lookup, the
  handler, and one writev.  No event loop sits between the kernel and the
  handler (an event-loop wake-up per request doubles the round trip).
* Several workers: with ``workers`` > 1, ``serve`` clones the channel
  (FUSE_DEV_IOC_CLONE) and runs one more loop per clone in threads of its
  own; the kernel hands each request to one reader.  With ``uring``, one
  loop per CPU serves a FUSE-over-io_uring queue from a thread pinned to
  that CPU (nmfuse.dev.uring), and the loop on the channel's own fd stays
  for what never comes through a ring (FORGET, INTERRUPT, and anything
  before the rings are ready).  Every loop is a ``Worker``: its transport,
  its own request buffer, reply structs and counters; the handler is
  called from all of them at once and must lock what it shares.
* Request hooks: ``hooks`` (nmfuse.dev.hooks) lets the layer above answer
  a file's IOCTL and POLL in C; the /dev/fuse loops read through it, so a
  hooked request never reaches Python; so do the io_uring queues, inside
  their wait (csrc/uring.c).
* ``notify_poll`` may be called from any thread, including the request
  thread while a handler runs (a pipe write waking its peer's poller).
* ``shutdown`` may be called from any thread, any number of times: it
  detaches the mount (the path is free at once), then aborts the
  connection, so clients still holding the file get errors instead of a
  hang and ``serve`` returns.  Whichever of ``shutdown`` and ``serve``
  finishes last closes the /dev/fuse fd: never while the other uses it.
* ``serve`` also returns by itself on DESTROY, or when the mount goes away
  (an outside unmount with no client left).

Answers out of order
--------------------

An ioctl handler may return a ``DeferredAnswer`` (handler.py) instead of
its answer: a request that runs until another one ends it (netmap's
SYNC_KLOOP_START) must not hold a worker.  The session records it by the
request's unique and the worker goes on serving; the handler delivers the
answer later from any thread, and it is written to the transport the
request came from (a clone's requests are answered on the clone).

    worker: ioctl -> DeferredAnswer --> _pending[unique], serve the next
    any thread: deliver(errno, out) --> pop _pending[unique], one writev
    INTERRUPT of unique -------------> pop, answer EINTR, answer.interrupt()
    shutdown ------------------------> pop all, answer.interrupt(), no answer

An INTERRUPT that arrives before its request was deferred is remembered
(a bounded set) and applied when it is.  On an io_uring queue the answer
can only go through the entry that carried the request, so the worker
keeps that entry and waits for the answer; so that the CPU's queue does
not stall meanwhile (a STOP from the same CPU would wait for it forever),
each CPU starts with one spare entry (a queue of its own, in a thread
pinned to the CPU: ``per_worker`` lists it as ``uringN+K``, ``workers``
does not count it), and a worker that keeps its entry for a deferred
answer registers one more when that leaves its CPU a single free entry.
The kernel hands a request that found no free entry to the next entry
that commits, not to one registered later: a free entry must exist
before the deferral, not after it.
"""

import collections
import enum
import errno
import logging
import mmap
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType

from nmfuse.abi.fuse import (
    FOPEN_PASSTHROUGH,
    KERNEL_MINOR_VERSION,
    KERNEL_VERSION,
    InitFlag,
    Opcode,
    PollFlag,
)
from nmfuse.dev import request as rq
from nmfuse.dev.channel import FuseChannel
from nmfuse.dev.errors import DeviceError, NoPassthrough
from nmfuse.dev.handler import Caller, DeferredAnswer, DeviceHandler
from nmfuse.dev.reply import (
    IOVec,
    ReusedReplies,
    attr_out,
    reply_attr,
    reply_error,
    reply_init,
    reply_ioctl,
    reply_open,
)

log = logging.getLogger("nmfuse.dev")

# No WRITE ever reaches the daemon (passthrough serves read/write), so
# max_write only sizes the request buffer: the kernel insists that a read
# buffer holds in_header + fuse_write_in + max_write, and the largest
# request we get is an ioctl with its _IOC size (at most 16 KiB) of data.
MAX_WRITE = 32 * 1024
BUFFER_SIZE = MAX_WRITE + mmap.PAGESIZE
MAX_PAGES = MAX_WRITE // mmap.PAGESIZE  # also bounds an ioctl's in/out size
ATTR_VALID_NS = 24 * 3600 * 10**9  # attributes never change: let the kernel cache them
MAX_ERRNO = 4095  # the kernel rejects larger error values
_CALLER_CACHE_LIMIT = 4096
_EARLY_INTERRUPTS = 1024  # INTERRUPTs remembered for requests not (yet) deferred

_NO_REPLY = frozenset({int(Opcode.FORGET), int(Opcode.BATCH_FORGET), int(Opcode.INTERRUPT)})
_INIT, _DESTROY = int(Opcode.INIT), int(Opcode.DESTROY)
_SCHEDULE_NOTIFY = int(PollFlag.SCHEDULE_NOTIFY)


class Transport(enum.Enum):
    """How requests reach the workers."""

    DEV_FUSE = "/dev/fuse"
    IO_URING = "io_uring"


class Worker:
    """One request loop's own state: where it reads and writes (a channel,
    a clone of it, or an io_uring queue: anything with ``read_into`` and
    ``send``), the buffer requests land in, the reused reply structs, and
    its request counts.  Only its own thread touches it."""

    __slots__ = ("buffer", "counts", "cpu", "hooked", "name", "replies", "transport")

    def __init__(self, name: str, transport, cpu: int | None = None):
        self.name = name
        self.transport = transport
        self.buffer = rq.RequestBuffer(BUFFER_SIZE)
        self.replies = ReusedReplies()
        self.counts = [0] * 64  # by opcode, for the ones we parse
        self.cpu = cpu
        self.hooked = None      # uint64_t * of the requests its C hooks answered


class _Pending:
    """A deferred ioctl answer the session still owes: where it goes, and
    (io_uring) the event its worker waits on with the answer's iovec."""

    __slots__ = ("answer", "event", "iov", "out_size", "transport", "unique")

    def __init__(self, unique: int, transport, out_size: int, answer: DeferredAnswer, wait: bool):
        self.unique = unique
        self.transport = transport
        self.out_size = out_size
        self.answer = answer
        self.event = threading.Event() if wait else None
        self.iov: IOVec | None = None


class _State(enum.Enum):
    NEW = "waiting for INIT"
    RUNNING = "serving"
    DESTROYED = "destroyed"


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """Counters since the session was made (approximate while requests run)."""

    requests: Mapping[str, int] = field(default_factory=dict)  # by opcode name
    transport: str = "/dev/fuse"  # what serves requests now (a Transport value)
    workers: int = 1             # request loops serving (io_uring: one per CPU, plus /dev/fuse)
    per_worker: Mapping[str, int] = field(default_factory=dict)  # requests read by each loop
    errors: int = 0              # answers that carried an errno (header or ioctl result)
    parse_errors: int = 0        # requests that could not be parsed (short, unknown opcode)
    handler_exceptions: int = 0  # handler calls that raised something else than OSError
    notifications: int = 0       # poll notifications written
    hooked: int = 0              # IOCTL/POLL answered by C request hooks (not in ``requests``)
    deferred: int = 0            # ioctl answers deferred by the handler
    interrupted: int = 0         # deferred answers ended by an INTERRUPT (answered EINTR)


class Session:
    """Serves ``handler`` on ``channel``.

    ``mode``, ``uid`` and ``gid`` are what stat() of the device shows (the
    type is always a regular file).  ``backing_fd`` is the file every open
    maps through passthrough: all concurrent opens of one FUSE inode must
    share one backing file, so every OPEN gets the same one.  ``size`` is
    the st_size stat() shows; by default the backing file's size, because
    mmap wrappers that check the size (Python's mmap) refuse to map past it.
    ``workers`` is how many threads read /dev/fuse at once (one per CPU is
    the usual choice); ``uring`` asks for FUSE over io_uring, one queue per
    CPU, falling back to ``workers`` readers of /dev/fuse when the kernel
    does not allow it.

    Raises:
        OSError: ``backing_fd`` cannot be stat'ed (only when ``size`` is None).
    """

    def __init__(self, channel: FuseChannel, handler: DeviceHandler, *, mode: int = 0o600,
                 uid: int = 0, gid: int = 0, backing_fd: int, size: int | None = None,
                 workers: int = 1, uring: bool = False):
        self._channel = channel
        self._handler = handler
        self._mode, self._uid, self._gid = mode & 0o7777, uid, gid
        self._backing_fd = backing_fd
        self._backing_id: int | None = None
        self._main = Worker("fuse0", channel)  # the channel's own fd: INIT, then a loop
        self._workers = [self._main]
        self._want_workers = max(1, workers)
        self._want_uring = uring
        self._transport = Transport.DEV_FUSE
        self._uring_announced = False
        if size is None:
            size = os.fstat(backing_fd).st_size
        self._attr = attr_out(mode=stat.S_IFREG | self._mode, uid=uid, gid=gid, size=size,
                              time_ns=time.time_ns(), valid_ns=ATTR_VALID_NS)
        self._callers: dict[tuple[int, int, int], Caller] = {}
        self._handler_ioctl, self._handler_poll = handler.ioctl, handler.poll
        self.hooks = _request_hooks()
        self._state = _State.NEW
        self._init_failure: DeviceError | None = None
        self._tables = {
            _State.NEW: self._table_before_init(),
            _State.RUNNING: self._table_running(),
            _State.DESTROYED: self._table_destroyed(),
        }
        self._table = self._tables[_State.NEW]
        self._lock = threading.Lock()  # serving / shut down / fd closed
        self._serving = False
        self._shut_down = False
        self._failure: Exception | None = None  # the first exception a loop raised
        # deferred answers (see "Answers out of order")
        self._pending: dict[int, _Pending] = {}
        self._early_interrupts: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._pending_lock = threading.Lock()
        self._uring_free: dict[int, int] = {}   # per CPU: io_uring entries not holding a deferred answer
        self._spares: list[tuple[object, threading.Thread]] = []
        self._spare_workers: set[Worker] = set()  # spare io_uring entries (not counted as workers)
        # statistics
        self._errors = self._parse_errors = self._exceptions = self._notifications = 0
        self._deferred = self._interrupted = 0

    # ---- dispatch tables: the session rules live here --------------------

    def _table_before_init(self) -> dict[int, Callable]:
        table: dict[int, Callable] = {op: self._refuse for op in rq.REQUEST_TYPES}
        table.update({op: self._ignore for op in _NO_REPLY})
        table[_INIT] = self._init
        return table

    def _table_running(self) -> dict[int, Callable]:
        table: dict[int, Callable] = {op: self._ignore for op in _NO_REPLY}
        table.update({
            _INIT: self._refuse,  # a second INIT
            int(Opcode.GETATTR): self._getattr,
            int(Opcode.OPEN): self._open,
            int(Opcode.RELEASE): self._release,
            int(Opcode.FLUSH): self._flush,
            int(Opcode.IOCTL): self._ioctl,
            int(Opcode.POLL): self._poll,
            _DESTROY: self._destroy,
            int(Opcode.INTERRUPT): self._interrupt,
        })
        return table

    def _table_destroyed(self) -> dict[int, Callable]:
        return self._table_before_init() | {_INIT: self._refuse}

    def _enter(self, state: _State) -> None:
        self._state = state
        self._table = self._tables[state]

    # ---- public API ---------------------------------------------------------

    @property
    def backing_id(self) -> int | None:
        """The passthrough backing id of the memory file, once ``start`` has
        registered it; None before."""
        return self._backing_id

    @property
    def transport(self) -> Transport:
        """What serves requests: io_uring once its queues are registered."""
        return self._transport

    def start(self, path: str | None = None) -> None:
        """Mount on ``path`` (or use the channel's existing mount when None),
        answer INIT enabling passthrough, and register the backing file.

        Raises:
            DeviceError: any of its subclasses (NotRoot, AlreadyServed,
                BadMountPoint, NoPassthrough, MountFailed), or the mount
                vanished before INIT.
            OSError: registering the backing file failed otherwise.
        On failure a mount made here is undone; the channel's fd stays bound
        to its first mount, so a retry needs a new channel and session.
        """
        if self._state is not _State.NEW:
            raise RuntimeError(f"session already started ({self._state.value})")
        if path is not None:
            self._channel.mount(path, self._mode, self._uid, self._gid)
        elif not self._channel.mounted:
            raise ValueError("the channel is not mounted: give a path")
        try:
            self._serve_until_init()
            self._backing_id = self._channel.backing_open(self._backing_fd)
            if self.hooks is not None:
                self.hooks.set_notify_fd(self._channel.fd)
        except BaseException:
            if path is not None:
                self._channel.unmount(detach=True)
            raise
        log.info("serving %s: passthrough backing id %d", self._channel.path, self._backing_id)

    def serve(self) -> None:
        """Answer requests until DESTROY, unmount or ``shutdown``.  Blocks:
        run it in one dedicated thread, after ``start``.

        Raises:
            RuntimeError: ``start`` has not succeeded, or ``serve`` already runs.
            Exception: the first one any request loop raised (e.g. an
                unexpected OSError on /dev/fuse); the connection has been
                shut down and every loop has returned.
        """
        with self._lock:
            if self._state is not _State.RUNNING or self._backing_id is None:
                raise RuntimeError("serve() needs a successful start()")
            if self._serving:
                raise RuntimeError("serve() is already running")
            self._serving = True
        extra = self._start_workers()
        try:
            self._loop(self._main)
        except Exception as e:
            self._fail(self._main, e)  # ends the other loops, which the cleanup below joins
        finally:
            self._abandon_all()
            with self._pending_lock:
                spares, self._spares = self._spares, []
            for transport, thread in extra + spares:
                stop = getattr(transport, "stop", None)
                if stop is not None:  # an io_uring queue, whose connection may outlive this loop
                    stop()
                thread.join()
                transport.close()
            if self._main.transport is not self._channel:
                self._main.transport.close()
                self._main.transport = self._channel
            with self._lock:
                self._serving = False
                self._workers = [self._main]
                self._spare_workers.clear()
                close = self._shut_down
            if close:
                self._channel.close()
        if self._failure is not None:
            raise self._failure

    def _fail(self, worker: Worker, exc: Exception) -> None:
        """A loop raised: keep the first such exception for ``serve`` to
        raise, and end the connection so that every other loop returns."""
        log.error("request worker %s failed: %s: %s", worker.name, type(exc).__name__, exc,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        with self._lock:
            if self._failure is None:
                self._failure = exc
        self.shutdown()

    def _start_workers(self) -> list[tuple[object, threading.Thread]]:
        """The loops beside the main one, each in a thread of its own:
        io_uring queues if asked and allowed, else clones of the channel.
        Returns each one's transport and thread."""
        started: list[tuple[object, threading.Thread]] = []
        if self._want_uring:
            started = self._start_uring()
        if not started:
            for i in range(1, self._want_workers):
                try:
                    worker = Worker(f"fuse{i}", self._channel.clone())
                except OSError as e:
                    log.warning("cloning the FUSE channel: %s; serving with %d workers", e.strerror, i)
                    break
                thread = threading.Thread(target=self._serve_worker, args=(worker,),
                                          name=f"nmfuse-{worker.name}", daemon=True)
                self._workers.append(worker)
                thread.start()
                started.append((worker.transport, thread))
        log.info("%d request workers over %s", len(started) + 1, self._transport.value)
        return started

    def _start_uring(self) -> list[tuple[object, threading.Thread]]:
        """One io_uring queue per CPU, each served from a thread pinned to
        it, or [] (logged) when the kernel does not allow it: then /dev/fuse
        serves everything."""
        from nmfuse.dev import uring  # its C part is needed only when asked for

        def serve(queue) -> None:
            self._serve_uring(queue, spare=False)

        if not self._uring_announced:
            return []  # logged by _init
        self._transport = Transport.IO_URING  # set before the first queue serves
        started = uring.start_queues(self._channel.fd, BUFFER_SIZE, serve)
        if isinstance(started, str):
            self._transport = Transport.DEV_FUSE
            refused = uring.refuse(self._channel.fd)  # requests waiting for the rings go to /dev/fuse
            log.warning("FUSE over io_uring unavailable (%s%s): serving through /dev/fuse", started,
                        "" if refused is None else f"; {refused}")
            return []
        self._main.transport = uring.StoppableReader(self._channel)
        for queue, _ in started:  # each CPU keeps a free entry while another holds a deferred answer
            self._add_spare(queue.cpu)
        return started

    def _uring_allowed(self, offered: InitFlag) -> bool:
        """Whether to announce io_uring in INIT (else one log line says why)."""
        from nmfuse.dev import uring
        reason = uring.unavailable()
        if reason is None and not offered & InitFlag.OVER_IO_URING:
            reason = "the kernel does not offer it in INIT"
        if reason is None:
            reason = uring.probe()
        if reason is not None:
            log.warning("FUSE over io_uring unavailable (%s): serving through /dev/fuse", reason)
            return False
        return True

    def _serve_worker(self, worker: Worker) -> None:
        try:
            self._loop(worker)
        except Exception as e:
            self._fail(worker, e)

    def notify_poll(self, kh: int) -> None:
        """Wake pollers waiting on ``kh`` (the kernel polls them again).
        Any thread; a no-op once the connection has ended."""
        if self._channel.notify_poll(kh):
            self._notifications += 1

    def shutdown(self) -> None:
        """Detach the mount and end the connection: clients holding the file
        get errors (ENOTCONN, ECONNABORTED, POLLERR), ``serve`` returns.
        Any thread; idempotent.  Errors are logged, not raised."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        try:
            self._channel.unmount(detach=True)
        except OSError as e:
            log.error("%s", e)
        for worker in list(self._workers):
            stop = getattr(worker.transport, "stop", None)
            if stop is not None:  # an io_uring queue: its wait returns, whatever abort does
                stop()
        if not self._channel.abort():
            log.info("fusectl unavailable: the connection ends when the request loop stops")
        self._abandon_all()
        with self._lock:
            close = not self._serving
        if close:
            self._channel.close()

    def statistics(self) -> SessionStatistics:
        """The counters so far, as a frozen ``SessionStatistics`` (``requests``
        lists only the opcodes seen, summed over the workers)."""
        requests: dict[str, int] = {}
        workers = list(self._workers)
        for worker in workers:
            for op, count in enumerate(list(worker.counts)):
                if count:
                    name = Opcode(op).name
                    requests[name] = requests.get(name, 0) + count
        return SessionStatistics(requests=MappingProxyType(requests), transport=self._transport.value,
                                 workers=len([w for w in workers if w not in self._spare_workers]),
                                 per_worker=MappingProxyType({w.name: sum(w.counts) for w in workers}),
                                 errors=self._errors,
                                 parse_errors=self._parse_errors, handler_exceptions=self._exceptions,
                                 notifications=self._notifications + (self.hooks.notified if self.hooks else 0),
                                 hooked=sum(w.hooked[0] for w in workers if w.hooked is not None),
                                 deferred=self._deferred, interrupted=self._interrupted)

    # ---- the loop -------------------------------------------------------

    def _serve_until_init(self) -> None:
        while self._state is _State.NEW:
            if not self._serve_one():
                raise DeviceError(f"{self._channel.path}: the mount went away before INIT")
        if self._init_failure is not None:
            raise self._init_failure

    def _serve_one(self) -> bool:
        """Read and answer one request (INIT time).  False once the connection ended."""
        main = self._main
        n = self._channel.read_into(main.buffer.data)
        if n == 0:
            return False
        try:
            req = rq.parse(main.buffer, n)
        except rq.ParseError as e:
            self._reject(e, main)
            return True
        main.counts[req.op] += 1
        iov = self._table[req.op](req, main)
        if iov is not None:
            self._channel.send(iov)
        return True

    def _loop(self, worker: Worker) -> None:
        """One worker's request loop: the hot path of every client syscall.

        On a file descriptor (the channel or a clone) the raw readv/writev
        are called directly; on any error the transport's own read_into/send
        repeat the call and decide (retry, end, raise).  An io_uring queue
        has only read_into/send.  Everything is bound to locals once.  The
        table is looked up per request: DESTROY, answered by one worker,
        changes it for all.
        """
        transport = worker.transport
        fd = getattr(transport, "fd", None)
        readv, writev, read_into, send = os.readv, os.writev, transport.read_into, transport.send
        if fd is None:  # not a file descriptor: the transport's own calls are the fast path
            def readv(_fd, buffers, read_into=read_into):
                return read_into(buffers[0])

            def writev(_fd, iov, send=send):
                send(iov)
        elif self.hooks is not None:  # hooked requests are answered inside the read
            readv, worker.hooked = self.hooks.reader(worker.buffer.data)
        buffer, parse, parse_error = worker.buffer, rq.parse, rq.ParseError
        data = buffer.data
        buffers = (data,)
        counts = worker.counts
        debug = log.isEnabledFor(logging.DEBUG)  # read once: no logging cost per request
        while True:
            try:
                n = readv(fd, buffers)
            except OSError:
                n = read_into(data)
            if n == 0:
                log.info("FUSE connection ended")
                return
            try:
                req = parse(buffer, n)
            except parse_error as e:
                self._reject(e, worker)
                continue
            if debug:
                log.debug("%s: %s", worker.name, req)
            op = req.op
            counts[op] += 1
            try:
                iov = self._table[op](req, worker)
            except Exception:  # our bug, not the handler's (those are caught per opcode)
                log.exception("answering %s", req)
                self._exceptions += 1
                iov = worker.replies.error(req.header.unique, errno.EIO)
            if iov is not None:
                try:
                    writev(fd, iov)
                except OSError:
                    send(iov)
            if op == _DESTROY:
                log.info("DESTROY: the kernel ended the session")
                return

    def _reject(self, e: rq.ParseError, worker: Worker) -> None:
        self._parse_errors += 1
        if isinstance(e, rq.UnknownOpcode):
            log.debug("%s", e)
        else:
            log.warning("bad request: %s", e)
        if e.unique is not None:
            worker.transport.send(self._error(e.unique, e.errno, worker))

    # ---- answers ----------------------------------------------------------

    def _error(self, unique: int, err: int, worker: Worker):
        self._errors += 1
        return worker.replies.error(unique, err)

    def _refuse(self, req: rq.Request, worker: Worker):
        log.debug("%s refused: %s", req, self._state.value)
        return self._error(req.header.unique, errno.EIO, worker)

    def _ignore(self, req: rq.Request, worker: Worker) -> None:
        return None

    def _caller(self, header) -> Caller:
        key = (header.pid, header.uid, header.gid)
        return self._callers.get(key) or self._new_caller(key)

    def _new_caller(self, key: tuple[int, int, int]) -> Caller:
        # One Caller per (thread, uid, gid), made once: thread ids get reused,
        # so the cache is only bounded, never wrong.
        if len(self._callers) >= _CALLER_CACHE_LIMIT:
            self._callers.clear()
        caller = self._callers[key] = Caller(*key)
        return caller

    def _failed(self, req: rq.Request, exc: BaseException, in_header: bool = True) -> int:
        """The errno answering a handler that raised ``exc``: an OSError's
        own errno, EIO (logged with the traceback) for anything else."""
        if isinstance(exc, OSError) and exc.errno and 0 < exc.errno <= MAX_ERRNO:
            if in_header and exc.errno == errno.ENOSYS:
                # In the out header ENOSYS means "operation not implemented":
                # the kernel stops sending it (opens would then bypass us).
                return errno.EIO
            return exc.errno
        self._exceptions += 1
        log.error("handler failed on %s", req, exc_info=exc)
        return errno.EIO

    def _init(self, req: rq.Init, worker: Worker):
        a = req.arg
        log.info("INIT: kernel FUSE %d.%d flags=%#x flags2=%#x", a.major, a.minor, a.flags, a.flags2)
        if a.major != KERNEL_VERSION:
            self._init_failure = DeviceError(f"the kernel speaks FUSE {a.major}.{a.minor}, "
                                             f"not {KERNEL_VERSION}.x")
            self._enter(_State.DESTROYED)
            return self._error(req.header.unique, errno.EPROTO, worker)
        offered = InitFlag.from_words(a.flags, a.flags2 if a.flags & InitFlag.INIT_EXT else 0)
        if not offered & InitFlag.PASSTHROUGH:
            self._init_failure = NoPassthrough(f"INIT from FUSE {a.major}.{a.minor} does not offer it")
            self._enter(_State.DESTROYED)
            return self._error(req.header.unique, errno.EPROTO, worker)
        wanted = offered & (InitFlag.INIT_EXT | InitFlag.PASSTHROUGH | InitFlag.MAX_PAGES)
        if self._want_uring and self._uring_allowed(offered):
            # Announced, the mode holds for the connection's life (the module
            # parameter may change meanwhile), and requests wait for the rings
            # instead of racing them; ``_start_uring`` undoes it on failure.
            wanted |= InitFlag.OVER_IO_URING
            self._uring_announced = True
        self._enter(_State.RUNNING)
        return reply_init(req.header.unique, minor=KERNEL_MINOR_VERSION,
                          max_readahead=a.max_readahead, flags=wanted, max_write=MAX_WRITE,
                          max_pages=MAX_PAGES, max_stack_depth=1)

    def _getattr(self, req: rq.Getattr, worker: Worker):
        return reply_attr(req.header.unique, self._attr)

    def _open(self, req: rq.Open, worker: Worker):
        h = req.header
        try:
            fh = self._handler.open(self._caller(h), req.arg.flags)
            # Every open gets the same backing file: the kernel refuses an open
            # whose backing differs from one already open on this inode.
            return reply_open(h.unique, fh, FOPEN_PASSTHROUGH, self._backing_id)
        except Exception as e:
            return self._error(h.unique, self._failed(req, e), worker)

    def _release(self, req: rq.Release, worker: Worker):
        try:
            self._handler.release(req.arg.fh)
        except Exception as e:
            return self._error(req.header.unique, self._failed(req, e), worker)
        return worker.replies.empty(req.header.unique)

    def _flush(self, req: rq.Flush, worker: Worker):
        return worker.replies.empty(req.header.unique)

    def _ioctl(self, req: rq.Ioctl, worker: Worker):
        # The handler's errno goes in fuse_ioctl_out.result, with its bytes:
        # the out header stays 0 so that the kernel copies them back.
        h, a = req.header, req.arg
        out_size = a.out_size
        key = (h.pid, h.uid, h.gid)
        caller = self._callers.get(key) or self._new_caller(key)
        try:
            result = self._handler_ioctl(caller, a.fh, a.cmd, a.arg,
                                         req.data() if a.in_size else b"", out_size)
            if result.__class__ is not tuple:
                return self._defer(worker, h.unique, result, out_size)
            err, out = result
            if err and not 0 < err <= MAX_ERRNO:
                raise ValueError(f"ioctl handler returned errno {err}: want 0 or a positive errno")
            return self._ioctl_answer(worker, h.unique, err, out, out_size)
        except Exception as e:
            return self._ioctl_answer(worker, h.unique, self._failed(req, e, in_header=False), b"", out_size)

    def _ioctl_answer(self, worker: Worker, unique: int, err: int, out, out_size: int) -> IOVec:
        """The one way an ioctl is answered: ``err`` (0 or a positive errno)
        in fuse_ioctl_out.result, with at most ``out_size`` bytes of ``out``."""
        if err:
            self._errors += 1
        return worker.replies.ioctl(unique, err, out, out_size)

    # ---- deferred answers ------------------------------------------------

    def _defer(self, worker: Worker, unique: int, answer: DeferredAnswer, out_size: int):
        """Record ``answer`` for ``unique``; returns None (the worker goes on)
        or, on an io_uring queue, the answer's iovec once it came."""
        if not isinstance(answer, DeferredAnswer):
            raise TypeError(f"ioctl handler returned {answer!r}: want (errno, out) or a DeferredAnswer")
        uring = worker.cpu is not None
        pending = _Pending(unique, worker.transport, out_size, answer, wait=uring)
        with self._pending_lock:
            self._deferred += 1
            interrupted = self._early_interrupts.pop(unique, False) is None
            self._pending[unique] = pending
            if uring:
                self._uring_free[worker.cpu] -= 1
                spare = self._uring_free[worker.cpu] <= 1 and not self._shut_down
        if uring and spare:
            self._add_spare(worker.cpu)
        answer.when_done(lambda err, out: self._deliver(pending, err, out))
        if interrupted or self._shut_down:
            self._abandon(pending, errno.EINTR if interrupted else None)
        if not uring:
            return None
        pending.event.wait()
        with self._pending_lock:
            self._uring_free[worker.cpu] += 1
        return pending.iov

    def _deliver(self, pending: _Pending, err: int, out) -> None:
        """The handler's answer for ``pending``: sent, unless it was abandoned."""
        with self._pending_lock:
            if self._pending.pop(pending.unique, None) is None:
                return  # interrupted or shut down: nobody waits
        if err and not 0 < err <= MAX_ERRNO:
            log.error("deferred ioctl answer with errno %d: answering EIO", err)
            err, out = errno.EIO, b""
        if err:
            self._errors += 1
        self._send_pending(pending, reply_ioctl(pending.unique, err, out, pending.out_size))

    def _abandon(self, pending: _Pending, err: int | None) -> None:
        """The caller no longer waits: answer ``err`` (EINTR) or nothing
        (shutdown), and tell the handler."""
        with self._pending_lock:
            if self._pending.pop(pending.unique, None) is None:
                return
        if err is not None:
            self._interrupted += 1
            self._send_pending(pending, reply_error(pending.unique, err))
        elif pending.event is not None:
            pending.event.set()
        pending.answer.interrupt()

    def _abandon_all(self) -> None:
        with self._pending_lock:
            pending = list(self._pending.values())
        for p in pending:
            self._abandon(p, None)

    def _send_pending(self, pending: _Pending, iov: IOVec) -> None:
        if pending.event is not None:  # its io_uring worker sends it through its entry
            pending.iov = iov
            pending.event.set()
            return
        try:
            pending.transport.send(iov)
        except OSError as e:
            log.error("sending the deferred answer of %d: %s", pending.unique, e.strerror)

    def _interrupt(self, req: rq.Interrupt, worker: Worker) -> None:
        """INTERRUPT: a deferred answer is answered EINTR at once; a request
        not deferred (yet) is remembered, the others are answered anyway."""
        unique = req.arg.unique
        with self._pending_lock:
            pending = self._pending.get(unique)
            if pending is None:
                self._early_interrupts[unique] = None
                if len(self._early_interrupts) > _EARLY_INTERRUPTS:
                    self._early_interrupts.popitem(last=False)
        if pending is not None:
            self._abandon(pending, errno.EINTR)

    def _add_spare(self, cpu: int) -> None:
        """One more io_uring entry for ``cpu``, in a thread of its own."""
        from nmfuse.dev import uring
        started = uring.start_queues(self._channel.fd, BUFFER_SIZE, partial(self._serve_uring, spare=True),
                                     cpus=[cpu])
        if isinstance(started, str):
            log.error("io_uring queue %d: no spare entry (%s): it waits for a deferred answer", cpu, started)
            return
        with self._pending_lock:
            self._spares.extend(started)

    def _serve_uring(self, queue, spare: bool) -> None:
        """Serve one io_uring entry of ``queue.cpu`` (a spare one is not
        counted among the workers)."""
        with self._lock:
            name = f"uring{queue.cpu}+{len(self._spare_workers)}" if spare else f"uring{queue.cpu}"
            worker = Worker(name, queue, cpu=queue.cpu)
            self._workers.append(worker)
            if spare:
                self._spare_workers.add(worker)
        if self.hooks is not None:  # hooked requests are answered inside the queue's wait
            worker.hooked = queue.use_hooks(self.hooks)
        with self._pending_lock:
            self._uring_free[queue.cpu] = self._uring_free.get(queue.cpu, 0) + 1
        self._serve_worker(worker)

    def _poll(self, req: rq.Poll, worker: Worker):
        h, a = req.header, req.arg
        key = (h.pid, h.uid, h.gid)
        caller = self._callers.get(key) or self._new_caller(key)
        kh = a.kh if a.flags & _SCHEDULE_NOTIFY else None
        try:
            return worker.replies.poll(h.unique, self._handler_poll(caller, a.fh, a.events, kh))
        except Exception as e:
            return self._error(h.unique, self._failed(req, e), worker)

    def _destroy(self, req: rq.Destroy, worker: Worker):
        self._enter(_State.DESTROYED)
        return worker.replies.empty(req.header.unique)


def _request_hooks():
    """A table of C request hooks, or None (logged) without the C extension."""
    try:
        from nmfuse.dev.hooks import RequestHooks
    except ImportError as e:
        log.warning("C request hooks unavailable (%s): every request goes through Python", e)
        return None
    return RequestHooks()
