"""A registration that fails at any step leaves nothing allocated.

Each case injects ENOMEM at one step of REGISTER (netmap_do_regif and
what follows it) for a pipe end, then checks that the pools, the pipe
table and the file are as before, and that the same file then registers.
"""

import errno

import pytest

from nmfuse.abi.netmap import RegMode
from nmfuse.drivers.pipe import PipeAdapter
from nmfuse.netmap import binding as binding_module
from nmfuse.netmap.adapter import Adapter
from tests.failure import inject


def _usage(h) -> dict:
    return {name: s.used for name, s in h.mem.statistics().items()}


# (what fails, how to reach it given the harness, which call fails)
STEPS = [
    ("krings", lambda h: (Adapter, "krings_create"), 0),
    ("first ring", lambda h: (h.mem, "ring_alloc"), 0),
    ("third ring", lambda h: (h.mem, "ring_alloc"), 2),
    ("first ring's buffers", lambda h: (h.mem.bufs, "alloc"), 0),
    ("last ring's buffers", lambda h: (h.mem.bufs, "alloc"), 3),
    ("netmap_if", lambda h: (binding_module, "_if_new"), 0),
    ("port register", lambda h: (PipeAdapter, "register"), 0),
    ("extra buffers", lambda h: (h.mem, "extra_alloc"), 0),
]


@pytest.mark.parametrize("step,target,after", STEPS, ids=[s[0] for s in STEPS])
def test_register_failing_at_any_step_leaves_nothing(h, monkeypatch, step, target, after):
    before = _usage(h)
    fh = h.open()
    counter = inject(monkeypatch, *target(h), after=after)
    err, _, _ = h.register(fh, "u{1", mode=RegMode.ALL_NIC, mem_id=0, nr_tx_rings=2, nr_rx_rings=2,
                           nr_tx_slots=64, nr_rx_slots=64, nr_extra_bufs=8)
    assert counter["failed"], f"the {step} step was reached"
    assert err == errno.ENOMEM
    assert _usage(h) == before, "pools as before"
    assert not h.core.driver("pipe").pairs, "the pipe made for the request is gone"
    assert not h.dev.bindings[fh].registered
    monkeypatch.undo()
    err, _, _ = h.register(fh, "u{1", mode=RegMode.ALL_NIC, mem_id=0)
    assert err == 0, "the same file registers afterwards"


def test_pipe_pairing_survives_one_end_failing(h, monkeypatch):
    """The slave end fails to register while the master is bound: the pair
    stays (the master holds it), nothing of the slave's remains, and the
    slave registers once the failure is gone."""
    master = h.open()
    assert h.register(master, "v{1", mode=RegMode.ALL_NIC, mem_id=0)[0] == 0
    before = _usage(h)
    slave = h.open()
    inject(monkeypatch, binding_module, "_if_new")
    assert h.register(slave, "v}1", mode=RegMode.ALL_NIC, mem_id=0)[0] == errno.ENOMEM
    assert _usage(h) == before
    assert ("v", "1") in h.core.driver("pipe").pairs
    monkeypatch.undo()
    assert h.register(slave, "v}1", mode=RegMode.ALL_NIC, mem_id=0)[0] == 0
