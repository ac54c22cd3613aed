"""The database server goes away under a running hub (db.url = PostgreSQL) and comes back.

While it is gone the hub and the CLI report errors (and the password never shows);
once it is back the same hub process serves logins again, with every change committed
before the outage still there.
"""

from __future__ import annotations

import time

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique
from support.postgres import PostgresCluster, db_toml

pytestmark = [pytest.mark.hub, pytest.mark.system]


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory, postgres: PostgresCluster) -> HubProcess:
    h = hub_factory(extra_toml=db_toml(postgres.new_database()))
    h.u = unique("pg")
    h.add_user(h.u, PASSWORD)
    h.start()
    return h


def _eventually(check, what: str, hub: HubProcess, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s:\n{hub.tail()}")
        time.sleep(0.5)


def test_outage_reported_then_recovered_without_loss(hub: HubProcess,
                                                     postgres: PostgresCluster) -> None:
    assert Browser(hub.url).login(hub.u, PASSWORD).status_code == 302
    hub.teamhub("group", "create", "before-outage")
    late = unique("pl")
    hub.add_user(late, PASSWORD)  # committed just before the server dies

    postgres.kill()
    try:
        answer = Browser(hub.url).login(hub.u, PASSWORD)
        assert answer.status_code != 302, "a login succeeded with the database server gone"
        cli = hub.teamhub("user", "list", check=False)
        assert cli.returncode != 0
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot be used" in lines[0], cli.stderr
        assert postgres.password not in cli.stderr + cli.stdout
        assert hub.proc is not None and hub.proc.poll() is None, "the hub exited"
    finally:
        postgres.start()

    def logs_in() -> bool:
        return Browser(hub.url).login(late, PASSWORD).status_code == 302

    _eventually(logs_in, "no login after the database server came back", hub)
    assert hub.proc is not None and hub.proc.poll() is None
    assert "before-outage" in hub.teamhub("group", "list").stdout
    assert late in hub.teamhub("user", "list").stdout
    assert postgres.password not in hub.log.read_text(errors="replace")
