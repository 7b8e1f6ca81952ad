"""The interface a device implements to be served by a ``Session``.

The session calls these methods from its request threads: with several
workers, several requests at once (each from one thread), so a handler
locks what its requests share.  None may block for long: a worker stays
busy until its answer is made.  An ioctl whose answer comes later (a
request that runs until another one ends it) returns a ``DeferredAnswer``
instead: the worker goes on serving, and the answer is sent when the
handler delivers it, from whatever thread.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, as FUSE reports it."""

    pid: int  # the calling thread's id, in the daemon's pid namespace (0 if invisible)
    uid: int
    gid: int


@runtime_checkable
class DeferredAnswer(Protocol):
    """An ioctl answer made later, which a handler returns instead of
    ``(errno, out)``.

    The session calls ``when_done(deliver)`` once, right after the handler
    returned; the handler then calls ``deliver(errno, out)`` exactly once,
    from any thread (at once, from inside ``when_done``, if the answer is
    already known).  ``interrupt()`` says the caller no longer waits (a
    FUSE INTERRUPT, answered EINTR by the session, or the session's
    shutdown): the handler should end the work soon; a ``deliver`` after
    it is ignored.
    """

    def when_done(self, deliver: Callable[[int, bytes], None]) -> None:
        """Arrange for ``deliver(errno, out)`` to be called once, when the answer is ready."""

    def interrupt(self) -> None:
        """The caller stopped waiting: end the work soon."""


class DeviceHandler(Protocol):
    """What ``Session`` calls.  Errors are positive errno values.

    A method raising ``OSError`` answers the request with that errno; any
    other exception is logged with its traceback and answered EIO, and the
    session keeps serving.
    """

    def open(self, caller: Caller, flags: int) -> int:
        """A new open file; returns its handle (fh), echoed in later calls.

        ``flags`` are the open(2) flags.  Raise OSError(errno) to refuse.
        """

    def release(self, fh: int) -> None:
        """The last reference to the open file ``fh`` is gone (close, or the
        process died).  Mappings of the device may outlive it."""

    def ioctl(self, caller: Caller, fh: int, cmd: int, arg: int,
              data: bytes, out_size: int) -> "tuple[int, bytes] | DeferredAnswer":
        """An ioctl on ``fh``; returns ``(errno, out)``, or a
        ``DeferredAnswer`` that delivers them later.

        ``data`` is a copy of the ``in_size`` bytes the kernel brought (the
        command's _IOC size when it has the write direction); ``arg`` is
        the caller's raw argument (a pointer in its address space).
        ``errno`` is 0 or a positive errno.  ``out`` (at most ``out_size``
        bytes are used) is copied back to the caller even when ``errno`` is
        not 0, before the caller sees the error.  Bytes past ``len(out)``
        are left as the caller had them.
        """

    def poll(self, caller: Caller, fh: int, events: int, kh: int | None) -> int:
        """The ready events of ``fh`` now (POLLIN | POLLOUT | POLLERR ...).

        ``kh`` is given when the kernel wants a notification: when readiness
        may have changed, call ``Session.notify_poll(kh)`` (from any thread)
        and the kernel polls again.
        """
