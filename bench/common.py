"""What the benchmark scripts share: CPU pinning, starting and stopping a
mount, reading a tool's JSON summary line."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bench" / "bin"
CLIENTS = ROOT / "clients" / "bin"


def pinned(cpu):
    """A preexec_fn pinning the child to ``cpu`` (None: the scheduler's choice)."""
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON summary in:\n{text}")


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def wait_mounted(path: str, proc, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not mounted(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no server came up on {path}")
        time.sleep(0.05)


def start_nmfuse(path: str, cpu=None, *extra: str):
    """`nmfuse mount PATH EXTRA...`, pinned to ``cpu``, once it serves."""
    proc = subprocess.Popen([sys.executable, "-m", "nmfuse", "-q", "mount", path, *extra],
                            preexec_fn=pinned(cpu))
    wait_mounted(path, proc)
    time.sleep(0.3)
    return proc


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def report(results: dict, as_json: bool, width: int = 36) -> int:
    """Print the results: one JSON line if asked, then a row per figure;
    returns the exit status of a benchmark that ran."""
    if as_json:
        print(json.dumps(results))
    for key, row in results.items():
        if isinstance(row, dict):
            print(f"{key:{width}} " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def report_rounds(results: dict, as_json: bool, width: int = 22) -> None:
    """Print a run made of rounds: one JSON line if asked, the figures,
    then each round's list indented under them."""
    if as_json:
        print(json.dumps(results))
    for key, value in results.items():
        if key != "runs":
            print(f"{key:{width}} {value}")
    for key, value in results["runs"].items():
        print(f"  {key:{width - 2}} {value}")
