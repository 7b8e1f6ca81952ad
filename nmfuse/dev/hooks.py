"""C request hooks by file handle (csrc/hook.{c,h}, in the ``_uring`` extension).

A layer above may hand the device layer, for one open file, two C
functions and a context that answer that file's IOCTL and POLL requests
in the request worker, without Python and with the GIL released: the
worker's read loop (``nmu_hooks_read`` for /dev/fuse and its clones, the
queue's wait for io_uring) reads a request, answers it through the hooks
when they take it, and returns to Python only with a request they leave.  The device layer does
not know what the functions do; see hook.h for their contract (a hook
may decline; removing one waits for its calls in flight).
"""

import os

from nmfuse import _uring

ffi, lib = _uring.ffi, _uring.lib


class RequestHooks:
    """The table of hooks of one session, shared by its workers."""

    def __init__(self):
        self._table = ffi.new("struct nmu_hooks *")
        self._table.notify_fd = -1

    def set_notify_fd(self, fd: int) -> None:
        """Where hooks write poll wake-ups: the /dev/fuse fd (-1: nowhere)."""
        self._table.notify_fd = fd

    def notifier(self) -> tuple[int, int]:
        """(address of ``int notify(void *ctx, uint64_t kh)``, ctx): what a
        hook calls to wake the pollers waiting on ``kh``."""
        fn = ffi.addressof(lib, "nmu_hooks_notify")
        return int(ffi.cast("uintptr_t", fn)), int(ffi.cast("uintptr_t", self._table))

    @property
    def notified(self) -> int:
        """Poll wake-ups the hooks wrote."""
        return self._table.notified

    @property
    def table(self):
        """The C table (``struct nmu_hooks *``), for the io_uring queues."""
        return self._table

    def install(self, fh: int, ioctl: int, poll: int, ctx: int) -> bool:
        """Answer ``fh``'s IOCTL and POLL through the C functions at addresses
        ``ioctl`` and ``poll`` with context ``ctx``.  False if the table has
        no room for ``fh``: its requests then keep going to Python.
        Installs and removals must be serialised by the caller."""
        return lib.nmu_hooks_install(self._table, fh, ffi.cast("void *", ioctl), ffi.cast("void *", poll),
                                     ffi.cast("void *", ctx)) == 0

    def remove(self, fh: int) -> None:
        """Stop answering ``fh`` in C; returns once no call of its hooks runs."""
        lib.nmu_hooks_remove(self._table, fh)

    def reader(self, data: bytearray):
        """A ``readv(fd, buffers)`` for a worker's loop reading into ``data``:
        it answers the hooked requests itself and returns the length of the
        first one left for Python (0: the connection ended).  Also returns
        the counter of the requests it answered (a ``uint64_t *``).

        The reader raises OSError on an error; the loop's fallback then
        reads through the transport, which decides."""
        table, buf, size = self._table, ffi.from_buffer(data), len(data)
        answered = ffi.new("uint64_t *")
        hooks_read = lib.nmu_hooks_read

        def readv(fd: int, _buffers) -> int:
            n = hooks_read(table, fd, buf, size, answered)
            if n < 0:
                raise OSError(-n, os.strerror(-n))
            return n

        return readv, answered
