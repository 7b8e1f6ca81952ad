"""Per-fd state and port registration (netmap's netmap_priv_d, do_regif).

A ``Binding`` is what one open() of /dev/netmap holds: at most one port,
a range of rings per direction, and its own netmap_if in shared memory.
Registration is netmap_do_regif: each step pushes its undo on an ExitStack,
so a failure anywhere leaves the port, its rings and the pools as they
were.

The C fast path: a registered binding with rings that have a C sync
(``Adapter.ring_c_sync``) gets C request hooks from the device layer
(``core.fast_hooks``), so its syncs and polls are served in the request
worker without Python (csrc/fast.c).  Installed last in registration and
removed first in unregistration, under the core lock; removal waits for
the C syncs in flight, so nothing they use goes away under them.  A
binding in CSB mode gets none (and a CSB enabled later makes the hooks
decline).  A poll that must wait is left waiting by C when the rings can
be woken from C (fastwait.py): a C sync that moves a ring pollers wait on
wakes them itself through the device layer's notifier, or leaves it to
``FastWaker``.
"""

import errno
import logging
from contextlib import ExitStack

from nmfuse._helper import ffi as helper_ffi
from nmfuse._helper import lib
from nmfuse.abi.netmap import NETMAP_API, RegFlag, RegMode, ffi
from nmfuse.netmap.fastwait import FastWaker
from nmfuse.netmap.kring import DIRECTIONS, RX, TX

log = logging.getLogger("nmfuse.netmap")


class Binding:
    """One open file of the device (netmap's priv)."""

    def __init__(self, fh: int, pid: int):
        self.fh = fh
        self.pid = pid
        self.adapter = None
        self.qfirst = [0, 0]
        self.qlast = [0, 0]
        self.flags = 0
        self.txpoll = False
        self.nifp_offset = None
        self.has_extra = False
        self.poll_handles: set[int] = set()
        self.fast = None           # struct nmh_fast_binding while C hooks serve it
        self._fast_keep = ()       # the kring arrays it points to
        self.csb = None            # (atok, ktoa) user addresses in CSB mode

    @property
    def csb(self):
        """(atok, ktoa) user addresses in CSB mode, else None."""
        return self._csb

    @csb.setter
    def csb(self, value) -> None:
        self._csb = value
        if self.fast is not None:
            self.fast.csb = int(value is not None)   # the C hooks decline from now on

    @property
    def registered(self) -> bool:
        """Whether a port is bound: REGISTER gave this fd its netmap_if."""
        return self.nifp_offset is not None

    def krings(self, d: int):
        """The krings this binding selected in direction ``d``."""
        return self.adapter.krings[d][self.qfirst[d]:self.qlast[d]]

    def all_krings(self):
        """The krings this binding selected, TX then RX."""
        for d in DIRECTIONS:
            yield from self.krings(d)


def interp_ringid(adapter, mode: int, ringid: int, flags: int) -> tuple[list[int], list[int]]:
    """Ring ranges [first, last) per direction (netmap_interp_ringid).

    Raises:
        OSError(EINVAL): host rings asked of a port without them, a ring
            index beyond the port's rings, or an unknown mode.
    """
    first, last = [0, 0], [0, 0]
    # TX_RINGS_ONLY leaves the RX side unbound, and RX_RINGS_ONLY the TX side
    excluded_by = {TX: RegFlag.RX_RINGS_ONLY, RX: RegFlag.TX_RINGS_ONLY}
    for d in DIRECTIONS:
        if flags & excluded_by[d]:
            continue
        n = adapter.nrings(d)
        if mode in (RegMode.ALL_NIC, RegMode.NULL):
            first[d], last[d] = 0, n
        elif mode in (RegMode.SW, RegMode.NIC_SW):
            if not adapter.has_host_rings:
                raise OSError(errno.EINVAL, "host rings not supported")
            first[d], last[d] = (n if mode == RegMode.SW else 0), adapter.all_rings(d)
        elif mode == RegMode.ONE_NIC:
            if ringid >= adapter.nrings(TX) and ringid >= adapter.nrings(RX):
                raise OSError(errno.EINVAL, f"invalid ring id {ringid}")
            j = ringid if ringid < n else 0
            first[d], last[d] = j, j + 1
        elif mode == RegMode.ONE_SW:
            if not adapter.has_host_rings:
                raise OSError(errno.EINVAL, "host rings not supported")
            host = adapter.num_host_rings
            if ringid >= host[TX] and ringid >= host[RX]:
                raise OSError(errno.EINVAL, f"invalid ring id {ringid}")
            j = ringid if ringid < host[d] else 0
            first[d], last[d] = n + j, n + j + 1
        else:
            raise OSError(errno.EINVAL, f"invalid regif type {mode}")
    return first, last


