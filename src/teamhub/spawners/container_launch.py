"""The docker backend's one container builder: a user's checked LaunchSpec → their running
container, on the local engine.

Used by whoever holds the Docker socket: the spawner itself while the hub runs as root,
the root helper (teamhub.spawners.helper_container) for a hub that runs unprivileged
(hub.unprivileged). Everything a container is made of comes from the spec (account,
argv, env, limits of open files, /dev/shm) and from the admin's settings (`Site`): the
mounts (home, runtime folder, shared environments, the hub's socket folder, the user's
project folders from the store's grants), the name and labels, the hardening
(teamhub.system.containers.container_config). Nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import images
from ..errors import DockerError, ImageError
from ..projects.apply import Layout, Projects
from ..system import nsenter
from ..system.containers import (
    LABEL_PORT,
    LABEL_SERVER,
    LABEL_USER,
    CgroupLimits,
    Mount,
    container_config,
    ensure_home_volume,
)
from ..system.docker import Engine
from ..system.sandbox import LaunchSpec

# The fast start's keep-alive FIFO, in the server's private runtime folder (mounted inside).
KEEPALIVE = ".teamhub-keepalive"


@dataclass(frozen=True)
class Site:
    """The admin's settings a container is built from (the spawner's traits for a root hub,
    the helper's policy for an unprivileged one)."""

    home_mode: str = "bind"
    runtime_dir: str = ""
    envs_root: str = ""
    # Folder of the hub's API socket, mounted read-only ("" when the API is TCP).
    hub_socket_dir: str = ""
    projects_root: str = ""
    accounts_db: str = ""
    db_url: str = ""
    prefix: str = "jupyter-"
    registry: str = ""


def container_name(user: str, server: str = "") -> str:
    """The container of hub user USER's server SERVER ("" for the default one)."""
    return f"teamhub-{user}" + (f"-{server}" if server else "")


def project_mounts(user: str, site: Site) -> list[Mount]:
    """Each project folder USER may use, at its own path (so ~/projects links work):
    read-only for readers. The folders' ACLs still decide (same uid, same inodes), so a
    revoke bites at the next file open; a new grant or read → write needs a restart."""
    if not (site.projects_root and site.accounts_db
            and (site.db_url or Path(site.accounts_db).exists())):
        return []
    if not Path(site.projects_root).is_dir():
        return []
    layout = Layout(root=Path(site.projects_root), store_path=Path(site.accounts_db),
                    store_url=site.db_url, prefix=site.prefix, registry=Path(site.registry))
    mounts = []
    for name, access in sorted(Projects(layout).accessible(user).items()):
        folder = str(layout.folder(name))
        if Path(folder).is_dir():
            mounts.append(Mount(folder, folder, read_only=access != "write"))
    return mounts


def mounts(spec: LaunchSpec, user: str, site: Site, engine: Engine) -> list[Mount]:
    """What USER's container mounts for SPEC (a checked one: its home, runtime folder)."""
    if site.home_mode == "volume":
        assert spec.uid is not None and spec.gid is not None
        volume = ensure_home_volume(engine, user, spec.uid, spec.gid)
        found = [Mount(volume, spec.cwd, read_only=False, kind="volume")]
    else:
        found = [Mount(spec.cwd, spec.cwd, read_only=False)]
    runtime_dir = spec.env.get("JUPYTER_RUNTIME_DIR")
    if runtime_dir:
        found.append(Mount(runtime_dir, runtime_dir, read_only=False))
    if site.runtime_dir:
        found.append(Mount(site.runtime_dir, site.runtime_dir))
    if site.envs_root and Path(site.envs_root).is_dir():
        found.append(Mount(site.envs_root, site.envs_root))
    if site.hub_socket_dir:
        # The hub's API is a unix socket: its folder (new socket at each hub start) goes
        # in read-only at its own path, so the server reaches the hub.
        found.append(Mount(site.hub_socket_dir, site.hub_socket_dir))
    return found + project_mounts(user, site)


def create_and_start(engine: Engine, spec: LaunchSpec, *, user: str, server: str, port: int,
                     image: str, site: Site, limits: CgroupLimits,
                     gpu: dict[str, Any] | None = None, holder: str | None = None) -> str:
    """USER's container for SPEC, started (its id); nothing is left behind when this fails.

    With HOLDER (its keep-alive FIFO, made here) the container only holds itself open and
    the server is started into it afterwards (teamhub.system.nsenter); else the server is
    its command. GPU: HostConfig entries (`binds`: read-only driver files) from
    teamhub.system.gpus.container_devices. ImageError when IMAGE is not on the engine."""
    ref = images.reference(image)
    if engine.image(ref) is None:
        raise ImageError(images.missing_message(image))
    if holder is not None:
        assert spec.uid is not None and spec.gid is not None
        nsenter.make_keepalive(holder, spec.uid, spec.gid)
    config = container_config(
        spec, image=ref, mounts=mounts(spec, user, site, engine), limits=limits,
        labels={LABEL_USER: user, LABEL_SERVER: server, LABEL_PORT: str(port)}, holder=holder)
    gpu = dict(gpu or {})
    config["HostConfig"]["Mounts"] += [Mount(f, f).as_api() for f in gpu.pop("binds", [])]
    config["HostConfig"].update(gpu)
    name = container_name(user, server)
    # One left from a crash or a hub killed mid-start would block the name.
    engine.remove(name)
    ident = engine.create(name, config)
    try:
        engine.start(ident)
    except DockerError:
        engine.remove(ident)
        raise
    return ident
