"""The root helper's door: who may talk to it, and what it does for whom.

The fork server (teamhub.spawners.forkserver) is the one root process while the hub
runs. This module is its rulebook; the fork server's own docstring describes how a
granted spawn is carried out.

Protocol (unix socket, one request per connection, one JSON object per line, a request
line at most MAX_REQUEST bytes). Every answer is one line, `{"error": REASON}` when
refused; every refusal is logged with the peer's pid, uid and the reason, and the
helper goes on serving others.

Who: the peer's credentials (SO_PEERCRED) on every connection. Root is served as before
(the hub while it still runs as root). The hub's account (`hub.account`, its uid given
to the helper by `teamhub up` in the policy) gets the verbs below, each argument checked
here. Anyone else is refused. The socket itself is 0600, owned by the hub's account
when that account exists, so nobody else can even connect.

Verbs (hub account; `user` is always a hub user name, checked by the name rule; the
Linux account is derived from it by the helper: `<users.system_prefix><user>` from the
registry of accounts teamhub created, or the account of that name in PAM mode, never
uid 0 nor below UID_MIN from /etc/login.defs):
  `{"op": "spawn"}` → `{"pid": N}`, then the hub sends the launch spec and ends its side.
     The child checks the spec with `check_spec` before anything runs and answers
     `{"pid": its pid}` (or the container server's host pid) or `{"error": ...}`.
     Only these of the spec are taken from the hub: the environment's values within a
     closed list of keys (JUPYTERHUB_* values checked: prefix `/user/<user>/`, port an
     int in 1024-65535, user the same name; the API token is the one secret passed), and
     the resource placement (scope properties from a closed list, private /tmp, /dev/shm
     size, GPU devices). argv is the policy's program and arguments; uid, gid, cwd
     (the home), umask, log file, runtime folder and rlimits are the helper's own; it
     makes the fresh runtime folder and private /tmp itself and opens the log without
     following links (`place`). Container specs (docker backend's fast start) are
     root's only.
  `{"op": "status", "pid": N}` → `{"running", "known", "exit"}` of the helper's own
     children only.
  `{"op": "signal", "user": U, "pid": N, "signal": S}` → `{"ok": true}`: S one of
     0/SIGINT/SIGTERM/SIGKILL/SIGHUP, N a process of U's account inside U's scope
     (`teamhub-user-U[-server].scope`) when systemd runs.
  `{"op": "stop_scope", "user": U, "server": S}` → `{"ok": true}`: stops
     `teamhub-user-U[-S].scope`.
  `{"op": "ensure_account", "user": U}` → `{"uid": N, "home": H}`: creates the Linux
     account on first need (never in PAM mode, where it must exist and be eligible).
  `{"op": "check_password", "user": U, "password": P}` → `{"ok": bool}` (PAM mode only).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import struct
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..accounts.pam import account_problem
from ..errors import HelperRefused, SystemUserError, TeamhubError
from ..system import namespaces, private_dirs, systemd
from ..system.names import canonical_name, system_name
from ..system.sandbox import RLIMITS, LaunchSpec
from ..system.users import SystemUser, check_usable, ensure_system_user, lookup, uid_min
from . import lsp

MAX_REQUEST = 64 * 1024
VERBS = ("spawn", "status", "signal", "stop_scope", "ensure_account", "check_password")
SIGNALS = {0: 0, int(signal.SIGINT): signal.SIGINT, int(signal.SIGTERM): signal.SIGTERM,
           int(signal.SIGKILL): signal.SIGKILL, int(signal.SIGHUP): signal.SIGHUP}
# Named servers as the scope's unit name can carry them.
_SERVER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
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


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"pid {self.pid} uid {self.uid}"


def peer_of(conn: socket.socket) -> Peer:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return Peer(*struct.unpack("3i", creds))


@dataclass(frozen=True)
class Policy:
    """What the helper needs to decide alone, given by root (`teamhub up`) on its command
    line, from settings: the hub never gets to change it."""

    hub_uid: int | None = None
    program: str = ""
    args: list[str] = field(default_factory=list)
    registry: str = ""
    prefix: str = "jupyter-"
    home_root: str = "/home"
    shell: str = "/bin/bash"
    existing_accounts: bool = False
    min_uid: int = 1000
    allowed_groups: list[str] = field(default_factory=list)
    private_runtime_root: str = "/run/teamhub"
    private_tmp_root: str = "/var/tmp/teamhub"
    server_log_dir: str = ""
    extra_env_keys: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        return cls(**json.loads(text))


def admit(peer: Peer, policy: Policy) -> bool:
    """True for root, False for the hub's account; HelperRefused for anyone else."""
    if peer.uid == 0:
        return True
    if policy.hub_uid is not None and peer.uid == policy.hub_uid:
        return False
    raise HelperRefused(f"uid {peer.uid} is neither root nor the hub's account")


