"""The hub's sqlite database: WAL and synchronous=NORMAL, set through JupyterHub's db_kwargs."""

from __future__ import annotations

from pathlib import Path

from jupyterhub import orm
from sqlalchemy import text
from traitlets.config import Config

from teamhub import hubconfig
from teamhub.paths import Paths


def test_the_hub_opens_its_database_in_wal_mode_with_normal_sync(tmp_path: Path) -> None:
    c = Config()
    paths = Paths(config_file=tmp_path / "teamhub.toml", state_dir=tmp_path,
                  runtime_dir=tmp_path, home_root=tmp_path)
    hubconfig.update_state(c, paths)
    # As JupyterHub opens it: orm.new_session_factory(db_url, **db_kwargs).
    session = orm.new_session_factory(c.JupyterHub.db_url, **c.JupyterHub.db_kwargs)()
    try:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1  # JupyterHub's own
        session.add(orm.User(name="ada"))
        session.commit()
    finally:
        session.close()
    assert paths.hub_db.exists() and paths.hub_db.parent == tmp_path
