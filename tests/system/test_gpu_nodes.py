"""GPU enforcement without systemd, for real: two users' servers, each started through the
sandbox launcher (the path every local server takes) with the placement teamhub computes
for its device, can open their own NVIDIA node and not the other's.

This machine has no GPU and no NVIDIA driver, so the nodes are made here: character
devices with NVIDIA's major number (195) in a test folder. Opening one that nothing
covers reaches the kernel's device layer and fails with "No such device or address"
(no driver); a covered one fails with "Permission denied" before that. The users, the
mount namespaces and the launcher are real.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from teamhub import gpus
from teamhub.system import gpus as discovery
from teamhub.system.namespaces import ensure_cover
from teamhub.system.sandbox import LaunchSpec, current_rlimits

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="makes device nodes and users: needs root"),
]

PROBE = r'''
import errno, json, os, sys
nodes, proc_gpus, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
result = {}
for node in nodes:
    try:
        os.close(os.open(node, os.O_RDWR))
        result[node] = "opened"
    except OSError as exc:
        result[node] = errno.errorcode[exc.errno]
result["visible"] = sorted(os.listdir(proc_gpus))
result["info"] = {b: os.listdir(os.path.join(proc_gpus, b)) for b in result["visible"]}
result["env"] = os.environ.get("CUDA_VISIBLE_DEVICES")
# Undoing the cover from a user namespace of its own (where it is "root"): the mounts it
# inherited are locked together, so unmounting one fails and the node stays covered.
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
    result["undo"] = "unshare:" + errno.errorcode[ctypes.get_errno()]
else:
    covered = [n for n in nodes if result[n] == "EACCES"]
    if covered:
        ok = libc.umount2(covered[0].encode(), 2) == 0  # MNT_DETACH
        result["undo"] = "unmounted" if ok else "umount:" + errno.errorcode[ctypes.get_errno()]
        try:
            os.close(os.open(covered[0], os.O_RDWR))
            result["after_undo"] = "opened"
        except OSError as exc:
            result["after_undo"] = errno.errorcode[exc.errno]
with open(out, "w") as f:
    json.dump(result, f)
'''


@pytest.fixture
def machine():
    """A test folder standing in for /dev (two GPUs, nvidiactl) and the driver's /proc."""
    root = Path(tempfile.mkdtemp(prefix="teamhub-gpunodes-", dir="/tmp"))
    root.chmod(0o755)
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)):
        os.mknod(root / name, 0o666 | stat.S_IFCHR, os.makedev(discovery.NVIDIA_MAJOR, minor))
        os.chmod(root / name, 0o666)
    devices = []
    for i in range(2):
        bus = f"0000:{0x18 + i:02x}:00.0"
        (root / "proc-gpus" / bus).mkdir(parents=True)
        (root / "proc-gpus" / bus / "information").write_text(f"Device Minor: {i}\n")
        devices.append(discovery.Device(str(i), f"GPU-{i:08d}-1111-2222-3333-444444444444",
                                        "fake", 1 << 30, (f"{root}/nvidia{i}",),
                                        pci_bus_id=bus))
    os.chmod(root / "proc-gpus", 0o755)
    inventory = discovery.Inventory(tuple(devices), "fixture", dev=str(root),
                                    proc_gpus=str(root / "proc-gpus"))
    yield root, inventory
    shutil.rmtree(root)


@pytest.fixture
def two_users():
    names = [f"gpu{secrets.token_hex(3)}{c}" for c in "ab"]
    for name in names:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/false",
                        name], check=True)
    yield [pwd.getpwnam(n) for n in names]
    for name in names:
        subprocess.run(["userdel", name], check=False)


def start_server(account: pwd.struct_passwd, place: gpus.Placement | None, root: Path,
                 inventory: discovery.Inventory) -> dict:
    out = root / f"{account.pw_name}.json"
    out.touch()
    os.chown(out, account.pw_uid, account.pw_gid)
    nodes = ",".join(f"{root}/{n}" for n in ("nvidia0", "nvidia1", "nvidiactl"))
    spec = LaunchSpec(argv=[sys.executable, "-I", "-c", PROBE, nodes, inventory.proc_gpus,
                            str(out)],
                      env={"PATH": "/usr/bin:/bin", **(place.env() if place else {})},
                      cwd="/", username=account.pw_name, uid=account.pw_uid,
                      gid=account.pw_gid, rlimits=current_rlimits(),
                      devices=place.mounts_spec(ensure_cover(str(root / "cover")))
                      if place else None)
    proc = subprocess.run([sys.executable, "-I", "-m", "teamhub.system.sandbox"],
                          input=spec.to_json(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return json.loads(out.read_text())


def test_each_server_opens_only_its_own_gpu(machine, two_users) -> None:
    root, inventory = machine
    ada, bob = two_users
    seen = {}
    for account, device in ((ada, inventory.devices[0]), (bob, inventory.devices[1])):
        seen[account.pw_name] = start_server(account, gpus.placement(inventory, [device]),
                                             root, inventory)
    a, b = seen[ada.pw_name], seen[bob.pw_name]
    # Its own node reaches the (absent) driver; the other's is refused before that.
    assert (a[f"{root}/nvidia0"], a[f"{root}/nvidia1"]) == ("ENXIO", "EACCES")
    assert (b[f"{root}/nvidia0"], b[f"{root}/nvidia1"]) == ("EACCES", "ENXIO")
    assert a[f"{root}/nvidiactl"] == b[f"{root}/nvidiactl"] == "ENXIO"
    # The driver's entry of the other GPU is emptied, as nvidia-smi would read it.
    assert a["info"] == {"0000:18:00.0": ["information"], "0000:19:00.0": []}
    assert b["info"] == {"0000:18:00.0": [], "0000:19:00.0": ["information"]}
    assert a["env"] == inventory.devices[0].uuid and b["env"] == inventory.devices[1].uuid
    # Nor can it uncover the other's node from a user namespace of its own.
    assert a["undo"] in ("umount:EINVAL", "umount:EPERM") or a["undo"].startswith("unshare:")
    assert a.get("after_undo", "EACCES") == "EACCES", a["undo"]
    # Outside the servers nothing changed: the nodes are still the devices.
    assert stat.S_ISCHR(os.stat(root / "nvidia1").st_mode)


def test_without_placement_every_node_is_reachable(machine, two_users) -> None:
    """The control: the same launch with no placement reaches both devices."""
    root, inventory = machine
    seen = start_server(two_users[0], None, root, inventory)
    assert seen[f"{root}/nvidia0"] == seen[f"{root}/nvidia1"] == "ENXIO"


def test_a_server_with_none_reaches_no_gpu(machine, two_users) -> None:
    root, inventory = machine
    seen = start_server(two_users[0], gpus.placement(inventory, []), root, inventory)
    assert seen[f"{root}/nvidia0"] == seen[f"{root}/nvidia1"] == "EACCES"
    assert seen["env"] == ""
