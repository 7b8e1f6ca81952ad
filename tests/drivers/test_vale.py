"""VALE switches, in process: learning and forwarding, ports and switches
coming and going, the VALE control requests and their errors, the bwrap
that joins other ports (and their host rings) to a switch, polling."""

import errno
import os
import select
import time

import pytest

from nmfuse.abi.netmap import (
    Ioctl,
    LegacyCmd,
    RegFlag,
    RegMode,
    ReqType,
    SlotFlag,
    ffi,
    lib,
)
from nmfuse.drivers import vale
from tests.drivers.conftest import (
    BCAST,
    RX,
    TX,
    add_nic,
    attach,
    ctrl,
    frame,
    mac,
    make_harness,
    open_port,
    vale_list,
)
from tests.netmap.conftest import CALLER

A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"


def three(h, sizes=(16, 32, 64)):
    return [open_port(h, f"vale0:{n}", slots=s) for n, s in zip("abc", sizes)]


# -- forwarding -------------------------------------------------------------


def test_learning_unicast_broadcast_and_never_back(h):
    a, b, c = three(h)
    bc = frame(BCAST, A, b"hello")
    a.send([bc])
    assert (a.recv(), b.recv(), c.recv()) == ([], [bc], [bc]), "broadcast: everyone but the sender"
    to_a = frame(A, B, b"to a")
    b.send([to_a])
    assert (a.recv(), b.recv(), c.recv()) == ([to_a], [], []), "A was learned on port a"
    unknown = frame(D, C)
    c.send([unknown])
    assert (a.recv(), b.recv(), c.recv()) == ([unknown], [unknown], []), "unknown unicast floods"
    to_c = frame(C, A)
    a.send([to_c] * 5)
    assert (a.recv(), b.recv(), c.recv()) == ([], [], [to_c] * 5)
    to_self = frame(A, A)
    a.send([to_self])
    assert (a.recv(), b.recv(), c.recv()) == ([], [], []), "a frame for its own port is dropped"


def test_frames_keep_their_order_and_bytes_across_ring_sizes(h):
    a, b, _ = three(h, (8, 64, 16))
    frames = [frame(B, A, i.to_bytes(4, "big"), size=60 + i) for i in range(40)]
    got = []
    for k in range(0, 40, 5):                 # a's ring holds 7: send in steps
        a.send(frames[k:k + 5])
        got += b.recv()
    assert got[1:] == frames[1:] and got[0] == frames[0]
    assert a.tx().tail == (a.tx().head - 1) % 8, "a VALE txsync gives every slot back"


def test_a_full_destination_drops_the_excess(h):
    a = open_port(h, "vale0:a", slots=64)
    b = open_port(h, "vale0:b", slots=8)
    frames = [frame(B, A, bytes([i])) for i in range(20)]
    a.send(frames)
    assert b.recv() == frames[:7], "7 of 8 slots: one always stays empty"
    dropped = b.adapter.cport.rx[0].dropped
    assert dropped == 13


def test_ns_no_learn(h):
    a, b, c = three(h)
    a.send([frame(BCAST, A)], flags=SlotFlag.NO_LEARN)
    b.recv(), c.recv()
    b.send([frame(A, B)])
    assert len(c.recv()) == 1, "A was not learned, so a frame for A floods"
    a.send([frame(BCAST, A)])
    b.recv(), c.recv(), a.recv()
    b.send([frame(A, B)])
    assert c.recv() == [] and len(a.recv()) == 1


def test_multicast_source_is_not_learned_and_short_frames_are_dropped(h):
    a, b, c = three(h)
    a.send([frame(BCAST, "03:00:00:00:00:01")])
    b.recv(), c.recv()
    b.send([frame("03:00:00:00:00:01", B)])
    assert len(c.recv()) == 1, "multicast goes everywhere"
    a.send([mac(B) + mac(A)])  # 12 bytes: no Ethernet header
    assert b.recv() == [] and c.recv() == []


