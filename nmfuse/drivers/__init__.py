"""Port types, one module each, behind the core's driver contract
(``nmfuse.netmap.driver``, ``nmfuse.netmap.adapter``).

``all_drivers`` is the registry the daemon hands the core: the order is
netmap_get_na's cascade (the first driver that claims a name wins).
"""

from nmfuse.drivers.generic import GenericDriver
from nmfuse.drivers.monitor import MonitorDriver
from nmfuse.drivers.null import NullDriver
from nmfuse.drivers.pipe import PipeDriver
from nmfuse.drivers.tap import TapDriver
from nmfuse.drivers.vale import ValeDriver
from nmfuse.netmap.driver import Driver


def all_drivers(taps=()) -> list[Driver]:
    """A fresh driver of every port type, in lookup order; ``taps`` are the
    (name, queues) TAP interfaces the daemon creates at start."""
    return [NullDriver(), MonitorDriver(), PipeDriver(), TapDriver(taps), ValeDriver(), GenericDriver()]
