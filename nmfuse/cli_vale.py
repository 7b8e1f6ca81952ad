"""``nmfuse vale``: the VALE control tool, over the device's NIOCCTRL.

The options are those of netmap's own control tool:

    nmfuse vale                      list every port of every switch
    nmfuse vale -l vale0:a           switch and port index of a port
    nmfuse vale -n v0 [-C conf]      create persistent port v0
    nmfuse vale -r v0                delete it
    nmfuse vale -a vale0:v0          attach port v0 (or any port) to switch vale0
    nmfuse vale -h vale0:tap0        ... with its host rings (port vale0:tap0^)
    nmfuse vale -d vale0:v0          detach it
    nmfuse vale -g NAME              rings, slots and memory of a port
    nmfuse vale -p vale0:tap0 [-C x,y,z] / -P vale0:tap0   start / stop polling

``-C`` gives the geometry for -n/-a as ``tx_slots[,rx_slots[,tx_rings[,rx_rings]]]``
and the polling configuration for -p as ``mode,first_cpu[,cpus]`` (mode 0:
one CPU for all rings, 1: one CPU per ring).  Each action is one request
on a fresh descriptor of the device ($NETMAP_DEVICE, default /dev/netmap,
or --device); the request body lives in this process, where the daemon
reads it as it does for any client.
"""

import argparse
import errno
import fcntl
import json
import os
import sys

from nmfuse.abi.netmap import NETMAP_API, Ioctl, RegMode, ReqType, ffi, lib

DEFAULT_DEVICE = "/dev/netmap"


class ControlError(OSError):
    """A request the device refused; ``errno`` is netmap's."""


def _ioctl(fd: int, cmd: int, buf: bytearray) -> None:
    fcntl.ioctl(fd, cmd, buf)


