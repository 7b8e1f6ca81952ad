"""Tests of nmfuse.dev.  Those marked ``needs_fuse`` mount a real FUSE file;
they skip, with the reason, only where root or /dev/fuse is truly missing."""

import os

import pytest


def _fuse_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mounting FUSE)"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _fuse_missing()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "needs_fuse" in item.keywords and "tests/dev/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)
