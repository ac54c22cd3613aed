"""The docker backend's GPU devices without the NVIDIA toolkit, on the real engine: a
container given one GPU (teamhub's `container_devices`) has that node and nvidiactl, not
the other GPU's, and its device cgroup refuses the other GPU even through a bind mount.

No GPU and no driver here: the nodes are made with NVIDIA's major number (195) in a test
folder. Opening one the cgroup allows fails with "No such device or address" (no driver);
one it refuses fails with "Operation not permitted". The engine, image and container are
real (the image teamhub's docker tests build, `teamhub/teamhub-test`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest

from teamhub.system import gpus as discovery
from teamhub.system.containers import CgroupLimits, Mount, container_config
from teamhub.system.docker import Engine
from teamhub.system.sandbox import LaunchSpec

pytestmark = [pytest.mark.system, pytest.mark.skipif(os.geteuid() != 0, reason="mknod")]

IMAGE = "teamhub/teamhub-test:latest"
PROBE = r'''
import errno, json, os, sys
out = {}
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDWR))
        out[path] = "opened"
    except OSError as exc:
        out[path] = errno.errorcode[exc.errno]
print(json.dumps(out))
'''


def test_container_gets_only_its_gpu_node(engine: Engine) -> None:
    if engine.image(IMAGE) is None:
        pytest.skip(f"{IMAGE} is built by tests/hub/test_docker_backend.py")
    root = Path(tempfile.mkdtemp(prefix="teamhub-gpuctr-"))
    name = f"teamhub-gputest-{secrets.token_hex(4)}"
    try:
        for node, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)):
            os.mknod(root / node, 0o666 | stat.S_IFCHR,
                     os.makedev(discovery.NVIDIA_MAJOR, minor))
            os.chmod(root / node, 0o666)
        os.chmod(root, 0o755)
        inv = discovery.Inventory(tuple(
            discovery.Device(str(i), f"GPU-{i:08d}-0000-0000-0000-000000000000", "fake",
                             1 << 30, (f"{root}/nvidia{i}",)) for i in range(2)),
            "fixture", dev=str(root))
        gpu = discovery.container_devices(inv, [inv.devices[0]], toolkit=False)
        # The same folder also bind-mounted whole: the nodes are there, the cgroup decides.
        paths = [f"{root}/nvidia0", f"{root}/nvidia1", f"{root}/nvidiactl",
                 "/hostdev/nvidia0", "/hostdev/nvidia1"]
        spec = LaunchSpec(argv=["/usr/bin/python3", "-c", PROBE, *paths], env={}, cwd="/",
                          username="nobody", uid=65534, gid=65534)
        config = container_config(spec, image=IMAGE, mounts=[Mount(str(root), "/hostdev")],
                                  limits=CgroupLimits(), labels={})
        config["HostConfig"]["Mounts"] += [Mount(f, f).as_api() for f in gpu.pop("binds")]
        config["HostConfig"].update(gpu)
        ident = engine.create(name, config)
        engine.start(ident)
        deadline = time.monotonic() + 120
        while (engine.container(ident) or {}).get("State", {}).get("Running") \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = json.loads(engine.logs(ident, 5).strip().splitlines()[-1])
    finally:
        engine.remove(name)
        shutil.rmtree(root)
    assert seen[f"{root}/nvidia0"] == seen[f"{root}/nvidiactl"] == "ENXIO"
    assert seen[f"{root}/nvidia1"] == "ENOENT"
    assert (seen["/hostdev/nvidia0"], seen["/hostdev/nvidia1"]) == ("ENXIO", "EPERM")
