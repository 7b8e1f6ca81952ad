"""The character-device emulation layer: a file served over the FUSE kernel
protocol, with open, release, ioctl, poll and a passthrough mmap.

It knows nothing about netmap: a device implements ``DeviceHandler`` and a
``Session`` serves it on a ``FuseChannel``::

    channel = FuseChannel()
    session = Session(channel, device, mode=0o600, backing_fd=memfd)
    session.start("/dev/netmap")               # mount + INIT (+ passthrough)
    threading.Thread(target=session.serve).start()
    ...
    session.shutdown()                         # detach + abort

Modules: ``abi`` (the kernel structs and constants, declared once),
``request`` and ``reply`` (the wire format), ``channel`` (/dev/fuse and the
mount), ``session`` (INIT and the request loop), ``handler`` (the device
interface), ``usermem`` (the caller's memory), ``errors``.
"""

from nmfuse.dev.channel import FuseChannel
from nmfuse.dev.errors import (
                               AlreadyServed,
                               BadMountPoint,
                               DeviceError,
                               MountFailed,
                               NoFuseDevice,
                               NoPassthrough,
                               NotRoot,
)
from nmfuse.dev.handler import Caller, DeviceHandler
from nmfuse.dev.session import Session, SessionStatistics
from nmfuse.dev.usermem import UserMemory

__all__ = [
    "AlreadyServed", "BadMountPoint", "Caller", "DeviceError", "DeviceHandler", "FuseChannel",
    "MountFailed", "NoFuseDevice", "NoPassthrough", "NotRoot", "Session", "SessionStatistics",
    "UserMemory",
]
