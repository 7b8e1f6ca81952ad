"""Issue: the datapath. Pipes between two processes with the project's
sender and receiver, a zero-copy forwarder, and a client that abuses its
rings while others keep running."""

import json
import select
import subprocess
import time

import pytest

from tests.integration.conftest import client
from tests.integration.pyclient import Port

PACKETS = 10_000_000


def _json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("wait", ["poll", "select", "ioctl"])
def test_ten_million_packets_over_a_pipe(mount, wait):
    name = f"dp{wait}"
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{name}}}1", "-n", str(PACKETS), "-c",
                             "-w", wait, "-j"], env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(0.5)
    send = mount.run(client("nm-send"), "-i", f"netmap:{name}{{1", "-n", str(PACKETS), "-w", wait, "-j",
                     timeout=600)
    out, err = recv.communicate(timeout=600)
    assert recv.returncode == 0, out + err + mount.output()
    got = _json(out)
    assert got["pkts"] == PACKETS
    assert got["lost"] == got["dup"] == got["ooo"] == got["corrupt"] == 0
    assert _json(send.stdout)["pkts"] == PACKETS


def _flow(mount, name, n, send_opts, recv_opts):
    recv = subprocess.Popen([client("nm-recv"), "-i", f"netmap:{name}}}1", "-n", str(n), *recv_opts, "-j"],
                            env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    send = mount.run(client("nm-send"), "-i", f"netmap:{name}{{1", "-n", str(n), *send_opts, "-j")
    out, err = recv.communicate(timeout=120)
    return _json(send.stdout), recv.returncode, _json(out)


def test_pkt_gen_style_clients_write_each_buffer_once_and_count_slots(mount):
    n = 20_000
    sent, status, got = _flow(mount, "pg", n, ["-z", "-b", "256"], ["-z"])
    assert status == 0 and got["pkts"] == n and got["bytes"] == n * 60 and got["read"] is False
    assert sent["pkts"] == n and 0 < sent["built"] <= 1024, "one frame per buffer, not per send"
    # read by a receiver that checks: the first pass was whole frames, then they come again
    sent, status, got = _flow(mount, "pgread", n, ["-z", "-b", "256"], [])
    assert got["pkts"] == n and got["corrupt"] == 0 and got["other"] == 0
    assert got["next_seq"] == sent["built"] and got["dup"] == n - sent["built"]
    sent, _, _ = _flow(mount, "pgframed", n, ["-b", "256"], ["-c"])
    assert sent["built"] == n


def test_forwarder_moves_buffer_indexes_not_bytes(mount):
    n = 100_000
    recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:b}1", "-n", str(n), "-c", "-j"], env=mount.env,
                            stdout=subprocess.PIPE, text=True)
    fwd = subprocess.Popen([client("nm-fwd"), "-i", "netmap:a}1", "-o", "netmap:b{1", "-n", str(n), "-j"],
                           env=mount.env, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    mount.run(client("nm-send"), "-i", "netmap:a{1", "-n", str(n))
    fwd_out, _ = fwd.communicate(timeout=120)
    recv_out, _ = recv.communicate(timeout=120)
    assert fwd.returncode == 0 and recv.returncode == 0, fwd_out + recv_out + mount.output()
    stats = _json(fwd_out)
    assert stats["swapped"] >= n and stats["copied"] == 0
    assert _json(recv_out)["pkts"] == n


def test_ring_abuse_is_contained(mount):
    before = mount.status()["pools"]["buf"]
    # an honest pair keeps running meanwhile
    n = 2_000_000
    recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:ok}1", "-n", str(n), "-c", "-j"], env=mount.env,
                            stdout=subprocess.PIPE, text=True)
    send = subprocess.Popen([client("nm-send"), "-i", "netmap:ok{1", "-n", str(n), "-r", "500000"],
                            env=mount.env, stdout=subprocess.PIPE, text=True)
    a, b = Port(mount.path, "bad{1"), Port(mount.path, "bad}1")
    tx, rx = a.txring(), b.rxring()
    hwcur = tx.head
    tx.head = tx.cur = tx.num_slots + 5          # head out of range
    p = select.poll()
    p.register(a.fd, select.POLLOUT)
    assert p.poll(1000)[0][1] & select.POLLERR
    assert (tx.head, tx.cur) == (hwcur, hwcur), "reinitialised to the kernel's view"
    tx.slot[0].buf_idx = 1                       # a reserved buffer
    tx.slot[1].buf_idx = 0xFFFFFFF0              # beyond the pool
    tx.slot[2].len = 60000                       # beyond the buffer
    tx.head = tx.cur = 3
    a.txsync()
    b.rxsync()
    assert rx.tail == rx.head, "nothing refused was delivered"
    stolen = tx.slot[3].buf_idx
    for k in range(tx.num_slots):                # every slot points at one buffer
        tx.slot[k].buf_idx = stolen
    tx.head = tx.cur = 20
    a.txsync()
    b.rxsync()
    a.close()
    b.close()
    send.wait(timeout=120)
    out, _ = recv.communicate(timeout=120)
    assert recv.returncode == 0, out + mount.output()
    assert mount.proc.poll() is None
    after = mount.status()["pools"]["buf"]
    assert after["used"] == before["used"], "every buffer came back"
