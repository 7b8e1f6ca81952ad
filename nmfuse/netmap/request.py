"""NIOCCTRL requests: copy the body and option chain in, and back out.

The kernel hands the daemon only the 88-byte nmreq_header; nr_body and
nr_options are pointers into the caller's memory, read and written here
through a ``UserMemory`` (read(addr, n) / write(addr, data), OSError(EFAULT)
on a bad address).  The rules are those of nmreq_copyin / nmreq_copyout as
netmap on Linux has them: body and options are copied in one pass into one
buffer of fixed size (``COPY_BUFFER_SIZE``), and the first error ends the
copy.

1. nr_reserved != 0                            -> EINVAL, nothing read
2. a body is expected and nr_body is 0, or
   none is expected and nr_body is set         -> EINVAL (netmap has already
                                                  set nr_reserved to 1 in the
                                                  header it copies back)
3. the body cannot be read                     -> EFAULT
4. then each option in chain order, its status 0 while copying:
   - no room left in the buffer for one more option header -> EMSGSIZE,
     and no option is written back (the chain may loop);
   - its header cannot be read                 -> EFAULT;
   - type 0                                    -> EINVAL (its status too);
   - type >= NETMAP_REQ_OPT_MAX                -> skipped, body not read;
   - a type already seen (a chain looping back onto an option is one)
                                               -> EINVAL on both copies;
   - its body size or nro_size above NETMAP_REQ_MAXSIZE, body + option
     headers + option bodies so far above it, or no room in the buffer
                                               -> EMSGSIZE;
   - its body cannot be read                   -> EFAULT.
   On any of these errors the options copied so far are written back
   (headers only, with the statuses they have then: 0 unless marked EINVAL).
5. after a complete copy every option's status is EOPNOTSUPP; the handler
   of the request sets it for the options it consumes.

copyout writes the body back only on success, every option header always,
and an option body only on success and when its own status is 0.
"""

import errno
from dataclasses import dataclass, field

from nmfuse.abi import netmap as abi
from nmfuse.abi.netmap import OptType, ffi

HEADER_SIZE = ffi.sizeof("struct nmreq_header")
OPTION_SIZE = ffi.sizeof("struct nmreq_option")

# Option type -> its full C struct (header included); types absent here
# carry only the common header.  SYNC_KLOOP_EVENTFDS is sized by nro_size.
OPTION_TYPE = {
    OptType.EXTMEM: "struct nmreq_opt_extmem",
    OptType.CSB: "struct nmreq_opt_csb",
    OptType.SYNC_KLOOP_MODE: "struct nmreq_opt_sync_kloop_mode",
    OptType.OFFSETS: "struct nmreq_opt_offsets",
}


def option_body_size(reqtype: int, nro_size: int) -> int:
    """Bytes after the common header that netmap copies for an option."""
    total = OPTION_SIZE
    if reqtype in OPTION_TYPE:
        total = ffi.sizeof(OPTION_TYPE[reqtype])
    elif reqtype == OptType.SYNC_KLOOP_EVENTFDS and nro_size >= total:
        total = nro_size
    return total - OPTION_SIZE


class RequestError(Exception):
    """A request refused before dispatch; ``errno`` is what the client sees."""

    def __init__(self, code: int, why: str = ""):
        super().__init__(why or errno.errorcode.get(code, str(code)))
        self.errno = code


@dataclass
class Option:
    """One option of the chain: a private copy and where it came from."""

    uaddr: int        # where the client keeps it
    unext: int        # the client's nro_next
    reqtype: int
    size: int         # nro_size as sent
    data: bytearray   # header + body as copied in; the header part is rewritten on copyout
    status: int = 0   # while copying; EOPNOTSUPP once the whole chain is in

    def struct(self):
        """A typed pointer into ``data`` (the option's own C struct)."""
        ctype = OPTION_TYPE.get(self.reqtype, "struct nmreq_option")
        return ffi.cast(ctype + " *", ffi.from_buffer(self.data))

    @property
    def name(self) -> str:
        """The option type's name, for messages (``option N`` when unknown)."""
        try:
            return OptType(self.reqtype).name
        except ValueError:
            return f"option {self.reqtype}"


@dataclass
class Request:
    """A NIOCCTRL request after copyin.

    ``header`` is a private copy of the client's header (its pointers still
    the client's); ``body`` is a private C struct or None; ``from_user``
    False marks requests built by the daemon (legacy ioctls), which are
    neither copied in nor out.
    """

    header: object
    body: object = None
    options: list[Option] = field(default_factory=list)
    by_type: dict[int, Option] = field(default_factory=dict)
    from_user: bool = True
    memory: object = None  # the caller's UserMemory, for options that point elsewhere (CSB)

    @property
    def reqtype(self) -> int:
        """The NETMAP_REQ_* type in the header."""
        return self.header.nr_reqtype

    @property
    def name(self) -> str:
        """The port name in the header (nr_name)."""
        return ffi.string(self.header.nr_name).decode("latin-1")

    def option(self, reqtype: int) -> Option | None:
        """The option of that type, as netmap's nmreq_getoption."""
        return self.by_type.get(reqtype)

    def unconsumed(self) -> bool:
        """True if an option is still marked unsupported (nmreq_checkoptions)."""
        return any(o.status == errno.EOPNOTSUPP for o in self.options)

    def header_bytes(self) -> bytes:
        """The header as bytes, to copy back to the caller."""
        return bytes(ffi.buffer(self.header))


def new_header(data: bytes):
    """A private nmreq_header from the 88 bytes the kernel delivered."""
    hdr = ffi.new("struct nmreq_header *")
    ffi.memmove(hdr, data[:HEADER_SIZE], min(len(data), HEADER_SIZE))
    return hdr


