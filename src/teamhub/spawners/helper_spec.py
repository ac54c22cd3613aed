"""The root helper's rules for a launch spec the hub's account sends (teamhub.spawners.
rootdoor's `spawn` verb): what is taken from it, checked; what is the helper's own,
replaced; and what the helper then makes for the server before it becomes the user.
"""

from __future__ import annotations

import os
import re
import resource
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import HelperRefused
from ..system import namespaces, private_dirs, systemd
from ..system.sandbox import RLIMITS, LaunchSpec
from ..system.users import SystemUser
from . import lsp
from .rootdoor import Policy, account_of, hub_user, scope_unit

# The environment a server may be given: JupyterHub's own keys (values checked below
# where they name the user or the port), the account's basics (set by the helper) and
# teamhub's; the policy adds the admin's `spawner.environment` keys.
SERVER_ENV_KEYS = frozenset({
    "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_ADMIN_ACCESS", "JUPYTERHUB_CLIENT_ID",
    "JUPYTERHUB_COOKIE_OPTIONS", "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "JUPYTERHUB_HOST",
    "JUPYTERHUB_OAUTH_CALLBACK_URL", "JUPYTERHUB_OAUTH_SCOPES",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES", "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES",
    "JUPYTERHUB_USER", "JUPYTERHUB_SERVER_NAME", "JUPYTERHUB_API_URL",
    "JUPYTERHUB_ACTIVITY_URL", "JUPYTERHUB_BASE_URL", "JUPYTERHUB_SERVICE_PREFIX",
    "JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_PUBLIC_HUB_URL",
    "JUPYTERHUB_ROOT_DIR", "JUPYTERHUB_DEFAULT_URL", "JUPYTERHUB_DEBUG",
    "JUPYTERHUB_DISABLE_USER_CONFIG",
    "USER", "LOGNAME", "HOME", "SHELL", "PATH", "LANG", "LC_ALL", "MEM_LIMIT", "CPU_LIMIT",
    "JUPYTER_RUNTIME_DIR", "JUPYTER_TEAMHUB_PATH", "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
})
MAX_ENV_VALUE = 16 * 1024
# Scope properties the spawner sets (teamhub.limits, GPU hooks): nothing that runs code.
SCOPE_PROPERTIES = frozenset({
    "Description", "Slice", "CollectMode", "MemoryMax", "MemoryHigh", "MemorySwapMax",
    "MemoryLimit", "CPUQuota", "CPUQuotaPerSecUSec", "TasksMax", "CPUAccounting",
    "MemoryAccounting", "TasksAccounting", "DevicePolicy", "DeviceAllow", "IOAccounting",
})
GPU_DEVICE_RE = re.compile(r"/dev/nvidia[a-z0-9-]*|/proc/driver/nvidia/gpus/[0-9a-fA-F:.]+")

