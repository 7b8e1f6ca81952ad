"""Tests of nmfuse.dev.  Those marked ``needs_fuse`` mount a real FUSE file;
they skip, with the reason, only where root or /dev/fuse is truly missing."""

import os

import pytest

from tests.conftest import missing


def pytest_collection_modifyitems(config, items):
    reason = missing("root", "fuse")
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "needs_fuse" in item.keywords and "tests/dev/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)
