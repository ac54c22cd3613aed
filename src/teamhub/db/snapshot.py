"""The account store as one sqlite file, whatever its backend: what backups archive.

A PostgreSQL store is copied into a fresh sqlite store (same schema revision) and
compared table by table; a restore copies such a file back in one transaction that
first empties the store, so a failed restore leaves the store as it was.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError

from ..accounts.store import AccountStore
from ..errors import BackupError
from . import schema
from .copy import copy_tables, mismatches, reset_sequences


def to_sqlite_bytes(store: AccountStore) -> bytes:
    """The content of a sqlite store file holding everything in STORE (a server store)."""
    with tempfile.TemporaryDirectory(prefix="teamhub-backup-") as tmp:
        copy = AccountStore(Path(tmp) / "accounts.sqlite")
        try:
            with store._engine.connect() as source, copy._engine.begin() as target:
                copy_tables(source, target, schema.TABLES)
                problems = mismatches(source, target, schema.TABLES)
        except SQLAlchemyError as exc:
            raise BackupError(f"cannot copy the account store {store.where} "
                              f"({getattr(exc, 'orig', None) or exc})",
                              "check that its database server runs (`teamhub doctor`)") from None
        finally:
            copy._engine.dispose()
        if problems:
            raise BackupError(f"the copy of {store.where} differs: {'; '.join(problems)}",
                              "run the backup again; report it if it repeats")
        return (Path(tmp) / "accounts.sqlite").read_bytes()


def replace_from_sqlite(store: AccountStore, data: bytes) -> None:
    """Make STORE (a server store) hold exactly the sqlite store file DATA, in one transaction."""
    with tempfile.TemporaryDirectory(prefix="teamhub-restore-") as tmp:
        path = Path(tmp) / "accounts.sqlite"
        path.write_bytes(data)
        source_store = AccountStore(path)  # brings an older archive's schema up to date
        try:
            with source_store._engine.connect() as source, store._engine.begin() as target:
                for table in reversed(schema.TABLES):
                    target.execute(delete(table))
                copy_tables(source, target, schema.TABLES)
                reset_sequences(target, schema.TABLES)
                problems = mismatches(source, target, schema.TABLES)
                if problems:
                    raise BackupError(f"restoring into {store.where} would differ: "
                                      f"{'; '.join(problems)}", "nothing was changed")
        except SQLAlchemyError as exc:
            raise BackupError(f"cannot restore into {store.where} "
                              f"({getattr(exc, 'orig', None) or exc})",
                              "check that its database server runs (`teamhub doctor`)") from None
        finally:
            source_store._engine.dispose()
