"""Issue 14: any Linux interface as a netmap port (the generic driver),
end to end with real interfaces: veth pairs, a Linux bridge, loopback.

The daemon runs in a network namespace of its own (``D``, random name) and
serves that namespace's interfaces; a peer namespace ``P`` holds the far
end where the host stack's view matters.  The project's C clients drive
the ports through the mounted device."""

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from pyroute2 import IPRoute, netns

from tests.conftest import needs
from tests.integration.conftest import Mount, client

_names = itertools.count()
ADDR_D, ADDR_P = "198.18.14.1", "198.18.14.2"


def _name(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 10000}x{next(_names)}"


def _json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _in(ns: str, *cmd: str, timeout=60, check=False) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout,
                          check=check)


def _no_ipv6(ns: str, name: str) -> None:
    _in(ns, "sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{name}/disable_ipv6", check=True)


def _rx_packets(ns: str, name: str) -> int:
    with IPRoute(netns=ns) as ipr:
        link = ipr.link("get", ifname=name)[0]
    return link.get_attr("IFLA_STATS64")["rx_packets"]


def _tcx(ns: str, name: str) -> tuple[int, int] | None:
    """(ingress, egress) tcx programs of ``name``; None if it is gone."""
    code = (f"from nmfuse.host import tc, netif; i = netif.lookup({name!r}); "
            "print(*(tc.attached(i.index) if i else ()))")
    out = _in(ns, sys.executable, "-c", code, check=True).stdout.split()
    return (int(out[0]), int(out[1])) if out else None


def settled(ns: str, expected: dict) -> dict:
    """The snapshot of ``ns`` once it equals ``expected``, or after 10 s:
    a closed binding (and a killed process's fds) are released
    asynchronously."""
    deadline = time.monotonic() + 10
    while (now := snapshot(ns)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


def snapshot(ns: str) -> dict:
    """What binding may change in namespace ``ns``: its links (name, flags,
    MTU, promiscuity), addresses, qdiscs, tc filters and tcx programs."""
    with IPRoute(netns=ns) as ipr:
        links = {link.get_attr("IFLA_IFNAME"): (link["flags"], link.get_attr("IFLA_MTU"),
                                                link.get_attr("IFLA_PROMISCUITY"))
                 for link in ipr.get_links()}
        addrs = sorted((a["index"], a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr())
    tc = {name: (_in(ns, "tc", "qdisc", "show", "dev", name).stdout,
                 _in(ns, "tc", "filter", "show", "dev", name, "ingress").stdout,
                 _in(ns, "tc", "filter", "show", "dev", name, "egress").stdout,
                 _tcx(ns, name)) for name in links}
    return {"links": links, "addrs": addrs, "tc": tc}


class Net:
    """Namespace D (the daemon's) with veth pair a--b, and namespace P."""

    def __init__(self, tmp_path, queues: int = 1):
        self.d, self.p = _name("nmgd"), _name("nmgp")
        self.a, self.b = _name("gva"), _name("gvb")
        netns.create(self.d)
        netns.create(self.p)
        with IPRoute(netns=self.d) as ipr:
            ipr.link("add", ifname=self.a, kind="veth", peer={"ifname": self.b, "net_ns_fd": self.d},
                     num_tx_queues=queues, num_rx_queues=queues)
        for name in (self.a, self.b):
            _no_ipv6(self.d, name)
        self.mount = None
        self.tmp_path = tmp_path

    def up(self, *names: str, ns: str | None = None) -> None:
        with IPRoute(netns=ns or self.d) as ipr:
            for name in names:
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")

    def move_b_to_p(self) -> None:
        """b goes to P, without the offloads a copying bridge cannot carry
        (netmap's advice for emulated adapters: partial checksums and
        GSO super-frames would reach the stack through the host ring as is)."""
        code = (f"from pyroute2.ethtool import Ethtool; e = Ethtool(); f = e.get_features({self.b!r}); "
                "f.features['tx-checksum-ip-generic'].enable = False; "
                f"f.features['tx-generic-segmentation'].enable = False; e.set_features({self.b!r}, f)")
        _in(self.d, sys.executable, "-c", code, check=True)
        with IPRoute(netns=self.d) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=self.b)[0], net_ns_fd=self.p)
        with IPRoute(netns=self.d) as ipr:
            ipr.addr("add", index=ipr.link_lookup(ifname=self.a)[0], address=ADDR_D, prefixlen=24)
        with IPRoute(netns=self.p) as ipr:
            ipr.addr("add", index=ipr.link_lookup(ifname=self.b)[0], address=ADDR_P, prefixlen=24)
        self.up(self.a)
        self.up(self.b, "lo", ns=self.p)

    def start(self) -> Mount:
        self.mount = Mount(str(self.tmp_path / "netmap"), "--buf-num", "65536", netns=self.d)
        return self.mount

    def close(self) -> None:
        if self.mount is not None:
            code = self.mount.stop()
            assert code in (0, -signal.SIGKILL), self.mount.output()
            if code == -signal.SIGKILL:
                subprocess.run(["umount", "-l", self.mount.path], check=False)
        for ns in (self.d, self.p):
            netns.remove(ns)


