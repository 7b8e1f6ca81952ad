"""NIOCCTRL requests: copy the body and option chain in, and back out.

The kernel hands the daemon only the 88-byte nmreq_header; nr_body and
nr_options are pointers into the caller's memory, read and written here
through a ``UserMemory`` (read(addr, n) / write(addr, data), OSError(EFAULT)
on a bad address).  The rules are netmap's nmreq_copyin / nmreq_copyout:

1. nr_reserved != 0                            -> EINVAL, nothing read
2. a body is expected and nr_body is 0, or
   none is expected and nr_body is set         -> EINVAL
3. walk the chain, summing body + option sizes;
   over NETMAP_REQ_MAXSIZE                     -> EMSGSIZE (a looping chain
                                                  ends here too: every option
                                                  adds at least its header)
4. copy the body, then each option; an unreadable pointer -> EFAULT
5. each option starts with nro_status = EOPNOTSUPP; type 0 -> EINVAL,
   type >= NETMAP_REQ_OPT_MAX -> EOPNOTSUPP, a repeated type -> EINVAL on
   both copies.  As in netmap, the error of the *last* option walked is the
   one that counts, and on such an error the option headers (with their
   statuses) are written back at once.

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
    status: int = errno.EOPNOTSUPP

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


def copyin(hdr, mem) -> Request:
    """Copy in the body and options of ``hdr`` (netmap's nmreq_copyin).

    Raises:
        RequestError: EINVAL, EMSGSIZE, EFAULT as listed in the module doc;
            when options were already copied, their headers have been
            written back with their statuses.
    """
    if hdr.nr_reserved:
        raise RequestError(errno.EINVAL, "nr_reserved must be zero")
    rqsz = abi.body_size(hdr.nr_reqtype)
    if bool(rqsz) != bool(hdr.nr_body):
        raise RequestError(errno.EINVAL, "nr_body expected but not found, or vice versa")

    # First pass: sizes only, which also bounds a looping chain.
    total = rqsz
    uaddr = hdr.nr_options
    opthdr = ffi.new("struct nmreq_option *")
    while uaddr:
        _read_into(mem, uaddr, opthdr, OPTION_SIZE)
        total += OPTION_SIZE + option_body_size(opthdr.nro_reqtype, opthdr.nro_size)
        if total > abi.NETMAP_REQ_MAXSIZE:
            raise RequestError(errno.EMSGSIZE, "request larger than NETMAP_REQ_MAXSIZE")
        uaddr = opthdr.nro_next

    req = Request(header=hdr, body=new_body(hdr.nr_reqtype), memory=mem)
    if rqsz:
        _read_into(mem, hdr.nr_body, req.body, rqsz)

    error = 0
    uaddr = hdr.nr_options
    while uaddr:
        data = bytearray(mem.read(uaddr, OPTION_SIZE))
        head = ffi.cast("struct nmreq_option *", ffi.from_buffer(data))
        opt = Option(uaddr=uaddr, unext=head.nro_next, reqtype=head.nro_reqtype,
                     size=head.nro_size, data=data)
        req.options.append(opt)
        error = 0  # netmap: each option's copy resets the error
        if opt.reqtype < 1:
            opt.status = error = errno.EINVAL
        elif opt.reqtype >= abi.NETMAP_REQ_OPT_MAX:
            error = errno.EOPNOTSUPP
        elif opt.reqtype in req.by_type:
            opt.status = req.by_type[opt.reqtype].status = error = errno.EINVAL
        else:
            req.by_type[opt.reqtype] = opt
            extra = option_body_size(opt.reqtype, opt.size)
            if extra:
                data += mem.read(uaddr + OPTION_SIZE, extra)
        uaddr = opt.unext
    if error:
        copyout(req, mem, error)
        raise RequestError(error, "invalid option")
    return req


def copyout(req: Request, mem, error: int) -> int:
    """Write the body (on success) and the options back; returns the errno
    the client must see (EFAULT if the write-back itself failed)."""
    if not req.from_user:
        return error
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


def _read_into(mem, uaddr: int, cdata, size: int) -> None:
    ffi.memmove(cdata, mem.read(uaddr, size), size)
