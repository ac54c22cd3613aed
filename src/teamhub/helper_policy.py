"""The root helper's policy, built from settings by root (`teamhub up`) before the hub runs.

The helper (teamhub.spawners.forkserver) decides alone what a server is made of when the
hub's account asks for one: this is everything it needs for that, the same values the hub's
spawner gets from hubconfig, passed on the helper's command line so the hub never gets to
change them (teamhub.spawners.rootdoor).
"""

from __future__ import annotations

import pwd
import shutil
from typing import Any

from .envs import mine
from .hubconfig import proxy_command, server_args, server_environment, unix_url
from .paths import Paths
from .proxy import chp_library, launcher_argv
from .settings import Settings
from .spawners.rootdoor import Policy
from .system import systemd
from .system.listen import listen_address


def hub_uid(account: str) -> int | None:
    """The uid of the hub's account, None while it does not exist (the hub runs as root)."""
    try:
        uid = pwd.getpwnam(account).pw_uid
    except KeyError:
        return None
    return uid if uid != 0 else None


def hub_gid(account: str) -> int | None:
    try:
        return pwd.getpwnam(account).pw_gid
    except KeyError:
        return None


def proxy_ports(settings: Settings) -> list[int]:
    """The ports the public proxy listens on: the public one, and the HTTPS redirect."""
    redirect = settings["tls.http_port"] if settings["tls.cert"] else 0
    return [settings["hub.port"], *([redirect] if redirect else [])]


def proxy_argv(settings: Settings, paths: Paths) -> list[str]:
    """The proxy the hub's TeamhubProxy would start (hubconfig.update_proxy, update_tls):
    the same command line, from the same settings."""
    tls = bool(settings["tls.cert"])
    return launcher_argv(
        node=shutil.which("node") or "node",
        chp=str(chp_library(proxy_command(settings, paths)) or ""),
        ip=listen_address(settings["hub.ip"]), port=settings["hub.port"],
        api_socket=str(paths.proxy_api_socket),
        # JupyterHub's hub.url: the connect URL with the hub's prefix.
        error_target=unix_url(paths.hub_socket) + "/hub/error",
        host_routing=bool(settings["hub.domain"]),
        ssl_key=settings["tls.key"] if tls else "", ssl_cert=settings["tls.cert"] if tls else "",
        redirect_port=settings["tls.http_port"] if tls else 0)


def build(settings: Settings, paths: Paths) -> Policy:
    """The helper's policy. With hub.unprivileged, the TLS pair must already be where the
    hub's account reads it (unprivileged.copy_tls, before settings are loaded for this)."""
    pam = settings["auth.mode"] == "pam"
    unprivileged = settings["hub.unprivileged"]
    return Policy(
        hub_uid=hub_uid(settings["hub.account"]),
        hub_gid=hub_gid(settings["hub.account"]),
        setpriv=shutil.which("setpriv") or "/usr/bin/setpriv",
        proxy_argv=proxy_argv(settings, paths) if unprivileged else [],
        proxy_ports=proxy_ports(settings) if unprivileged else [],
        proxy_slice="teamhub.slice" if unprivileged and systemd.booted() else "",
        proxy_log=str(paths.proxy_log) if unprivileged else "",
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
        user_envs_runtime=(str(paths.runtime_dir) if settings["spawner.backend"] == "local"
                           else ""),
        index_env=mine.index_env(),
        envs_uv=str(paths.runtime_dir / "bin" / "uv"),
        envs_python=str(paths.runtime_python),
        envs_keep=settings["envs.keep_revisions"],
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
