"""FUSE over io_uring: one queue per CPU, each served by a thread pinned to it.

The kernel queues a request on the ring of the CPU its caller runs on, so
a queue served on that CPU answers without a cross-CPU wake-up.  A queue
is a transport for the session's request loop, like a /dev/fuse channel:

    read_into(buffer) -> n     commit the answer of the previous request
                               and wait for the next one (C, GIL released),
                               which lands in ``buffer`` laid out exactly
                               as a /dev/fuse read would put it
    send(iov)                  copy the answer into the entry's buffers

so parsing and dispatch are the same code for both transports.

``start_queues`` makes the queues, each in its own thread (the kernel
completes a queue's commands in the context of the thread that submits
them), and hands each thread to the session's loop once every possible
CPU has its entry registered: until then, and for FORGET and INTERRUPT
always, requests come through /dev/fuse, which the session keeps reading.
The session announces FUSE_OVER_IO_URING in INIT only after ``probe``
made a ring: the announcement keeps the connection in io_uring mode
whatever the module parameter becomes later (unannounced, every commit
would fail the moment it is switched off), and requests wait for the
rings instead of racing them.  If a queue then fails, ``refuse`` ends the
wait: the kernel falls back to /dev/fuse for the connection.
"""

import errno
import logging
import os
import select
import threading
from collections.abc import Callable
from pathlib import Path

from nmfuse.abi.fuse import ffi as fuse_ffi
from nmfuse.dev import request as rq

log = logging.getLogger("nmfuse.dev")

ENABLE_PARAMETER = Path("/sys/module/fuse/parameters/enable_uring")
POSSIBLE_CPUS = Path("/sys/devices/system/cpu/possible")
_SETUP_TIMEOUT = 10.0


