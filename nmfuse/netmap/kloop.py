"""The sync-kloop: netmap's kernel thread that syncs CSB-mode rings
(netmap_sync_kloop, netmap_sync_kloop_stop), as a daemon thread.

In CSB mode (control.py validates the option) the application never calls
NIOCTXSYNC/NIOCRXSYNC: it writes head/cur into one ``nm_csb_atok`` entry per
bound ring in its own memory and reads hwcur/hwtail from the matching
``nm_csb_ktoa`` entry.  SYNC_KLOOP_START runs the loop below until
SYNC_KLOOP_STOP (another fd or thread of the same binding), the binding's
release, or the caller's interruption; its answer is deferred (a ``Later``,
which the device layer's DeferredAnswer contract accepts), so the request
workers keep serving meanwhile.

One iteration:

    read every atok entry       one process_vm_readv for all rings
    under the core lock, each ring not in a direct mode:
        the same prologue / driver sync / reinit as an ioctl sync
        (sync.txsync_ring / rxsync_ring with the ring's CSB entry)
    write every ktoa entry      one process_vm_writev
    irqfd of a ring whose tail moved, if the application asked (appl_need_kick)
    then: busy-wait mode   sleep sleep_us (0: just yield)
          eventfd mode     kern_need_kick = 1, check atok once more, then
                           wait for an ioeventfd, the rings (the kring's
                           nm_notify, wrapped for the loop's life) or STOP

Direct modes (NETMAP_REQ_OPT_SYNC_KLOOP_MODE) need every ioeventfd: a
direct TX (RX) ring is synced only when its ioeventfd fires, and a
notification from the port signals the irqfds of that direction at once.

State per binding, as netmap's np_kloop_state: ``running`` while a loop
runs, ``stopping`` once STOP came.  STOP without a loop leaves
``stopping`` set, so netmap's next START returns at once (0); a START that
fails its option checks clears both.
"""

import errno
import logging
import os
import select
import threading
import time
import weakref

from nmfuse.abi.netmap import KloopMode, OptType, ffi
from nmfuse.netmap import forward, sync
from nmfuse.netmap.kring import RX, TX

log = logging.getLogger("nmfuse.netmap")

MAX_SLEEP_US = 1_000_000      # netmap refuses to sleep longer than a second
WAIT_TIMEOUT_MS = 3000        # netmap's schedule_timeout in eventfd mode
ATOK_SIZE = ffi.sizeof("struct nm_csb_atok")
KTOA_SIZE = ffi.sizeof("struct nm_csb_ktoa")
EVENTFD_SIZE = ffi.sizeof("struct nmreq_opt_sync_kloop_eventfd")
EVENTFDS_HEADER = ffi.sizeof("struct nmreq_opt_sync_kloop_eventfds")


class Later:
    """A deferred answer made by the core (the device layer's
    DeferredAnswer): ``finish(err)`` turns ``err`` into (errno, out) with
    the ``answer`` function and hands it to whoever ``when_done`` named;
    ``interrupt`` runs ``on_interrupt``.  Thread-safe; each happens once."""

    def __init__(self, answer, on_interrupt=None):
        self._answer = answer
        self._on_interrupt = on_interrupt
        self._lock = threading.Lock()
        self._deliver = None
        self._result = None

    def when_done(self, deliver) -> None:
        """``deliver(errno, out)`` once the answer is known (now, if it is)."""
        with self._lock:
            result, self._deliver = self._result, deliver
        if result is not None:
            deliver(*result)

    def finish(self, err: int) -> None:
        """The work ended with ``err`` (0 or a positive errno)."""
        result = self._answer(err)
        with self._lock:
            if self._result is not None:
                return
            self._result = result
            deliver = self._deliver
        if deliver is not None:
            deliver(*result)

    def interrupt(self) -> None:
        """The caller stopped waiting: end the work (once)."""
        with self._lock:
            on_interrupt, self._on_interrupt = self._on_interrupt, None
        if on_interrupt is not None:
            on_interrupt()


