"""C request hooks (csrc/hook.c): which requests a hook answers, the exact
reply bytes, what goes to Python instead, and that removing a hook waits
for its calls in flight.  The hooks here are cffi callbacks standing in for
the C functions a layer above installs."""

import errno
import os
import socket
import threading

import pytest

from nmfuse.abi.fuse import Opcode, PollFlag
from nmfuse.abi.fuse import ffi as fuse_ffi
from nmfuse.dev.hooks import RequestHooks, ffi, lib

FH = 7
IOCTL_SIG = "int(void *, uint32_t, uint32_t, uint32_t, int32_t *)"
POLL_SIG = "int(void *, uint32_t, uint64_t, uint32_t *)"


def request(opcode, unique=0x1122, **arg) -> bytes:
    """A request as /dev/fuse delivers it: in header, then the op struct."""
    ctype = {Opcode.IOCTL: "struct fuse_ioctl_in", Opcode.POLL: "struct fuse_poll_in"}[opcode]
    body = fuse_ffi.new(ctype + " *", arg)
    size = fuse_ffi.sizeof("struct fuse_in_header") + fuse_ffi.sizeof(ctype)
    header = fuse_ffi.new("struct fuse_in_header *", {"len": size, "opcode": opcode, "unique": unique, "pid": 5})
    return bytes(fuse_ffi.buffer(header)) + bytes(fuse_ffi.buffer(body))


def reply(unique, ctype, **fields) -> bytes:
    body = fuse_ffi.new(ctype + " *", fields)
    size = fuse_ffi.sizeof("struct fuse_out_header") + fuse_ffi.sizeof(ctype)
    header = fuse_ffi.new("struct fuse_out_header *", {"len": size, "error": 0, "unique": unique})
    return bytes(fuse_ffi.buffer(header)) + bytes(fuse_ffi.buffer(body))


class Fake:
    """Hooks backed by Python callbacks; ``calls`` records them."""

    def __init__(self, ioctl_answer=(1, 0), poll_answer=(1, 0)):
        self.calls = []
        self.ioctl_answer, self.poll_answer = ioctl_answer, poll_answer

        @ffi.callback(IOCTL_SIG)
        def ioctl(ctx, cmd, in_size, out_size, result):
            self.calls.append(("ioctl", int(ffi.cast("uintptr_t", ctx)), cmd, in_size, out_size))
            taken, result[0] = self.ioctl_answer
            return taken

        @ffi.callback(POLL_SIG)
        def poll(ctx, events, kh, revents):
            self.calls.append(("poll", int(ffi.cast("uintptr_t", ctx)), events, kh))
            taken, revents[0] = self.poll_answer
            return taken

        self.ioctl, self.poll = ioctl, poll

    def install(self, hooks, fh=FH, ctx=0x1234):
        addr = lambda p: int(ffi.cast("uintptr_t", p))
        return hooks.install(fh, addr(self.ioctl), addr(self.poll), ctx)


def answer(hooks, data: bytes) -> bytes:
    out = ffi.new("uint8_t[64]")
    n = lib.nmu_hooks_answer(hooks._table, data, len(data), out, 64)
    return bytes(ffi.buffer(out, n))


def test_an_answered_ioctl_is_one_exact_reply():
    hooks, fake = RequestHooks(), Fake(ioctl_answer=(1, errno.ENXIO))
    assert fake.install(hooks)
    got = answer(hooks, request(Opcode.IOCTL, fh=FH, cmd=0x6994))
    assert got == reply(0x1122, "struct fuse_ioctl_out", result=-errno.ENXIO)
    assert fake.calls == [("ioctl", 0x1234, 0x6994, 0, 0)]


def test_ioctls_with_data_to_copy_back_go_to_python():
    hooks, fake = RequestHooks(), Fake()
    fake.install(hooks)
    assert answer(hooks, request(Opcode.IOCTL, fh=FH, cmd=1, out_size=88)) == b""
    assert fake.calls == []


