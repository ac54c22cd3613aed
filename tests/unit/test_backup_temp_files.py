"""Reading an archived sqlite store leaves nothing behind in the temp folder."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest

from teamhub import backup


def _wal_store(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript("CREATE TABLE alembic_version (version_num TEXT);"
                       "INSERT INTO alembic_version VALUES ('abc123');"
                       "CREATE TABLE accounts (name TEXT, password_hash TEXT, admin INT);")
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_an_archived_wal_store_is_read_without_leaving_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _wal_store(tmp_path / "store.sqlite")
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert backup._account_schema(data) == "abc123"
    target = tmp_path / "restored.sqlite"
    backup._restore_sqlite(data, target)
    assert sqlite3.connect(target).execute("SELECT * FROM alembic_version").fetchall() == [
        ("abc123",)]
    assert list(temp.iterdir()) == []
