"""The netmap ABI for Python: constants as enums over ``netmap_abi.h``.

The header next to this file is the only place a netmap struct or constant
is declared.  Its cdef lives in the compiled C helper (``nmfuse._helper``),
so the daemon, the tests and the C loops share one ``ffi`` and one set of
struct types.
"""

import enum

from nmfuse.abi._netmap import ffi, lib


def _const(name: str) -> int:
    return getattr(lib, name)


# netmap_abi.h: API versions, sizes
NETMAP_API = _const("NETMAP_API")
NETMAP_MIN_API = _const("NETMAP_MIN_API")
NETMAP_MAX_API = _const("NETMAP_MAX_API")
NETMAP_REQ_MAXSIZE = _const("NETMAP_REQ_MAXSIZE")
NETMAP_REQ_IFNAMSIZ = _const("NETMAP_REQ_IFNAMSIZ")
NETMAP_IFNAMSIZ = _const("NETMAP_IFNAMSIZ")


class Ioctl(enum.IntEnum):
    """ioctl commands of /dev/netmap (netmap_abi.h, group 'i')."""

    NIOCGINFO = _const("NIOCGINFO")
    NIOCREGIF = _const("NIOCREGIF")
    NIOCTXSYNC = _const("NIOCTXSYNC")
    NIOCRXSYNC = _const("NIOCRXSYNC")
    NIOCCTRL = _const("NIOCCTRL")


class ReqType(enum.IntEnum):
    """nmreq_header.nr_reqtype (netmap_abi.h NETMAP_REQ_*)."""

    REGISTER = _const("NETMAP_REQ_REGISTER")
    PORT_INFO_GET = _const("NETMAP_REQ_PORT_INFO_GET")
    VALE_ATTACH = _const("NETMAP_REQ_VALE_ATTACH")
    VALE_DETACH = _const("NETMAP_REQ_VALE_DETACH")
    VALE_LIST = _const("NETMAP_REQ_VALE_LIST")
    PORT_HDR_SET = _const("NETMAP_REQ_PORT_HDR_SET")
    PORT_HDR_GET = _const("NETMAP_REQ_PORT_HDR_GET")
    VALE_NEWIF = _const("NETMAP_REQ_VALE_NEWIF")
    VALE_DELIF = _const("NETMAP_REQ_VALE_DELIF")
    VALE_POLLING_ENABLE = _const("NETMAP_REQ_VALE_POLLING_ENABLE")
    VALE_POLLING_DISABLE = _const("NETMAP_REQ_VALE_POLLING_DISABLE")
    POOLS_INFO_GET = _const("NETMAP_REQ_POOLS_INFO_GET")
    SYNC_KLOOP_START = _const("NETMAP_REQ_SYNC_KLOOP_START")
    SYNC_KLOOP_STOP = _const("NETMAP_REQ_SYNC_KLOOP_STOP")
    CSB_ENABLE = _const("NETMAP_REQ_CSB_ENABLE")


class OptType(enum.IntEnum):
    """nmreq_option.nro_reqtype (netmap_abi.h NETMAP_REQ_OPT_*)."""

    EXTMEM = _const("NETMAP_REQ_OPT_EXTMEM")
    SYNC_KLOOP_EVENTFDS = _const("NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS")
    CSB = _const("NETMAP_REQ_OPT_CSB")
    SYNC_KLOOP_MODE = _const("NETMAP_REQ_OPT_SYNC_KLOOP_MODE")
    OFFSETS = _const("NETMAP_REQ_OPT_OFFSETS")


NETMAP_REQ_OPT_MAX = _const("NETMAP_REQ_OPT_MAX")


class RegMode(enum.IntEnum):
    """nmreq_register.nr_mode (netmap_abi.h NR_REG_*)."""

    DEFAULT = _const("NR_REG_DEFAULT")
    ALL_NIC = _const("NR_REG_ALL_NIC")
    SW = _const("NR_REG_SW")
    NIC_SW = _const("NR_REG_NIC_SW")
    ONE_NIC = _const("NR_REG_ONE_NIC")
    PIPE_MASTER = _const("NR_REG_PIPE_MASTER")
    PIPE_SLAVE = _const("NR_REG_PIPE_SLAVE")
    NULL = _const("NR_REG_NULL")
    ONE_SW = _const("NR_REG_ONE_SW")


NR_REG_MASK = _const("NR_REG_MASK")


