"""``nmfuse run -- COMMAND``: one program against a private /dev/netmap.

The process enters a new mount namespace whose mounts do not propagate
back to the host; the daemon then serves the device there and runs COMMAND
as a child, which inherits the namespace (see ``Daemon.run``).

The one trace on the host while it runs: when the mount point did not
exist, an empty placeholder file is created for the mount and removed
again afterwards (files are shared across mount namespaces; mounts are
not).
"""

import os

import cffi

_ffi = cffi.FFI()
_ffi.cdef("""
int unshare(int flags);
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
""")
_libc = _ffi.dlopen(None)

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def enter_private_mount_namespace() -> None:
    """Raises OSError if the kernel refuses (not root, or no namespaces)."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        err = _ffi.errno
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    if _libc.mount(b"none", b"/", _ffi.NULL, MS_REC | MS_PRIVATE, _ffi.NULL) != 0:
        err = _ffi.errno
        raise OSError(err, f"making / private: {os.strerror(err)}")

