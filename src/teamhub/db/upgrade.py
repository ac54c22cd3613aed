"""Bring a store database to the schema this teamhub uses, on sqlite or PostgreSQL.

Opening a store that is already current costs one SELECT; alembic is imported only
when there is something to do. The whole upgrade runs in one transaction under the
store's write lock, so a hub and a CLI opening a fresh store at once migrate it once,
and a failed step leaves the store as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from ..errors import AccountError
from . import legacy
from .engine import PG_SCHEMA, StoreConnection, transaction

# alembic's newest revision in migrations/versions (tests/unit/test_db_schema.py checks it).
HEAD = "0001"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def current_revision(conn: StoreConnection) -> str | None:
    """The store's alembic revision; None for a store without alembic's table."""
    if conn.conn.dialect.name == "sqlite":
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                             "AND name = 'alembic_version'").fetchone()
    else:
        found = conn.execute("SELECT to_regclass('alembic_version')").fetchone()[0]
    if not found:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def ensure_schema(engine: Engine, where: str) -> None:
    """Upgrade the store in ENGINE (WHERE names it in messages) to HEAD, if it is behind."""
    sqlite = engine.dialect.name == "sqlite"
    # The usual case, a current store, in one connection and one read.
    with transaction(engine, write=False) as conn:
        wal = not sqlite or conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        if wal and current_revision(conn) == HEAD:
            return
    if sqlite:
        with engine.connect() as conn:
            # WAL lets logins read while the CLI writes.
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
            conn.commit()
    with transaction(engine, write=True) as conn:
        revision = current_revision(conn)
        if revision is None and engine.dialect.name == "sqlite":
            version = legacy.legacy_version(conn)
            if version is not None:
                if version > legacy.LAST_VERSION:
                    raise _too_new(where, f"schema version {version}")
                legacy.finish(conn, version)
                _stamp(conn, "0001")
                revision = "0001"
        if revision == HEAD:
            return
        if revision is not None and not known_revision(revision):
            raise _too_new(where, f"revision {revision}")
        _alembic_upgrade(conn)


def _stamp(conn: StoreConnection, revision: str) -> None:
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                 "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
    conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (revision,))


def _too_new(where: str, what: str) -> AccountError:
    return AccountError(f"the account store {where} has {what}, newer than this teamhub "
                        f"understands ({HEAD})", "upgrade teamhub")


def _script_directory() -> Any:
    # Deferred: alembic is only needed when a store is behind.
    from alembic.script import ScriptDirectory
    return ScriptDirectory(str(MIGRATIONS_DIR))


def known_revision(revision: str) -> bool:
    """Whether REVISION is one of this teamhub's (an older or the current schema)."""
    if revision == HEAD:
        return True
    try:
        return _script_directory().get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an unknown id
        return False


def _alembic_upgrade(conn: StoreConnection) -> None:
    # Deferred: alembic is only needed when a store is behind.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn.conn
    command.upgrade(config, "head")
