"""AF_PACKET sockets of the generic driver: one TPACKET_V3 receive ring
per netmap RX ring, one qdisc-bypassing send socket per netmap TX ring.

The per-frame work (walking the ring's blocks, copying into netmap slots,
batching sends with sendmmsg) is in the C helper (csrc/packet.c) and runs
without the GIL; this module owns the sockets' lifetimes.

Why these choices:

* TPACKET_V3: the kernel writes frames back to back into blocks shared
  with us and hands over a whole block at once, so receiving costs one
  copy (block -> netmap buffer) and no system call per frame; a block
  partly filled is handed over after at most ``RETIRE_MS``.
* PACKET_FANOUT by receive queue: an interface with several queues gets
  one socket per ring, each seeing its queue's frames.
* PACKET_QDISC_BYPASS: netmap hands frames to the driver, not to the
  qdisc; as a bonus the frames we send skip the tc egress hook that
  diverts the host stack's traffic (tc.py).
* sendmmsg of a whole sync's frames, straight from the netmap buffers:
  one system call per batch and the kernel's one copy into its skb, as a
  plain C sender does.  Each TX ring has a sending thread (``TxQueue``):
  txsync hands it the new frames and returns, as a NIC takes descriptors,
  and slots are reclaimed as the thread gets through them, so the program
  fills the next batch while the last one is being sent.
"""

import os

from nmfuse._helper import ffi, lib

BLOCK_SIZE = 1 << 18      # a block holds the largest GSO frame an interface may hand over
BLOCK_NR = 64             # 16 MiB of frames per ring in flight: ~10k full-size frames, ~100k small ones
SNDBUF = 8 << 20


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


class RxRing:
    """A TPACKET_V3 receive socket on one interface (``state`` is the
    helper's struct nmh_pkt_rx)."""

    def __init__(self, ifindex: int, fanout_id: int = 0, skip_mark: int = 0):
        self.state = ffi.new("struct nmh_pkt_rx *")
        _check(lib.nmh_pkt_rx_open(self.state, ifindex, BLOCK_SIZE, BLOCK_NR, fanout_id, skip_mark),
               f"AF_PACKET receive ring on interface {ifindex}")

    def skip_mark(self, mark: int) -> None:
        """From now on, do not take frames whose skb mark is ``mark``.
        Raises OSError."""
        _check(lib.nmh_pkt_rx_skip_mark(self.state, mark), "AF_PACKET socket filter")

    def fileno(self) -> int:
        """The socket's fd (readable when a block is handed over)."""
        return self.state.fd

    def ready(self) -> bool:
        """Whether a frame waits in the ring."""
        return bool(lib.nmh_pkt_rx_ready(self.state))

    def error(self) -> int:
        """The socket's pending error (SO_ERROR, e.g. ENETDOWN, ENODEV), 0 if none."""
        return lib.nmh_sock_error(self.state.fd)

    def close(self) -> None:
        """Unmap the ring and close the socket (idempotent)."""
        lib.nmh_pkt_rx_close(self.state)


class TxQueue:
    """The sending thread of one TX ring (the helper's struct nmh_pkt_txq)
    on send socket ``fd``; ``pool`` (a struct nmh_tap_io) gives the buffer
    pool.  ``efd`` becomes readable when a poller asked (``want``) and
    the thread made progress."""

    def __init__(self, fd: int, pool):
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.state = ffi.new("struct nmh_pkt_txq *")
        self.state.fd, self.state.efd = fd, self.efd
        self.state.io.bufbase, self.state.io.bufsize = pool.bufbase, pool.bufsize
        self.state.io.objtotal = pool.objtotal
        ret = lib.nmh_pkt_txq_start(self.state)
        if ret < 0:
            os.close(self.efd)
            _check(ret, "start a sending thread")

    def push(self, slot, n: int, head: int) -> None:
        """The frames of ``slot`` before ``head`` are the thread's to send."""
        lib.nmh_pkt_txq_push(self.state, slot, n, head)

    def done(self) -> int:
        """The slot the thread got to."""
        return lib.nmh_pkt_txq_done(self.state)

    def reset(self, at: int) -> None:
        """The ring was reset: finish what was handed over, restart at ``at``."""
        lib.nmh_pkt_txq_reset(self.state, at)

    def drain(self) -> None:
        """Wait until the thread sent what it was handed."""
        lib.nmh_pkt_txq_drain(self.state)

    def want(self, seen: int) -> None:
        """Make ``efd`` readable at the next progress past ``seen``."""
        lib.nmh_pkt_txq_want(self.state, seen)

    def clear(self) -> None:
        """Consume ``efd``'s readiness."""
        try:
            os.eventfd_read(self.efd)
        except BlockingIOError:
            pass  # already consumed: nothing to clear

    def close(self) -> None:
        """Stop the thread (what it did not send is dropped), close ``efd``."""
        lib.nmh_pkt_txq_stop(self.state)
        if self.efd >= 0:
            os.close(self.efd)
            self.efd = -1


def open_tx(ifindex: int) -> int:
    """A non-blocking send socket on interface ``ifindex``, bypassing the
    qdisc.  Raises OSError."""
    return _check(lib.nmh_pkt_tx_open(ifindex, SNDBUF), f"AF_PACKET send socket on interface {ifindex}")


def sock_error(fd: int) -> int:
    """The pending error of socket ``fd`` (SO_ERROR), 0 if none."""
    return lib.nmh_sock_error(fd)