def test_fragments_travel_as_one_frame(h):
    a, b, _ = three(h)
    parts = [frame(B, A, b"first", 100), b"second" * 10, b"third"]
    a.send([parts, frame(B, A, b"single")])
    got = b.recv(slots=True)
    assert [d for d, _ in got] == [parts[0], parts[1], parts[2], frame(B, A, b"single")]
    # NS_RFRAGS: the fragment count in the high byte, NS_MOREFRAG on all but the last
    assert [f for _, f in got] == [3 << 8 | SlotFlag.MOREFRAG, 3 << 8 | SlotFlag.MOREFRAG, 3 << 8, 1 << 8]


def test_an_incomplete_frame_at_the_end_of_a_sync_is_cut_there(h):
    a, b, _ = three(h)
    a.send([frame(B, A, b"x", 80)], flags=SlotFlag.MOREFRAG)
    got = b.recv(slots=True)
    assert got == [(frame(B, A, b"x", 80), 1 << 8)]


def test_multiple_rings_unicast_keeps_the_ring_broadcast_uses_ring_0(h):
    a = open_port(h, "vale0:a", nr_tx_rings=2, nr_rx_rings=2)
    b = open_port(h, "vale0:b", nr_tx_rings=2, nr_rx_rings=2)
    c = open_port(h, "vale0:c")               # one ring: indexes wrap to it
    b.send([frame(BCAST, B)])
    a.recv(), c.recv()
    a.send([frame(B, A, b"r1")], ring=1)
    assert b.recv(ring=1) == [frame(B, A, b"r1")] and b.recv(ring=0) == []
    a.send([frame(BCAST, A, b"bc")], ring=1)
    assert b.recv(ring=0) == [frame(BCAST, A, b"bc")] and c.recv() == [frame(BCAST, A, b"bc")]
    a.send([frame(C, A)], ring=1)
    c.recv()
    c.send([frame(A, C)])
    a.send([frame(C, A, b"wrap")], ring=1)
    assert c.recv() == [frame(C, A, b"wrap")], "ring 1 wraps to c's only ring"


def test_poll_wakes_the_receiver(h):
    a, b, _ = three(h)
    assert h.dev.poll(CALLER, b.fh, select.POLLIN, 77) == 0
    a.send([frame(BCAST, A)], sync=False)
    h.dev.poll(CALLER, a.fh, select.POLLOUT, 78)   # poll pushes TX
    assert 77 in h.woken
    assert h.dev.poll(CALLER, b.fh, select.POLLIN, None) & select.POLLIN


def test_a_port_registered_for_tx_only_gets_nothing(h):
    a = open_port(h, "vale0:a")
    b = open_port(h, "vale0:b", nr_flags=RegFlag.TX_RINGS_ONLY)
    c = open_port(h, "vale0:c")
    a.send([frame(BCAST, A)])
    assert len(c.recv()) == 1
    assert b.adapter.cport.rx[0].slot == ffi.NULL


def test_virtio_net_header_is_added_and_removed_between_ports(h):
    a, b, _ = three(h)
    assert ctrl(h, ReqType.PORT_HDR_SET, "vale0:a", nr_hdr_len=12)[0] == 0
    assert ctrl(h, ReqType.PORT_HDR_GET, "vale0:a")[1].nr_hdr_len == 12
    assert ctrl(h, ReqType.PORT_HDR_SET, "vale0:a", nr_hdr_len=11)[0] == errno.EINVAL
    assert ctrl(h, ReqType.PORT_HDR_SET, "vale0:zz", nr_hdr_len=10)[0] == errno.ENXIO
    f = frame(B, A, b"payload")
    a.send([bytes(12) + f])
    assert b.recv() == [f], "the header is stripped for a port without one"
    b.send([frame(A, B, b"back")])
    got = a.recv()
    assert got == [bytes(10) + b"\x01\x00" + frame(A, B, b"back")], "a zeroed header, num_buffers 1"
    # a new client must accept the header now
    assert open_port(h, "vale0:a", expect=errno.EIO) == errno.EIO
    open_port(h, "vale0:a", nr_flags=RegFlag.ACCEPT_VNET_HDR)


