"""Linux TAP interfaces as the TAP driver uses them: queues, flags, link.

Three kinds of operation, each through the interface the kernel offers
for it:

* queue fds (open/create, virtio-net header, carrier, netns, persistence): ioctls on
  /dev/net/tun, done by the C helper (``nmh_tap_*``), which includes the
  kernel's own headers, so no struct layout is spelled out here;
* what an existing interface is (TAP or not, persistent, multi-queue,
  queues in use): RTM_GETLINK through pyroute2, IFLA_TUN_* attributes;
* link state (up, MTU, delete): netlink through pyroute2, in the network
  namespace the interface lives in *now*.  A TAP the daemon created may
  have been moved to another namespace (``ip link set NAME netns X``);
  its queue fd finds that namespace (TUNGETDEVNETNS) and the netlink
  request runs in a short-lived thread that has joined it, since a
  netlink socket talks to the namespace of the thread that opened it.

Every function raises OSError with the kernel's errno on failure.
"""

import enum
import errno
import logging
import os
import threading
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netns import setns

from nmfuse._helper import ffi, lib

# pyroute2 logs every netlink message at DEBUG: keep the daemon's -v about nmfuse
logging.getLogger("pyroute2").setLevel(logging.WARNING)

IFNAMSIZ = 16
ETH_HLEN = 14
MAX_MTU = 65535   # what the tun driver accepts


class TunType(enum.IntEnum):
    """IFLA_TUN_TYPE values (linux/if_tun.h IFF_TUN, IFF_TAP)."""

    TUN = 1
    TAP = 2


@dataclass(frozen=True)
class LinkInfo:
    """What netlink says about an interface (the flags: of the tun driver)."""

    name: str
    index: int
    tun: bool           # made by the tun driver (a TUN or a TAP)
    tap: bool
    persistent: bool
    multi_queue: bool
    queues_attached: int
    mtu: int


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


def _netlink_error(e: NetlinkError, what: str) -> OSError:
    return OSError(e.code or errno.EIO, f"{what}: {e}")


def valid_name(name: str) -> bool:
    """Whether ``name`` could be a Linux interface name (dev_valid_name)."""
    return (0 < len(name.encode()) < IFNAMSIZ and name not in (".", "..")
            and not any(c in name for c in "/:") and not any(c.isspace() for c in name))


def probe(name: str) -> LinkInfo | None:
    """What interface ``name`` of the daemon's namespace is; None if there
    is no such interface."""
    if not valid_name(name):
        return None
    with IPRoute() as ipr:
        try:
            links = ipr.link("get", ifname=name)
        except NetlinkError as e:
            if e.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise _netlink_error(e, name) from None
    if not links:
        return None
    link = links[0]
    info = link.get_attr("IFLA_LINKINFO")
    tun = info is not None and info.get_attr("IFLA_INFO_KIND") == "tun"
    data = info.get_attr("IFLA_INFO_DATA") if tun else None

    def attr(key):
        return (data.get_attr(key) or 0) if data else 0
    return LinkInfo(name=name, index=link["index"], tun=tun, tap=attr("IFLA_TUN_TYPE") == TunType.TAP,
                    persistent=bool(attr("IFLA_TUN_PERSIST")), multi_queue=bool(attr("IFLA_TUN_MULTI_QUEUE")),
                    queues_attached=attr("IFLA_TUN_NUM_QUEUES"), mtu=link.get_attr("IFLA_MTU") or 0)


def open_queue(name: str, multi_queue: bool, vnet_hdr: bool = False) -> int:
    """A non-blocking queue fd of TAP ``name`` (created, non-persistent, if
    it does not exist), without packet info, with a virtio-net header if
    ``vnet_hdr`` (the interface keeps the choice of its first queue)."""
    return _check(lib.nmh_tap_open(name.encode(), int(multi_queue), int(vnet_hdr)), f"attach to TAP {name}")


def open_queues(name: str, count: int, multi_queue: bool, vnet_hdr: bool = False, netns: int | None = None) -> list[int]:
    """``count`` queue fds of TAP ``name``, found in the network namespace
    of fd ``netns`` if given (else the daemon's); all or none."""
    def op():
        fds: list[int] = []
        try:
            for _ in range(count):
                fds.append(open_queue(name, multi_queue, vnet_hdr))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds
    return op() if netns is None else _in_netns(netns, op)


def set_hdr(fd: int, hdrlen: int) -> None:
    """Frames carry a ``hdrlen``-byte virtio-net header (10 or 12, on a
    queue opened with one), or none (0)."""
    _check(lib.nmh_tap_set_hdr(fd, hdrlen), "set the virtio-net header")


def set_carrier(fd: int, on: bool) -> None:
    """Turn the carrier of the TAP behind ``fd`` on or off (TUNSETCARRIER)."""
    _check(lib.nmh_tap_set_carrier(fd, int(on)), "set the carrier")


def set_persist(fd: int, on: bool) -> None:
    """Make the TAP behind ``fd`` persistent (it outlives its queue fds) or
    not (TUNSETPERSIST)."""
    _check(lib.nmh_tap_set_persist(fd, int(on)), "set persistence")


def drain(fd: int) -> int:
    """Discard the frames queued on ``fd``; returns how many."""
    return _check(lib.nmh_tap_drain(fd), "drain")


def current_name(fd: int) -> str:
    """The name the TAP behind ``fd`` has now (TUNGETIFF): it may have been
    renamed since it was opened."""
    buf = ffi.new("char[]", IFNAMSIZ)
    _check(lib.nmh_tap_name(fd, buf), "TUNGETIFF")
    return ffi.string(buf).decode()


def netns_of(fd: int) -> int:
    """An fd of the network namespace the TAP behind ``fd`` lives in."""
    return _check(lib.nmh_tap_netns(fd), "TUNGETDEVNETNS")


def _in_netns(nsfd: int, fn):
    """Run ``fn()`` in the network namespace of fd ``nsfd``."""
    if os.fstat(nsfd).st_ino == os.stat("/proc/thread-self/ns/net").st_ino:
        return fn()
    result: list = []

    def run():
        try:
            setns(nsfd)
            result.append((True, fn()))
        except BaseException as e:  # handed to the caller's thread
            result.append((False, e))

    thread = threading.Thread(target=run, name="nmfuse-netns")
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


def _in_netns_of(fd: int, fn):
    """Run ``fn()`` in the network namespace of the TAP behind ``fd``."""
    nsfd = netns_of(fd)
    try:
        return _in_netns(nsfd, fn)
    finally:
        os.close(nsfd)


def link_set(fd: int, **attrs) -> None:
    """RTM_NEWLINK on the TAP behind ``fd`` (e.g. state="up", mtu=N),
    wherever it lives now."""
    def op():
        name = current_name(fd)
        with IPRoute() as ipr:
            try:
                ipr.link("set", ifname=name, **attrs)
            except NetlinkError as e:
                raise _netlink_error(e, f"set {attrs} on {name}") from None
    _in_netns_of(fd, op)


def link_delete(fd: int) -> None:
    """Delete the interface behind ``fd``, wherever it lives now."""
    def op():
        name = current_name(fd)
        with IPRoute() as ipr:
            try:
                ipr.link("del", ifname=name)
            except NetlinkError as e:
                if e.code not in (errno.ENODEV, errno.ENOENT):
                    raise _netlink_error(e, f"delete {name}") from None
    _in_netns_of(fd, op)
