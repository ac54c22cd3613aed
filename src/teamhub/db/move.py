"""`teamhub db migrate --to URL`: move the hub's database and the account store from their
sqlite files into PostgreSQL, prove the copy, and only then switch `db.url`.

Everything is copied in one PostgreSQL transaction: JupyterHub's tables (its own ORM
definition, in the database's default schema) and teamhub's (schema `teamhub`). Each
table's row count and checksum are compared with the sqlite original inside that
transaction; any difference, refused right or lost connection rolls it all back, and
the settings file is written only after the commit. The sqlite files are left as they
were (they are the way back: unset db.url).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .. import settings as settings_mod
from ..accounts.store import AccountStore
from ..errors import DatabaseMoveError
from ..paths import Paths
from . import schema
from .copy import TableSum, copy_tables, mismatches, reset_sequences, table_sum
from .engine import PG_SCHEMA, parse_url
from .upgrade import HEAD
from .url import EXAMPLE, is_postgresql, mask, problem


@dataclass(frozen=True)
class Moved:
    url: str  # masked
    tables: list[TableSum]


def _fail(url: str, what: str, fix: str) -> DatabaseMoveError:
    return DatabaseMoveError(f"cannot move the database to {mask(url)}: {what}", fix)


def _driver_words(exc: SQLAlchemyError) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _fix_for(words: str) -> str:
    low = words.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return "check the user name and password in the URL"
    if "permission denied" in low or "must be owner" in low:
        return ("give the user the right to create a schema (GRANT CREATE ON DATABASE ... TO "
                "user), or use a database it owns")
    if low.startswith("connection") and "database" in low and "does not exist" in low:
        return "create the database first (createdb -O USER NAME), or fix its name in the URL"
    if "connection refused" in low or "could not translate" in low or "timeout" in low:
        return "check that the PostgreSQL server runs and that the URL's host and port are right"
    return "check the URL and the server's log"


def migrate(settings: settings_mod.Settings, url: str, hub_running: bool) -> Moved:
    """Copy everything to URL, verify it, then set db.url in the settings file."""
    paths = Paths.from_settings(settings)
    bad = problem(url)
    if bad or not url or not is_postgresql(url):
        raise _fail(url, "it is not a PostgreSQL URL", f"use {EXAMPLE}")
    if paths.db_url:
        raise _fail(url, f"db.url is already {mask(paths.db_url)}",
                    "db migrate copies from the sqlite files; unset db.url first to move back")
    if hub_running:
        raise _fail(url, "a hub is running", "stop it first (systemctl stop teamhub, or Ctrl-C "
                    "on `teamhub up`), then run db migrate again")
    if not paths.accounts_db.exists() and not paths.hub_db.exists():
        raise _fail(url, f"there is nothing to copy in {paths.state_dir}",
                    "set db.url directly for a new install: teamhub config set db.url URL")
    # Opening the store brings an older one to this teamhub's schema first.
    store = AccountStore(paths.accounts_db)
    hub_engine = (create_engine(f"sqlite:///{paths.hub_db}", poolclass=NullPool)
                  if paths.hub_db.exists() else None)
    target = create_engine(parse_url(url), poolclass=NullPool,
                           connect_args={"connect_timeout": 10})
    try:
        with target.connect() as conn, conn.begin():
            tables = _copy_all(conn, store, hub_engine, url)
    except SQLAlchemyError as exc:
        words = _driver_words(exc)
        raise _fail(url, words, _fix_for(words)) from None
    finally:
        target.dispose()
        if hub_engine is not None:
            hub_engine.dispose()
    settings_mod.set_value(settings.config_file, "db.url", url)
    return Moved(mask(url), tables)


def _hub_metadata() -> Any:
    # Deferred: JupyterHub's ORM is only needed here, not by every CLI command.
    from jupyterhub import orm
    return orm.Base.metadata


def _copy_all(conn: Connection, store: AccountStore, hub_engine: Engine | None,
              url: str) -> list[TableSum]:
    found = inspect(conn)
    if PG_SCHEMA in found.get_schema_names() and found.get_table_names(schema=PG_SCHEMA):
        raise _fail(url, f"the database already has teamhub tables (schema {PG_SCHEMA})",
                    "use an empty database")
    hub_meta = _hub_metadata()
    taken = set(found.get_table_names()) & {*hub_meta.tables, "alembic_version"}
    if taken:
        raise _fail(url, f"the database already has JupyterHub tables ({', '.join(sorted(taken))})",
                    "use an empty database")
    sums: list[TableSum] = []
    hub_schema = conn.execute(text("SELECT current_schema()")).scalar() or "public"
    conn.execute(text(f"CREATE SCHEMA {PG_SCHEMA}"))
    # One connection, one transaction for both; execution_options changes the connection
    # in place, so each part sets the schema its unqualified tables go to.
    store_target = conn.execution_options(schema_translate_map={None: PG_SCHEMA})
    schema.metadata.create_all(store_target)
    store_target.execute(text(f"CREATE TABLE {PG_SCHEMA}.alembic_version (version_num "
                              "VARCHAR(32) NOT NULL PRIMARY KEY)"))
    store_target.execute(text(f"INSERT INTO {PG_SCHEMA}.alembic_version VALUES (:v)"),
                         {"v": HEAD})
    with store._engine.connect() as source:
        copy_tables(source, store_target, schema.TABLES)
        reset_sequences(store_target, schema.TABLES)
        problems = mismatches(source, store_target, schema.TABLES)
        sums += [table_sum(store_target, t) for t in schema.TABLES]
    if hub_engine is not None:
        with hub_engine.connect() as source:
            hub_tables = [t for t in hub_meta.sorted_tables
                          if inspect(source).has_table(t.name)]
            version = source.execute(text("SELECT version_num FROM alembic_version")).scalar()
            conn.execution_options(schema_translate_map={None: hub_schema})
            hub_meta.create_all(conn)
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL "
                              "PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": version})
            copy_tables(source, conn, hub_tables)
            reset_sequences(conn, hub_tables)
            problems += mismatches(source, conn, hub_tables)
            sums += [table_sum(conn, t) for t in hub_tables]
    if problems:
        raise _fail(url, "the copy differs from the original (" + "; ".join(problems) + ")",
                    "nothing was changed; report this as a teamhub bug")
    return sums
