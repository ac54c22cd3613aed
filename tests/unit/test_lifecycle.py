"""Signup with approval and one-time reset links, on a store in a temp folder."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from teamhub.accounts import lifecycle
from teamhub.accounts.store import AccountStore
from teamhub.errors import AccountError, InvalidLink

PW = "violet kettle harbour"
PW2 = "amber lantern meadow"


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore(tmp_path / "state" / "accounts.sqlite")


def _rows(store: AccountStore) -> list[tuple]:
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT name, password_hash, admin, pending, blocked FROM accounts "
                            "ORDER BY name").fetchall()
        rows += conn.execute("SELECT * FROM reset_links ORDER BY token_hash").fetchall()
    return rows


def test_signup_is_pending_until_approved(store: AccountStore) -> None:
    out = lifecycle.request_signup(store, "Ada", PW, open_signup=False)
    assert (out.name, out.created, out.pending) == ("ada", True, True)
    assert [a.name for a in lifecycle.pending(store)] == ["ada"]
    assert store.get("ada").pending is True
    assert store.verify("ada", PW) is None  # refused like a wrong password
    assert lifecycle.approve(store, "ADA") == "ada"
    assert store.verify("ada", PW) is not None
    assert lifecycle.pending(store) == []


def test_reject_deletes_only_pending(store: AccountStore) -> None:
    lifecycle.request_signup(store, "bob", PW, open_signup=False)
    assert lifecycle.reject(store, "bob") == "bob"
    assert store.get("bob") is None
    store.add("cy", PW)
    before = _rows(store)
    with pytest.raises(AccountError, match="not waiting for approval"):
        lifecycle.reject(store, "cy")
    with pytest.raises(AccountError, match="not waiting for approval"):
        lifecycle.approve(store, "cy")
    with pytest.raises(AccountError, match="no signup for 'nobody'"):
        lifecycle.approve(store, "nobody")
    with pytest.raises(AccountError, match="invalid user name"):
        lifecycle.reject(store, "../x")
    assert _rows(store) == before


def test_taken_name_gets_the_same_answer_and_changes_nothing(store: AccountStore) -> None:
    store.add("ada", PW)
    lifecycle.request_signup(store, "bob", PW, open_signup=False)
    before = _rows(store)
    for name in ("ada", "bob", "BOB "):
        out = lifecycle.request_signup(store, name, PW2, open_signup=False)
        assert out.created is False and out.pending is True  # the page says the same
    assert _rows(store) == before
    assert store.verify("ada", PW) is not None and store.verify("ada", PW2) is None


def test_open_signup_is_active_at_once(store: AccountStore) -> None:
    out = lifecycle.request_signup(store, "dee", PW, open_signup=True)
    assert out.created and not out.pending
    assert store.verify("dee", PW) is not None


def test_signup_applies_the_policy_and_name_rule(store: AccountStore) -> None:
    with pytest.raises(AccountError, match="too short"):
        lifecycle.request_signup(store, "ada", "short", open_signup=False)
    with pytest.raises(AccountError, match="too short"):
        lifecycle.request_signup(store, "ada", "eleven-char", open_signup=False, min_length=12)
    with pytest.raises(AccountError, match="invalid user name"):
        lifecycle.request_signup(store, "a\u0000b", PW, open_signup=False)
    with pytest.raises(AccountError, match="too long"):
        lifecycle.request_signup(store, "a" * 1_000_000, PW, open_signup=False)
    assert store.count() == 0


def test_pending_cap(store: AccountStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "MAX_PENDING", 2)
    lifecycle.request_signup(store, "a1", PW, open_signup=False)
    lifecycle.request_signup(store, "a2", PW, open_signup=False)
    with pytest.raises(AccountError, match="not taking new requests"):
        lifecycle.request_signup(store, "a3", PW, open_signup=False)
    assert store.get("a3") is None


def test_system_account_collision_is_not_available(store: AccountStore, tmp_path: Path) -> None:
    # With an empty prefix, "root" would be the Linux account root: refused, reason not given.
    with pytest.raises(AccountError, match="'root' is not available") as info:
        lifecycle.request_signup(store, "Root", PW, open_signup=False, system_prefix="",
                                 registry=tmp_path / "registry.json")
    assert "system" not in str(info.value) and "Linux" not in str(info.value)
    assert store.get("root") is None


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400), ("90s", 90), ("30m", 1800),
                                               ("7d", 604800), ("45", 45), ("30d", 2592000)])
def test_durations(text: str, seconds: int) -> None:
    assert lifecycle.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0h", "31d", "-1h", "1w", "", "h", "1.5h", "9" * 50])
def test_bad_durations(text: str) -> None:
    with pytest.raises(AccountError, match="invalid duration"):
        lifecycle.parse_duration(text)


def test_reset_link_works_once(store: AccountStore) -> None:
    store.add("ada", PW)
    token, _ = lifecycle.create_reset_link(store, "ada", 3600)
    with sqlite3.connect(store.path) as conn:
        stored = conn.execute("SELECT token_hash FROM reset_links").fetchall()
    assert token not in repr(stored)  # only the hash is kept
    assert lifecycle.reset_link_user(store, token) == "ada"
    with pytest.raises(AccountError, match="too short"):
        lifecycle.redeem_reset_link(store, token, "short")
    assert lifecycle.reset_link_user(store, token) == "ada"  # a refused password spends nothing
    assert lifecycle.redeem_reset_link(store, token, PW2) == "ada"
    assert store.verify("ada", PW2) is not None and store.verify("ada", PW) is None
    assert lifecycle.reset_link_user(store, token) is None
    with pytest.raises(InvalidLink):
        lifecycle.redeem_reset_link(store, token, "yet another passphrase")
    assert store.verify("ada", PW2) is not None


def test_reset_link_expires_and_is_replaced(store: AccountStore) -> None:
    store.add("ada", PW)
    short, _ = lifecycle.create_reset_link(store, "ada", 1)
    time.sleep(2.1)
    assert lifecycle.reset_link_user(store, short) is None
    with pytest.raises(InvalidLink):
        lifecycle.redeem_reset_link(store, short, PW2)
    first, _ = lifecycle.create_reset_link(store, "ada", 3600)
    second, _ = lifecycle.create_reset_link(store, "ada", 3600)
    assert lifecycle.reset_link_user(store, first) is None  # a new link replaces the old
    assert lifecycle.reset_link_user(store, second) == "ada"
    store.set_password("ada", PW2)  # any password change ends outstanding links
    assert lifecycle.reset_link_user(store, second) is None
    assert store.verify("ada", PW2) is not None


@pytest.mark.parametrize("token", ["", "short", "x" * 2000, "../../etc", "a b c d e f g h i j k",
                                   "\x00" * 30])
def test_unknown_tokens(store: AccountStore, token: str) -> None:
    assert lifecycle.reset_link_user(store, token) is None


def test_reset_link_refused_for_unknown_and_pending(store: AccountStore) -> None:
    with pytest.raises(AccountError, match="does not exist"):
        lifecycle.create_reset_link(store, "nobody", 60)
    lifecycle.request_signup(store, "bob", PW, open_signup=False)
    with pytest.raises(AccountError, match="waiting for approval"):
        lifecycle.create_reset_link(store, "bob", 60)
    assert _rows(store)[-1][0] == "bob" and len(_rows(store)) == 1


def test_removing_the_account_removes_its_links(store: AccountStore) -> None:
    store.add("ada", PW)
    token, _ = lifecycle.create_reset_link(store, "ada", 60)
    store.remove("ada")
    store.add("ada", PW)  # a new account of the same name does not inherit the link
    assert lifecycle.reset_link_user(store, token) is None
