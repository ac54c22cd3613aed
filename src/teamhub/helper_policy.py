"""The root helper's policy, built from settings by root (`teamhub up`) before the hub runs.

The helper (teamhub.spawners.forkserver) decides alone what a server is made of when the
hub's account asks for one: this is everything it needs for that, the same values the hub's
spawner gets from hubconfig, passed on the helper's command line so the hub never gets to
change them (teamhub.spawners.rootdoor).
"""

from __future__ import annotations

import pwd
from typing import Any

from .hubconfig import server_args, server_environment
from .paths import Paths
from .settings import Settings
from .spawners.rootdoor import Policy


def hub_uid(account: str) -> int | None:
    """The uid of the hub's account, None while it does not exist (the hub runs as root)."""
    try:
        uid = pwd.getpwnam(account).pw_uid
    except KeyError:
        return None
    return uid if uid != 0 else None


def build(settings: Settings, paths: Paths) -> Policy:
    pam = settings["auth.mode"] == "pam"
    return Policy(
        hub_uid=hub_uid(settings["hub.account"]),
        program=str(paths.singleuser),
        args=server_args(settings),
        registry=str(paths.system_users),
        prefix=settings["users.system_prefix"],
        home_root=settings["paths.home_root"],
        shell=settings["users.shell"],
        existing_accounts=pam,
        min_uid=settings["auth.pam_min_uid"],
        allowed_groups=sorted(settings["auth.allowed_groups"]) if pam else [],
        private_runtime_root=str(paths.private_runtime),
        private_tmp_root=str(paths.private_tmp_root),
        server_log_dir=str(paths.state_dir / "logs"),
        extra_env_keys=sorted({*server_environment(settings), *settings["spawner.env_keep"]}),
        projects_root=str(paths.projects_root),
        accounts_db=str(paths.accounts_db),
        db_url=settings["db.url"],
        pam_service=settings["auth.pam_service"],
        envs_root=settings["envs.root"],
        envs_lock_timeout=settings["envs.lock_timeout"],
        **docker(settings, paths),
    )


def docker(settings: Settings, paths: Paths) -> dict[str, Any]:
    """The container verbs' part (teamhub.spawners.helper_container): the images servers may
    run from, what their containers mount, the GPU record; nothing without the backend."""
    if settings["spawner.backend"] != "docker":
        return {}
    return {
        "docker_images": sorted({settings["docker.image"], *settings["docker.images"]}),
        "docker_home": settings["docker.home"],
        "runtime_dir": str(paths.runtime_dir),
        "hub_socket_dir": str(paths.socket_dir),
        "gpu_allocations": str(paths.gpu_allocations),
    }
