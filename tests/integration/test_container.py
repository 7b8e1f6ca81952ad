"""The container recipe, for real: build the image from ``Containerfile``
with podman and run the project's C programs in it under ``nmfuse run``.

Set-up, once per session (and cached between sessions on the same machine):

* podman, runc and debootstrap are installed with apt-get when missing;
* no image registry is assumed reachable, so the base image the
  Containerfile names (``debian:bookworm``) is replaced by a local one:
  a bookworm root debootstrapped into a tarball under ``CACHE`` and
  imported (``--build-arg BASE=...``).  The local base trusts what the
  host trusts (a host behind an inspecting proxy needs its CA inside too)
  and points pip at the system trust store; nothing else differs;
* ``podman build`` of the project's tree (its layer cache makes a rebuild
  of an unchanged tree take seconds).

Engine options these machines need and a user's machine normally does
not: the runc runtime with cgroupfs (the default runtime refuses
cgroups in hybrid mode), and explicit ulimits no higher than the host's
hard limits (podman's defaults exceed them when the engine lacks
CAP_SYS_RESOURCE).

Skips only where no engine can run: not root, no /dev/fuse, no way to
install podman, or podman installed but unable to start a container
(with its error).  ``NMFUSE_CONTAINER_TEST=0`` skips on purpose.
"""

import fcntl
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT

CACHE = Path(os.environ.get("NMFUSE_CONTAINER_CACHE", "/var/tmp/nmfuse-container-cache"))
IMAGE = "localhost/nmfuse-test:latest"
LABEL = "nmfuse.test=container"
HOST_TRUST = Path("/etc/ssl/certs/ca-certificates.crt")
# Changing how the base is made changes this, and so the cache key.
BASE_RECIPE = "debootstrap --variant=minbase bookworm; host trust; pip cert; v1"

pytestmark = pytest.mark.needs_root

# What a test's container gets: the flags the Containerfile documents.
RUN_FLAGS = ["--device", "/dev/fuse", "--device", "/dev/net/tun",
             "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_PTRACE"]

# A netmap program a user would write: raw NIOCCTRL registration of both
# ends of a pipe, one frame through the shared rings, poll for it.
HELLO_C = r"""
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "nm_user.h"

static int reg(const char *name, struct nmreq_register *r)
{
    struct nmreq_header h;
    int fd = open(nm_device_path(), O_RDWR);

    memset(&h, 0, sizeof(h));
    memset(r, 0, sizeof(*r));
    h.nr_version = NETMAP_API;
    h.nr_reqtype = NETMAP_REQ_REGISTER;
    snprintf(h.nr_name, sizeof(h.nr_name), "%s", name);
    h.nr_body = (uintptr_t)r;
    r->nr_mode = NR_REG_ALL_NIC;
    if (fd < 0 || ioctl(fd, NIOCCTRL, &h) < 0) {
        perror(name);
        exit(1);
    }
    return fd;
}

int main(void)
{
    struct nmreq_register rm, rs;
    int fm = reg("hello{1", &rm), fs = reg("hello}1", &rs);
    char *mem = mmap(NULL, rm.nr_memsize, PROT_READ | PROT_WRITE, MAP_SHARED, fm, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct netmap_ring *tx = NETMAP_TXRING(NETMAP_IF(mem, rm.nr_offset), 0);
    struct netmap_ring *rx = NETMAP_RXRING(NETMAP_IF(mem, rs.nr_offset), 0);
    struct netmap_slot *s = &tx->slot[tx->cur];
    strcpy(NETMAP_BUF(tx, s->buf_idx), "hello through netmap");
    s->len = 60;
    tx->head = tx->cur = nm_ring_next(tx, tx->cur);
    if (ioctl(fm, NIOCTXSYNC, NULL) < 0) {
        perror("NIOCTXSYNC");
        return 1;
    }
    struct pollfd p = {.fd = fs, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1 || nm_ring_empty(rx)) {
        fprintf(stderr, "no frame arrived\n");
        return 1;
    }
    s = &rx->slot[rx->cur];
    printf("%u bytes: %s\n", s->len, NETMAP_BUF(rx, s->buf_idx));
    rx->head = rx->cur = nm_ring_next(rx, rx->cur);
    return 0;
}
"""


