#!/usr/bin/env python3
"""nmfuse benchmarks, run by hand (`make bench`); never part of the tests.

Machines are shared and noisy, so every figure is printed beside a floor
measured in the same run:

* empty NIOCTXSYNC round trip: nmfuse (a null port) against a minimal C
  FUSE server answering the same ioctl (bench/fuse-floor.c), with client
  and server on the same CPU and on different CPUs;
* pipe throughput, 64-byte frames, batches of 1, 32, 256 and a ring, with
  the project's sender and receiver, beside the ceiling the FUSE floor
  allows for that batch (batch / floor round trip, two syncs per batch
  shared by two processes); and ring-sized batches again with the daemon,
  the sender and the receiver on one CPU (no cross-CPU wake-ups), beside
  the 10 Mpps target.

Prints a table and, with --json, one JSON object.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from common import BIN, CLIENTS, pinned, start_nmfuse, stop, wait_mounted


def start_floor(path, cpu):
    proc = subprocess.Popen([str(BIN / "fuse-floor"), path], stdout=subprocess.PIPE,
                            preexec_fn=pinned(cpu), text=True)
    proc.stdout.readline()  # "ready"
    wait_mounted(path, proc)
    return proc


def sync_rtt(device, cpu, port=None, n=100000):
    cmd = [str(BIN / "sync-rtt"), "-n", str(n), "-c", str(cpu), device] + ([port] if port else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def pipe_pps(device, batch, count, name, cpu=None):
    env = {**os.environ, "NETMAP_DEVICE": device}
    recv = subprocess.Popen([str(CLIENTS / "nm-recv"), "-i", f"netmap:{name}}}1", "-n", str(count), "-j"],
                            env=env, stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpu))
    time.sleep(0.3)
    send = subprocess.run([str(CLIENTS / "nm-send"), "-i", f"netmap:{name}{{1", "-n", str(count),
                           "-s", "60", "-b", str(batch), "-j"], env=env, capture_output=True, text=True,
                          preexec_fn=pinned(cpu))
    out, _ = recv.communicate(timeout=600)
    if send.returncode or recv.returncode:
        raise RuntimeError(f"pipe run failed: {send.stderr}")
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--packets", type=int, default=10_000_000, help="frames per ring-sized pipe run")
    args = ap.parse_args()
    results = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        floor_path, nm_path = f"{tmp}/floor", f"{tmp}/netmap"
        for label, server_cpu, client_cpu in (("same_cpu", 0, 0), ("cross_cpu", 0, 1)):
            floor = start_floor(floor_path, server_cpu)
            try:
                f = sync_rtt(floor_path, client_cpu)
            finally:
                stop(floor)
            nm = start_nmfuse(nm_path, server_cpu)
            try:
                m = sync_rtt(nm_path, client_cpu, "null:rtt")
            finally:
                stop(nm)
            results[f"txsync_rtt_{label}"] = {"nmfuse_us": m["median_us"], "floor_us": f["median_us"],
                                              "ratio": round(m["median_us"] / f["median_us"], 2)}
        nm = start_nmfuse(nm_path, None)
        try:
            floor_rtt = results["txsync_rtt_cross_cpu"]["floor_us"]
            for batch, count in ((1, 200_000), (32, 2_000_000), (256, args.packets), (1023, args.packets)):
                r = pipe_pps(nm_path, batch, count, f"bench{batch}")
                ceiling = batch / (2 * floor_rtt) * 1e6
                results[f"pipe_batch_{batch}"] = {"pps": r.get("pps"), "floor_ceiling_pps": round(ceiling),
                                                  "ratio": round(r.get("pps", 0) / ceiling, 2)}
        finally:
            stop(nm)
        # the same, with daemon, sender and receiver on one CPU: no cross-CPU wake-ups
        nm = start_nmfuse(nm_path, 0)
        try:
            r = pipe_pps(nm_path, 1023, args.packets, "bench1cpu", cpu=0)
            results["pipe_batch_1023_one_cpu"] = {"pps": r.get("pps"), "target_pps": 10_000_000,
                                                  "ratio": round(r.get("pps", 0) / 10_000_000, 2)}
        finally:
            stop(nm)
    if args.json:
        print(json.dumps(results))
    for key, row in results.items():
        if isinstance(row, dict):
            print(f"{key:24} " + "  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
