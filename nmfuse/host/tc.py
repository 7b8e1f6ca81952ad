"""What the generic driver installs on an interface in netmap mode: tcx
BPF programs that cut the host stack off the wire and wire it to the
host rings instead.

netmap in front of an interface (netmap_generic.c, netmap.c's host rings):

    wire --> hw RX rings        host TX ring --> stack ("as if received")
    wire <-- hw TX rings        host RX ring <-- stack (what it sends)

nmfuse reads and writes the wire with AF_PACKET (packet.py).  The rest is
three small tcx programs and a TAP interface ``nmhPID.IFINDEX`` that the
daemon holds open:

    1. IFNAME ingress: drop every frame (the stack no longer sees the
       wire; AF_PACKET taps run before tc ingress, so our receive sockets
       still get it) -- except frames carrying MARK, which are what the
       program wrote to the host TX ring: their mark is cleared and they
       pass to the stack.
    2. IFNAME egress: redirect everything the stack sends to the TAP,
       whose fd nmfuse reads into the host RX ring.  (Our own frames leave
       through PACKET_QDISC_BYPASS, which skips tc egress.)  The TAP has
       no offloads, so GSO/partial-checksum frames are finished in
       software on the way: the host RX ring gets wire-ready frames.
    3. TAP ingress: what nmfuse writes to the TAP fd (host TX ring) gets
       MARK and is redirected into IFNAME's ingress (bpf_redirect with
       BPF_F_INGRESS), where program 1 lets it pass.  Our receive sockets
       skip MARK frames (a socket filter), so they never reach hw RX.

Why tcx through bpf_link: a link lives as long as its fd.  The daemon
holds the only fds, so when it exits in any way, SIGKILL included, the
kernel detaches the programs and deletes the TAP (not persistent): the
interface is left exactly as it was, with nothing to recognise and clean
at the next start.  tcx (Linux >= 6.6) also needs no qdisc (clsact)
created on the interface, so none is left behind; older tc filters would.

The programs are a handful of instructions, assembled here as raw eBPF
and loaded with the bpf() syscall (csrc/packet.c): no compiler, no
libbpf.
"""

import logging
import os
from contextlib import ExitStack

from nmfuse._helper import ffi, lib
from nmfuse.host import tuntap

log = logging.getLogger("nmfuse.tc")

MARK = 0x6E6D6675            # "nmfu": frames nmfuse delivers to the stack
BPF_TCX_INGRESS = 46         # enum bpf_attach_type (linux/bpf.h, 6.6)
BPF_TCX_EGRESS = 47
TCX_PASS = 0                 # enum tcx_action_base
TCX_DROP = 2
BPF_FUNC_REDIRECT = 23       # bpf_redirect(ifindex, flags)
BPF_F_INGRESS = 1
SKB_MARK = 8                 # offsetof(struct __sk_buff, mark)

# eBPF opcodes (linux/bpf_common.h, linux/bpf.h)
_LDX_W = 0x61                # BPF_LDX | BPF_MEM | BPF_W
_STX_W = 0x63                # BPF_STX | BPF_MEM | BPF_W
_MOV64_K = 0xB7              # BPF_ALU64 | BPF_MOV | BPF_K
_JNE_K = 0x55                # BPF_JMP | BPF_JNE | BPF_K
_CALL = 0x85                 # BPF_JMP | BPF_CALL
_EXIT = 0x95                 # BPF_JMP | BPF_EXIT


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> int:
    """One eBPF instruction as the kernel reads it (little-endian u64):
    opcode, dst and src registers, 16-bit offset, 32-bit immediate."""
    return code | (dst << 8) | (src << 12) | ((off & 0xFFFF) << 16) | ((imm & 0xFFFFFFFF) << 32)


def ingress_drop() -> list[int]:
    """Program 1: drop what the wire brings; let MARK frames pass unmarked."""
    return [
        insn(_LDX_W, dst=2, src=1, off=SKB_MARK),       # r2 = skb->mark
        insn(_JNE_K, dst=2, off=4, imm=MARK),           # if r2 != MARK goto drop
        insn(_MOV64_K, dst=2, imm=0),
        insn(_STX_W, dst=1, src=2, off=SKB_MARK),       # skb->mark = 0
        insn(_MOV64_K, dst=0, imm=TCX_PASS),
        insn(_EXIT),
        insn(_MOV64_K, dst=0, imm=TCX_DROP),            # drop:
        insn(_EXIT),
    ]


