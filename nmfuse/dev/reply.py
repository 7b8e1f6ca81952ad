"""FUSE replies: one constructor per reply kind, each filling one out-struct.

Every constructor returns an iovec list for ``os.writev``::

    [ fuse_out_header, <out-struct>, <payload> ]
      ^ always first, never concatenated with the rest

so one write hands the kernel one complete message.  Errno values are
positive everywhere in nmfuse; the two places where the kernel wants them
negative are filled here and only here: ``fuse_out_header.error`` and
``fuse_ioctl_out.result`` (which is what the caller's ioctl() returns).

``ReusedReplies`` makes the frequent replies (ioctl, poll, errors) for the
one request thread without allocating: the same structs are refilled.
"""

from nmfuse.abi.fuse import OUT_HEADER_SIZE, InitFlag, NotifyCode, ffi

# What os.writev takes: objects with the buffer protocol (bytes, memoryview,
# cffi buffers).
IOVec = list[object]
BytesLike = bytes | bytearray | memoryview

_IOCTL_OUT_SIZE = ffi.sizeof("struct fuse_ioctl_out")
_IOCTL_REPLY_SIZE = OUT_HEADER_SIZE + _IOCTL_OUT_SIZE


def _out_header(unique: int, error: int, body_len: int):
    header = ffi.new("struct fuse_out_header *")
    header.len = OUT_HEADER_SIZE + body_len
    header.error = error
    header.unique = unique
    return ffi.buffer(header)


def _body(ctype: str, **fields):
    body = ffi.new(ctype + " *")
    for name, value in fields.items():
        setattr(body, name, value)
    return ffi.buffer(body)


def reply_error(unique: int, err: int) -> IOVec:
    """An error answer: just the header, with ``-err``.

    ``err`` is a positive errno (0 means success: use ``reply_empty``).
    """
    if err <= 0:
        raise ValueError(f"errno must be positive, got {err}")
    return [_out_header(unique, -err, 0)]


def reply_empty(unique: int) -> IOVec:
    """Success without a body (RELEASE, FLUSH, DESTROY)."""
    return [_out_header(unique, 0, 0)]


def reply_init(unique: int, *, minor: int, max_readahead: int, flags: InitFlag, max_write: int,
               max_pages: int = 0, max_background: int = 16, congestion_threshold: int = 12,
               time_gran: int = 1, max_stack_depth: int = 0, request_timeout: int = 0,
               major: int = 7) -> IOVec:
    """The 64-byte fuse_init_out; ``flags`` is split into flags and flags2."""
    low, high = InitFlag(flags).words()
    body = _body("struct fuse_init_out", major=major, minor=minor, max_readahead=max_readahead,
                 flags=low, flags2=high, max_background=max_background,
                 congestion_threshold=congestion_threshold, max_write=max_write, time_gran=time_gran,
                 max_pages=max_pages, max_stack_depth=max_stack_depth, request_timeout=request_timeout)
    return [_out_header(unique, 0, len(body)), body]


def attr_out(*, mode: int, uid: int, gid: int, ino: int = 1, nlink: int = 1, size: int = 0,
             time_ns: int = 0, valid_ns: int = 0, blksize: int = 4096) -> bytes:
    """A fuse_attr_out body (made once per session: the attributes never change)."""
    out = ffi.new("struct fuse_attr_out *")
    out.attr_valid, out.attr_valid_nsec = divmod(valid_ns, 1_000_000_000)
    a = out.attr
    a.ino, a.size, a.mode, a.nlink, a.uid, a.gid, a.blksize = ino, size, mode, nlink, uid, gid, blksize
    seconds, nsec = divmod(time_ns, 1_000_000_000)
    a.atime = a.mtime = a.ctime = seconds
    a.atimensec = a.mtimensec = a.ctimensec = nsec
    return bytes(ffi.buffer(out))


def reply_attr(unique: int, attr: bytes) -> IOVec:
    """GETATTR's answer: a fuse_attr_out body made by ``attr_out``."""
    return [_out_header(unique, 0, len(attr)), attr]


