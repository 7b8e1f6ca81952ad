"""Monitor ports, in process: copy and zero-copy monitors on pipes, VALE
ports and a port a switch took over; what they see, in which order and
direction, and netmap_monitor.c's errors."""

import errno
import select

from nmfuse.abi.netmap import Ioctl, RegFlag, RegMode, SlotFlag
from nmfuse.drivers.monitor import MonitorAdapter
from tests.drivers.conftest import BCAST, add_nic, attach, ctrl, frame, open_port
from tests.netmap.conftest import CALLER

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
R, T, Z = RegFlag.MONITOR_RX, RegFlag.MONITOR_TX, RegFlag.ZCOPY_MON
TXMON = SlotFlag.TXMON


def frames(tag: bytes, n: int, dst=B, src=A):
    return [frame(dst, src, tag + bytes([i])) for i in range(n)]


def monitor(h, name, flags, slots=0, expect=0, **fields):
    return open_port(h, name, slots=slots, expect=expect, nr_flags=flags, **fields)


def pipe(h, name="p", slots=16):
    master = open_port(h, f"{name}{{1", slots=slots)
    slave = open_port(h, f"{name}}}1", slots=slots)
    return master, slave


# -- copy monitors ---------------------------------------------------------------


def test_copy_monitor_of_a_pipe_rx_sees_frames_as_they_arrive(h):
    master, slave = pipe(h)
    mon = monitor(h, "p}1", R)
    assert mon.adapter.name == "p}1/r#0"
    sent = frames(b"rx", 5)
    master.send(sent)
    # the slave's reader has not synced: the monitor sees them already
    assert mon.recv(slots=True) == [(f, 0) for f in sent]
    assert slave.recv() == sent, "the port still gets every frame"
    assert mon.recv() == [], "nothing twice"


def test_copy_monitor_of_a_pipe_tx_marks_txmon(h):
    master, slave = pipe(h)
    mon = monitor(h, "p{1", T)
    assert mon.adapter.name == "p{1/t#0"
    sent = frames(b"tx", 4)
    master.send(sent)
    assert mon.recv(slots=True) == [(f, TXMON) for f in sent]
    assert slave.recv() == sent


def test_rt_on_one_ring_set_keeps_both_directions_in_order(h):
    master, slave = pipe(h)
    mon = monitor(h, "p{1", R | T)
    assert mon.adapter.name == "p{1/rt#0"
    out1, back, out2 = frames(b"o", 2), frames(b"b", 2, dst=A, src=B), frames(b"O", 1)
    master.send(out1)
    slave.recv()
    slave.send(back)
    master.send(out2)
    assert mon.recv(slots=True) == [(f, TXMON) for f in out1] + [(f, 0) for f in back] + [(out2[0], TXMON)]


def test_copy_monitors_on_vale_ports_see_every_frame(h):
    a = open_port(h, "vale0:a", slots=32)
    b = open_port(h, "vale0:b", slots=32)
    mon_b = monitor(h, "vale0:b", R | T, slots=64)
    mon_a = monitor(h, "vale0:a", T)
    assert mon_b.adapter.name == "vale0:b/rt#0" and mon_a.adapter.name == "vale0:a/t#0"
    to_b = frames(b"ab", 10)
    a.send(to_b)
    b.send(frames(b"ba", 3, dst=A, src=B))
    got = mon_b.recv(slots=True)
    # the switch marks its RX slots with the fragment count (NS_RFRAGS); copies keep the flags
    assert got == [(f, 1 << 8) for f in to_b] + [(f, TXMON) for f in frames(b"ba", 3, dst=A, src=B)]
    assert mon_a.recv(slots=True) == [(f, TXMON) for f in to_b]
    assert b.recv() == to_b and a.recv() == frames(b"ba", 3, dst=A, src=B)


