"""Set-ups of the drivers that fail at any step leave nothing behind:
creating a TAP interface (nothing in the kernel, nothing in the core),
attaching a port to a VALE switch (no switch, hw free again), opening a
monitor (its parent's references as before), and starting the daemon
(the drivers' interfaces removed again)."""

import errno
import os

import pytest

from nmfuse.abi.netmap import RegFlag
from nmfuse.drivers import tap
from nmfuse.drivers.vale.bwrap import Bwrap
from nmfuse.host import tuntap
from nmfuse.netmap import binding as binding_module
from nmfuse.netmap.adapter import Adapter
from tests.conftest import needs
from tests.drivers.conftest import add_nic, attach, open_port
from tests.drivers.test_tap import unique
from tests.failure import inject


def _usage(h) -> dict:
    return {name: s.used for name, s in h.mem.statistics().items()}


def _tun_fds() -> set[int]:
    """The fds of this process open on /dev/net/tun (TAP queues)."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "/dev/net/tun":
                fds.add(int(fd))
        except FileNotFoundError:   # the fd listdir itself used
            pass
    return fds


TAP_STEPS = [
    ("open the queues", lambda: (tuntap, "open_queues"), 0),
    ("the first queue", lambda: (tuntap, "open_queue"), 0),
    ("the third queue", lambda: (tuntap, "open_queue"), 2),
    ("carrier off", lambda: (tuntap, "set_carrier"), 0),
    ("the MTU", lambda: (tuntap, "link_set"), 0),
    ("the port", lambda: (tap, "TapAdapter"), 0),
]


@needs("root", "tun")
@pytest.mark.parametrize("step,target,after", TAP_STEPS, ids=[s[0] for s in TAP_STEPS])
def test_tap_creation_failing_at_any_step_leaves_no_interface(h, monkeypatch, step, target, after):
    name = unique("nmu")
    fds = _tun_fds()
    counter = inject(monkeypatch, *target(), after=after)
    with pytest.raises(OSError) as e:
        tap.create(h.core, name, 4)
    assert counter["failed"] and e.value.errno == errno.ENOMEM
    assert tuntap.probe(name) is None, "no interface left"
    assert name not in h.core.named
    assert _tun_fds() == fds, "no queue fd left open"
    monkeypatch.undo()
    tap.create(h.core, name, 4)
    assert tuntap.probe(name) is not None, "the same name is free again"
    tap.delete_ports(h.core)


ATTACH_STEPS = [
    ("the bwrap", lambda: (Bwrap, "__init__"), 0),
    ("the bwrap's krings", lambda: (Adapter, "krings_create"), 0),
    ("hw's rings", lambda: (Adapter, "rings_create"), 0),
    ("the kernel binding", lambda: (binding_module, "_if_new"), 0),
]


@pytest.mark.parametrize("step,target,after", ATTACH_STEPS, ids=[s[0] for s in ATTACH_STEPS])
def test_vale_attach_failing_at_any_step_leaves_hw_free(h, monkeypatch, step, target, after):
    nic = add_nic(h, "nic0")
    refs, before = nic.refs, _usage(h)
    counter = inject(monkeypatch, *target(), after=after)
    err, _, _ = attach(h, "vale0:nic0", host=True)
    assert counter["failed"] and err == errno.ENOMEM
    assert h.core.driver("vale").switches.bridges == [None] * len(h.core.driver("vale").switches.bridges)
    assert nic.refs == refs and not nic.owned_by_kernel and nic.na_vp is None
    assert nic.krings is None and _usage(h) == before
    monkeypatch.undo()
    assert attach(h, "vale0:nic0", host=True)[0] == 0, "attaches once the failure is gone"


def test_monitor_failing_leaves_its_parent_as_it_was(h, monkeypatch):
    watched = open_port(h, "w{1")
    refs, before = watched.adapter.refs, _usage(h)
    counter = inject(monkeypatch, Adapter, "krings_create")
    open_port(h, "w{1", nr_flags=RegFlag.MONITOR_TX, expect=errno.ENOMEM)
    assert counter["failed"]
    assert watched.adapter.refs == refs and _usage(h) == before


@needs("root", "tun")
def test_daemon_start_failing_removes_the_interfaces_it_made(tmp_path, monkeypatch):
    from nmfuse.daemon import Daemon, MountOptions
    from nmfuse.dev.session import Session

    name = unique("nmd")
    daemon = Daemon(MountOptions(path=str(tmp_path / "netmap"), taps=((name, 2),)))
    counter = inject(monkeypatch, Session, "start", err=errno.EBUSY)
    with pytest.raises(OSError):
        daemon.start()
    assert counter["failed"]
    assert tuntap.probe(name) is None, "the --tap interface is gone again"
    assert not daemon.core.named
    daemon.mem.close()
