"""Null ports (netmap_null.c): rings and slots as requested, syncs that
succeed and move nothing.  Selected by nr_mode NR_REG_NULL, one fresh port
per registration."""

import errno

from nmfuse.netmap.abi import RegMode
from nmfuse.netmap.adapter import Adapter


class NullAdapter(Adapter):
    kind = "null"
    supports_offsets = True


def lookup(core, name: str, reg, create: bool, mem_given: bool):
    if reg.nr_mode != RegMode.NULL:
        return None
    if not create:
        raise OSError(errno.EINVAL, "null ports cannot be re-opened")
    if not mem_given:
        raise OSError(errno.EINVAL, "null ports must use an existing allocator (nr_mem_id)")
    return NullAdapter(core, f"null:{name}", tx_rings=reg.nr_tx_rings, rx_rings=reg.nr_rx_rings,
                       tx_slots=reg.nr_tx_slots, rx_slots=reg.nr_rx_slots, mem=mem_given)
