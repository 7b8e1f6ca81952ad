"""Waking the pollers of rings the C fast path serves (csrc/fast.h).

Two threads, one core each, created when the device layer offers C
request hooks (``Core.fast_hooks``):

* ``CWaiter`` (C, no GIL): a poll the fast path answers "nothing ready"
  leaves its handle on the rings (``struct nmh_kring.kh``); a ring whose
  driver signals on an fd (``Kring.wait_on``: a generic port's socket, its
  sending thread's eventfd) is woken by this thread's epoll, which writes
  the FUSE wake-up itself.  A pipe ring is woken by its peer's C sync.
* ``FastWaker`` (Python): what C cannot wake (Python holds the ring's
  handles at that instant, or more pollers wait than ``kh`` holds) is
  flagged on the ring (``kring.c.wake``) and this thread runs the ring's
  notify under the core lock, as a Python sync would have.
"""

import logging
import os
import threading

from nmfuse._helper import ffi, lib

log = logging.getLogger("nmfuse.fastwait")


class FastWaker:
    """Runs the notify of flagged rings of the hooked ``bindings``."""

    def __init__(self, core):
        self.core = core
        self.fd = os.eventfd(0, os.EFD_CLOEXEC)
        self.bindings: set = set()
        threading.Thread(target=self._run, name="nmfuse-waker", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                os.eventfd_read(self.fd)
            except OSError as e:
                log.error("waker: %s; pollers of rings moved in C are no longer woken", e)
                return
            with self.core.lock:
                for binding in list(self.bindings):
                    for kring in binding.all_krings():
                        self.wake_moved(kring)

    @staticmethod
    def wake_flagged(kring) -> None:
        """Notify ``kring`` if C flagged it (a pipe's peer, a watched ring,
        a VALE port's RX ring)."""
        if kring is not None and kring.c.wake:
            kring.c.wake = 0
            kring.adapter.notify(kring)

    @classmethod
    def wake_moved(cls, kring) -> None:
        """Notify the flagged rings among ``kring`` and those its C sync
        may move (``Adapter.c_moves``)."""
        cls.wake_flagged(kring)
        for other in kring.adapter.c_moves(kring):
            cls.wake_flagged(other)


class CWaiter:
    """The C thread that waits on the rings' fds (struct nmh_fast_waiter)."""

    def __init__(self, notifier, wake_fd: int):
        notify, notify_ctx = notifier
        self.state = ffi.new("struct nmh_fast_waiter *", {
            "notify": ffi.cast("void *", notify), "notify_ctx": ffi.cast("void *", notify_ctx),
            "wake_fd": wake_fd, "epfd": -1})
        ret = lib.nmh_fast_waiter_start(self.state)
        if ret < 0:
            raise OSError(-ret, "start the C waiter thread")

    def watch(self, kring) -> None:
        """Wait on ``kring.c.wait_fd`` whenever a C poll waits on the ring."""
        ret = lib.nmh_fast_watch(self.state, kring.c)
        if ret < 0:
            log.warning("%s: its pollers wait through Python (%s)", kring.name, os.strerror(-ret))

    def unwatch(self, kring) -> None:
        """Stop waiting on the ring's fd; returns once the thread is done with it."""
        lib.nmh_fast_unwatch(self.state, kring.c)

    def stop(self) -> None:
        """End the thread (no wake-up is written after this returns)."""
        lib.nmh_fast_waiter_stop(self.state)
