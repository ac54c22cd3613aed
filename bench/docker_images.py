"""The container images of `bench/run --backend docker`, built here and never pulled.

teamhub's side runs from `teamhub image build NAME` (the prefix's own CLI; cached by
its recipe hash, so a machine that already has a teamhub image of the same recipe gets
it in a second). The vanilla side needs a single-user image as the hand-made setups use
(jupyter/base-notebook: jupyterhub-singleuser and JupyterLab installed in the image,
running as `jovyan`, uid 1000, with ~/work for the per-user volume). No registry is
reachable, so it is made from teamhub's image: a container on the host network runs
`python3 -m venv` + `pip install jupyterhub==X jupyterlab==Y` (through this machine's
pip settings and CA certificates, which teamhub's image carries), and `docker commit`
turns it into `teamhub-bench/singleuser:<hash>`. The hash covers every input (the base
image's id, the versions, the steps below), so a second run reuses the image.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

from teamhub import images

Echo = Callable[[str], None]

VANILLA_REPO = "teamhub-bench/singleuser"
# Bump when the steps in SINGLEUSER_SCRIPT or the commit changes below change.
SINGLEUSER_RECIPE = "1"
SINGLEUSER_SCRIPT = """\
set -e
python3 -m venv /opt/jupyter
/opt/jupyter/bin/pip install -q --disable-pip-version-check --no-cache-dir {pins}
useradd --create-home --uid 1000 --shell /bin/bash jovyan
mkdir -p /home/jovyan/work
chown jovyan:jovyan /home/jovyan/work
"""
SINGLEUSER_CHANGES = [
    "ENV PATH=/opt/jupyter/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "USER jovyan",
    "WORKDIR /home/jovyan",
    'CMD ["jupyterhub-singleuser"]',
    # A commit keeps the base image's labels: with teamhub's recipe label still on it,
    # `teamhub image build` would take this image for the teamhub image of that recipe.
    f'LABEL {images.LABEL}="" {images.HASH_LABEL}=""',
]


class ImageError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise ImageError(f"docker {' '.join(args[:2])} failed: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def image_id(ref: str) -> str | None:
    proc = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


def teamhub_image(runtime: Path, name: str, echo: Echo) -> str:
    """`teamhub image build NAME` with the measured install's CLI; its reference."""
    echo(f"teamhub image build {name} (cached by recipe; minutes only the first time)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
    proc = subprocess.run([str(runtime / "bin" / "teamhub"), "image", "build", name],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise ImageError(f"teamhub image build {name} failed: {proc.stderr.strip()[-2000:]}")
    return f"teamhub/{name}:latest"


def singleuser_hash(base_id: str, versions: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for part in (SINGLEUSER_RECIPE, base_id, json.dumps(versions, sort_keys=True),
                 SINGLEUSER_SCRIPT, *SINGLEUSER_CHANGES):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:12]


def singleuser_pins(versions: dict[str, str]) -> str:
    return " ".join(f"{k}=={v}" for k, v in sorted(versions.items()))


def vanilla_singleuser(base: str, versions: dict[str, str], echo: Echo,
                       lock_dir: Path) -> str:
    """The vanilla single-user image built FROM BASE with VERSIONS; its reference."""
    base_id = image_id(base)
    if base_id is None:
        raise ImageError(f"image {base} is not on this machine")
    ref = f"{VANILLA_REPO}:{singleuser_hash(base_id, versions)}"
    if image_id(ref):
        return ref
    lock_dir.mkdir(parents=True, exist_ok=True)
    # Two bench runs at once must not both build (or both commit) it.
    with open(lock_dir / ".image-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image_id(ref):
            _build(base, ref, versions, echo)
    return ref


def _build(base: str, ref: str, versions: dict[str, str], echo: Echo) -> None:
    pins = singleuser_pins(versions)
    echo(f"building {ref} from {base}: pip install {pins} (cached for next runs)")
    name = f"teamhub-bench-build-{secrets.token_hex(4)}"
    script = SINGLEUSER_SCRIPT.format(pins=pins)
    try:
        # The host network: pip reaches the package index as it does on this machine.
        proc = subprocess.run(["docker", "run", "--name", name, "--network", "host",
                               "--user", "root", base, "sh", "-c", script],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise ImageError(f"building {ref} failed (pip install {pins} in a container "
                             f"from {base}):\n{(proc.stdout + proc.stderr)[-2000:]}")
        changes = [arg for change in SINGLEUSER_CHANGES + [f"LABEL org.teamhub.bench={ref}"]
                   for arg in ("--change", change)]
        docker("commit", *changes, name, ref, timeout=600)
    finally:
        docker("rm", "-f", name, check=False)
