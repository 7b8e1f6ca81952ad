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

from nmfuse.dev.abi import IN_HEADER_SIZE, IoctlFlag, Opcode, PollFlag, ffi


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

    The views (cffi pointers at a fixed offset) are made once per
    ``(offset, ctype)`` and reused: the request classes ask only for
    their argument right after the header, so the cache stays tiny.
    """

    __slots__ = ("data", "_base", "_pointers", "_sizes", "header")

    def __init__(self, size: int):
        self.data = bytearray(size)
        self._base = ffi.from_buffer(self.data)
        self._pointers: dict[tuple[int, str], object] = {}
        self._sizes: dict[str, int] = {}
        self.header = self.pointer(0, "struct fuse_in_header")

    def __len__(self) -> int:
        return len(self.data)

    def sizeof(self, ctype: str) -> int:
        size = self._sizes.get(ctype)
        if size is None:
            size = self._sizes[ctype] = ffi.sizeof(ctype)
        return size

    def pointer(self, offset: int, ctype: str):
        """A ``ctype *`` into the buffer at ``offset`` (no bounds check)."""
        key = (offset, ctype)
        p = self._pointers.get(key)
        if p is None:
            # Misalignment can only come from our own request classes.
            assert offset % ffi.alignof(ctype) == 0, (offset, ctype)
            p = self._pointers[key] = ffi.cast(ctype + " *", self._base + offset)
        return p

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
        return self.end - self.offset

    def fetch(self, ctype: str):
        """A ``ctype *`` view of the next bytes, or None if too few are left."""
        size = self.buffer.sizeof(ctype)
        if self.offset + size > self.end:
            return None
        p = self.buffer.pointer(self.offset, ctype)
        self.offset += size
        return p

    def rest(self) -> memoryview:
        """A view (not a copy) of everything left; the cursor moves to the end."""
        view = memoryview(self.buffer.data)[self.offset:self.end]
        self.offset = self.end
        return view


class Request:
    """One parsed request: a view of the header, and of the argument struct in
    the subclasses that have one."""

    __slots__ = ("header",)
    opcode: ClassVar[Opcode]

    def __init__(self, header, cursor: Cursor):
        self.header = header

    @property
    def unique(self) -> int:
        return self.header.unique

    def _fetch(self, cursor: Cursor, ctype: str):
        arg = cursor.fetch(ctype)
        if arg is None:
            raise Truncated(self.header.unique, self.opcode, ctype,
                            cursor.buffer.sizeof(ctype), cursor.remaining)
        return arg

    def details(self) -> str:
        return ""

    def __str__(self) -> str:
        h = self.header
        extra = self.details()
        return (f"FUSE({h.unique}) {self.opcode.name}{' ' + extra if extra else ''}"
                f" pid={h.pid} uid={h.uid}")


class Init(Request):
    """INIT, copied into a zeroed fuse_init_in: an older kernel's shorter
    struct (no flags2) reads as zeros in the fields it lacks."""

    __slots__ = ("arg",)
    opcode = Opcode.INIT
    MIN_SIZE = 8  # major and minor: enough to answer with our version

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        have = cursor.remaining
        if have < self.MIN_SIZE:
            raise Truncated(header.unique, self.opcode, "struct fuse_init_in", self.MIN_SIZE, have)
        self.arg = ffi.new("struct fuse_init_in *")
        size = min(have, ffi.sizeof(self.arg[0]))
        ffi.memmove(self.arg, cursor.rest()[:size], size)

    def details(self) -> str:
        a = self.arg
        return f"{a.major}.{a.minor} flags={a.flags:#x} flags2={a.flags2:#x}"


class Getattr(Request):
    __slots__ = ("arg",)
    opcode = Opcode.GETATTR

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_getattr_in")

    def details(self) -> str:
        return f"flags={self.arg.getattr_flags:#x} fh={self.arg.fh}"


class Open(Request):
    __slots__ = ("arg",)
    opcode = Opcode.OPEN

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_open_in")

    def details(self) -> str:
        return f"flags={self.arg.flags:#o}"


class Release(Request):
    __slots__ = ("arg",)
    opcode = Opcode.RELEASE

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_release_in")

    def details(self) -> str:
        return f"fh={self.arg.fh} flags={self.arg.flags:#o}"


class Flush(Request):
    __slots__ = ("arg",)
    opcode = Opcode.FLUSH

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_flush_in")

    def details(self) -> str:
        return f"fh={self.arg.fh}"


class Ioctl(Request):
    """IOCTL: fuse_ioctl_in followed by ``in_size`` bytes of the argument."""

    __slots__ = ("arg", "_buffer", "_data_offset")
    opcode = Opcode.IOCTL

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_ioctl_in")
        in_size = self.arg.in_size
        if in_size > cursor.remaining:
            raise Truncated(header.unique, self.opcode, "ioctl data", in_size, cursor.remaining)
        self._buffer, self._data_offset = cursor.buffer, cursor.offset
        cursor.offset += in_size

    def data(self) -> bytes:
        """A copy of the ``in_size`` bytes the caller passed in."""
        n = self.arg.in_size
        return self._buffer.copy(self._data_offset, n) if n else b""

    def details(self) -> str:
        a = self.arg
        flags = f" flags={IoctlFlag(a.flags)!r}" if a.flags else ""
        return f"fh={a.fh} cmd={a.cmd:#x} arg={a.arg:#x} in={a.in_size} out={a.out_size}{flags}"


class Poll(Request):
    __slots__ = ("arg",)
    opcode = Opcode.POLL

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_poll_in")

    def details(self) -> str:
        a = self.arg
        notify = " notify" if a.flags & PollFlag.SCHEDULE_NOTIFY else ""
        return f"fh={a.fh} kh={a.kh} events={a.events:#x}{notify}"


class Destroy(Request):
    __slots__ = ()
    opcode = Opcode.DESTROY


class Forget(Request):
    __slots__ = ("arg",)
    opcode = Opcode.FORGET

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_forget_in")

    def details(self) -> str:
        return f"nodeid={self.header.nodeid} nlookup={self.arg.nlookup}"


class BatchForget(Request):
    """BATCH_FORGET: a count, then that many fuse_forget_one records."""

    __slots__ = ("arg",)
    opcode = Opcode.BATCH_FORGET

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_batch_forget_in")
        need = self.arg.count * cursor.buffer.sizeof("struct fuse_forget_one")
        if need > cursor.remaining:
            raise Truncated(header.unique, self.opcode, "forget records", need, cursor.remaining)

    def details(self) -> str:
        return f"count={self.arg.count}"


class Interrupt(Request):
    __slots__ = ("arg",)
    opcode = Opcode.INTERRUPT

    def __init__(self, header, cursor):
        super().__init__(header, cursor)
        self.arg = self._fetch(cursor, "struct fuse_interrupt_in")

    def details(self) -> str:
        return f"of={self.arg.unique}"


REQUEST_TYPES: dict[int, type[Request]] = {
    cls.opcode: cls
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
    return cls(header, Cursor(buffer, IN_HEADER_SIZE, nread))
