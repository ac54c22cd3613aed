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


def test_a_stop_that_hangs_is_finished_with_sigkill(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A process in the slice that ignores SIGTERM holds `systemctl stop` for systemd's own
    timeout (90 s): past STOP_WAIT what is left gets SIGKILL, and the stop is asked again,
    instead of a traceback from the CLI (`teamhub uninstall` once died of it). systemctl
    is a stand-in here (no systemd as PID 1 in the unit tests): the first stop hangs."""
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
echo "$*" >> {calls}
if [ "$1" = stop ] && [ ! -e {tmp_path}/killed ]; then sleep 30; fi
if [ "$1" = kill ]; then touch {tmp_path}/killed; fi
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(systemd, "booted", lambda: True)
    monkeypatch.setattr(systemd, "STOP_WAIT", 1)
    systemd.stop_unit("teamhub.slice")
    assert calls.read_text().splitlines() == [
        "stop teamhub.slice", "kill --signal=SIGKILL teamhub.slice", "stop teamhub.slice"]
    # A stop that finishes in time is all there is.
    calls.unlink()
    systemd.stop_unit("teamhub-user-a.scope")
    assert calls.read_text().splitlines() == ["stop teamhub-user-a.scope"]
