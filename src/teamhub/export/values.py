"""Settings + team → the chart's values.yaml (see mapping.py for where each setting goes).

Declarative parts go where the chart has a key for them (hub.config for the
authenticator's traitlets, singleuser.* for the image, limits, storage, cull.*);
what depends on the user starting a server (uid, groups, project mounts, group limits,
GPUs) is data under `custom.teamhub`, applied at each spawn by the hub image's
`teamhub.k8s` (the one `hub.extraConfig` entry calls it), because only then are the
user and their groups known.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .. import __version__
from ..errors import ExportError
from ..hubconfig import activity_interval
from ..limits import parse_cpu, parse_memory, parse_shm_size
from ..settings import Settings
from .gpus import plan as gpu_plan
from .team import Team

HUB_STATE = "/srv/jupyterhub"  # the hub pod's volume (hub.db sqlite-pvc) in the chart
STORE_PATH = f"{HUB_STATE}/teamhub/accounts.sqlite"
PROJECTS_VOLUME = "teamhub-projects"
ENVS_VOLUME = "teamhub-envs"
EXTRA_CONFIG = '''\
# teamhub: accounts store, groups, and per user at each spawn: uid/gid, limits of their
# groups, project folders (read-only for readers) and GPUs, from custom.teamhub.
from teamhub.k8s import configure_hub

configure_hub(c, get_config("custom.teamhub"))
'''


@dataclass
class Options:
    registry: str = ""  # where the admin pushes the two images ("" = local names)
    guarantee: float = 0.25  # requests as a share of limits
    machine_memory: int = 0  # bytes, for `50%` limits (0: this machine's)
    machine_cpus: int = 0


@dataclass
class Built:
    values: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def image(opts: Options, which: str) -> dict[str, str]:
    name = f"{opts.registry.rstrip('/')}/{which}" if opts.registry else f"teamhub/{which}"
    return {"name": name, "tag": __version__}


def quantity(n: int) -> str:
    """Bytes as a Kubernetes quantity, exactly (`8Gi`, `512Mi`, or plain bytes)."""
    for suffix, unit in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def byte_spec(n: int | None) -> str | None:
    """Bytes as JupyterHub's byte specification (K/M/G/T are powers of 1024, like teamhub's)."""
    if n is None:
        return None
    for suffix, unit in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def home_volume(name: str) -> str:
    """The name of NAME's home volume (PVC): a DNS label, which `_` never is."""
    if "_" not in name:
        return f"home-{name}"
    return f"home-{name.replace('_', '-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def store_url(settings: Settings) -> str:
    """db.url without its password (the chart hands that to the hub as PGPASSWORD)."""
    url = settings["db.url"]
    if not url:
        return ""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit(("postgresql", netloc, parts.path, parts.query, ""))


def hub_database(settings: Settings) -> dict[str, Any]:
    """hub.db: sqlite on the hub's volume (`sqlite-pvc`), or db.url's PostgreSQL.

    With PostgreSQL the account store is in the same database (schema `teamhub`), so
    the hub pod reaches both with the URL and the password the chart gives it.
    """
    url = settings["db.url"]
    if not url:
        return {"type": "sqlite-pvc"}
    db: dict[str, Any] = {"type": "postgres", "url": store_url(settings)}
    password = urlsplit(url).password
    if password:
        db["password"] = unquote(password)
    return db


def _limits(settings: Settings, opts: Options, notes: list[str]) -> dict[str, Any]:
    """The limits with every share of this machine resolved to an absolute value."""
    memory = opts.machine_memory or None
    cpus = opts.machine_cpus or None

    def absolute(key: str, resource: str, value: Any) -> str:
        if resource == "memory":
            size = parse_memory(value, memory)
            out = "none" if size is None else byte_spec(size)
        else:
            n = parse_cpu(value, cpus)
            out = "none" if n is None else f"{n:g}"
        if str(value).strip().endswith("%"):
            notes.append(f"{key} = {value} is a share of this machine: exported as {out}")
        return str(out)

    groups = {}
    for group, table in sorted((settings["limits.groups"] or {}).items()):
        kept = {r: absolute(f"limits.groups.{group}.{r}", r, table[r])
                for r in ("memory", "cpu") if r in table}
        if kept:
            groups[group] = kept
    return {"memory": absolute("limits.memory", "memory", settings["limits.memory"]),
            "cpu": absolute("limits.cpu", "cpu", settings["limits.cpu"]),
            "groups": groups, "guarantee": opts.guarantee}


