"""`teamhub db migrate --to URL` from a populated sqlite install into a private PostgreSQL:
everything arrives (counts and checksums), db.url switches only after; failures change nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from jupyterhub import orm
from support.postgres import PostgresCluster

import teamhub.cli
from teamhub import doctor
from teamhub.accounts.groups import GroupStore
from teamhub.accounts.lockout import Lockout
from teamhub.accounts.store import AccountStore
from teamhub.paths import Paths
from teamhub.projects.model import Principal, ProjectStore
from teamhub.settings import load

pytestmark = [pytest.mark.system]

PW = "correct horse battery"


def run(config: Path, *args: str) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TEAMHUB_")}
    return CliRunner(env=clean).invoke(teamhub.cli.cli, ["--config", str(config), *args])


@pytest.fixture
def install(tmp_path: Path) -> Path:
    """A settings file and a state folder with a populated store and hub database."""
    state = tmp_path / "state"
    config = tmp_path / "teamhub.toml"
    config.write_text(f'[paths]\nstate_dir = "{state}"\n')
    store = AccountStore(state / "accounts.sqlite")
    store.add("ada", PW, admin=True)
    store.add("bob", PW)
    GroupStore(store).create("team")
    GroupStore(store).add_members("team", ["ada", "bob"])
    ProjectStore(store).create("apollo", "moon", {Principal("group", "team"): "write"}, "ada")
    ProjectStore(store).grant("apollo", Principal("user", "bob"), "read", "ada")
    Lockout(store).record_failure("mallory")
    hub = orm.new_session_factory(f"sqlite:///{state / 'jupyterhub.sqlite'}")()
    for name in ("ada", "bob"):
        hub.add(orm.User(name=name, admin=name == "ada"))
    hub.add(orm.Group(name="team"))
    hub.commit()
    hub.close()
    return config


def test_migrate_copies_everything_then_switches(install: Path,
                                                 postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    result = run(install, "db", "migrate", "--to", url)
    assert result.exit_code == 0, result.output
    assert postgres.password not in result.output
    for table in ("accounts", "memberships", "project_grants", "project_log", "users", "groups"):
        assert any(line.startswith(table) and line.endswith("ok")
                   for line in result.output.splitlines()), (table, result.output)
    assert postgres.password in install.read_text()  # db.url, set only after the copy
    shown = run(install, "config", "get", "db.url").output
    assert postgres.password not in shown and "***" in shown

    store = AccountStore(Path("/nonexistent/unused.sqlite"), url)
    assert [a.name for a in store.list()] == ["ada", "bob"]
    assert store.verify("ada", PW) is not None
    assert GroupStore(store).list() == {"team": ["ada", "bob"]}
    assert ProjectStore(store).get("apollo").grants == {Principal("user", "bob"): "read",
                                                        Principal("group", "team"): "write"}
    # Serial ids continue after the copied ones (sequences moved past them).
    ProjectStore(store).log("apollo", "ada", "note")
    assert [h["action"] for h in ProjectStore(store).history("apollo")][-1] == "note"
    hub = orm.new_session_factory(url)()
    assert sorted(u.name for u in hub.query(orm.User)) == ["ada", "bob"]
    hub.add(orm.User(name="cy"))
    hub.commit()
    hub.close()


def _refused(install: Path, url: str, *needles: str) -> str:
    before = install.read_text()
    result = run(install, "db", "migrate", "--to", url)
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("teamhub: error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert install.read_text() == before  # db.url untouched
    return lines[0]


def test_bad_url_changes_nothing(install: Path) -> None:
    _refused(install, "mysql://u:pw@h/d", "not a PostgreSQL URL", "postgresql://USER")


def test_wrong_password_changes_nothing(install: Path, postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    line = _refused(install, url.replace(postgres.password, "wrong-pw"),
                    "password authentication failed", "check the user name and password")
    assert "wrong-pw" not in line


def test_database_without_rights_changes_nothing(install: Path,
                                                 postgres: PostgresCluster) -> None:
    url = postgres.new_database(owner="postgres")
    database = url.rsplit("/", 1)[1]
    postgres.psql(f"REVOKE CREATE ON DATABASE {database} FROM PUBLIC")
    line = _refused(install, url, "permission denied", "GRANT CREATE ON DATABASE")
    assert postgres.password not in line
    assert postgres.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'teamhub'",
                         database).strip() == "0"


def test_failure_midway_rolls_back(install: Path, postgres: PostgresCluster) -> None:
    # JupyterHub's `users` table exists already: found before anything is written.
    url = postgres.new_database()
    database = url.rsplit("/", 1)[1]
    postgres.psql(f"CREATE TABLE users (id integer); ALTER TABLE users OWNER TO {postgres.user}",
                  database)
    _refused(install, url, "already has JupyterHub tables", "empty database")
    assert postgres.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'teamhub'",
                         database).strip() == "0"


def test_backup_restore_and_doctor_after_the_move(install: Path, postgres: PostgresCluster,
                                                  tmp_path: Path) -> None:
    url = postgres.new_database()
    assert run(install, "db", "migrate", "--to", url).exit_code == 0
    settings = load(install, environ={})
    paths = Paths.from_settings(settings)
    probe = doctor.Probe(settings, paths)
    for result in (doctor.account_store(probe), doctor.hub_database(probe)):
        assert result.ok, result
        assert postgres.password not in str(result)
    assert "2 account(s)" in doctor.account_store(probe).detail

    archive = tmp_path / "backup.tar.gz"
    result = run(install, "backup", str(archive))
    assert result.exit_code == 0, result.output
    store = AccountStore(paths.accounts_db, url)
    store.remove("bob")
    GroupStore(store).create("later")
    result = run(install, "restore", str(archive), "--force")
    assert result.exit_code == 0, result.output
    assert [a.name for a in store.list()] == ["ada", "bob"]
    assert GroupStore(store).list() == {"team": ["ada", "bob"]}
    assert store.verify("bob", PW) is not None
    ProjectStore(store).log("apollo", "ada", "after-restore")  # sequences still right