# -- ports and switches come and go ----------------------------------------------


def test_ports_and_switch_go_with_their_last_fd(h):
    a, b, _ = three(h)
    a2 = open_port(h, "vale0:a")
    assert a2.adapter is a.adapter, "a second fd shares the port"
    a.close()
    assert [n for n, *_ in vale_list(h)] == ["vale0:a", "vale0:b", "vale0:c"]
    a2.close()
    assert [n for n, *_ in vale_list(h)] == ["vale0:b", "vale0:c"]
    for p in (b, _):
        p.close()
    assert vale_list(h) == [] and h.core.driver("vale").switches.bridges == [None] * vale.NM_BRIDGES
    assert h.mem.statistics()["buf"].used == 0 and h.mem.statistics()["ring"].used == 0


def test_port_indexes_are_reused_last_freed_first(h):
    a, b, c = three(h)
    b.close()
    d = open_port(h, "vale0:d")
    assert d.adapter.bdg_port == 1
    a.close()
    c.close()
    e = open_port(h, "vale0:e")
    assert e.adapter.bdg_port == 2, "netmap's index list: the last freed comes back first"
    assert vale_list(h) == [("vale0:d", 0, 1), ("vale0:e", 0, 2)]


def test_vale_list_walks_switches_then_ends_with_enoent(h):
    open_port(h, "vale0:a"), open_port(h, "vale1:x"), open_port(h, "vale0:b"), open_port(h, "vale2:y")
    assert vale_list(h) == [("vale0:a", 0, 0), ("vale0:b", 0, 1), ("vale1:x", 1, 0), ("vale2:y", 2, 0)]
    err, body, _ = ctrl(h, ReqType.VALE_LIST, "vale1:x")
    assert err == 0 and (body.nr_bridge_idx, body.nr_port_idx) == (1, 0)
    err, body, _ = ctrl(h, ReqType.VALE_LIST, "vale1:nothere")
    assert err == 0 and (body.nr_bridge_idx, body.nr_port_idx) == (1, vale.NM_BDG_NOPORT)
    assert ctrl(h, ReqType.VALE_LIST, "vale9:x")[0] == errno.ENOENT
    assert ctrl(h, ReqType.VALE_LIST, "vale1")[0] == errno.ENOENT, "no colon: no switch name"
    assert ctrl(h, ReqType.VALE_LIST, "eth0")[0] == errno.EINVAL
    assert ctrl(h, ReqType.VALE_LIST, nr_bridge_idx=2, nr_port_idx=1)[0] == errno.ENOENT
    assert ctrl(h, ReqType.VALE_LIST, nr_bridge_idx=200)[0] == errno.ENOENT


