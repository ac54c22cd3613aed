"""The root helper's door: who may talk to it, and what it does for whom.

The fork server (teamhub.spawners.forkserver) is the one root process while the hub
runs. This module is its rulebook; the fork server's own docstring describes how a
granted spawn is carried out.

Protocol (unix socket, one request per connection, one JSON object per line, a request
line at most MAX_REQUEST bytes). Every answer is one line, `{"error": REASON}` when
refused, except that a streaming verb (`user_env`, `env_build`) first sends zero or more
progress lines `{"line": TEXT}` (forkserver._stream_in_child; the hub's side reads them
with roothelper.HelperWork._stream) and then its one answer line; every refusal is
logged with the peer's pid, uid and the reason, and the helper goes on serving others.

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
     following links (the rules and `place`: teamhub.spawners.helper_spec). A spec with
     `container` set (the root hub's own fast start into a container it made) is root's
     only: the hub's account asks for containers with `container_start`.
  `{"op": "status", "pid": N}` → `{"running", "known", "exit"}` of the helper's own
     children only.
  `{"op": "signal", "user": U, "pid": N, "signal": S}` → `{"ok": true}`: S one of
     0/SIGINT/SIGTERM/SIGKILL/SIGHUP, N a process of U's account inside U's scope
     (`teamhub-user-U[-server].scope`) when systemd runs.
  `{"op": "stop_scope", "user": U, "server": S}` → `{"ok": true}`: stops
     `teamhub-user-U[-S].scope` and removes the runtime folder and private /tmp of U's
     account, as a root hub does when it stops a server.
  `{"op": "ensure_account", "user": U}` → `{"uid": N, "home": H}`: creates the Linux
     account on first need (never in PAM mode, where it must exist and be eligible) and
     applies U's project ACLs and links from the store's grants (`"warning"` in the
     answer when that failed: the account is there all the same).
  `{"op": "check_password", "user": U, "password": P}` → `{"ok": bool}` (PAM mode only).
  `{"op": "start_proxy", "token": T}` → `{"pid": N, "started": S, "argv": [...]}`: starts
     the public proxy (hub account only; root hubs start their own). T, the proxy's API
     token (64 hex digits, as chp.TeamhubProxy makes it), is all the hub gives: the
     proxy's whole command line comes from the policy (teamhub.helper_policy: node, the
     launcher, CHP's library, address, ports, API socket, TLS pair, log level, host
     routing, error target). It runs as the hub's account (its uid, its own group only,
     umask 077, its own session, no_new_privs, stdin /dev/null, output appended to the
     policy's proxy log opened as that account) with no capabilities, or, when a port is
     below 1024, CAP_NET_BIND_SERVICE alone (inheritable, permitted, effective, ambient;
     bounding set that one too), through util-linux `setpriv`. Under systemd it is moved
     into `teamhub-proxy-<pid>.scope` in the policy's slice, so that it outlives
     teamhub.service (`"warning"` in the answer when that failed). S is its start time
     (a pid plus start time names one process); the hub records, adopts and ends it as
     the proxy it started itself.

Docker backend (teamhub.spawners.helper_container; refused unless the policy lists the
configured images; the hub never gets the Docker socket):
  `{"op": "container_start"}` → `{"pid": N}`, then the hub sends one JSON object
     `{"spec", "user", "server", "image", "limits", "gpus", "fast"}` and ends its side;
     nothing else is taken. The child checks the spec as `spawn` does (no scope, private
     /tmp or devices: Docker places a container), the image against `docker.image` and
     `docker.images`, the limits (`memory`, `cpu`, `tasks`: positive numbers), the GPU
     UUIDs against the allocation record (held by that user's server); builds the
     container itself (teamhub.spawners.container_launch: name, labels, mounts from the
     policy and the store's grants, user and groups, hardening), starts it, and answers
     `{"id": container id, "pid": the server's host pid}` once the server runs inside
     (`fast`), or `{"id", "pid": 0}` with the server as the container's command, or
     `{"error": ...}`.
  `{"op": "container_state", "user": U, "server": S}` → `{"exists": false}` or
     `{"exists", "id", "running", "exit_code", "pid"}`;
  `{"op": "container_stop", "user": U, "server": S, "timeout": T}` → `{"ok", "removed"}`
     (stop within T ≤ 300 s, remove, empty the runtime folder);
  `{"op": "container_logs", "user": U, "server": S, "lines": L}` → `{"text"}` (L ≤ 200):
     each for container `teamhub-U[-S]` only, refused when its labels do not say it is
     U's server S.

The console's actions that change the machine (hub account; root's part of them only,
the same code the CLI runs: teamhub.rootwork, and envs.store for environments; the hub
keeps its database, the account store and the audit log itself). Every Linux account
acted on is one teamhub made (the registry), never root nor below UID_MIN; in PAM mode
(the machine's own accounts) the three user verbs are refused. Each reads what it
needs from the store, not the hub:
  `{"op": "block_user", "user": U}` → `{"ended": N or null, "projects": [...]}`: U must be
     blocked in the account store; ends every process of U's account and takes U's
     project ACL entries and ~/projects links away (recomputed from the store).
  `{"op": "unblock_user", "user": U}` → `{"ok": true}`: U's project ACLs and links as the
     store says (nothing for a blocked user).
  `{"op": "remove_user", "user": U}` → `{"ok": true}`: U must be in the account store and
     its Linux account in the registry; strips the account's ACL entries off every project
     folder, then deletes the account with its home, and its runtime folder.
  `{"op": "apply_project", "project": P, "users": [U, ...]}` → `{"ok": true}`: P a project
     name (the name rule: never a path) in the store; makes its folder and ACLs what the
     store's grants say, and the listed users' ~/projects links.
  `{"op": "sync_links", "users": [U, ...]}` → `{"ok": true}`: those users' links.
  `{"op": "delete_project", "project": P, "force": bool}` → `{"trash": where or ""}`: P in
     the store; removes its folder, refused unless it is empty or FORCE, which moves it
     into the root-only trash.
  `{"op": "env_rollback", "env": E, "rev": N or null}` → `{"rev": N}`: makes kept
     revision N (null: the one before) of shared environment E current.
  `{"op": "env_access", "env": E, "groups": [G, ...]}` → `{"ok": true}`: only members of
     those groups (each in the store; [] = everyone) see E; visibility rewritten from the
     store's members.
  `{"op": "env_delete", "env": E}` → `{"ok": true}`: deletes E and rewrites visibility.
  (Env names by the env name rule.)
  `{"op": "env_build", "action": A, "env": E, "packages": [...], "groups": [...]}` →
     `{"line"}`..., then `{"rev": N}` (the new current revision) or `{"failed": why}`
     (the build failed; `current` unchanged): A `create` (with `groups`, each in the
     store, canonical, once), `install` or `uninstall` (no `groups`; packages needed);
     packages as envs.mine.check_packages takes them (no option, no white space, at
     most 100). The envs lock is root's, as for the CLI; uv and the new revision's
     python run as the hub's account (envs.store.Builder: setpriv, its uid and gid, no
     other group, no_new_privs, umask 022, its own uv cache `<envs>/.cache-build`),
     never as root; root then takes the tree over by file descriptors
     (teamhub.system.takeover: no link followed, only the builder's directories, files
     and symlinks, setuid and group/other write stripped), checks the import as
     `nobody`, switches `current`, prunes, and rewrites visibility from the store.
  `{"op": "user_env", "user": U, "args": [...]}` → `{"line"}`..., `{"exit": N}`: runs
     `teamhub-env ARGS` as U's account (My environments; envs.mine.run_as: setpriv with
     its uid, gid and groups, its home, a clean environment plus how `teamhub up`
     reached the package index), streaming its output. U's account must be one teamhub
     made (the registry), with its home, never root nor a system account; refused in
     PAM mode and with the docker backend. ARGS only `["list", "--json"]`,
     `["create", NAME, "--", PKG...]` or `["delete", NAME]` (envs.mine.check_args: NAME
     by the env name rule, at most 100 packages, none empty, starting with `-`, over
     400 characters or holding a newline).
A request with a field its verb does not take is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..accounts.groups import canonical_group
from ..envs import admin as envs_admin
from ..envs import mine
from ..envs.store import Builder, SharedEnvs, merge_packages, remove_packages
from ..envs.store import check_name as check_env_name
from ..errors import EnvError, HelperRefused, SystemUserError, TeamhubError
from ..projects.apply import Layout, Projects  # loaded once: the verbs' children share it
from ..projects.model import check_project_name
from ..proxy import TOKEN_RE
from ..rootwork import Direct
from ..system import systemd
from ..system.names import canonical_name, system_name
from ..system.users import (
    SystemUser,
    account_problem,
    check_usable,
    ensure_system_user,
    is_managed,
    lookup,
    uid_min,
)
from ..system.uv import Uv

MAX_REQUEST = 64 * 1024
# Each verb and the fields it takes besides "op"; any other field is refused.
FIELDS: dict[str, frozenset[str]] = {
    "spawn": frozenset(),
    "status": frozenset({"pid"}),
    "signal": frozenset({"user", "pid", "signal"}),
    "stop_scope": frozenset({"user", "server"}),
    "ensure_account": frozenset({"user"}),
    "check_password": frozenset({"user", "password"}),
    "block_user": frozenset({"user"}),
    "unblock_user": frozenset({"user"}),
    "remove_user": frozenset({"user"}),
    "apply_project": frozenset({"project", "users"}),
    "sync_links": frozenset({"users"}),
    "delete_project": frozenset({"project", "force"}),
    "env_rollback": frozenset({"env", "rev"}),
    "env_access": frozenset({"env", "groups"}),
    "env_delete": frozenset({"env"}),
    # container_start: like spawn, the hub sends its request after the first answer.
    "container_start": frozenset(),
    "container_state": frozenset({"user", "server"}),
    "container_stop": frozenset({"user", "server", "timeout"}),
    "container_logs": frozenset({"user", "server", "lines"}),
    "start_proxy": frozenset({"token"}),
    "user_env": frozenset({"user", "args"}),
    "env_build": frozenset({"action", "env", "packages", "groups"}),
}
VERBS = tuple(FIELDS)
# The console's machine-changing actions (done in a child of the helper: slow OS work).
MACHINE_VERBS = ("block_user", "unblock_user", "remove_user", "apply_project", "sync_links",
                 "delete_project", "env_rollback", "env_access", "env_delete")
MAX_USERS = 5000  # user names in one request
SIGNALS = {0: 0, int(signal.SIGINT): signal.SIGINT, int(signal.SIGTERM): signal.SIGTERM,
           int(signal.SIGKILL): signal.SIGKILL, int(signal.SIGHUP): signal.SIGHUP}
# Named servers as the scope's unit name can carry them.
_SERVER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

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
    # Where ensure_account reads the user's project grants from (the store, not the hub).
    projects_root: str = ""
    accounts_db: str = ""
    db_url: str = ""
    pam_service: str = "login"
    # The docker backend (teamhub.spawners.helper_container): the images a server may run
    # (docker.image and docker.images; empty: no container verbs) and what containers
    # mount besides the user's own folders.
    docker_images: list[str] = field(default_factory=list)
    docker_home: str = "bind"
    runtime_dir: str = ""
    hub_socket_dir: str = ""
    gpu_allocations: str = ""
    # The shared environments (envs.root, envs.lock_timeout) for env_* verbs.
    envs_root: str = ""
    envs_lock_timeout: float = 600
    # The public proxy of an unprivileged hub (`start_proxy`): empty argv, none to start.
    hub_gid: int | None = None
    setpriv: str = "/usr/bin/setpriv"
    proxy_argv: list[str] = field(default_factory=list)
    proxy_ports: list[int] = field(default_factory=list)
    proxy_slice: str = ""
    proxy_log: str = ""
    # My environments (`user_env`): the runtime whose bin/teamhub-env runs as the user;
    # empty (other backends): refused.
    user_envs_runtime: str = ""
    # How `teamhub up` reached the package index (envs.mine.INDEX_ENV from its environment):
    # the helper's own environment is bare.
    index_env: dict[str, str] = field(default_factory=dict)
    # Shared environment builds (`env_build`): the runtime's uv and Python, revisions kept.
    envs_uv: str = ""
    envs_python: str = ""
    envs_keep: int = 3

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
    extra = sorted(set(request) - {"op"} - FIELDS[op])
    if extra:
        raise HelperRefused(f"{op}: unexpected field(s) {', '.join(extra)[:80]}")
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


def apply_projects(user: str, policy: Policy) -> None:
    """USER's project ACLs and ~/projects links, recomputed from the store's grants (what
    the spawner does for a root hub); a teamhub account's only, never in PAM mode."""
    if policy.existing_accounts or not (policy.projects_root and policy.accounts_db and (
            policy.db_url or Path(policy.accounts_db).exists())):
        return
    if not Path(policy.projects_root).is_dir():
        return  # no project folder yet, so no ACL or link to apply (and no store to open)
    layout = Layout(root=Path(policy.projects_root), store_path=Path(policy.accounts_db),
                    store_url=policy.db_url, prefix=policy.prefix,
                    registry=Path(policy.registry))
    Projects(layout).apply_for_user(user)


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


