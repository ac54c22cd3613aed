"""The CLI's own edits of a hub database (real sqlite file, JupyterHub's ORM), and the
CLI token's rotation at `teamhub up`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jupyterhub import orm

from teamhub import hubdb
from teamhub.cli.up import rotate_api_token
from teamhub.errors import PreflightError
from teamhub.hubconfig import CLI_SERVICE
from teamhub.paths import Paths


def _db(path: Path):
    return orm.new_session_factory(f"sqlite:///{path}")()


def _hub_db(path: Path) -> None:
    db = _db(path)
    cli, other = orm.Service(name=CLI_SERVICE), orm.Service(name="idle-culler")
    ada = orm.User(name="ada")
    db.add_all([cli, other, ada])
    db.commit()
    for owner, value in ((cli, "old-cli-token-1"), (cli, "old-cli-token-2"),
                         (other, "culler-token"), (ada, "ada-token")):
        kind = "service" if isinstance(owner, orm.Service) else "user"
        token = orm.APIToken(**{kind: owner}, note="from config", scopes=[])
        token.token = value
        db.add(token)
    db.commit()
    db.close()


def _tokens(path: Path) -> set[str]:
    db = _db(path)
    try:
        return {(t.service.name if t.service else t.user.name) for t in db.query(orm.APIToken)}
    finally:
        db.close()


def test_revoke_only_the_named_services_tokens(tmp_path: Path) -> None:
    path = tmp_path / "jupyterhub.sqlite"
    _hub_db(path)
    assert hubdb.revoke_service_tokens(path, CLI_SERVICE) == 2
    assert _tokens(path) == {"idle-culler", "ada"}
    assert hubdb.revoke_service_tokens(path, CLI_SERVICE) == 0
    assert hubdb.revoke_service_tokens(tmp_path / "missing.sqlite", CLI_SERVICE) == 0


def test_delete_user(tmp_path: Path) -> None:
    path = tmp_path / "jupyterhub.sqlite"
    _hub_db(path)
    assert hubdb.delete_user(path, "ada") is True
    assert "ada" not in _tokens(path)
    assert hubdb.delete_user(path, "ada") is False


def _paths(tmp_path: Path) -> Paths:
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    return Paths(config_file=tmp_path / "t.toml", state_dir=state, runtime_dir=tmp_path,
                 home_root=tmp_path)


def test_rotation_writes_a_new_private_token_and_revokes_the_old(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    _hub_db(paths.hub_db)
    first = rotate_api_token(paths)
    assert paths.api_token.read_text() == first + "\n"
    assert paths.api_token.stat().st_mode & 0o777 == 0o600
    assert CLI_SERVICE not in _tokens(paths.hub_db)
    second = rotate_api_token(paths)
    assert second != first and paths.api_token.read_text() == second + "\n"
    assert [p.name for p in paths.state_dir.iterdir()] == ["cli_api_token", "jupyterhub.sqlite"]


def test_rotation_never_under_a_live_hub(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    _hub_db(paths.hub_db)
    paths.hub_pid_file.write_text(f"{os.getpid()}\n")  # "the hub" is this live process
    with pytest.raises(PreflightError, match=f"a hub already runs \\(pid {os.getpid()}"):
        rotate_api_token(paths)
    assert not paths.api_token.exists() and CLI_SERVICE in _tokens(paths.hub_db)