def _resources(limits: dict[str, Any] | None) -> dict[str, Any]:
    """singleuser.cpu / singleuser.memory for users in no listed group."""
    if limits is None:  # limits.enabled = false; null deletes the chart's 1G guarantee
        return {"cpu": {"limit": None, "guarantee": None},
                "memory": {"limit": None, "guarantee": None}}
    mem = parse_memory(limits["memory"])
    cpu = parse_cpu(limits["cpu"])
    share = limits["guarantee"]
    return {"cpu": {"limit": cpu, "guarantee": None if cpu is None else round(cpu * share, 3)},
            "memory": {"limit": byte_spec(mem),
                       "guarantee": None if mem is None else byte_spec(int(mem * share))}}


def _environment(settings: Settings) -> dict[str, str]:
    env = dict(settings["spawner.environment"])
    if "PATH" in env:
        base = f"{settings['paths.runtime_dir']}/bin:/usr/local/bin:/usr/bin:/bin"
        path = env["PATH"]
        env["PATH"] = path.replace("$PATH", base) if "$PATH" in path else f"{path}:{base}"
    return env


def _passwd_files(settings: Settings, team: Team) -> dict[str, Any]:
    """The users' passwd and group entries for the pods (libnss-extrausers reads them), so
    `id`, `ls -l` and the shared envs' visibility know the names, as on this machine."""
    import grp

    home_root, shell = settings["paths.home_root"], settings["users.shell"]
    passwd: list[str] = []
    groups: list[str] = []
    extra: set[int] = set()
    for ident in team.identities.values():
        passwd.append(f"{ident.login}:x:{ident.uid}:{ident.gid}:teamhub user:"
                      f"{home_root}/{ident.login}:{shell}")
        groups.append(f"{ident.login}:x:{ident.gid}:")
        extra.update(ident.supplemental_gids)
    for gid in sorted(extra - {i.gid for i in team.identities.values()}):
        try:
            entry = grp.getgrgid(gid)
        except KeyError:
            continue
        groups.append(f"{entry.gr_name}:x:{gid}:{','.join(entry.gr_mem)}")
    return {
        "teamhub-passwd": {"mountPath": "/var/lib/extrausers/passwd", "mode": 0o644,
                           "stringData": "".join(line + "\n" for line in passwd)},
        "teamhub-group": {"mountPath": "/var/lib/extrausers/group", "mode": 0o644,
                          "stringData": "".join(line + "\n" for line in groups)},
    }


def _storage(settings: Settings, team: Team, opts: Options) -> dict[str, Any]:
    volumes: dict[str, Any] = {}
    mounts: dict[str, Any] = {}
    # A pod's /dev/shm is its own already (64M); the memory emptyDir gives it the size.
    shm = parse_shm_size(settings["spawner.shm_size"], opts.machine_memory or None)
    if shm is not None:
        volumes["dev-shm"] = {"name": "dev-shm",
                              "emptyDir": {"medium": "Memory", "sizeLimit": quantity(shm)}}
        mounts["dev-shm"] = {"name": "dev-shm", "mountPath": "/dev/shm"}
    if team.envs:
        volumes[ENVS_VOLUME] = {"name": ENVS_VOLUME, "persistentVolumeClaim": {
            "claimName": ENVS_VOLUME, "readOnly": True}}
        mounts[ENVS_VOLUME] = {"name": ENVS_VOLUME, "mountPath": settings["envs.root"],
                               "readOnly": True}
    if team.projects:
        # Mounted per user and per grant at spawn (teamhub.k8s); here only the volume.
        volumes[PROJECTS_VOLUME] = {"name": PROJECTS_VOLUME,
                                    "persistentVolumeClaim": {"claimName": PROJECTS_VOLUME}}
    prefix = settings["users.system_prefix"]
    return {"type": "dynamic",
            "homeMountPath": f"{settings['paths.home_root']}/{prefix}{{unescaped_username}}",
            "extraVolumes": volumes or None, "extraVolumeMounts": mounts or None}


def _tls(settings: Settings) -> dict[str, Any]:
    if not settings["tls.cert"]:
        return {}
    pem = {}
    for key in ("tls.cert", "tls.key"):
        try:
            pem[key] = Path(settings[key]).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExportError(f"cannot read {key} = {settings[key]} ({exc})",
                              "run the export as "
                              "root on the teamhub machine") from None
    https: dict[str, Any] = {"enabled": True, "type": "manual",
                             "manual": {"cert": pem["tls.cert"], "key": pem["tls.key"]}}
    if settings["hub.domain"]:
        https["hosts"] = [settings["hub.domain"]]
    proxy: dict[str, Any] = {"https": https}
    if settings["tls.http_port"] == 0:
        proxy["service"] = {"disableHttpPort": True}
    return proxy


