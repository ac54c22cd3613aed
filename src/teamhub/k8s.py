"""teamhub inside Zero to JupyterHub: what the hub image runs (`configure_hub`).

`teamhub export z2jh` writes a `hub.extraConfig` entry that calls
`configure_hub(c, get_config("custom.teamhub"))` after the chart's own configuration
(KubeSpawner, the values' `singleuser.*`, `hub.config`). It adds what teamhub's servers
expect (kernels of the shared envs, the server extension, browser isolation) and a
pre-spawn hook that makes each user's pod theirs:

- their own uid, gid and supplementary gids from the export's table (`users`), so files
  keep their owners on the home and project volumes, and their home at the same path;
- their groups' limits (the most generous, as on one machine) and GPUs;
- each project they are granted mounted from the shared volume at its own path,
  read-only for readers. Grants and groups are read from the account store the hub
  uses for logins (copied from the teamhub machine), at every spawn.

A user with no entry in `users` (signed up after the move) cannot start a server until
an admin adds one; the spawn page says so.

Why a pre-spawn hook, and not KubeSpawner's per-trait callables, a profile list or
`modify_pod_hook`: the uid, the limits, the mounts and the GPUs all depend on the same two
things, the user and their groups at this spawn, so one function sets them all on the
spawner before KubeSpawner builds the pod with its own code (no editing of the finished
pod object); a profile list is a choice offered to users, which none of this is; and the
table it reads stays plain data in the values, reviewable in `values.yaml`.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

from . import hubconfig
from .accounts.groups import GroupStore
from .accounts.pages import TEMPLATES
from .accounts.store import AccountStore
from .console.base import TEMPLATES as CONSOLE_TEMPLATES
from .export.gpus import devices_for
from .limits import resolve
from .projects.model import ProjectStore, effective
from .settings import Settings, lookup
from .spawners.local import SpawnFailed


def _store_groups(store_path: str, db_url: str = "") -> dict[str, list[str]]:
    if not (db_url or Path(store_path).is_file()):
        return {}
    return GroupStore(AccountStore(Path(store_path), db_url)).list()


def granted(store_path: str, user: str, db_url: str = "") -> dict[str, str]:
    """{project: "read" | "write"} for USER (who may log in, so is not blocked)."""
    if not (db_url or Path(store_path).is_file()):
        return {}
    store = AccountStore(Path(store_path), db_url)
    groups = GroupStore(store).list()
    found = {}
    for project in ProjectStore(store).list():
        access = effective(project, groups, [user]).get(user)
        if access:
            found[project.name] = access
    return found


def _merged(c: Any, section: str, trait: str, default: Any) -> Any:
    return c[section][trait] if trait in c[section] else default


def configure_hub(c: Any, data: dict[str, Any]) -> None:
    """Apply custom.teamhub (DATA) to the chart's hub configuration C."""
    hubconfig.update_groups(c, _store_groups(data["storePath"], data.get("dbUrl", "")))
    # The same server options as on one machine, from the one setting they read
    # (envs.root; no hub.domain: the chart's hub.config carries subdomain_host). No ipc
    # kernel transport: a pod is one user's alone. Kernels: warm parents on demand.
    settings = Settings(config_file=Path(data["storePath"]),
                        values={"envs.root": data["envsRoot"], "hub.domain": "",
                                "envs.warm_kernels": "on-demand",
                                "envs.warm_idle": lookup("envs.warm_idle").default})
    c.Spawner.args = [*_merged(c, "Spawner", "args", []),
                      *hubconfig.server_args(settings, trial=True)]
    hubconfig.update_browser_isolation(c, settings)
    interval = str(data["activityInterval"])
    env = {"JUPYTERHUB_ACTIVITY_INTERVAL": interval, hubconfig.BUSY_ENV: interval}
    tornado = _merged(c, "JupyterHub", "tornado_settings", {})
    tornado["cookie_options"] = {**tornado.get("cookie_options", {}), "samesite": "Lax"}
    if data["hsts"]:
        env[hubconfig.HSTS_ENV] = data["hsts"]
        tornado["headers"] = {**tornado.get("headers", {}),
                              "Strict-Transport-Security": data["hsts"]}
    c.JupyterHub.tornado_settings = tornado
    c.KubeSpawner.environment = {**_merged(c, "KubeSpawner", "environment", {}), **env}
    c.JupyterHub.template_paths = [str(TEMPLATES), str(CONSOLE_TEMPLATES),
                                   *_merged(c, "JupyterHub", "template_paths", [])]
    c.Spawner.pre_spawn_hook = functools.partial(prepare_spawn, data=data)


async def prepare_spawn(spawner: Any, data: dict[str, Any]) -> None:
    """KubeSpawner's pre_spawn_hook: this user's identity, limits, GPUs and projects."""
    name = spawner.user.name
    ident = (data.get("users") or {}).get(name)
    if ident is None:
        raise SpawnFailed(f"Your account {name!r} has no Linux uid on this cluster yet. Ask an "
                          "admin to add it under custom.teamhub.users in the hub's values")
    groups = sorted(g.name for g in spawner.user.groups)
    spawner.uid = ident["uid"]
    spawner.gid = ident["gid"]
    spawner.supplemental_gids = list(ident["supplementalGids"])
    # A fresh home volume becomes the user's group's, never a group shared by all.
    spawner.fs_gid = ident["gid"]
    spawner.pvc_name = ident["homeVolume"]
    home = f"{data['homeRoot']}/{ident['login']}"
    spawner.working_dir = home
    spawner.environment = {**spawner.environment, "HOME": home, "USER": ident["login"]}
    if data.get("limits"):
        limits = resolve({"enabled": True, **data["limits"]}, groups)
        assert limits is not None
        share = float(data["limits"]["guarantee"])
        spawner.mem_limit = limits.memory
        spawner.mem_guarantee = None if limits.memory is None else int(limits.memory * share)
        spawner.cpu_limit = limits.cpu
        spawner.cpu_guarantee = None if limits.cpu is None else round(limits.cpu * share, 3)
    gpus = data.get("gpus") or {}
    if gpus:
        extra = dict(spawner.extra_resource_limits)
        extra.pop(gpus["resource"], None)
        devices = devices_for(gpus, name, groups)
        if devices:
            extra[gpus["resource"]] = str(devices)
        spawner.extra_resource_limits = extra
    if data.get("projectsVolume"):
        access = await asyncio.to_thread(granted, data["storePath"], name, data.get("dbUrl", ""))
        mounts = dict(spawner.volume_mounts)
        for project, level in sorted(access.items()):
            mounts[f"teamhub-project-{project}"] = {
                "name": data["projectsVolume"], "subPath": project,
                "mountPath": f"{data['projectsRoot']}/{project}", "readOnly": level != "write"}
        spawner.volume_mounts = mounts