def reply_open(unique: int, fh: int, open_flags: int = 0, backing_id: int = 0) -> IOVec:
    """fuse_open_out: the handle and, with FOPEN_PASSTHROUGH, the backing file."""
    body = _body("struct fuse_open_out", fh=fh, open_flags=open_flags, backing_id=backing_id)
    return [_out_header(unique, 0, len(body)), body]


def reply_ioctl(unique: int, err: int, out: BytesLike, out_size: int) -> IOVec:
    """fuse_ioctl_out{result=-err} followed by at most ``out_size`` bytes.

    The bytes go back to the caller even when ``err`` is not 0: the kernel
    copies them and then returns the error.  A shorter ``out`` is sent as
    is: the kernel copies only what it gets, so the rest of the caller's
    buffer keeps the bytes the caller put there, as after a kernel driver
    that left them alone.
    """
    body = ffi.new("struct fuse_ioctl_out *")
    body.result = -err
    if len(out) > out_size:
        out = memoryview(out)[:out_size]
    return [_out_header(unique, 0, _IOCTL_OUT_SIZE + len(out)), ffi.buffer(body), out]


def reply_poll(unique: int, revents: int) -> IOVec:
    """fuse_poll_out: the events ``revents`` that are ready."""
    body = _body("struct fuse_poll_out", revents=revents)
    return [_out_header(unique, 0, len(body)), body]


def notify_poll(kh: int) -> IOVec:
    """An unsolicited FUSE_NOTIFY_POLL: the kernel re-polls every waiter on
    ``kh``.  Notifications carry unique 0 and the code in ``error``."""
    body = _body("struct fuse_notify_poll_wakeup_out", kh=kh)
    return [_out_header(0, NotifyCode.POLL, len(body)), body]


class ReusedReplies:
    """``reply_ioctl``, ``reply_poll``, ``reply_error`` and ``reply_empty``
    without allocation, for the request thread's hot path.

    Each kind owns one out header, one out-struct and one iovec list, all
    refilled by every call and returned as is: send the result before the
    next call of the same kind, and never from two threads.  The bytes are
    those of the module-level constructors.
    """

    __slots__ = ("_ioctl_header", "_ioctl_body", "_ioctl_iov", "_poll_header", "_poll_body",
                 "_poll_iov", "_plain_header", "_plain_iov")

    def __init__(self):
        self._ioctl_header = ffi.new("struct fuse_out_header *")
        self._ioctl_body = ffi.new("struct fuse_ioctl_out *")
        self._ioctl_iov = [ffi.buffer(self._ioctl_header), ffi.buffer(self._ioctl_body), b""]
        self._poll_header = ffi.new("struct fuse_out_header *")
        self._poll_header.len = OUT_HEADER_SIZE + ffi.sizeof("struct fuse_poll_out")
        self._poll_body = ffi.new("struct fuse_poll_out *")
        self._poll_iov = [ffi.buffer(self._poll_header), ffi.buffer(self._poll_body)]
        self._plain_header = ffi.new("struct fuse_out_header *")
        self._plain_header.len = OUT_HEADER_SIZE
        self._plain_iov = [ffi.buffer(self._plain_header)]

    def ioctl(self, unique: int, err: int, out: BytesLike, out_size: int) -> IOVec:
        """As ``reply_ioctl``."""
        n = len(out)
        if n > out_size:
            out, n = memoryview(out)[:out_size], out_size
        header = self._ioctl_header
        header.len = _IOCTL_REPLY_SIZE + n
        header.unique = unique
        self._ioctl_body.result = -err
        iov = self._ioctl_iov
        iov[2] = out
        return iov

    def poll(self, unique: int, revents: int) -> IOVec:
        """As ``reply_poll``."""
        self._poll_header.unique = unique
        self._poll_body.revents = revents
        return self._poll_iov

    def error(self, unique: int, err: int) -> IOVec:
        """As ``reply_error``.

        Raises:
            ValueError: ``err`` is not a positive errno.
        """
        if err <= 0:
            raise ValueError(f"errno must be positive, got {err}")
        header = self._plain_header
        header.unique = unique
        header.error = -err
        return self._plain_iov

    def empty(self, unique: int) -> IOVec:
        """As ``reply_empty``."""
        header = self._plain_header
        header.unique = unique
        header.error = 0
        return self._plain_iov