class KloopState:
    """netmap's np_kloop_state for one binding, and the loop running on it."""

    __slots__ = ("loop", "running", "stopping")

    def __init__(self):
        self.running = False
        self.stopping = False
        self.loop: Kloop | None = None


_states: "weakref.WeakKeyDictionary[object, KloopState]" = weakref.WeakKeyDictionary()


def state(binding) -> KloopState:
    """The kloop state of ``binding`` (made on first use)."""
    st = _states.get(binding)
    if st is None:
        st = _states[binding] = KloopState()
    return st


def running(binding) -> bool:
    """Whether a sync-kloop runs on ``binding`` (the CSB may not change then)."""
    st = _states.get(binding)
    return st is not None and st.running


def start(core, binding, req, take_fds, answer) -> Later:
    """SYNC_KLOOP_START: check as netmap_sync_kloop does and start the loop's
    thread; returns the deferred answer, which ``answer(err)`` turns into
    (errno, header bytes) when the loop ends.  Under the core lock.

    Raises:
        OSError: EINVAL (sleep_us above a second, no CSB mode, an invalid
            mode option or eventfds option, direct mode without every
            ioeventfd, an fd that is not an eventfd), ENXIO (the fd is not
            bound), EBUSY (a loop already runs), EBADF (an fd the caller
            does not have).  The option's status says which it was.
    """
    sleep_us = req.body.sleep_us
    if sleep_us > MAX_SLEEP_US:
        raise OSError(errno.EINVAL, "sleep_us above one second")
    if not binding.registered:
        raise OSError(errno.ENXIO, "not registered")
    if binding.csb is None:
        raise OSError(errno.EINVAL, "the sync-kloop needs CSB mode")
    st = state(binding)
    if st.running:
        raise OSError(errno.EBUSY, "a sync-kloop already runs on this fd")
    krings = list(binding.krings(TX)) + list(binding.krings(RX))
    ntx = binding.qlast[TX] - binding.qfirst[TX]
    try:
        loop = Kloop(core, binding, st, krings, ntx, sleep_us, req, take_fds)
    except OSError:
        st.running = st.stopping = False  # netmap resets its state on the way out
        raise
    loop.later = Later(answer, loop.stop)
    st.running, st.loop = True, loop
    loop.start()
    return loop.later


def stop(binding, answer) -> Later | None:
    """SYNC_KLOOP_STOP: mark the loop stopping and wake it; returns a
    deferred answer, ``answer(0)`` once the loop has ended, or None (answer
    0 now) when none runs.  Under the core lock.

    Raises:
        OSError: ENXIO, the fd is not bound.
    """
    if not binding.registered:
        raise OSError(errno.ENXIO, "not registered")
    st = state(binding)
    st.stopping = True
    loop = st.loop
    if loop is None:
        return None
    later = Later(answer)
    loop.stop_waiters.append(later)
    loop.wake()
    return later


def release(binding) -> "Kloop | None":
    """The binding goes away: stop its loop; returns it (to join outside
    the core lock), or None.  Under the core lock."""
    st = _states.get(binding)
    if st is None or st.loop is None:
        return None
    st.stopping = True
    st.loop.wake()
    return st.loop