@pytest.fixture
def net(tmp_path):
    n = Net(tmp_path)
    yield n
    n.close()


def _ping(ns: str, addr: str, count: int = 5) -> str:
    return _in(ns, "ping", "-c", str(count), "-i", "0.05", "-W", "1", "-q", addr).stdout


# -- frames ----------------------------------------------------------------

def test_a_million_frames_veth_to_veth_none_lost_duplicated_or_corrupted(net):
    net.up(net.a, net.b)
    m = net.start()
    n = 1_000_000
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{net.b}", "-n", str(n), "-c", "-T", "20", "-j"],
                            env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    # bursts of 128: a veth hands frames to its peer through the receiving
    # CPU's backlog (netdev_max_backlog, 1000 by default), which a larger
    # burst could overflow before anyone reads
    m.run(client("nm-send"), "-i", f"netmap:{net.a}", "-n", str(n), "-b", "128", "-r", "150000", "-j", timeout=120)
    rings = [(p["name"], r["dir"], r["index"], r["packets"], r["drops"])
             for p in m.status()["ports"] for r in p["rings"]]
    out, err = recv.communicate(timeout=60)
    got = _json(out)
    assert recv.returncode == 0, f"{out}{err}{rings}"
    assert (got["pkts"], got["lost"], got["dup"], got["corrupt"]) == (n, 0, 0, 0)


@pytest.mark.parametrize("size", [60, 1514])
def test_frames_the_other_way_byte_for_byte(net, size):
    net.up(net.a, net.b)
    m = net.start()
    n = 20_000
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{net.a}", "-n", str(n), "-c", "-T", "10", "-j"],
                            env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    m.run(client("nm-send"), "-i", f"netmap:{net.b}", "-n", str(n), "-s", str(size), "-b", "128", "-r", "100000", "-j")
    out, err = recv.communicate(timeout=60)
    got = _json(out)
    assert (got["pkts"], got["bytes"], got["lost"], got["corrupt"]) == (n, n * size, 0, 0), out + err


def test_linux_bridge_and_loopback_carry_frames(net):
    bridge = _name("gbr")
    with IPRoute(netns=net.d) as ipr:
        ipr.link("add", ifname=bridge, kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname=net.b)[0], master=ipr.link_lookup(ifname=bridge)[0])
    _no_ipv6(net.d, bridge)
    net.up(net.a, net.b, bridge, "lo")
    m = net.start()
    for tx, rx in ((bridge, net.a), ("lo", "lo")):
        n = 5000
        recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{rx}", "-n", str(n), "-c", "-T", "10", "-j"],
                                env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        m.run(client("nm-send"), "-i", f"netmap:{tx}", "-n", str(n), "-s", "200", "-r", "50000", "-j")
        out, err = recv.communicate(timeout=60)
        got = _json(out)
        assert (got["pkts"], got["lost"], got["dup"], got["corrupt"]) == (n, 0, 0, 0), (tx, out, err)


def test_rings_follow_the_queues_the_interface_uses(tmp_path):
    """netmap counts the channels in use (ethtool), not the queues a device
    was allocated: a veth of 4 queues running 3 TX and 1 RX has 3 TX rings
    and 1 RX ring, so every frame lands on a ring a program reads."""
    net = Net(tmp_path, queues=4)
    try:
        code = ("from pyroute2.ethtool.ioctl import IoctlEthtool; e = IoctlEthtool(%r); c = e.get_channels(); "
                "c.tx_count, c.rx_count = 3, 1; e.set_channels(c)" % net.a)
        _in(net.d, sys.executable, "-c", code, check=True)
        net.up(net.a, net.b)
        m = net.start()
        res = m.run(client("nm-recv"), "-i", f"netmap:{net.a}", "-T", "0.5")
        assert "rx rings 0..0 " in res.stderr, res.stderr
        res = m.run(client("nm-send"), "-i", f"netmap:{net.a}", "-n", "1")
        assert "tx rings 0..2 " in res.stderr, res.stderr
    finally:
        net.close()


