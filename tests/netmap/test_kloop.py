"""The sync-kloop (nmfuse.netmap.kloop) and CSB mode, driven through the
device as a client would, with the CSB in a fake caller memory: the START
answer is a deferred ``Later``; frames cross a pipe whose two ends only
write atok entries and read ktoa entries; the rules of an ioctl sync hold
(a head outside its window reinitialises the ring); STOP, interruption and
release end the loop; the eventfds option kicks and notifies."""

import errno
import os
import select
import threading
import time

import pytest

from nmfuse.abi.netmap import Ioctl, KloopMode, OptType, RegFlag, RegMode, ReqType, ffi
from nmfuse.netmap import kloop
from nmfuse.netmap.device import NetmapDevice
from tests.netmap.conftest import CALLER

ENTRY = ffi.sizeof("struct nm_csb_atok")
SLOTS = 8


class Answer:
    """Collects what a deferred answer delivers."""

    def __init__(self, later):
        assert isinstance(later, kloop.Later), later
        self.got: list[tuple[int, bytes]] = []
        self.done = threading.Event()
        later.when_done(self._deliver)
        self.later = later

    def _deliver(self, err, out):
        self.got.append((err, out))
        self.done.set()

    def wait(self) -> int:
        assert self.done.wait(10), "the kloop did not answer"
        (err, _), = self.got
        return err


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


class CsbEnd:
    """One open file in CSB mode: its ring pair and its CSB in fake memory."""

    def __init__(self, h, name, fh=None, exclusive=True, with_option=True):
        self.h = h
        self.fh = fh or h.open()
        self.atok = h.user.place(bytes(2 * ENTRY))
        self.ktoa = h.user.place(bytes(2 * ENTRY))
        opt = self.csb_option() if with_option else 0
        self.err, self.reg, _ = h.register(self.fh, name, mode=RegMode.ALL_NIC, mem_id=0, options=opt,
                                           nr_tx_slots=SLOTS, nr_rx_slots=SLOTS,
                                           nr_flags=RegFlag.EXCLUSIVE if exclusive else 0)
        self.opt = opt
        if not self.err:
            nifp = h.nifp(self.reg.nr_offset)
            self.tx, self.rx = h.ring(nifp, 0), h.ring(nifp, 1)

    def csb_option(self):
        return self.h.option(OptType.CSB, ctype="struct nmreq_opt_csb", csb_atok=self.atok, csb_ktoa=self.ktoa)

    def entry(self, base, i, ctype):
        return self.h.user.get(base + i * ENTRY, ctype)

    def ktoa_of(self, i):
        return self.entry(self.ktoa, i, "struct nm_csb_ktoa")

    def write_atok(self, i, **fields):
        a = self.entry(self.atok, i, "struct nm_csb_atok")
        for k, v in fields.items():
            setattr(a, k, v)
        self.h.user.write(self.atok + i * ENTRY, bytes(ffi.buffer(a)))

    def ctrl(self, reqtype, body=None, options=0):
        addr = self.h.user.place(body) if body is not None else 0
        hdr = self.h.header("", reqtype, body=addr, options=options)
        return self.h.dev.ioctl(CALLER, self.fh, Ioctl.NIOCCTRL, 0, bytes(ffi.buffer(hdr)), 88)

    def start(self, sleep_us=0, options=0):
        body = ffi.new("struct nmreq_sync_kloop_start *", {"sleep_us": sleep_us})
        return self.ctrl(ReqType.SYNC_KLOOP_START, body, options)

    def stop(self):
        return self.ctrl(ReqType.SYNC_KLOOP_STOP)


@pytest.fixture
def pair(h):
    a, b = CsbEnd(h, "kp{1"), CsbEnd(h, "kp}1")
    assert a.err == b.err == 0
    yield a, b
    for end in (a, b):
        h.dev.release(end.fh)


