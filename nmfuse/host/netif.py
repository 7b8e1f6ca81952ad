"""Facts about existing Linux interfaces, as the generic driver needs them.

Everything comes from rtnetlink (pyroute2) in the network namespace of the
calling thread, i.e. the daemon's (the active queue counts from the
ethtool ioctl, where the driver reports them): an interface is known by its index,
which survives a rename, so a port bound to an interface that is renamed
keeps working, and one that is deleted or moved to another namespace is
recognised as gone (``alive``).  Nothing here changes an interface.
"""

import errno
import logging
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.ethtool.ioctl import EthtoolError, IoctlEthtool
from pyroute2.netlink.exceptions import NetlinkError

logging.getLogger("pyroute2").setLevel(logging.WARNING)

IFNAMSIZ = 16
IFF_UP = 0x1            # linux/if.h
IFF_LOOPBACK = 0x8


@dataclass(frozen=True)
class IfInfo:
    """One interface: name, index, kind (IFLA_INFO_KIND, "" for a plain
    device), MTU, flags, and its transmit and receive queue counts (those
    in use, see ``active_queues``)."""

    name: str
    index: int
    kind: str
    mtu: int
    flags: int
    tx_queues: int
    rx_queues: int

    @property
    def up(self) -> bool:
        """Administratively up (IFF_UP)."""
        return bool(self.flags & IFF_UP)


def valid_name(name: str) -> bool:
    """Whether ``name`` could be a Linux interface name (dev_valid_name)."""
    return (0 < len(name.encode()) < IFNAMSIZ and name not in (".", "..")
            and not any(c in name for c in "/:") and not any(c.isspace() for c in name))


def active_queues(name: str) -> tuple[int, int] | None:
    """(tx, rx) queues interface ``name`` uses now, as netmap's
    nm_os_generic_find_num_queues reads them: the driver's channel counts
    (ETHTOOL_GCHANNELS: tx or rx, else combined).  None when the driver
    does not report them (loopback, bridges) or the name is gone.

    rtnetlink only has the queues a device was allocated
    (IFLA_NUM_*_QUEUES): a veth made without asking gets one per CPU but
    uses one, and a NIC may run fewer channels than it has queues.
    """
    try:
        eth = IoctlEthtool(name)
    except OSError:
        return None
    try:
        ch = eth.get_channels()
    except (EthtoolError, OSError):
        return None
    finally:
        eth.close()
    tx, rx = ch.tx_count or ch.combined_count, ch.rx_count or ch.combined_count
    return (tx, rx) if tx and rx else None


def _info(link) -> IfInfo:
    linkinfo = link.get_attr("IFLA_LINKINFO")
    kind = (linkinfo.get_attr("IFLA_INFO_KIND") or "") if linkinfo is not None else ""
    name = link.get_attr("IFLA_IFNAME")
    queues = active_queues(name) or (link.get_attr("IFLA_NUM_TX_QUEUES") or 1,
                                     link.get_attr("IFLA_NUM_RX_QUEUES") or 1)
    return IfInfo(name=name, index=link["index"], kind=kind, mtu=link.get_attr("IFLA_MTU") or 0,
                  flags=link["flags"], tx_queues=queues[0], rx_queues=queues[1])


def _get(**key) -> IfInfo | None:
    with IPRoute() as ipr:
        try:
            links = ipr.link("get", **key)
        except NetlinkError as e:
            if e.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise OSError(e.code or errno.EIO, f"RTM_GETLINK {key}: {e}") from None
    return _info(links[0]) if links else None


def lookup(name: str) -> IfInfo | None:
    """Interface ``name`` of the daemon's namespace; None if there is none.

    Raises:
        OSError: netlink failed for another reason.
    """
    if not valid_name(name):
        return None
    return _get(ifname=name)


def by_index(index: int) -> IfInfo | None:
    """Interface ``index`` of the daemon's namespace (whatever its name is
    now); None if it was deleted or moved to another namespace."""
    return _get(index=index)


def set_up(index: int) -> None:
    """Bring interface ``index`` up (IFF_UP).  Raises OSError."""
    with IPRoute() as ipr:
        try:
            ipr.link("set", index=index, state="up")
        except NetlinkError as e:
            raise OSError(e.code or errno.EIO, f"set interface {index} up: {e}") from None
