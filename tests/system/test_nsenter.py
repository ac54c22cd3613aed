"""teamhub.system.nsenter against a real container on the real Docker engine: a process
that enters it is in the container's namespaces and cgroups, as unprivileged as Docker
makes the container's own processes, dies with the container, and the container ends
when that process (the keep-alive FIFO's only writer) ends."""

from __future__ import annotations

import errno
import json
import os
import platform
import pwd
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
from support.hub import runtime_dir, unique

from teamhub.system import nsenter
from teamhub.system.containers import holder_command
from teamhub.system.docker import Engine

pytestmark = [
    pytest.mark.system,
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="enters namespaces: needs root"),
]

TEST_IMAGE = "teamhub-test"
NOBODY = pwd.getpwnam("nobody")
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "uts", "user")

REPORT = """
import ctypes, json, os, platform

def keyctl():
    # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1): allowed outside Docker.
    if platform.machine() != "x86_64":
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(250, 0, -3, 1) >= 0:
        return 0
    return ctypes.get_errno()

status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
report = {
    "ns": {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES},
    "status": {k: status[k].strip() for k in ("CapEff", "CapPrm", "CapInh", "CapBnd",
                                               "CapAmb", "NoNewPrivs", "Seccomp",
                                               "Seccomp_filters")},
    "ids": [os.getresuid(), os.getresgid(), os.getgroups()],
    "pid": os.getpid(),
    "dockerenv": os.path.exists("/.dockerenv"),
    "keyctl": keyctl(),
    "pids_max": [open(p).read().strip() for p in ("/sys/fs/cgroup/pids/pids.max",
                 "/sys/fs/cgroup/pids.max") if os.path.exists(p)],
}
"""


@pytest.fixture(scope="module")
def image(engine: Engine) -> str:
    """The docker tests' image (`teamhub image build`, cached by its recipe)."""
    done = subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "image", "build", TEST_IMAGE],
                          capture_output=True, text=True, timeout=2400,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("TEAMHUB_")})
    assert done.returncode == 0, done.stderr[-3000:]
    return f"teamhub/{TEST_IMAGE}:latest"


@pytest.fixture
def container(engine: Engine, image: str) -> Iterator[tuple[str, int, str]]:
    """A running container holding only its keep-alive FIFO: (id, init's host pid, FIFO)."""
    folder = tempfile.mkdtemp(prefix="teamhub-nsenter-")
    os.chmod(folder, 0o755)
    fifo = os.path.join(folder, "keepalive")
    nsenter.make_keepalive(fifo, NOBODY.pw_uid, NOBODY.pw_gid)
    name = unique("thns")
    config = {
        "Image": image, "Entrypoint": holder_command(fifo), "Cmd": [], "Env": [],
        "User": f"{NOBODY.pw_uid}:{NOBODY.pw_gid}",
        "HostConfig": {"NetworkMode": "host", "Init": True, "CapDrop": ["ALL"],
                       "SecurityOpt": ["no-new-privileges"], "IpcMode": "private",
                       "PidsLimit": 64, "Memory": 256 * 1024**2,
                       "Mounts": [{"Type": "bind", "Source": folder, "Target": folder,
                                   "ReadOnly": True}]},
    }
    ident = engine.create(name, config)
    try:
        engine.start(ident)
        pid = engine.container(ident)["State"]["Pid"]
        yield ident, pid, fifo
    finally:
        engine.remove(ident)
        subprocess.run(["rm", "-rf", folder], check=False)


