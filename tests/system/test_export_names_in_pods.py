"""In the exported single-user image, the users' passwd/group entries from the values resolve:
`id` names the user and Python's pwd (what the shared envs' kernel list asks) knows them.

A real container on the local Docker engine, from the test image (this machine's release,
like the exported image's base), with libnss-extrausers installed and nsswitch changed
exactly as Dockerfile.singleuser does, and the two files of `singleuser.extraFiles` mounted
where the chart mounts them. No cluster is needed for that part of a pod.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
import yaml
from support.hub import runtime_dir
from support.z2jh import populated

from teamhub.export.bundle import export_z2jh
from teamhub.export.values import Options

pytestmark = [pytest.mark.system, pytest.mark.docker]

TEST_IMAGE = "teamhub/teamhub-test:latest"
NSSWITCH = r"sed -i -E 's/^(passwd|group):(.*)$/\1:\2 extrausers/' /etc/nsswitch.conf"


def test_users_resolve_by_name_in_the_pod(engine, tmp_path: Path) -> None:
    # Built once by `teamhub image build` (minutes), as the docker backend's tests do; a
    # second later.
    built = subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "image", "build",
                            "teamhub-test"], capture_output=True, text=True, timeout=2400)
    assert built.returncode == 0, built.stderr[-3000:]
    export_z2jh(populated(tmp_path / "install"), tmp_path / "out", Options())
    dockerfile = (tmp_path / "out" / "images" / "Dockerfile.singleuser").read_text()
    assert NSSWITCH in dockerfile  # the same change as the image's
    values = yaml.safe_load((tmp_path / "out" / "values.yaml").read_text())
    mounts = []
    for key, spec in values["singleuser"]["extraFiles"].items():
        (tmp_path / key).write_text(spec["stringData"])
        mounts += ["-v", f"{tmp_path / key}:{spec['mountPath']}:ro"]
    ada = values["custom"]["teamhub"]["users"]["ada"]
    script = (
        "apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install "
        "-y -qq --no-install-recommends libnss-extrausers >/dev/null && "
        f"{NSSWITCH} && "
        f"setpriv --reuid {ada['uid']} --regid {ada['gid']} --clear-groups id && "
        f"setpriv --reuid {ada['uid']} --regid {ada['gid']} --clear-groups python3 -c "
        "'import os, pwd; print(pwd.getpwuid(os.getuid()).pw_dir)'")
    name = f"thx-nss-{secrets.token_hex(3)}"
    try:
        done = subprocess.run(["docker", "run", "--rm", "--network", "host", "--name", name,
                               *mounts, TEST_IMAGE, "sh", "-c", script],
                              capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith(f"uid={ada['uid']}(jupyter-ada) gid={ada['gid']}(jupyter-ada)")
    assert lines[-1] == "/home/jupyter-ada"