class Vale:
    """VALE requests on a device path.

    ``ioctl(fd, cmd, buf)`` defaults to fcntl.ioctl; ``opener(path)`` to
    os.open (both replaceable, for tests that serve the device in process).
    """

    def __init__(self, device: str, ioctl=_ioctl, opener=None, closer=os.close):
        self.device = device
        self._ioctl = ioctl
        self._open = opener or (lambda path: os.open(path, os.O_RDWR))
        self._close = closer

    def request(self, reqtype: int, name: str = "", body=None) -> str:
        """One NIOCCTRL; returns the name the device wrote back.

        Raises:
            ControlError: the device's errno.
            OSError: the device could not be opened.
        """
        hdr = ffi.new("struct nmreq_header *")
        hdr.nr_version = NETMAP_API
        hdr.nr_reqtype = reqtype
        hdr.nr_name = name.encode()[:63]
        if body is not None:
            hdr.nr_body = int(ffi.cast("uintptr_t", body))
        buf = bytearray(ffi.buffer(hdr))
        fd = self._open(self.device)
        try:
            self._ioctl(fd, Ioctl.NIOCCTRL, buf)
        except OSError as e:
            raise ControlError(e.errno, os.strerror(e.errno)) from None
        finally:
            self._close(fd)
        answered = ffi.from_buffer("struct nmreq_header *", buf)
        return ffi.string(answered.nr_name).decode("latin-1")

    def list_all(self) -> list[dict]:
        """Every port, walking (bridge, port) indexes until ENOENT."""
        body = ffi.new("struct nmreq_vale_list *")
        ports = []
        while True:
            try:
                name = self.request(ReqType.VALE_LIST, "", body)
            except ControlError as e:
                if e.errno == errno.ENOENT:
                    return ports
                raise
            ports.append({"name": name, "bridge_idx": body.nr_bridge_idx, "port_idx": body.nr_port_idx})
            body.nr_port_idx += 1

    def lookup(self, name: str) -> dict:
        """Switch and port index of port ``name`` (VALE_LIST; vale-ctl -l).

        Raises:
            ControlError, OSError: as ``request``.
        """
        body = ffi.new("struct nmreq_vale_list *")
        self.request(ReqType.VALE_LIST, name, body)
        return {"name": name, "bridge_idx": body.nr_bridge_idx, "port_idx": body.nr_port_idx}

    def newif(self, name: str, geometry=(0, 0, 0, 0), mem_id: int = 0) -> dict:
        """Create persistent port ``name`` (VALE_NEWIF; vale-ctl -n); returns the
        geometry it got.  ``geometry`` is (tx_slots, rx_slots, tx_rings,
        rx_rings), 0 for the default.

        Raises:
            ControlError, OSError: as ``request``.
        """
        body = ffi.new("struct nmreq_vale_newif *")
        body.nr_tx_slots, body.nr_rx_slots, body.nr_tx_rings, body.nr_rx_rings = geometry
        body.nr_mem_id = mem_id
        self.request(ReqType.VALE_NEWIF, name, body)
        return {"tx_slots": body.nr_tx_slots, "rx_slots": body.nr_rx_slots, "tx_rings": body.nr_tx_rings,
                "rx_rings": body.nr_rx_rings, "mem_id": body.nr_mem_id}

    def delif(self, name: str) -> None:
        """Delete persistent port ``name`` (VALE_DELIF; vale-ctl -r).

        Raises:
            ControlError, OSError: as ``request``.
        """
        self.request(ReqType.VALE_DELIF, name)

    def attach(self, name: str, host: bool = False, geometry=(0, 0, 0, 0), mem_id: int = 0) -> int:
        """Attach port ``valeX:IF`` to switch valeX, with IF's host rings if
        ``host`` (VALE_ATTACH; vale-ctl -a, -h); returns its port index.

        Raises:
            ControlError, OSError: as ``request``.
        """
        body = ffi.new("struct nmreq_vale_attach *")
        body.reg.nr_mode = RegMode.NIC_SW if host else RegMode.ALL_NIC
        body.reg.nr_tx_slots, body.reg.nr_rx_slots, body.reg.nr_tx_rings, body.reg.nr_rx_rings = geometry
        body.reg.nr_mem_id = mem_id
        self.request(ReqType.VALE_ATTACH, name, body)
        return body.port_index

    def detach(self, name: str) -> int:
        """Detach port ``name`` from its switch (VALE_DETACH; vale-ctl -d); returns
        the port index it had.

        Raises:
            ControlError, OSError: as ``request``.
        """
        body = ffi.new("struct nmreq_vale_detach *")
        self.request(ReqType.VALE_DETACH, name, body)
        return body.port_index

    def info(self, name: str) -> dict:
        """Rings, slots and memory of port ``name`` (PORT_INFO_GET; vale-ctl -g).

        Raises:
            ControlError, OSError: as ``request``.
        """
        body = ffi.new("struct nmreq_port_info_get *")
        self.request(ReqType.PORT_INFO_GET, name, body)
        return {"memsize": body.nr_memsize, "tx_slots": body.nr_tx_slots, "rx_slots": body.nr_rx_slots,
                "tx_rings": body.nr_tx_rings, "rx_rings": body.nr_rx_rings,
                "host_tx_rings": body.nr_host_tx_rings, "host_rx_rings": body.nr_host_rx_rings,
                "mem_id": body.nr_mem_id}

    def polling(self, name: str, enable: bool, mode: int = 0, first_cpu: int = 0, cpus: int = 1) -> None:
        """Start (``enable``) or stop polling port ``name`` (VALE_POLLING_ENABLE /
        VALE_POLLING_DISABLE; vale-ctl -p, -P): ``mode`` 0 polls all rings from
        one CPU, 1 one CPU per ring, ``cpus`` CPUs from ``first_cpu``.

        Raises:
            ControlError, OSError: as ``request``.
        """
        body = ffi.new("struct nmreq_vale_polling *")
        body.nr_mode = lib.NETMAP_POLLING_MODE_MULTI_CPU if mode else lib.NETMAP_POLLING_MODE_SINGLE_CPU
        body.nr_first_cpu_id, body.nr_num_polling_cpus = first_cpu, cpus
        self.request(ReqType.VALE_POLLING_ENABLE if enable else ReqType.VALE_POLLING_DISABLE, name, body)


def _numbers(text: str | None, limit: int) -> list[int]:
    if not text:
        return []
    values = [int(v) for v in text.split(",")]
    if len(values) > limit:
        raise ValueError(f"too many numbers in {text!r}")
    return values


def ring_config(text: str | None) -> tuple[int, int, int, int]:
    """``tx_slots[,rx_slots[,tx_rings[,rx_rings]]]``: a missing rx value
    repeats the tx one; 0 lets the device choose."""
    v = _numbers(text, 4)
    tx_slots = v[0] if v else 0
    rx_slots = v[1] if len(v) > 1 else tx_slots
    tx_rings = v[2] if len(v) > 2 else 0
    rx_rings = v[3] if len(v) > 3 else tx_rings
    return tx_slots, rx_slots, tx_rings, rx_rings