def test_start_checks_in_netmaps_order(h):
    fh = h.open()
    end = CsbEnd(h, "ck{1", fh=fh, with_option=False)
    assert end.err == 0
    assert end.start(sleep_us=1_000_001)[0] == errno.EINVAL
    fresh = h.open()
    body = ffi.new("struct nmreq_sync_kloop_start *")
    hdr = h.header("", ReqType.SYNC_KLOOP_START, body=h.user.place(body))
    assert h.dev.ioctl(CALLER, fresh, Ioctl.NIOCCTRL, 0, bytes(ffi.buffer(hdr)), 88)[0] == errno.ENXIO
    assert end.start()[0] == errno.EINVAL  # bound, not in CSB mode


def test_csb_mode_refuses_the_sync_ioctls_and_poll(pair):
    a, _ = pair
    assert a.h.sync(a.fh, Ioctl.NIOCTXSYNC) == errno.EBUSY
    assert a.h.sync(a.fh, Ioctl.NIOCRXSYNC) == errno.EBUSY
    assert a.h.dev.poll(CALLER, a.fh, select.POLLIN, None) == select.POLLERR


def test_frames_cross_a_pipe_through_the_csb_alone(pair):
    a, b = pair
    sender, receiver = Answer(a.start()), Answer(b.start(sleep_us=50))
    h = a.h
    assert a.ktoa_of(0).hwtail == SLOTS - 1
    for k in range(5):
        h.mem.buffer(a.tx.slot[k].buf_idx)[:4] = b"f%03d" % k
        a.tx.slot[k].len = 60
    a.write_atok(0, head=5, cur=5)
    wait_for(lambda: a.ktoa_of(0).hwcur == 5)
    wait_for(lambda: b.ktoa_of(1).hwtail == 5)  # the slave's RX entry follows its TX entry
    assert [bytes(h.mem.buffer(b.rx.slot[k].buf_idx)[:4]) for k in range(5)] == [b"f%03d" % k for k in range(5)]
    assert b.rx.tail == 0, "in CSB mode the ring's tail is the application's"
    b.write_atok(1, head=5, cur=5)  # consumed: the room goes back to the sender
    wait_for(lambda: a.ktoa_of(0).hwtail == (5 + SLOTS - 1) % SLOTS)
    assert b.rx.ts.tv_sec > 0, "rxsyncs of the loop stamp the ring"
    for end, answer in ((a, sender), (b, receiver)):
        stop = end.stop()
        Answer(stop).wait() if isinstance(stop, kloop.Later) else None
        assert answer.wait() == 0


def test_a_head_outside_its_window_reinitialises_the_ring(pair):
    a, _ = pair
    answer = Answer(a.start())
    kring = a.h.dev.bindings[a.fh].adapter.krings[0][0]
    a.write_atok(0, head=SLOTS - 1, cur=2)  # cur behind head
    wait_for(lambda: kring.stats_errors > 0)
    assert a.ktoa_of(0).hwcur == 0 and kring.rhead == 0
    a.write_atok(0, head=0, cur=0)
    a.stop()
    assert answer.wait() == 0


def test_second_start_and_csb_enable_are_ebusy_while_it_runs(pair):
    a, _ = pair
    answer = Answer(a.start())
    assert a.start()[0] == errno.EBUSY
    opt = a.csb_option()
    assert a.ctrl(ReqType.CSB_ENABLE, options=opt)[0] == errno.EBUSY
    assert a.h.option_status(opt) == errno.EBUSY
    stop = Answer(a.stop())
    assert stop.wait() == 0 and answer.wait() == 0
    assert a.ctrl(ReqType.CSB_ENABLE, options=a.csb_option())[0] == 0, "the CSB may change once it ended"


def test_stop_without_a_loop_makes_the_next_start_return_at_once(pair):
    a, _ = pair
    assert a.stop()[0] == 0
    assert Answer(a.start()).wait() == 0
    answer = Answer(a.start())  # the flag is gone: this one runs
    assert not answer.done.wait(0.05)
    a.stop()
    assert answer.wait() == 0


def test_interruption_and_release_end_the_loop(pair):
    a, b = pair
    answer = Answer(a.start())
    answer.later.interrupt()
    assert answer.wait() == 0
    answer = Answer(b.start())
    b.h.dev.release(b.fh)
    assert answer.wait() == 0
    assert b.fh not in b.h.dev.bindings


