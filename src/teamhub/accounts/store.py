"""The account store: hub user names, argon2id password hashes and the admin flag.

One database shared by the hub (logins) and the CLI (`teamhub user ...`): by
default a sqlite file in the root-only state dir, or PostgreSQL (`db.url`). Each
operation is one short transaction on a pooled connection, so neither process
holds a lock (or a stale view) between operations. Groups, projects, signups and
lockouts keep their tables here too (teamhub.db.schema).
"""

from __future__ import annotations

import builtins
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import SQLAlchemyError

from ..db.engine import Record, StoreConnection, engine_for, transaction
from ..db.upgrade import HEAD, ensure_schema
from ..db.url import is_postgresql, mask
from ..errors import AccountError
from ..system.names import canonical_name
from .policy import DEFAULT_MIN_LENGTH, MAX_LENGTH, check_password

__all__ = ["Account", "AccountStore", "check_password"]

MIN_PASSWORD = DEFAULT_MIN_LENGTH
MAX_PASSWORD = MAX_LENGTH

# The schema is teamhub.db.schema; this names its alembic revision (it was an integer
# 1-6 before alembic, in the sqlite file's `schema_version` table).
SCHEMA_VERSION = HEAD

# OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane) rather than argon2-cffi's default
# (64 MiB, 3 passes, 4 lanes): ~0.03 s of CPU per login instead of ~0.23 s, which decides
# how fast a whole team can log in at 9:00 on a 2-core machine (100 logins: ~3 core-seconds
# instead of ~23). Hashes made with other parameters still verify, and are rehashed with
# these at the account's next login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@cache
def _dummy_hash() -> str:
    # Hashed with the same hasher (so the same cost) as real passwords, so that
    # verifying an unknown name takes as long as verifying a known one.
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass
class Account:
    name: str
    admin: bool
    created: str  # ISO 8601, UTC
    blocked: bool = False
    pending: bool = False


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(row: Record) -> Account:
    return Account(name=row["name"], admin=bool(row["admin"]), created=row["created"],
                   blocked=bool(row["blocked"]), pending=bool(row["pending"]))


def _unknown(name: str) -> AccountError:
    return AccountError(f"user {name!r} does not exist", "see `teamhub user list`")


