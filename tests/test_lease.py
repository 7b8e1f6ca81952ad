"""The lease of a mount path (nmfuse.lease) and the janitor's file work
(nmfuse.janitor) without FUSE: who holds a path, what a killed holder
leaves, which leftovers are removed and which are never touched."""

import os
import signal
import stat
import subprocess
import sys

import pytest

from nmfuse import janitor
from nmfuse.lease import Lease, LeaseHeld, Record, dead_record, holder, lease_path

# A process that takes the lease, says so, and waits to be killed.
HOLD = """
import sys, time
from pathlib import Path
from nmfuse.lease import Lease
lease = Lease.acquire(sys.argv[1], Path(sys.argv[2]))
lease.write(placeholder=True)
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    return d


def _holder_process(path, run_dir):
    p = subprocess.Popen([sys.executable, "-c", HOLD, path, str(run_dir)], stdout=subprocess.PIPE, text=True,
                         cwd=os.getcwd())
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_live_holder_refuses_naming_its_pid(tmp_path, run_dir):
    path = str(tmp_path / "netmap")
    p = _holder_process(path, run_dir)
    try:
        assert holder(path, run_dir) == p.pid
        with pytest.raises(LeaseHeld) as e:
            Lease.acquire(path, run_dir)
        assert e.value.pid == p.pid and f"pid {p.pid}" in str(e.value)
        assert dead_record(path, run_dir) is None, "a live holder's record is not a dead one's"
    finally:
        p.kill()
        p.wait()


def test_a_killed_holder_leaves_a_record_the_next_one_takes_over(tmp_path, run_dir):
    path = str(tmp_path / "netmap")
    p = _holder_process(path, run_dir)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert holder(path, run_dir) is None
    assert dead_record(path, run_dir) == Record(p.pid, path, placeholder=True)
    with Lease.acquire(path, run_dir) as lease:
        assert lease.previous == Record(p.pid, path, placeholder=True)
        assert holder(path, run_dir) == os.getpid()
    assert not lease_path(path, run_dir).exists(), "a clean release removes the file"
    assert holder(path, run_dir) is None


def test_one_process_cannot_hold_a_lease_twice(tmp_path, run_dir):
    path = str(tmp_path / "netmap")
    with Lease.acquire(path, run_dir), pytest.raises(LeaseHeld):
        Lease.acquire(path, run_dir)
    Lease.acquire(path, run_dir).release()


@pytest.mark.parametrize("text", ["", "{", "[]", '{"pid": "x", "path": "/p"}', '{"path": "/p"}'])
def test_unreadable_records_are_no_records(text):
    assert Record.parse(text) is None


def test_the_placeholder_goes_only_when_it_is_still_an_empty_file(tmp_path, run_dir):
    path = tmp_path / "netmap"
    record = Record(12345, str(path), placeholder=True)
    path.touch()
    assert janitor.clean(str(path), record, run_dir) == [f"removed the placeholder {path} left by pid 12345"]
    assert not path.exists()
    path.write_bytes(b"data")  # something else wrote there since: not ours any more
    assert janitor.clean(str(path), record, run_dir) == []
    assert path.exists()
    path.unlink()
    os.mknod(path, stat.S_IFIFO | 0o600)  # e.g. a real device node created meanwhile
    assert janitor.clean(str(path), record, run_dir) == []
    assert path.exists()
    path.unlink()
    path.touch()
    assert janitor.clean(str(path), Record(1, str(path), placeholder=False), run_dir) == [], \
        "a file the dead daemon did not create is not removed"
    assert janitor.clean(str(path), None, run_dir) == []
    assert path.exists()


def test_stale_sockets_go_live_ones_stay(tmp_path, run_dir):
    path = str(tmp_path / "netmap")
    dead = subprocess.Popen(["true"])
    dead.wait()
    own = run_dir / f"{path.strip('/').replace('/', '-')}.sock"
    stale_run = run_dir / f"dev-netmap.run{dead.pid}.sock"
    live_run = run_dir / f"dev-netmap.run{os.getpid()}.sock"
    other = run_dir / "dev-other.sock"
    for f in (own, stale_run, live_run, other):
        f.touch()  # the sweep goes by name and pid, never by connecting (a daemon may be binding)
    done = janitor.clean(path, None, run_dir)
    assert sorted(done) == sorted(f"removed the stale status socket {f}" for f in (own, stale_run))
    assert live_run.exists() and other.exists(), "a live daemon's socket, another path's socket"


def test_probe_of_an_ordinary_path_is_not_dead(tmp_path):
    assert janitor.probe(str(tmp_path)) is None
    assert janitor.probe(str(tmp_path / "missing")) == 2  # ENOENT: not a dead connection
    assert not janitor.dead_mount(str(tmp_path))