def poll_config(text: str | None) -> tuple[int, int, int]:
    """``mode,first_cpu[,cpus]``: mode 0 polls every ring from one CPU
    (cpus is then 1), mode 1 one ring per CPU from first_cpu on."""
    v = _numbers(text, 3)
    mode = v[0] if v else 0
    first = v[1] if len(v) > 1 else 0
    if len(v) > 2 and not mode:
        raise ValueError("a CPU count goes only with mode 1")
    cpus = v[2] if len(v) > 2 else 1
    return mode, first, cpus


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``nmfuse vale`` (its parser has no -h for help: -h attaches)."""
    act = p.add_mutually_exclusive_group()
    act.add_argument("-l", dest="list", nargs="?", const="", metavar="PORT",
                     help="list every port, or show the switch and port index of PORT")
    act.add_argument("-n", dest="newif", metavar="NAME", help="create persistent VALE port NAME")
    act.add_argument("-r", dest="delif", metavar="NAME", help="delete persistent VALE port NAME")
    act.add_argument("-a", dest="attach", metavar="SWITCH:PORT", help="attach PORT to SWITCH")
    act.add_argument("-h", dest="attach_host", metavar="SWITCH:PORT", help="attach PORT and its host rings")
    act.add_argument("-d", dest="detach", metavar="SWITCH:PORT", help="detach PORT from SWITCH")
    act.add_argument("-g", dest="info", metavar="NAME", help="show the rings and memory of a port")
    act.add_argument("-p", dest="poll_on", metavar="SWITCH:PORT", help="start polling an attached port")
    act.add_argument("-P", dest="poll_off", metavar="SWITCH:PORT", help="stop polling it")
    p.add_argument("-C", dest="config", metavar="CONF", help="ring geometry (-n, -a, -h) or polling (-p)")
    p.add_argument("-m", dest="mem_id", type=int, default=0, metavar="MEMID", help="memory region (-n, -a, -h)")
    p.add_argument("-v", dest="verbose_ctl", action="count", default=0, help="print what the device returns")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--device", default=os.environ.get("NETMAP_DEVICE", DEFAULT_DEVICE),
                   help="the netmap device ($NETMAP_DEVICE, default /dev/netmap)")
    p.add_argument("--help", action="help", help="show this help")


def run(args, vale: Vale | None = None, out=sys.stdout, err=sys.stderr) -> int:
    """Carry out the parsed ``args``; returns the exit code."""
    vale = vale or Vale(args.device)
    verbose = args.verbose_ctl or args.json

    def show(result) -> None:
        if args.json:
            print(json.dumps(result), file=out)
        elif isinstance(result, dict):
            for key, value in result.items():
                print(f"{key + ':':12}{value}", file=out)

    action, name = "list", None
    try:
        if args.newif is not None:
            action, name = "create", args.newif
            result = vale.newif(name, ring_config(args.config), args.mem_id)
            if verbose:
                show(result)
        elif args.delif is not None:
            action, name = "remove", args.delif
            vale.delif(name)
        elif args.attach is not None or args.attach_host is not None:
            action, name = "attach", args.attach or args.attach_host
            index = vale.attach(name, args.attach_host is not None, ring_config(args.config), args.mem_id)
            if verbose:
                show({"port_index": index})
        elif args.detach is not None:
            action, name = "detach", args.detach
            index = vale.detach(name)
            if verbose:
                show({"port_index": index})
        elif args.info is not None:
            action, name = "obtain info for", args.info
            show(vale.info(name))
        elif args.poll_on is not None or args.poll_off is not None:
            name = args.poll_on or args.poll_off
            enable = args.poll_on is not None
            action = "enable polling on" if enable else "disable polling on"
            mode, first, cpus = poll_config(args.config)
            vale.polling(name, enable, mode, first, cpus)
        elif args.list:
            name = args.list
            if not name.startswith("vale"):
                print(f"nmfuse vale: invalid VALE port name {name!r}", file=err)
                return 2
            show(vale.lookup(name))
        else:
            ports = vale.list_all()
            if args.json:
                print(json.dumps(ports), file=out)
            for port in ports if not args.json else ():
                print(f"{port['name']} bridge_idx {port['bridge_idx']} port_idx {port['port_idx']}", file=out)
    except ValueError as e:
        print(f"nmfuse vale: {e}", file=err)
        return 2
    except OSError as e:
        what = f" {name}" if name else ""
        print(f"nmfuse vale: failed to {action}{what}: {e.strerror or e}", file=err)
        return 1
    return 0
