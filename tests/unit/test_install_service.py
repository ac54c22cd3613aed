"""`teamhub install` pieces that need no systemd: the unit text, the pre-upgrade backup,
busctl arguments, and the refusal without systemd."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from teamhub.cli import cli
from teamhub.cli.install import backup_state, unit_text
from teamhub.errors import SystemdError
from teamhub.paths import Paths
from teamhub.system import systemd


def test_unit_runs_the_runtime_with_the_settings_file(tmp_path: Path, settings,
                                                      monkeypatch) -> None:
    monkeypatch.setenv("TEAMHUB_HUB_PORT", "9000")
    s = settings(TEAMHUB_HUB_PORT="9000")
    text = unit_text(s, Paths.from_settings(s))
    assert f"ExecStart=/opt/teamhub/runtime/bin/teamhub --config {tmp_path}/teamhub.toml up" \
        in text
    assert "Restart=on-failure" in text and "KillMode=control-group" in text
    assert 'Environment="TEAMHUB_HUB_PORT=9000"' in text  # install-time env reaches the service
    assert "WantedBy=multi-user.target" in text


def _db(path: Path, rows: list[str]) -> None:
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE users (name TEXT)")
        c.executemany("INSERT INTO users VALUES (?)", [(r,) for r in rows])


def test_backup_copies_both_databases_root_only(tmp_path: Path, settings) -> None:
    s = settings(f'[paths]\nstate_dir = "{tmp_path}/state"\n')
    paths = Paths.from_settings(s)
    paths.state_dir.mkdir()
    assert backup_state(paths) is None  # a fresh install has nothing to back up
    _db(paths.hub_db, ["ada"])
    _db(paths.accounts_db, ["ada", "bob"])
    folder = backup_state(paths, stamp="20260101T000000Z")
    assert folder == paths.state_dir / "backups" / "20260101T000000Z"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct(folder.parent.stat().st_mode & 0o777) == "0o700"
    for name, rows in (("jupyterhub.sqlite", ["ada"]), ("accounts.sqlite", ["ada", "bob"])):
        copy = folder / name
        assert oct(copy.stat().st_mode & 0o777) == "0o600"
        with sqlite3.connect(copy) as c:
            assert [r[0] for r in c.execute("SELECT name FROM users")] == rows
    with pytest.raises(FileExistsError):  # never overwrites an earlier backup
        backup_state(paths, stamp="20260101T000000Z")


def test_busctl_arguments_are_typed() -> None:
    assert systemd._busctl_args({"MemoryMax": 1024, "MemoryAccounting": True,
                                 "Slice": "teamhub.slice"}) == [
        "MemoryMax", "t", "1024", "MemoryAccounting", "b", "true", "Slice", "s",
        "teamhub.slice"]
    with pytest.raises(SystemdError, match="Bogus"):
        systemd._busctl_args({"Bogus": 1})


def test_scope_names_must_end_in_scope() -> None:
    with pytest.raises(SystemdError, match=r"\.scope"):
        systemd.place_in_scope(os.getpid(), "teamhub-x.service", {})


@pytest.mark.skipif(systemd.booted(), reason="systemd is init here")
def test_install_without_systemd_is_refused_with_a_hint(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "t.toml"), "install"])
    assert result.exit_code != 0
    assert "teamhub: error:" in result.output
    assert ("needs systemd" in result.output) or ("must run as root" in result.output)
