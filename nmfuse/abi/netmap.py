"""The netmap ABI for Python: constants as enums over ``netmap_abi.h``.

The header next to this file is the only place a netmap struct or constant
is declared.  Its cdef is compiled as ``nmfuse.abi._netmap``, which the C
helper includes, so the daemon, the tests and the C loops share one set of
struct types.  Each enum below takes its members' values from the header
by name (``_enum``): no value is written twice.
"""

import enum

from nmfuse.abi._netmap import ffi, lib


def _const(name: str) -> int:
    return getattr(lib, name)


def _enum(kind, name: str, prefix: str, members: str, doc: str, **fixed: int):
    """An enum ``name`` whose members are ``members`` (space separated),
    valued as the header's ``prefix + member``, plus ``fixed`` values."""
    values = {member: _const(prefix + member) for member in members.split()}
    made = kind(name, {**fixed, **values}, module=__name__)
    made.__doc__ = doc
    return made


# netmap_abi.h: API versions, sizes
NETMAP_API = _const("NETMAP_API")
NETMAP_MIN_API = _const("NETMAP_MIN_API")
NETMAP_MAX_API = _const("NETMAP_MAX_API")
NETMAP_REQ_MAXSIZE = _const("NETMAP_REQ_MAXSIZE")
NETMAP_REQ_IFNAMSIZ = _const("NETMAP_REQ_IFNAMSIZ")
NETMAP_IFNAMSIZ = _const("NETMAP_IFNAMSIZ")


Ioctl = _enum(enum.IntEnum, "Ioctl", "",
              "NIOCGINFO NIOCREGIF NIOCTXSYNC NIOCRXSYNC NIOCCTRL",
              "ioctl commands of /dev/netmap (netmap_abi.h, group 'i').")

ReqType = _enum(enum.IntEnum, "ReqType", "NETMAP_REQ_",
                "REGISTER PORT_INFO_GET VALE_ATTACH VALE_DETACH VALE_LIST PORT_HDR_SET PORT_HDR_GET "
                "VALE_NEWIF VALE_DELIF VALE_POLLING_ENABLE VALE_POLLING_DISABLE POOLS_INFO_GET "
                "SYNC_KLOOP_START SYNC_KLOOP_STOP CSB_ENABLE",
                "nmreq_header.nr_reqtype (netmap_abi.h NETMAP_REQ_*).")

OptType = _enum(enum.IntEnum, "OptType", "NETMAP_REQ_OPT_",
                "EXTMEM SYNC_KLOOP_EVENTFDS CSB SYNC_KLOOP_MODE OFFSETS",
                "nmreq_option.nro_reqtype (netmap_abi.h NETMAP_REQ_OPT_*).")
NETMAP_REQ_OPT_MAX = _const("NETMAP_REQ_OPT_MAX")

KloopMode = _enum(enum.IntFlag, "KloopMode", "NM_OPT_SYNC_KLOOP_", "DIRECT_TX DIRECT_RX",
                  "nmreq_opt_sync_kloop_mode.mode (netmap_abi.h NM_OPT_SYNC_KLOOP_*).")

RegMode = _enum(enum.IntEnum, "RegMode", "NR_REG_",
                "DEFAULT ALL_NIC SW NIC_SW ONE_NIC PIPE_MASTER PIPE_SLAVE NULL ONE_SW",
                "nmreq_register.nr_mode (netmap_abi.h NR_REG_*).")
NR_REG_MASK = _const("NR_REG_MASK")

RegFlag = _enum(enum.IntFlag, "RegFlag", "NR_",
                "MONITOR_TX MONITOR_RX ZCOPY_MON EXCLUSIVE PTNETMAP_HOST RX_RINGS_ONLY TX_RINGS_ONLY "
                "ACCEPT_VNET_HDR DO_RX_POLL NO_TX_POLL",
                "nmreq_register.nr_flags (netmap_abi.h NR_*).")

SlotFlag = _enum(enum.IntFlag, "SlotFlag", "NS_",
                 "BUF_CHANGED REPORT FORWARD NO_LEARN INDIRECT MOREFRAG TXMON",
                 "netmap_slot.flags (netmap_abi.h NS_*).")

RingFlag = _enum(enum.IntFlag, "RingFlag", "NR_", "TIMESTAMP FORWARD",
                 "netmap_ring.flags (netmap_abi.h NR_TIMESTAMP, NR_FORWARD).")

NI_PRIV_MEM = _const("NI_PRIV_MEM")

LegacyRingId = _enum(enum.IntFlag, "LegacyRingId", "NETMAP_",
                     "NO_TX_POLL SW_RING HW_RING DO_RX_POLL",
                     "Legacy nmreq.nr_ringid bits (netmap_abi.h NETMAP_*_RING, *_POLL).")
NETMAP_RING_MASK = _const("NETMAP_RING_MASK")

LegacyCmd = _enum(enum.IntEnum, "LegacyCmd", "NETMAP_",
                  "BDG_ATTACH BDG_DETACH BDG_REGOPS BDG_LIST BDG_VNET_HDR BDG_NEWIF BDG_DELIF "
                  "PT_HOST_CREATE PT_HOST_DELETE BDG_POLLING_ON BDG_POLLING_OFF VNET_HDR_GET",
                  "Legacy nmreq.nr_cmd values (netmap_abi.h NETMAP_BDG_*, NETMAP_VNET_HDR_GET).",
                  REGIF=0)

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
