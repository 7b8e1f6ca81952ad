"""What the tests need from the machine, probed in one place, and the
fixtures shared by the test folders.

``missing(*needs)`` names the first thing absent (with the package that
brings it), ``needs(*needs)`` is the matching skip marker.  Tests skip only
where a need is truly missing; CI has them all, so there they run.
"""

import contextlib
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


URING_PARAMETER = "/sys/module/fuse/parameters/enable_uring"


@contextlib.contextmanager
def uring_parameter(value: str):
    """The fuse module parameter enable_uring set to ``value`` (root may
    write it) for the block, and back afterwards.  Connections that
    announced io_uring in INIT keep it whatever the parameter becomes.
    Skips, naming the reason, where the kernel has none or refuses."""
    try:
        with open(URING_PARAMETER) as f:
            before = f.read().strip()
    except FileNotFoundError:
        pytest.skip("this kernel has no FUSE over io_uring (no fuse parameter enable_uring)")
    if before != value:
        try:
            with open(URING_PARAMETER, "w") as f:
                f.write(value)
        except OSError as e:
            pytest.skip(f"{URING_PARAMETER} is {before} and cannot be set to {value}: {e.strerror}")
    try:
        yield
    finally:
        if before != value:
            with open(URING_PARAMETER, "w") as f:
                f.write(before)


@pytest.fixture(scope="session")
def uring_enabled():
    """FUSE over io_uring allowed for the tests (see ``uring_parameter``)."""
    with uring_parameter("Y"):
        try:
            from nmfuse.dev import uring
        except ImportError as e:
            pytest.skip(f"the io_uring extension is not built: {e}")
        reason = uring.unavailable() or uring.probe()
        if reason:
            pytest.skip(reason)
        yield
