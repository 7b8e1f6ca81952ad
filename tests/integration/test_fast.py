"""The C fast path on a real mount: syncs and polls of bound null ports are
answered in C by every request worker while clients register, sync, poll
and die at once; afterwards every buffer is back and the daemon serves.
A ring the client broke comes back reinitialised through the C path as
through Python."""

import json
import os
import select
import signal
import subprocess
import time

import pytest

from nmfuse.abi.netmap import RegMode
from tests.integration.conftest import Mount, client, python_clients, stop_cleanly, uring_served
from tests.integration.pyclient import Port

# One client: binds a null port with rings, moves head/cur around them with
# syncs and polls, sometimes breaks a ring, closes, starts over.
CLIENT = """
import os, select, sys
sys.path.insert(0, {root!r})
from tests.integration.pyclient import Port
from nmfuse.abi.netmap import RegMode
name, rounds = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
for r in range(rounds):
    p = Port({device!r}, name, mode=RegMode.NULL, mem_id=1, nr_tx_rings=2, nr_rx_rings=2,
             nr_tx_slots=64, nr_rx_slots=64)
    poller = select.poll()
    poller.register(p.fd, select.POLLOUT)
    for i in range(100):
        tx = p.txring(i % 2)
        tx.head = tx.cur = (tx.head + 1) % tx.num_slots if tx.head != tx.tail else tx.head
        p.txsync()
        p.rxsync()
        if i % 10 == 0:
            poller.poll(0)
        if i == 50:
            tx.head = 1000          # broken: the sync reinitialises the ring
            p.txsync()
            assert tx.head == tx.cur < tx.num_slots, (tx.head, tx.cur)
    p.close()
"""


@pytest.fixture(params=[["--workers", "1"], ["--workers", "4"], ["--uring"]],
                ids=["one-reader", "cloned-readers", "io_uring"])
def fast_mount(request, tmp_path):
    if request.param == ["--uring"]:
        request.getfixturevalue("uring_enabled")
        m = uring_served(str(tmp_path / "netmap"))
    else:
        m = Mount(str(tmp_path / "netmap"), "--buf-num", "32768", *request.param)
    yield m
    stop_cleanly(m)


def test_syncs_answered_in_c_while_clients_come_and_die(fast_mount):
    mount = fast_mount
    before = mount.status()
    survivors = python_clients(mount, CLIENT, 6, 5, "ok")
    victims = python_clients(mount, CLIENT, 4, 10_000, "dead")
    time.sleep(0.5)
    for p in victims:  # killed in the middle of their syncs and registrations
        p.send_signal(signal.SIGKILL)
    for p in survivors:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for p in victims:
        p.wait()
    after = mount.settled()
    assert after["ports"] == [] and after["open_files"] == 0, after
    assert {n: p["used"] for n, p in after["pools"].items()} == \
        {n: p["used"] for n, p in before["pools"].items()}, "every buffer, ring and netmap_if came back"
    # 6 clients x 5 rounds x 201 syncs at least went through C
    assert after["answered_in_c"] - before["answered_in_c"] >= 6 * 5 * 201
    port = Port(mount.path, "n", mode=RegMode.NULL, mem_id=1, nr_tx_rings=1, nr_tx_slots=8)
    port.txsync()  # still serving
    poller = select.poll()
    poller.register(port.fd, select.POLLOUT)
    assert poller.poll(1000)[0][1] & select.POLLOUT
    port.close()


def _all_arrived(mount, before, procs, n):
    """The clients ended well, each with n frames once, in order and
    intact; every buffer is back and the C path answered."""
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err + mount.output()
        got = json.loads(out.strip().splitlines()[-1])
        assert got["pkts"] == n, got
        assert got.get("lost", 0) == got.get("dup", 0) == got.get("ooo", 0) == got.get("corrupt", 0) == 0, got
    after = mount.settled()
    assert {k: p["used"] for k, p in after["pools"].items()} == {k: p["used"] for k, p in before["pools"].items()}
    assert after["answered_in_c"] - before["answered_in_c"] > 0


def test_pipes_in_c_between_processes_lose_and_hang_nothing(fast_mount):
    # Four pipes at once, senders and receivers waiting in poll: the C path
    # syncs them and writes the wake-ups; every frame arrives, in order.
    mount = fast_mount
    before = mount.status()
    n = 200_000
    recvs = [subprocess.Popen([client("nm-recv"), "-i", f"netmap:fp{i}}}1", "-n", str(n), "-c", "-w", "poll",
                               "-j"], env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    time.sleep(0.5)
    sends = [subprocess.Popen([client("nm-send"), "-i", f"netmap:fp{i}{{1", "-n", str(n), "-w", "poll", "-j"],
                              env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    _all_arrived(mount, before, sends + recvs, n)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_ring_sized_batches_between_two_cpus_lose_and_hang_nothing(fast_mount):
    # The sides of the pipe take turns on two CPUs, each woken by the other's
    # sync before the slots move (the early wake): every frame arrives once,
    # in order, and every buffer comes back.  (A wake-up lost after a poll
    # that looked too early would only stall a client until its poll
    # timeout; tests/netmap/test_fast.py pins the wake-up itself.)
    mount = fast_mount
    before = mount.status()
    cpus = sorted(os.sched_getaffinity(0))[:2]
    n = 1_000_000

    def on(cpu):
        return lambda: os.sched_setaffinity(0, {cpu})
    recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:turns}1", "-n", str(n), "-c", "-w", "poll", "-j"],
                            env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=on(cpus[1]))
    time.sleep(0.5)
    send = subprocess.Popen([client("nm-send"), "-i", "netmap:turns{1", "-n", str(n), "-b", "1023", "-w", "poll",
                             "-j"], env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=on(cpus[0]))
    _all_arrived(mount, before, (send, recv), n)
