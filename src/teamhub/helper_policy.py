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

from traitlets.config import Config

from .envs import mine
from .hubconfig import hub_config, proxy_command, server_args, server_environment, unix_url
from .paths import Paths
from .proxy import chp_library, launcher_argv
from .settings import Settings
from .spawners.rootdoor import Policy
from .system import systemd


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


# The JupyterHub traits that decide the public address, the TLS pair and host routing.
PUBLIC_TRAITS = ("bind_url", "ip", "port", "base_url", "subdomain_host", "ssl_cert", "ssl_key")


def public_proxy(hub: Config) -> dict[str, Any]:
    """What of CHP's command line the hub's TeamhubProxy takes from its JupyterHub config, as
    the hub will have it (hubconfig.hub_config: teamhub's settings, then the admin's
    jupyterhub_config.d, which a root hub honoured and so does the helper): the public
    address (JupyterHub.bind_url, or ip/port), the TLS pair (ssl_cert/ssl_key), the
    redirect port (TeamhubProxy.redirect_port), host routing (subdomain_host). Nothing
    else: the programs, the API socket and the error target stay teamhub's."""
    # Deferred: JupyterHub's application (and all it imports) only for an unprivileged start.
    from jupyterhub.app import JupyterHub
    from jupyterhub.objects import Server

    # Only the traits read here: the application logs the config it is given ("Config
    # changed", at debug level, into the hub's log), and the whole one holds secrets
    # (db.url's password, say).
    wanted = Config({"JupyterHub": {name: hub.JupyterHub[name] for name in PUBLIC_TRAITS
                                    if name in hub.JupyterHub}})
    app = JupyterHub(config=wanted)
    public = Server.from_url(app.bind_url)
    tls = bool(app.ssl_cert and app.ssl_key)
    redirect = hub.TeamhubProxy.get("redirect_port", 0)
    return {"ip": public.ip, "port": public.port, "ssl_cert": app.ssl_cert if tls else "",
            "ssl_key": app.ssl_key if tls else "",
            "redirect_port": int(redirect) if tls else 0,
            "host_routing": bool(app.subdomain_host)}


def proxy_ports(public: dict[str, Any]) -> list[int]:
    """The ports the public proxy listens on: the public one, and the HTTPS redirect."""
    return [public["port"], *([public["redirect_port"]] if public["redirect_port"] else [])]


def proxy_argv(settings: Settings, paths: Paths, public: dict[str, Any]) -> list[str]:
    """The proxy the hub's TeamhubProxy would start (hubconfig.update_proxy, update_tls,
    and the admin's jupyterhub_config.d: PUBLIC, from public_proxy): the same command line."""
    return launcher_argv(
        node=shutil.which("node") or "node",
        chp=str(chp_library(proxy_command(settings, paths)) or ""),
        api_socket=str(paths.proxy_api_socket),
        # JupyterHub's hub.url: the connect URL with the hub's prefix.
        error_target=unix_url(paths.hub_socket) + "/hub/error", **public)


def build(settings: Settings, paths: Paths) -> Policy:
    """The helper's policy. With hub.unprivileged, the TLS pair must already be where the
    hub's account reads it (unprivileged.copy_tls, before settings are loaded for this),
    and the hub's whole configuration is loaded for the proxy's part (public_proxy)."""
    pam = settings["auth.mode"] == "pam"
    unprivileged = settings["hub.unprivileged"]
    public = public_proxy(hub_config(settings)) if unprivileged else {}
    return Policy(
        hub_uid=hub_uid(settings["hub.account"]),
        hub_gid=hub_gid(settings["hub.account"]),
        setpriv=shutil.which("setpriv") or "/usr/bin/setpriv",
        proxy_argv=proxy_argv(settings, paths, public) if unprivileged else [],
        proxy_ports=proxy_ports(public) if unprivileged else [],
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