_config = None


def _say(text: str) -> None:
    """Progress of the slow set-up, shown despite pytest's capture."""
    capman = _config.pluginmanager.getplugin("capturemanager") if _config else None
    if capman is None:
        print(f"[container] {text}", file=sys.stderr, flush=True)
        return
    with capman.global_and_fixture_disabled():
        print(f"\n[container] {text}", file=sys.stderr, flush=True)


def _sh(*args, timeout: float, check: bool = True, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(map(str, args))}: no answer within {timeout:.0f} s\n{e.stderr or ''}")
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))}: exit {proc.returncode}\n{proc.stdout[-4000:]}\n"
                    f"{proc.stderr[-4000:]}")
    return proc


class Engine:
    """podman with the options this machine needs."""

    def __init__(self):
        limits = []
        for name, which in (("nproc", resource.RLIMIT_NPROC), ("nofile", resource.RLIMIT_NOFILE)):
            hard = resource.getrlimit(which)[1]
            value = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
            limits += ["--ulimit", f"{name}={value}:{value}"]
        self.limits = limits
        self.base = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
        self.count = 0

    def __call__(self, *args, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return _sh(*self.base, *args, timeout=timeout, check=check)

    def run(self, *command, flags=RUN_FLAGS, env: dict | None = None, volumes=(), image=IMAGE,
            timeout: float = 180) -> subprocess.CompletedProcess:
        """``podman run --rm IMAGE COMMAND``; a container that overruns is removed."""
        self.count += 1
        name = f"nmfuse-test-{os.getpid()}-{self.count}"
        args = ["run", "--rm", "--name", name, "--label", LABEL, "--network", "none", *self.limits, *flags]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        for host, inside in volumes:
            args += ["-v", f"{host}:{inside}"]
        try:
            return subprocess.run([*self.base, *args, image, *command], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            subprocess.run([*self.base, "rm", "-f", name], capture_output=True, timeout=60)
            pytest.fail(f"container {' '.join(command)} ran longer than {timeout} s")


def _install_engine() -> None:
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"{', '.join(missing)} missing and no apt-get to install them")
    _say(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _sh("apt-get", "update", "-qq", timeout=300, env=env)
    _sh("apt-get", "install", "-y", "-qq", *missing, timeout=600, env=env)


def _base_key() -> str:
    h = hashlib.sha256(BASE_RECIPE.encode())
    if HOST_TRUST.exists():
        h.update(HOST_TRUST.read_bytes())
    return h.hexdigest()[:12]


def _make_base_tarball(tarball: Path) -> None:
    """Debootstrap a bookworm root, adjust it, pack it as ``tarball``."""
    root = CACHE / "rootfs.tmp"
    shutil.rmtree(root, ignore_errors=True)
    _say("debootstrap of a bookworm root (once per machine)")
    _sh("debootstrap", "--variant=minbase", "bookworm", root, timeout=900)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    if HOST_TRUST.exists():
        local_ca = root / "usr/local/share/ca-certificates"
        local_ca.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_TRUST, local_ca / "host-trust.crt")
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    partial = tarball.with_suffix(".partial")
    _sh("tar", "-C", root, "-cf", partial, ".", timeout=600)
    partial.rename(tarball)
    shutil.rmtree(root, ignore_errors=True)


def _base_image(engine: Engine) -> str:
    key = _base_key()
    image = f"localhost/nmfuse-test-base:{key}"
    if engine("image", "exists", image, check=False).returncode == 0:
        return image
    tarball = CACHE / f"bookworm-{key}.tar"
    if not tarball.exists():
        for old in CACHE.glob("bookworm-*.tar"):
            old.unlink()
        _make_base_tarball(tarball)
    _say(f"importing the base image {image}")
    engine("import", tarball, image, timeout=600)
    return image


@pytest.fixture(scope="module")
def engine(request):
    global _config
    _config = request.config
    if os.environ.get("NMFUSE_CONTAINER_TEST", "1") == "0":
        pytest.skip("NMFUSE_CONTAINER_TEST=0")
    if os.geteuid() != 0:
        pytest.skip("needs root (a rootful engine: FUSE passthrough needs CAP_SYS_ADMIN of the host)")
    for dev in ("/dev/fuse", "/dev/net/tun"):
        if not os.path.exists(dev):
            pytest.skip(f"needs {dev} on the host")
    started = time.monotonic()
    _install_engine()
    CACHE.mkdir(parents=True, exist_ok=True)
    engine = Engine()
    # One user of the cache and of the image tag at a time (held to the end).
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = _base_image(engine)
        probe = engine.run("true", flags=[], image=base, timeout=120)
        if probe.returncode != 0:
            pytest.skip(f"podman cannot start a container here: {probe.stderr.strip()[-500:]}")
        _say("podman build")
        engine("build", *engine.limits, "--label", LABEL, "--build-arg", f"BASE={base}",
               "-t", IMAGE, "-f", ROOT / "Containerfile", ROOT, timeout=900)
        # Layers of earlier builds that no tag names any more.
        engine("image", "prune", "-f", "--filter", f"label={LABEL}", check=False)
        _say(f"image ready in {time.monotonic() - started:.0f} s")
        yield engine
        # `--rm` removal may finish a moment after the command returns.
        deadline = time.monotonic() + 20
        while True:
            left = engine("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}} {{.Status}}",
                          check=False).stdout.strip()
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not left, f"containers left behind:\n{left}"


def _fuse_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if " - fuse.nmfuse " in line]