def test_names_and_limits():
    h = make_harness(if_num=300, ring_num=560, buf_num=1200)
    try:
        # switch names: letters, digits, '_' up to the colon, within 16 characters
        assert open_port(h, "vale0-x:a", expect=errno.ENOMEM) == errno.ENOMEM
        assert open_port(h, "valeabcdefghijk:a").adapter.bridge.name == "valeabcdefghijk"
        assert open_port(h, "valeabcdefghijkl:a", expect=errno.ENOMEM) == errno.ENOMEM
        assert open_port(h, "vale1:" + "p" * 15).adapter.name == "vale1:" + "p" * 15
        assert open_port(h, "vale1:" + "p" * 16, expect=errno.ENOMEM) == errno.ENOMEM
        assert open_port(h, "vale_nocolon", expect=errno.ENOMEM) == errno.ENOMEM
        # netmap checks only "val" before treating a name as a switch port
        assert open_port(h, "val9:a").adapter.bridge.name == "val9"
        for i in range(2, 7):
            open_port(h, f"vale{i}:a", slots=1)
        assert [b is not None for b in h.core.driver("vale").switches.bridges] == [True] * 8
        assert open_port(h, "vale7:a", expect=errno.ENOMEM) == errno.ENOMEM, "8 switches at most"
        assert ctrl(h, ReqType.PORT_INFO_GET, "vale7:a")[0] == errno.ENOMEM
        # 252 ports per switch: 254 indexes, two kept free for a port and its host rings
        ports = [open_port(h, f"vale2:p{i}", slots=1) for i in range(251)]
        assert open_port(h, "vale2:last", expect=errno.ENOMEM) == errno.ENOMEM
        assert len(ports) + 1 == 252
    finally:
        for fh in list(h.dev.bindings):
            h.dev.release(fh)
        h.mem.close()


def test_geometry_is_bounded_as_netmap(h):
    a = open_port(h, "vale0:a", nr_tx_slots=8, nr_rx_slots=0, nr_tx_rings=40, nr_rx_rings=0)
    assert (a.reg.nr_tx_slots, a.reg.nr_rx_slots, a.reg.nr_tx_rings, a.reg.nr_rx_rings) == (8, 1024, 16, 1)
    err, info, _ = ctrl(h, ReqType.PORT_INFO_GET, "vale0:b", nr_tx_slots=9000)
    assert err == 0 and (info.nr_tx_slots, info.nr_rx_slots) == (4096, 1024)
    assert open_port(h, "vale0:a", mode=RegMode.NIC_SW, expect=errno.EINVAL) == errno.EINVAL


# -- persistent ports -----------------------------------------------------------


def test_newif_ports_survive_their_clients_until_delif(h):
    err, body, _ = ctrl(h, ReqType.VALE_NEWIF, "v0", nr_tx_slots=32, nr_rx_slots=0, nr_tx_rings=2)
    assert err == 0
    assert (body.nr_tx_slots, body.nr_rx_slots, body.nr_tx_rings, body.nr_rx_rings, body.nr_mem_id) == (32, 1024, 2, 1, 1)
    assert "v0" in h.core.named
    p = open_port(h, "v0", slots=0)
    assert (p.reg.nr_tx_slots, p.reg.nr_tx_rings) == (32, 2)
    assert ctrl(h, ReqType.VALE_DELIF, "v0")[0] == errno.EBUSY, "a client holds it"
    p.close()
    assert ctrl(h, ReqType.PORT_INFO_GET, "v0")[0] == 0, "it outlives its client"
    assert ctrl(h, ReqType.VALE_DELIF, "v0")[0] == 0
    assert "v0" not in h.core.named
    assert ctrl(h, ReqType.PORT_INFO_GET, "v0")[0] == errno.ENXIO
    assert ctrl(h, ReqType.VALE_DELIF, "v0")[0] == errno.ENXIO


def test_newif_and_delif_errors(h):
    assert ctrl(h, ReqType.VALE_NEWIF, "v0")[0] == 0
    assert ctrl(h, ReqType.VALE_NEWIF, "v0")[0] == errno.EEXIST
    assert ctrl(h, ReqType.VALE_NEWIF, "vale0:x")[0] == errno.EINVAL, "no vale prefix"
    assert ctrl(h, ReqType.VALE_NEWIF, "x" * 16)[0] == errno.EINVAL, "IFNAMSIZ"
    assert ctrl(h, ReqType.VALE_NEWIF, "")[0] == errno.EINVAL
    assert ctrl(h, ReqType.VALE_NEWIF, "v1", nr_mem_id=7)[0] == errno.EINVAL
    add_nic(h, "nic0")
    assert ctrl(h, ReqType.VALE_NEWIF, "nic0")[0] == errno.EEXIST
    assert ctrl(h, ReqType.VALE_DELIF, "nic0")[0] == errno.EINVAL, "not a VALE port"
    assert ctrl(h, ReqType.VALE_DELIF, "nosuch")[0] == errno.ENXIO