def start_inside(ident: str, pid: int, fifo: str, code: str) -> tuple[int, dict]:
    """Fork a child that enters the container as the fast start does, drops to nobody and
    runs CODE (which sets `report`); (the entered process's host pid, its report)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - reports through the pipe
        try:
            os.close(read)
            keep = nsenter.hold_open(fifo)
            filters = nsenter.seccomp_filters(pid)
            nsenter.enter(pid, ident)
            inner = os.fork()
            if inner:
                os.write(write, json.dumps({"host_pid": inner}).encode() + b"\n")
                os._exit(0)
            nsenter.harden()
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            nsenter.apply_seccomp(filters)
            scope: dict = {"NAMESPACES": NAMESPACES}
            exec(REPORT + code, scope)
            os.write(write, json.dumps(scope["report"]).encode() + b"\n")
            os.close(write)
            scope.get("after", lambda: None)()
            os.close(keep)
        except BaseException as exc:  # noqa: BLE001
            os.write(write, json.dumps({"error": repr(exc)}).encode() + b"\n")
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        first = json.loads(f.readline())
        assert "error" not in first, first
        report = json.loads(f.readline())
    os.waitpid(child, 0)
    assert "error" not in report, report
    return first["host_pid"], report


def gone(pid: int) -> bool:
    """No such process, or only its zombie (exited, not yet reaped by whoever adopted it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_an_entered_process_is_in_the_containers_namespaces_and_cgroups(
        engine: Engine, container: tuple[str, int, str]) -> None:
    ident, pid, fifo = container
    host_pid, report = start_inside(ident, pid, fifo, "\nimport time\nafter = lambda: "
                                    "time.sleep(60)\n")
    try:
        for name in NAMESPACES:
            assert report["ns"][name] == os.readlink(f"/proc/{pid}/ns/{name}"), name
        assert report["ns"]["pid"] != os.readlink("/proc/self/ns/pid")
        with open(f"/proc/{pid}/cgroup") as a, open(f"/proc/{host_pid}/cgroup") as b:
            assert a.read() == b.read()
        assert ident in open(f"/proc/{host_pid}/cgroup").read()
        assert report["pids_max"] == ["64"]
        assert report["dockerenv"]
        # In the container's pid namespace: not its init (1), and its host pid is not seen.
        assert report["pid"] not in (1, host_pid)
        status = report["status"]
        for cap in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
            assert int(status[cap], 16) == 0, (cap, status)
        assert status["NoNewPrivs"] == "1"
        # Under the container's own seccomp filter (Docker's profile), copied from its init.
        with open(f"/proc/{pid}/status") as f:
            init = dict(line.split(":", 1) for line in f.read().splitlines())
        assert init["Seccomp"].strip() == "2"
        assert status["Seccomp"] == "2"
        assert status["Seccomp_filters"] == init["Seccomp_filters"].strip()
        if platform.machine() == "x86_64":
            # keyctl(2) is one of the calls Docker's profile refuses (EPERM) to everyone.
            assert report["keyctl"] == errno.EPERM
        assert report["ids"] == [[NOBODY.pw_uid] * 3, [NOBODY.pw_gid] * 3, []]
    finally:
        # Killed with its container, as `docker kill` does to every process in it.
        subprocess.run(["docker", "kill", ident], capture_output=True, check=True, timeout=60)
        deadline = time.monotonic() + 30
        while not gone(host_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert gone(host_pid)


def test_the_container_ends_when_the_entered_process_ends(
        engine: Engine, container: tuple[str, int, str]) -> None:
    ident, pid, fifo = container
    assert engine.container(ident)["State"]["Running"]
    start_inside(ident, pid, fifo, "")
    deadline = time.monotonic() + 30
    while engine.container(ident)["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not engine.container(ident)["State"]["Running"]


def test_a_process_that_is_not_the_containers_is_refused(
        container: tuple[str, int, str]) -> None:
    ident, _, _ = container
    with pytest.raises(nsenter.ContainerEnterError, match="not in container"):
        nsenter.enter(os.getpid(), ident)


def test_only_a_fifo_is_held_open(tmp_path) -> None:
    """The keep-alive's folder is the user's: a symlink or file put there is refused."""
    target = tmp_path / "not-yours"
    target.write_text("root's")
    link = tmp_path / "keepalive"
    link.symlink_to(target)
    with pytest.raises(nsenter.ContainerEnterError):
        nsenter.hold_open(str(link), timeout=1)
    with pytest.raises(nsenter.ContainerEnterError, match="not the container's keep-alive"):
        nsenter.hold_open(str(target), timeout=1)
