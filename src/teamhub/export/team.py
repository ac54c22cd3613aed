"""The team as the export sees it: accounts, their Linux identities, groups, projects, envs.

Read from the account store, the registry of Linux accounts teamhub made and the shared
environments' definitions; nothing here changes anything. Identities are what keeps
files' owners on shared storage: each account's uid (from the registry, checked against
the machine's passwd entry), its primary gid and its supplementary gids. Accounts that
never started a server have no Linux account yet; they get the next free uids above every
uid in use, so their entries are stable from the export on.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from ..accounts.groups import GroupStore
from ..accounts.store import AccountStore
from ..envs.store import META, check_name
from ..errors import ExportError
from ..paths import Paths
from ..projects.model import Project, ProjectStore
from ..settings import Settings
from ..system import users
from ..system.names import system_name


@dataclass(frozen=True)
class Identity:
    """Who a hub user is on disk: the Linux account their server runs as."""

    login: str  # Linux account name (prefix + hub name)
    uid: int
    gid: int
    supplemental_gids: tuple[int, ...] = ()
    allocated: bool = False  # no Linux account here yet: uid chosen by the export


@dataclass
class Team:
    accounts: dict[str, dict[str, bool]] = field(default_factory=dict)  # name -> flags
    identities: dict[str, Identity] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    projects: list[Project] = field(default_factory=list)
    envs: dict[str, list[str]] = field(default_factory=dict)  # env -> groups ([]: everyone)


def _registry(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read the account registry {path} ({exc})",
                          "run the export "
                          "as root on the teamhub machine") from None


def _identity(login: str, registered_uid: int) -> Identity | None:
    """LOGIN's identity if its passwd entry is still the one teamhub made."""
    account = users.lookup(login)
    if account is None or account.uid != registered_uid:
        return None
    gids = sorted(set(os.getgrouplist(login, account.gid)) - {account.gid})
    return Identity(login, account.uid, account.gid, tuple(gids))


def _taken_ids() -> set[int]:
    return {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}


def identities(names: list[str], prefix: str, registry: Path) -> dict[str, Identity]:
    """Every name's identity: its Linux account's, else a fresh uid (= gid) no account or
    group on this machine uses, so it can be created here too without a clash."""
    entries = _registry(registry)
    found: dict[str, Identity] = {}
    for name in names:
        login = system_name(name, prefix)
        entry = entries.get(login)
        ident = _identity(login, entry["uid"]) if isinstance(entry, dict) else None
        if ident is not None:
            found[name] = ident
    taken = _taken_ids() | {i.uid for i in found.values()} | {i.gid for i in found.values()}
    next_id = max([users.uid_min() - 1, *(i.uid for i in found.values())]) + 1
    for name in names:
        if name in found:
            continue
        while next_id in taken:
            next_id += 1
        found[name] = Identity(system_name(name, prefix), next_id, next_id, allocated=True)
        taken.add(next_id)
    return dict(sorted(found.items()))


def shared_envs(root: Path) -> dict[str, list[str]]:
    """Each shared env's groups, from its definition file."""
    envs: dict[str, list[str]] = {}
    if not root.is_dir():
        return envs
    for folder in sorted(root.iterdir()):
        meta = folder / META
        if meta.is_file():
            check_name(folder.name)
            envs[folder.name] = list(json.loads(meta.read_text()).get("groups") or [])
    return envs


def read_team(settings: Settings) -> Team:
    """The team SETTINGS' install holds (an empty team when there is no account store)."""
    paths = Paths.from_settings(settings)
    team = Team(envs=shared_envs(Path(settings["envs.root"])))
    if not paths.store_exists:
        return team
    store = AccountStore(paths.accounts_db, paths.db_url)
    team.accounts = {a.name: {"admin": a.admin, "blocked": a.blocked, "pending": a.pending}
                     for a in store.list()}
    team.groups = GroupStore(store).list()
    team.projects = ProjectStore(store).list()
    if settings["auth.mode"] == "builtin":
        team.identities = identities(list(team.accounts), settings["users.system_prefix"],
                                     paths.system_users)
    return team
