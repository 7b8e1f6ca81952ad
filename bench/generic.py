#!/usr/bin/env python3
"""Generic adapter throughput on a veth pair: netmap through nmfuse beside
plain C AF_PACKET programs, in the same run, 64- and 1500-byte frames.

* TX: the project's nm-send on ``netmap:A`` (batch -b per sync) against
  bench/bin/packet-floor -t, which builds the same frames and sends each
  batch of the same size with one sendmmsg on a PACKET_QDISC_BYPASS
  socket, as nmfuse's txsync does.  veth B's receive counter must grow by
  exactly the frames sent (checked for both).
* RX: packet-floor -t floods B -> A; on A either nm-recv on ``netmap:A``
  (through nmfuse's TPACKET_V3 rings) or packet-floor -r (a TPACKET_V3
  ring of the same block size, frame size and block timeout, each frame
  copied out once).  Frames per second from the first to the last frame
  received.  On a veth the receive path (the AF_PACKET taps, tc ingress,
  the stack) runs in the softirq of the sending CPU: with 64-byte frames
  that CPU is the limit (busy all the time, while the receiving programs
  leave most of the other idle), so the figure is the sender's pace with
  each receiver's sockets in place, and what a receiver adds to every
  frame's way in (a socket filter, a fanout group, nmfuse's tcx ingress
  drop against the stack's own drop for the floor) shows in the ratio.

Runs alternate floor / nmfuse for ``--rounds`` rounds; medians and their
ratios are printed (a table; with --json one JSON object).  Needs root and
/dev/fuse; ``make clients bench-bins`` first.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import BIN, CLIENTS, ROOT, last_json, pinned, report_rounds, start_nmfuse, stop

# the daemon is this tree's nmfuse, whatever is installed
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

A, B = f"nmgA{os.getpid() % 10000}", f"nmgB{os.getpid() % 10000}"


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def _rx_packets(name: str) -> int:
    with open(f"/sys/class/net/{name}/statistics/rx_packets") as f:
        return int(f.read())


def veth_up() -> None:
    _sh("ip", "link", "add", A, "type", "veth", "peer", "name", B)
    for name in (A, B):
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as f:
            f.write("1")
        _sh("ip", "link", "set", name, "up")


def _counted(fn, frames: int) -> float:
    before = _rx_packets(B)
    pps = fn()
    counted = _rx_packets(B) - before
    if counted != frames:
        raise RuntimeError(f"{B} received {counted} of {frames} frames")
    return pps


def tx_floor(frames, size, batch, cpu) -> float:
    out = subprocess.run([str(BIN / "packet-floor"), "-t", "-i", A, "-n", str(frames), "-s", str(size),
                          "-b", str(batch), "-j"], capture_output=True, text=True, check=True,
                         preexec_fn=pinned(cpu)).stdout
    return last_json(out)["pps"]


def tx_nmfuse(device, frames, size, batch, cpu) -> float:
    out = subprocess.run([str(CLIENTS / "nm-send"), "-i", f"netmap:{A}-0", "-n", str(frames), "-s", str(size),
                          "-b", str(batch), "-j"], env={**os.environ, "NETMAP_DEVICE": device},
                         stdout=subprocess.PIPE, text=True, check=True, preexec_fn=pinned(cpu)).stdout
    return last_json(out)["pps"]


def rx(receiver: list[str], env, frames, size, cpu) -> float:
    proc = subprocess.Popen(receiver, env=env, stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpu))
    time.sleep(0.5)
    subprocess.run([str(BIN / "packet-floor"), "-t", "-i", B, "-n", str(frames), "-s", str(size), "-b", "1024"],
                   capture_output=True, check=True)
    out, _ = proc.communicate(timeout=60)
    return last_json(out)["pps"]


def measure(frames: int, size: int, batch: int, rounds: int, cpu, mount_args=()) -> dict:
    """Mount a private device, make the veth pair, alternate the runs."""
    runs: dict[str, list[float]] = {"tx_floor": [], "tx_nmfuse": [], "rx_floor": [], "rx_nmfuse": []}
    veth_up()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/netmap"
            proc = start_nmfuse(path, None, "--buf-num", "65536", *mount_args)
            env = {**os.environ, "NETMAP_DEVICE": path}
            try:
                for _ in range(rounds):
                    runs["tx_floor"].append(_counted(lambda: tx_floor(frames, size, batch, cpu), frames))
                    runs["tx_nmfuse"].append(_counted(lambda: tx_nmfuse(path, frames, size, batch, cpu), frames))
                    runs["rx_floor"].append(rx([str(BIN / "packet-floor"), "-r", "-i", A, "-n", str(frames), "-j"],
                                               env, frames, size, cpu))
                    runs["rx_nmfuse"].append(rx([str(CLIENTS / "nm-recv"), "-i", f"netmap:{A}", "-n", str(frames),
                                                 "-T", "1", "-j"], env, frames, size, cpu))
            finally:
                stop(proc)
    finally:
        subprocess.run(["ip", "link", "del", A], check=False)
    med = {k: round(statistics.median(v)) for k, v in runs.items()}
    return {"frame_bytes": size + 4, "frames": frames, "batch": batch, "rounds": rounds,
            **{f"{k}_pps": v for k, v in med.items()},
            "tx_ratio": round(med["tx_nmfuse"] / med["tx_floor"], 2),
            "rx_ratio": round(med["rx_nmfuse"] / med["rx_floor"], 2),
            "runs": {k: [round(x) for x in v] for k, v in runs.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames per run")
    ap.add_argument("--sizes", default="60,1496", help="frame bytes without the FCS (64 and 1500 on the wire)")
    ap.add_argument("--batch", type=int, default=512, help="frames per sync / per sendmmsg")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cpu", default="none", help="CPU for the client and the floor, or 'none' (default)")
    ap.add_argument("--uring", action="store_true", help="serve the device over io_uring (mount --uring)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for tool in (CLIENTS / "nm-send", CLIENTS / "nm-recv", BIN / "packet-floor"):
        if not tool.exists():
            print(f"{tool} is not built: run `make clients bench-bins`", file=sys.stderr)
            return 1
    cpu = None if args.cpu == "none" else int(args.cpu)
    for size in (int(s) for s in args.sizes.split(",")):
        results = measure(args.frames, size, args.batch, args.rounds, cpu, ("--uring",) if args.uring else ())
        results["transport"] = "uring" if args.uring else "default"
        report_rounds(results, args.json, 16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