def test_a_full_monitor_keeps_the_newest(h):
    master, slave = pipe(h, slots=32)
    mon = monitor(h, "p}1", R, nr_rx_slots=4)
    assert mon.reg.nr_rx_slots == 4 and mon.reg.nr_tx_slots == 32, "slots default to the port's"
    sent = frames(b"f", 10)
    master.send(sent)
    assert mon.recv() == sent[-3:]


def test_several_copy_monitors_and_their_removal(h):
    master, slave = pipe(h)
    m1, m2, m3 = (monitor(h, "p}1", R) for _ in range(3))
    assert [m.adapter.name for m in (m1, m2, m3)] == ["p}1/r#0", "p}1/r#1", "p}1/r#2"]
    m2.close()
    master.send(frames(b"x", 2))
    assert m1.recv() == m3.recv() == frames(b"x", 2)
    m1.close()
    m3.close()
    kring = slave.adapter.krings[1][0]
    assert kring.nm_sync == slave.adapter.rxsync and kring.nm_notify == slave.adapter.wake_pollers, \
        "the last monitor gives the callbacks back"


# -- zero-copy monitors ----------------------------------------------------------------


def test_zero_copy_monitor_of_a_pipe_sees_consumed_frames(h):
    master, slave = pipe(h)
    mon = monitor(h, "p}1", Z)
    assert mon.adapter.name == "p}1/zrt#0"
    assert mon.reg.nr_flags & (R | T) == R | T, "NR_ZCOPY_MON implies both directions, written back"
    sent = frames(b"z", 4)
    master.send(sent)
    assert mon.recv() == [], "not consumed yet"
    assert slave.recv() == sent           # the reader releases them
    assert mon.recv(slots=True) == [(f, 0) for f in sent]
    back = frames(b"Z", 3, dst=A, src=B)
    slave.send(back)
    assert master.recv() == back          # the master releases: the slave's TX slots come back
    slave.send([])                        # the slave's next txsync sees them returned
    assert mon.recv(slots=True) == [(f, TXMON) for f in back]
    # buffers moved, nothing was duplicated or lost
    slave.send(frames(b"again", 2, dst=A, src=B))
    assert master.recv() == frames(b"again", 2, dst=A, src=B)


def test_zero_copy_monitor_of_a_vale_port(h):
    a = open_port(h, "vale0:a")
    b = open_port(h, "vale0:b")
    mon = monitor(h, "vale0:b", Z)
    to_b = frames(b"in", 3)
    a.send(to_b)
    assert mon.recv() == []
    assert b.recv() == to_b
    assert mon.recv(slots=True) == [(f, 1 << 8) for f in to_b], "VALE RX slots carry the fragment count"
    out = frames(b"out", 2, dst=A, src=B)
    b.send(out)                           # a VALE port gives TX slots back at once
    assert mon.recv(slots=True) == [(f, TXMON) for f in out]
    assert a.recv() == out
    used = h.mem.statistics()["buf"].used
    mon.close()
    b.close()
    a.close()
    assert h.mem.statistics()["buf"].used == 0 < used


def test_a_second_zero_copy_monitor_follows_the_first(h):
    master, slave = pipe(h)
    z1 = monitor(h, "p}1", Z)
    z2 = monitor(h, "p}1", Z)
    sent = frames(b"c", 3)
    master.send(sent)
    slave.recv()
    assert z2.recv() == []
    assert z1.recv() == sent              # z1's reader releases them ...
    assert z2.recv() == sent              # ... and they move on to z2
    z1.close()
    master.send(frames(b"d", 2))
    slave.recv()
    assert z2.recv() == frames(b"d", 2), "z2 now follows the port directly"


# -- errors --------------------------------------------------------------------------


