"""The sqlite store's schema before alembic (versions 1-6 in a `schema_version` table).

Kept only so that a store file written by teamhub before the move to alembic
upgrades in place: its missing steps run (sqlite SQL, as they always did), and the
file is then stamped as alembic's first revision, which is version 6's schema.
Never change these: they are history.
"""

from __future__ import annotations

from .engine import StoreConnection

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
"""

_SCHEMA_V2 = (
    """CREATE TABLE IF NOT EXISTS groups (
        name TEXT PRIMARY KEY,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS memberships (
        group_name TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
        user_name TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
        PRIMARY KEY (group_name, user_name)
    )""",
)

_SCHEMA_V3 = (
    """CREATE TABLE IF NOT EXISTS projects (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        archived INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS project_grants (
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'group')),
        principal TEXT NOT NULL,
        access TEXT NOT NULL CHECK (access IN ('read', 'write')),
        PRIMARY KEY (project, kind, principal)
    )""",
    """CREATE TABLE IF NOT EXISTS project_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        project TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
)

_SCHEMA_V4 = ("ALTER TABLE accounts ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0",)

_SCHEMA_V5 = (
    "ALTER TABLE accounts ADD COLUMN pending INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE IF NOT EXISTS reset_links (
        token_hash TEXT PRIMARY KEY,
        name TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
        created TEXT NOT NULL,
        expires TEXT NOT NULL,
        used TEXT
    )""",
)

_SCHEMA_V6 = (
    """CREATE TABLE IF NOT EXISTS login_failures (
        name TEXT PRIMARY KEY,
        failures INTEGER NOT NULL DEFAULT 0,
        lockouts INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0,
        last_failure REAL NOT NULL DEFAULT 0
    )""",
)

# Version N was reached by running MIGRATIONS[N - 1].
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (_SCHEMA_V1,), _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6,
)
LAST_VERSION = len(MIGRATIONS)


def legacy_version(conn: StoreConnection) -> int | None:
    """The file's pre-alembic schema version, or None if it has no `schema_version` table."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                    "AND name = 'schema_version'").fetchone() is None:
        return None
    return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)


def finish(conn: StoreConnection, version: int) -> None:
    """Run the steps after VERSION, then drop `schema_version` (alembic's table replaces it)."""
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("DROP TABLE schema_version")