def test_attach_a_persistent_port(h):
    assert ctrl(h, ReqType.VALE_NEWIF, "v0", nr_tx_slots=16, nr_rx_slots=16)[0] == 0
    assert open_port(h, "vale0:v0", expect=errno.EINVAL) == errno.EINVAL, "an interface needs VALE_ATTACH"
    a = open_port(h, "vale0:a")
    err, body, _ = attach(h, "vale0:v0")
    assert err == 0 and body.port_index == 1
    assert attach(h, "vale0:v0")[0] == errno.EBUSY
    assert vale_list(h) == [("vale0:a", 0, 0), ("vale0:v0", 0, 1)]
    assert ctrl(h, ReqType.VALE_DELIF, "v0")[0] == errno.EBUSY, "attached"
    v = open_port(h, "vale0:v0")
    assert v.adapter is h.core.named["v0"]
    a.send([frame(BCAST, A)])
    assert len(v.recv()) == 1
    v.send([frame(A, B)])
    assert len(a.recv()) == 1
    v.close()
    a.send([frame(B, A)])                      # v0 has no client: not in netmap mode, dropped
    v = open_port(h, "v0")                     # its own name works too
    assert v.recv() == []
    v.close()
    err, body, _ = ctrl(h, ReqType.VALE_DETACH, "vale0:v0")
    assert err == 0 and body.port_index == 1
    assert vale_list(h) == [("vale0:a", 0, 0)]
    assert h.core.named["v0"].name == "v0"
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:v0")[0] == errno.ENXIO
    assert ctrl(h, ReqType.VALE_DELIF, "v0")[0] == 0


def test_attach_and_detach_errors(h):
    a = open_port(h, "vale0:a")
    assert attach(h, "vale0:nosuch")[0] == errno.EINVAL
    assert attach(h, "eth0")[0] == errno.EINVAL, "not a VALE name"
    assert attach(h, "vale0:a")[0] == errno.EBUSY, "already a port of the switch"
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:a")[0] == errno.EBUSY, "an ephemeral port cannot be detached"
    assert ctrl(h, ReqType.VALE_DETACH, "vale5:a")[0] == errno.ENXIO
    assert ctrl(h, ReqType.VALE_DETACH, "eth0")[0] == errno.EINVAL
    assert ctrl(h, ReqType.VALE_NEWIF, "v0")[0] == 0
    assert attach(h, "vale1:v0", **{})[0] == 0
    err = ctrl(h, ReqType.VALE_ATTACH, "vale2:v1", **{"reg.nr_mem_id": 9})[0]
    assert err == errno.EINVAL
    v = open_port(h, "v0")
    assert ctrl(h, ReqType.VALE_DETACH, "vale1:v0")[0] == 0
    assert attach(h, "vale1:v0")[0] == errno.EBUSY, "a client holds it"
    v.close()
    a.close()


