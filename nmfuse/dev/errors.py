"""Errors a new user meets when serving a device, each with a one-line message.

All derive from ``DeviceError`` so a command line can catch one type and
print ``str(e)``.  The original ``OSError`` (if any) is the ``__cause__``.
"""


class DeviceError(Exception):
    """Serving the device failed for a reason the user can act on."""


class NotRoot(DeviceError):
    def __init__(self, what: str):
        super().__init__(f"{what}: permission denied (serving a FUSE device needs root)")


class NoFuseDevice(DeviceError):
    def __init__(self, path: str):
        super().__init__(f"{path} does not exist: this kernel has no FUSE support loaded")


class AlreadyServed(DeviceError):
    def __init__(self, path: str):
        super().__init__(f"{path} is already served by a FUSE mount "
                         f"(unmount it first if its daemon is gone)")


class BadMountPoint(DeviceError):
    def __init__(self, path: str, why: str):
        super().__init__(f"cannot serve {path}: {why}")


class NoPassthrough(DeviceError):
    def __init__(self, detail: str):
        super().__init__(f"this kernel lacks FUSE passthrough ({detail}); "
                         f"a coherent shared mmap needs Linux 6.9 or later")


class MountFailed(DeviceError):
    def __init__(self, path: str, err: int, strerror: str):
        super().__init__(f"mounting {path} failed: {strerror} (errno {err})")
