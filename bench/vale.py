#!/usr/bin/env python3
"""VALE throughput beside pipe throughput, measured in the same run.

Two ports of one switch, ``vale0:a`` -> ``vale0:b``, and then a pipe,
``NAME{1`` -> ``NAME}1``, each driven by the project's nm-send and nm-recv
with 64-byte frames (60 bytes on the wire before the FCS, as pkt-gen's
default) and the same batch per sync, on the same mount.  The clients run
as pkt-gen does by default (-z: a buffer's frame is written once, the
receiver counts slots); --framed builds every frame and reads every header.

A switch copies every frame into the receiver's ring and drops what does
not fit (as netmap does), while a pipe hands buffers over and never drops.
So the receiver runs without a frame count and stops after an idle second:
the VALE figure is the frames the receiver got per second (first to last),
and the sender's rate and the loss are printed beside it.  The pipe is the
floor the switch is compared with: same daemon, same syncs, no copy.

Usable alone (it mounts a private device unless --device names a served
one) or from bench/run.py through ``measure(device, ...)``; prints a table
and, with --json, one JSON object.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import CLIENTS, last_json, pinned, report, start_nmfuse, stop

FRAME = 60


def flow(device: str, src: str, dst: str, count: int, batch: int, cpus=(None, None), framed=False) -> dict:
    """Send ``count`` frames from port ``src`` to port ``dst``; ``framed``:
    every frame built and read (else pkt-gen's way: nm-send -z, nm-recv -z).

    Returns the receiver's rate (pps), the sender's, and the counts."""
    env = {**os.environ, "NETMAP_DEVICE": device}
    style = [] if framed else ["-z"]
    recv = subprocess.Popen([str(CLIENTS / "nm-recv"), "-i", f"netmap:{dst}", "-T", "1", *style, "-j"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=pinned(cpus[1]))
    time.sleep(0.3)
    send = subprocess.run([str(CLIENTS / "nm-send"), "-i", f"netmap:{src}", "-n", str(count), "-s", str(FRAME),
                           "-b", str(batch), *style, "-j"], env=env, capture_output=True, text=True,
                          preexec_fn=pinned(cpus[0]))
    out, err = recv.communicate(timeout=600)
    if send.returncode:
        recv.kill()
        raise RuntimeError(f"nm-send {src} failed: {send.stderr}")
    r, s = last_json(out), last_json(send.stdout)
    return {"pps": round(r["pps"]), "sender_pps": round(s["pps"]), "sent": s["pkts"], "received": r["pkts"],
            "loss": round(1 - r["pkts"] / max(s["pkts"], 1), 4)}


def measure(device: str, batches=(256, 1023), count: int = 5_000_000, cpus=(None, None), framed=False) -> dict:
    """VALE and pipe throughput for each batch size, on one device."""
    results = {}
    for batch in batches:
        vale = flow(device, f"vale{batch}:a", f"vale{batch}:b", count, batch, cpus, framed)
        pipe = flow(device, f"bench{batch}{{1", f"bench{batch}}}1", count, batch, cpus, framed)
        results[f"batch_{batch}"] = {"vale_pps": vale["pps"], "vale_sender_pps": vale["sender_pps"],
                                     "vale_loss": vale["loss"], "pipe_pps": pipe["pps"],
                                     "ratio": round(vale["pps"] / max(pipe["pps"], 1), 2)}
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", help="a device nmfuse already serves (default: mount a private one)")
    ap.add_argument("--packets", type=int, default=5_000_000, help="frames per run")
    ap.add_argument("--batch", type=int, action="append", help="frames per sync (repeatable; default 256, 1023)")
    ap.add_argument("--daemon-cpu", type=int, help="pin the daemon (private mount only)")
    ap.add_argument("--uring", action="store_true", help="serve through FUSE over io_uring (private mount only)")
    ap.add_argument("--workers", type=int,
                    help="cloned /dev/fuse readers (private mount only; default one per CPU, 1: a single reader)")
    ap.add_argument("--sender-cpu", type=int)
    ap.add_argument("--receiver-cpu", type=int)
    ap.add_argument("--framed", action="store_true",
                    help="build every frame and read every header (default: pkt-gen's way, -z)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for tool in ("nm-send", "nm-recv"):
        if not (CLIENTS / tool).exists():
            print(f"{CLIENTS / tool} is not built: run `make clients`", file=sys.stderr)
            return 1
    batches = tuple(args.batch or (256, 1023))
    cpus = (args.sender_cpu, args.receiver_cpu)
    transport = "io_uring" if args.uring else f"/dev/fuse x {args.workers or os.cpu_count()}"
    results = {"cpus": os.cpu_count(), "frame_bytes": FRAME, "clients": "framed" if args.framed else "pkt-gen",
               "transport": "served" if args.device else transport}
    if args.device:
        results.update(measure(args.device, batches, args.packets, cpus, args.framed))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/netmap"
            options = (["--uring"] if args.uring else []) + (["--workers", str(args.workers)] if args.workers else [])
            proc = start_nmfuse(path, args.daemon_cpu, *options)
            try:
                results.update(measure(path, batches, args.packets, cpus, args.framed))
            finally:
                stop(proc)
    return report(results, args.json, 12)


if __name__ == "__main__":
    sys.exit(main())