def _hub_config(settings: Settings) -> dict[str, Any]:
    jupyterhub: dict[str, Any] = {
        "authenticator_class": "teamhub.accounts.authenticator.TeamhubAuthenticator",
        "cleanup_servers": settings["hub.stop_servers_on_shutdown"],
    }
    if settings["hub.log_level"] != "DEBUG":
        jupyterhub["log_level"] = settings["hub.log_level"]
    if settings["hub.domain"]:
        scheme = "https" if settings["tls.cert"] else "http"
        jupyterhub["subdomain_host"] = f"{scheme}://{settings['hub.domain']}"
        jupyterhub["cookie_host_prefix_enabled"] = bool(settings["tls.cert"])
    return {
        "JupyterHub": jupyterhub,
        "GuardedAuthenticator": {
            "store_path": STORE_PATH,
            "db_url": store_url(settings),
            "lockout_failures": settings["auth.lockout_failures"],
            "lockout_base_seconds": settings["auth.lockout_base_seconds"],
            "lockout_max_seconds": max(settings["auth.lockout_max_seconds"],
                                       settings["auth.lockout_base_seconds"]),
            "client_max_failures": settings["auth.client_max_failures"],
            "client_window_seconds": settings["auth.client_window_seconds"],
            "trusted_proxies": list(settings["auth.trusted_proxies"]),
        },
        "TeamhubAuthenticator": {
            "signup_enabled": settings["auth.signup"],
            "open_signup": settings["auth.open_signup"],
            "min_password_length": settings["auth.min_password_length"],
            "system_prefix": settings["users.system_prefix"],
            # No Linux accounts in the cluster to check signups against.
            "system_users_registry": "",
        },
        "KubeSpawner": {"http_timeout": settings["spawner.http_timeout"]},
    }


def _team_data(settings: Settings, team: Team, limits: dict[str, Any] | None) -> dict:
    hsts = settings["tls.hsts_max_age"] if settings["tls.cert"] else 0
    users = {name: {"login": i.login, "uid": i.uid, "gid": i.gid,
                    "supplementalGids": list(i.supplemental_gids),
                    "homeVolume": home_volume(name)}
             for name, i in team.identities.items()}
    volumes = [u["homeVolume"] for u in users.values()]
    if len(set(volumes)) != len(volumes):
        raise ExportError("two users' home volume names collide", "rename one of them")
    return {
        "version": 1,
        "storePath": STORE_PATH,
        "dbUrl": store_url(settings),
        "homeRoot": settings["paths.home_root"],
        "users": users,
        "limits": limits,
        "gpus": gpu_plan(settings.values).as_values(),
        "projectsRoot": settings["projects.root"],
        "projectsVolume": PROJECTS_VOLUME if team.projects else "",
        "envsRoot": settings["envs.root"],
        "hsts": f"max-age={hsts}" if hsts else "",
        "activityInterval": activity_interval(settings),
    }


def build(settings: Settings, team: Team, opts: Options) -> Built:
    """The chart values for SETTINGS and TEAM, and notes on values converted on the way."""
    notes: list[str] = []
    limits = _limits(settings, opts, notes) if settings["limits.enabled"] else None
    singleuser: dict[str, Any] = {
        "image": image(opts, "singleuser"),
        "cmd": [f"{settings['paths.runtime_dir']}/bin/jupyterhub-singleuser"],
        "defaultUrl": settings["hub.default_url"],
        "startTimeout": settings["spawner.start_timeout"],
        # Per user at spawn (their own gid), never one group for everybody's volumes.
        "fsGid": None,
        "extraEnv": _environment(settings),
        "storage": _storage(settings, team, opts),
        "extraFiles": _passwd_files(settings, team),
        **_resources(limits),
    }
    values: dict[str, Any] = {
        "hub": {
            "image": image(opts, "hub"),
            "db": hub_database(settings),
            "concurrentSpawnLimit": settings["hub.concurrent_spawn_limit"],
            "activeServerLimit": settings["hub.active_server_limit"],
            "config": _hub_config(settings),
            "extraConfig": {"teamhub": EXTRA_CONFIG},
        },
        "singleuser": singleuser,
        "cull": {"enabled": settings["culling.enabled"], "timeout": settings["culling.timeout"],
                 "every": settings["culling.every"]},
        "debug": {"enabled": settings["hub.log_level"] == "DEBUG"},
        "custom": {"teamhub": _team_data(settings, team, limits)},
    }
    proxy = _tls(settings)
    if proxy:
        values["proxy"] = proxy
    return Built(values, notes)