def _cpu_list(text: str) -> list[int]:
    """"0-3,5" -> [0, 1, 2, 3, 5] (the kernel's cpu list format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def possible_cpus() -> list[int]:
    """Every CPU the kernel may ever run a caller on: each needs a queue."""
    try:
        return _cpu_list(POSSIBLE_CPUS.read_text())
    except OSError as e:
        log.warning("cannot read %s (%s): a queue for each of the %d CPUs counted", POSSIBLE_CPUS, e.strerror,
                    os.cpu_count() or 1)
        return list(range(os.cpu_count() or 1))


def unavailable() -> str | None:
    """Why this kernel will not serve FUSE over io_uring, or None."""
    try:
        enabled = ENABLE_PARAMETER.read_text().strip()
    except FileNotFoundError:
        return "this kernel has no FUSE over io_uring (no fuse parameter enable_uring)"
    except OSError as e:
        return f"{ENABLE_PARAMETER}: {e.strerror}"
    if enabled not in ("Y", "1"):
        return f"{ENABLE_PARAMETER} is {enabled}"
    try:
        from nmfuse import _uring  # noqa: F401  built with the package
    except ImportError as e:
        return f"the io_uring extension is not built ({e})"
    return None


def probe() -> str | None:
    """Why no io_uring with 128-byte SQEs can be made here, or None."""
    from nmfuse._uring import lib
    err = lib.nmu_probe()
    return None if err == 0 else f"io_uring_setup: {os.strerror(-err)}"


def refuse(fuse_fd: int) -> str | None:
    """Take the connection out of io_uring mode after INIT announced it (a
    registration the kernel refuses does that), so that requests waiting
    for the rings are served through /dev/fuse.  None, or what failed."""
    from nmfuse._uring import lib
    err = lib.nmu_refuse(fuse_fd)
    return None if err == -errno.EINVAL else f"leaving io_uring mode: {os.strerror(-err)}"


def _layout():
    """The request-header facts the C copy needs, from the one declaration
    of the FUSE structs."""
    from nmfuse._uring import ffi
    layout = ffi.new("struct nmu_layout *")
    layout.in_header_size = fuse_ffi.sizeof("struct fuse_in_header")
    layout.len_offset = fuse_ffi.offsetof("struct fuse_in_header", "len")
    layout.opcode_offset = fuse_ffi.offsetof("struct fuse_in_header", "opcode")
    for op, cls in rq.REQUEST_TYPES.items():
        if cls.ARG is not None and op < len(layout.op_size):
            layout.op_size[op] = fuse_ffi.sizeof(cls.ARG)
    return layout


class UringQueue:
    """One queue (one CPU): an io_uring with one registered entry.

    ``read_into`` and ``send`` belong to the thread that opened it;
    ``stop`` and ``close`` may come from another (``close`` only once that
    thread has returned).
    """

    def __init__(self, fuse_fd: int, cpu: int, payload_size: int, layout):
        from nmfuse._uring import ffi, lib
        self._ffi, self._lib = ffi, lib
        self.cpu = cpu
        self._layout = layout
        self._headers = ffi.new("struct fuse_uring_req_header *")
        self._payload = ffi.new("uint8_t[]", payload_size)
        q = self._q = ffi.new("struct nmu_queue *")
        q.fuse_fd, q.qid, q.headers, q.payload, q.payload_size = fuse_fd, cpu, self._headers, self._payload, payload_size
        q.layout = layout
        self._in_out = self._headers.in_out
        self._ent = self._headers.ring_ent_in_out
        self._answered = True
        self._dst: tuple[object, object] | None = None  # (buffer, its cffi pointer)

    def use_hooks(self, hooks):
        """Answer the requests ``hooks`` (a RequestHooks) take inside the
        wait, in C; returns the counter of those it answered (a ``uint64_t *``)."""
        self._q.hooks = hooks.table
        return self._ffi.addressof(self._q, "hooked")

    def open(self) -> None:
        """Make the ring and register the entry; in the serving thread.

        Raises:
            OSError: the kernel refused (EOPNOTSUPP: disabled, EINVAL: ...).
        """
        err = self._lib.nmu_queue_open(self._q)
        if err < 0:
            raise OSError(-err, f"io_uring queue {self.cpu}: {os.strerror(-err)}")

    def read_into(self, buf: bytearray) -> int:
        """Answer the previous request and read the next into ``buf``;
        returns its length, or 0 once the connection ended or ``stop``.

        Raises:
            OSError: an unexpected io_uring error.
        """
        if not self._answered:
            self._answer_error(errno.EIO)  # every request handed out gets an answer
        dst = self._dst
        if dst is None or dst[0] is not buf:
            dst = self._dst = (buf, self._ffi.from_buffer(buf))
        while True:
            n = self._lib.nmu_queue_next(self._q, dst[1], len(buf))
            if n >= 0:
                self._answered = n == 0
                return n
            if n == -errno.EMSGSIZE:
                log.warning("io_uring queue %d: a request larger than the buffer: EIO", self.cpu)
                self._answer_error(errno.EIO)
                continue
            raise OSError(-n, f"io_uring queue {self.cpu}: {os.strerror(-n)}")

    def send(self, iov) -> bool:
        """Put an answer (out header, then the body) in the entry's buffers;
        the next ``read_into`` commits it."""
        ffi = self._ffi
        ffi.memmove(self._in_out, iov[0], len(iov[0]))
        offset = 0
        payload = self._payload
        for part in iov[1:]:
            n = len(part)
            if n:
                ffi.memmove(payload + offset, part, n)
                offset += n
        self._ent.payload_sz = offset
        self._answered = True
        return True

    def _answer_error(self, err: int) -> None:
        header = fuse_ffi.new("struct fuse_out_header *")
        header.len = fuse_ffi.sizeof(header[0])
        header.error = -err
        header.unique = self._q.commit_id
        self.send([fuse_ffi.buffer(header)])

    def stop(self) -> None:
        """Make the serving thread's wait return 0 (within half a second)."""
        self._q.stop = 1

    def close(self) -> None:
        """Close the ring; the kernel cancels the registered entry."""
        self._lib.nmu_queue_close(self._q)

    def __repr__(self) -> str:
        return f"UringQueue(cpu={self.cpu})"


