"""contrib/nmfuse.service, run without systemd: the unit's own ExecStart
and ExecStopPost lines (the binary and the path swapped for this checkout
and a temporary path) under a small supervisor that applies systemd's
Restart=on-failure rule.  A SIGKILLed or failing daemon is restarted and
serves again at once; a stopped one is not; nothing stays at the path."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import needs

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "nmfuse.service"
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}  # systemd.service(5)


def unit() -> dict[str, list[str]]:
    """The [Service] settings, each key with every value it is given."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def restarts(policy: str, returncode: int) -> bool:
    """systemd's decision after the main process ended with ``returncode``
    (negative: killed by that signal)."""
    if policy == "always":
        return True
    if policy != "on-failure":
        return False
    if returncode < 0:
        return -returncode not in CLEAN_SIGNALS
    return returncode != 0


def test_the_unit_restarts_on_failure_and_cleans_after_stop():
    s = unit()
    assert s["Restart"] == ["on-failure"]
    assert s["KillSignal"] == ["SIGTERM"]
    assert any("umount --dead /dev/netmap" in v for v in s["ExecStopPost"])


@pytest.mark.parametrize("returncode, again", [(0, False), (1, True), (70, True), (-signal.SIGKILL, True),
                                               (-signal.SIGSEGV, True), (-signal.SIGTERM, False)])
def test_the_restart_rule(returncode, again):
    assert restarts("on-failure", returncode) is again


class Supervisor:
    """ExecStart, then on exit ExecStopPost, then a restart if the rule says so."""

    def __init__(self, path: str):
        s = unit()
        self.path = path
        self.policy = s["Restart"][0]
        self.start_line = self._command(s["ExecStart"][0])
        self.stop_post = [self._command(v) for v in s.get("ExecStopPost", [])]
        self.proc: subprocess.Popen | None = None
        self.log = []

    def _command(self, line: str) -> tuple[bool, list[str]]:
        ignore = line.startswith("-")
        argv = shlex.split(line.lstrip("-@:+!"))
        out = []
        for arg in argv:
            if arg == "/usr/local/bin/nmfuse":
                out += [sys.executable, "-m", "nmfuse"]
            else:
                out.append(arg.replace("/dev/netmap", self.path))
        return ignore, out

    def start(self) -> None:
        self.proc = subprocess.Popen(self.start_line[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + 30
        while not _serving(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ExecStart did not serve: {self.proc.poll()} {self.proc.stderr.read()}")
            time.sleep(0.05)

    def exited(self) -> bool:
        """The main process ended: run ExecStopPost and restart per the rule.
        Returns whether it restarted."""
        code = self.proc.wait(timeout=30)
        self.proc.stderr.close()
        for ignore, argv in self.stop_post:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            assert ignore or res.returncode == 0, res.stderr
        self.log.append(code)
        if restarts(self.policy, code):
            self.start()
            return True
        return False


def _serving(path: str) -> bool:
    from nmfuse.lease import holder

    with open("/proc/self/mountinfo") as f:
        mounted = any(line.split()[4] == path for line in f)
    return mounted and holder(path) is not None and _opens(path)


def _opens(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDWR))
        return True
    except OSError:
        return False


@pytest.mark.needs_fuse
@needs("root", "fuse")
def test_restart_logic_without_systemd(tmp_path):
    path = str(tmp_path / "netmap")
    sup = Supervisor(path)
    sup.start()
    try:
        for _ in range(2):  # killed (the OOM killer, `systemctl kill -s KILL`): restarted, serving
            first = sup.proc.pid
            sup.proc.send_signal(signal.SIGKILL)
            assert sup.exited(), "restarted after SIGKILL"
            assert sup.proc.pid != first and _opens(path)
        sup.proc.send_signal(signal.SIGTERM)  # `systemctl stop`
        assert not sup.exited(), "a clean stop is not restarted"
        assert sup.log == [-signal.SIGKILL, -signal.SIGKILL, 0]
        assert not os.path.lexists(path), "nothing left at the path"
    finally:
        if sup.proc.poll() is None:
            sup.proc.kill()
            sup.proc.wait()
        subprocess.run([sys.executable, "-m", "nmfuse", "umount", "--dead", path], capture_output=True, check=False)
