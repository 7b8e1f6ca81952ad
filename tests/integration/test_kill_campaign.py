"""Issue 15: a kill campaign.  Clients (clients/nm-churn.c) are SIGKILLed in
the middle of register, mmap, sync and poll, hundreds of times, beside
others that keep running; then every pool is back to its starting count
(`nmfuse status --json`) and a new client works.  The daemon is SIGKILLed
mid-traffic several times, each time followed by a new `nmfuse mount`
taking over and a working client.  At the end SIGTERM with clients attached
unmounts, and nothing is left at the path.

Short by default (>= 200 client kills, >= 3 daemon kills);
NMFUSE_KILL_CAMPAIGN=long runs >= 2000 and >= 50.  NMFUSE_KILL_SEED
replays a campaign (the seed is printed).
"""

import os
import random
import signal
import subprocess
import sys
import time
from typing import ClassVar

import pytest

from nmfuse.lease import holder
from tests.integration.conftest import Mount, _mounted, client

LONG = os.environ.get("NMFUSE_KILL_CAMPAIGN", "") == "long"
CLIENT_KILLS = 2000 if LONG else 200
DAEMON_KILLS = 50 if LONG else 3
MODES = ("register", "mmap", "sync", "poll")
POOL_ARGS = ("--buf-num", "32768")  # room for a dozen pipe pairs at once


class Churn:
    """One nm-churn process, started and waited for until it says ready."""

    started: ClassVar[list[subprocess.Popen]] = []  # for the clean-up after a failure

    def __init__(self, m: Mount, name: str, mode: str, rounds: int = 0):
        self.mode = mode
        self.proc = subprocess.Popen([client("nm-churn"), "-i", name, "-m", mode, "-n", str(rounds)], env=m.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        Churn.started.append(self.proc)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"nm-churn -m {mode} did not start: {line!r} {err}\n{m.output()}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL
        self.close()

    def close(self) -> None:
        """Close our ends of its pipes (thousands of clients come and go)."""
        self.proc.stdout.close()
        self.proc.stderr.close()
        Churn.started.remove(self.proc)


def used(m: Mount) -> dict:
    return {name: pool["used"] for name, pool in m.status()["pools"].items()}


def settled(m: Mount, baseline: dict, timeout: float = 30) -> dict:
    """The status once no file is open and the pools are back (or after
    ``timeout``: the assertion then shows what is not back)."""
    deadline = time.monotonic() + timeout
    while True:
        status = m.status()
        back = {name: pool["used"] for name, pool in status["pools"].items()} == baseline
        if (back and status["open_files"] == 0 and not status["ports"]) or time.monotonic() > deadline:
            return status


def assert_back(m: Mount, baseline: dict) -> None:
    status = settled(m, baseline)
    assert status["open_files"] == 0 and not status["ports"], (status, m.output())
    assert {name: pool["used"] for name, pool in status["pools"].items()} == baseline, (status, m.output())


def working_client(m: Mount, tag: str) -> None:
    """A new client completes rounds of every kind."""
    for mode in MODES:
        m.run(client("nm-churn"), "-i", f"{tag}{mode[0]}", "-m", mode, "-n", "50")


@pytest.fixture
def leftovers(tmp_path):
    """Whatever a failed campaign leaves (clients, a daemon, a dead mount) goes."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs + Churn.started:
        if p.poll() is None:
            p.kill()
            p.wait()
    Churn.started.clear()
    subprocess.run([sys.executable, "-m", "nmfuse", "umount", "--dead", str(tmp_path / "netmap")],
                   capture_output=True, check=False)


def test_kill_campaign(tmp_path, leftovers):
    seed = int(os.environ.get("NMFUSE_KILL_SEED", time.time_ns() % 10**9))
    print(f"kill campaign: seed {seed}, {CLIENT_KILLS} client kills, {DAEMON_KILLS} daemon kills")
    rng = random.Random(seed)
    path = str(tmp_path / "netmap")
    m = Mount(path, *POOL_ARGS)
    leftovers.append(m.proc)
    baseline = used(m)
    killed = dict.fromkeys(MODES, 0)

    # 1. Clients killed mid-call, beside clients that keep running.
    neighbours = [Churn(m, f"nb{i}", mode) for i, mode in enumerate(("sync", "poll"))]
    for i in range(CLIENT_KILLS):
        mode = MODES[i % len(MODES)]
        victim = Churn(m, f"v{i % 8}", mode)
        time.sleep(rng.random() * 0.004)  # anywhere in its loop, i.e. inside its one kind of call
        victim.kill()
        killed[mode] += 1
        if i % 50 == 49:  # the neighbours die too, mid-call, and new ones take their place
            for n in neighbours:
                n.kill()
                killed[n.mode] += 1
            neighbours = [Churn(m, f"nb{i}x{j}", mode) for j, mode in enumerate(("sync", "poll"))]
    for n in neighbours:
        n.kill()
        killed[n.mode] += 1
    assert sum(killed.values()) >= CLIENT_KILLS and min(killed.values()) >= CLIENT_KILLS // len(MODES)
    assert_back(m, baseline)
    working_client(m, "w")
    assert_back(m, baseline)

    # 2. The daemon killed mid-traffic, then a new mount takes over at once.
    for k in range(DAEMON_KILLS):
        busy = [Churn(m, f"d{k}{mode[0]}", mode) for mode in MODES]
        time.sleep(rng.random() * 0.05)
        assert m.stop(signal.SIGKILL) == -signal.SIGKILL
        for c in busy:
            assert c.proc.wait(timeout=30) != 0, f"nm-churn -m {c.mode} gets an error, no hang"
            c.close()
        m.log.close()
        m = Mount(path, *POOL_ARGS)
        leftovers.append(m.proc)
        assert "detached the dead nmfuse mount" in m.output()
        assert used(m) == baseline
        working_client(m, f"t{k}")
        assert_back(m, baseline)

    # 3. SIGTERM with clients attached: the daemon unmounts and exits 0, the
    #    clients get errors; nothing is left.
    attached = [Churn(m, f"s{mode[0]}", mode) for mode in MODES]
    assert m.stop(signal.SIGTERM) == 0, m.output()  # Mount.stop: a bounded wait, then SIGKILL
    for c in attached:
        assert c.proc.wait(timeout=30) != 0
        c.close()
    m.log.close()
    assert not _mounted(path) and not os.path.lexists(path) and holder(path) is None
