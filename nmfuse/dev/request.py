"""FUSE requests, parsed in place from one preallocated buffer.

Wire layout of every request the kernel writes to /dev/fuse::

    +------------------------+----------------------+------------------+
    | fuse_in_header (40 B)  | fuse_<op>_in struct  | payload (ioctl:  |
    | len, opcode, unique .. | (fixed per opcode)   | in_size bytes)   |
    +------------------------+----------------------+------------------+
    <------------------------- header.len = bytes read ---------------->

``RequestBuffer`` owns the bytearray that every read lands in; ``Cursor``
walks it and hands out typed cffi pointers (views, no copies); ``parse``
checks the length, picks the opcode's class from ``REQUEST_TYPES`` and
builds it.  A request object is valid only until the next read overwrites
the buffer: whoever keeps something copies it first (``Ioctl.data()``
returns a copy; ``Init`` is copied at parse time).
"""

import errno
from typing import ClassVar

from nmfuse.abi.fuse import IN_HEADER_SIZE, IoctlFlag, Opcode, PollFlag, ffi


class ParseError(Exception):
    """A request that cannot be served as read.

    ``unique`` is the request id to answer, or None when even the header is
    unusable; ``errno`` is the (positive) error to answer it with.
    """

    errno: int = errno.EIO
    unique: int | None = None


class ShortHeader(ParseError):
    """Fewer bytes than a fuse_in_header: nothing to answer."""

    def __init__(self, got: int):
        super().__init__(f"read {got} bytes, less than a {IN_HEADER_SIZE}-byte header")


class ShortRead(ParseError):
    """header.len disagrees with the number of bytes actually read."""

    def __init__(self, unique: int, declared: int, got: int):
        super().__init__(f"FUSE({unique}) header says {declared} bytes, read {got}")
        self.unique = unique


class UnknownOpcode(ParseError):
    """An opcode this layer does not serve (answered ENOSYS)."""

    errno = errno.ENOSYS

    def __init__(self, unique: int, opcode: int):
        try:
            name = Opcode(opcode).name
        except ValueError:
            name = f"opcode {opcode}"
        super().__init__(f"FUSE({unique}) {name} is not served")
        self.unique = unique
        self.opcode = opcode


class Truncated(ParseError):
    """The argument of a known opcode is shorter than its struct or payload."""

    def __init__(self, unique: int, opcode: int, what: str, need: int, have: int):
        super().__init__(f"FUSE({unique}) {Opcode(opcode).name}: {what} needs {need} bytes, {have} left")
        self.unique = unique


class RequestBuffer:
    """The one bytearray every request is read into, with typed views of it.

    A view (a cffi pointer at a fixed offset, and its size) is made once per
    ``(ctype, offset)`` and reused: the request classes ask only for their
    argument right after the header, so the cache stays tiny.  ``cursor``
    is the one cursor ``parse`` rewinds for each request.
    """

    __slots__ = ("data", "header", "cursor", "_base", "_views")

    def __init__(self, size: int):
        self.data = bytearray(size)
        self._base = ffi.from_buffer(self.data)
        self._views: dict[str, dict[int, tuple[object, int]]] = {}
        self.header = self.view(0, "struct fuse_in_header")[0]
        self.cursor = Cursor(self, 0, 0)

    def __len__(self) -> int:
        return len(self.data)

    def view(self, offset: int, ctype: str) -> tuple[object, int]:
        """``(ctype * at offset, sizeof(ctype))``; no bounds check."""
        by_offset = self._views.get(ctype)
        if by_offset is None:
            by_offset = self._views[ctype] = {}
        view = by_offset.get(offset)
        if view is None:
            # Misalignment can only come from our own request classes.
            assert offset % ffi.alignof(ctype) == 0, (offset, ctype)
            view = by_offset[offset] = (ffi.cast(ctype + " *", self._base + offset), ffi.sizeof(ctype))
        return view

    def copy(self, offset: int, size: int) -> bytes:
        """A private copy of ``size`` bytes at ``offset``."""
        return ffi.unpack(self._base + offset, size)


