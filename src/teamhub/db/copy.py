"""Copy tables between databases and prove the copy: row counts and a checksum per table.

The checksum is taken over the rows as SQLAlchemy's column types return them (ordered
by primary key), so the same data gives the same digest on sqlite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.engine import Connection

BATCH = 1000


@dataclass(frozen=True)
class TableSum:
    name: str
    rows: int
    sha256: str


def _canonical(value: Any) -> str:
    if value is None:
        return "\0null"
    if isinstance(value, bool):
        return "\0true" if value else "\0false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def table_sum(conn: Connection, table: Table) -> TableSum:
    """TABLE's row count and the SHA-256 of its rows, in primary-key order."""
    digest = hashlib.sha256()
    order = list(table.primary_key.columns) or list(table.columns)
    rows = 0
    for row in conn.execute(select(table).order_by(*order)):
        digest.update("\x1f".join(_canonical(v) for v in row).encode() + b"\x1e")
        rows += 1
    return TableSum(table.name, rows, digest.hexdigest())


def copy_tables(source: Connection, target: Connection, tables: Iterable[Table]) -> None:
    """Insert every row of TABLES (parents first) from SOURCE into TARGET."""
    for table in tables:
        batch: list[dict[str, Any]] = []
        for row in source.execute(select(table)).mappings():
            batch.append(dict(row))
            if len(batch) >= BATCH:
                target.execute(insert(table), batch)
                batch = []
        if batch:
            target.execute(insert(table), batch)


def reset_sequences(target: Connection, tables: Iterable[Table]) -> None:
    """On PostgreSQL, move each serial column's sequence past the copied ids."""
    if target.dialect.name != "postgresql":
        return
    for table in tables:
        for column in table.primary_key.columns:
            if not (column.autoincrement is True or (column.autoincrement == "auto"
                                                     and column.type.python_type is int
                                                     and len(table.primary_key.columns) == 1)):
                continue
            name = target.execute(select(func.pg_get_serial_sequence(
                _qualified(target, table), column.name))).scalar()
            if name:
                target.execute(text(f"SELECT setval('{name}', COALESCE((SELECT MAX("
                                    f"{column.name}) FROM {_qualified(target, table)}), 0) + 1, "
                                    "false)"))


def _qualified(conn: Connection, table: Table) -> str:
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(table.schema)
    quoted = conn.dialect.identifier_preparer.quote(table.name)
    return f"{schema}.{quoted}" if schema else quoted


def mismatches(source: Connection, target: Connection, tables: Iterable[Table]) -> list[str]:
    """One line for each table whose copy differs (count or checksum); empty: all equal."""
    problems = []
    for table in tables:
        a, b = table_sum(source, table), table_sum(target, table)
        if a != b:
            problems.append(f"{table.name}: {a.rows} row(s) copied as {b.rows}, checksum "
                            f"{a.sha256[:12]} vs {b.sha256[:12]}")
    return problems
