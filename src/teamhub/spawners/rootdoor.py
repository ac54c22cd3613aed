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
     following links (the rules and `place`: teamhub.spawners.helper_spec). Container
     specs (docker backend's fast start) are root's only.
  `{"op": "status", "pid": N}` → `{"running", "known", "exit"}` of the helper's own
     children only.
  `{"op": "signal", "user": U, "pid": N, "signal": S}` → `{"ok": true}`: S one of
     0/SIGINT/SIGTERM/SIGKILL/SIGHUP, N a process of U's account inside U's scope
     (`teamhub-user-U[-server].scope`) when systemd runs.
  `{"op": "stop_scope", "user": U, "server": S}` → `{"ok": true}`: stops
     `teamhub-user-U[-S].scope`.
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
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HelperRefused, SystemUserError, TeamhubError
from ..projects.apply import Layout, Projects
from ..proxy import TOKEN_RE  # loaded once: the verbs' children share it
from ..system import systemd
from ..system.names import canonical_name, system_name
from ..system.users import (
    SystemUser,
    account_problem,
    check_usable,
    ensure_system_user,
    lookup,
    uid_min,
)

MAX_REQUEST = 64 * 1024
VERBS = ("spawn", "status", "signal", "stop_scope", "ensure_account", "check_password",
         "start_proxy")
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
    # The public proxy of an unprivileged hub (`start_proxy`): empty argv, none to start.
    hub_gid: int | None = None
    setpriv: str = "/usr/bin/setpriv"
    proxy_argv: list[str] = field(default_factory=list)
    proxy_ports: list[int] = field(default_factory=list)
    proxy_slice: str = ""
    proxy_log: str = ""

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
    extra = sorted(str(k)[:20] for k in request if k not in ("op", "token"))
    if extra:
        raise HelperRefused(f"start_proxy takes a token only, not {', '.join(extra[:5])}")
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


def socket_owner(policy: Policy) -> int:
    """Who owns the socket: the hub's account once it has one, root before."""
    return policy.hub_uid if policy.hub_uid is not None else os.geteuid()
