"""The account store: argon2 hashes in a private sqlite file."""

from __future__ import annotations

import sqlite3
import stat
from datetime import datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from teamhub.accounts import store as store_mod
from teamhub.accounts.store import AccountStore, check_password
from teamhub.db import legacy
from teamhub.errors import AccountError

PW = "correct horse battery"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "accounts.sqlite"


@pytest.fixture
def store(db: Path) -> AccountStore:
    return AccountStore(db)


def test_add_and_verify(store: AccountStore) -> None:
    account = store.add("Ada", PW)
    assert account.name == "ada"
    assert account.admin is False
    assert datetime.fromisoformat(account.created.replace("Z", "+00:00")).utcoffset() is not None
    verified = store.verify("ada", PW)
    assert verified is not None and verified.name == "ada"
    assert store.verify("ADA ", PW) is not None  # same canonical name
    assert store.get("ada") == account


def test_wrong_password_and_unknown_user(store: AccountStore) -> None:
    store.add("ada", PW)
    assert store.verify("ada", PW + "x") is None
    assert store.verify("ada", "") is None
    assert store.verify("bob", PW) is None
    assert store.verify("../etc", PW) is None
    assert store.verify("ada", "x" * 5000) is None
    assert store.get("bob") is None


def test_unknown_user_still_runs_argon2(store: AccountStore, monkeypatch) -> None:
    calls: list[str] = []
    real = store_mod._hasher

    class Spy:
        def verify(self, hash_: str, password: str) -> bool:
            calls.append(hash_)
            return real.verify(hash_, password)

    monkeypatch.setattr(store_mod, "_hasher", Spy())
    assert store.verify("nobody", PW) is None
    assert store.verify("../bad name", PW) is None
    assert len(calls) == 2 and all(h.startswith("$argon2id$") for h in calls)


def test_duplicate(store: AccountStore) -> None:
    store.add("ada", PW)
    with pytest.raises(AccountError, match="'ada' already exists"):
        store.add("ADA", PW + "2")
    assert store.verify("ada", PW) is not None


def test_set_password(store: AccountStore) -> None:
    store.add("ada", PW)
    store.set_password("ada", "another good password")
    assert store.verify("ada", PW) is None
    assert store.verify("ada", "another good password") is not None
    with pytest.raises(AccountError, match="does not exist"):
        store.set_password("bob", "another good password")


def test_remove(store: AccountStore) -> None:
    store.add("ada", PW)
    store.remove("ada")
    assert store.get("ada") is None
    assert store.verify("ada", PW) is None
    with pytest.raises(AccountError, match="'ada' does not exist"):
        store.remove("ada")


def test_admin_flag(store: AccountStore) -> None:
    assert store.add("root-ish", PW, admin=True).admin is True
    store.add("ada", PW)
    store.set_admin("ada", True)
    assert store.get("ada").admin is True  # type: ignore[union-attr]
    store.set_admin("ada", False)
    assert store.get("ada").admin is False  # type: ignore[union-attr]
    with pytest.raises(AccountError):
        store.set_admin("bob", True)


def test_list_sorted_and_count(store: AccountStore) -> None:
    for name in ("zoe", "ada", "mia"):
        store.add(name, PW)
    assert [a.name for a in store.list()] == ["ada", "mia", "zoe"]
    assert store.count() == 3


