"""Issue 15: on a machine without ping or iproute2 the tests that need them
skip, naming the missing package, and nothing fails.  The machine is
simulated by a PATH without the tool."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[1]
# every test that runs ping (they also run ip)
PING_TESTS = ["tests/integration/test_tap.py", "tests/integration/test_vale.py", "tests/drivers/test_tap.py",
              "tests/drivers/test_vale_tap.py"]


def _path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only ``tools`` (those this machine has)."""
    d = tmp_path / "bin"
    d.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        if real:
            (d / tool).symlink_to(real)
    return str(d)


def test_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path))
    assert missing("ping") == "needs ping (package iputils-ping)"
    assert missing("ip") == "needs ip (package iproute2)"
    assert missing("ip", "ping") == "needs ip (package iproute2)"


IP, PING = "needs ip (package iproute2)", "needs ping (package iputils-ping)"


@pytest.mark.parametrize("have, reasons", [((), (IP, PING)), (("ip",), (PING,))])
def test_ping_tests_skip_with_the_reason(tmp_path, have, reasons):
    if "ip" in have and shutil.which("ip") is None:
        pytest.skip("needs ip (package iproute2) to simulate a machine with ip but no ping")
    env = {**os.environ, "PATH": _path_with(tmp_path, *have), "NMFUSE_CONTAINER_TEST": "0"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "ping",
                          *PING_TESTS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == len(PING_TESTS), out  # one ping test per file
    assert all(line.endswith(reasons) for line in skipped), out  # the first missing need is named
    assert " passed" not in out and " failed" not in out
