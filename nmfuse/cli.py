"""The ``nmfuse`` command: mount, run, umount, status, vale."""

import argparse
import json
import logging
import os
import signal
import socket
import sys

from nmfuse.mem import PoolConfig

DEFAULT_PATH = "/dev/netmap"


def _owner(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    return int(uid), int(gid or uid)


def _parser() -> argparse.ArgumentParser:
    # -v/-q are accepted before and after the subcommand (vale has its own -v, as vale-ctl)
    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                      help="more logging (-v: info, -vv: every request)")
    logs.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
    p = argparse.ArgumentParser(prog="nmfuse", description="netmap's /dev/netmap, served from user space",
                                parents=[logs])
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("mount", parents=[logs], help="serve PATH in the foreground until SIGINT/SIGTERM")
    m.add_argument("path", nargs="?", default=DEFAULT_PATH)
    _mount_options(m)

    r = sub.add_parser("run", parents=[logs], help="run COMMAND against a private /dev/netmap, then clean up")
    r.add_argument("--path", default=DEFAULT_PATH, help="where the device appears inside (/dev/netmap)")
    _mount_options(r)
    r.add_argument("program", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")

    u = sub.add_parser("umount", parents=[logs], help="stop the daemon serving PATH")
    u.add_argument("path", nargs="?", default=DEFAULT_PATH)
    u.add_argument("--dead", action="store_true",
                   help="no daemon: detach the dead mount and remove the placeholder a killed daemon left")

    s = sub.add_parser("status", parents=[logs],
                       help="ports, bindings and memory of the daemon serving PATH (default: every daemon)")
    s.add_argument("path", nargs="?", default=None)
    s.add_argument("--json", action="store_true", help="machine-readable output")

    from nmfuse import cli_vale

    v = sub.add_parser("vale", add_help=False, help="VALE switches: list, create, delete, attach, detach ports",
                       description="VALE switches through the device's control requests (as netmap's vale-ctl)")
    cli_vale.add_arguments(v)
    return p


def _tap_spec(text: str) -> tuple[str, int]:
    from nmfuse.drivers.tap import parse_spec

    try:
        return parse_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _mount_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tap", action="append", type=_tap_spec, default=[], metavar="NAME[:QUEUES]",
                   help="create TAP interface NAME (QUEUES queues, default 1) as port netmap:NAME "
                        "for the daemon's life; repeatable")
    p.add_argument("--mode", type=lambda s: int(s, 8), default=0o600, help="file mode, octal (0600)")
    p.add_argument("--uring", action="store_true",
                   help="serve requests through FUSE over io_uring, one queue per CPU (falls back to "
                        "/dev/fuse, with a log line, where the kernel does not allow it)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="threads reading /dev/fuse (default: one per CPU)")
    p.add_argument("--owner", type=_owner, default=(0, 0), metavar="UID[:GID]", help="file owner (0:0)")
    d = PoolConfig()
    for name in ("if_num", "if_size", "ring_num", "ring_size", "buf_num", "buf_size"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name),
                       help=f"memory pool geometry (default {getattr(d, name)})")


def main(argv=None) -> int:
    """Parse ``argv`` (default: the command line), set up logging and run the
    subcommand; returns its exit code (130 after Ctrl-C)."""
    args = _parser().parse_args(argv)
    verbose, quiet = getattr(args, "verbose", 0), getattr(args, "quiet", False)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="nmfuse: %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130


def _options(args):
    """MountOptions from the command line, or an exit code after a one-line error."""
    from nmfuse.daemon import MountOptions

    if os.geteuid() != 0:
        print("nmfuse: must run as root (mounting a FUSE device needs CAP_SYS_ADMIN)", file=sys.stderr)
        return 1
    try:
        pools = PoolConfig(**{k: getattr(args, k) for k in PoolConfig.__dataclass_fields__})
        pools.validate()
    except ValueError as e:
        print(f"nmfuse: bad pool geometry: {e}", file=sys.stderr)
        return 2
    return MountOptions(path=args.path, mode=args.mode, uid=args.owner[0], gid=args.owner[1], pools=pools,
                        taps=tuple(args.tap), uring=args.uring, workers=args.workers)


def cmd_mount(args) -> int:
    """``nmfuse mount``: serve PATH in the foreground until SIGINT/SIGTERM or
    unmount; returns the exit code (1, after a one-line error, if the daemon
    cannot start)."""
    from nmfuse.daemon import Daemon

    options = _options(args)
    if isinstance(options, int):
        return options
    return _one_line_errors(lambda: Daemon(options).run())


