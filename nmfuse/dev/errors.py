"""Errors a new user meets when serving a device, each with a one-line message.

All derive from ``DeviceError`` so a command line can catch one type and
print ``str(e)``.  The original ``OSError`` (if any) is the ``__cause__``.
"""


class DeviceError(Exception):
    """Serving the device failed for a reason the user can act on.

    A subclass names its one-line ``MESSAGE``, formatted with the
    constructor's arguments in order.
    """

    MESSAGE = "{}"

    def __init__(self, *args):
        super().__init__(self.MESSAGE.format(*args))


def _error(name: str, message: str, doc: str) -> type[DeviceError]:
    """A ``DeviceError`` subclass: its one-line message and what it means."""
    return type(name, (DeviceError,), {"MESSAGE": message, "__doc__": doc, "__module__": __name__})


NotRoot = _error("NotRoot", "{}: permission denied (serving a FUSE device needs root)",
                  "Permission denied where serving needs root; argument: what was being done.")
NoFuseDevice = _error("NoFuseDevice", "{} does not exist: this kernel has no FUSE support loaded",
                       "/dev/fuse is missing; argument: its path.")
AlreadyServed = _error("AlreadyServed", "{} is already served by a FUSE mount (unmount it first if its daemon is gone)",
                        "A FUSE mount is already at the path; argument: the path.")
BadMountPoint = _error("BadMountPoint", "cannot serve {}: {}",
                        "The path cannot carry the device; arguments: the path, why.")
NoPassthrough = _error("NoPassthrough", "this kernel lacks FUSE passthrough ({}); a coherent shared mmap needs Linux 6.9 or later",
                        "The kernel lacks FUSE passthrough; argument: what showed it.")
MountFailed = _error("MountFailed", "mounting {0} failed: {2} (errno {1})",
                      "mount(2) failed otherwise; arguments: the path, errno, its text.")
