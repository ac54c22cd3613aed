"""First start with --admin, root-only state, the config.d escape hatch, binding all
addresses, and account changes from the CLI reaching a running hub."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import time

import pytest
import requests
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique

from teamhub.system.processes import processes_of

pytestmark = [pytest.mark.hub, pytest.mark.system]

ANNOUNCEMENT = "config-d-was-loaded-last"


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory(ip="0.0.0.0")
    h.admin = unique("boss")
    confd = h.config.parent / "jupyterhub_config.d"
    confd.mkdir()
    (confd / "50-login-message.py").write_text(
        f"c.JupyterHub.template_vars = {{'announcement_login': {ANNOUNCEMENT!r}}}\n"
    )
    # A server dying at start is made here by the user's own ~/.jupyter config, which
    # teamhub ignores by default (README "Browser isolation"): read it in this hub.
    (confd / "60-user-config.py").write_text("c.Spawner.disable_user_config = False\n")
    h.start("--admin", h.admin)
    return h


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_admin_gets_generated_password_in_root_only_file(hub: HubProcess) -> None:
    secret = hub.state / "initial-admin-password"
    assert mode(secret) == 0o600 and os.stat(secret).st_uid == 0
    name, password = secret.read_text().split()
    assert name == hub.admin
    assert "created with password" in hub.log.read_text()
    b = Browser(hub.url)
    assert b.login(name, password).status_code == 302
    assert b.get("/hub/api/user").json()["admin"] is True


def test_state_is_root_only(hub: HubProcess) -> None:
    assert mode(hub.state) == 0o700
    for name in ("jupyterhub_cookie_secret", "jupyterhub.sqlite", "accounts.sqlite",
                 "cli_api_token"):
        assert mode(hub.state / name) == 0o600, name


def test_raw_jupyterhub_config_d_is_loaded_last(hub: HubProcess) -> None:
    assert ANNOUNCEMENT in requests.get(hub.url + "/hub/login", timeout=10).text


def test_default_listens_on_every_address(hub: HubProcess) -> None:
    # 127.0.0.2 is another address of this machine: it answers only if we bound them all.
    resp = requests.get(f"http://127.0.0.2:{hub.port}/hub/login", timeout=10)
    assert resp.status_code == 200


def test_passwd_takes_effect_without_restart(hub: HubProcess) -> None:
    name = unique("pat")
    hub.add_user(name, PASSWORD)
    assert Browser(hub.url).login(name, PASSWORD).status_code == 302
    hub.teamhub("user", "passwd", name, "--password-stdin", input="a whole new secret\n")
    assert Browser(hub.url).login(name, PASSWORD).status_code == 403
    assert Browser(hub.url).login(name, "a whole new secret").status_code == 302


def test_remove_stops_server_and_deletes_linux_account(hub: HubProcess) -> None:
    name = unique("rex")
    hub.add_user(name, PASSWORD)
    b = Browser(hub.url)
    assert b.login(name, PASSWORD).status_code == 302
    b.start_server(name)
    account = pwd.getpwnam(hub.system_user(name))
    hub.teamhub("user", "remove", name, "--yes")
    with pytest.raises(KeyError):
        pwd.getpwnam(hub.system_user(name))
    assert not os.path.exists(account.pw_dir)
    assert not os.path.exists(f"/run/teamhub/{account.pw_uid}")
    assert processes_of(account.pw_uid) == []
    assert Browser(hub.url).login(name, PASSWORD).status_code == 403
    assert hub.teamhub("user", "show", name, check=False).returncode != 0


def test_preexisting_linux_account_is_never_used(hub: HubProcess) -> None:
    name = unique("eve")
    system = hub.system_user(name)
    subprocess.run(["useradd", "--no-create-home", system], check=True)
    try:
        hub.add_user(name, PASSWORD)
        b = Browser(hub.url)
        assert b.login(name, PASSWORD).status_code == 302
        resp = b.http.post(f"{hub.url}/hub/api/users/{name}/server",
                           headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
        deadline = time.monotonic() + 30
        message = resp.text
        while "not created by teamhub" not in message and time.monotonic() < deadline:
            message = b.get(f"/hub/api/users/{name}/server/progress",
                            stream=True, timeout=10).text
            time.sleep(0.5)
        assert "not created by teamhub" in message
        uid = pwd.getpwnam(system).pw_uid
        assert processes_of(uid) == []
    finally:
        subprocess.run(["userdel", system], check=False)


def test_server_dying_at_start_is_reported_at_once_with_its_own_error(hub: HubProcess) -> None:
    name = unique("fay")
    hub.add_user(name, PASSWORD)
    b = Browser(hub.url)
    assert b.login(name, PASSWORD).status_code == 302
    hub.make_server_die_at_start(b, name)
    started = time.monotonic()
    resp = b.http.post(f"{hub.url}/hub/api/users/{name}/server",
                       headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    message = resp.text
    deadline = time.monotonic() + 30
    while "config-says-no-thanks" not in message and time.monotonic() < deadline:
        message = b.get(f"/hub/api/users/{name}/server/progress", timeout=10).text
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    assert "stopped while starting" in message and "config-says-no-thanks" in message
    # Far below the hub's http_timeout (60 s): the death is noticed, not waited out.
    assert elapsed < 20