def test_legacy_vale_commands(h):
    def legacy(cmd, name, ioctl=Ioctl.NIOCREGIF, **fields):
        nmr = ffi.new("struct nmreq *")
        nmr.nr_version, nmr.nr_cmd, nmr.nr_name = 14, cmd, name.encode()
        for k, v in fields.items():
            setattr(nmr, k, v)
        fh = h.open()
        err, out = h.dev.ioctl(CALLER, fh, ioctl, 0, bytes(ffi.buffer(nmr)), 60)
        h.dev.release(fh)
        back = ffi.new("struct nmreq *")
        ffi.memmove(back, out, 60)
        return err, back

    err, back = legacy(LegacyCmd.BDG_NEWIF, "v0", nr_tx_slots=64)
    assert err == 0 and back.nr_tx_slots == 64 and back.nr_rx_slots == 1024 and back.nr_arg2 == 1
    a = open_port(h, "vale0:a")
    assert legacy(LegacyCmd.BDG_ATTACH, "vale0:v0")[0] == 0
    err, back = legacy(LegacyCmd.BDG_LIST, "", Ioctl.NIOCGINFO, nr_arg1=0, nr_arg2=1)
    assert err == 0 and ffi.string(back.nr_name) == b"vale0:v0" and (back.nr_arg1, back.nr_arg2) == (0, 1)
    err, back = legacy(LegacyCmd.BDG_LIST, "vale0:a", Ioctl.NIOCGINFO)
    assert err == 0 and (back.nr_arg1, back.nr_arg2) == (0, 0)
    assert legacy(LegacyCmd.BDG_LIST, "", Ioctl.NIOCGINFO, nr_arg1=0, nr_arg2=2)[0] == errno.ENOENT
    assert legacy(LegacyCmd.BDG_DETACH, "vale0:v0")[0] == 0
    assert legacy(LegacyCmd.BDG_DELIF, "v0")[0] == 0
    assert legacy(LegacyCmd.BDG_POLLING_ON, "vale0:a", nr_flags=RegMode.ALL_NIC, nr_arg1=1)[0] == errno.EOPNOTSUPP
    a.close()


# -- bwrap: any other port joins a switch ------------------------------------------


def test_a_nic_attached_exchanges_frames_with_the_switch(h):
    nic = add_nic(h, "nic0")
    a = open_port(h, "vale0:a")
    assert attach(h, "vale0:nic0")[0] == 0
    assert vale_list(h) == [("vale0:a", 0, 0), ("vale0:nic0", 0, 1)], "no host port without -h"
    assert nic.on and nic.owned_by_kernel
    assert open_port(h, "nic0", expect=errno.EBUSY) == errno.EBUSY, "the switch owns it"
    assert open_port(h, "vale0:nic0", expect=errno.EBUSY) == errno.EBUSY
    from_wire = [frame(BCAST, D, bytes([i])) for i in range(3)]
    nic.inject(0, from_wire)
    assert a.recv() == from_wire
    a.send([frame(D, A, b"to the wire")])
    assert nic.sent[0] == [frame(D, A, b"to the wire")], "D was learned behind the nic"
    # more than a ring's worth, in steps
    for k in range(5):
        a.send([frame(D, A, bytes([k]))] * 10)
    assert len(nic.sent[0]) == 51 and nic.sent[0][-1] == frame(D, A, bytes([4]))
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:nic0")[0] == 0
    assert not nic.on and not nic.owned_by_kernel and nic.krings is None
    assert vale_list(h) == [("vale0:a", 0, 0)]
    n = open_port(h, "nic0", mode=RegMode.NIC_SW)
    assert n.adapter is nic, "free again for clients"


def test_the_switch_waits_on_the_nic_as_a_poller_would(h):
    nic = add_nic(h, "nic0")
    a = open_port(h, "vale0:a", slots=32)
    assert attach(h, "vale0:nic0")[0] == 0
    assert nic.waits == [(RX, 0)], "armed for frames to come"
    nic.inject(0, [frame(BCAST, D)])
    assert nic.waits == [(RX, 0), (RX, 0)], "one-shot: armed again after each batch"
    a.recv()
    nic.tx_budget = 2
    out = [frame(D, A, bytes([i])) for i in range(5)]
    a.send(out)
    assert nic.sent[0] == out[:2] and nic.waits[-1] == (TX, 0), "hw kept some: wait for room"
    nic.room(10)
    assert nic.sent[0] == out, "room again: the rest leaves"
    a.send([frame(D, A, b"more")])
    assert nic.sent[0][-1] == frame(D, A, b"more")


