"""NIOCTXSYNC / NIOCRXSYNC and poll (netmap_ioctl's sync case, netmap_poll).

A sync runs the prologue on each bound ring (the rules are C, csrc/sync.c,
shared with the C fast path); a ring the user broke (head or cur out of
their window, a slot with an invalid buffer index or an
oversized length in the slots it hands over) is reinitialised: bad slots
are cleared and head/cur/tail return to the kernel's view, and poll
reports POLLERR for it.  A TX ring is then not synced; an RX ring is, as
in netmap, so frames that arrived still reach it.  Every RX sync stamps
the ring (``ring->ts``).  The NIOCxXSYNC ioctls return 0
all the same, as netmap's do: the client sees the reset ring.

Poll wake-ups: when poll finds nothing ready it leaves the FUSE poll handle
on the rings it waits for (or on the port, when the binding spans several
rings of a direction); a driver that moves a ring's hwtail calls
``adapter.notify(kring)``, which wakes them, and the kernel polls again.
Waiting also tells the driver (``adapter.poll_wait``), so one whose frames
arrive on their own (a TAP) arms its wake-up only while someone waits.
Transparent mode (NR_FORWARD, forward.py) runs in the RX sync between the
prologue and the driver; poll pushes the TX rings it forwarded into.
Syncs go through ``kring.nm_sync``, so a monitor can see every one.
"""

import errno
import select

from nmfuse._helper import lib
from nmfuse.netmap import forward
from nmfuse.netmap.kring import RX, TX

POLLIN = select.POLLIN | select.POLLRDNORM
POLLOUT = select.POLLOUT | select.POLLWRNORM
POLLERR = select.POLLERR


# CSB mode (the sync-kloop, kloop.py): the application's head/cur come from
# its nm_csb_atok entry instead of the ring, and hwcur/hwtail go to its
# nm_csb_ktoa entry instead of the ring's tail.  These two functions are
# the only places the sync path knows about it; ``csb`` is None or the
# ring's (atok, ktoa) pair of cffi structs (local copies the kloop reads
# and writes back in bulk).

def user_pointers(kring, csb=None) -> tuple[int, int]:
    """The head and cur the user hands over for ``kring``: the one place
    that chooses where they come from (the ring in shared memory, or the
    CSB entry in CSB mode)."""
    if csb is None:
        ring = kring.ring
        return ring.head, ring.cur
    atok = csb[0]
    return atok.head, atok.cur


def publish(kring, csb=None) -> None:
    """After a successful sync: the kernel's hwcur/hwtail to the user (the
    ring's tail; in CSB mode, the ktoa entry)."""
    if csb is None:
        kring.finalize()
        return
    ktoa = csb[1]
    ktoa.hwcur = kring.hwcur
    ktoa.hwtail = kring.rtail = kring.hwtail


def _limits(kring) -> tuple[int, int]:
    mem = kring.adapter.mem
    return mem.bufs.objtotal, mem.buf_size


def txsync_ring(kring, csb=None) -> bool:
    """One TX ring: prologue, driver sync, finalize.  False on a reinit.
    A ring the C fast path is syncing is skipped (netmap's busy ring)."""
    c = kring.c
    if lib.nmh_kring_tryget(c) < 0:
        return True
    try:
        c.csb = csb is not None  # the prologue leaves a CSB user's ring tail alone
        head, cur = user_pointers(kring, csb)
        if lib.nmh_txsync_begin(c, head, cur, *_limits(kring)) < 0:
            return False
        if kring.nm_sync(kring) == 0:
            publish(kring, csb)
            return True
        return False
    finally:
        lib.nmh_kring_put(c)


def rxsync_ring(kring, forward_to=None, csb=None) -> bool:
    """One RX ring: prologue, transparent forwarding (down into the TX
    krings ``forward_to`` when the binding may, see forward.py), driver
    sync, finalize, timestamp.  False on a reinit or a failed sync.

    Unlike TX, a reinitialised RX ring is still synced, as netmap does
    (NIOCRXSYNC and netmap_poll): it releases nothing then, but new frames
    arrive in the same call."""
    c = kring.c
    if lib.nmh_kring_tryget(c) < 0:
        return True      # the C fast path is syncing it (netmap's busy ring)
    try:
        ok = True
        c.csb = csb is not None  # the prologue leaves a CSB user's ring tail alone
        head, cur = user_pointers(kring, csb)
        if lib.nmh_rxsync_begin(c, head, cur, *_limits(kring)) < 0:
            ok = False
        else:
            forward.released(kring, forward_to)
        if kring.nm_sync(kring) == 0:
            publish(kring, csb)
        else:
            ok = False
        kring.timestamp()
        return ok
    finally:
        lib.nmh_kring_put(c)


def ioctl_sync(binding, direction: int) -> int:
    """NIOCTXSYNC (TX) or NIOCRXSYNC (RX) on every bound ring."""
    if not binding.registered:
        return errno.ENXIO
    if binding.csb is not None:
        return errno.EBUSY
    if direction == TX:
        for kring in binding.krings(TX):
            txsync_ring(kring)
    else:
        targets = forward.down_targets(binding)
        for kring in binding.krings(RX):
            rxsync_ring(kring, targets)
    return 0


def poll(binding, events: int, kh: int | None) -> int:
    """netmap_poll: sync as netmap does and report readiness."""
    if not binding.registered or binding.csb is not None:
        return POLLERR
    revents = 0
    want_tx = events & POLLOUT
    want_rx = events & POLLIN
    armed = ()
    if kh is not None:
        # Before the syncs: a C sync that moves one of these rings after we
        # looked then leaves the wake-up to the waker, which runs after us
        # (fast.c); after them, the rings say who waits.
        armed = [k for d, wanted in ((TX, want_tx), (RX, want_rx)) if wanted for k in binding.krings(d)]
        for kring in armed:
            kring.take_waiters()

    if binding.txpoll or want_tx:
        for kring in binding.krings(TX):
            if not want_tx and kring.ring.head == kring.hwcur:
                continue
            if not txsync_ring(kring):
                revents |= POLLERR
            if kring.rcur != kring.rtail:
                revents |= want_tx
                want_tx = 0

    if want_rx:
        targets = forward.down_targets(binding)
        for kring in binding.krings(RX):
            if not rxsync_ring(kring, targets):
                revents |= POLLERR
            if kring.rcur != kring.rtail:
                revents |= want_rx
        if revents & POLLIN:
            want_rx = 0
        for kring in targets or ():
            # frames forwarded down leave now (netmap: send_down -> flush_tx)
            if kring.ring is not None and kring.ring.head != kring.hwcur and not txsync_ring(kring):
                revents |= POLLERR

    if kh is not None and (want_tx or want_rx):
        _wait(binding, kh, want_tx, want_rx)
    for kring in armed:
        kring.arm()
    return revents


def _wait(binding, kh: int, want_tx: int, want_rx: int) -> None:
    adapter = binding.adapter
    binding.poll_handles.add(kh)
    for direction, wanted in ((TX, want_tx), (RX, want_rx)):
        if not wanted:
            continue
        for kring in binding.krings(direction):
            kring.waiters.add(kh)
            adapter.poll_wait(kring)