def do_regif(binding: Binding, adapter, reg, offsets_opt=None) -> None:
    """Bind ``adapter`` to ``binding`` (netmap_do_regif).

    ``reg`` is the nmreq_register body; ``offsets_opt`` the OFFSETS option
    if the request carried one (its status is set here).

    Raises:
        OSError: EINVAL (ring selection), EBUSY (exclusive rings),
            ENOMEM (memory), EOPNOTSUPP / EINVAL (offsets).  On failure
            nothing has changed.
    """
    first, last = interp_ringid(adapter, reg.nr_mode, reg.nr_ringid, reg.nr_flags)
    binding.adapter, binding.qfirst, binding.qlast = adapter, first, last
    binding.flags = reg.nr_flags
    binding.txpoll = not (reg.nr_flags & RegFlag.NO_TX_POLL)
    try:
        with ExitStack() as undo:
            # LIFO: the users go first, then the rings they no longer need,
            # then the krings (which may hold rings of a port they wrap),
            # and last the sweep that returns the buffers nobody holds
            undo.callback(adapter.mem.sweep)
            if adapter.active_fds == 0:
                adapter.krings_create()
                undo.callback(lambda: adapter.active_fds == 0 and adapter.krings_delete())
            _krings_get(binding)
            undo.callback(adapter.rings_delete)
            undo.callback(_krings_put, binding)
            adapter.rings_create()
            if offsets_opt is not None:
                _offsets_init(binding, offsets_opt)
            binding.nifp_offset = _if_new(binding)
            undo.callback(_if_delete, binding)
            if adapter.active_fds == 0:
                adapter.register(True)
            adapter.active_fds += 1
            adapter.bindings.add(binding)
            undo.pop_all()
        _fast_install(binding)
    except BaseException:
        binding.adapter = None
        binding.qfirst, binding.qlast = [0, 0], [0, 0]
        binding.flags, binding.txpoll = 0, False
        raise


def do_unregif(binding: Binding) -> None:
    """Undo ``do_regif`` (netmap_do_unregif); extra buffers and the ring
    buffers no other holder keeps return to the pool."""
    adapter = binding.adapter
    if adapter is None:
        return
    _fast_remove(binding)
    if binding.registered:
        adapter.active_fds -= 1
        adapter.bindings.discard(binding)
        _forget_poller(binding)
        _krings_put(binding)
        if adapter.active_fds == 0:
            adapter.monitors_stop()
            adapter.register(False)
        adapter.rings_delete()
        _if_delete(binding)
        if adapter.active_fds == 0:
            adapter.krings_delete()
    binding.adapter = None
    binding.qfirst, binding.qlast = [0, 0], [0, 0]
    binding.flags, binding.txpoll, binding.csb = 0, False, None
    adapter.mem.sweep()


def _fast_install(binding: Binding) -> None:
    """C hooks for a binding with rings whose sync is C, when the device
    layer offers them; otherwise the binding stays with Python.  The hooks
    decline each request that would sync a ring whose sync is not C."""
    adapter = binding.adapter
    hooks = adapter.core.fast_hooks
    krings = list(binding.all_krings())
    # a binding with no rings (NR_REG_NULL) has nothing Python must sync: C answers it
    if hooks is None or binding.csb is not None or adapter.c_sync == lib.NMH_SYNC_PYTHON or \
            (krings and all(k.c.c_sync == lib.NMH_SYNC_PYTHON for k in krings)):
        return
    tx = helper_ffi.new("struct nmh_kring *[]", [k.c for k in binding.krings(TX)] or 1)
    rx = helper_ffi.new("struct nmh_kring *[]", [k.c for k in binding.krings(RX)] or 1)
    mem = adapter.mem
    waker = adapter.core.fast_waker
    notify, notify_ctx = hooks.notifier()
    fast = helper_ffi.new("struct nmh_fast_binding *", {
        "wake_fd": waker.fd, "notify": helper_ffi.cast("void *", notify),
        "notify_ctx": helper_ffi.cast("void *", notify_ctx),
        "tx": tx, "rx": rx, "ntx": binding.qlast[TX] - binding.qfirst[TX],
        "nrx": binding.qlast[RX] - binding.qfirst[RX], "objtotal": mem.bufs.objtotal,
        "waiter": adapter.core.c_waiter.state if adapter.core.c_waiter else helper_ffi.NULL,
        "bufsize": mem.buf_size, "txpoll": int(binding.txpoll)})
    if hooks.install(binding.fh, _address(helper_ffi.addressof(lib, "nmh_fast_ioctl")),
                     _address(helper_ffi.addressof(lib, "nmh_fast_poll")), _address(fast)):
        binding.fast, binding._fast_keep = fast, (tx, rx)
        waker.bindings.add(binding)


def _address(pointer) -> int:
    return int(helper_ffi.cast("uintptr_t", pointer))


