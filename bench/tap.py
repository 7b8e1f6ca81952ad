#!/usr/bin/env python3
"""TAP throughput: a netmap sender through nmfuse into the kernel, beside
a plain program writing the same frames to a TAP fd, in the same run.

* nmfuse: ``nmfuse mount --tap nmbench0`` on a private path; the project's
  nm-send fills the TX ring of ``netmap:nmbench0`` (60-byte test frames,
  a ring-sized batch per poll) and the daemon writes them into the TAP.
  The kernel's counter of frames received on nmbench0 must grow by exactly
  the frames sent (checked).
* floor: bench/bin/tap-floor builds the same frames and write()s each one
  into its own TAP, no netmap in between: the physical limit of this path.
  Printed twice: frames built in one hot buffer (the limit proper), and in
  ring-sized set of buffers laid out as a netmap ring's (``ring layout``),
  to show what the memory layout alone costs.

The runs alternate (floor, floor with the ring layout, nmfuse) for
``--rounds`` rounds and the medians are compared, because these machines
are shared and noisy.  By default every process runs on one CPU (the
daemon, the sender and the floor: the same-CPU case); ``--cpu none`` lets
the scheduler place them.  Prints a table and, with --json, one JSON
object.  Needs root, /dev/fuse and /dev/net/tun; ``make bench-bins
clients`` first.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from common import BIN, CLIENTS, last_json, pinned, report_rounds, start_nmfuse, stop

TAP, FLOOR_TAP = "nmbench0", "nmfloor0"


def _rx_packets(name: str) -> int:
    with open(f"/sys/class/net/{name}/statistics/rx_packets") as f:
        return int(f.read())


def floor(frames: int, size: int, cpu, buffers: int = 1) -> float:
    out = subprocess.run([str(BIN / "tap-floor"), "-i", FLOOR_TAP, "-n", str(frames), "-s", str(size),
                          "-B", str(buffers), "-j"], capture_output=True, text=True, check=True,
                         preexec_fn=pinned(cpu)).stdout
    r = last_json(out)
    if r["kernel_rx"] != frames:
        raise RuntimeError(f"tap-floor: the kernel counted {r['kernel_rx']} of {frames}")
    return r["pps"]


def through_nmfuse(device: str, frames: int, size: int, cpu) -> float:
    before = _rx_packets(TAP)
    out = subprocess.run([str(CLIENTS / "nm-send"), "-i", f"netmap:{TAP}", "-n", str(frames), "-s", str(size),
                          "-j"], env={**os.environ, "NETMAP_DEVICE": device}, capture_output=True, text=True,
                         check=True, preexec_fn=pinned(cpu)).stdout
    counted = _rx_packets(TAP) - before
    if counted != frames:
        raise RuntimeError(f"nm-send: the kernel counted {counted} of {frames} frames on {TAP}")
    return last_json(out)["pps"]


def measure(frames: int = 2_000_000, size: int = 60, rounds: int = 5, cpu=1) -> dict:
    """Mount a private device with a TAP and compare; returns the medians."""
    runs: dict[str, list[float]] = {"floor": [], "floor_ring_layout": [], "nmfuse": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/netmap"
        proc = start_nmfuse(path, cpu, "--tap", TAP)
        try:
            for _ in range(rounds):
                runs["floor"].append(floor(frames, size, cpu))
                runs["floor_ring_layout"].append(floor(frames, size, cpu, buffers=1023))
                runs["nmfuse"].append(through_nmfuse(path, frames, size, cpu))
        finally:
            stop(proc)
        if os.path.exists(f"/sys/class/net/{TAP}"):
            raise RuntimeError(f"{TAP} outlived the daemon")
    med = {k: round(statistics.median(v)) for k, v in runs.items()}
    return {"frame_bytes": size, "frames": frames, "rounds": rounds,
            "placement": f"all on CPU {cpu}" if cpu is not None else "scheduler's choice",
            "nmfuse_pps": med["nmfuse"], "floor_pps": med["floor"],
            "floor_ring_layout_pps": med["floor_ring_layout"],
            "ratio": round(med["nmfuse"] / med["floor"], 2),
            "ratio_to_ring_layout": round(med["nmfuse"] / med["floor_ring_layout"], 2),
            "runs": {k: [round(x) for x in v] for k, v in runs.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2_000_000, help="frames per run")
    ap.add_argument("--size", type=int, default=60, help="frame bytes (60: a minimal Ethernet frame)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cpu", default="1", help="CPU for every process, or 'none' (default 1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for tool in (CLIENTS / "nm-send", BIN / "tap-floor"):
        if not tool.exists():
            print(f"{tool} is not built: run `make clients bench-bins`", file=sys.stderr)
            return 1
    cpu = None if args.cpu == "none" else int(args.cpu)
    results = measure(args.frames, args.size, args.rounds, cpu)
    report_rounds(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
