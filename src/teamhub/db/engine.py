"""Engines for the account store, on sqlite (one file) or PostgreSQL (a server).

One engine per database and process, pooled, so a hub's logins reuse connections.
Every store operation is one transaction that holds the store's write lock from its
start when it writes (sqlite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped
advisory lock), so a read-then-write never interleaves with another process's write,
whichever the backend. Store SQL is written with `?` placeholders and the common
subset of both dialects (ON CONFLICT, no INSERT OR ...).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, Row, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from ..errors import SettingsError
from .url import mask

# teamhub's tables share a PostgreSQL database with JupyterHub's, whose names
# overlap (`groups`, `alembic_version`): they live in their own schema.
PG_SCHEMA = "teamhub"
# Any fixed number: the key of the advisory lock that serialises store writes.
_WRITE_LOCK_KEY = 0x7465616D

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def parse_url(url: str) -> URL:
    """URL as SQLAlchemy reads it; SettingsError (password masked) if it is not one we use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError(f"db.url {mask(url)!r} is not a database URL",
                            "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave it "
                            "empty for the embedded sqlite files") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(f"db.url {mask(url)!r} names {parsed.get_backend_name()!r}",
                            "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave it "
                            "empty for the embedded sqlite files")
    return parsed


def engine_for(url: str) -> Engine:
    """The process's engine for URL (made on first use)."""
    engine = _engines.get(url)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(url)
            if engine is None:
                engine = _engines[url] = _make_engine(url)
    return engine


def _make_engine(url: str) -> Engine:
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        # A connection per operation, as the store always had: a pooled sqlite
        # connection in a long-running hub kept a stale view of the file (logins
        # missed accounts the CLI had added meanwhile); opening one costs ~0.1 ms.
        engine = create_engine(parsed, poolclass=NullPool, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # The driver's own implicit transactions off: _transaction begins them
            # itself, IMMEDIATE for writes.
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA foreign_keys = ON")
        return engine
    if parsed.drivername == "postgres":
        parsed = parsed.set(drivername="postgresql")
    # pool_pre_ping: a server restarted since the last use costs one reconnect,
    # not a failed login.
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         connect_args={"options": f"-csearch_path={PG_SCHEMA}",
                                       "connect_timeout": 10})


def _forget_engines_in_child() -> None:
    # A forked child must not use its parent's pooled connections (sockets and
    # sqlite handles are per process); it opens its own.
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_engines_in_child)


@contextmanager
def transaction(engine: Engine, write: bool) -> Iterator[StoreConnection]:
    """One connection, one transaction: committed on success, rolled back on error."""
    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        elif write:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK_KEY})")
        try:
            yield StoreConnection(conn, qmark=sqlite)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class StoreConnection:
    """A store transaction's connection: execute(SQL with ?, params) -> Rows by name or index."""

    def __init__(self, conn: Connection, qmark: bool) -> None:
        self.conn = conn
        self._qmark = qmark

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Result:
        if not self._qmark:
            sql = _pyformat(sql)
        return Result(self.conn.exec_driver_sql(sql, tuple(params)))


class Result:
    def __init__(self, result: CursorResult[Any]) -> None:
        self._result = result
        self._index: dict[str, int] | None = None

    def _names(self) -> dict[str, int]:
        # One name -> position map per result, shared by its rows: cheaper than
        # SQLAlchemy's per-row mapping view on a `user list` of many rows.
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self._result.keys())}
        return self._index

    @property
    def rowcount(self) -> int:
        return int(self._result.rowcount)

    def fetchone(self) -> Any:
        # A Record or None; typed Any like sqlite3's, since an aggregate (COUNT, MAX)
        # always has its row and callers index it at once.
        row = self._result.fetchone()
        return Record(row, self._names()) if row is not None else None

    def fetchall(self) -> list[Record]:
        names = self._names()
        return [Record(r, names) for r in self._result.fetchall()]

    def __iter__(self) -> Iterator[Record]:
        names = self._names()
        return (Record(r, names) for r in self._result)


class Record:
    """A row that answers both row[0] and row["name"] (as sqlite3.Row did)."""

    __slots__ = ("_names", "_row")

    def __init__(self, row: Row[Any], names: dict[str, int]) -> None:
        self._row = row
        self._names = names

    def __getitem__(self, key: int | str) -> Any:
        return self._row[self._names[key]] if isinstance(key, str) else self._row[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)

    def keys(self) -> list[str]:
        return list(self._names)
