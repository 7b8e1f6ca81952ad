"""The FUSE kernel ABI, declared once: structs in one cdef, constants as enums.

Every struct below is copied from ``fuse_kernel.h`` (protocol 7.45, the
version this kernel offers), field names unchanged, padding fields under
their header names.  The comment above each struct gives the ABI minor that
introduced it, and the minor of any field added later.  The system header
is older (7.38), which is why the layouts are declared here instead of read
from it.

The same cdef declares the few libc calls Python's standard library lacks:
mount(2), umount2(2), process_vm_readv(2) and process_vm_writev(2), loaded
from the running process (``ffi.dlopen(None)``).  cffi saves ``errno``
after every such call; read it from ``ffi.errno`` right after the call.

Nothing else in ``nmfuse.dev`` spells out a layout: sizes come from
``ffi.sizeof`` and fields from the declared names.
"""

import enum

import cffi

# fuse_kernel.h: FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION we implement.
KERNEL_VERSION = 7
KERNEL_MINOR_VERSION = 45

CDEF = """
/* ---- fuse_kernel.h ------------------------------------------------- */

/* 7.1; total_extlen 7.38 (was padding). */
struct fuse_in_header {
    uint32_t len;
    uint32_t opcode;
    uint64_t unique;
    uint64_t nodeid;
    uint32_t uid;
    uint32_t gid;
    uint32_t pid;
    uint16_t total_extlen;
    uint16_t padding;
};

/* 7.1; error is a negative errno, or a notify code when unique is 0 (7.11). */
struct fuse_out_header {
    uint32_t len;
    int32_t  error;
    uint64_t unique;
};

/* 7.1; max_readahead and flags 7.6; flags2 and unused 7.36. */
struct fuse_init_in {
    uint32_t major;
    uint32_t minor;
    uint32_t max_readahead;
    uint32_t flags;
    uint32_t flags2;
    uint32_t unused[11];
};

/* 7.1; flags, max_write 7.5; max_readahead 7.6; max_background,
   congestion_threshold 7.13; time_gran 7.23; max_pages 7.28;
   map_alignment 7.31; flags2 7.36; max_stack_depth 7.40;
   request_timeout 7.43. */
struct fuse_init_out {
    uint32_t major;
    uint32_t minor;
    uint32_t max_readahead;
    uint32_t flags;
    uint16_t max_background;
    uint16_t congestion_threshold;
    uint32_t max_write;
    uint32_t time_gran;
    uint16_t max_pages;
    uint16_t map_alignment;
    uint32_t flags2;
    uint32_t max_stack_depth;
    uint16_t request_timeout;
    uint16_t unused[11];
};

/* 7.1; blksize 7.9; flags 7.32 (was padding). */
struct fuse_attr {
    uint64_t ino;
    uint64_t size;
    uint64_t blocks;
    uint64_t atime;
    uint64_t mtime;
    uint64_t ctime;
    uint32_t atimensec;
    uint32_t mtimensec;
    uint32_t ctimensec;
    uint32_t mode;
    uint32_t nlink;
    uint32_t uid;
    uint32_t gid;
    uint32_t rdev;
    uint32_t blksize;
    uint32_t flags;
};

/* 7.1 */
struct fuse_attr_out {
    uint64_t attr_valid;
    uint32_t attr_valid_nsec;
    uint32_t dummy;
    struct fuse_attr attr;
};

/* 7.9 */
struct fuse_getattr_in {
    uint32_t getattr_flags;
    uint32_t dummy;
    uint64_t fh;
};

/* 7.1; open_flags 7.33 (was unused). */
struct fuse_open_in {
    uint32_t flags;
    uint32_t open_flags;
};

/* 7.1; backing_id 7.40 (was padding). */
struct fuse_open_out {
    uint64_t fh;
    uint32_t open_flags;
    int32_t  backing_id;
};

/* 7.1; release_flags and lock_owner 7.8. */
struct fuse_release_in {
    uint64_t fh;
    uint32_t flags;
    uint32_t release_flags;
    uint64_t lock_owner;
};

/* 7.1; lock_owner 7.7. */
struct fuse_flush_in {
    uint64_t fh;
    uint32_t unused;
    uint32_t padding;
    uint64_t lock_owner;
};

/* 7.1 */
struct fuse_forget_in {
    uint64_t nlookup;
};

/* 7.16 */
struct fuse_forget_one {
    uint64_t nodeid;
    uint64_t nlookup;
};

/* 7.16; followed by count fuse_forget_one records. */
struct fuse_batch_forget_in {
    uint32_t count;
    uint32_t dummy;
};

/* 7.7 */
struct fuse_interrupt_in {
    uint64_t unique;
};

/* 7.11; followed by in_size bytes of the caller's argument. */
struct fuse_ioctl_in {
    uint64_t fh;
    uint32_t flags;
    uint32_t cmd;
    uint64_t arg;
    uint32_t in_size;
    uint32_t out_size;
};

/* 7.11; followed by the bytes copied back to the caller. */
struct fuse_ioctl_out {
    int32_t  result;
    uint32_t flags;
    uint32_t in_iovs;
    uint32_t out_iovs;
};

/* 7.11; events 7.21 (was padding). */
struct fuse_poll_in {
    uint64_t fh;
    uint64_t kh;
    uint32_t flags;
    uint32_t events;
};

/* 7.11 */
struct fuse_poll_out {
    uint32_t revents;
    uint32_t padding;
};

/* 7.11 */
struct fuse_notify_poll_wakeup_out {
    uint64_t kh;
};

/* 7.40: the argument of FUSE_DEV_IOC_BACKING_OPEN. */
struct fuse_backing_map {
    int32_t  fd;
    uint32_t flags;
    uint64_t padding;
};

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
"""

ffi = cffi.FFI()
ffi.cdef(CDEF)
libc = ffi.dlopen(None)

# Sizes used on the hot path, read once from the declarations above.
IN_HEADER_SIZE = ffi.sizeof("struct fuse_in_header")
OUT_HEADER_SIZE = ffi.sizeof("struct fuse_out_header")


class Opcode(enum.IntEnum):
    """Request opcodes (fuse_kernel.h enum fuse_opcode)."""

    LOOKUP = 1
    FORGET = 2
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41
    BATCH_FORGET = 42
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49
    SYNCFS = 50
    TMPFILE = 51
    STATX = 52


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