def test_a_csb_that_goes_away_ends_the_loop_with_efault(pair):
    a, _ = pair
    answer = Answer(a.start())
    del a.h.user.blocks[a.atok]
    assert answer.wait() == errno.EFAULT


def test_mode_and_eventfds_options_are_checked(pair):
    a, _ = pair
    h = a.h
    mode = h.option(OptType.SYNC_KLOOP_MODE, ctype="struct nmreq_opt_sync_kloop_mode", mode=4)
    assert a.start(options=mode)[0] == errno.EINVAL and h.option_status(mode) == errno.EINVAL
    short = _eventfds_option(h, [(-1, -1)])  # one pair for two rings
    assert a.start(options=short)[0] == errno.EINVAL and h.option_status(short) == errno.EINVAL


def _eventfds_option(h, pairs, nxt=0):
    size = ffi.sizeof("struct nmreq_opt_sync_kloop_eventfds") + len(pairs) * ffi.sizeof(
        "struct nmreq_opt_sync_kloop_eventfd")
    raw = bytearray(size)
    opt = ffi.cast("struct nmreq_opt_sync_kloop_eventfds *", ffi.from_buffer(raw))
    opt.nro_opt.nro_reqtype, opt.nro_opt.nro_size, opt.nro_opt.nro_next = OptType.SYNC_KLOOP_EVENTFDS, size, nxt
    for i, (io, irq) in enumerate(pairs):
        opt.eventfds[i].ioeventfd, opt.eventfds[i].irqfd = io, irq
    return h.user.place(bytes(raw))


@pytest.fixture
def efds():
    fds = [os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK) for _ in range(4)]
    yield fds
    for fd in fds:
        os.close(fd)


def _readable(fd, timeout_ms=5000) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(timeout_ms))


def test_eventfd_mode_kicks_and_notifies(h, efds):
    taken = []

    def take(pid, fds):
        assert pid == CALLER.pid
        dups = [os.dup(fd) for fd in fds]
        taken.extend(dups)
        return dups

    h.dev = NetmapDevice(h.core, lambda pid: h.user, take)
    a, b = CsbEnd(h, "ke{1"), CsbEnd(h, "ke}1")
    io_a, irq_a, io_b, irq_b = efds
    ans_a = Answer(a.start(options=_eventfds_option(h, [(io_a, irq_a), (io_a, irq_a)])))
    ans_b = Answer(b.start(options=_eventfds_option(h, [(io_b, irq_b), (io_b, irq_b)])))
    wait_for(lambda: a.ktoa_of(0).kern_need_kick == 1 and b.ktoa_of(1).kern_need_kick == 1)  # idle: asleep
    b.write_atok(1, appl_need_kick=1)
    for k in range(3):
        a.tx.slot[k].len = 60
    a.write_atok(0, head=3, cur=3)
    os.eventfd_write(io_a, 1)  # the sender kicks its loop
    wait_for(lambda: a.ktoa_of(0).hwcur == 3)
    assert _readable(irq_b), "the receiver's irqfd is signalled when frames arrive"
    assert b.ktoa_of(1).hwtail == 3
    a.stop()
    b.stop()
    assert ans_a.wait() == ans_b.wait() == 0
    for fd in taken:  # every duplicate was closed by the loop
        with pytest.raises(OSError) as e:
            os.fstat(fd)
        assert e.value.errno == errno.EBADF


def test_direct_mode_needs_every_ioeventfd(pair, efds):
    a, _ = pair
    h = a.h
    h.dev.user_fds = lambda pid, fds: [os.dup(fd) for fd in fds]
    mode = h.option(OptType.SYNC_KLOOP_MODE, ctype="struct nmreq_opt_sync_kloop_mode", mode=KloopMode.DIRECT_TX)
    ev = _eventfds_option(h, [(-1, efds[1]), (efds[0], efds[1])], nxt=mode)
    assert a.start(options=ev)[0] == errno.EINVAL and h.option_status(ev) == errno.EINVAL
