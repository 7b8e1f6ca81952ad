"""The driver contract, run over every port type.

Each entry of ``PORTS`` opens one port of a driver the way a client would
(REGISTER through the device) and hands back the port plus what keeps it
company (a pipe's peer, a monitored port).  Every test then holds for
every driver: registration gives rings in shared memory, an empty sync
moves nothing, a sync of a full ring keeps the ring valid, and
unregistering returns every buffer and ring.  A new driver joins with one
line in ``PORTS``.
"""

import select

import pytest
from pyroute2 import IPRoute

from nmfuse.abi.netmap import Ioctl, RegFlag, RegMode
from nmfuse.drivers import tap
from tests.conftest import missing
from tests.drivers.conftest import frame, open_port
from tests.drivers.test_tap import quiet, unique


def _null(h, request):
    return open_port(h, "n0", mode=RegMode.NULL, nr_mem_id=h.mem.mem_id, nr_tx_rings=1, nr_rx_rings=1), []


def _pipe(h, request):
    master = open_port(h, "c{1")
    return master, [open_port(h, "c}1")]


def _vale(h, request):
    return open_port(h, "vale0:a"), [open_port(h, "vale0:b")]


def _monitor(h, request):
    watched = open_port(h, "m{1")
    peer = open_port(h, "m}1")
    return open_port(h, "m{1", nr_flags=RegFlag.MONITOR_TX | RegFlag.MONITOR_RX), [watched, peer]


def _tap(h, request):
    reason = missing("root", "tun")
    if reason:
        pytest.skip(reason)
    name = unique("nmc")
    tap.create(h.core, name, 1)
    quiet(name)
    return open_port(h, name), []


def _generic(h, request):
    reason = missing("root")
    if reason:
        pytest.skip(reason)
    name = unique("nmd")
    with IPRoute() as ipr:  # one end of a veth pair whose other end is down: frames go nowhere
        ipr.link("add", ifname=name, kind="veth", peer=name + "p")
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")

    def remove():  # both ends go
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)

    request.addfinalizer(remove)
    return open_port(h, name), []


PORTS = {"null": _null, "pipe": _pipe, "vale": _vale, "monitor": _monitor, "tap": _tap, "generic": _generic}

# what a monitor answers to a TX sync: netmap's monitors refuse to transmit
TX_REFUSED = {"monitor"}


@pytest.fixture(params=sorted(PORTS))
def port(request, h):
    """(driver name, port, companions); afterwards every binding is
    released and every TAP the test made is deleted."""
    before = _usage(h)
    p, others = PORTS[request.param](h, request)
    yield request.param, p, others
    for fh in list(h.dev.bindings):
        h.dev.release(fh)
    tap.delete_ports(h.core)
    h.core.driver("generic").stop()
    assert _usage(h) == before, "every buffer, ring and netmap_if is back"


def _usage(h) -> dict:
    return {name: s.used for name, s in h.mem.statistics().items()}


def _pointers(ring):
    return ring.head, ring.cur, ring.tail


def test_register_gives_rings_in_shared_memory(h, port):
    kind, p, _ = port
    assert p.adapter.kind == kind
    for i in range(p.nifp.ni_tx_rings):
        ring = p.tx(i)
        assert ring.num_slots > 0 and ring.nr_buf_size == h.mem.buf_size
        assert all(2 <= ring.slot[k].buf_idx < h.mem.bufs.objtotal or kind == "monitor"
                   for k in range(ring.num_slots))
    assert p.nifp.ni_rx_rings >= 1


def test_an_empty_sync_moves_nothing(h, port):
    kind, p, _ = port
    tx, rx = p.tx(), p.rx()
    before = _pointers(tx), _pointers(rx)
    assert h.sync(p.fh, Ioctl.NIOCTXSYNC) == 0
    assert h.sync(p.fh, Ioctl.NIOCRXSYNC) == 0
    assert (_pointers(tx), _pointers(rx)) == before
    assert not h.dev.poll(None, p.fh, select.POLLIN, None) & select.POLLERR


def test_a_full_ring_syncs_and_stays_valid(h, port):
    kind, p, _ = port
    tx = p.tx()
    n = tx.num_slots
    # hand the kernel every slot the user owns: head jumps to tail
    count = (tx.tail - tx.head) % n
    p.send([frame("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01", bytes([k])) for k in range(count)],
           sync=False)
    assert tx.head == tx.tail
    assert h.sync(p.fh, Ioctl.NIOCTXSYNC) == 0
    err = h.dev.poll(None, p.fh, select.POLLOUT, None) & select.POLLERR
    assert bool(err) == (kind in TX_REFUSED), "a monitor's TX sync is refused, no one else's"
    for ring in (tx, p.rx()):
        assert 0 <= ring.head < ring.num_slots and 0 <= ring.tail < ring.num_slots
        assert ring.head == ring.cur
    assert h.sync(p.fh, Ioctl.NIOCRXSYNC) == 0


def test_unregister_returns_everything(h, port):
    kind, p, others = port
    used = _usage(h)
    p.close()
    for other in others:
        other.close()
    after = _usage(h)
    assert after["ring"] < used["ring"] and after["if"] < used["if"] and after["buf"] < used["buf"]
