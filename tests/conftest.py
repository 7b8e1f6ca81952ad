"""Fixtures shared by the test folders."""

import contextlib

import pytest

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
