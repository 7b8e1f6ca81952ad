"""/dev/netmap as a device handler: what the FUSE layer calls.

Each open() is a ``Binding``; ioctl and poll go to the control plane and
the sync engine under the core lock; release unbinds and returns the
binding's buffers.  This is the only module that sees both the device
layer's interface and the netmap core.
"""

import errno
import itertools
import logging

from nmfuse.abi.netmap import Ioctl
from nmfuse.netmap import control, kloop, legacy, sync
from nmfuse.netmap.binding import Binding, do_unregif
from nmfuse.netmap.kring import RX, TX

log = logging.getLogger("nmfuse.netmap")


class NetmapDevice:
    """Implements the device handler interface of ``nmfuse.dev``.

    ``user_memory(pid)`` returns an object with read(addr, n) and
    write(addr, data) into the calling process (the device layer's
    UserMemory); ``user_fds(pid, fds)`` returns duplicates of the calling
    process's file descriptors ``fds`` (the device layer's userfds.take),
    for the sync-kloop's eventfds.  Both are passed in so the core never
    imports FUSE code.
    """

    def __init__(self, core, user_memory, user_fds=None):
        self.core = core
        self.user_memory = user_memory
        self.user_fds = user_fds
        self.bindings: dict[int, Binding] = {}
        self._fh = itertools.count(1)

    def open(self, caller, flags: int) -> int:
        """A new open file: an unbound ``Binding``; returns its handle."""
        with self.core.lock:
            fh = next(self._fh)
            self.bindings[fh] = Binding(fh, caller.pid)
            return fh

    def release(self, fh: int) -> None:
        """The file ``fh`` is closed: unbind it and drop its port reference
        (netmap_dtor)."""
        with self.core.lock:
            binding = self.bindings.get(fh)
            loop = None if binding is None else kloop.release(binding)
        if loop is not None:
            loop.join()  # it needs the core lock to end
        with self.core.lock:
            binding = self.bindings.pop(fh, None)
            if binding is None or binding.adapter is None:
                return
            adapter = binding.adapter
            do_unregif(binding)
            adapter.put()

    def ioctl(self, caller, fh: int, cmd: int, arg: int, data: bytes, out_size: int):
        """NIOCTXSYNC, NIOCRXSYNC, NIOCCTRL and the legacy NIOCREGIF/NIOCGINFO on
        ``fh`` (netmap_ioctl); returns (errno, bytes to copy back): EBADF for
        an unknown handle, EOPNOTSUPP for any other command; or, for a
        sync-kloop START/STOP, a ``kloop.Later`` (a deferred answer)."""
        with self.core.lock:
            binding = self.bindings.get(fh)
            if binding is None:
                return errno.EBADF, b""
            if cmd == Ioctl.NIOCTXSYNC:
                return sync.ioctl_sync(binding, TX), b""
            if cmd == Ioctl.NIOCRXSYNC:
                return sync.ioctl_sync(binding, RX), b""
            if cmd == Ioctl.NIOCCTRL:
                take_fds = None
                if self.user_fds is not None:
                    def take_fds(fds, pid=caller.pid):
                        return self.user_fds(pid, fds)
                return control.handle(self.core, binding, data, self.user_memory(caller.pid), take_fds)
            if cmd in (Ioctl.NIOCREGIF, Ioctl.NIOCGINFO):
                return legacy.handle(self.core, binding, cmd, data)
            return errno.EOPNOTSUPP, b""

    def poll(self, caller, fh: int, events: int, kh: int | None) -> int:
        """The ready events of ``fh`` (netmap_poll); POLLERR for an unknown handle."""
        with self.core.lock:
            binding = self.bindings.get(fh)
            if binding is None:
                return sync.POLLERR
            return sync.poll(binding, events, kh)

    def status(self) -> dict:
        """A snapshot for ``nmfuse status``: ports, their bindings, pools."""
        with self.core.lock:
            ports: dict[int, dict] = {}
            for binding in self.bindings.values():
                adapter = binding.adapter
                if adapter is None:
                    continue
                port = ports.setdefault(id(adapter), _port_status(adapter))
                port["bindings"].append({"fh": binding.fh, "pid": binding.pid,
                                         "tx": [binding.qfirst[TX], binding.qlast[TX]],
                                         "rx": [binding.qfirst[RX], binding.qlast[RX]]})
            external = [{"mem_id": m.mem_id, "memsize": m.memsize, "users": m.users, "pools": _pools(m)}
                        for m in self.core.memories.externals()]
            return {"open_files": len(self.bindings), "ports": list(ports.values()),
                    "pools": _pools(self.core.mem), "memsize": self.core.mem.memsize,
                    "external_memory": external}


def _pools(mem) -> dict:
    return {name: {"total": s.total, "used": s.used, "free": s.free}
            for name, s in mem.statistics().items()}


def _port_status(adapter) -> dict:
    rings = []
    for d, krings in enumerate(adapter.krings or ()):
        for k in krings:
            rings.append({"dir": "tx" if d == TX else "rx", "index": k.index, "host": k.host,
                          "slots": k.num_slots, "users": k.users, "packets": k.stats_packets,
                          "bytes": k.stats_bytes, "drops": k.stats_drops, "errors": k.stats_errors})
    return {"name": adapter.name, "type": adapter.kind, "fds": adapter.active_fds,
            "rings": rings, "bindings": [], "mem_id": adapter.mem.mem_id}
