#!/usr/bin/env python3
"""Time the empty-ioctl round trip through a ``Session`` (not a test).

    python3 tests/dev/ioctl_rtt.py [--cpu 0] [-n 100000]

Serves a device whose ioctl answers 0 with no data, in a child process
pinned to ``--cpu``; the client issues ``-n`` argument-less ioctls pinned to
the same CPU and reports the median of per-batch averages in µs.  The
client is the project's C timer (bench/bin/sync-rtt) when built, so that
only the server side is Python; otherwise a Python loop (which adds its
own cost).  When bench/bin/fuse-floor is built, the same client is timed
against that minimal C FUSE server in the same run, for the ratio.
Needs root and /dev/fuse.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYNC_RTT = ROOT / "bench" / "bin" / "sync-rtt"
FUSE_FLOOR = ROOT / "bench" / "bin" / "fuse-floor"
EMPTY_IOCTL = 0x6994  # _IO('i', 0x94): no data in either direction


class NullDevice:
    def open(self, caller, flags):
        return 1

    def release(self, fh):
        pass

    def ioctl(self, caller, fh, cmd, arg, data, out_size):
        return 0, b""

    def poll(self, caller, fh, events, kh):
        return 0


def serve(path: str) -> None:
    from nmfuse.dev import FuseChannel, Session

    backing = os.memfd_create("rtt", os.MFD_CLOEXEC)
    os.ftruncate(backing, 1 << 20)
    session = Session(FuseChannel(), NullDevice(), backing_fd=backing)
    session.start(path)

    def stop_serving(signum, frame):
        raise SystemExit(0)  # interrupts the blocked read; the finally below unmounts

    signal.signal(signal.SIGTERM, stop_serving)
    print("ready", flush=True)
    try:
        session.serve()
    finally:
        session.shutdown()


def wait_mounted(path: str, timeout=20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/self/mountinfo") as f:
            if any(line.split()[4] == path for line in f):
                return
        time.sleep(0.02)
    raise RuntimeError(f"{path} did not get mounted")


def python_client(path: str, n: int, cpu: int) -> float:
    import fcntl

    os.sched_setaffinity(0, {cpu})
    fd = os.open(path, os.O_RDWR)
    try:
        batch, averages = 1000, []
        for _ in range(batch):
            fcntl.ioctl(fd, EMPTY_IOCTL)
        for _ in range(n // batch):
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                fcntl.ioctl(fd, EMPTY_IOCTL)
            averages.append((time.perf_counter_ns() - t0) / batch / 1000)
        return statistics.median(averages)
    finally:
        os.close(fd)


def time_client(path: str, n: int, cpu: int) -> tuple[float, str]:
    if SYNC_RTT.exists():
        run = subprocess.run([str(SYNC_RTT), "-n", str(n), "-c", str(cpu), path],
                             capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"sync-rtt failed: {run.stderr.strip()}")
        return json.loads(run.stdout.strip().splitlines()[-1])["median_us"], "C client"
    return python_client(path, n, cpu), "Python client"


def run_server(cmd: list[str], path: str, cpu: int) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    proc.stdout.readline()
    wait_mounted(path)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", type=int, default=0, help="CPU for server and client (0)")
    ap.add_argument("-n", type=int, default=100_000, help="ioctls to time (100000)")
    ap.add_argument("--serve", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        path = f"{tmp}/session"
        proc = run_server([sys.executable, __file__, "--serve", path], path, args.cpu)
        try:
            results["session"], client = time_client(path, args.n, args.cpu)
        finally:
            stop(proc)
        if FUSE_FLOOR.exists():
            path = f"{tmp}/floor"
            proc = run_server([str(FUSE_FLOOR), path], path, args.cpu)
            try:
                results["c_floor"], _ = time_client(path, args.n, args.cpu)
            finally:
                stop(proc)
    line = "  ".join(f"{k}={v:.2f}us" for k, v in results.items())
    if "c_floor" in results:
        line += f"  ratio={results['session'] / results['c_floor']:.2f}"
    print(f"{args.n} empty ioctls, server and {client} on CPU {args.cpu}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