def test_a_nic_with_more_rings_than_the_switch_fills():
    h = make_harness(ring_num=128)
    try:
        nic = add_nic(h, "nic0", rings=20, slots=4)
        a = open_port(h, "vale0:a", nr_tx_rings=16, nr_rx_rings=16, slots=4)
        assert attach(h, "vale0:nic0")[0] == 0
        nic.inject(18, [frame(BCAST, D, b"ring 18")])
        assert a.recv() == [frame(BCAST, D, b"ring 18")]
        a.send([frame(D, A, b"unicast on 15")], ring=15)
        assert nic.sent[15] == [frame(D, A, b"unicast on 15")]
        nic.room(1)                        # TX room on every ring, 16..19 included
        assert ctrl(h, ReqType.VALE_DETACH, "vale0:nic0")[0] == 0
        a.close()
    finally:
        h.mem.close()


def test_host_rings_join_as_a_port_of_their_own(h):
    nic = add_nic(h, "nic0")
    a = open_port(h, "vale0:a")
    assert attach(h, "vale0:nic0", host=True)[0] == 0
    assert vale_list(h) == [("vale0:a", 0, 0), ("vale0:nic0", 0, 1), ("vale0:nic0^", 0, 2)]
    assert open_port(h, "vale0:nic0^", expect=errno.EBUSY) == errno.EBUSY
    host = nic.host_ring(RX)
    nic.inject(host, [frame(BCAST, C, b"from the host stack")])
    assert a.recv() == [frame(BCAST, C, b"from the host stack")]
    assert nic.sent[nic.host_ring(TX)] == [], "never back to the sender's port"
    assert nic.sent[0] == [frame(BCAST, C, b"from the host stack")], "the NIC side is another port"
    a.send([frame(C, A, b"to the host")])
    assert nic.sent[nic.host_ring(TX)] == [frame(C, A, b"to the host")] and len(nic.sent[0]) == 1
    a.send([frame(BCAST, A)])
    assert len(nic.sent[0]) == 2 and len(nic.sent[nic.host_ring(TX)]) == 2
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:nic0^")[0] == errno.EBUSY, "detach the port, not its host rings"
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:nic0")[0] == 0
    assert vale_list(h) == [("vale0:a", 0, 0)]


def test_attach_refuses_what_netmap_refuses(h):
    nic = add_nic(h, "nic0")
    n = open_port(h, "nic0")
    assert attach(h, "vale0:nic0")[0] == errno.EBUSY, "a client holds it"
    n.close()
    err = ctrl(h, ReqType.VALE_ATTACH, "vale0:nic0", **{"reg.nr_mode": RegMode.ONE_NIC})[0]
    assert err == errno.EINVAL
    err = ctrl(h, ReqType.VALE_ATTACH, "vale0:nic0", **{"reg.nr_mode": RegMode.ALL_NIC, "reg.nr_ringid": 1})[0]
    assert err == errno.EINVAL
    assert vale_list(h) == [] and not nic.owned_by_kernel and nic.refs == 1, "a failed attach leaves nothing"
    assert ctrl(h, ReqType.VALE_NEWIF, "v0")[0] == 0
    assert attach(h, "vale0:v0", host=True)[0] == 0, "a VALE port has no host rings to attach: ignored"
    assert [n for n, *_ in vale_list(h)] == ["vale0:v0"]


def test_a_persistent_port_in_two_switches_links_them(h):
    assert ctrl(h, ReqType.VALE_NEWIF, "v0", nr_tx_slots=32, nr_rx_slots=32)[0] == 0
    a = open_port(h, "vale0:a")
    b = open_port(h, "vale1:b")
    assert attach(h, "vale0:v0")[0] == 0
    assert attach(h, "vale1:v0")[0] == 0, "the second attach wraps the port"
    assert isinstance(h.core.driver("vale").switches.bridges[1].find("vale1:v0"), vale.Bwrap)
    a.send([frame(BCAST, A, b"across")])
    assert b.recv() == [frame(BCAST, A, b"across")]
    b.send([frame(A, B, b"back")])
    assert a.recv() == [frame(A, B, b"back")]
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:v0")[0] == errno.EBUSY, "detach the wrapping switch first"
    assert ctrl(h, ReqType.VALE_DETACH, "vale1:v0")[0] == 0
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:v0")[0] == 0
    assert ctrl(h, ReqType.VALE_DELIF, "v0")[0] == 0
    assert [n for n, *_ in vale_list(h)] == ["vale0:a", "vale1:b"]