class RegFlag(enum.IntFlag):
    """nmreq_register.nr_flags (netmap_abi.h NR_*)."""

    MONITOR_TX = _const("NR_MONITOR_TX")
    MONITOR_RX = _const("NR_MONITOR_RX")
    ZCOPY_MON = _const("NR_ZCOPY_MON")
    EXCLUSIVE = _const("NR_EXCLUSIVE")
    PTNETMAP_HOST = _const("NR_PTNETMAP_HOST")
    RX_RINGS_ONLY = _const("NR_RX_RINGS_ONLY")
    TX_RINGS_ONLY = _const("NR_TX_RINGS_ONLY")
    ACCEPT_VNET_HDR = _const("NR_ACCEPT_VNET_HDR")
    DO_RX_POLL = _const("NR_DO_RX_POLL")
    NO_TX_POLL = _const("NR_NO_TX_POLL")


class SlotFlag(enum.IntFlag):
    """netmap_slot.flags (netmap_abi.h NS_*)."""

    BUF_CHANGED = _const("NS_BUF_CHANGED")
    REPORT = _const("NS_REPORT")
    FORWARD = _const("NS_FORWARD")
    NO_LEARN = _const("NS_NO_LEARN")
    INDIRECT = _const("NS_INDIRECT")
    MOREFRAG = _const("NS_MOREFRAG")
    TXMON = _const("NS_TXMON")


class RingFlag(enum.IntFlag):
    """netmap_ring.flags (netmap_abi.h NR_TIMESTAMP, NR_FORWARD)."""

    TIMESTAMP = _const("NR_TIMESTAMP")
    FORWARD = _const("NR_FORWARD")


NI_PRIV_MEM = _const("NI_PRIV_MEM")


class LegacyRingId(enum.IntFlag):
    """Legacy nmreq.nr_ringid bits (netmap_abi.h NETMAP_*_RING, *_POLL)."""

    NO_TX_POLL = _const("NETMAP_NO_TX_POLL")
    SW_RING = _const("NETMAP_SW_RING")
    HW_RING = _const("NETMAP_HW_RING")
    DO_RX_POLL = _const("NETMAP_DO_RX_POLL")


NETMAP_RING_MASK = _const("NETMAP_RING_MASK")


class LegacyCmd(enum.IntEnum):
    """Legacy nmreq.nr_cmd values (netmap_abi.h NETMAP_BDG_*, NETMAP_VNET_HDR_GET)."""

    REGIF = 0
    BDG_ATTACH = _const("NETMAP_BDG_ATTACH")
    BDG_DETACH = _const("NETMAP_BDG_DETACH")
    BDG_REGOPS = _const("NETMAP_BDG_REGOPS")
    BDG_LIST = _const("NETMAP_BDG_LIST")
    BDG_VNET_HDR = _const("NETMAP_BDG_VNET_HDR")
    BDG_NEWIF = _const("NETMAP_BDG_NEWIF")
    BDG_DELIF = _const("NETMAP_BDG_DELIF")
    PT_HOST_CREATE = _const("NETMAP_PT_HOST_CREATE")
    PT_HOST_DELETE = _const("NETMAP_PT_HOST_DELETE")
    BDG_POLLING_ON = _const("NETMAP_BDG_POLLING_ON")
    BDG_POLLING_OFF = _const("NETMAP_BDG_POLLING_OFF")
    VNET_HDR_GET = _const("NETMAP_VNET_HDR_GET")


NETMAP_BDG_HOST = _const("NETMAP_BDG_HOST")

# Body struct of each request type; None: the request has no body.
BODY_TYPE: dict[int, str | None] = {
    ReqType.REGISTER: "struct nmreq_register",
    ReqType.PORT_INFO_GET: "struct nmreq_port_info_get",
    ReqType.VALE_ATTACH: "struct nmreq_vale_attach",
    ReqType.VALE_DETACH: "struct nmreq_vale_detach",
    ReqType.VALE_LIST: "struct nmreq_vale_list",
    ReqType.PORT_HDR_SET: "struct nmreq_port_hdr",
    ReqType.PORT_HDR_GET: "struct nmreq_port_hdr",
    ReqType.VALE_NEWIF: "struct nmreq_vale_newif",
    ReqType.VALE_DELIF: None,
    ReqType.VALE_POLLING_ENABLE: "struct nmreq_vale_polling",
    ReqType.VALE_POLLING_DISABLE: "struct nmreq_vale_polling",
    ReqType.POOLS_INFO_GET: "struct nmreq_pools_info",
    ReqType.SYNC_KLOOP_START: "struct nmreq_sync_kloop_start",
    ReqType.SYNC_KLOOP_STOP: None,
    ReqType.CSB_ENABLE: None,
}


def body_size(reqtype: int) -> int:
    """Bytes of the body netmap copies for ``reqtype`` (0: none or unknown)."""
    ctype = BODY_TYPE.get(reqtype)
    return ffi.sizeof(ctype) if ctype else 0
