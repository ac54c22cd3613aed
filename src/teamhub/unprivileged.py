"""`teamhub up` with hub.unprivileged: root hands the hub's state to `hub.account` and
drops to it for good; a re-executed `up` (`teamhub restart`) runs as that account and can
only adopt the root helper that still runs (README "What runs as root")."""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import sys
import time
from pathlib import Path

from .errors import ForkServerUnavailable, PreflightError
from .hubconfig import ENV_TLS_COPIES, hub_config
from .paths import ENV_UNPRIVILEGED, Paths
from .proxy import read_record
from .settings import BY_KEY, Settings
from .spawners import forkserver
from .system import hub_account, users
from .system.processes import process_uids


def resumed() -> bool:
    """Whether this `up` is one that a hub which dropped root re-executed."""
    return os.geteuid() != 0 and bool(os.environ.get(ENV_UNPRIVILEGED))


def check_resumed(settings: Settings) -> None:
    """A re-executed unprivileged `up` runs as hub.account, with hub.unprivileged on."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if not settings["hub.unprivileged"] or me != settings["hub.account"]:
        raise PreflightError(
            f"this hub runs as {me!r}, and hub.unprivileged or hub.account changed since root "
            "started it: a restart cannot change who the hub runs as",
            "stop teamhub and start it again as root (`systemctl restart teamhub`, or "
            "`teamhub up`)")


def adopt_helper(paths: Paths) -> None:
    """Use the root helper root started (it outlived the exec); never start one: without
    root there is none to start."""
    try:
        forkserver.ping(paths.fork_server_socket)
    except ForkServerUnavailable as exc:
        raise PreflightError(f"the hub runs unprivileged and its root helper is gone ({exc})",
                             "stop teamhub and start it again as root (`systemctl restart "
                             "teamhub`, or `teamhub up`)") from None


def copy_tls(settings: Settings, paths: Paths) -> None:
    """The proxy runs as the account and reads the certificate and key: a pair kept outside
    the state folder (e.g. /etc/letsencrypt) is copied into it (made the account's 0600 by
    give_tree) and the hub pointed at the copy: a `tls.*` pair by its setting's environment
    variable (load the settings again for the helper's policy), and any pair, also one the
    admin gave JupyterHub directly in jupyterhub_config.d, by ENV_TLS_COPIES
    (hubconfig.use_tls_copies); the admin's files stay as they are.

    The pair is the one the hub will end up with: root loads the hub's whole configuration
    (hubconfig.hub_config), the admin's jupyterhub_config.d files included. Running those as
    root is no new power: they are root's own admin files (in the root-owned config folder),
    and a root hub ran them as root at every start anyway."""
    state = paths.state_dir.resolve()
    hub = hub_config(settings)
    copies: dict[str, str] = {}
    for trait, key in (("ssl_cert", "tls.cert"), ("ssl_key", "tls.key")):
        value = hub.JupyterHub.get(trait) or ""
        if not isinstance(value, str) or not value or Path(value).resolve().is_relative_to(state):
            continue
        copy = paths.state_dir / "tls" / f"unprivileged-{key.split('.')[1]}.pem"
        copy.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = copy.with_name(copy.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Path(value).read_bytes())
        os.replace(tmp, copy)
        copies[value] = str(copy)
        if settings[key] == value:
            os.environ[BY_KEY[key].env_var] = str(copy)
    if copies:
        os.environ[ENV_TLS_COPIES] = json.dumps(copies)
    else:
        os.environ.pop(ENV_TLS_COPIES, None)


def hand_over(settings: Settings, paths: Paths, account: users.SystemUser) -> None:
    """Give ACCOUNT what the hub writes, then become it for good (hub.unprivileged).
    copy_tls has run (before the helper's policy was built)."""
    # What root keeps there: the first admin's generated password (the hub never reads it,
    # and it stays for root's eyes only, as `up --admin` says); the helper's socket is the
    # account's already. The registry of the accounts teamhub made (the helper trusts it)
    # and the helper's log are root's, beside the state folder (Paths.root_dir, rootfiles).
    keep = [paths.fork_server_socket, paths.initial_password]
    hub_account.give_tree(paths.state_dir, account.uid, account.gid, keep)
    _roots_alone(paths.initial_password)
    users.share_with_group(paths.system_users, account.gid)
    _retire_root_proxy(paths, account.uid)
    os.environ[ENV_UNPRIVILEGED] = "1"
    hub_account.drop_to(account)


def _roots_alone(path: Path) -> None:
    """PATH, a file of root's in the account's folder, root's and 0600 (one an earlier run
    gave the account is taken back); never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # none (or a link: left alone)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _retire_root_proxy(paths: Paths, uid: int) -> None:
    """A proxy a root hub left running would be adopted by the unprivileged hub, which could
    then neither stop nor replace it: end it here; the hub starts its own."""
    record = read_record(paths.proxy_record)
    if record is None or process_uids(int(record["pid"])) == {uid}:
        return
    pid = int(record["pid"])
    print(f"teamhub: replacing the proxy (pid {pid}) that ran as root", file=sys.stderr)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while read_record(paths.proxy_record) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def take_back(paths: Paths) -> None:
    """The state folder root's again (hub.unprivileged turned off): a root hub in a folder
    another account owns would not be recognised as the hub by the CLI."""
    print(f"teamhub: hub.unprivileged is off: {paths.state_dir} is root's again",
          file=sys.stderr)
    hub_account.give_tree(paths.state_dir, 0, 0)
