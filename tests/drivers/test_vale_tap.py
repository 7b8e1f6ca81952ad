"""The switch and monitors with real TAP interfaces, in process (no FUSE):
a TAP attached with VALE_ATTACH talks to VALE ports and to the kernel
behind it, two TAPs in two namespaces ping each other through a switch,
and a monitor sees a TAP port's traffic.  Needs root and /dev/net/tun."""

import os
import socket
import subprocess
import threading
import time

import pytest

from nmfuse.abi.netmap import Ioctl, ReqType
from tests.conftest import needs
from tests.drivers.conftest import BCAST, attach, ctrl, frame, open_port, vale_list
from tests.netmap.conftest import CALLER

tap = pytest.importorskip("nmfuse.drivers.tap")

pytestmark = [
    pytest.mark.needs_root,
    needs("root", "tun"),
]

ETHERTYPE = 0x88B5
A = "02:00:00:00:00:0a"
TAG = f"{os.getpid() % 100000}"


def name(suffix: str) -> str:
    return f"nv{TAG}{suffix}"


@pytest.fixture
def taps(h):
    """Create TAPs as the daemon's --tap does; everything goes at the end."""
    made = []

    def make(suffix: str):
        port = tap.create(h.core, name(suffix), 1)
        made.append(port)
        return port

    yield make
    for port in made:
        ctrl(h, ReqType.VALE_DETACH, f"vale0:{port.name}")
    for fh in list(h.dev.bindings):
        h.dev.release(fh)
    tap.delete_ports(h.core)


def packet_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    s.bind((ifname, 0))
    s.settimeout(2)
    return s


def ours(frames):
    """The test frames among what arrived (the kernel sends its own too)."""
    return [f for f in frames if f[12:14] == ETHERTYPE.to_bytes(2, "big")]


def pump(h, until, timeout=3.0):
    """Serve the TAP fds' wake-ups (the daemon's trio task does this) until
    ``until()`` returns something true."""
    w = tap.waiter(h.core)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with h.core.lock:
            w.dispatch(0.01)
            got = until()
        if got:
            return got
    return until()


def test_an_attached_tap_talks_to_the_switch_and_its_kernel(h, taps):
    t = taps("a")
    a = open_port(h, "vale0:a", slots=64)
    assert attach(h, f"vale0:{t.name}")[0] == 0
    assert vale_list(h) == [("vale0:a", 0, 0), (f"vale0:{t.name}", 0, 1)]
    assert open_port(h, t.name, expect=16) == 16, "EBUSY: the switch owns it"
    s = packet_socket(t.name)
    out = frame(BCAST, A, b"to the kernel")
    a.send([out])
    assert s.recv(2048)[:len(out)] == out
    back = frame(A, "02:00:00:00:00:0e", b"from the kernel")
    s.send(back)
    got = pump(h, lambda: ours(a.recv()))
    assert [g[:len(back)] for g in got] == [back]
    s.close()


def test_host_rings_attached_carry_the_kernels_frames(h, taps):
    t = taps("h")
    a = open_port(h, "vale0:a", slots=64)
    assert attach(h, f"vale0:{t.name}", host=True)[0] == 0
    assert [n for n, *_ in vale_list(h)] == ["vale0:a", f"vale0:{t.name}", f"vale0:{t.name}^"]
    s = packet_socket(t.name)
    back = frame(BCAST, "02:00:00:00:00:0e", b"stack")
    s.send(back)
    got = pump(h, lambda: ours(a.recv()))
    assert [g[:len(back)] for g in got] == [back], "the stack is behind the host rings now"
    s.close()


@needs("ip", "ping")
def test_ping_between_namespaces_through_the_switch(h, taps):
    spaces = [name("n1"), name("n2")]
    for ns in spaces:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for i, ns in enumerate(spaces, 1):
            t = taps(f"p{i}")
            subprocess.run(["ip", "link", "set", t.name, "netns", ns], check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"10.77.{os.getpid() % 200}.{i}/24", "dev", t.name],
                           check=True)
            assert attach(h, f"vale0:{t.name}")[0] == 0
            subprocess.run(["ip", "-n", ns, "link", "set", t.name, "up"], check=True)
        stop = threading.Event()

        def serve():
            w = tap.waiter(h.core)
            while not stop.is_set():
                with h.core.lock:
                    w.dispatch(0)
                time.sleep(0.0005)

        server = threading.Thread(target=serve)
        server.start()
        try:
            ping = subprocess.run(["ip", "netns", "exec", spaces[0], "ping", "-c", "3", "-i", "0.2", "-W", "2",
                                   f"10.77.{os.getpid() % 200}.2"], capture_output=True, text=True, timeout=30)
        finally:
            stop.set()
            server.join()
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert " 0% packet loss" in ping.stdout
    finally:
        for ns in spaces:
            subprocess.run(["ip", "netns", "del", ns])


def test_monitors_of_a_tap_port(h, taps):
    t = taps("m")
    port = open_port(h, t.name, slots=64)
    copy = open_port(h, t.name, slots=0, nr_flags=0x300)          # /rt
    s = packet_socket(t.name)
    out = frame(BCAST, A, b"out")
    port.send([out])
    assert s.recv(2048)[:len(out)] == out
    back = frame(A, "02:00:00:00:00:0e", b"in")
    s.send(back)
    seen = []

    def monitored():
        h.dev.poll(CALLER, port.fh, 1, 5)     # the reader polls: the TAP's frames come in
        seen.extend(ours(copy.recv()))
        return len(seen) >= 2

    assert pump(h, monitored)
    assert [g[:len(f)] for g, f in zip(seen, [out, back])] == [out, back], "TX copy, then RX copy"
    assert ours(port.recv())[0][:len(back)] == back
    assert h.sync(copy.fh, Ioctl.NIOCRXSYNC) == 0
    s.close()
