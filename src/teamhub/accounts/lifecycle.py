"""Account lifecycle beyond `user add`: signup with approval, and one-time reset links.

Both live in the account store (schema v5): a signed-up account is an ordinary
row with `pending` set, which cannot log in until an admin approves it; a reset
link is stored only as the SHA-256 of its token.

What signup reveals: a request for a name that is already taken (or already
requested) gets exactly the answer a new name gets, after the same password
hashing work, and is silently dropped. Only what cannot be hidden is said: a
name that breaks the name rule, a password that breaks the policy, and a name
whose Linux account exists but was not made by teamhub ("not available").
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..db.engine import Record, StoreConnection
from ..errors import AccountError, InvalidLink
from ..system import users
from ..system.names import canonical_name, system_name
from .policy import DEFAULT_MIN_LENGTH, check_password
from .store import Account, AccountStore, _now, _row

# Many pending requests are a sign of a script, not of a team: stop taking more
# (without saying anything about names) until an admin has looked at them.
MAX_PENDING = 200

MAX_RESET_SECONDS = 30 * 24 * 3600
_DURATION_RE = re.compile(r"(\d{1,7})\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,128}")


@dataclass(frozen=True)
class SignupOutcome:
    """What happened to a signup request; `created` is for logs, never for the requester."""

    name: str
    created: bool
    pending: bool


def request_signup(store: AccountStore, raw_name: str, password: str, *, open_signup: bool,
                   min_length: int = DEFAULT_MIN_LENGTH, system_prefix: str = "",
                   registry: Path | None = None) -> SignupOutcome:
    """Record a signup for RAW_NAME; AccountError only for what the requester must fix."""
    name = canonical_name(raw_name)
    check_password(name, password, min_length)
    sysname = system_name(name, system_prefix)
    if registry is not None and users.lookup(sysname) is not None \
            and not users.is_managed(sysname, registry=registry):
        raise AccountError(f"the name {name!r} is not available", "choose another one")
    # Hashed before looking at the name, so a taken name costs the same time.
    password_hash = store.hash_password(password)
    pending = not open_signup
    with store._connect() as conn:
        if pending:
            count = conn.execute("SELECT COUNT(*) FROM accounts WHERE pending = 1").fetchone()[0]
            if count >= MAX_PENDING:
                raise AccountError("signup is not taking new requests right now",
                                   "please ask an administrator")
        cur = conn.execute(
            "INSERT INTO accounts (name, password_hash, admin, created, pending) "
            "VALUES (?, ?, 0, ?, ?) ON CONFLICT DO NOTHING",
            (name, password_hash, _now(), int(pending)))
    return SignupOutcome(name=name, created=cur.rowcount == 1, pending=pending)


def pending(store: AccountStore) -> builtins.list[Account]:
    """Accounts waiting for approval, oldest first."""
    with store._connect(write=False) as conn:
        rows = conn.execute(
            "SELECT * FROM accounts WHERE pending = 1 ORDER BY created, name").fetchall()
    return [_row(r) for r in rows]


def _not_pending(conn: StoreConnection, name: str) -> AccountError:
    exists = conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone()
    if exists:
        return AccountError(f"user {name!r} is not waiting for approval (already approved)",
                            "see `teamhub user pending`")
    return AccountError(f"there is no signup for {name!r}", "see `teamhub user pending`")


def approve(store: AccountStore, raw_name: str) -> str:
    """Let pending account NAME log in; AccountError if it is not pending."""
    name = canonical_name(raw_name)
    with store._connect() as conn:
        cur = conn.execute("UPDATE accounts SET pending = 0 WHERE name = ? AND pending = 1",
                           (name,))
        if cur.rowcount == 0:
            raise _not_pending(conn, name)
    return name


def reject(store: AccountStore, raw_name: str) -> str:
    """Delete pending account NAME (an approved account is never touched)."""
    name = canonical_name(raw_name)
    with store._connect() as conn:
        cur = conn.execute("DELETE FROM accounts WHERE name = ? AND pending = 1", (name,))
        if cur.rowcount == 0:
            raise _not_pending(conn, name)
    return name


def parse_duration(text: str) -> int:
    """Seconds in TEXT such as 90s, 30m, 24h or 7d (up to 30 days)."""
    match = _DURATION_RE.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_RESET_SECONDS:
        raise AccountError(f"invalid duration {str(text)[:20]!r}: use a number with s, m, h "
                           "or d, e.g. 24h, from 1s up to 30d")
    return seconds


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def create_reset_link(store: AccountStore, raw_name: str, seconds: int) -> tuple[str, str]:
    """A fresh one-time token for NAME (older unused ones stop working) and its expiry."""
    name = canonical_name(raw_name)
    token = secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    expires = _stamp(now + timedelta(seconds=seconds))
    with store._connect() as conn:
        row = conn.execute("SELECT pending FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise AccountError(f"user {name!r} does not exist", "see `teamhub user list`")
        if row["pending"]:
            raise AccountError(f"user {name!r} is waiting for approval",
                               "approve it first with "
                               f"`teamhub user approve {name}`")
        conn.execute("DELETE FROM reset_links WHERE name = ? AND used IS NULL", (name,))
        conn.execute("INSERT INTO reset_links (token_hash, name, created, expires) "
                     "VALUES (?, ?, ?, ?)", (_token_hash(token), name, _stamp(now), expires))
    return token, expires


def _valid_link(conn: StoreConnection, token: str) -> Record | None:
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        return None
    return conn.execute(
        "SELECT l.name FROM reset_links l JOIN accounts a ON a.name = l.name "
        "WHERE l.token_hash = ? AND l.used IS NULL AND l.expires > ? AND a.pending = 0",
        (_token_hash(token), _now())).fetchone()


def reset_link_user(store: AccountStore, token: str) -> str | None:
    """The user a still-valid (unused, unexpired) link is for, else None. Changes nothing."""
    with store._connect(write=False) as conn:
        row = _valid_link(conn, token)
    return row["name"] if row else None



def redeem_reset_link(store: AccountStore, token: str, password: str, *,
                      min_length: int = DEFAULT_MIN_LENGTH) -> str:
    """Set a new password through TOKEN, once; returns the user's name.

    The policy is checked before the link is spent, so a refused password
    leaves the link usable; the link is marked used in the same transaction
    that sets the password.
    """
    name = reset_link_user(store, token)
    if name is None:
        raise InvalidLink("this reset link is not valid: it is unknown, expired or already "
                          "used", "ask an administrator for a new one")
    check_password(name, password, min_length)
    password_hash = store.hash_password(password)
    with store._connect() as conn:
        row = _valid_link(conn, token)
        if row is None or row["name"] != name:
            raise InvalidLink("this reset link is not valid: it is unknown, expired or "
                              "already used", "ask an administrator for a new one")
        conn.execute("UPDATE reset_links SET used = ? WHERE token_hash = ?",
                     (_now(), _token_hash(token)))
        conn.execute("UPDATE accounts SET password_hash = ? WHERE name = ?",
                     (password_hash, name))
        conn.execute("DELETE FROM reset_links WHERE name = ? AND used IS NULL", (name,))
    return name


# How long the link made for an account added on the Accounts page stays valid.
NEW_ACCOUNT_LINK_SECONDS = 7 * 24 * 3600


def add_with_reset_link(store: AccountStore, raw_name: str, *,
                        admin: bool = False) -> tuple[Account, str, str]:
    """A new account whose password nobody knows, and a one-time link for its owner to set
    one: (account, token, expiry). The admin who made it never sees a password."""
    account = store.add(raw_name, secrets.token_urlsafe(32), admin=admin)
    token, expires = create_reset_link(store, account.name, NEW_ACCOUNT_LINK_SECONDS)
    return account, token, expires
