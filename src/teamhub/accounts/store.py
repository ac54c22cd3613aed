"""The account store: hub user names, argon2id password hashes and the admin flag.

One sqlite file in the root-only state dir, shared by the hub (logins) and the
CLI (`teamhub user ...`). Each operation opens its own short-lived connection
so neither process holds the file (or a stale view of it) between operations.
"""

from __future__ import annotations

import builtins
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import AccountError
from ..system.names import canonical_name
from .policy import DEFAULT_MIN_LENGTH, MAX_LENGTH, check_password

__all__ = ["Account", "AccountStore", "check_password"]

MIN_PASSWORD = DEFAULT_MIN_LENGTH
MAX_PASSWORD = MAX_LENGTH

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
"""

# Groups (v2): hub groups live here too, so the CLI can manage them with no hub running.
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

# Projects (v3): grants live beside the accounts and groups they name, so one
# transaction can check that a user or group exists and record the grant; the
# ACLs on disk are always recomputed from here (`teamhub project repair`).
# Grants name a principal by kind ('user' or 'group') rather than by foreign
# key, because removing a user or group must also strip ACLs on disk, which
# the CLI does explicitly. The audit log has no foreign key on purpose: it
# outlives the projects it describes.
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

# Blocking (v4): a blocked account keeps its name, files and grants but cannot
# log in, and counts for no project access until it is unblocked.
_SCHEMA_V4 = ("ALTER TABLE accounts ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0",)

# Signup and reset links (v5): a signed-up account waits, `pending`, until an
# admin approves it; it cannot log in meanwhile. Reset links are stored only
# as the SHA-256 of their token, so the store never holds a usable link.
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

# Login failures (v6; v5 is signup/reset): per-name failure counts and lock
# times, kept apart from `accounts` (no foreign key) because unknown names and
# PAM-mode Linux accounts are counted too, so that locking reveals nothing and
# survives hub restarts. See accounts/lockout.py.
_SCHEMA_V6 = (
    """CREATE TABLE IF NOT EXISTS login_failures (
        name TEXT PRIMARY KEY,
        failures INTEGER NOT NULL DEFAULT 0,
        lockouts INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0,
        last_failure REAL NOT NULL DEFAULT 0
    )""",
)

# Version N is reached by running _MIGRATIONS[N - 1]; append, never edit, to change the schema.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (_SCHEMA_V1,), _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6,
)

SCHEMA_VERSION = len(_MIGRATIONS)

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


def _row(row: sqlite3.Row) -> Account:
    return Account(name=row["name"], admin=bool(row["admin"]), created=row["created"],
                   blocked=bool(row["blocked"]), pending=bool(row["pending"]))


def _unknown(name: str) -> AccountError:
    return AccountError(f"user {name!r} does not exist", "see `teamhub user list`")


class AccountStore:
    """The accounts in the sqlite file PATH (created, root-only, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._secure_files()
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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    @contextmanager
    def _connect(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction: committed on success, rolled back on error."""
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._broken(exc) from None
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        try:
            # IMMEDIATE takes the write lock up front, so a read-then-write
            # cannot interleave with another process's write.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._broken(exc) from None
        finally:
            conn.close()

    def _broken(self, exc: sqlite3.Error) -> AccountError:
        return AccountError(
            f"the account store {self.path} cannot be used ({exc})",
            "check that it is a "
            "teamhub account store and that no other program holds it locked"
        )

    def _migrate(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                # WAL lets logins read while the CLI writes.
                conn.execute("PRAGMA journal_mode=WAL")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise self._broken(exc) from None
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] or 0
            if version > SCHEMA_VERSION:
                raise AccountError(
                    f"the account store {self.path} has schema version {version}, newer than "
                    f"this teamhub understands ({SCHEMA_VERSION})", "upgrade teamhub"
                )
            for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))

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
            try:
                conn.execute(
                    "INSERT INTO accounts (name, password_hash, admin, created, pending) "
                    "VALUES (?,?,?,?,?)",
                    (name, password_hash, int(admin), account.created, int(pending)),
                )
            except sqlite3.IntegrityError:
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