def _explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


def test_conformance_client_passes_in_the_container(engine):
    before = _fuse_mounts()
    proc = engine.run("nm-ctltest")
    assert proc.returncode == 0, _explain(proc)
    assert any(line.endswith(" passed, 0 failed") for line in proc.stdout.splitlines()), _explain(proc)
    assert _fuse_mounts() == before, "the container's mount stays in the container"


def test_pipe_one_liner(engine):
    script = ("nm-recv -i 'netmap:p}1' -n 100000 -c 2>/tmp/recv.log & r=$!; i=0; "
              "until grep -q mem_id /tmp/recv.log; do i=$((i+1)); [ $i -lt 400 ] || exit 10; sleep 0.05; done; "
              "nm-send -i 'netmap:p{1' -n 100000 || exit 9; wait $r || { cat /tmp/recv.log; exit 8; }; "
              "cat /tmp/recv.log")
    proc = engine.run("sh", "-c", script)
    assert proc.returncode == 0, _explain(proc)
    assert "received 100000 pkts" in proc.stdout + proc.stderr, _explain(proc)
    assert "lost 0 dup 0 ooo 0 corrupt 0" in proc.stdout + proc.stderr, _explain(proc)


def test_exit_status_passes_through(engine):
    proc = engine.run("sh", "-c", "test -e /dev/netmap && exit 7")
    assert proc.returncode == 7, _explain(proc)


def test_tap_interface_from_the_environment(engine):
    script = ("ip link show nmtap0 >/dev/null || exit 9; "
              "nm-send -i netmap:nmtap0 -n 100 -s 128 || exit 8; "
              "cat /sys/class/net/nmtap0/statistics/rx_packets")
    proc = engine.run("sh", "-c", script, env={"NMFUSE_RUN_OPTIONS": "--tap nmtap0"})
    assert proc.returncode == 0, _explain(proc)
    assert int(proc.stdout.split()[-1]) >= 100, "the kernel got the frames: " + _explain(proc)


def test_user_program_compiles_against_the_image_headers(engine, tmp_path):
    (tmp_path / "hello.c").write_text(HELLO_C)
    proc = engine.run("sh", "-c", "cc -O2 -Wall -Werror -o /tmp/hello /src/hello.c && /tmp/hello",
                      volumes=[(tmp_path, "/src")])
    assert proc.returncode == 0, _explain(proc)
    assert "hello through netmap" in proc.stdout, _explain(proc)


def test_privileged_is_enough(engine):
    proc = engine.run("nm-ctltest", "-P", flags=["--privileged"])
    assert proc.returncode == 0, _explain(proc)


@pytest.mark.parametrize("drop, message", [
    (["--device", "/dev/fuse"], "/dev/fuse"),
    (["--cap-add", "SYS_ADMIN"], "Operation not permitted"),
])
def test_missing_flag_is_a_clear_error(engine, drop, message):
    flags = list(RUN_FLAGS)
    i = flags.index(drop[1])
    del flags[i - 1:i + 1]
    proc = engine.run("true", flags=flags, timeout=60)
    assert proc.returncode == 1, _explain(proc)
    assert message in proc.stderr, _explain(proc)