class Kloop:
    """One running sync-kloop (a thread) on one binding."""

    def __init__(self, core, binding, st: KloopState, krings, ntx: int, sleep_us: int, req, take_fds):
        self.core, self.binding, self.state = core, binding, st
        self.krings, self.ntx = krings, ntx
        self.sleep_us = sleep_us
        self.memory = req.memory
        self.atok_addr, self.ktoa_addr = binding.csb
        n = len(krings)
        self.atok = ffi.new("struct nm_csb_atok[]", max(n, 1))
        self.ktoa = ffi.new("struct nm_csb_ktoa[]", max(n, 1))
        self.later: Later | None = None
        self.stop_waiters: list[Later] = []
        self.fds: list[int] = []          # every fd we hold (closed at the end)
        self.ioeventfds: list[int | None] = [None] * n
        self.irqfds: list[int | None] = [None] * n
        self.direct = [False, False]      # by direction
        self.busy_wait = True
        self._saved_notify: dict[object, object] = {}
        self._wake_fd = -1
        self._thread: threading.Thread | None = None
        try:
            self._options(req, take_fds)
            self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self.fds.append(self._wake_fd)
        except BaseException:
            self._close_fds()
            raise

    # -- set-up (under the core lock) --

    def _options(self, req, take_fds) -> None:
        """The mode and eventfds options, checked in netmap's order."""
        mode_opt = req.option(OptType.SYNC_KLOOP_MODE)
        if mode_opt is not None:
            mode = mode_opt.struct().mode
            self.direct = [bool(mode & KloopMode.DIRECT_TX), bool(mode & KloopMode.DIRECT_RX)]
            if mode & ~int(KloopMode.DIRECT_TX | KloopMode.DIRECT_RX):  # (~ of a Flag stays inside it)
                mode_opt.status = errno.EINVAL
                raise OSError(errno.EINVAL, "unknown kloop mode bits")
            mode_opt.status = 0
        opt = req.option(OptType.SYNC_KLOOP_EVENTFDS)
        if opt is None:
            return
        n = len(self.krings)
        if opt.size != EVENTFDS_HEADER + EVENTFD_SIZE * n:
            opt.status = errno.EINVAL
            raise OSError(errno.EINVAL, "eventfds option size does not match the bound rings")
        opt.status = 0
        pairs = ffi.cast("struct nmreq_opt_sync_kloop_eventfds *", ffi.from_buffer(opt.data)).eventfds
        wanted = [(pairs[i].ioeventfd, pairs[i].irqfd) for i in range(n)]
        self.busy_wait = any(io < 0 for io, _ in wanted)
        if self.busy_wait and any(self.direct):
            opt.status = errno.EINVAL
            raise OSError(errno.EINVAL, "direct mode needs every ioeventfd")
        for i, (io, irq) in enumerate(wanted):
            if irq >= 0:
                (self.irqfds[i],) = self._take(take_fds, irq)
            if not self.busy_wait:
                (self.ioeventfds[i],) = self._take(take_fds, io)

    def _take(self, take_fds, fd: int) -> list[int]:
        if take_fds is None:
            raise OSError(errno.EOPNOTSUPP, "this daemon cannot take the caller's eventfds")
        fds = take_fds([fd])
        self.fds.extend(fds)
        return fds

    def start(self) -> None:
        """Wrap the krings' notify callbacks and start the thread."""
        if not self.busy_wait:
            for kring in self.krings:
                saved = self._saved_notify[kring] = kring.nm_notify
                kring.nm_notify = self._notify_hook(saved)
        self._thread = threading.Thread(target=self._run, name=f"nmfuse-kloop{self.binding.fh}", daemon=True)
        self._thread.start()

    def _notify_hook(self, saved):
        def notify(kring) -> None:
            if self.direct[kring.direction]:
                # direct mode: the port's notification goes straight to the application
                first, last = (0, self.ntx) if kring.direction == TX else (self.ntx, len(self.krings))
                for irq in self.irqfds[first:last]:
                    if irq is not None:
                        _signal(irq)
            else:
                self.wake()
            saved(kring)
        return notify

    # -- any thread --

    def wake(self) -> None:
        """Make the loop look at its rings and its state now.  Under the
        core lock, which the loop holds while it closes its fds."""
        if self._wake_fd >= 0:
            _signal(self._wake_fd)

    def stop(self) -> None:
        """End the loop (the caller was interrupted, or the binding goes)."""
        with self.core.lock:
            self.state.stopping = True
            self.wake()

    def join(self) -> None:
        """Wait for the thread to end (never under the core lock)."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # -- the loop's thread --

    def _run(self) -> None:
        err = 0
        try:
            self._loop()
        except OSError as e:
            log.info("sync-kloop on fd %d ended: %s", self.binding.fh, e)
            err = e.errno or errno.EIO
        except Exception:
            log.exception("sync-kloop on fd %d failed", self.binding.fh)
            err = errno.EIO
        finally:
            with self.core.lock:
                for kring, saved in self._saved_notify.items():
                    kring.nm_notify = saved
                self.state.running = self.state.stopping = False
                self.state.loop = None
                waiters, self.stop_waiters = self.stop_waiters, []
                self._close_fds()
        self.later.finish(err)
        for w in waiters:
            w.finish(0)

    def _loop(self) -> None:
        n = len(self.krings)
        mem, atok, ktoa = self.memory, self.atok, self.ktoa
        atok_bytes, ktoa_bytes = n * ATOK_SIZE, n * KTOA_SIZE
        ktoa_buf = ffi.buffer(ktoa, ktoa_bytes)
        ffi.memmove(ktoa, mem.read(self.ktoa_addr, ktoa_bytes), ktoa_bytes)
        targets = None
        poller = None
        if not self.busy_wait:
            poller = select.poll()
            poller.register(self._wake_fd, select.POLLIN)
            for fd in self.ioeventfds:
                poller.register(fd, select.POLLIN)
            for i in range(n):
                if not self._is_direct(i):
                    ktoa[i].kern_need_kick = 0
        fired: list[int] = []
        sleep = self.sleep_us / 1e6
        while True:
            ffi.memmove(atok, mem.read(self.atok_addr, atok_bytes), atok_bytes)
            kicks = []
            with self.core.lock:
                if self.state.stopping or not self.binding.registered:
                    return
                if targets is None:
                    targets = forward.down_targets(self.binding)
                for i, kring in enumerate(self.krings):
                    if self._is_direct(i) and i not in fired:
                        continue
                    if self._sync(i, kring, targets) and self.irqfds[i] is not None \
                            and atok[i].appl_need_kick and not self._is_direct(i):
                        kicks.append(self.irqfds[i])
            mem.write(self.ktoa_addr, ktoa_buf[:])
            for fd in kicks:
                _signal(fd)
            if self.busy_wait:
                time.sleep(sleep)  # 0: just let the other threads run
                continue
            # eventfd mode: ask for kicks, look once more, then sleep
            for i in range(n):
                if not self._is_direct(i):
                    ktoa[i].kern_need_kick = 1
            mem.write(self.ktoa_addr, ktoa_buf[:])
            ffi.memmove(atok, mem.read(self.atok_addr, atok_bytes), atok_bytes)
            fired = []
            if not self._more_work():
                for fd, _ in poller.poll(WAIT_TIMEOUT_MS):
                    _drain(fd)
                    if fd != self._wake_fd:
                        fired.append(self.ioeventfds.index(fd))
            for i in range(n):
                if not self._is_direct(i):
                    ktoa[i].kern_need_kick = 0

    def _is_direct(self, i: int) -> bool:
        return self.direct[TX if i < self.ntx else RX]

    def _sync(self, i: int, kring, targets) -> bool:
        """Sync ring ``i`` from its CSB entry; True if its tail moved."""
        if kring.ring is None:
            return False
        csb = (self.atok[i], self.ktoa[i])
        before = kring.rtail
        if kring.direction == TX:
            sync.txsync_ring(kring, csb)
        else:
            sync.rxsync_ring(kring, targets, csb)
        return kring.rtail != before

    def _more_work(self) -> bool:
        """After asking for kicks: did the application move a head meanwhile,
        or the port a tail (netmap's double check)?"""
        for i, kring in enumerate(self.krings):
            if self._is_direct(i):
                continue
            if self.atok[i].head != kring.rhead or kring.hwtail != kring.rtail:
                return True
        return False

    def _close_fds(self) -> None:
        fds, self.fds = self.fds, []
        self._wake_fd = -1
        for fd in fds:
            os.close(fd)


def _signal(fd: int) -> None:
    try:
        os.eventfd_write(fd, 1)
    except BlockingIOError:
        pass  # the counter is full: the reader will wake all the same


def _drain(fd: int) -> None:
    try:
        os.eventfd_read(fd)
    except BlockingIOError:
        pass  # someone else read it first