def _fast_remove(binding: Binding) -> None:
    """Remove the binding's C hooks; returns once no C sync of it runs."""
    if binding.fast is not None:
        core = binding.adapter.core
        core.fast_hooks.remove(binding.fh)
        core.fast_waker.bindings.discard(binding)
        for kring in binding.all_krings():   # a wake the waker has not run yet
            FastWaker.wake_moved(kring)
        binding.fast, binding._fast_keep = None, ()


def _krings_get(binding: Binding) -> None:
    excl = bool(binding.flags & RegFlag.EXCLUSIVE)
    krings = list(binding.all_krings())
    for kring in krings:
        if kring.exclusive or (kring.users and excl):
            raise OSError(errno.EBUSY, f"{kring.name} busy")
    for kring in krings:
        kring.users += 1
        if excl:
            kring.exclusive = True


def _krings_put(binding: Binding) -> None:
    excl = bool(binding.flags & RegFlag.EXCLUSIVE)
    for kring in binding.all_krings():
        if excl:
            kring.exclusive = False
        kring.users -= 1


def _forget_poller(binding: Binding) -> None:
    adapter = binding.adapter
    for kring in binding.all_krings():
        kring.c.waiting = lib.NMH_WAIT_BUSY
    for kh in binding.poll_handles:
        adapter.waiters.discard(kh)
        for kring in binding.all_krings():
            kring.waiters.discard(kh)
    for kring in binding.all_krings():
        kring.arm()
    binding.poll_handles.clear()


def _if_new(binding: Binding) -> int:
    """A netmap_if for this binding; ring_ofs lists only its own rings."""
    adapter, mem = binding.adapter, binding.adapter.mem
    ntx, nrx = adapter.all_rings(TX), adapter.all_rings(RX)
    size = ffi.sizeof("struct netmap_if") + (ntx + nrx) * ffi.sizeof("ssize_t")
    if size > mem.ifs.objsize:
        raise OSError(errno.ENOMEM, "too many rings for a netmap_if")
    offset = mem.ifs.alloc()
    nifp = mem.region.ptr("struct netmap_if *", offset)
    ffi.memmove(nifp, bytes(size), size)
    name = adapter.name.encode()[:15]
    ffi.memmove(nifp.ni_name, name, len(name))
    nifp.ni_version = NETMAP_API
    nifp.ni_tx_rings, nifp.ni_rx_rings = adapter.nrings(TX), adapter.nrings(RX)
    nifp.ni_host_tx_rings, nifp.ni_host_rx_rings = adapter.num_host_rings
    for d, base in ((TX, 0), (RX, ntx)):
        for i, kring in enumerate(adapter.krings[d]):
            if kring.ring is not None and binding.qfirst[d] <= i < binding.qlast[d]:
                nifp.ring_ofs[base + i] = kring.ring_offset - offset
    return offset


def _if_delete(binding: Binding) -> None:
    if binding.nifp_offset is None:
        return
    mem = binding.adapter.mem
    if binding.has_extra:
        mem.list_drop(binding.nifp_offset)
        binding.has_extra = False
    mem.ifs.free(binding.nifp_offset)
    binding.nifp_offset = None


def extra_buffers(binding: Binding, count: int) -> int:
    """Give the binding up to ``count`` extra buffers (ni_bufs_head)."""
    mem = binding.adapter.mem
    nifp = mem.region.ptr("struct netmap_if *", binding.nifp_offset)
    head, got = mem.extra_alloc(count)
    nifp.ni_bufs_head = head
    if got:
        mem.list_hold(binding.nifp_offset)
        binding.has_extra = True
    return got


def _offsets_init(binding: Binding, opt) -> None:
    """The OFFSETS option (netmap_offsets_init); sets the option status."""
    o = opt.struct()
    adapter = binding.adapter
    buf_size = adapter.mem.buf_size
    error = 0
    max_offset, initial, bits = o.nro_max_offset, o.nro_initial_offset, o.nro_offset_bits
    mask = (1 << 64) - 1 if bits in (0, 64) else (1 << bits) - 1
    if not adapter.supports_offsets:
        error = errno.EOPNOTSUPP
    elif bits > 64 or max_offset > buf_size or (max_offset & mask) != max_offset or initial > max_offset:
        error = errno.EINVAL
    else:
        for kring in binding.all_krings():
            if kring.offset_mask:
                if (kring.offset_mask & mask) != mask or kring.offset_max < max_offset:
                    error = errno.EBUSY
                    break
                mask, max_offset = kring.offset_mask, kring.offset_max
            else:
                kring.offset_mask, kring.offset_max = mask, max_offset
                kring.offset_gap = o.nro_min_gap
                kring.ring.offset_mask = mask
            if initial and kring.users <= 1:
                slot = kring.ring.slot
                for j in range(kring.num_slots):
                    slot[j].ptr = (slot[j].ptr & ~mask) | (initial & mask)
    opt.status = error
    if error:
        raise OSError(error, "offsets option refused")
    o.nro_max_offset = max_offset
