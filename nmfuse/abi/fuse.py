"""The FUSE kernel ABI for Python: ``fuse_abi.h`` through cffi, constants as enums.

The structs are declared once, in ``fuse_abi.h`` beside this file (protocol
7.45, the version this kernel offers; the system header is older, 7.38),
which the C programs in ``bench/`` include too.  Opcodes come from that
header's ``enum fuse_opcode``; the other constant groups are enums below,
each naming its ``fuse_kernel.h`` source.

The same ffi declares the few libc calls Python's standard library lacks:
mount(2), umount2(2), process_vm_readv(2), process_vm_writev(2), pidfd_open(2)
and pidfd_getfd(2), loaded
from the running process (``ffi.dlopen(None)``).  cffi saves ``errno``
after every such call; read it from ``ffi.errno`` right after the call.

Nothing else in ``nmfuse.dev`` spells out a layout: sizes come from
``ffi.sizeof`` and fields from the declared names.
"""

import enum

import cffi

from nmfuse.abi.cdef import FUSE_HEADER as HEADER
from nmfuse.abi.cdef import cdef_source

LIBC_CDEF = """
/* ---- libc -------------------------------------------------------- */

typedef int pid_t;  /* as on Linux */

struct iovec {
    void  *iov_base;
    size_t iov_len;
};

int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);
int umount2(const char *target, int flags);
ssize_t process_vm_readv(pid_t pid,
                         const struct iovec *local_iov, unsigned long liovcnt,
                         const struct iovec *remote_iov, unsigned long riovcnt,
                         unsigned long flags);
ssize_t process_vm_writev(pid_t pid,
                          const struct iovec *local_iov, unsigned long liovcnt,
                          const struct iovec *remote_iov, unsigned long riovcnt,
                          unsigned long flags);
int pidfd_open(pid_t pid, unsigned int flags);
int pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
"""

ffi = cffi.FFI()
ffi.cdef(cdef_source(HEADER))
ffi.cdef(LIBC_CDEF)
libc = ffi.dlopen(None)

# fuse_abi.h: FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION we implement.
KERNEL_VERSION = libc.FUSE_KERNEL_VERSION
KERNEL_MINOR_VERSION = libc.FUSE_KERNEL_MINOR_VERSION

# Sizes used on the hot path, read once from the declarations above.
IN_HEADER_SIZE = ffi.sizeof("struct fuse_in_header")
OUT_HEADER_SIZE = ffi.sizeof("struct fuse_out_header")


Opcode = enum.IntEnum("Opcode", {name[len("FUSE_"):]: value for name, value in
                                  ffi.typeof("enum fuse_opcode").relements.items()})
Opcode.__doc__ = "Request opcodes (fuse_kernel.h enum fuse_opcode, declared in fuse_abi.h)."


class InitFlag(enum.IntFlag):
    """fuse_init_in/out ``flags`` (bits 0-31) and ``flags2`` (bits 32-63, sent
    as flags2 = value >> 32) (fuse_kernel.h FUSE_* init flags).

    Only the bits this layer reads or asks for are named.
    """

    ASYNC_READ = 1 << 0
    ATOMIC_O_TRUNC = 1 << 3
    BIG_WRITES = 1 << 5              # 7.9
    MAX_PAGES = 1 << 22              # 7.28: init_out.max_pages is valid
    INIT_EXT = 1 << 30               # 7.36: flags2 is valid
    PASSTHROUGH = 1 << 37            # 7.40: needs max_stack_depth >= 1
    OVER_IO_URING = 1 << 41          # 7.42: requests wait for (then take) the io_uring queues

    @classmethod
    def from_words(cls, flags: int, flags2: int) -> "InitFlag":
        """One 64-bit set from the two 32-bit INIT words (bits outside the
        named members are kept)."""
        return cls(flags | (flags2 << 32))

    def words(self) -> tuple[int, int]:
        """``(flags, flags2)`` as fuse_init_out carries them."""
        return int(self) & 0xFFFFFFFF, int(self) >> 32


class OpenOutFlag(enum.IntFlag):
    """fuse_open_out.open_flags (fuse_kernel.h FOPEN_*)."""

    DIRECT_IO = 1 << 0
    KEEP_CACHE = 1 << 1
    NONSEEKABLE = 1 << 2
    CACHE_DIR = 1 << 3               # 7.28
    STREAM = 1 << 4                  # 7.31
    NOFLUSH = 1 << 5                 # 7.35
    PARALLEL_DIRECT_WRITES = 1 << 6  # 7.38
    PASSTHROUGH = 1 << 7             # 7.40: backing_id names the backing file


FOPEN_PASSTHROUGH = OpenOutFlag.PASSTHROUGH


class GetattrFlag(enum.IntFlag):
    """fuse_getattr_in.getattr_flags (fuse_kernel.h FUSE_GETATTR_*)."""

    FH = 1 << 0


class IoctlFlag(enum.IntFlag):
    """fuse_ioctl_in.flags (fuse_kernel.h FUSE_IOCTL_*)."""

    COMPAT = 1 << 0
    UNRESTRICTED = 1 << 1
    RETRY = 1 << 2
    BIT32 = 1 << 3                   # FUSE_IOCTL_32BIT, 7.16
    DIR = 1 << 4                     # 7.18
    COMPAT_X32 = 1 << 5              # 7.30


class PollFlag(enum.IntFlag):
    """fuse_poll_in.flags (fuse_kernel.h FUSE_POLL_*)."""

    SCHEDULE_NOTIFY = 1 << 0


class NotifyCode(enum.IntEnum):
    """fuse_out_header.error of an unsolicited message (unique 0)
    (fuse_kernel.h enum fuse_notify_code)."""

    POLL = 1
    INVAL_INODE = 2
    INVAL_ENTRY = 3
    STORE = 4
    RETRIEVE = 5
    DELETE = 6
    RESEND = 7                       # 7.40


class DevIoctl(enum.IntEnum):
    """ioctls on the /dev/fuse fd itself (fuse_kernel.h FUSE_DEV_IOC_*)."""

    CLONE = 0x8004E500               # _IOR(229, 0, uint32_t)
    BACKING_OPEN = 0x4010E501        # _IOW(229, 1, struct fuse_backing_map), 7.40
    BACKING_CLOSE = 0x4004E502       # _IOW(229, 2, uint32_t), 7.40


class MountFlag(enum.IntFlag):
    """mount(2) flags (sys/mount.h MS_*)."""

    NOSUID = 2
    NODEV = 4


class UmountFlag(enum.IntFlag):
    """umount2(2) flags (sys/mount.h MNT_*)."""

    FORCE = 1
    DETACH = 2
