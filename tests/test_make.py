"""`make install` on a distribution's own Python, which refuses pip installs
(PEP 668: its standard library carries an EXTERNALLY-MANAGED marker):
nmfuse goes into a virtual environment of its own, .venv, and its command
is linked into /usr/local/bin.  Any other Python gets the package directly.
Checked with make's dry run (-n -B: every command printed, none run)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ('import os, sys, sysconfig; '
         'sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))')


def _externally_managed(python: str) -> bool:
    return subprocess.run([python, "-c", CHECK], capture_output=True, check=False).returncode == 0


def _plan(python: str) -> str:
    return subprocess.run(["make", "-n", "-B", "-C", str(ROOT), "install", f"PY={python}"],
                          capture_output=True, text=True, check=True).stdout


# Debian's and Ubuntu's own Python is one, where the machine has it
SYSTEM_PY = "/usr/bin/python3"
MANAGED = SYSTEM_PY if os.path.exists(SYSTEM_PY) and _externally_managed(SYSTEM_PY) else None


@pytest.mark.skipif(MANAGED is None, reason="no externally managed Python on this machine")
def test_a_distributions_python_gets_a_virtual_environment_and_a_linked_command():
    plan = _plan(MANAGED)
    assert f"{MANAGED} -m venv .venv" in plan, plan
    assert ".venv/bin/python3 -m pip install" in plan, plan
    assert f"{ROOT}/.venv/bin/nmfuse /usr/local/bin/nmfuse" in plan, plan
    assert f"{MANAGED} -m pip" not in plan, plan


@pytest.mark.skipif(_externally_managed(sys.executable), reason="the Python running the tests is externally managed")
def test_any_other_python_gets_the_package_itself():
    plan = _plan(sys.executable)
    assert f"{sys.executable} -m pip install" in plan, plan
    assert "venv" not in plan and "/usr/local/bin" not in plan, plan
