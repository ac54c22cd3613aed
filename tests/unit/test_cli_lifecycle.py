"""`teamhub user pending|approve|reject|reset-link|admin` against a temp store (no hub).

Bad input everywhere: one `teamhub: error:` line, non-zero exit, store unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from teamhub.accounts import lifecycle
from teamhub.accounts.store import AccountStore
from teamhub.cli import cli

PW = "violet kettle harbour"

Run = Callable[..., Result]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in [v for v in __import__("os").environ if v.startswith("TEAMHUB_")]:
        monkeypatch.delenv(var)
    return tmp_path / "state"


@pytest.fixture
def run(tmp_path: Path, state: Path) -> Run:
    config = tmp_path / "teamhub.toml"
    config.write_text(f'[paths]\nstate_dir = "{state}"\nhome_root = "{tmp_path / "home"}"\n'
                      '[users]\nsystem_prefix = "thcli-"\n[auth]\nmin_password_length = 12\n')

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), "user", *args], input=input)

    return invoke


@pytest.fixture
def store(state: Path) -> AccountStore:
    return AccountStore(state / "accounts.sqlite")


def _snapshot(store: AccountStore) -> list[tuple]:
    with sqlite3.connect(store.path) as conn:
        return [*conn.execute("SELECT * FROM accounts ORDER BY name"),
                *conn.execute("SELECT * FROM reset_links ORDER BY token_hash")]


def _error(result: Result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("teamhub: error: "), result.stderr
    return lines[0]


def test_pending_approve_reject(run: Run, store: AccountStore) -> None:
    assert "no signups are waiting" in run("pending").stdout
    lifecycle.request_signup(store, "ada", PW, open_signup=False)
    lifecycle.request_signup(store, "bob", PW, open_signup=False)
    rows = json.loads(run("pending", "--json").stdout)
    assert [r["name"] for r in rows] == ["ada", "bob"] and all(r["requested"] for r in rows)
    table = run("pending").stdout.splitlines()
    assert table[0].split()[0] == "NAME" and table[1].startswith("ada")
    listing = json.loads(run("list", "--json").stdout)
    assert [r["pending"] for r in listing] == [True, True]
    assert "(pending)" in run("list").stdout
    assert "approved ada" in run("approve", "ADA").stdout
    assert store.verify("ada", PW) is not None
    assert "rejected the signup of bob" in run("reject", "bob").stdout
    assert store.get("bob") is None
    assert json.loads(run("pending", "--json").stdout) == []


@pytest.mark.parametrize(("args", "message"), [
    (("approve", "nobody"), "no signup for 'nobody'"),
    (("reject", "nobody"), "no signup for 'nobody'"),
    (("approve", "ada"), "not waiting for approval"),
    (("reject", "ada"), "not waiting for approval"),
    (("approve", "../root"), "invalid user name"),
    (("reject", "a" * 500), "too long"),
    (("admin", "nobody", "--on"), "'nobody' does not exist"),
    (("admin", "ada"), "say --on or --off"),
    (("admin", "pen", "--on"), "waiting for approval"),
    (("admin", "bad name!", "--off"), "invalid user name"),
    (("reset-link", "nobody", "--base-url", "http://h"), "'nobody' does not exist"),
    (("reset-link", "pen", "--base-url", "http://h"), "waiting for approval"),
    (("reset-link", "ada", "--base-url", "http://h", "--expires", "0h"), "invalid duration"),
    (("reset-link", "ada", "--base-url", "http://h", "--expires", "99d"), "invalid duration"),
    (("reset-link", "ada", "--base-url", "javascript:alert(1)"), "invalid --base-url"),
    (("reset-link", "ada"), "pass the address people open the hub at"),
    (("add", "pen", "--password-stdin"), "is a pending signup"),
    (("add", "ada", "--password-stdin"), "already exists"),
    (("add", "new", "--password-stdin"), "too short"),  # 11 < auth.min_password_length 12
    (("passwd", "ada", "--password-stdin"), "commonly used"),
    (("passwd", "ada", "--password-stdin"), "contains the user name"),
])
def test_bad_input_changes_nothing(run: Run, store: AccountStore, args: tuple[str, ...],
                                   message: str) -> None:
    store.add("ada", PW, admin=False)
    lifecycle.request_signup(store, "pen", PW, open_signup=False)
    before = _snapshot(store)
    password = {"too short": "eleven-char", "commonly used": "password1234",
                "contains the user name": "my-ada-password"}.get(message, PW)
    line = _error(run(*args, input=password + "\n"))
    assert message in line
    if password != PW:
        assert password not in line  # a refused password is never echoed
    assert _snapshot(store) == before


def test_reset_link_prints_a_link_that_works_once(run: Run, store: AccountStore,
                                                   state: Path) -> None:
    store.add("ada", PW)
    result = run("reset-link", "ada", "--expires", "2h", "--base-url", "https://hub.example/")
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith("https://hub.example/hub/reset/") and "\n" not in link
    assert "valid until" in result.stderr
    token = link.rsplit("/", 1)[1]
    assert lifecycle.reset_link_user(store, token) == "ada"
    # Without --base-url: what the running hub announced.
    (state / "hub_public_url").write_text("http://team.example:8000\n")
    second = run("reset-link", "ada").stdout.strip()
    assert second.startswith("http://team.example:8000/hub/reset/")
    assert lifecycle.reset_link_user(store, token) is None  # replaced


def test_admin_on_off_without_hub(run: Run, store: AccountStore) -> None:
    store.add("ada", PW)
    out = run("admin", "ada", "--on")
    assert out.exit_code == 0 and "ada is an admin" in out.stdout and "no hub" in out.stdout
    assert store.get("ada").admin is True
    assert "not an admin" in run("admin", "ADA", "--off").stdout
    assert store.get("ada").admin is False


def test_passwd_applies_policy_and_min_length(run: Run, store: AccountStore) -> None:
    store.add("ada", PW)
    assert run("passwd", "ada", "--password-stdin", input="twelve-chars\n").exit_code == 0
    assert store.verify("ada", "twelve-chars") is not None
