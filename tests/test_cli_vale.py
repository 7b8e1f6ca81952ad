"""``nmfuse vale``: its requests, served in process by the real core.

The tool builds its NIOCCTRL bodies in its own memory, as it does against
a mount; here the device reads that memory directly instead of through
process_vm_readv, so everything but the FUSE hop is exercised."""

import argparse
import errno
import io

import pytest

from nmfuse import cli_vale
from nmfuse.abi.netmap import ffi
from tests.drivers.conftest import add_nic, make_harness, open_port
from tests.netmap.conftest import CALLER


class SelfMemory:
    """This process's memory, as the daemon's view of a caller; the
    harness's fake blocks (its own requests) are found first."""

    def __init__(self, fake):
        self.fake = fake

    def read(self, addr: int, size: int) -> bytes:
        try:
            return self.fake.read(addr, size)
        except OSError:
            return bytes(ffi.buffer(ffi.cast("char *", addr), size))

    def write(self, addr: int, data: bytes) -> None:
        try:
            self.fake.write(addr, data)
        except OSError:
            ffi.memmove(ffi.cast("char *", addr), data, len(data))


@pytest.fixture
def h():
    harness = make_harness()
    memory = SelfMemory(harness.user)
    harness.dev.user_memory = lambda pid: memory
    yield harness
    for fh in list(harness.dev.bindings):
        harness.dev.release(fh)
    harness.mem.close()


def in_process(h) -> cli_vale.Vale:
    def ioctl(fd, cmd, buf):
        err, out = h.dev.ioctl(CALLER, fd, cmd, 0, bytes(buf), len(buf))
        if err:
            raise OSError(err, "")
        buf[:len(out)] = out

    return cli_vale.Vale("in-process", ioctl=ioctl, opener=lambda path: h.open(), closer=h.dev.release)


def run(h, *argv):
    p = argparse.ArgumentParser(add_help=False)
    cli_vale.add_arguments(p)
    out, err = io.StringIO(), io.StringIO()
    code = cli_vale.run(p.parse_args(argv), in_process(h), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_create_list_attach_detach_delete(h):
    assert run(h) == (0, "", "")
    assert run(h, "-n", "v0", "-C", "64,128,2") == (0, "", "")
    code, out, _ = run(h, "-n", "v1", "-C", "32", "-v")
    assert code == 0 and "tx_slots:   32" in out and "rx_slots:   32" in out and "mem_id:     1" in out
    a = open_port(h, "vale0:a")
    assert run(h, "-a", "vale0:v0", "-v") == (0, "port_index: 1\n", "")
    assert run(h, "-a", "vale1:v1")[0] == 0
    assert run(h) == (0, "vale0:a bridge_idx 0 port_idx 0\nvale0:v0 bridge_idx 0 port_idx 1\n"
                         "vale1:v1 bridge_idx 1 port_idx 0\n", "")
    assert run(h, "-l", "vale0:v0") == (0, "name:       vale0:v0\nbridge_idx: 0\nport_idx:   1\n", "")
    code, out, _ = run(h, "-g", "v0")
    assert code == 0 and "tx_slots:   64" in out and "rx_slots:   128" in out and "tx_rings:   2" in out
    assert run(h, "-d", "vale0:v0")[0] == 0
    assert run(h, "-r", "v0")[0] == 0
    assert run(h, "-d", "vale1:v1")[0] == 0
    assert run(h, "-r", "v1")[0] == 0
    a.close()
    assert run(h) == (0, "", "")


def test_errors_name_the_action_and_netmaps_errno(h):
    assert run(h, "-r", "nosuch") == (1, "", "nmfuse vale: failed to remove nosuch: No such device or address\n")
    assert run(h, "-a", "vale0:nosuch")[2] == "nmfuse vale: failed to attach vale0:nosuch: Invalid argument\n"
    assert run(h, "-n", "v0")[0] == 0
    assert run(h, "-n", "v0")[2].endswith("File exists\n")
    assert run(h, "-l", "vale0:x") == (1, "", "nmfuse vale: failed to list vale0:x: No such file or directory\n")
    assert run(h, "-l", "eth0")[0] == 2
    assert run(h, "-C", "1,2,3,4,5", "-n", "v9")[0] == 2
    assert run(h, "-p", "vale0:v0")[2].endswith("No such device or address\n")


def test_host_rings_and_polling(h):
    add_nic(h, "nic0")
    assert run(h, "-h", "vale0:nic0")[0] == 0
    assert run(h, "--json") == (0, '[{"name": "vale0:nic0", "bridge_idx": 0, "port_idx": 0}, '
                                   '{"name": "vale0:nic0^", "bridge_idx": 0, "port_idx": 1}]\n', "")
    assert run(h, "-p", "vale0:nic0", "-C", "0,0")[0] == 0
    assert run(h, "-d", "vale0:nic0")[2].endswith("Device or resource busy\n")
    assert run(h, "-P", "vale0:nic0")[0] == 0
    assert run(h, "-P", "vale0:nic0")[2].endswith("Bad address\n"), "netmap's EFAULT: not polling"
    assert run(h, "-d", "vale0:nic0")[0] == 0


def test_config_parsing():
    assert cli_vale.ring_config(None) == (0, 0, 0, 0)
    assert cli_vale.ring_config("512") == (512, 512, 0, 0)
    assert cli_vale.ring_config("512,256,4") == (512, 256, 4, 4)
    assert cli_vale.ring_config("1,2,3,4") == (1, 2, 3, 4)
    assert cli_vale.poll_config(None) == (0, 0, 1)
    assert cli_vale.poll_config("1,2,3") == (1, 2, 3)
    with pytest.raises(ValueError):
        cli_vale.poll_config("0,1,2")


def test_the_device_path_is_opened_for_each_request(tmp_path):
    vale = cli_vale.Vale(str(tmp_path / "missing"))
    with pytest.raises(OSError) as e:
        vale.list_all()
    assert e.value.errno == errno.ENOENT