class Cursor:
    """Walks one request in a ``RequestBuffer`` from ``offset`` to ``end``."""

    __slots__ = ("buffer", "offset", "end")

    def __init__(self, buffer: RequestBuffer, offset: int, end: int):
        self.buffer, self.offset, self.end = buffer, offset, end

    @property
    def remaining(self) -> int:
        """Bytes left between ``offset`` and ``end``."""
        return self.end - self.offset

    def fetch(self, ctype: str):
        """A ``ctype *`` view of the next bytes, or None if too few are left."""
        offset = self.offset
        try:
            pointer, size = self.buffer._views[ctype][offset]  # made before: the usual case
        except KeyError:
            pointer, size = self.buffer.view(offset, ctype)
        if offset + size > self.end:
            return None
        self.offset = offset + size
        return pointer

    def rest(self) -> memoryview:
        """A view (not a copy) of everything left; the cursor moves to the end."""
        view = memoryview(self.buffer.data)[self.offset:self.end]
        self.offset = self.end
        return view


class Request:
    """One parsed request: a view of the header and, when the opcode has
    one, of its argument struct (``ARG``)."""

    __slots__ = ("header", "arg")
    opcode: ClassVar[Opcode]
    op: ClassVar[int]  # int(opcode): a plain int indexes tables faster
    ARG: ClassVar[str | None] = None  # the fuse_*_in struct after the header

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.op = int(cls.opcode)

    def __init__(self, header, cursor: Cursor):
        self.header = header
        ctype = self.ARG
        if ctype is not None:
            arg = self.arg = cursor.fetch(ctype)
            if arg is None:
                raise Truncated(header.unique, self.opcode, ctype, ffi.sizeof(ctype), cursor.remaining)

    @property
    def unique(self) -> int:
        """The kernel's id of this request, which its reply carries."""
        return self.header.unique

    # The arguments for the one-line log form: a format of ``a`` (the
    # argument struct) and ``h`` (the header).
    DETAILS: ClassVar[str] = ""

    def details(self) -> str:
        """The arguments for the one-line log form (``__str__``)."""
        return self.DETAILS.format(a=self.arg, h=self.header) if self.DETAILS else ""

    def __str__(self) -> str:
        h = self.header
        extra = self.details()
        return (f"FUSE({h.unique}) {self.opcode.name}{' ' + extra if extra else ''}"
                f" pid={h.pid} uid={h.uid}")


def _request(name: str, opcode: Opcode, arg: str | None = None, details: str = "") -> type[Request]:
    """A request class whose whole shape is its opcode, its argument struct
    and its log format (most opcodes)."""
    return type(name, (Request,), {
        "__slots__": (), "opcode": opcode, "ARG": arg, "DETAILS": details, "__module__": __name__,
        "__doc__": f"{opcode.name}: the header and {arg or 'no argument'}.",
    })


class Init(Request):
    """INIT, copied into a zeroed fuse_init_in: an older kernel's shorter
    struct (no flags2) reads as zeros in the fields it lacks."""

    __slots__ = ()
    opcode = Opcode.INIT
    DETAILS = "{a.major}.{a.minor} flags={a.flags:#x} flags2={a.flags2:#x}"
    MIN_SIZE = 8  # major and minor: enough to answer with our version

    def __init__(self, header, cursor):
        self.header = header
        have = cursor.remaining
        if have < self.MIN_SIZE:
            raise Truncated(header.unique, self.opcode, "struct fuse_init_in", self.MIN_SIZE, have)
        self.arg = ffi.new("struct fuse_init_in *")
        size = min(have, ffi.sizeof(self.arg[0]))
        ffi.memmove(self.arg, cursor.rest()[:size], size)


Getattr = _request("Getattr", Opcode.GETATTR, "struct fuse_getattr_in", "flags={a.getattr_flags:#x} fh={a.fh}")


Open = _request("Open", Opcode.OPEN, "struct fuse_open_in", "flags={a.flags:#o}")


