"""GPU enforcement by the device cgroup, for real: on a machine with systemd as init (the
Debian 12 container of the systemd-machine harness), a process in user A's scope, with
the `DeviceAllow=` teamhub computes for A's GPU, may open A's node and is refused B's.

No GPU and no driver here: the nodes are made with NVIDIA's major number (195) in a test
folder under the container's /dev (systemd takes `DeviceAllow=` paths under /dev only),
and the container is allowed that major by Docker's own device rules
(`--device-cgroup-rule 'c 195:* rwm'`). Opening a node the cgroup allows reaches the
device layer and fails with "No such device or address" (no driver); one it refuses
fails with "Operation not permitted". The same scope still opens /dev/null and a pty.

Scopes are made ROUNDS times, each right after the last one stopped: on this cgroup v1
machine systemd moves a process into a scope's groups one hierarchy at a time, and a
process that went on as soon as /proc named its scope opened the other user's node
in 3 runs of 25 (one pair of scopes each).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from support.docker_engine import DockerEngine
from support.systemd_machine import SystemdMachine, ensure_image

pytestmark = [pytest.mark.system, pytest.mark.systemd]

FOLDER = "/dev/teamhub-gputest"
# An unprivileged uid no account here or in the other tests has.
UID = 265534
ROUNDS = 20

PROBE = f'''
import errno, json, os, stat
from teamhub.system import gpus as discovery
from teamhub.system import systemd

folder = "{FOLDER}"
os.makedirs(folder, exist_ok=True)
for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)):
    path = f"{{folder}}/{{name}}"
    if not os.path.exists(path):
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(discovery.NVIDIA_MAJOR, minor))
    os.chmod(path, 0o666)

def try_open(path):
    try:
        os.close(os.open(path, os.O_RDWR))
        return "opened"
    except OSError as exc:
        return errno.errorcode[exc.errno]

results = {{"outside": {{n: try_open(f"{{folder}}/{{n}}") for n in ("nvidia0", "nvidia1")}},
            "a": [], "b": []}}
for user, own in (("a", "nvidia0"), ("b", "nvidia1")) * {ROUNDS}:
    unit = f"teamhub-gputest-{{user}}.scope"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        out = {{}}
        try:
            allow = discovery.device_allow([f"{{folder}}/{{own}}", f"{{folder}}/nvidiactl"])
            systemd.enter_scope(unit, {{"Description": "teamhub gpu test", "DeviceAllow": allow}})
            os.setgroups([])
            os.setgid({UID})
            os.setuid({UID})
            for name in ("nvidia0", "nvidia1", "nvidiactl"):
                out[name] = try_open(f"{{folder}}/{{name}}")
            for path in ("/dev/null", "/dev/urandom", "/dev/ptmx"):
                out[path] = try_open(path)
            master, slave = os.openpty()
            out["pty"] = try_open(os.ttyname(slave))
            out["in_scope"] = systemd.in_unit(os.getpid(), unit)
        except Exception as exc:
            out["error"] = repr(exc)
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        results[user].append(json.loads(f.read() or "{{}}"))
    os.waitpid(pid, 0)
    systemd.stop_unit(unit)
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def machine() -> Iterator[SystemdMachine]:
    engine = DockerEngine()
    engine.ensure()
    try:
        tag, _ = ensure_image()
        m = SystemdMachine(tag)
        try:
            m.start(extra=("--device-cgroup-rule", "c 195:* rwm"))
            m.copy_checkout()
            yield m
        finally:
            m.remove()
    finally:
        engine.stop()  # the dockerd it started, if any (it outlived the suite before)


def test_scope_allows_only_its_own_gpu_node(machine: SystemdMachine) -> None:
    machine.write("/root/gpu_probe.py", PROBE)
    proc = machine.exec("PYTHONPATH=/root/teamhub/src python3 /root/gpu_probe.py", timeout=300)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    # The control: outside any teamhub scope both nodes reach the (absent) driver.
    assert seen["outside"] == {"nvidia0": "ENXIO", "nvidia1": "ENXIO"}
    assert len(seen["a"]) == len(seen["b"]) == ROUNDS
    for a, b in zip(seen["a"], seen["b"], strict=True):
        assert "error" not in a and "error" not in b, (a, b)
        assert a["in_scope"] and b["in_scope"]
        assert (a["nvidia0"], a["nvidia1"]) == ("ENXIO", "EPERM")
        assert (b["nvidia0"], b["nvidia1"]) == ("EPERM", "ENXIO")
        assert a["nvidiactl"] == b["nvidiactl"] == "ENXIO"
        # Nothing else broke: the standard devices and a terminal still open in the scope.
        for seen_by in (a, b):
            assert seen_by["/dev/null"] == seen_by["/dev/urandom"] == "opened"
            assert seen_by["/dev/ptmx"] == seen_by["pty"] == "opened"