def test_seccomp_without_process_vm_readv_is_a_clear_error(engine, tmp_path):
    """docker's default profile blocks process_vm_readv/writev unless
    CAP_SYS_PTRACE is granted; podman's does not, so a profile stands in."""
    profile = tmp_path / "seccomp.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": '
                       '["process_vm_readv", "process_vm_writev"], "action": "SCMP_ACT_ERRNO"}]}')
    proc = engine.run("true", flags=[*RUN_FLAGS, "--security-opt", f"seccomp={profile}"], timeout=60)
    assert proc.returncode == 1, _explain(proc)
    assert "--cap-add SYS_PTRACE" in proc.stderr, _explain(proc)


SERVICE_IMAGE = "localhost/nmfuse-test-systemd:latest"


@pytest.fixture(scope="module")
def service_image(engine, tmp_path_factory):
    """The image plus systemd as init, with contrib/nmfuse.service enabled
    as a user would install it (nmfuse linked where ExecStart expects it)."""
    context = tmp_path_factory.mktemp("service")
    shutil.copyfile(ROOT / "contrib" / "nmfuse.service", context / "nmfuse.service")
    (context / "Containerfile").write_text(
        f"FROM {IMAGE}\n"
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
        " systemd systemd-sysv && rm -rf /var/lib/apt/lists/*\n"
        "RUN ln -sf /opt/nmfuse/bin/nmfuse /usr/local/bin/nmfuse\n"
        "COPY nmfuse.service /etc/systemd/system/nmfuse.service\n"
        "RUN systemctl enable nmfuse.service\n"
        'ENTRYPOINT ["/sbin/init"]\n'
        "CMD []\n")
    engine("build", *engine.limits, "--label", LABEL, "-t", SERVICE_IMAGE, context, timeout=600)
    return SERVICE_IMAGE


def test_service_unit_under_systemd(engine, service_image):
    name = f"nmfuse-test-{os.getpid()}-systemd"
    engine("run", "-d", "--name", name, "--label", LABEL, "--network", "none", *engine.limits, *RUN_FLAGS,
           "--systemd=always",
           service_image, timeout=120)

    def inside(*command, check=True, timeout=60):
        return engine("exec", name, *command, check=check, timeout=timeout)

    def main_pid_when_active(not_pid: str = "") -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = inside("systemctl", "show", "-p", "ActiveState,MainPID", "nmfuse", check=False).stdout
            fields = dict(line.split("=", 1) for line in state.split())
            pid = fields.get("MainPID", "0")
            if fields.get("ActiveState") == "active" and pid not in ("0", not_pid) and \
                    inside("nmfuse", "status", check=False).returncode == 0:
                return pid
            time.sleep(0.2)
        pytest.fail("nmfuse.service did not come up:\n" +
                    inside("journalctl", "-u", "nmfuse", "--no-pager", check=False).stdout[-4000:])

    try:
        pid = main_pid_when_active()
        proc = inside("nm-ctltest", check=False, timeout=180)
        assert proc.returncode == 0, _explain(proc)
        # Killed without a chance to unmount: the dead mount is detached
        # (ExecStopPost) and the daemon restarted (Restart=on-failure).
        inside("sh", "-c", f"kill -9 {pid}")
        main_pid_when_active(not_pid=pid)
        proc = inside("nm-ctltest", "-P", check=False, timeout=180)
        assert proc.returncode == 0, _explain(proc)
        # SIGTERM on stop: the daemon unmounts.
        inside("systemctl", "stop", "nmfuse")
        mounts = inside("cat", "/proc/self/mountinfo").stdout
        assert " - fuse.nmfuse " not in mounts
        assert inside("systemctl", "is-active", "nmfuse", check=False).stdout.strip() == "inactive"
        journal = inside("journalctl", "-u", "nmfuse", "--no-pager").stdout
        assert "restart counter is at 1" in journal, journal
    finally:
        engine("rm", "-f", name, check=False, timeout=60)
