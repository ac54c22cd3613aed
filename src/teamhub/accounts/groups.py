"""Hub groups and their members, kept in the account store (the one source of truth).

JupyterHub's own groups are synced from here (at hub start and, while it runs,
through its REST API); project folders and environment visibility read here.
"""

from __future__ import annotations

import builtins
import re

from ..db.engine import StoreConnection
from ..errors import AccountError
from ..system.names import canonical_name
from .store import AccountStore, _now

_GROUP_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def canonical_group(raw: str) -> str:
    """Group names: 1–32 of a-z, 0-9, '-', '_', starting with a letter (case folded)."""
    if not isinstance(raw, str) or len(raw) > 64:
        raise AccountError("group names are 1-32 characters: a-z, 0-9, '-', '_'")
    name = raw.strip().lower()
    if not _GROUP_RE.fullmatch(name):
        raise AccountError(
            f"invalid group name {raw[:32]!r}: use 1-32 of a-z, 0-9, '-', '_', "
            "starting with a letter"
        )
    return name


class GroupStore:
    """Groups in the same store as the accounts."""

    def __init__(self, store: AccountStore) -> None:
        self.store = store

    def create(self, group: str) -> str:
        group = canonical_group(group)
        with self.store._connect() as conn:
            cur = conn.execute("INSERT INTO groups (name, created) VALUES (?, ?) "
                               "ON CONFLICT DO NOTHING", (group, _now()))
            if cur.rowcount == 0:
                raise AccountError(f"group {group!r} already exists")
        return group

    def delete(self, group: str) -> None:
        group = canonical_group(group)
        with self.store._connect() as conn:
            if conn.execute("DELETE FROM groups WHERE name = ?", (group,)).rowcount == 0:
                raise _unknown_group(group)

    def add_members(self, group: str, users: list[str]) -> list[str]:
        """Add USERS (all must exist) to GROUP; returns those newly added. All or nothing."""
        group = canonical_group(group)
        names = [canonical_name(u) for u in users]
        with self.store._connect() as conn:
            _require_group(conn, group)
            for name in names:
                row = conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise AccountError(f"user {name!r} does not exist", "see `teamhub user list`")
            added = []
            for name in names:
                cur = conn.execute(
                    "INSERT INTO memberships (group_name, user_name) VALUES (?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (group, name),
                )
                if cur.rowcount:
                    added.append(name)
        return added

    def remove_members(self, group: str, users: list[str]) -> list[str]:
        group = canonical_group(group)
        names = [canonical_name(u) for u in users]
        with self.store._connect() as conn:
            _require_group(conn, group)
            removed = []
            for name in names:
                cur = conn.execute(
                    "DELETE FROM memberships WHERE group_name = ? AND user_name = ?", (group, name)
                )
                if cur.rowcount:
                    removed.append(name)
        return removed

    def list(self) -> dict[str, list[str]]:
        """Every group with its sorted members."""
        with self.store._connect(write=False) as conn:
            groups: dict[str, builtins.list[str]] = {
                r[0]: [] for r in conn.execute("SELECT name FROM groups ORDER BY name")}
            for g, u in conn.execute(
                "SELECT group_name, user_name FROM memberships ORDER BY user_name"
            ):
                groups[g].append(u)
        return groups

    def members(self, group: str) -> builtins.list[str]:
        group = canonical_group(group)
        with self.store._connect(write=False) as conn:
            _require_group(conn, group)
            rows = conn.execute(
                "SELECT user_name FROM memberships WHERE group_name = ? ORDER BY user_name",
                (group,),
            ).fetchall()
        return [r[0] for r in rows]

    def groups_of(self, user: str) -> builtins.list[str]:
        """The groups USER belongs to (empty for unknown users)."""
        try:
            name = canonical_name(user)
        except AccountError:
            return []
        with self.store._connect(write=False) as conn:
            rows = conn.execute(
                "SELECT group_name FROM memberships WHERE user_name = ? ORDER BY group_name",
                (name,),
            ).fetchall()
        return [r[0] for r in rows]


def _unknown_group(group: str) -> AccountError:
    return AccountError(f"group {group!r} does not exist", "see `teamhub group list`")


def _require_group(conn: StoreConnection, group: str) -> None:
    if conn.execute("SELECT 1 FROM groups WHERE name = ?", (group,)).fetchone() is None:
        raise _unknown_group(group)
