"""The account store's API on both backends (sqlite file, private PostgreSQL cluster),
and the one-line errors for a PostgreSQL that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.postgres import PostgresCluster

from teamhub.accounts.groups import GroupStore
from teamhub.accounts.lifecycle import approve, create_reset_link, redeem_reset_link, request_signup
from teamhub.accounts.lockout import Lockout, LockoutPolicy
from teamhub.accounts.store import AccountStore
from teamhub.errors import AccountError
from teamhub.projects.model import Principal, ProjectStore

pytestmark = [pytest.mark.system]

PW = "correct horse battery"


def test_store_api_on_each_backend(tmp_path: Path, db_url: str) -> None:
    store = AccountStore(tmp_path / "state" / "accounts.sqlite", db_url)
    store.add("ada", PW, admin=True)
    store.add("bob", PW)
    with pytest.raises(AccountError, match="already exists"):
        store.add("ada", PW)
    assert store.verify("ada", PW) is not None and store.verify("ada", "wrong password x") is None
    assert store.set_blocked("bob", True) is False and store.verify("bob", PW) is None
    assert [a.name for a in store.list()] == ["ada", "bob"] and store.count() == 2

    groups = GroupStore(store)
    groups.create("team")
    with pytest.raises(AccountError, match="already exists"):
        groups.create("team")
    assert groups.add_members("team", ["ada", "bob"]) == ["ada", "bob"]
    assert groups.add_members("team", ["ada"]) == []

    projects = ProjectStore(store)
    projects.create("apollo", "moon", {Principal("group", "team"): "read"}, actor="ada")
    projects.grant("apollo", Principal("group", "team"), "write", actor="ada")
    projects.grant("apollo", Principal("user", "bob"), "read", actor="ada")
    assert projects.get("apollo").grants == {Principal("user", "bob"): "read",
                                             Principal("group", "team"): "write"}
    assert [h["action"] for h in projects.history("apollo")] == ["create", "grant", "grant"]

    outcome = request_signup(store, "cy", PW, open_signup=False)
    assert outcome.created and outcome.pending
    assert request_signup(store, "cy", PW, open_signup=False).created is False
    approve(store, "cy")
    token, _ = create_reset_link(store, "cy", 3600)
    redeem_reset_link(store, token, "another good password")
    assert store.verify("cy", "another good password") is not None

    lockout = Lockout(store, LockoutPolicy(2, 60, 120))
    lockout.record_failure("mallory")
    assert lockout.record_failure("mallory") > 0 and "mallory" in lockout.locked_names()

    store.remove("bob")  # cascades to memberships on both backends
    assert groups.members("team") == ["ada"]
    # A second process's view: a fresh store object on the same database sees it all.
    again = AccountStore(tmp_path / "state" / "accounts.sqlite", db_url)
    assert [a.name for a in again.list()] == ["ada", "cy"]


def test_hub_tables_and_store_tables_do_not_collide(postgres: PostgresCluster,
                                                    tmp_path: Path) -> None:
    # JupyterHub has `groups` and `alembic_version` too: teamhub's live in schema teamhub.
    url = postgres.new_database()
    database = url.rsplit("/", 1)[1]
    postgres.psql("CREATE TABLE public.groups (id integer)", database)
    store = AccountStore(tmp_path / "unused.sqlite", url)
    GroupStore(store).create("team")
    tables = postgres.psql("SELECT schemaname || '.' || tablename FROM pg_tables "
                           "WHERE tablename IN ('groups', 'alembic_version') ORDER BY 1",
                           database).split()
    assert tables == ["public.groups", "teamhub.alembic_version", "teamhub.groups"]
    assert not (tmp_path / "unused.sqlite").exists()


def _one_line(exc: AccountError) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_wrong_password_is_one_line_without_the_password(postgres: PostgresCluster,
                                                         tmp_path: Path) -> None:
    url = postgres.new_database()
    bad = url.replace(postgres.password, "not-the-password")
    with pytest.raises(AccountError) as info:
        AccountStore(tmp_path / "x.sqlite", bad)
    text = _one_line(info.value)
    assert "password authentication failed" in text and "not-the-password" not in text
    assert postgres.password not in text and "db.url" in text


def test_unreachable_server_is_one_line(postgres: PostgresCluster, tmp_path: Path) -> None:
    from support.hub import free_port
    url = f"postgresql://u:secretpw@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(AccountError) as info:
        AccountStore(tmp_path / "x.sqlite", url)
    text = _one_line(info.value)
    assert "secretpw" not in text and "127.0.0.1" in text and "server runs" in text


def test_database_without_rights_is_one_line(postgres: PostgresCluster, tmp_path: Path) -> None:
    # A database the test role does not own and may not create schemas in.
    url = postgres.new_database(owner="postgres")
    postgres.psql(f"REVOKE CREATE ON DATABASE {url.rsplit('/', 1)[1]} FROM PUBLIC")
    with pytest.raises(AccountError) as info:
        AccountStore(tmp_path / "x.sqlite", url)
    text = _one_line(info.value)
    assert "permission denied" in text and postgres.password not in text