def test_monitor_errors(h):
    assert monitor(h, "nosuch", R, expect=errno.ENXIO) == errno.ENXIO
    assert monitor(h, "q{1", R, expect=errno.EINVAL) == errno.EINVAL, "nobody has q{1 in netmap mode"
    assert ("q", "1") not in h.core.driver("pipe").pairs
    assert monitor(h, "vale0:x", T, expect=errno.EINVAL) == errno.EINVAL
    assert h.core.driver("vale").switches.bridges[0] is None
    assert ctrl(h, 8, "v0")[0] == 0           # VALE_NEWIF: exists, not in netmap mode
    assert monitor(h, "v0", R, expect=errno.EINVAL) == errno.EINVAL
    master, slave = pipe(h)
    assert monitor(h, "p}1", R, mode=RegMode.ONE_NIC, nr_ringid=3, expect=errno.EINVAL) == errno.EINVAL
    assert monitor(h, "p}1", R, mode=RegMode.NIC_SW, expect=errno.EINVAL) == errno.EINVAL
    add_nic(h, "nic0")
    nic = open_port(h, "nic0")
    mon = monitor(h, "nic0", R)
    assert mon.adapter.name == "nic0/r#0"
    assert monitor(h, "nic0/r#0", R, expect=errno.ENXIO) == errno.ENXIO, "a monitor has no name to find"
    nic.close()


def test_txsync_on_a_monitor_fails(h):
    pipe(h)
    mon = monitor(h, "p}1", R)
    tx = mon.tx()
    tx.head = tx.cur = 1
    assert h.sync(mon.fh, Ioctl.NIOCTXSYNC) == 0, "the sync ioctl ignores the ring's error, as netmap"
    assert tx.tail == tx.num_slots - 1 and mon.adapter.krings[0][0].hwcur == 0, "nothing was taken"
    assert h.dev.poll(CALLER, mon.fh, select.POLLOUT, None) & select.POLLERR


def test_monitor_loses_a_port_that_goes_away(h):
    master, slave = pipe(h)
    mon = monitor(h, "p}1", R)
    master.send(frames(b"seen", 2))
    assert h.sync(mon.fh, Ioctl.NIOCRXSYNC) == 0
    master.send(frames(b"unseen", 1))
    slave.close()
    assert mon.adapter.parent is None
    assert h.dev.poll(CALLER, mon.fh, select.POLLIN, None) & select.POLLERR, "rxsync: EIO"
    rx = mon.rx()
    assert rx.tail == 2, "what it had published is still there; the rest never will be"
    master.send(frames(b"more", 1))
    assert h.sync(mon.fh, Ioctl.NIOCRXSYNC) == 0 and rx.tail == 2
    mon.close()
    master.close()
    assert not h.core.driver("pipe").pairs and h.mem.statistics()["buf"].used == 0


def test_monitor_of_a_vale_port_keeps_it_only_while_registered(h):
    a = open_port(h, "vale0:a")
    mon = monitor(h, "vale0:a", R | T)
    a.close()
    assert h.core.driver("vale").switches.bridges[0] is None, "the port went with its last fd, monitor or not"
    assert h.dev.poll(CALLER, mon.fh, select.POLLIN, None) & select.POLLERR


# -- a port a switch took over ------------------------------------------------------------


def test_monitors_of_an_attached_port_see_the_switch_traffic(h):
    nic = add_nic(h, "nic0")
    a = open_port(h, "vale0:a")
    assert attach(h, "vale0:nic0")[0] == 0
    mon = monitor(h, "nic0", R | T)
    assert isinstance(mon.adapter, MonitorAdapter) and mon.adapter.parent is nic
    wire = frames(b"w", 2, dst=BCAST, src=B)
    nic.inject(0, wire)
    a.send(frames(b"s", 2, dst=B, src=A))
    assert mon.recv(slots=True) == [(f, 0) for f in wire] + \
        [(f, TXMON | 1 << 8) for f in frames(b"s", 2, dst=B, src=A)]
    assert ctrl(h, 4, "vale0:nic0")[0] == 0    # VALE_DETACH: nic0 leaves netmap mode
    assert mon.adapter.parent is None
    assert h.dev.poll(CALLER, mon.fh, select.POLLIN, None) & select.POLLERR
