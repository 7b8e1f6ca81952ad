"""What the tests need from the machine, probed in one place.

``missing(*needs)`` names the first thing absent (with the package that
brings it), ``needs(*needs)`` is the matching skip marker.  Tests skip only
where a need is truly missing; CI has them all, so there they run.
"""

import os
import shutil

import pytest

# need -> (probe, reason when the probe fails)
_PROBES = {
    "root": (lambda: os.geteuid() == 0, "needs root"),
    "fuse": (lambda: os.path.exists("/dev/fuse"), "needs /dev/fuse"),
    "tun": (lambda: os.path.exists("/dev/net/tun"), "needs /dev/net/tun"),
    "ping": (lambda: shutil.which("ping") is not None, "needs ping (package iputils-ping)"),
    "ip": (lambda: shutil.which("ip") is not None, "needs ip (package iproute2)"),
}


def missing(*needs: str) -> str | None:
    """The reason of the first of ``needs`` this machine lacks, or None."""
    for need in needs:
        probe, reason = _PROBES[need]
        if not probe():
            return reason
    return None


def needs(*needs: str):
    """A marker that skips, naming what is missing, unless all ``needs`` hold."""
    reason = missing(*needs)
    return pytest.mark.skipif(reason is not None, reason=reason or "")
