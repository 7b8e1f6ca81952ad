#!/usr/bin/env python3
"""The sync-kloop pipe against the ioctl-sync pipe, run by hand.

One nmfuse mount (the default transport, or --uring); in the same run:

    floor      nm-send | nm-recv over a pipe, batch of a ring (1023): the
               application syncs with NIOCTXSYNC/NIOCRXSYNC (poll), one
               FUSE round trip per batch
    busy-wait  nm-kloop: both pipe ends in CSB mode, each synced by a
               sync-kloop with sleep_us 0; no sync ioctl at all
    eventfds   nm-kloop -e: the same, the loops sleeping on ioeventfds and
               notifying through irqfds

Prints frames per second of each and the kloop figures as ratios to the
floor; --json prints one JSON object.  Never part of the tests.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CLIENTS, last_json, start_nmfuse, stop
from bench.run import pipe_pps


def kloop_pps(device: str, name: str, count: int, *extra: str) -> float:
    env = {**os.environ, "NETMAP_DEVICE": device}
    res = subprocess.run([str(CLIENTS / "nm-kloop"), "-p", name, "-n", str(count), "-j", *extra],
                         env=env, capture_output=True, text=True, timeout=900, check=False)
    summary = last_json(res.stdout)
    if res.returncode or not summary["ok"]:
        raise RuntimeError(f"nm-kloop {' '.join(extra)} failed: {res.stdout}{res.stderr}")
    return summary["fps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2_000_000)
    ap.add_argument("--uring", action="store_true", help="mount with --uring")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "netmap")
        proc = start_nmfuse(path, None, "--buf-num", "32768", *(["--uring"] if args.uring else []))
        try:
            floor = pipe_pps(path, 1023, args.frames, "bkf")["pps"]
            busy = kloop_pps(path, "bkb", args.frames)
            event = kloop_pps(path, "bke", args.frames, "-e")
        finally:
            stop(proc)
    result = {"transport": "io_uring" if args.uring else "cloned /dev/fuse", "frames": args.frames,
              "ioctl_sync_pipe_fps": round(floor), "kloop_busy_wait_fps": round(busy),
              "kloop_eventfds_fps": round(event), "busy_wait_vs_floor": round(busy / floor, 2),
              "eventfds_vs_floor": round(event / floor, 2)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'pipe, 60-byte frames (' + result['transport'] + ')':44} {'frames/s':>12} {'vs floor':>9}")
    print(f"{'ioctl syncs, batch 1023 (floor)':44} {floor:12,.0f} {1:9.2f}")
    print(f"{'sync-kloop, busy-wait':44} {busy:12,.0f} {busy / floor:9.2f}")
    print(f"{'sync-kloop, eventfds':44} {event:12,.0f} {event / floor:9.2f}")


if __name__ == "__main__":
    main()
