"""NIOCTXSYNC / NIOCRXSYNC and poll (netmap_ioctl's sync case, netmap_poll).

A sync runs the prologue on each bound ring; a ring the user broke (head
or cur out of their window, a slot with an invalid buffer index or an
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


def _handed_over_ok(kring, first: int) -> bool:
    """Slots [first, rhead) are the ones the user just gave the kernel."""
    n = kring.num_slots
    count = (kring.rhead - first) % n
    if not count:
        return True
    mem = kring.adapter.mem
    return lib.nmh_slots_check(kring.ring.slot, n, first, count, mem.bufs.objtotal, mem.buf_size) < 0


# CSB mode (the sync-kloop, kloop.py): the application's head/cur come from
# its nm_csb_atok entry instead of the ring, and hwcur/hwtail go to its
# nm_csb_ktoa entry instead of the ring's tail.  These two functions are
# the only places the sync path knows about it; ``csb`` is None or the
# ring's (atok, ktoa) pair of cffi structs (local copies the kloop reads
# and writes back in bulk).

def user_pointers(kring, csb=None) -> tuple[int, int] | tuple[None, None]:
    """The head/cur the user handed to ``kring``: (None, None) to let the
    prologue read them from the ring, or the CSB entry's in CSB mode."""
    if csb is None:
        return None, None
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


def txsync_ring(kring, csb=None) -> bool:
    """One TX ring: prologue, driver sync, finalize.  False on a reinit."""
    old_head = kring.rhead
    if not kring.txsync_prologue(*user_pointers(kring, csb)) or not _handed_over_ok(kring, old_head):
        _reinit(kring)
        return False
    if kring.nm_sync(kring) == 0:
        publish(kring, csb)
        return True
    return False


def rxsync_ring(kring, forward_to=None, csb=None) -> bool:
    """One RX ring: prologue, transparent forwarding (down into the TX
    krings ``forward_to`` when the binding may, see forward.py), driver
    sync, finalize, timestamp.  False on a reinit or a failed sync.

    Unlike TX, a reinitialised RX ring is still synced, as netmap does
    (NIOCRXSYNC and netmap_poll): it releases nothing then, but new frames
    arrive in the same call."""
    ok = True
    if not kring.rxsync_prologue(*user_pointers(kring, csb)) or not _handed_over_ok(kring, kring.hwcur):
        _reinit(kring)
        ok = False
    else:
        forward.released(kring, forward_to)
    if kring.nm_sync(kring) == 0:
        publish(kring, csb)
    else:
        ok = False
    kring.timestamp()
    return ok


def _reinit(kring) -> None:
    # netmap keeps in-range pointers the user wrote ("probably wrong to trust
    # userspace", says its source); we always fall back to the kernel's
    # hwcur/hwtail, so a refused batch is never half-sent later.
    kring.reinit(kring.adapter.mem.bufs)
    ring = kring.ring
    ring.head = ring.cur = kring.rhead = kring.rcur = kring.hwcur
    ring.tail = kring.rtail = kring.hwtail


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