def cmd_run(args) -> int:
    """``nmfuse run``: serve a private /dev/netmap in a mount namespace of its
    own while COMMAND runs; returns the program's exit code (2 without a
    command, 1 if the daemon cannot start)."""
    from nmfuse import runner
    from nmfuse.daemon import Daemon

    command = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not command:
        print("nmfuse: run needs a command: nmfuse run [options] -- COMMAND ...", file=sys.stderr)
        return 2
    options = _options(args)
    if isinstance(options, int):
        return options

    def run() -> int:
        runner.enter_private_namespaces()
        # The init of the command's pid namespace, before any thread (see runner)
        init = runner.Init(command, {**os.environ, "NETMAP_DEVICE": options.path})
        try:
            return Daemon(options, private=True).run(init)
        finally:
            init.close()  # a daemon that could not be made: the program never runs

    return _one_line_errors(run)


def _one_line_errors(action) -> int:
    """``action()``'s exit code, or 1 after a one-line error when it fails
    for a reason the user can act on (a ``DeviceError`` or an ``OSError``)."""
    from nmfuse.dev import DeviceError

    try:
        return action()
    except DeviceError as e:
        print(f"nmfuse: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"nmfuse: {e.strerror or e}", file=sys.stderr)
        return 1


def _query_socket(sock_path) -> dict | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(str(sock_path))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return json.loads(data)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    finally:
        sock.close()


def _query(path: str) -> dict | None:
    from nmfuse.daemon import status_socket

    return _query_socket(status_socket(path))


def _all_reports() -> list[dict]:
    from nmfuse.daemon import RUN_DIR

    reports = [_query_socket(p) for p in sorted(RUN_DIR.glob("*.sock"))] if RUN_DIR.is_dir() else []
    return [r for r in reports if r is not None]


def cmd_status(args) -> int:
    """``nmfuse status``: print the report of the daemon serving PATH, or of
    every daemon (as JSON with ``--json``); 1 if none answers."""
    if args.path is None:
        reports = _all_reports()
        if not reports:
            print("no nmfuse daemon is running", file=sys.stderr)
            return 1
    else:
        report = _query(args.path)
        if report is None:
            print(f"{args.path}: not served by nmfuse", file=sys.stderr)
            return 1
        reports = [report]
    if args.json:
        print(json.dumps(reports if args.path is None else reports[0], indent=2))
        return 0
    for report in reports:
        _print_report(report)
    return 0


def _print_report(report: dict) -> None:
    where = " (private, nmfuse run)" if report.get("private") else ""
    print(f"{report['path']}{where}: served by pid {report['pid']}, {report['open_files']} open file(s), "
          f"{report['memsize'] >> 20} MiB shared memory")
    if "transport" in report:
        print(f"requests: {report['transport']}, {report['workers']} worker(s)")
    pools = report["pools"]
    print("pools: " + ", ".join(f"{n} {p['used']}/{p['total']} used" for n, p in pools.items()))
    for ext in report.get("external_memory", ()):
        print(f"external memory {ext['mem_id']}: {ext['memsize'] >> 10} KiB, {ext['users']} port(s), pools: "
              + ", ".join(f"{n} {p['used']}/{p['total']} used" for n, p in ext["pools"].items()))
    if not report["ports"]:
        print("no ports bound")
        return
    rows = [("PORT", "TYPE", "RING", "SLOTS", "USERS", "PACKETS", "BYTES", "DROPS", "ERRORS")]
    for port in report["ports"]:
        pids = ",".join(str(p) for p in sorted({b["pid"] for b in port["bindings"]}))
        print(f"port {port['name']} ({port['type']}): {port['fds']} fd(s), pid(s) {pids}")
        for r in port["rings"]:
            ring = f"{r['dir']}{r['index']}{'^' if r['host'] else ''}"
            rows.append((port["name"], port["type"], ring, r["slots"], r["users"], r["packets"], r["bytes"],
                         r["drops"], r["errors"]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def cmd_umount(args) -> int:
    """``nmfuse umount``: send SIGTERM to the daemon serving PATH; 1 if none
    does.  With ``--dead``: clean what a dead daemon left at PATH (as the
    next ``nmfuse mount`` would); 1 if a live daemon serves it."""
    if args.dead:
        return _umount_dead(args.path)
    report = _query(args.path)
    if report is None:
        print(f"{args.path}: not served by nmfuse", file=sys.stderr)
        return 1
    os.kill(report["pid"], signal.SIGTERM)
    return 0


def _umount_dead(path: str) -> int:
    from nmfuse import janitor
    from nmfuse.lease import RUN_DIR, Lease

    def clean() -> int:
        with Lease.acquire(path) as lease:  # no daemon may start meanwhile
            done = janitor.clean(path, lease.previous, RUN_DIR)
        if not done:  # what was done is logged, one warning per thing removed
            print(f"{path}: nothing to clean")
        return 0

    return _one_line_errors(clean)


def cmd_vale(args) -> int:
    """``nmfuse vale``: the VALE control tool (``cli_vale.run``)."""
    from nmfuse import cli_vale

    return cli_vale.run(args)


COMMANDS = {"mount": cmd_mount, "run": cmd_run, "umount": cmd_umount, "status": cmd_status, "vale": cmd_vale}