def new_body(reqtype: int):
    """A zeroed body of the C struct ``reqtype`` takes, or None if it takes none."""
    ctype = abi.BODY_TYPE.get(reqtype)
    return ffi.new(ctype + " *") if ctype else None


# netmap's copy buffer: the two saved header pointers, the option table
# (one pointer per option type) and, for each option, the saved user next
# pointer, all around NETMAP_REQ_MAXSIZE bytes of body and options.
_POINTER = 8
COPY_BUFFER_SIZE = (2 + abi.NETMAP_REQ_OPT_MAX) * _POINTER + abi.NETMAP_REQ_MAXSIZE \
    + abi.NETMAP_REQ_OPT_MAX * _POINTER


class _CopyBuffer:
    """The two sizes nmreq_copyin keeps while it copies: ``used``, the bytes
    taken in its buffer, and ``request``, body + option headers + option
    bodies, bounded by NETMAP_REQ_MAXSIZE."""

    def __init__(self, body_size: int):
        self.used = 2 * _POINTER + body_size + abi.NETMAP_REQ_OPT_MAX * _POINTER
        self.request = body_size


def copyin(hdr, mem) -> Request:
    """Copy in the body and options of ``hdr`` (nmreq_copyin of netmap on Linux).

    Sets ``hdr.nr_reserved`` to 1 once the header is accepted, as netmap
    does to mark its kernel copy; copyout clears it.

    Raises:
        RequestError: EINVAL, EMSGSIZE or EFAULT as listed in the module
            doc; when options were already copied, their headers have been
            written back with their statuses.
    """
    if hdr.nr_reserved:
        raise RequestError(errno.EINVAL, "nr_reserved must be zero")
    hdr.nr_reserved = 1
    rqsz = abi.body_size(hdr.nr_reqtype)
    if bool(rqsz) != bool(hdr.nr_body):
        raise RequestError(errno.EINVAL, "nr_body expected but not found, or vice versa")

    req = Request(header=hdr, body=new_body(hdr.nr_reqtype), memory=mem)
    copy = _CopyBuffer(rqsz)
    try:
        if rqsz:
            _read_into(mem, hdr.nr_body, req.body, rqsz)
        uaddr = hdr.nr_options
        while uaddr:
            uaddr = _copyin_option(req, mem, uaddr, copy)
    except RequestError as e:
        # netmap's out_restore: write back what was copied; the copyin
        # error stands even if that write-back faults
        copyout(req, mem, e.errno)
        raise
    for opt in req.options:
        opt.status = errno.EOPNOTSUPP
    return req


def _copyin_option(req: Request, mem, uaddr: int, copy: _CopyBuffer) -> int:
    """Copy the option at ``uaddr`` into ``req``; returns the user's next pointer."""
    if copy.used + _POINTER + OPTION_SIZE > COPY_BUFFER_SIZE:
        # the chain may loop back on itself: netmap writes no option back
        req.options.clear()
        raise RequestError(errno.EMSGSIZE, "option chain longer than the copy buffer")
    data = bytearray(_read(mem, uaddr, OPTION_SIZE))
    copy.used += _POINTER + OPTION_SIZE
    copy.request += OPTION_SIZE
    head = ffi.cast("struct nmreq_option *", ffi.from_buffer(data))
    opt = Option(uaddr=uaddr, unext=head.nro_next, reqtype=head.nro_reqtype,
                 size=head.nro_size, data=data)
    req.options.append(opt)
    if opt.reqtype < 1:
        opt.status = errno.EINVAL
        raise RequestError(errno.EINVAL, "option type 0")
    if opt.reqtype >= abi.NETMAP_REQ_OPT_MAX:
        return opt.unext  # stays in the chain; EOPNOTSUPP once the copy completes
    first = req.by_type.get(opt.reqtype)
    if first is not None:
        opt.status = first.status = errno.EINVAL
        raise RequestError(errno.EINVAL, f"duplicate {opt.name}")
    req.by_type[opt.reqtype] = opt
    extra = option_body_size(opt.reqtype, opt.size)
    if (extra > abi.NETMAP_REQ_MAXSIZE or opt.size > abi.NETMAP_REQ_MAXSIZE
            or copy.request + extra > abi.NETMAP_REQ_MAXSIZE
            or copy.used + extra > COPY_BUFFER_SIZE):
        raise RequestError(errno.EMSGSIZE, f"{opt.name} too large")
    copy.request += extra
    copy.used += extra
    if extra:
        data += _read(mem, uaddr + OPTION_SIZE, extra)
    return opt.unext


def copyout(req: Request, mem, error: int) -> int:
    """Write the body (on success) and the options back; returns the errno
    the client must see (EFAULT if the write-back itself failed)."""
    if not req.from_user:
        return error
    req.header.nr_reserved = 0
    try:
        if not error and req.body is not None:
            mem.write(req.header.nr_body, bytes(ffi.buffer(req.body)))
        for opt in req.options:
            head = ffi.cast("struct nmreq_option *", ffi.from_buffer(opt.data))
            head.nro_next = opt.unext
            head.nro_status = opt.status
            if not error and not opt.status:
                mem.write(opt.uaddr, bytes(opt.data))
            else:
                mem.write(opt.uaddr, bytes(opt.data[:OPTION_SIZE]))
    except OSError as e:
        return e.errno or errno.EFAULT
    return error


def _read(mem, uaddr: int, size: int) -> bytes:
    try:
        return mem.read(uaddr, size)
    except OSError as e:
        raise RequestError(e.errno or errno.EFAULT, f"cannot read {size} bytes at {uaddr:#x}") from None


def _read_into(mem, uaddr: int, cdata, size: int) -> None:
    ffi.memmove(cdata, _read(mem, uaddr, size), size)
