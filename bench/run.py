#!/usr/bin/env python3
"""nmfuse benchmarks, run by hand (`make bench`); never part of the tests.

Machines are shared and noisy, so every figure is printed beside a floor
measured in the same run, by the minimal C FUSE server (bench/fuse-floor.c)
served the same way.  Each section runs for each transport:

    dev_fuse   one reader of /dev/fuse       (mount --workers 1; fuse-floor)
    cloned     one reader per CPU, clones    (mount, the default; fuse-floor -w N)
    uring      FUSE over io_uring, a pinned  (mount --uring; fuse-floor -u)
               queue per CPU

* empty NIOCTXSYNC round trip (a null port against the floor's empty
  ioctl), the client on the server's CPU (same_cpu), on the other one
  (cross_cpu), and where the scheduler puts it (unpinned); /dev/fuse
  servers are pinned to CPU 0 for the first two, an io_uring server pins
  its own queues.  Both servers are mounted at once and measured in five
  alternating rounds of 20,000 syncs (the medians of the rounds' medians):
  one after the other, a drift of a shared host moved the cross-CPU ratio
  by 15%.  ``uring_unpinned_vs_dev_fuse_floor`` is the io_uring figure
  against the same-CPU /dev/fuse floor.
* pipe throughput, 64-byte frames, batches of 1, 32, 256 and a ring (1023)
  with the project's sender and receiver: pinned (daemon, sender and
  receiver on CPU 0) and unpinned, beside the ceiling the floor allows
  (batch / (2 x floor round trip): two syncs per batch), with the floor's
  same-CPU round trip when pinned and its cross-CPU one when unpinned
  (sender and receiver then run on different CPUs).  The clients run as
  netmap's pkt-gen does by default (nm-send -z, nm-recv -z): a buffer's
  frame is written once and the receiver counts slots, so what is measured
  is the device and not the clients' per-frame work, which the ceiling
  does not count.  ``..._batch_1023_framed`` is the same run with every
  frame built (seq and pattern) and every header read, for comparison.
  Unpinned rows also show a second ceiling, ``turns_ceiling_pps``: batch /
  the cycle of two processes on two CPUs taking turns through the floor
  server (bench/turns.c, ``turns_cycle_us``): each poll hands the turn
  over and waits, each side is woken by the other's notification, as a
  pipe's sender and receiver are when a batch fills the ring.  Unlike the
  first ceiling it counts the cross-CPU wake-ups between the two clients,
  which a round trip served on the caller's CPU (io_uring) never pays.
  The floor is mounted beside the daemon and each unpinned run follows a
  turns run; batch 1023 takes the medians of three such pairs.
  ``..._unpinned_batch_1023_busy`` runs the same clients busy-waiting
  (nm-send/nm-recv -w ioctl: NIOCTXSYNC/NIOCRXSYNC and sched_yield in a
  loop, as a netmap program that never sleeps), beside the floor's turns
  taken the same way (turns -b: polls that do not wait): no wake-ups, so
  what is left of a turn is its syncs and the frames' work.  Even then a
  ring-sized batch cannot overlap the two sides: the sender's hand-over,
  the receiver's sync that sees it, its release and the sender's sync that
  sees the room follow one another, each side's next sync starting at a
  random point of its loop, so a batch costs about three round trips plus
  the frames' work, and the first ceiling (two round trips) is out of reach
  for any server whose round trip is short: the floor's busy turns show
  how far.
* N clients on N pipes at once (N = 1, 2, 8, 64; bench/pipe-clients.c):
  aggregate frames/s and syncs/s, per-sync latency (median of the
  clients' medians, the worst client's 99th percentile and its ratio to
  that median), against the same clients doing the same empty syncs on the
  floor server, and the aggregate against one client's.

Prints a table and, with --json, one JSON object.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import BIN, CLIENTS, last_json, pinned, report, start_nmfuse, stop, wait_mounted

TRANSPORTS = {  # name: (nmfuse mount options, fuse-floor options)
    "dev_fuse": (["--workers", "1"], []),
    "cloned": (["--workers", str(os.cpu_count())], ["-w", str(os.cpu_count())]),
    "uring": (["--uring"], ["-u"]),
}
POOLS = ["--ring-num", "600", "--if-num", "300"]  # 64 pipes: 256 rings


def start_floor(path, cpu, options):
    proc = subprocess.Popen([str(BIN / "fuse-floor"), *options, path], stdout=subprocess.PIPE,
                            preexec_fn=pinned(cpu), text=True)
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"fuse-floor {options} did not start")
    wait_mounted(path, proc)
    return proc


def start_daemon(path, cpu, options):
    proc = start_nmfuse(path, cpu, *POOLS, *options)
    if "--uring" in options:
        status = json.loads(subprocess.run([sys.executable, "-m", "nmfuse", "status", "--json", path],
                                           capture_output=True, text=True, check=True).stdout)
        if status["transport"] != "io_uring":
            stop(proc)
            raise RuntimeError("nmfuse --uring fell back to /dev/fuse: is enable_uring Y?")
    return proc


def sync_rtt(device, cpu, port=None, n=100000):
    cmd = [str(BIN / "sync-rtt"), "-n", str(n), "-c", str(cpu), device] + ([port] if port else [])
    return last_json(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


PIPE_STYLES = {  # clients' options: pkt-gen's way (-z), every frame built and read, busy-waiting
    "": ["-z"], "framed": [], "busy": ["-z", "-w", "ioctl"]}


def pipe_pps(device, batch, count, name, cpu=None, style=""):
    """One pipe run, the clients run in one of PIPE_STYLES."""
    env = {**os.environ, "NETMAP_DEVICE": device}
    opts = PIPE_STYLES[style]
    recv = subprocess.Popen([str(CLIENTS / "nm-recv"), "-i", f"netmap:{name}}}1", "-n", str(count), *opts, "-j"],
                            env=env, stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpu))
    time.sleep(0.3)
    send = subprocess.run([str(CLIENTS / "nm-send"), "-i", f"netmap:{name}{{1", "-n", str(count),
                           "-s", "60", "-b", str(batch), *opts, "-j"], env=env, capture_output=True, text=True,
                          preexec_fn=pinned(cpu))
    out, _ = recv.communicate(timeout=600)
    if send.returncode or recv.returncode:
        raise RuntimeError(f"pipe run failed: {send.stderr}")
    return last_json(out)


def turns(floor_file, n=20000, busy=False):
    return last_json(subprocess.run([str(BIN / "turns"), "-n", str(n), *(["-b"] if busy else []), floor_file],
                                    capture_output=True, text=True, check=True).stdout)


def clients(device, n, seconds, floor=False):
    cmd = [str(BIN / "pipe-clients"), "-N", str(n), "-t", str(seconds)] + (["-f"] if floor else []) + [device]
    return last_json(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


PLACEMENTS = {"same_cpu": (0, 0), "cross_cpu": (0, 1), "unpinned": (None, -1)}  # (server, client)
RTT_ROUNDS, RTT_SYNCS = 5, 20000
PIPE_TURN_ROUNDS = 3


def rtt_section(tmp, transports):
    results = {}
    floors = {}
    for name in transports:
        nm_opts, floor_opts = TRANSPORTS[name]
        for label, (server_cpu, client_cpu) in PLACEMENTS.items():
            if name == "uring":
                server_cpu = None  # its queues pin themselves, one per CPU
            floor = start_floor(f"{tmp}/floor", server_cpu, floor_opts)
            nm = None
            try:
                nm = start_daemon(f"{tmp}/netmap", server_cpu, nm_opts)
                f, m = [], []
                for _ in range(RTT_ROUNDS):  # alternate, so that a drift of the host hits both
                    f.append(sync_rtt(f"{tmp}/floor", client_cpu, n=RTT_SYNCS)["median_us"])
                    m.append(sync_rtt(f"{tmp}/netmap", client_cpu, "null:rtt", n=RTT_SYNCS)["median_us"])
            finally:
                if nm:
                    stop(nm)
                stop(floor)
            f, m = statistics.median(f), statistics.median(m)
            floors[(name, label)] = f
            results[f"rtt_{name}_{label}"] = {"nmfuse_us": m, "floor_us": f, "ratio": round(m / f, 2)}
    if "uring" in transports and "dev_fuse" in transports:
        m = results["rtt_uring_unpinned"]["nmfuse_us"]
        f = floors[("dev_fuse", "same_cpu")]
        results["uring_unpinned_vs_dev_fuse_floor"] = {"nmfuse_us": m, "dev_fuse_same_cpu_floor_us": f,
                                                       "ratio": round(m / f, 2)}
    return results, floors


def pipe_section(tmp, transports, floors, packets):
    results = {}
    runs = ((1, 200_000, ""), (32, 2_000_000, ""), (256, packets, ""), (1023, packets, ""),
            (1023, packets, "framed"), (1023, packets, "busy"))
    for name in transports:
        nm_opts, floor_opts = TRANSPORTS[name]
        for label, cpu in (("pinned", 0), ("unpinned", None)):
            floor_rtt = floors.get((name, "same_cpu" if cpu is not None else "cross_cpu"))
            floor = start_floor(f"{tmp}/floor", None, floor_opts) if cpu is None else None
            nm = None
            try:
                nm = start_daemon(f"{tmp}/netmap", cpu, nm_opts)
                for batch, count, style in runs:
                    if style == "busy" and cpu is not None:
                        continue  # busy clients on the daemon's one CPU only measure the scheduler
                    suffix = f"_{style}" if style else ""
                    # the ring-sized unpinned runs are the turn-taking ones: alternate them with
                    # the floor's turns, so that both see the same host
                    rounds = PIPE_TURN_ROUNDS if floor and batch == 1023 else 1
                    pps, cycles = [], []
                    for i in range(rounds):
                        if floor:
                            cycles.append(turns(f"{tmp}/floor", busy=style == "busy")["median_us"])
                        r = pipe_pps(f"{tmp}/netmap", batch, count, f"b{batch}{label[0]}{suffix}{i}", cpu, style)
                        pps.append(r.get("pps", 0))
                    row = {"pps": statistics.median(pps)}
                    if floor_rtt:
                        ceiling = batch / (2 * floor_rtt) * 1e6
                        row.update(ceiling_pps=round(ceiling), ratio=round(row["pps"] / ceiling, 2))
                    if cycles:
                        cycle = statistics.median(cycles)
                        ceiling = batch / cycle * 1e6
                        row.update(turns_cycle_us=cycle, turns_ceiling_pps=round(ceiling),
                                   turns_ratio=round(row["pps"] / ceiling, 2))
                    results[f"pipe_{name}_{label}_batch_{batch}{suffix}"] = row
            finally:
                if nm:
                    stop(nm)
                if floor:
                    stop(floor)
    return results


def clients_section(tmp, transports, seconds):
    results = {}
    for name in transports:
        nm_opts, floor_opts = TRANSPORTS[name]
        floor = start_floor(f"{tmp}/floor", None, floor_opts)
        try:
            floor_runs = {n: clients(f"{tmp}/floor", n, seconds, floor=True) for n in (1, 2, 8, 64)}
        finally:
            stop(floor)
        nm = start_daemon(f"{tmp}/netmap", None, nm_opts)
        try:
            runs = {n: clients(f"{tmp}/netmap", n, seconds) for n in (1, 2, 8, 64)}
        finally:
            stop(nm)
        for n, r in runs.items():
            f = floor_runs[n]
            results[f"clients_{name}_{n}"] = {
                "mpps": round(r["pps"] / 1e6, 3), "syncs_per_s": r["syncs_per_s"],
                "floor_syncs_per_s": f["syncs_per_s"], "ratio": round(r["syncs_per_s"] / f["syncs_per_s"], 2),
                "vs_one_client": round(r["pps"] / runs[1]["pps"], 2), "median_us": r["median_us"],
                "worst_p99_us": r["worst_p99_us"], "worst_p99_over_median": r["worst_p99_over_median"],
                "floor_median_us": f["median_us"]}
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--packets", type=int, default=10_000_000, help="frames per pipe run of batch 256 and 1023")
    ap.add_argument("--seconds", type=float, default=3, help="duration of each N-clients run")
    ap.add_argument("--transport", action="append", choices=sorted(TRANSPORTS),
                    help="run only these (repeatable; default all)")
    ap.add_argument("--section", action="append", choices=["rtt", "pipe", "clients"],
                    help="run only these (repeatable; default all; pipe ceilings need rtt)")
    args = ap.parse_args()
    transports = args.transport or list(TRANSPORTS)
    sections = args.section or ["rtt", "pipe", "clients"]
    results = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        floors = {}
        if "rtt" in sections:
            rtt, floors = rtt_section(tmp, transports)
            results.update(rtt)
        if "pipe" in sections:
            results.update(pipe_section(tmp, transports, floors, args.packets))
        if "clients" in sections:
            results.update(clients_section(tmp, transports, args.seconds))
    return report(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