def test_two_programs_on_different_rings(tmp_path):
    net = Net(tmp_path, queues=2)
    try:
        net.up(net.a, net.b)
        m = net.start()
        n = 20_000
        before = _rx_packets(net.d, net.b)
        senders = [subprocess.Popen([client("nm-send"), "-i", f"netmap:{net.a}-{ring}", "-n", str(n),
                                     "-p", str(ring + 1), "-r", "100000", "-j"],
                                    env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for ring in (0, 1)]
        for s in senders:
            out, err = s.communicate(timeout=60)
            assert s.returncode == 0 and _json(out)["pkts"] == n, out + err
        assert _rx_packets(net.d, net.b) - before == 2 * n
    finally:
        net.close()


# -- errors ----------------------------------------------------------------

def test_unknown_interface_is_enxio_and_a_removed_one_ends_its_bindings(net):
    net.up(net.a, net.b)
    m = net.start()
    res = m.run(client("nm-send"), "-i", "netmap:nosuch0", "-n", "1", check=False)
    assert res.returncode != 0 and "No such device or address" in res.stderr
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{net.a}", "-T", "0", "-j"],
                            env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    with IPRoute(netns=net.d) as ipr:
        ipr.link("del", ifname=net.a)
    try:
        out, err = recv.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        recv.kill()
        pytest.fail("the receiver was not told its interface went away")
    assert recv.returncode != 0, out + err
    assert m.proc.poll() is None, "the daemon carries on"
    res = m.run(client("nm-send"), "-i", f"netmap:{net.a}", "-n", "1", check=False)
    assert res.returncode != 0 and "No such device or address" in res.stderr


# -- the host stack ------------------------------------------------------------

@needs("ping")
def test_stack_blind_while_bound_and_sees_again_after(net):
    net.move_b_to_p()
    m = net.start()
    assert " 0% packet loss" in _ping(net.p, ADDR_D)
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{net.a}", "-T", "0", "-j"],
                            env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    try:
        before = _in(net.d, "cat", f"/sys/class/net/{net.a}/statistics/rx_packets").stdout
        assert " 100% packet loss" in _ping(net.p, ADDR_D), "the stack answered while bound"
    finally:
        recv.send_signal(signal.SIGINT)
        out, err = recv.communicate(timeout=20)
    assert _json(out)["other"] >= 5, "netmap got the frames the stack did not: " + out + err
    assert int(before) >= 0
    _in(net.p, "ip", "neigh", "flush", "all")   # forget the ARP failures of the blind period
    assert " 0% packet loss" in _ping(net.p, ADDR_D), "the stack sees the wire again"


def test_what_the_host_tx_ring_sends_never_reaches_the_hw_rx_rings(net):
    """Host TX frames enter the stack through the interface, past its
    AF_PACKET taps; the hw RX sockets, open before the first of them, must
    skip them all from that one on, and still take the wire's frames."""
    net.up(net.a, net.b)
    m = net.start()
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{net.a}", "-T", "0", "-j"],
                            env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    try:
        m.run(client("nm-send"), "-i", f"netmap:{net.a}^", "-n", "1000", "-b", "1")
        m.run(client("nm-send"), "-i", f"netmap:{net.b}", "-n", "100", "-p", "7")
        time.sleep(1)
    finally:
        recv.send_signal(signal.SIGINT)
        out, err = recv.communicate(timeout=20)
    got = _json(out)
    assert (got["pkts"], got["dup"]) == (100, 0), out + err


@needs("ping")
def test_host_rings_transparent_to_ping_and_tcp_through_a_bridge(net):
    net.move_b_to_p()
    m = net.start()
    fwd = subprocess.Popen([client("nm-fwd"), "-i", f"netmap:{net.a}", "-o", f"netmap:{net.a}^", "-b", "-j"],
                           env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    try:
        assert fwd.poll() is None, fwd.communicate()
        assert " 0% packet loss" in _ping(net.p, ADDR_D, 20), m.output()
        assert " 0% packet loss" in _ping(net.d, ADDR_P, 20)
        payload = os.urandom(4 << 20)
        server = subprocess.Popen(["ip", "netns", "exec", net.d, sys.executable, "-c",
                                   (f"import socket,sys,hashlib; s=socket.create_server(('{ADDR_D}', 5514)); "
                                    "c,_=s.accept(); h=hashlib.sha256(); n=0\n"
                                    "while (d:=c.recv(65536)): h.update(d); n+=len(d)\n"
                                    "print(n, h.hexdigest())")],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        sender = subprocess.run(["ip", "netns", "exec", net.p, sys.executable, "-c",
                                 (f"import socket,sys; c=socket.create_connection(('{ADDR_D}', 5514), timeout=30); "
                                  "c.sendall(sys.stdin.buffer.read()); c.close()")],
                                input=payload, capture_output=True, timeout=60, check=False)
        assert sender.returncode == 0, sender.stderr
        out, _ = server.communicate(timeout=60)
        assert out.split() == [str(len(payload)), hashlib.sha256(payload).hexdigest()]
    finally:
        fwd.send_signal(signal.SIGINT)
        out, err = fwd.communicate(timeout=20)
    assert fwd.returncode == 0, out + err


# -- nothing left behind ----------------------------------------------------------

@needs("ping")
def test_unbinding_and_sigkill_leave_the_interface_as_it_was(net):
    net.move_b_to_p()
    before = snapshot(net.d)
    m = net.start()
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{net.a}^", "-T", "0"],
                            env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    bound = snapshot(net.d)
    assert bound["tc"][net.a][3] == (1, 1), "the drop and the diversion are in place"
    assert len(bound["links"]) == len(before["links"]) + 1, "the host path's TAP exists"
    recv.send_signal(signal.SIGINT)
    recv.communicate(timeout=20)
    assert settled(net.d, before) == before, "unbound"
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{net.a}", "-T", "0"],
                            env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    assert snapshot(net.d) != before
    m.stop(signal.SIGKILL)
    recv.kill()
    recv.communicate(timeout=20)
    assert settled(net.d, before) == before, "after SIGKILL"
    assert " 0% packet loss" in _ping(net.p, ADDR_D)