Release = _request("Release", Opcode.RELEASE, "struct fuse_release_in", "fh={a.fh} flags={a.flags:#o}")


Flush = _request("Flush", Opcode.FLUSH, "struct fuse_flush_in", "fh={a.fh}")


class Ioctl(Request):
    """IOCTL: fuse_ioctl_in followed by ``in_size`` bytes of the argument."""

    __slots__ = ("_buffer", "_data_offset")
    opcode = Opcode.IOCTL
    ARG = "struct fuse_ioctl_in"

    def __init__(self, header, cursor):
        Request.__init__(self, header, cursor)
        in_size, offset = self.arg.in_size, cursor.offset
        if offset + in_size > cursor.end:
            raise Truncated(header.unique, self.opcode, "ioctl data", in_size, cursor.remaining)
        self._buffer, self._data_offset = cursor.buffer, offset
        cursor.offset = offset + in_size

    def data(self) -> bytes:
        """A copy of the ``in_size`` bytes the caller passed in."""
        n = self.arg.in_size
        return self._buffer.copy(self._data_offset, n) if n else b""

    def details(self) -> str:
        """fh, command, raw argument, in/out sizes and flags, for the log line."""
        a = self.arg
        flags = f" flags={IoctlFlag(a.flags)!r}" if a.flags else ""
        return f"fh={a.fh} cmd={a.cmd:#x} arg={a.arg:#x} in={a.in_size} out={a.out_size}{flags}"


class Poll(Request):
    """POLL: fuse_poll_in; with SCHEDULE_NOTIFY the kernel wants a notification."""

    __slots__ = ()
    opcode = Opcode.POLL
    ARG = "struct fuse_poll_in"

    def details(self) -> str:
        """fh, poll handle, events and whether a notification is wanted, for the log line."""
        a = self.arg
        notify = " notify" if a.flags & PollFlag.SCHEDULE_NOTIFY else ""
        return f"fh={a.fh} kh={a.kh} events={a.events:#x}{notify}"


Destroy = _request("Destroy", Opcode.DESTROY)


Forget = _request("Forget", Opcode.FORGET, "struct fuse_forget_in", "nodeid={h.nodeid} nlookup={a.nlookup}")


class BatchForget(Request):
    """BATCH_FORGET: a count, then that many fuse_forget_one records."""

    __slots__ = ()
    opcode = Opcode.BATCH_FORGET
    DETAILS = "count={a.count}"
    ARG = "struct fuse_batch_forget_in"

    def __init__(self, header, cursor):
        Request.__init__(self, header, cursor)
        need = self.arg.count * ffi.sizeof("struct fuse_forget_one")
        if need > cursor.remaining:
            raise Truncated(header.unique, self.opcode, "forget records", need, cursor.remaining)


Interrupt = _request("Interrupt", Opcode.INTERRUPT, "struct fuse_interrupt_in", "of={a.unique}")


# Keys are plain ints: the opcode read from the header looks them up.
REQUEST_TYPES: dict[int, type[Request]] = {
    cls.op: cls
    for cls in (Init, Getattr, Open, Release, Flush, Ioctl, Poll, Destroy, Forget, BatchForget, Interrupt)
}


def parse(buffer: RequestBuffer, nread: int) -> Request:
    """The request in the first ``nread`` bytes of ``buffer``.

    Raises:
        ShortHeader: fewer than 40 bytes.
        ShortRead: ``header.len`` differs from ``nread``.
        UnknownOpcode: an opcode without a class in ``REQUEST_TYPES``.
        Truncated: the opcode's argument does not fit in ``header.len``.
    """
    if nread < IN_HEADER_SIZE:
        raise ShortHeader(nread)
    header = buffer.header
    if header.len != nread:
        raise ShortRead(header.unique, header.len, nread)
    cls = REQUEST_TYPES.get(header.opcode)
    if cls is None:
        raise UnknownOpcode(header.unique, header.opcode)
    cursor = buffer.cursor  # rewound, not made anew: this runs for every request
    cursor.offset, cursor.end = IN_HEADER_SIZE, nread
    return cls(header, cursor)
