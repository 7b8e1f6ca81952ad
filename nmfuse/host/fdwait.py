"""Waiting on drivers' fds (TAP queues) from the daemon's event loop.

Why an epoll of our own.  Requests are served in the FUSE request thread,
which arms waits (a poller found an RX ring empty; a TX ring has frames
the TAP could not take yet) and opens and closes TAP fds as ports bind and
unbind.  trio owns the main thread, and trio must be told before an fd it
waits on is closed (``notify_closing``), from its own thread: closing a
TAP fd from the request thread could leave a trio task waiting forever.
So trio never sees a TAP fd.  All of them sit in one epoll instance owned
here, registered EPOLLONESHOT with an empty mask, and trio waits on that
epoll's fd alone (an epoll fd is itself pollable):

    request thread (core.lock held)      main thread (trio)
    ------------------------------       ------------------
    arm(fd, READ) -> epoll_ctl(MOD) --->  wait_readable(epoll fd) returns
                                          with core.lock: dispatch()
                                            epoll_wait(0) -> (fd, events)
                                            forget what fired, re-arm the rest
                                            call the fd's handler
    remove(fd) -> epoll_ctl(DEL); close(fd)  (no trio state to clean up)

epoll_ctl is safe from any thread, and every change to the bookkeeping
below happens under the core lock, so the two threads never race on it.
An fd that fired is disarmed (one-shot) until armed again, so a daemon
whose rings nobody waits on sleeps, and wakes only when a waiter exists.
"""

import select

import trio

READ = select.EPOLLIN
WRITE = select.EPOLLOUT
_TROUBLE = select.EPOLLERR | select.EPOLLHUP


class FdWaiter:
    """One epoll instance for the driver fds of one core.

    ``add(fd, handler)`` registers an fd with nothing armed; ``arm(fd,
    READ|WRITE)`` asks for one wake-up; ``dispatch()`` calls
    ``handler(events)`` for each fd that became ready (READ and/or WRITE,
    both when the fd reports an error).  Call everything with the core lock
    held.
    """

    def __init__(self):
        self._epoll = select.epoll()
        self._handlers: dict[int, object] = {}
        self._armed: dict[int, int] = {}

    def fileno(self) -> int:
        """The epoll fd, readable when an armed fd is ready (what trio waits on)."""
        return self._epoll.fileno()

    def add(self, fd: int, handler) -> None:
        """Watch ``fd`` with nothing armed; ``handler(events)`` runs when an armed
        event fires."""
        self._epoll.register(fd, select.EPOLLONESHOT)
        self._handlers[fd] = handler
        self._armed[fd] = 0

    def remove(self, fd: int) -> None:
        """Forget ``fd``; call before closing it."""
        if self._handlers.pop(fd, None) is not None:
            self._armed.pop(fd, None)
            self._epoll.unregister(fd)

    def arm(self, fd: int, events: int) -> None:
        """Ask for one wake-up when ``fd`` is ready for ``events`` (READ, WRITE or
        both); nothing happens for an fd not added or events already armed."""
        armed = self._armed.get(fd)
        if armed is None or armed & events == events:
            return
        self._armed[fd] = armed | events
        self._epoll.modify(fd, armed | events | select.EPOLLONESHOT)

    def armed(self, fd: int) -> int:
        """The events armed on ``fd`` now (0 for none, or an fd not added)."""
        return self._armed.get(fd, 0)

    def dispatch(self, timeout: float = 0) -> int:
        """Run the handlers of the fds ready now (or within ``timeout``
        seconds); returns how many fired."""
        ready = self._epoll.poll(timeout)
        for fd, events in ready:
            armed = self._armed.get(fd)
            if armed is None:
                continue  # removed meanwhile
            fired = armed if events & _TROUBLE else events & armed
            rest = armed & ~fired
            self._armed[fd] = rest
            if rest:
                self._epoll.modify(fd, rest | select.EPOLLONESHOT)
            if fired:
                self._handlers[fd](fired)
        return len(ready)

    def close(self) -> None:
        """Forget every fd and close the epoll instance; the fds stay open."""
        self._handlers.clear()
        self._armed.clear()
        self._epoll.close()

    async def run(self, lock) -> None:
        """Serve wake-ups until cancelled (the daemon's trio task)."""
        while True:
            await trio.lowlevel.wait_readable(self._epoll.fileno())
            with lock:
                self.dispatch()
