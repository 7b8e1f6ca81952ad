"""Issue 13: several request workers (cloned /dev/fuse channels, or io_uring
queues) serving one device at once.  Many clients sync, register, die and
attach VALE ports at the same time; afterwards every buffer, ring and
binding is back, and the daemon still serves."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import Mount, client, python_clients, stop_cleanly
from tests.integration.pyclient import Port
from nmfuse.abi.netmap import RegMode

# One client process: registers both ends of its own pipe (with extra
# buffers), moves frames through it with syncs, closes, and starts over.
CHURN = """
import os, sys, time
sys.path.insert(0, {root!r})
from tests.integration.pyclient import Port
name, rounds = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
for r in range(rounds):
    a = Port({device!r}, name + "{{1", nr_extra_bufs=8)
    b = Port({device!r}, name + "}}1")
    tx, rx = a.txring(), b.rxring()
    for _ in range(20):
        n = tx.num_slots
        k = (tx.tail - tx.head) % n
        for i in range(min(k, 16)):
            tx.slot[(tx.head + i) % n].len = 60
        tx.head = tx.cur = (tx.head + min(k, 16)) % n
        a.txsync()
        b.rxsync()
        rx.head = rx.cur = rx.tail
        b.rxsync()
    a.close()
    b.close()
"""


def _everything_at_once(mount):
    before = mount.status()
    before_bufs = before["pools"]["buf"]["used"]
    survivors = python_clients(mount, CHURN, 6, 15, "ok")
    victims = python_clients(mount, CHURN, 4, 1000, "dead")
    env = mount.env
    # VALE traffic between two ports while persistent ports attach and detach
    recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:vale13:b", "-n", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    send = subprocess.Popen([client("nm-send"), "-i", "netmap:vale13:a", "-n", "0", "-b", "32"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vale = [sys.executable, "-m", "nmfuse", "vale", "--device", mount.path]
    mount.run(*vale, "-n", "p13")
    for _ in range(5):
        mount.run(*vale, "-a", "vale13:p13")
        mount.run(*vale, "-d", "vale13:p13")
    time.sleep(0.5)
    for p in victims:  # killed in the middle of their syncs and registrations
        p.send_signal(signal.SIGKILL)
    for p in survivors:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for p in (send, recv, *victims):
        p.kill()
        p.wait()
    mount.run(*vale, "-r", "p13")
    after = mount.settled()
    assert after["ports"] == [] and after["open_files"] == 0, after
    assert after["pools"]["buf"]["used"] == before_bufs, "every buffer came back"
    assert {n: p["used"] for n, p in after["pools"].items()} == \
        {n: p["used"] for n, p in before["pools"].items()}
    port = Port(mount.path, "n", mode=RegMode.NULL, mem_id=1, nr_tx_rings=1, nr_tx_slots=8)
    port.txsync()  # still serving
    port.close()
    return after


@pytest.fixture
def workers_mount(tmp_path):
    m = Mount(str(tmp_path / "netmap"), "--buf-num", "32768", "--workers", "4")
    yield m
    stop_cleanly(m)


def test_cloned_workers_share_the_load_and_lose_nothing(workers_mount):
    status = _everything_at_once(workers_mount)
    assert status["transport"] == "/dev/fuse" and status["workers"] == 4
    busy = [name for name, count in status["requests"].items() if count]
    assert len(busy) >= 2, f"requests went to one worker only: {status['requests']}"
    res = workers_mount.run(client("nm-ctltest"), check=False)
    assert res.returncode == 0 and " 0 failed" in res.stdout, res.stdout + res.stderr


def test_default_is_one_worker_per_cpu(mount):
    assert mount.status()["workers"] == len(os.sched_getaffinity(0))


def test_io_uring_queues_serve_everything_at_once_and_lose_nothing(uring_mount):
    status = _everything_at_once(uring_mount)
    cpus = len(os.sched_getaffinity(0))
    assert status["transport"] == "io_uring" and status["workers"] == cpus + 1, status
    assert all(status["requests"][f"uring{c}"] > 0 for c in os.sched_getaffinity(0)), status["requests"]
    res = uring_mount.run(client("nm-ctltest"), check=False)
    assert res.returncode == 0 and " 0 failed" in res.stdout, res.stdout + res.stderr
    text = uring_mount.run(sys.executable, "-m", "nmfuse", "status", uring_mount.path).stdout
    assert f"requests: io_uring, {cpus + 1} worker(s)" in text
