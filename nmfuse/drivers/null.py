"""Null ports (netmap_null.c): rings and slots as requested, syncs that
succeed and move nothing.  Selected by nr_mode NR_REG_NULL, one fresh port
per registration.

The smallest port type, and the template for a new one: an ``Adapter``
subclass that overrides only what differs from the defaults (here,
nothing but its name and the offsets capability) and a ``Driver`` whose
``lookup`` claims the requests that are its own.
"""

import errno

from nmfuse._helper import lib
from nmfuse.abi.netmap import RegMode
from nmfuse.netmap.adapter import Adapter
from nmfuse.netmap.driver import Driver


class NullAdapter(Adapter):
    """A port whose syncs do nothing: the default txsync/rxsync."""

    kind = "null"
    supports_offsets = True
    c_sync = lib.NMH_SYNC_NULL    # the C fast path serves its syncs


class NullDriver(Driver):
    """Claims NR_REG_NULL registrations (netmap_get_null_na)."""

    name = "null"

    def lookup(self, name: str, reg, create: bool, mem_given):
        """A new null port shaped as ``reg`` asks, or None for other modes.

        Raises:
            OSError: EINVAL when re-opened (``create`` False) or without
                an nr_mem_id, as netmap.
        """
        if reg.nr_mode != RegMode.NULL:
            return None
        if not create:
            raise OSError(errno.EINVAL, "null ports cannot be re-opened")
        if not mem_given:
            raise OSError(errno.EINVAL, "null ports must use an existing allocator (nr_mem_id)")
        return NullAdapter(self.core, f"null:{name}", tx_rings=reg.nr_tx_rings, rx_rings=reg.nr_rx_rings,
                           tx_slots=reg.nr_tx_slots, rx_slots=reg.nr_rx_slots, mem=mem_given)