@pytest.mark.parametrize("revents, flags, kh", [
    (5, PollFlag.SCHEDULE_NOTIFY, 3),    # something ready
    (0, 0, 0),                           # nothing ready, nobody waits: 0 now
    (0, PollFlag.SCHEDULE_NOTIFY, 3),    # nothing ready, a waiter: the hook took the wake-up
])
def test_a_taken_poll_is_answered_and_the_hook_knows_whom_to_wake(revents, flags, kh):
    hooks, fake = RequestHooks(), Fake(poll_answer=(1, revents))
    fake.install(hooks)
    got = answer(hooks, request(Opcode.POLL, unique=9, fh=FH, kh=3, flags=flags, events=1))
    assert got == reply(9, "struct fuse_poll_out", revents=revents)
    assert fake.calls == [("poll", 0x1234, 1, kh)]


def test_declined_unknown_and_other_requests_go_to_python():
    hooks, fake = RequestHooks(), Fake(ioctl_answer=(0, 0), poll_answer=(0, 1))
    fake.install(hooks)
    assert answer(hooks, request(Opcode.IOCTL, fh=FH, cmd=1)) == b""        # declined
    assert answer(hooks, request(Opcode.POLL, fh=FH, events=1)) == b""      # declined
    assert answer(hooks, request(Opcode.IOCTL, fh=FH + 1, cmd=1)) == b""    # not hooked
    assert answer(hooks, request(Opcode.IOCTL, fh=FH + 4096, cmd=1)) == b""  # same entry, other file
    whole = request(Opcode.IOCTL, fh=FH, cmd=1)
    assert answer(hooks, whole[:50]) == b""                                  # truncated
    assert len(fake.calls) == 2


def test_install_refuses_a_taken_entry_and_remove_frees_it():
    hooks, fake = RequestHooks(), Fake()
    assert fake.install(hooks)
    assert not fake.install(hooks, fh=FH + 4096)     # same entry: stays with Python
    hooks.remove(FH)
    assert answer(hooks, request(Opcode.IOCTL, fh=FH, cmd=1)) == b""
    assert fake.install(hooks, fh=FH + 4096)


def test_remove_waits_for_a_call_in_flight():
    hooks = RequestHooks()
    entered, go = threading.Event(), threading.Event()

    @ffi.callback(IOCTL_SIG)
    def slow(ctx, cmd, in_size, out_size, result):
        entered.set()
        go.wait(30)
        result[0] = 0
        return 1

    hooks.install(FH, int(ffi.cast("uintptr_t", slow)), 0, 0)
    got = []
    caller = threading.Thread(target=lambda: got.append(answer(hooks, request(Opcode.IOCTL, fh=FH, cmd=1))))
    caller.start()
    assert entered.wait(30)
    remover = threading.Thread(target=hooks.remove, args=(FH,))
    remover.start()
    remover.join(0.3)
    assert remover.is_alive(), "remove returned while the hook still ran"
    go.set()
    remover.join(30)
    caller.join(30)
    assert not remover.is_alive() and got == [reply(0x1122, "struct fuse_ioctl_out", result=0)]


def test_the_reader_answers_hooked_requests_and_returns_the_others():
    hooks, fake = RequestHooks(), Fake()
    fake.install(hooks)
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # keeps request boundaries
    with ours, kernel:
        kernel.send(request(Opcode.IOCTL, unique=1, fh=FH, cmd=1))
        kernel.send(request(Opcode.POLL, unique=2, fh=FH, events=1))
        left = request(Opcode.IOCTL, unique=3, fh=FH + 1, cmd=1)
        kernel.send(left)
        data = bytearray(4096)
        readv, answered = hooks.reader(data)
        n = readv(ours.fileno(), (data,))
        assert bytes(data[:n]) == left and answered[0] == 2
        assert kernel.recv(64) == reply(1, "struct fuse_ioctl_out", result=0)
        assert kernel.recv(64) == reply(2, "struct fuse_poll_out", revents=0)
        kernel.shutdown(socket.SHUT_WR)
        assert readv(ours.fileno(), (data,)) == 0    # the connection ended


def test_the_reader_reports_errors_as_oserror():
    hooks = RequestHooks()
    readv, _ = hooks.reader(bytearray(64))
    r, w = os.pipe()
    os.close(w)
    os.close(r)
    with pytest.raises(OSError) as e:
        readv(r, ())
    assert e.value.errno == errno.EBADF