class StoppableReader:
    """The /dev/fuse reader beside the rings.  Little comes that way once
    the rings serve (FORGET, INTERRUPT), and a read blocked on /dev/fuse
    keeps the connection alive even after its fd is retired: a request then
    queued on a ring nobody serves would wait forever.  So each read first
    polls the fd together with an eventfd that ``stop`` signals."""

    def __init__(self, channel):
        self._channel = channel
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(channel.fd, select.POLLIN)
        self._poll.register(self._wake, select.POLLIN)
        self._stopped = False
        self._lock = threading.Lock()  # stop() from any thread never writes to a closed fd

    def read_into(self, buf: bytearray) -> int:
        """As ``FuseChannel.read_into``, or 0 once ``stop`` was called."""
        while not self._stopped:
            ready = dict(self._poll.poll())
            if self._stopped:
                break
            if self._channel.fd in ready:
                return self._channel.read_into(buf)
        return 0

    def send(self, iov) -> bool:
        """Write an answer to the channel (see ``FuseChannel.send``)."""
        return self._channel.send(iov)

    def stop(self) -> None:
        """Make ``read_into`` return 0 now; any thread, also after ``close``."""
        self._stopped = True
        with self._lock:
            if self._wake >= 0:
                os.eventfd_write(self._wake, 1)

    def close(self) -> None:
        """Close the eventfd (idempotent); once no thread reads."""
        with self._lock:
            wake, self._wake = self._wake, -1
        if wake >= 0:
            os.close(wake)


def start_queues(fuse_fd: int, payload_size: int, serve: Callable[[UringQueue], None],
                 cpus: list[int] | None = None) -> list[tuple[UringQueue, threading.Thread]] | str:
    """One queue per possible CPU (or per CPU of ``cpus``: one more entry
    for a CPU already served), each in a thread pinned to its CPU that
    runs ``serve(queue)`` once every queue is registered.

    Returns the queues with their threads, or why io_uring is not used (a
    reason to log; then no thread is left running and nothing registered
    stays: a queue closed before the ring is complete is never used).
    """
    if cpus is None:
        reason = unavailable()
        if reason:
            return reason
        cpus = possible_cpus()
    # else: more entries for a connection already in io_uring mode, which
    # it keeps whatever the module parameter has become since
    layout = _layout()
    queues = [UringQueue(fuse_fd, cpu, payload_size, layout) for cpu in cpus]
    opened = [threading.Event() for _ in cpus]
    errors: list[str | None] = [None] * len(cpus)
    go = threading.Event()
    verdict = {"serve": False}

    def run(i: int, queue: UringQueue) -> None:
        try:
            os.sched_setaffinity(0, {queue.cpu})
        except OSError as e:  # an offline CPU, or one outside our affinity: serve from anywhere
            log.info("io_uring queue %d: cannot pin its thread (%s)", queue.cpu, e.strerror)
        try:
            queue.open()
        except OSError as e:
            errors[i] = e.strerror
            opened[i].set()
            return
        opened[i].set()
        go.wait()
        if verdict["serve"]:
            serve(queue)
        else:
            queue.close()

    threads = [threading.Thread(target=run, args=(i, q), name=f"nmfuse-uring{q.cpu}", daemon=True)
               for i, q in enumerate(queues)]
    for t in threads:
        t.start()
    for event in opened:
        event.wait(_SETUP_TIMEOUT)
    failed = [f"queue {q.cpu}: {errors[i] or 'no answer'}" for i, q in enumerate(queues)
              if errors[i] or not opened[i].is_set()]
    verdict["serve"] = not failed
    go.set()
    if failed:
        for t in threads:
            t.join(_SETUP_TIMEOUT)
        return "registering " + ", ".join(failed)
    return list(zip(queues, threads))
