"""Test layers: tests/unit (pure logic), tests/hub (real hub, proxy, users), tests/system (OS).

Everything that touches the OS needs root; run the suite with ./run-tests.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.docker_engine import DockerEngine
from support.postgres import PostgresCluster

from teamhub.settings import BY_KEY, Settings, load
from teamhub.system import hub_account
from teamhub.system.docker import Engine
from teamhub.system.login_profile import DEFAULT_PATH as LOGIN_PROFILE
from teamhub.system.processes import processes_of
from teamhub.system.users import lookup


@pytest.fixture(scope="session", autouse=True)
def login_profile_kept() -> Iterator[None]:
    """Every test hub writes the login profile as `teamhub up` does; the machine gets
    back what it had (none on a fresh machine, a real install's otherwise)."""
    before = LOGIN_PROFILE.read_bytes() if LOGIN_PROFILE.exists() else None
    yield
    if os.geteuid() != 0:
        return
    if before is None:
        LOGIN_PROFILE.unlink(missing_ok=True)
    else:
        LOGIN_PROFILE.write_bytes(before)


@pytest.fixture(scope="session", autouse=True)
def hub_account_kept(request: pytest.FixtureRequest) -> Iterator[None]:
    """Test hubs run unprivileged (hub.unprivileged, on by default) as the default account
    `teamhub`. If the machine has none, the suite makes it here, as `teamhub up` would but
    with a home of its own for the session (`up` makes the state folder its home, and test
    hubs' state folders come and go: the hub's tools, e.g. npm, would make a removed one
    again), and removes both at the end; an account it did not make stays as it is."""
    account = str(BY_KEY["hub.account"].default)
    hubs = any("hub" in item.keywords or "system" in item.keywords
               for item in request.session.items)
    if not hubs or os.geteuid() != 0 or lookup(account) is not None:
        yield
        return
    home = Path(tempfile.mkdtemp(prefix="teamhub-account-", dir="/tmp"))
    try:
        made = hub_account.ensure(account, home)
        os.chown(home, made.uid, made.gid)
        yield
    finally:
        made_now = lookup(account)
        if made_now is not None:
            for pid in processes_of(made_now.uid):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            subprocess.run(["userdel", account], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates Linux users (run ./run-tests.sh as root)")
    for item in items:
        if "system" in item.keywords or "hub" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from TEXT (what teamhub.toml holds) and ENV (the only TEAMHUB_* variables
    seen): `settings('[hub]\\nport = 9000\\n', TEAMHUB_HUB_IP="127.0.0.1")`."""

    def load_settings(text: str = "", **env: str) -> Settings:
        cfg = tmp_path / "teamhub.toml"
        cfg.write_text(text)
        return load(cfg, environ=env)

    return load_settings


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the session (made on first use, removed at the end);
    each user takes databases of its own with `new_database()`."""
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """db.url for each backend: "" (the embedded sqlite files) and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db_url(request: pytest.FixtureRequest) -> str:
    """db_url for a module's hub: the module's tests run once on each backend."""
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """The local Docker engine, started for the module (without any bridge) unless it runs."""
    docker = DockerEngine()
    docker.ensure()
    try:
        yield Engine()
    finally:
        docker.stop()