# -- polling -------------------------------------------------------------------


def test_polling_pulls_frames_without_interrupts(h):
    nic = add_nic(h, "nic0")
    a = open_port(h, "vale0:a")
    assert attach(h, "vale0:nic0")[0] == 0
    single = lib.NETMAP_POLLING_MODE_SINGLE_CPU
    nic.inject(0, [frame(BCAST, D, b"quiet")], interrupt=False)
    assert a.recv() == []
    ncpus = os.cpu_count()
    if ncpus < 2:
        pytest.skip("polling needs a CPU left over, as in netmap")
    assert ctrl(h, ReqType.VALE_POLLING_ENABLE, "vale0:nic0", nr_mode=single, nr_num_polling_cpus=1)[0] == 0
    assert ctrl(h, ReqType.VALE_POLLING_ENABLE, "vale0:nic0", nr_mode=single, nr_num_polling_cpus=1)[0] == errno.EFAULT
    deadline = time.monotonic() + 5
    got = []
    while not got and time.monotonic() < deadline:
        with h.core.lock:
            got = a.recv()
        time.sleep(0.001)
    assert got == [frame(BCAST, D, b"quiet")]
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:nic0")[0] == errno.EBUSY, "polling"
    assert ctrl(h, ReqType.VALE_POLLING_DISABLE, "vale0:nic0")[0] == 0
    assert ctrl(h, ReqType.VALE_POLLING_DISABLE, "vale0:nic0")[0] == errno.EFAULT
    assert ctrl(h, ReqType.VALE_DETACH, "vale0:nic0")[0] == 0


def test_polling_errors(h):
    add_nic(h, "nic0")
    open_port(h, "vale0:a")
    assert attach(h, "vale0:nic0")[0] == 0
    single, multi = lib.NETMAP_POLLING_MODE_SINGLE_CPU, lib.NETMAP_POLLING_MODE_MULTI_CPU
    enable = ReqType.VALE_POLLING_ENABLE
    assert ctrl(h, enable, "vale0:a", nr_mode=single, nr_num_polling_cpus=1)[0] == errno.EOPNOTSUPP
    assert ctrl(h, enable, "vale0:zz", nr_mode=single, nr_num_polling_cpus=1)[0] == errno.ENXIO
    assert ctrl(h, enable, "eth0", nr_mode=single, nr_num_polling_cpus=1)[0] == errno.EINVAL
    assert ctrl(h, enable, "vale0:nic0", nr_mode=single, nr_num_polling_cpus=0)[0] == errno.EINVAL
    assert ctrl(h, enable, "vale0:nic0", nr_mode=single, nr_num_polling_cpus=os.cpu_count())[0] == errno.EINVAL
    assert ctrl(h, enable, "vale0:nic0", nr_mode=0, nr_num_polling_cpus=1)[0] == errno.EINVAL
    if os.cpu_count() > 2:
        assert ctrl(h, enable, "vale0:nic0", nr_mode=single, nr_num_polling_cpus=2)[0] == errno.EINVAL
    assert ctrl(h, enable, "vale0:nic0", nr_mode=multi, nr_first_cpu_id=1, nr_num_polling_cpus=1)[0] == errno.EINVAL
    assert ctrl(h, ReqType.VALE_POLLING_DISABLE, "vale0:nic0")[0] == errno.EFAULT
