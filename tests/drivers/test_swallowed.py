"""Issue 15: errors the drivers do not raise are either an expected errno
(named) or logged with their reason -- never dropped.  One test per place:
the TAP carrier at unbind, the VALE polling thread's pin, and VALE attach
telling "not attached" (ENXIO) from a real failure."""

import errno
import logging
import socket
import threading
from types import SimpleNamespace

import pytest

from nmfuse.abi.netmap import ReqType
from nmfuse.drivers import tap
from nmfuse.drivers.vale import polling, requests


def _raise(err):
    def fail(*args, **kwargs):
        raise OSError(err, f"injected: {errno.errorcode[err]}")
    return fail


@pytest.fixture
def created_tap(h, monkeypatch):
    """A created TAP port over a socket pair (no kernel interface), started."""
    for fn in ("set_hdr", "set_carrier", "link_set"):
        monkeypatch.setattr(tap.tuntap, fn, lambda *a, **k: None)
    monkeypatch.setattr(tap.tuntap, "drain", lambda fd: 0)
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    port = tap.TapAdapter(h.core, "sw0", 1, False, fds=[ours.fileno()])
    port._watch()
    port.started = True
    yield port, monkeypatch
    ours.close()
    kernel.close()


@pytest.mark.parametrize("err, logged", [(errno.EBADFD, False), (errno.EPERM, True), (errno.EIO, True)])
def test_tap_carrier_off_at_unbind(created_tap, caplog, err, logged):
    """EBADFD (the interface was deleted under its queues) is expected and
    quiet; any other failure to drop the carrier is logged with its reason."""
    port, monkeypatch = created_tap
    monkeypatch.setattr(tap.tuntap, "set_carrier", _raise(err))
    with caplog.at_level(logging.WARNING, logger="nmfuse"):
        port._stop()
    lines = [r.getMessage() for r in caplog.records]
    if logged:
        assert lines == [f"sw0: could not drop the carrier: injected: {errno.errorcode[err]}"]
    else:
        assert lines == []
    assert not port.started


def test_polling_thread_pin_failure_is_logged(monkeypatch, caplog):
    monkeypatch.setattr(polling.os, "sched_setaffinity", _raise(errno.EINVAL))
    p = polling.Polling.__new__(polling.Polling)
    p.bwrap = SimpleNamespace(name="vale0:nic")
    p.stop_event = threading.Event()
    p.stop_event.set()  # the loop ends at once: only the pin is under test
    with caplog.at_level(logging.WARNING, logger="nmfuse.vale"):
        p._loop(0, 1, 3)
    assert [r.getMessage() for r in caplog.records] == [
        "vale0:nic: polling thread not pinned to CPU 3: injected: EINVAL"]


@pytest.mark.parametrize("err", [errno.EPERM, errno.EIO, errno.ENOMEM])
def test_vale_attach_fails_on_lookup_errors_other_than_not_attached(monkeypatch, err):
    """Only ENXIO from the look-up means "not attached yet"; any other
    errno is the attach's answer, not a reason to go on and attach."""
    calls = []

    def lookup(switches, name, reg, create, reqtype):
        calls.append(create)
        raise OSError(err, "injected")

    monkeypatch.setattr(requests, "get_port", lookup)
    monkeypatch.setattr(requests, "_check_mem_id", lambda core, mem_id: None)
    req = SimpleNamespace(name="vale0:x", body=SimpleNamespace(reg=SimpleNamespace(nr_mem_id=0)),
                          reqtype=ReqType.VALE_ATTACH)
    with pytest.raises(OSError) as e:
        requests.ctrl_vale_attach(None, None, None, req)
    assert e.value.errno == err
    assert calls == [False], "no attach was tried"


def test_vale_attach_goes_on_when_not_attached(monkeypatch):
    calls = []

    def lookup(switches, name, reg, create, reqtype):
        calls.append(create)
        if not create:
            raise OSError(errno.ENXIO, "no such switch")
        # then None: not a VALE name

    monkeypatch.setattr(requests, "get_port", lookup)
    monkeypatch.setattr(requests, "_check_mem_id", lambda core, mem_id: None)
    req = SimpleNamespace(name="vale0:x", body=SimpleNamespace(reg=SimpleNamespace(nr_mem_id=0)),
                          reqtype=ReqType.VALE_ATTACH)
    with pytest.raises(OSError) as e:
        requests.ctrl_vale_attach(None, None, None, req)
    assert e.value.errno == errno.EINVAL and calls == [False, True]