def remove_server_folders(user: str, policy: Policy) -> None:
    """What a stopped server of USER leaves behind goes with it, as when a root hub stops
    it: the runtime folder (kernels' sockets and keys) and the private /tmp of USER's
    account (nothing when the helper may not use that account)."""
    try:
        account = account_of(user, policy)
    except HelperRefused:
        return
    for root in (policy.private_runtime_root, policy.private_tmp_root):
        shutil.rmtree(Path(root) / str(account.uid), ignore_errors=True)


def _real_uids(pid: int) -> set[int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return set()
    for line in lines:
        if line.startswith("Uid:"):
            return {int(x) for x in line.split()[1:5]}
    return set()

def check_password(user: str, password: Any, policy: Policy) -> bool:
    """PAM mode: whether PASSWORD is USER's system password (the hub cannot read shadow)."""
    if not policy.existing_accounts:
        raise HelperRefused("passwords are checked through PAM in PAM mode only")
    if not isinstance(password, str) or len(password) > 1024 or "\0" in password:
        raise HelperRefused("bad password value")
    account_of(user, policy)
    import pamela  # deferred: only PAM mode's helper children need it

    try:
        pamela.authenticate(user, password, service=policy.pam_service)
    except pamela.PAMError:
        return False
    return True


def proxy_token(request: dict[str, Any], trusted: bool, policy: Policy) -> str:
    """The API token of a `start_proxy` request, if the helper may start the proxy for it."""
    if trusted:
        raise HelperRefused("start_proxy: a hub that runs as root starts its own proxy")
    if not policy.proxy_argv or policy.hub_uid is None or policy.hub_gid is None:
        raise HelperRefused("start_proxy: this helper has no proxy to start "
                            "(hub.unprivileged was off when root started it)")
    # Any field but the token was refused already (FIELDS, parse_request).
    token = request.get("token")
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise HelperRefused("start_proxy: the token is not one the hub makes (64 hex digits)")
    return token


def proxy_needs_low_port(policy: Policy) -> bool:
    return any(0 < port < 1024 for port in policy.proxy_ports)


def proxy_command(policy: Policy) -> list[str]:
    """How the helper runs the policy's proxy: as the hub's account, its own group only,
    no_new_privs; CAP_NET_BIND_SERVICE alone (ambient) when a port is below 1024, else no
    capability at all."""
    if proxy_needs_low_port(policy):
        caps = ["--inh-caps=-all,+net_bind_service", "--ambient-caps=+net_bind_service",
                "--bounding-set=-all,+net_bind_service"]
    else:
        caps = ["--inh-caps=-all", "--bounding-set=-all"]
    return [policy.setpriv, f"--reuid={policy.hub_uid}", f"--regid={policy.hub_gid}",
            f"--groups={policy.hub_gid}", *caps, "--no-new-privs", "--", *policy.proxy_argv]


def proxy_env(token: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "CONFIGPROXY_AUTH_TOKEN": token}


def user_env(request: dict[str, Any], policy: Policy) -> tuple[SystemUser, list[str]]:
    """A `user_env` request checked (HelperRefused otherwise): the account teamhub made for
    its user (in the registry, with its home; never root nor a system account, never in
    PAM mode, local backend only, as envs.mine.account checks it for a root hub) and the
    arguments (envs.mine.check_args: what the My environments page runs)."""
    if not policy.user_envs_runtime:
        raise HelperRefused("user_env: personal environments are made inside the server "
                            "with this backend")
    if policy.existing_accounts:
        raise HelperRefused("user_env: in PAM mode the Linux accounts are the machine's own")
    user = hub_user(request.get("user"))
    account = account_of(user, policy)  # the registry's, not a system account
    if not os.path.isdir(account.home):
        raise HelperRefused(f"user_env: {user} has no home on this machine yet")
    try:
        args = mine.check_args(request.get("args"))
    except EnvError as exc:
        raise HelperRefused(f"user_env: {exc.message}") from None
    return account, args


def run_user_env(account: SystemUser, args: list[str], policy: Policy,
                 echo: Any) -> dict[str, Any]:
    """`teamhub-env ARGS` as ACCOUNT (envs.mine.run_as: setpriv, the user's uid, gid and
    groups, a clean environment), each line to ECHO; `{"exit": code}`."""
    return {"exit": mine.run_as(account, Path(policy.user_envs_runtime), args, echo,
                                index=policy.index_env)}


def socket_owner(policy: Policy) -> int:
    """Who owns the socket: the hub's account once it has one, root before."""
    return policy.hub_uid if policy.hub_uid is not None else os.geteuid()


# --- the console's actions that change the machine (MACHINE_VERBS) ---------------------


def project_name(value: Any) -> str:
    """VALUE if it is a project name (the name rule: never a path), else HelperRefused."""
    try:
        return check_project_name(value)
    except TeamhubError as exc:
        raise HelperRefused(f"bad project name: {exc.message}") from None


def user_names(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_USERS:
        raise HelperRefused(f"users must be a list of at most {MAX_USERS} user names")
    return [hub_user(v) for v in value]


def teamhub_account(user: str, policy: Policy) -> SystemUser | None:
    """USER's Linux account if it exists (None if not) and teamhub made it; HelperRefused in
    PAM mode, for an account teamhub did not make, root or a system account."""
    if policy.existing_accounts:
        raise HelperRefused("in PAM mode the Linux accounts are the machine's own: teamhub "
                            "does not block, unblock or remove them")
    if lookup(system_name(user, policy.prefix)) is None:
        return None
    return account_of(user, policy)


def projects(policy: Policy) -> Projects:
    """The projects and account store, as the helper's policy (not the hub) locates them."""
    if not policy.accounts_db or not (policy.db_url or Path(policy.accounts_db).exists()):
        raise HelperRefused("there is no account store yet")
    return Projects(Layout(root=Path(policy.projects_root), store_path=Path(policy.accounts_db),
                           store_url=policy.db_url, prefix=policy.prefix,
                           registry=Path(policy.registry)))


def machine_work(request: dict[str, Any], policy: Policy) -> tuple[str, Any]:
    """A MACHINE_VERBS request's arguments checked (HelperRefused otherwise): what it is
    about, for the log, and the work, to run in a child (it reads the store, and refuses
    what the store does not allow)."""
    op = request["op"]
    if op.startswith("env_"):
        return _env_work(request, policy)
    if op in ("block_user", "unblock_user", "remove_user"):
        user = hub_user(request.get("user"))
        return user, lambda: _user_work(op, user, policy)
    names = user_names(request.get("users", []))
    if op == "sync_links":
        def sync() -> dict[str, Any]:
            Direct(projects(policy)).sync_links(names)
            return {"ok": True}

        return f"{len(names)} user(s)", lambda: _guarded(sync)
    name = project_name(request.get("project"))
    if op == "apply_project":
        def apply() -> dict[str, Any]:
            Direct(projects(policy)).apply_project(name, names)
            return {"ok": True}

        return name, lambda: _guarded(apply)
    force = request.get("force", False)
    if not isinstance(force, bool):
        raise HelperRefused("delete_project: force must be true or false")

    def delete() -> dict[str, Any]:
        p = projects(policy)
        p.store.get(name)  # a project of the store's only
        return {"trash": Direct(p).remove_folder(name, force)}

    return name, lambda: _guarded(delete)


def _guarded(work: Any) -> dict[str, Any]:
    """WORK's answer; its failure (a project that is not there, not empty...) a refusal."""
    try:
        answer: dict[str, Any] = work()
        return answer
    except (TeamhubError, OSError) as exc:
        if isinstance(exc, HelperRefused):
            raise
        raise HelperRefused(str(exc)) from None


def _user_work(op: str, user: str, policy: Policy) -> dict[str, Any]:
    account = teamhub_account(user, policy)

    def work() -> dict[str, Any]:
        p = projects(policy)
        stored = p.accounts.get(user)
        if op == "block_user":
            if stored is None or not stored.blocked:
                raise HelperRefused(f"user {user!r} is not blocked in the account store")
            ended, touched = Direct(p).cut_off(user)
            return {"ended": ended, "projects": touched}
        if op == "unblock_user":
            Direct(p).restore(user)
            return {"ok": True}
        if stored is None:
            raise HelperRefused(f"user {user!r} is not in the account store")
        sysname = system_name(user, policy.prefix)
        if account is None and not is_managed(sysname, registry=Path(policy.registry)):
            raise HelperRefused(f"Linux account {sysname!r} was not created by teamhub")
        Direct(p, Path(policy.private_runtime_root)).remove_account(user, keep_home=False)
        return {"ok": True}

    return _guarded(work)


def group_names(raw: Any) -> list[str]:
    """RAW if it is a list of canonical group names, each once; HelperRefused otherwise."""
    if not isinstance(raw, list) or len(raw) > 1000:
        raise HelperRefused("groups must be a list of group names")
    try:
        groups = sorted({canonical_group(g) for g in raw})
    except TeamhubError as exc:
        raise HelperRefused(f"bad group name: {exc.message}") from None
    if groups != sorted(raw):
        raise HelperRefused("group names must be given in their canonical form, once each")
    return groups


def env_name(request: dict[str, Any], policy: Policy) -> str:
    env = request.get("env")
    if not isinstance(env, str):
        raise HelperRefused("bad environment name: not text")
    try:
        check_env_name(env)
    except TeamhubError as exc:
        raise HelperRefused(f"bad environment name: {exc.message}") from None
    if not policy.envs_root:
        raise HelperRefused("the helper was given no envs.root")
    return env


def _env_work(request: dict[str, Any], policy: Policy) -> tuple[str, Any]:
    op = request["op"]
    env = env_name(request, policy)
    rev = request.get("rev")
    if op == "env_rollback" and rev is not None and (
            not isinstance(rev, int) or isinstance(rev, bool) or rev < 0):
        raise HelperRefused(f"bad revision {str(rev)[:20]!r}")
    groups = group_names(request.get("groups")) if op == "env_access" else []
    root = Path(policy.envs_root)

    def work() -> dict[str, Any]:
        envs = envs_admin.locked_envs(root, policy.envs_lock_timeout)
        envs.meta(env)  # an existing environment only
        members = projects(policy).groups.list()
        answer: dict[str, Any] = {"ok": True}
        if op == "env_rollback":
            answer = {"rev": envs.rollback(env, rev)}
        elif op == "env_access":
            missing = [g for g in groups if g not in members]
            if missing:
                raise HelperRefused(f"unknown group(s): {', '.join(missing)}")
            envs.set_groups(env, groups)
        else:
            envs.delete(env)
        envs_admin.publish_visibility(root, members, policy.prefix)
        return answer

    return env, lambda: _guarded(work)


# --- shared environment builds (env_build, streaming) -----------------------------------

BUILD_ACTIONS = ("create", "install", "uninstall")


def env_build(request: dict[str, Any], policy: Policy) -> tuple[str, Any]:
    """An `env_build` request checked (HelperRefused otherwise): what it is about, for the
    log, and the work (given an echo) to stream in a child. The build runs uv and the new
    revision's python as the hub's account (envs.store.Builder), never as root; root takes
    the finished tree over (system.takeover). A build that fails answers `{"failed"}`."""
    action = request.get("action")
    if action not in BUILD_ACTIONS:
        raise HelperRefused(f"env_build: unknown action {str(action)[:40]!r}")
    env = env_name(request, policy)
    try:
        packages = mine.check_packages(request.get("packages"))
    except EnvError as exc:
        raise HelperRefused(f"env_build: {exc.message}") from None
    if action != "create" and "groups" in request:
        raise HelperRefused(f"env_build: {action} takes no groups")
    if action != "create" and not packages:
        raise HelperRefused(f"env_build: {action} needs packages")
    groups = group_names(request.get("groups", []))
    if policy.hub_uid is None or policy.hub_gid is None or not policy.envs_uv:
        raise HelperRefused("env_build: the helper was given no builder (hub.account) or uv")
    builder = Builder(policy.hub_uid, policy.hub_gid, policy.setpriv)
    root = Path(policy.envs_root)

    def work(echo: Any) -> dict[str, Any]:
        members = projects(policy).groups.list()
        missing = [g for g in groups if g not in members]
        if missing:
            raise HelperRefused(f"env_build: unknown group(s): {', '.join(missing)}")
        os.environ.update(policy.index_env)  # this child's: how uv reaches the index
        envs = SharedEnvs(root, Uv(Path(policy.envs_uv), root / envs_admin.CACHE),
                          policy.envs_python, keep=policy.envs_keep,
                          lock_timeout=policy.envs_lock_timeout, builder=builder)
        try:
            if action == "create":
                meta = envs.create(env, packages, groups=groups, echo=echo)
            else:
                spec = envs.current_spec(envs.meta(env))
                spec = (merge_packages(spec, packages) if action == "install"
                        else remove_packages(spec, packages))
                meta = envs.change(env, spec, f"{action} {' '.join(packages)}", echo=echo)
        except EnvError as exc:
            return {"failed": str(exc)}
        envs_admin.publish_visibility(root, members, policy.prefix)
        return {"rev": meta["current"]}

    return f"{action} {env}", work
