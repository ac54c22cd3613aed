"""`teamhub user ...` against a store in a temporary state dir (no hub, no Linux accounts)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from teamhub.accounts.store import AccountStore
from teamhub.cli import cli

PW = "a perfectly fine password"

Run = Callable[..., Result]


@pytest.fixture
def tmp_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in list(os.environ):
        if var.startswith("TEAMHUB_"):
            monkeypatch.delenv(var)
    return tmp_path / "state"


@pytest.fixture
def config(tmp_path: Path, tmp_state: Path) -> Path:
    path = tmp_path / "teamhub.toml"
    path.write_text(
        f'[paths]\nstate_dir = "{tmp_state}"\nhome_root = "{tmp_path / "home"}"\n'
        '[users]\nsystem_prefix = "thcli-"\n'
    )
    return path


@pytest.fixture
def run(config: Path) -> Run:
    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), "user", *args], input=input)

    return invoke


def _error_line(result: Result) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("teamhub: error: ")
    return lines[0]


def test_add_with_password_stdin(run: Run, tmp_state: Path) -> None:
    result = run("add", "Ada", "--admin", "--password-stdin", input=PW + "\n")
    assert result.exit_code == 0, result.output
    assert "added user ada (admin)" in result.stdout
    assert PW not in result.output
    account = AccountStore(tmp_state / "accounts.sqlite").verify("ada", PW)
    assert account is not None and account.admin


def test_add_generates_password_once(run: Run, tmp_state: Path) -> None:
    result = run("add", "bob")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("password for bob: "))
    password = line.split(": ", 1)[1]
    assert len(password) == 20
    assert AccountStore(tmp_state / "accounts.sqlite").verify("bob", password) is not None


def test_list_json(run: Run) -> None:
    run("add", "zoe", "--password-stdin", input=PW)
    run("add", "ada", "--admin", "--password-stdin", input=PW)
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["ada", "zoe"]
    assert rows[0]["admin"] is True and rows[1]["admin"] is False
    assert rows[0]["system_user"] == "thcli-ada"
    table = run("list")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split()[:2] == ["NAME", "ADMIN"]
    assert "thcli-zoe" in table.stdout


def test_show_json(run: Run, tmp_path: Path) -> None:
    run("add", "ada", "--password-stdin", input=PW)
    result = run("show", "ADA", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert {"name", "admin", "system_user", "home", "created", "system_user_exists",
            "server"} <= set(info)
    assert info["name"] == "ada"
    assert info["system_user"] == "thcli-ada"
    assert info["home"] == str(tmp_path / "home" / "thcli-ada")
    assert info["system_user_exists"] is False
    assert info["server"] is None  # no hub running
    assert run("show", "ada").exit_code == 0


def test_passwd(run: Run, tmp_state: Path) -> None:
    run("add", "ada", "--password-stdin", input=PW)
    result = run("passwd", "ada", "--password-stdin", input="a brand new password\r\n")
    assert result.exit_code == 0, result.output
    store = AccountStore(tmp_state / "accounts.sqlite")
    assert store.verify("ada", PW) is None
    assert store.verify("ada", "a brand new password") is not None


def test_passwd_unknown_user(run: Run) -> None:
    assert "'nobody' does not exist" in _error_line(
        run("passwd", "nobody", "--password-stdin", input=PW))


def test_duplicate_add(run: Run) -> None:
    assert run("add", "ada", "--password-stdin", input=PW).exit_code == 0
    result = run("add", "Ada", "--password-stdin", input=PW + "2")
    assert "'ada' already exists" in _error_line(result)


def test_invalid_name(run: Run, tmp_state: Path) -> None:
    result = run("add", "../root", "--password-stdin", input=PW)
    assert "invalid user name" in _error_line(result)
    assert AccountStore(tmp_state / "accounts.sqlite").count() == 0


@pytest.mark.parametrize("password", ["tiny-pw", "adalovelace", "x" * 1025, "null\0byte password"])
def test_weak_password(run: Run, tmp_state: Path, password: str) -> None:
    result = run("add", "adalovelace", "--password-stdin", input=password)
    line = _error_line(result)
    if password != "adalovelace":
        assert password not in line
    assert AccountStore(tmp_state / "accounts.sqlite").get("adalovelace") is None


def test_remove_unknown_user(run: Run) -> None:
    assert "'nobody' does not exist" in _error_line(run("remove", "nobody", "--yes"))


def test_remove(run: Run, tmp_state: Path) -> None:
    run("add", "ada", "--password-stdin", input=PW)
    result = run("remove", "ada", "--yes")
    assert result.exit_code == 0, result.output
    assert "removed user ada" in result.stdout
    assert AccountStore(tmp_state / "accounts.sqlite").get("ada") is None
    assert json.loads(run("list", "--json").stdout) == []


def test_remove_asks_first(run: Run, tmp_state: Path) -> None:
    run("add", "ada", "--password-stdin", input=PW)
    result = run("remove", "ada", input="n\n")
    assert result.exit_code != 0
    assert AccountStore(tmp_state / "accounts.sqlite").get("ada") is not None
    assert run("remove", "ada", input="y\n").exit_code == 0
    assert AccountStore(tmp_state / "accounts.sqlite").get("ada") is None


def test_help_everywhere(run: Run) -> None:
    for command in ("add", "passwd", "list", "show", "remove", "block", "unblock"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "--help" in result.stdout


def test_block_and_unblock_without_a_hub(run: Run, tmp_state: Path) -> None:
    run("add", "ada", "--password-stdin", input=PW)
    store = AccountStore(tmp_state / "accounts.sqlite")
    result = run("block", "ADA")
    assert result.exit_code == 0, result.output
    assert "blocked user ada" in result.stdout
    assert "no hub is running" in result.stdout
    assert store.get("ada").blocked and store.verify("ada", PW) is None
    assert json.loads(run("show", "ada", "--json").stdout)["blocked"] is True
    assert json.loads(run("list", "--json").stdout)[0]["blocked"] is True
    assert "ada (blocked)" in run("list").stdout
    again = run("block", "ada")
    assert again.exit_code == 0 and "already blocked" in again.stdout
    result = run("unblock", "ada")
    assert result.exit_code == 0, result.output
    assert "unblocked user ada" in result.stdout
    assert not store.get("ada").blocked and store.verify("ada", PW) is not None
    again = run("unblock", "ada")
    assert again.exit_code == 0 and "was not blocked" in again.stdout
    assert json.loads(run("show", "ada", "--json").stdout)["blocked"] is False


@pytest.mark.parametrize("command", ["block", "unblock"])
def test_block_bad_input_is_one_line_and_changes_nothing(run: Run, tmp_state: Path,
                                                         command: str) -> None:
    run("add", "ada", "--password-stdin", input=PW)
    assert "'nobody' does not exist" in _error_line(run(command, "nobody"))
    assert "invalid user name" in _error_line(run(command, "../root"))
    assert AccountStore(tmp_state / "accounts.sqlite").get("ada").blocked is False
    assert run(command, "--help").exit_code == 0
