"""Issue 6 on a real mount: VALE switches between processes, the VALE
control requests through ``nmfuse vale``, monitors of pipes and VALE
ports, and TAP interfaces attached to a switch (ping through it)."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import needs
from tests.integration.conftest import BIN, Mount, client
from tests.integration.pyclient import Port


def _json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def vale(mount, *args, check=True):
    return mount.run(sys.executable, "-m", "nmfuse", "vale", "--device", mount.path, *args, check=check)


def listen(mount, port: str, idle: float = 2.0):
    """nm-recv on ``port`` until it has been idle ``idle`` seconds."""
    return subprocess.Popen([client("nm-recv"), "-i", f"netmap:{port}", "-T", str(idle), "-c", "-j"],
                            env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_three_ports_learn_flood_and_never_echo(mount):
    a, b, c = (listen(mount, f"vale0:{n}", idle=3) for n in "abc")   # each holds its port
    time.sleep(0.5)
    # a floods (broadcast from A); then b sends to A, learned behind port a
    mount.run(client("nm-send"), "-i", "netmap:vale0:a", "-n", "1000", "-r", "100000",
              "-D", "ff:ff:ff:ff:ff:ff", "-S", "02:00:00:00:00:0a")
    mount.run(client("nm-send"), "-i", "netmap:vale0:b", "-n", "700", "-r", "100000",
              "-D", "02:00:00:00:00:0a", "-S", "02:00:00:00:00:0b")
    got = {}
    for name, proc in zip("abc", (a, b, c)):
        out, err = proc.communicate(timeout=60)
        got[name] = _json(out) if out.strip() else {"pkts": 0}
        assert got[name].get("corrupt", 0) == got[name].get("ooo", 0) == 0, out + err
    assert (got["a"]["pkts"], got["b"]["pkts"], got["c"]["pkts"]) == (700, 1000, 1000), \
        "broadcast to all but the sender, unicast only to the learned port"


def test_vale_list_and_persistent_ports_through_the_tool(mount):
    assert vale(mount).stdout == ""
    assert vale(mount, "-n", "v0", "-C", "256").returncode == 0
    holder = listen(mount, "vale0:e", idle=30)          # an ephemeral port, while it runs
    time.sleep(0.5)
    assert vale(mount, "-a", "vale0:v0").returncode == 0
    listing = vale(mount).stdout
    assert listing == "vale0:e bridge_idx 0 port_idx 0\nvale0:v0 bridge_idx 0 port_idx 1\n"
    assert "tx_slots:   256" in vale(mount, "-g", "v0").stdout
    # a client of the persistent port comes and goes
    mount.run(client("nm-recv"), "-i", "netmap:v0", "-T", "0.2", check=False)
    holder.kill()
    holder.wait()
    assert vale(mount).stdout == "vale0:v0 bridge_idx 0 port_idx 1\n", "the persistent port stays"
    res = vale(mount, "-r", "v0", check=False)
    assert res.returncode == 1 and "Device or resource busy" in res.stderr, "still attached"
    assert vale(mount, "-d", "vale0:v0").returncode == 0
    assert vale(mount, "-r", "v0").returncode == 0
    assert vale(mount).stdout == ""
    res = vale(mount, "-r", "v0", check=False)
    assert res.returncode == 1 and "No such device or address" in res.stderr


def receivers(mount, port: str, monitor_flags=("r", "z")):
    """nm-recv on ``port`` and on a monitor of it per flag set; each stops
    after two idle seconds and checks every frame's sequence and bytes."""
    def start(spec):
        return subprocess.Popen([client("nm-recv"), "-i", f"netmap:{spec}", "-T", "2", "-c", "-j"],
                                env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    port_rx = start(port)
    time.sleep(0.5)                              # a monitor needs the port in netmap mode
    monitors = [start(f"{port}/{flags}") for flags in monitor_flags]
    time.sleep(0.5)
    return port_rx, monitors


def results(mount, procs) -> list[dict]:
    out = []
    for proc in procs:
        text, err = proc.communicate(timeout=120)
        got = _json(text)
        assert got["dup"] == got["ooo"] == got["corrupt"] == got["other"] == 0, text + err + mount.output()
        out.append(got)
    return out


def test_a_switch_between_processes_with_monitors(mount):
    # A copy monitor drops what does not fit its own ring, as netmap's does:
    # the rate leaves the monitor's reader 34 ms of slack per ring, enough on
    # a loaded 2-CPU machine, so "every frame" is what is checked.
    n = 30_000
    port_rx, monitors = receivers(mount, "vale1:b")
    mount.run(client("nm-send"), "-i", "netmap:vale1:a", "-n", str(n), "-r", "30000", timeout=120)
    got, copy, zcopy = results(mount, [port_rx] + monitors)
    # a switch drops what does not fit a ring (as netmap); here, almost nothing
    assert got["pkts"] >= n * 0.95, got
    assert copy["pkts"] == zcopy["pkts"] == got["pkts"], "each monitor saw every frame the port got"
    assert copy["lost"] == zcopy["lost"] == got["lost"]


def test_monitors_of_a_pipe_see_every_frame_in_order(mount):
    n = 100_000
    port_rx, monitors = receivers(mount, "mp}1")
    mount.run(client("nm-send"), "-i", "netmap:mp{1", "-n", str(n), "-r", "100000", timeout=120)
    got, copy, zcopy = results(mount, [port_rx] + monitors)
    assert got["pkts"] == n and got["lost"] == 0, "a pipe never drops"
    assert copy["pkts"] == zcopy["pkts"] == n and copy["lost"] == zcopy["lost"] == 0


def test_monitor_errors_on_the_device(mount):
    with pytest.raises(OSError) as e:
        Port(mount.path, "nosuch", nr_flags=0x200)
    assert e.value.errno == 6                                    # ENXIO
    with pytest.raises(OSError) as e:
        Port(mount.path, "vale2:x", nr_flags=0x200)
    assert e.value.errno == 22, "not in netmap mode: EINVAL"


@pytest.mark.needs_root
@needs("ip", "ping")
def test_taps_ping_each_other_and_a_vale_port_through_the_switch(tmp_path):
    tag = os.getpid() % 10000
    taps, spaces = [f"nvt{tag}a", f"nvt{tag}b"], [f"nvns{tag}a", f"nvns{tag}b"]
    net = f"10.{88 + tag % 100}.{tag % 200}"
    m = Mount(str(tmp_path / "netmap"), "--tap", taps[0], "--tap", taps[1])
    responder = None
    try:
        for i, (t, ns) in enumerate(zip(taps, spaces), 1):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "link", "set", t, "netns", ns], check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{net}.{i}/24", "dev", t], check=True)
            assert vale(m, "-a", f"vale0:{t}").returncode == 0
            subprocess.run(["ip", "-n", ns, "link", "set", t, "up"], check=True)
        ping = subprocess.run(["ip", "netns", "exec", spaces[0], "ping", "-c", "3", "-i", "0.2", "-W", "2",
                               f"{net}.2"], capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0, ping.stdout + ping.stderr + m.output()
        if (BIN / "nm-responder").exists():      # a VALE port answering ping, beside the TAPs
            responder = subprocess.Popen([client("nm-responder"), "-i", "netmap:vale0:r", "-a", f"{net}.3",
                                          "-T", "20"], env=m.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
            time.sleep(0.5)
            ping = subprocess.run(["ip", "netns", "exec", spaces[1], "ping", "-c", "3", "-i", "0.2", "-W", "2",
                                   f"{net}.3"], capture_output=True, text=True, timeout=60)
            assert ping.returncode == 0, ping.stdout + ping.stderr + m.output()
        listing = vale(m).stdout
        assert f"vale0:{taps[0]}" in listing and f"vale0:{taps[1]}" in listing
        for t in taps:
            assert vale(m, "-d", f"vale0:{t}").returncode == 0
    finally:
        if responder is not None:
            responder.kill()
            responder.wait()
        code = m.stop()
        for ns in spaces:
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    assert code == 0, m.output()


def _all_back(mount, before: dict) -> dict:
    """Once every client's file is closed: no port is left and the pools
    hold what they held in ``before``.  Returns the status then."""
    deadline = time.monotonic() + 20
    while mount.status()["open_files"] and time.monotonic() < deadline:
        time.sleep(0.1)
    after = mount.status()
    assert after["ports"] == [] and after["open_files"] == 0, after
    assert {k: p["used"] for k, p in after["pools"].items()} == {k: p["used"] for k, p in before["pools"].items()}
    return after


def test_vale_ports_sync_and_wait_in_c_between_processes(mount):
    # Sender and receiver both wait in poll: their syncs, polls and the
    # receiver's wake-ups are the C path's (answered_in_c); every frame
    # that arrives is intact and in order, and every buffer comes back.
    before = mount.status()
    n = 100_000
    recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:vale3:b", "-T", "2", "-c", "-w", "poll", "-j"],
                            env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    mount.run(client("nm-send"), "-i", "netmap:vale3:a", "-n", str(n), "-w", "poll", "-r", "200000", timeout=120)
    (got,) = results(mount, [recv])
    assert got["pkts"] > 0 and got["pkts"] + got["lost"] <= n, got
    after = _all_back(mount, before)
    # at least a sync or a poll per 256-frame batch of the sender went through C
    assert after["answered_in_c"] - before["answered_in_c"] >= n // 256, (before, after)


def test_attach_and_detach_while_c_flushes_run_lose_no_buffer(mount):
    # A sender and a receiver on the C path keep a switch busy while a
    # persistent port is attached, gets a client, loses it and is detached
    # again and again: what arrives is intact and every buffer comes back.
    before = mount.status()
    recv = subprocess.Popen([client("nm-recv"), "-i", "netmap:vale4:b", "-T", "3", "-c", "-w", "poll", "-j"],
                            env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    send = subprocess.Popen([client("nm-send"), "-i", "netmap:vale4:a", "-n", "2000000", "-w", "poll",
                             "-r", "100000", "-j"], env=mount.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert vale(mount, "-n", "v4").returncode == 0
    for _ in range(8):
        assert vale(mount, "-a", "vale4:v4").returncode == 0
        # a client of the port while it is attached: frames flood to it too
        # (it joins mid-stream: what came before counts as lost, so it exits 1)
        joined = mount.run(client("nm-recv"), "-i", "netmap:v4", "-n", "2000", "-c", "-w", "poll", "-j",
                           timeout=60, check=False)
        got = _json(joined.stdout)
        assert got["pkts"] >= 2000 and got["dup"] == got["ooo"] == got["corrupt"] == got["other"] == 0, got
        assert vale(mount, "-d", "vale4:v4").returncode == 0
    assert send.poll() is None, "the traffic flowed all along"
    send.kill()
    send.wait()
    (got,) = results(mount, [recv])
    assert got["pkts"] > 0, got
    assert vale(mount, "-r", "v4").returncode == 0
    after = _all_back(mount, before)
    assert after["answered_in_c"] > before["answered_in_c"]