def redirect(ifindex: int, flags: int = 0, mark: int = 0) -> list[int]:
    """Programs 2 and 3: (mark the frame and) redirect it to ``ifindex``."""
    prog = []
    if mark:
        prog += [insn(_MOV64_K, dst=2, imm=mark), insn(_STX_W, dst=1, src=2, off=SKB_MARK)]
    return prog + [
        insn(_MOV64_K, dst=1, imm=ifindex),
        insn(_MOV64_K, dst=2, imm=flags),
        insn(_CALL, imm=BPF_FUNC_REDIRECT),             # r0 = TC_ACT_REDIRECT or TC_ACT_SHOT
        insn(_EXIT),
    ]


def load(prog: list[int]) -> int:
    """Load ``prog`` as a tc program; returns its fd.

    Raises:
        OSError: the kernel refused it (the verifier's log in the message).
    """
    code = ffi.new("uint64_t[]", prog)
    logbuf = ffi.new("char[]", 4096)
    fd = lib.nmh_bpf_prog_load(code, len(prog), logbuf, 4096)
    if fd < 0:
        raise OSError(-fd, f"BPF_PROG_LOAD: {os.strerror(-fd)}: {ffi.string(logbuf).decode(errors='replace')}")
    return fd


def attach(prog: list[int], ifindex: int, attach_type: int) -> int:
    """Load ``prog`` and attach it to ``ifindex`` through a tcx link;
    returns the link's fd (closing it detaches the program).

    Raises:
        OSError: loading or attaching failed; nothing is left.
    """
    prog_fd = load(prog)
    try:
        link = lib.nmh_bpf_tcx_link(prog_fd, ifindex, attach_type)
        if link < 0:
            raise OSError(-link, f"tcx link on interface {ifindex}: {os.strerror(-link)}")
        return link
    finally:
        os.close(prog_fd)   # the link holds the program


def attached(ifindex: int) -> tuple[int, int]:
    """How many tcx programs interface ``ifindex`` has: (ingress, egress).

    Raises:
        OSError: the kernel cannot say (no such interface, no tcx).
    """
    counts = []
    for kind in (BPF_TCX_INGRESS, BPF_TCX_EGRESS):
        n = lib.nmh_bpf_tcx_count(ifindex, kind)
        if n < 0:
            raise OSError(-n, f"BPF_PROG_QUERY on interface {ifindex}: {os.strerror(-n)}")
        counts.append(n)
    return counts[0], counts[1]


def _disable_ipv6(name: str) -> None:
    """Keep the TAP's own stack quiet (no router solicitations or DAD
    frames in the host RX ring)."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
    except FileNotFoundError:
        pass  # IPv6 is not built in: nothing to silence


class HostPath:
    """The host stack of interface ``ifindex`` diverted to ``fd`` (a TAP
    queue): read what the stack sends, write what it should receive.
    Undone by ``close()`` or by the end of the process."""

    def __init__(self, ifindex: int):
        self.ifindex = ifindex
        self.name = f"nmh{os.getpid():x}.{ifindex:x}"[:15]
        self.fd = -1
        self.links: list[int] = []
        with ExitStack() as undo:
            self.fd = tuntap.open_queue(self.name, False)   # not persistent: goes with the fd
            undo.callback(self._close_tap)
            _disable_ipv6(self.name)
            tuntap.link_set(self.fd, state="up")
            tap_index = tuntap.probe(self.name).index
            undo.callback(self._close_links)
            self.links.append(attach(redirect(ifindex, BPF_F_INGRESS, MARK), tap_index, BPF_TCX_INGRESS))
            self.links.append(attach(redirect(tap_index), ifindex, BPF_TCX_EGRESS))
            self.links.append(attach(ingress_drop(), ifindex, BPF_TCX_INGRESS))
            undo.pop_all()

    def _close_links(self) -> None:
        # the wire's drop goes first, the stack's diversion last
        while self.links:
            os.close(self.links.pop())

    def _close_tap(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        """Detach the programs and delete the TAP (idempotent)."""
        self._close_links()
        self._close_tap()
