"""Transparent mode: NR_FORWARD on a ring, NS_FORWARD on its slots.

For a port with host rings, netmap lets a program hand frames on without
copying them itself.  An RX ring whose ``flags`` has NR_FORWARD forwards
the slots the program releases with NS_FORWARD set:

    hardware RX ring --NS_FORWARD--> host stack          (``up``)
    host RX ring     --NS_FORWARD--> hardware TX rings   (``down``)

* up: at the next RXSYNC or poll, the released frames marked NS_FORWARD
  are given to the host stack, as if the program had put them on the host
  TX ring (netmap_grab_packets, then the driver's send up: here
  ``adapter.forward_up``).  The flag is cleared.
* down: at the next RXSYNC or poll, the released slots marked NS_FORWARD
  are moved into the hardware TX rings from their head on, by swapping
  buffers (netmap_sw_to_nic); both slots get NS_BUF_CHANGED and the TX
  rings' head and cur advance, which the program sees.  Only a binding that
  holds every hardware TX ring may forward down (NAF_CAN_FORWARD_DOWN);
  slots that find no room are released without being sent, as in netmap.
  poll() then pushes those TX rings at once; with the ioctls they leave at
  the next NIOCTXSYNC.

netmap's global ``fwd`` sysctl (forward everything) has no counterpart.
"""

from nmfuse._helper import lib
from nmfuse.abi.netmap import RingFlag
from nmfuse.netmap.kring import RX, TX


def _forwarding(kring) -> bool:
    return (kring.adapter.has_host_rings and kring.direction == RX
            and bool(kring.ring.flags & RingFlag.FORWARD) and kring.rhead != kring.hwcur)


def down_targets(binding):
    """The hardware TX krings ``binding`` may forward down into, or None."""
    adapter = binding.adapter
    n = adapter.nrings(TX)
    if not adapter.has_host_rings or n == 0 or binding.qfirst[TX] != 0 or binding.qlast[TX] < n:
        return None
    return adapter.krings[TX][:n]


def released(kring, targets) -> int:
    """Forward what the program just released on RX ring ``kring``, after
    its prologue and before the driver's rxsync moves hwcur.  Returns how
    many slots went down into ``targets``."""
    if not _forwarding(kring):
        return 0
    if not kring.host:
        kring.adapter.forward_up(kring)
        return 0
    if not targets:
        return 0
    moved, cur = 0, kring.hwcur
    for tx in targets:
        ring = tx.ring
        before = ring.head
        cur = lib.nmh_forward_swap(kring.ring.slot, kring.num_slots, cur, kring.rhead, ring)
        moved += (ring.head - before) % tx.num_slots
        if cur == kring.rhead:
            break
    return moved