class AccountStore:
    """The accounts in the sqlite file PATH (created, root-only, on first use), or, with
    URL (`db.url`, postgresql://...), in that PostgreSQL database (PATH then unused)."""

    def __init__(self, path: Path, url: str = "") -> None:
        self.path = Path(path)
        self.url = url if is_postgresql(url) else f"sqlite:///{self.path}"
        # What messages call the store: its file, or its URL without the password.
        self.where = mask(self.url) if is_postgresql(url) else str(self.path)
        if not is_postgresql(url):
            self._secure_files()
        self._engine = engine_for(self.url)
        self._migrate()

    def _secure_files(self) -> None:
        # Hashes are secrets too: the file is created 0600 (not chmod-ed later,
        # which would leave a window) and repaired if someone widened it. An
        # existing folder is left alone: it may be shared (/tmp) and chmod-ing
        # it would break others; the 0600 file (and its WAL files, which sqlite
        # gives the same mode) is what keeps the hashes private.
        try:
            self._create_files()
        except OSError as exc:
            raise AccountError(
                f"cannot open the account store {self.path}: {exc.strerror}",
                "run teamhub "
                "as root, or point paths.state_dir at a folder you own"
            ) from None

    def _create_files(self) -> None:
        parent = self.path.parent
        if not parent.is_dir():
            parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(parent, 0o700)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            created = False
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
                os.fchmod(fd, 0o600)
            folder = os.stat(parent)
            if created and os.geteuid() == 0 and folder.st_uid != 0:
                # Root (the CLI) making the store in the folder of an unprivileged hub
                # (hub.unprivileged): the hub's, like the rest of it (sqlite gives its WAL
                # and journal files the same owner).
                os.fchown(fd, folder.st_uid, folder.st_gid)
        finally:
            os.close(fd)

    @contextmanager
    def _connect(self, write: bool = True) -> Iterator[StoreConnection]:
        """One connection, one transaction: committed on success, rolled back on error.

        A write holds the store's write lock from the start, so a read-then-write
        cannot interleave with another process's write.
        """
        try:
            with transaction(self._engine, write) as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._broken(exc) from None

    def _broken(self, exc: SQLAlchemyError) -> AccountError:
        # The driver's own words without SQLAlchemy's SQL echo and link (and never
        # the URL's password, which no driver message carries).
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        if is_postgresql(self.url):
            return AccountError(
                f"the account store {self.where} cannot be used ({detail[0] if detail else exc})",
                "check that the PostgreSQL server runs and that db.url's user, password "
                "and database are right (`teamhub doctor`)")
        return AccountError(
            f"the account store {self.where} cannot be used ({detail[0] if detail else exc})",
            "check that it is a "
            "teamhub account store and that no other program holds it locked"
        )

    def _migrate(self) -> None:
        try:
            ensure_schema(self._engine, self.where)
        except SQLAlchemyError as exc:
            raise self._broken(exc) from None

    def add(self, name: str, password: str, *, admin: bool = False, pending: bool = False,
            min_length: int = MIN_PASSWORD) -> Account:
        """Create user NAME; AccountError for a bad name or password, or a duplicate.

        A PENDING account (from signup) exists but cannot log in until approved.
        """
        name = canonical_name(name)
        check_password(name, password, min_length)
        account = Account(name=name, admin=admin, created=_now(), pending=pending)
        password_hash = _hasher.hash(password)
        with self._connect() as conn:
            # ON CONFLICT rather than catching the IntegrityError: on PostgreSQL a
            # failed statement ends the transaction, and the check below reads on.
            cur = conn.execute(
                "INSERT INTO accounts (name, password_hash, admin, created, pending) "
                "VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                (name, password_hash, int(admin), account.created, int(pending)),
            )
            if cur.rowcount == 0:
                row = conn.execute("SELECT pending FROM accounts WHERE name = ?",
                                   (name,)).fetchone()
                if row is not None and row["pending"]:
                    raise AccountError(
                        f"user {name!r} is a pending signup",
                        "approve it with `teamhub user "
                        f"approve {name}` or reject it with `teamhub user reject {name}`"
                    ) from None
                raise AccountError(
                    f"user {name!r} already exists",
                    "choose another name, or change the "
                    f"password with `teamhub user passwd {name}`"
                ) from None
        return account

    def set_password(self, name: str, password: str, *, min_length: int = MIN_PASSWORD) -> None:
        """Set NAME's password (policy applies); outstanding reset links stop working."""
        name = canonical_name(name)
        check_password(name, password, min_length)
        password_hash = _hasher.hash(password)
        with self._connect() as conn:
            cur = conn.execute("UPDATE accounts SET password_hash = ? WHERE name = ?",
                               (password_hash, name))
            if cur.rowcount == 0:
                raise _unknown(name)
            conn.execute("DELETE FROM reset_links WHERE name = ? AND used IS NULL", (name,))

    def hash_password(self, password: str) -> str:
        """An argon2 hash of PASSWORD, as the store keeps it (for callers that write it)."""
        return _hasher.hash(password)

    def verify(self, name: str, password: str) -> Account | None:
        """The account if PASSWORD is right for NAME, else None (same time either way).

        A blocked or pending account gets None too, after the same argon2 verify,
        so a login cannot tell either from a wrong password.
        """
        try:
            name = canonical_name(name)
        except AccountError:
            name = ""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return None
        # The slow argon2 verify runs outside any transaction, so that logins
        # never hold the database's write lock.
        with self._connect(write=False) as conn:
            row = conn.execute("SELECT * FROM accounts WHERE name = ?", (name,)).fetchone()
        try:
            _hasher.verify(row["password_hash"] if row else _dummy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        # Pending (signed up, not yet approved) and blocked accounts are refused
        # only after the full verify: same work, same answer as a wrong password.
        if row is None or row["blocked"] or row["pending"]:
            return None
        if _hasher.check_needs_rehash(row["password_hash"]):
            with self._connect() as conn:
                # Only if unchanged meanwhile: never overwrite a newer `passwd`.
                conn.execute(
                    "UPDATE accounts SET password_hash = ? WHERE name = ? AND password_hash = ?",
                    (_hasher.hash(password), name, row["password_hash"]),
                )
        return _row(row)

    def get(self, name: str) -> Account | None:
        try:
            name = canonical_name(name)
        except AccountError:
            return None
        with self._connect(write=False) as conn:
            row = conn.execute("SELECT * FROM accounts WHERE name = ?", (name,)).fetchone()
        return _row(row) if row else None

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        with self._connect() as conn:
            if conn.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount == 0:
                raise _unknown(name)

    def set_admin(self, name: str, admin: bool) -> None:
        name = canonical_name(name)
        with self._connect() as conn:
            cur = conn.execute("UPDATE accounts SET admin = ? WHERE name = ?", (int(admin), name))
            if cur.rowcount == 0:
                raise _unknown(name)

    def set_blocked(self, name: str, blocked: bool) -> bool:
        """Block or unblock NAME; returns whether the flag was already so (a no-op)."""
        name = canonical_name(name)
        with self._connect() as conn:
            row = conn.execute("SELECT blocked FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise _unknown(name)
            conn.execute("UPDATE accounts SET blocked = ? WHERE name = ?", (int(blocked), name))
        return bool(row["blocked"]) == blocked

    def count(self) -> int:
        with self._connect(write=False) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0])

    def list(self) -> builtins.list[Account]:
        """Every account, sorted by name."""
        with self._connect(write=False) as conn:
            rows = conn.execute("SELECT * FROM accounts ORDER BY name").fetchall()
        return [_row(r) for r in rows]