def parse_request(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_REQUEST:
        raise HelperRefused(f"request of {len(line)} bytes is over {MAX_REQUEST}")
    try:
        request = json.loads(line)
    except ValueError:
        raise HelperRefused("request is not JSON") from None
    if not isinstance(request, dict):
        raise HelperRefused("request is not a JSON object")
    op = request.get("op")
    if op not in VERBS:
        raise HelperRefused(f"unknown verb {str(op)[:40]!r}")
    return request


def hub_user(value: Any) -> str:
    """VALUE if it is a canonical hub user name (the name rule), else HelperRefused."""
    try:
        name = canonical_name(value)
    except TeamhubError as exc:
        raise HelperRefused(f"bad user name: {exc.message}") from None
    if name != value:
        raise HelperRefused(f"user name {str(value)[:40]!r} is not in its canonical form")
    return name


def account_of(user: str, policy: Policy) -> SystemUser:
    """The Linux account hub user USER's servers run as, if the helper may use it."""
    if policy.existing_accounts:
        problem = account_problem(user, min_uid=max(policy.min_uid, uid_min()),
                                  allowed_groups=set(policy.allowed_groups))
        account = lookup(user)
        if problem or account is None:
            raise HelperRefused(f"Linux account {user!r} may not run a server: {problem}")
    else:
        try:
            account = check_usable(system_name(user, policy.prefix), registry=Path(policy.registry))
        except (SystemUserError, TeamhubError) as exc:
            raise HelperRefused(str(exc)) from None
    if account.uid == 0 or account.uid < uid_min():
        raise HelperRefused(
            f"Linux account {account.name!r} (uid {account.uid}) is a system account")
    return account


def ensure_account(user: str, policy: Policy) -> SystemUser:
    if not policy.existing_accounts:
        try:
            ensure_system_user(system_name(user, policy.prefix), registry=Path(policy.registry),
                               home_root=Path(policy.home_root), shell=policy.shell)
        except TeamhubError as exc:
            raise HelperRefused(str(exc)) from None
    return account_of(user, policy)


def scope_unit(user: str, server: Any) -> str:
    """The systemd scope of USER's server SERVER ("" for the default one)."""
    if server in ("", None):
        return f"teamhub-user-{user}.scope"
    if not isinstance(server, str) or not _SERVER_NAME_RE.fullmatch(server):
        raise HelperRefused(f"bad server name {str(server)[:40]!r}")
    return f"teamhub-user-{user}-{server}.scope"


def _in_scope_of(pid: int, user: str) -> bool:
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    prefix = f"teamhub-user-{user}"
    for line in text.splitlines():
        unit = line.rsplit("/", 1)[-1]
        if unit == f"{prefix}.scope" or (unit.startswith(f"{prefix}-") and unit.endswith(".scope")):
            return True
    return False


def signal_process(request: dict[str, Any], policy: Policy) -> tuple[int, int]:
    """Carry out a `signal` request if its pid is its user's to signal: (pid, signal)."""
    user = hub_user(request.get("user"))
    pid, sig = request.get("pid"), request.get("signal")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise HelperRefused(f"bad pid {str(pid)[:20]!r}")
    if not isinstance(sig, int) or sig not in SIGNALS:
        raise HelperRefused(f"signal {str(sig)[:20]!r} is not one of {sorted(SIGNALS)}")
    account = account_of(user, policy)
    # Through a pidfd opened before the checks: a pid reused after them is never signalled.
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        raise HelperRefused(f"pid {pid} is not running") from None
    try:
        if _real_uids(pid) != {account.uid}:
            raise HelperRefused(f"pid {pid} is not a process of {account.name!r}")
        if systemd.booted() and not _in_scope_of(pid, user):
            raise HelperRefused(f"pid {pid} is not in {user!r}'s server scope")
        signal.pidfd_send_signal(pidfd, sig)
    finally:
        os.close(pidfd)
    return pid, sig


def _real_uids(pid: int) -> set[int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return set()
    for line in lines:
        if line.startswith("Uid:"):
            return {int(x) for x in line.split()[1:5]}
    return set()


# ---------------------------------------------------------------- the launch spec


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
    return replace(spec, log_path=None, log_fd=private_dirs.open_log(Path(spec.log_path)))


def check_password(user: str, password: Any, policy: Policy) -> bool:
    """PAM mode: whether PASSWORD is USER's system password (the hub cannot read shadow)."""
    if not policy.existing_accounts:
        raise HelperRefused("passwords are checked through PAM in PAM mode only")
    if not isinstance(password, str) or len(password) > 1024 or "\0" in password:
        raise HelperRefused("bad password value")
    account_of(user, policy)
    import pamela  # deferred: only PAM mode's helper children need it

    try:
        pamela.authenticate(user, password, service="login")
    except pamela.PAMError:
        return False
    return True


def socket_owner(policy: Policy) -> int:
    """Who owns the socket: the hub's account once it has one, root before."""
    return policy.hub_uid if policy.hub_uid is not None else os.geteuid()