def _check_env(env: Any, user: str, account: SystemUser, policy: Policy,
               runtime_dir: str) -> dict[str, str]:
    if not isinstance(env, dict):
        raise HelperRefused("env is not an object")
    allowed = SERVER_ENV_KEYS | set(policy.extra_env_keys)
    for key, value in env.items():
        if key not in allowed:
            raise HelperRefused(f"environment variable {str(key)[:40]!r} is not one a server gets")
        if not isinstance(value, str) or "\0" in value or len(value) > MAX_ENV_VALUE:
            raise HelperRefused(f"bad value for {key}")
    if env.get("JUPYTERHUB_USER") != user:
        raise HelperRefused("JUPYTERHUB_USER is not the spec's user")
    server = env.get("JUPYTERHUB_SERVER_NAME", "")
    scope_unit(user, server)  # the server name rule
    own = f"/user/{user}/" + (f"{server}/" if server else "")
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "")
    base = prefix[:len(prefix) - len(own)]
    if not prefix.endswith(own) or not (base == "" or re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", base)):
        raise HelperRefused(f"JUPYTERHUB_SERVICE_PREFIX {prefix[:60]!r} is not {own!r}")
    url = env.get("JUPYTERHUB_SERVICE_URL", "")
    match = re.fullmatch(r"http://127\.0\.0\.1:([0-9]{1,5})(/.*)?", url)
    if not match or not 1024 <= int(match.group(1)) <= 65535:
        raise HelperRefused(
            f"JUPYTERHUB_SERVICE_URL {url[:60]!r} is not a loopback port 1024-65535")
    fixed = {"USER": account.name, "LOGNAME": account.name, "HOME": account.home,
             "SHELL": account.shell or "/bin/sh", "JUPYTER_RUNTIME_DIR": runtime_dir}
    return {**env, **fixed}


def _check_scope(scope: Any, user: str, server: str) -> dict[str, Any] | None:
    if scope is None:
        return None
    if not isinstance(scope, dict) or not isinstance(scope.get("properties"), dict):
        raise HelperRefused("scope is not {unit, properties}")
    unit = scope_unit(user, server)
    if scope.get("unit") != unit:
        raise HelperRefused(f"scope unit {str(scope.get('unit'))[:60]!r} is not {unit!r}")
    for key, value in scope["properties"].items():
        if key not in SCOPE_PROPERTIES:
            raise HelperRefused(f"scope property {str(key)[:40]!r} is not one teamhub sets")
        if key == "Slice" and value != "teamhub.slice":
            raise HelperRefused("servers run in teamhub.slice only")
    return {"unit": unit, "properties": scope["properties"]}


def _check_devices(devices: Any) -> dict[str, Any] | None:
    if devices is None:
        return None
    if not isinstance(devices, dict):
        raise HelperRefused("devices is not an object")
    for key in ("hide", "mask"):
        for path in devices.get(key, []):
            if not isinstance(path, str) or not GPU_DEVICE_RE.fullmatch(path):
                raise HelperRefused(f"device {str(path)[:60]!r} is not a GPU device node")
    cover = devices.get("cover")
    if cover is not None and (not isinstance(cover, str) or not cover.startswith("/run/teamhub")
                              or ".." in cover):
        raise HelperRefused("device cover is not teamhub's")
    return devices


def _check_rlimits(rlimits: Any) -> dict[str, list[int]]:
    """At most the helper's own limits: root could raise a hard limit, the hub may not."""
    if not isinstance(rlimits, dict):
        raise HelperRefused("rlimits is not an object")
    checked = {}
    for name, value in rlimits.items():
        res = RLIMITS.get(name)
        if res is None or not isinstance(value, list) or len(value) != 2:
            raise HelperRefused(f"bad rlimit {str(name)[:20]!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise HelperRefused(f"bad rlimit {name}")
        infinite = resource.RLIM_INFINITY
        hard = resource.getrlimit(res)[1]
        if hard != infinite and (value[1] == infinite or value[1] > hard):
            raise HelperRefused(f"rlimit {name} over the helper's own")
        checked[name] = value
    return checked


def warm() -> None:
    """Work out, before the helper forks, what `check_spec` computes alike for every
    spawn: the language servers' npm prefix (a Node.js start, cached per process)."""
    lsp.npm_global_prefix()


def check_spec(spec: LaunchSpec, policy: Policy) -> LaunchSpec:
    """SPEC as the hub's account may have it run: its user's account, the policy's
    program, the helper's own paths; HelperRefused otherwise."""
    if spec.container is not None:
        raise HelperRefused("container starts are root's only")
    if not isinstance(spec.env, dict):
        raise HelperRefused("env is not an object")
    user = hub_user(spec.env.get("JUPYTERHUB_USER"))
    account = account_of(user, policy)
    if spec.username != account.name or spec.uid != account.uid or spec.gid != account.gid:
        raise HelperRefused(f"spec is for account {str(spec.username)[:40]!r} uid {spec.uid}, "
                      f"not {account.name!r} uid {account.uid}")
    argv = [policy.program, *policy.args, *lsp.server_args(account.home)]
    if not policy.program or spec.argv != argv:
        raise HelperRefused("argv is not the server command teamhub builds")
    if spec.cwd != account.home:
        raise HelperRefused(f"cwd {str(spec.cwd)[:60]!r} is not {account.name!r}'s home")
    if spec.umask != 0o077:
        raise HelperRefused("umask is not 077")
    runtime_dir = str(Path(policy.private_runtime_root) / str(account.uid))
    server = spec.env.get("JUPYTERHUB_SERVER_NAME", "") or ""
    env = _check_env(spec.env, user, account, policy, runtime_dir)
    log_path = str(Path(policy.server_log_dir) / f"{user}.log") if policy.server_log_dir else None
    if spec.log_path != log_path or spec.log_fd is not None:
        raise HelperRefused("log file is not the user's server log")
    private_tmp = None
    if spec.private_tmp is not None:
        private_tmp = str(Path(policy.private_tmp_root) / str(account.uid))
        if spec.private_tmp != private_tmp:
            raise HelperRefused("private /tmp is not the user's")
    shm = spec.shm_size
    if shm is not None and (not isinstance(shm, int) or not 0 < shm <= 1 << 40):
        raise HelperRefused("bad /dev/shm size")
    return replace(spec, argv=argv, env=env, cwd=account.home, username=account.name,
                   uid=account.uid, gid=account.gid, umask=0o077, log_path=log_path,
                   log_fd=None, rlimits=_check_rlimits(spec.rlimits),
                   scope=_check_scope(spec.scope, user, server), private_tmp=private_tmp,
                   devices=_check_devices(spec.devices))


def place(spec: LaunchSpec, policy: Policy) -> LaunchSpec:
    """Make what a checked SPEC's server needs before `become()`, which the hub's account
    cannot make itself: its fresh runtime folder and private /tmp, the GPU cover file, no
    scope left by an earlier server; its log opened here (no link followed), so the spec
    carries the descriptor. Returns the spec to become."""
    assert spec.uid is not None and spec.gid is not None  # check_spec set them
    runtime_root = Path(policy.private_runtime_root)
    private_dirs.root_only_folder(runtime_root)
    os.chmod(runtime_root, 0o755)  # users pass through to their own folder
    private_dirs.fresh_folder(runtime_root / str(spec.uid), spec.uid, spec.gid)
    if spec.private_tmp is not None:
        tmp = Path(spec.private_tmp)
        private_dirs.root_only_folder(tmp.parent, mode=0o711)
        private_dirs.fresh_folder(tmp, spec.uid, spec.gid)
    if spec.devices and spec.devices.get("cover"):
        namespaces.ensure_cover(spec.devices["cover"])
    if spec.scope:
        systemd.stop_unit(spec.scope["unit"])
    if spec.log_path is None:
        return spec
    log_fd = private_dirs.open_log(Path(spec.log_path))
    if policy.hub_uid is not None:
        # The hub's account shows its tail when a start fails (its log folder anyway).
        os.fchown(log_fd, policy.hub_uid, -1)
    return replace(spec, log_path=None, log_fd=log_fd)


