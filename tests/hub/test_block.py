"""`teamhub user block` / `unblock` against a running hub, real servers and kernels.

One hub for the module, with auth_refresh_age lowered to 1 s (through a
jupyterhub_config.d file, as an admin would) so that the end of an open
session can be observed without waiting a minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
import requests
from support import unixsocket
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique, world_dir

from teamhub.system import acl, processes, users

pytestmark = [pytest.mark.hub, pytest.mark.system]



@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    root = world_dir("teamhub-blockroot-")
    h = hub_factory(extra_toml=f'[projects]\nroot = "{root}"\n')
    h.scratch.append(root)
    config_d = h.config.parent / "jupyterhub_config.d"
    config_d.mkdir()
    (config_d / "refresh.py").write_text("c.Authenticator.auth_refresh_age = 1\n")
    h.projects_root = root
    h.u, h.w = unique("bk"), unique("bw")
    for name in (h.u, h.w):
        h.add_user(name, PASSWORD)
    h.teamhub("project", "create", "data", "--writers", h.w, "--readers", h.u)
    h.start()
    return h


def _api(hub: HubProcess, path: str) -> requests.Response:
    url = (hub.state / "hub_api_url").read_text().strip()
    token = (hub.state / "cli_api_token").read_text().strip()
    return unixsocket.session().get(f"{url}{path}", headers={"Authorization": f"token {token}"},
                                    timeout=30)


def _login_page(resp: requests.Response) -> tuple[int, str]:
    """Status and body of a login answer, the per-request xsrf token blanked out
    (in the form and in the page's script: the signed token carries a timestamp,
    so two answers a second apart differ there)."""
    text = re.sub(r'value="[^"]*"', 'value=""', resp.text)
    return resp.status_code, re.sub(r'xsrf_token: "[^"]*"', 'xsrf_token: ""', text)


def _wait(predicate, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return predicate()


def _read_in_new_kernel(b: Browser, name: str, path: str) -> dict[str, str]:
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    return b.execute(name, b.new_kernel(name), f"print(open({path!r}).read(), end='')")


def test_block_cuts_everything_off_and_unblock_gives_it_back(hub: HubProcess) -> None:
    u = hub.u
    sysname = hub.system_user(u)
    folder = hub.projects_root / "data"
    secret = folder / "notes.txt"
    link = hub.home_root / sysname / "projects" / "data"

    b = Browser(hub.url)
    assert b.login(u, PASSWORD).status_code == 302
    b.start_server(u)
    assert b.open_lab(u).status_code == 200
    secret.write_text("shared notes\n")  # root writes; the default ACL lets readers read
    kernel = b.new_kernel(u)
    assert b.execute(u, kernel, f"print(open({str(secret)!r}).read(), end='')")["stdout"] \
        == "shared notes\n"
    assert os.path.islink(link)
    uid = users.lookup(sysname).uid
    assert processes.processes_of(uid)

    out = hub.teamhub("user", "block", u).stdout
    assert "blocked user" in out and "stopped 1 server(s)" in out, out
    assert "removed access to projects: data" in out, out

    # Nothing of the user's runs any more, and the hub knows the server is gone.
    assert _wait(lambda: not processes.processes_of(uid), 20), processes.processes_of(uid)
    assert _api(hub, f"/users/{u}").json()["servers"] == {}
    # The open browser session is turned away once the 1 s refresh age has passed.
    assert _wait(lambda: b.get("/hub/api/user", allow_redirects=False).status_code != 200, 20)
    assert b.get("/hub/api/user", allow_redirects=False).status_code in (302, 403)
    # The right password now looks exactly like a wrong one.
    right = Browser(hub.url).login(u, PASSWORD)
    wrong = Browser(hub.url).login(u, "not the password at all")
    assert right.status_code == wrong.status_code != 302
    assert _login_page(right) == _login_page(wrong)
    assert "jupyterhub-session-id" not in right.cookies and "jupyterhub-hub-login" not in \
        right.cookies
    # No project access on disk: ACL and link are gone.
    getfacl = subprocess.run(["getfacl", "-p", str(folder)], capture_output=True, text=True,
                             check=True).stdout
    assert f"user:{sysname}:" not in getfacl
    assert sysname not in acl.named_users(folder)
    assert not os.path.lexists(link)
    # Blocking twice is harmless.
    assert "already blocked" in hub.teamhub("user", "block", u).stdout

    out = hub.teamhub("user", "unblock", u).stdout
    assert "unblocked user" in out and "data (read)" in out, out
    again = Browser(hub.url)
    assert again.login(u, PASSWORD).status_code == 302
    assert _read_in_new_kernel(again, u, str(secret))["stdout"] == "shared notes\n"
    assert os.path.islink(link)
    assert f"user:{sysname}:" in subprocess.run(["getfacl", "-p", str(folder)],
                                                capture_output=True, text=True).stdout


def test_block_unknown_user_changes_nothing(hub: HubProcess) -> None:
    result = hub.teamhub("user", "block", "nobody" + hub.u, check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "does not exist" in result.stderr
    other = Browser(hub.url)
    assert other.login(hub.w, PASSWORD).status_code == 302