def test_file_modes(db: Path, store: AccountStore) -> None:
    store.add("ada", PW)
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for f in db.parent.iterdir():  # the db and its WAL/SHM files
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_widened_mode_repaired(db: Path, store: AccountStore) -> None:
    db.chmod(0o644)
    AccountStore(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_hash_is_argon2id(db: Path, store: AccountStore) -> None:
    store.add("ada", PW)
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM accounts").fetchone()
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    conn.close()
    assert stored.startswith("$argon2id$")
    assert PW not in stored
    assert version == store_mod.SCHEMA_VERSION
    assert PW.encode() not in db.read_bytes()


def test_rehash_on_verify(db: Path, store: AccountStore) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store.add("ada", PW)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE accounts SET password_hash = ?", (weak.hash(PW),))
    conn.close()
    assert store.verify("ada", PW) is not None
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM accounts").fetchone()
    conn.close()
    assert not store_mod._hasher.check_needs_rehash(stored)


def test_hashes_use_owasps_argon2id_parameters(db: Path, store: AccountStore) -> None:
    store.add("ada", PW)
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM accounts").fetchone()
    conn.close()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_hash_of_the_earlier_default_still_verifies_and_is_upgraded(
        db: Path, store: AccountStore) -> None:
    # argon2-cffi's default (64 MiB, 3 passes, 4 lanes): what earlier versions stored.
    earlier = PasswordHasher()
    store.add("ada", PW)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE accounts SET password_hash = ?", (earlier.hash(PW),))
    conn.close()
    assert store.verify("ada", PW + "x") is None
    assert store.verify("ada", PW) is not None
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM accounts").fetchone()
    conn.close()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_newer_schema_refused(db: Path, store: AccountStore) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    with pytest.raises(AccountError, match="upgrade teamhub"):
        AccountStore(db)


@pytest.mark.parametrize(
    ("password", "match"),
    [
        ("tiny-pw", "characters"),
        ("x" * 9, "characters"),
        ("x" * 1025, "characters"),
        ("adalovelace", "user name"),
        ("AdaLovelace", "user name"),
        ("good password\0x", "NUL"),
        (None, "text"),
    ],
)
def test_weak_passwords(store: AccountStore, password: object, match: str) -> None:
    with pytest.raises(AccountError, match=match) as info:
        store.add("adalovelace", password)  # type: ignore[arg-type]
    if isinstance(password, str) and password.lower() != "adalovelace":
        assert password not in str(info.value)
    assert store.get("adalovelace") is None


def test_password_bounds() -> None:
    check_password("ada", "x" * 10)
    check_password("ada", "x" * 1024)
    with pytest.raises(AccountError):
        check_password("ada", "x" * 1025)


def test_store_in_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AccountError, match="cannot open the account store"):
        AccountStore(blocker / "accounts.sqlite")


def test_v3_store_migrates_keeping_accounts(db: Path) -> None:
    # A store as teamhub with schema 3 left it: the v1..v3 statements, no `blocked`.
    db.parent.mkdir(mode=0o700)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in (legacy._SCHEMA_V1, *legacy._SCHEMA_V2, *legacy._SCHEMA_V3):
            conn.execute(statement)
        conn.executemany("INSERT INTO schema_version VALUES (?)", [(1,), (2,), (3,)])
        conn.execute("INSERT INTO accounts VALUES ('ada', ?, 1, '2024-01-01T00:00:00Z')",
                     (weak.hash(PW),))
        conn.execute("INSERT INTO groups VALUES ('team', '2024-01-01T00:00:00Z')")
        conn.execute("INSERT INTO memberships VALUES ('team', 'ada')")
    conn.close()
    store = AccountStore(db)
    account = store.get("ada")
    assert account is not None and account.admin and account.blocked is False
    assert account.created == "2024-01-01T00:00:00Z"
    assert store.verify("ada", PW) is not None
    with sqlite3.connect(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        members = conn.execute("SELECT * FROM memberships").fetchall()
    conn.close()
    assert versions == [store_mod.SCHEMA_VERSION]
    assert "schema_version" not in tables and account.pending is False
    assert members == [("team", "ada")]
    AccountStore(db)  # opening again migrates nothing twice


def test_set_blocked(store: AccountStore) -> None:
    store.add("ada", PW)
    assert store.get("ada").blocked is False
    assert store.set_blocked("ADA", True) is False  # changed
    assert store.get("ada").blocked is True
    assert [a.blocked for a in store.list()] == [True]
    assert store.set_blocked("ada", True) is True  # already so
    assert store.set_blocked("ada", False) is False
    assert store.get("ada").blocked is False
    with pytest.raises(AccountError, match="does not exist"):
        store.set_blocked("nobody", True)
    with pytest.raises(AccountError, match="invalid user name"):
        store.set_blocked("../root", True)


def test_blocked_account_fails_verify_after_the_same_argon2_work(
        store: AccountStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add("ada", PW)
    store.set_blocked("ada", True)
    verified: list[str] = []
    real = store_mod._hasher
    dummy = store_mod._dummy_hash()

    class Counting:
        def verify(self, hash_: str, password: str) -> bool:
            verified.append(hash_)
            return real.verify(hash_, password)

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    monkeypatch.setattr(store_mod, "_hasher", Counting())
    assert store.verify("ada", PW) is None
    assert store.verify("ada", "a wrong password") is None
    assert len(verified) == 2 and dummy not in verified  # the real hash
    store.set_blocked("ada", False)
    assert store.verify("ada", PW) is not None
