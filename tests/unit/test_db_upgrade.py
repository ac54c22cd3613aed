"""The store's alembic migrations: one definition, and in-place upgrade of pre-alembic files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from argon2 import PasswordHasher

from teamhub.accounts.groups import GroupStore
from teamhub.accounts.lifecycle import pending, reset_link_user
from teamhub.accounts.lockout import Lockout
from teamhub.accounts.store import AccountStore
from teamhub.db import legacy, schema
from teamhub.db.engine import engine_for
from teamhub.db.upgrade import HEAD, MIGRATIONS_DIR
from teamhub.projects.model import Principal, ProjectStore

PW = "correct horse battery"
WEAK = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_head_constant_is_alembics_head() -> None:
    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() == HEAD


def test_migrations_build_the_schema_definition(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / "s" / "accounts.sqlite")
    with engine_for(store.url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []


def _write_v6_store(db: Path) -> None:
    # A store exactly as the pre-alembic teamhub (schema version 6) wrote it, with
    # a row in every table.
    db.parent.mkdir(mode=0o700)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for number, statements in enumerate(legacy.MIGRATIONS, start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?)", (number,))
        conn.execute("INSERT INTO accounts VALUES ('ada', ?, 1, '2024-01-01T00:00:00Z', 0, 0)",
                     (WEAK.hash(PW),))
        conn.execute("INSERT INTO accounts VALUES ('bob', ?, 0, '2024-01-02T00:00:00Z', 1, 0)",
                     (WEAK.hash(PW),))
        conn.execute("INSERT INTO accounts VALUES ('cy', ?, 0, '2024-01-03T00:00:00Z', 0, 1)",
                     (WEAK.hash(PW),))
        conn.execute("INSERT INTO groups VALUES ('team', '2024-01-01T00:00:00Z')")
        conn.execute("INSERT INTO memberships VALUES ('team', 'ada')")
        conn.execute("INSERT INTO projects VALUES ('apollo', 'moon', 0, '2024-01-01T00:00:00Z')")
        conn.execute("INSERT INTO project_grants VALUES ('apollo', 'group', 'team', 'write')")
        conn.execute("INSERT INTO project_grants VALUES ('apollo', 'user', 'bob', 'read')")
        conn.execute("INSERT INTO project_log (at, actor, project, action, detail) VALUES "
                     "('2024-01-01T00:00:00Z', 'ada', 'apollo', 'create', 'team=write')")
        conn.execute("INSERT INTO reset_links VALUES (?, 'ada', '2024-01-01T00:00:00Z', "
                     "'2999-01-01T00:00:00Z', NULL)", (_token_hash(),))
        conn.execute("INSERT INTO login_failures VALUES ('mallory', 3, 1, 4102444800.0, 1.5)")
    conn.close()


TOKEN = "t" * 43


def _token_hash() -> str:
    import hashlib
    return hashlib.sha256(TOKEN.encode()).hexdigest()


def test_v6_store_upgrades_in_place_losing_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state" / "accounts.sqlite"
    _write_v6_store(db)
    before = _dump(db, exclude={"schema_version"})

    store = AccountStore(db)

    assert _dump(db, exclude={"alembic_version"}) == before
    assert [(a.name, a.admin, a.blocked, a.pending) for a in store.list()] == [
        ("ada", True, False, False), ("bob", False, True, False), ("cy", False, False, True)]
    assert store.verify("ada", PW) is not None and store.verify("bob", PW) is None
    assert GroupStore(store).list() == {"team": ["ada"]}
    project = ProjectStore(store).get("apollo")
    assert project.grants == {Principal("group", "team"): "write",
                              Principal("user", "bob"): "read"}
    assert ProjectStore(store).history("apollo")[0]["action"] == "create"
    assert [a.name for a in pending(store)] == ["cy"]
    assert reset_link_user(store, TOKEN) == "ada"
    assert Lockout(store).state("mallory").lockouts == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    conn.close()
    now = _dump(db, exclude=set())
    AccountStore(db)  # opening again changes nothing
    assert _dump(db, exclude=set()) == now


def _dump(db: Path, exclude: set[str]) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        out = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
               for t in tables if t not in exclude}
    conn.close()
    return out
