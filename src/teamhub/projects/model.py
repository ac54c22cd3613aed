"""Projects, their grants and their audit log, in the account store (the one source of truth).

Everything here is data: which project exists, who was granted what, and the
pure computation of who may therefore read or write it. Putting that onto
disk (ACLs, links in homes) is apply.py's job.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..accounts.groups import canonical_group
from ..accounts.store import AccountStore, _now
from ..db.engine import StoreConnection
from ..errors import ProjectError
from ..system.names import canonical_name

MAX_PROJECT_NAME = 64
_PROJECT_RE = re.compile(rf"[a-z][a-z0-9_-]{{0,{MAX_PROJECT_NAME - 1}}}")
PROJECT_RULE = (f"1 to {MAX_PROJECT_NAME} of lower-case a-z, 0-9, '_', '-', "
                "starting with a letter")
ACCESS = ("read", "write")



def check_project_name(raw: str) -> str:
    """RAW if it is a valid project name; never folded, so `Data` can't shadow `data`.

    Names become folder names under projects.root, so anything that could
    leave that folder ('..', '/', '%2e%2e', absolute paths) fails the rule.
    """
    if not isinstance(raw, str):
        raise ProjectError("a project name must be text", f"use {PROJECT_RULE}")
    shown = repr(raw[:32]) + ("..." if len(raw) > 32 else "")
    if len(raw) > MAX_PROJECT_NAME:
        raise ProjectError(f"project name {shown} is too long ({len(raw)} chars)",
                           f"use {PROJECT_RULE}")
    if _PROJECT_RE.fullmatch(raw):
        return raw
    if _PROJECT_RE.fullmatch(raw.lower()):
        raise ProjectError(f"project name {shown} has upper-case letters",
                           "project names are "
                           f"lower-case only (try {raw.lower()!r})")
    raise ProjectError(f"invalid project name {shown}", f"use {PROJECT_RULE}")


def _follows_rule(name: str) -> bool:
    try:
        check_project_name(name)
    except ProjectError:
        return False
    return True


@dataclass(frozen=True)
class Principal:
    """A grantee: a hub user, or a group written `@name`."""

    kind: str  # "user" | "group"
    name: str

    def __str__(self) -> str:
        return ("@" if self.kind == "group" else "") + self.name


def parse_principal(raw: str) -> Principal:
    raw = raw.strip()
    if raw.startswith("@"):
        return Principal("group", canonical_group(raw[1:]))
    return Principal("user", canonical_name(raw))


def parse_principals(text: str | None) -> list[Principal]:
    """`ada,@data-team` → principals; empty parts are ignored."""
    return [parse_principal(p) for p in (text or "").split(",") if p.strip()]


@dataclass
class Project:
    name: str
    description: str
    archived: bool
    created: str
    grants: dict[Principal, str] = field(default_factory=dict)  # principal -> access


def effective(project: Project, groups: Mapping[str, Iterable[str]],
              users: Iterable[str]) -> dict[str, str]:
    """Who may do what in PROJECT: {user: "write" | "read"}.

    Group grants expand to the group's current members; write beats read; an
    archived project is read-only for everyone who had any access. Only USERS
    (existing, unblocked accounts) appear, so a stale grant never names a ghost
    and a blocked user's grants give them nothing.
    """
    known = set(users)
    result: dict[str, str] = {}
    for principal, access in project.grants.items():
        names = [principal.name] if principal.kind == "user" else groups.get(principal.name, [])
        for name in names:
            if name in known and result.get(name) != "write":
                result[name] = access
    if project.archived:
        result = dict.fromkeys(result, "read")
    return dict(sorted(result.items()))


class ProjectStore:
    """Projects in the same store as the accounts and groups."""

    def __init__(self, store: AccountStore) -> None:
        self.store = store

    def _require(self, conn: StoreConnection, name: str) -> None:
        if conn.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone() is None:
            raise ProjectError(f"project {name!r} does not exist", "see `teamhub project list`")

    def _check_principals(self, conn: StoreConnection, principals: list[Principal]) -> None:
        for p in principals:
            table = "accounts" if p.kind == "user" else "groups"
            if conn.execute(f"SELECT 1 FROM {table} WHERE name = ?", (p.name,)).fetchone() is None:
                see = "user list" if p.kind == "user" else "group list"
                raise ProjectError(f"{p.kind} {p.name!r} does not exist", f"see `teamhub {see}`")

    def create(self, name: str, description: str, grants: dict[Principal, str],
               actor: str) -> Project:
        name = check_project_name(name)
        with self.store._connect() as conn:
            self._check_principals(conn, list(grants))
            cur = conn.execute("INSERT INTO projects (name, description, created) "
                               "VALUES (?,?,?) ON CONFLICT DO NOTHING",
                               (name, description, _now()))
            if cur.rowcount == 0:
                raise ProjectError(f"project {name!r} already exists",
                                   "see "
                                   f"`teamhub project show {name}`")
            for p, access in grants.items():
                conn.execute("INSERT INTO project_grants VALUES (?,?,?,?)",
                             (name, p.kind, p.name, access))
            shown = ", ".join(f"{p}={a}" for p, a in grants.items()) or "no grants"
            _log(conn, actor, name, "create", shown)
        return self.get(name)

    def get(self, name: str) -> Project:
        name = check_project_name(name)
        with self.store._connect(write=False) as conn:
            self._require(conn, name)
            return self._load(conn, [name])[0]

    def list(self) -> builtins.list[Project]:
        """Every project. A name that fails the name rule (only a store written around
        `create` holds one: with hub.unprivileged the store is the hub's account's, and
        root's helper reads it) is left out: root never makes a folder or link of it."""
        with self.store._connect(write=False) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM projects ORDER BY name")
                     if _follows_rule(r[0])]
            return self._load(conn, names)

    def _load(self, conn: StoreConnection, names: builtins.list[str]) -> builtins.list[Project]:
        out = []
        for name in names:
            row = conn.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
            project = Project(row["name"], row["description"], bool(row["archived"]),
                              row["created"])
            for g in conn.execute("SELECT kind, principal, access FROM project_grants "
                                  "WHERE project = ? ORDER BY kind DESC, principal", (name,)):
                project.grants[Principal(g[0], g[1])] = g[2]
            out.append(project)
        return out

    def grant(self, name: str, principal: Principal, access: str, actor: str) -> None:
        if access not in ACCESS:
            raise ProjectError(f"access must be one of {ACCESS}, not {access!r}")
        name = check_project_name(name)
        with self.store._connect() as conn:
            self._require(conn, name)
            self._check_principals(conn, [principal])
            conn.execute("INSERT INTO project_grants VALUES (?,?,?,?) ON CONFLICT "
                         "(project, kind, principal) DO UPDATE SET access = excluded.access",
                         (name, principal.kind, principal.name, access))
            _log(conn, actor, name, "grant", f"{principal}={access}")

    def revoke(self, name: str, principal: Principal, actor: str) -> None:
        name = check_project_name(name)
        with self.store._connect() as conn:
            self._require(conn, name)
            cur = conn.execute("DELETE FROM project_grants WHERE project = ? AND kind = ? "
                               "AND principal = ?", (name, principal.kind, principal.name))
            if cur.rowcount == 0:
                raise ProjectError(f"{principal} has no grant on project {name!r}",
                                   "see "
                                   f"`teamhub project show {name}`")
            _log(conn, actor, name, "revoke", str(principal))

    def forget_principal(self, principal: Principal, actor: str) -> builtins.list[str]:
        """Drop every grant naming PRINCIPAL (a user or group being removed); the projects."""
        with self.store._connect() as conn:
            rows = conn.execute("SELECT project FROM project_grants WHERE kind = ? AND "
                                "principal = ?", (principal.kind, principal.name)).fetchall()
            conn.execute("DELETE FROM project_grants WHERE kind = ? AND principal = ?",
                         (principal.kind, principal.name))
            for r in rows:
                _log(conn, actor, r[0], "revoke", f"{principal} (removed)")
        return [r[0] for r in rows]

    def archive(self, name: str, actor: str) -> None:
        name = check_project_name(name)
        with self.store._connect() as conn:
            self._require(conn, name)
            conn.execute("UPDATE projects SET archived = 1 WHERE name = ?", (name,))
            _log(conn, actor, name, "archive")

    def delete(self, name: str, actor: str, detail: str) -> None:
        name = check_project_name(name)
        with self.store._connect() as conn:
            self._require(conn, name)
            conn.execute("DELETE FROM projects WHERE name = ?", (name,))
            _log(conn, actor, name, "delete", detail)

    def log(self, name: str, actor: str, action: str, detail: str = "") -> None:
        with self.store._connect() as conn:
            _log(conn, actor, name, action, detail)

    def history(self, name: str) -> builtins.list[dict[str, str]]:
        name = check_project_name(name)
        with self.store._connect(write=False) as conn:
            rows = conn.execute("SELECT at, actor, action, detail FROM project_log "
                                "WHERE project = ? ORDER BY id", (name,)).fetchall()
        return [dict(r) for r in rows]


def _log(conn: StoreConnection, actor: str, project: str, action: str,
         detail: str = "") -> None:
    conn.execute("INSERT INTO project_log (at, actor, project, action, detail) "
                 "VALUES (?,?,?,?,?)", (_now(), actor, project, action, detail))
