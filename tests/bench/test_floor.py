"""The benchmark floor's turn-taking (bench/fuse-floor.c, bench/turns.c):
the unpinned pipe ceiling is only as good as the floor doing what a
pipe's two ends do when a batch fills the ring."""

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import needs

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("bench/bin/fuse-floor", "bench/bin/turns")

pytestmark = [pytest.mark.needs_fuse, needs("root", "fuse")]


@pytest.fixture(scope="module")
def floor(tmp_path_factory):
    subprocess.run(["make", "-s", "-C", str(ROOT), *TOOLS], check=True, capture_output=True)
    path = str(tmp_path_factory.mktemp("floor") / "file")
    proc = subprocess.Popen([str(ROOT / TOOLS[0]), path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield path
    proc.terminate()
    assert proc.wait(timeout=20) == 0


def _ready(fd, events=select.POLLIN, timeout_ms=0):
    p = select.poll()
    p.register(fd, events)
    return [ev for _, ev in p.poll(timeout_ms)]


def test_two_files_take_turns_and_wake_each_other(floor):
    a = os.open(floor, os.O_RDWR)
    b = os.open(floor, os.O_RDWR)
    try:
        assert _ready(b, timeout_ms=50) == [], "the second file starts without the turn"
        assert _ready(a) == [select.POLLIN], "the first file holds it"
        assert _ready(a, timeout_ms=50) == [], "its next poll hands it over and waits"
        assert _ready(b) == [select.POLLIN]
        assert _ready(b, events=select.POLLOUT) == [select.POLLOUT], "POLLOUT alone is answered at once"
        # b hands the turn back while a sleeps in poll: a is woken by the notification
        started = time.monotonic()
        waiter = select.poll()
        waiter.register(a, select.POLLIN)
        pid = os.fork()
        if pid == 0:
            time.sleep(0.2)
            _ready(b, timeout_ms=0)          # b's poll hands the turn to a
            os._exit(0)
        events = waiter.poll(5000)
        os.waitpid(pid, 0)
        assert events == [(a, select.POLLIN)] and time.monotonic() - started < 4
    finally:
        os.close(a)
        os.close(b)


def test_turns_times_cycles_through_the_floor(floor):
    out = subprocess.run([str(ROOT / TOOLS[1]), "-n", "2000", floor], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["cycles"] == 2000 and 0 < got["p10_us"] <= got["median_us"] <= got["p90_us"]
