"""PAM mode against real Linux accounts (useradd + chpasswd) and the real PAM stack.

Debian's `login` PAM service delays every failed password by ~3 s
(pam_faildelay), so this module keeps wrong-password tries few.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique

from teamhub.system import processes, users

pytestmark = [pytest.mark.hub, pytest.mark.system]



def _run(*cmd: str, input: str | None = None) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, input=input)


@pytest.fixture(scope="module")
def accounts():
    """A group, a member, a system account in the group, and an outsider; removed after."""
    group, admins = unique("thg"), unique("tha")
    names = {"member": unique("pm"), "system": unique("ps"), "outsider": unique("po"),
             "admin": unique("pa")}
    made: list[str] = []
    try:
        _run("groupadd", group)
        _run("groupadd", admins)
        _run("useradd", "-m", "-G", group, names["member"])
        made.append(names["member"])
        _run("useradd", "-M", "-G", f"{group},{admins}", names["admin"])
        made.append(names["admin"])
        _run("useradd", "-r", "-M", "-G", group, names["system"])
        made.append(names["system"])
        _run("useradd", "-M", names["outsider"])
        made.append(names["outsider"])
        _run("chpasswd", input="".join(f"{n}:{PASSWORD}\n" for n in made))
        yield group, admins, names
    finally:
        for name in made:
            account = users.lookup(name)
            if account is not None:
                processes.end_processes(account.uid)
            subprocess.run(["userdel", "-r", name], capture_output=True)
        for g in (group, admins):
            subprocess.run(["groupdel", g], capture_output=True)


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory, accounts) -> HubProcess:
    group, admins, names = accounts
    h = hub_factory(extra_toml=(
        f'[auth]\nmode = "pam"\nallowed_groups = ["{group}"]\nadmin_groups = ["{admins}"]\n'
        "lockout_failures = 2\nlockout_base_seconds = 300\n"))
    h.names = names
    h.start()
    return h


def login(hub: HubProcess, name: str, password: str) -> tuple[int, Browser]:
    b = Browser(hub.url)
    page = b.get("/hub/login")
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text).group(1)
    resp = b.http.post(b.base + "/hub/login", allow_redirects=False, timeout=60,
                       data={"username": name, "password": password, "_xsrf": xsrf})
    return resp.status_code, b


def test_member_logs_in_and_the_server_runs_as_their_own_account(hub: HubProcess) -> None:
    member = hub.names["member"]
    status, b = login(hub, member.upper(), PASSWORD)
    assert status == 302
    assert b.get("/hub/api/user").json()["name"] == member
    b.start_server(member)
    assert b.open_lab(member).status_code == 200
    kernel = b.new_kernel(member)
    b.wait_kernel(member, kernel)
    out = b.execute(member, kernel, "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)")
    assert out["stdout"].strip() == member
    # teamhub created no Linux account and used no prefix.
    registry = hub.paths.system_users
    assert not registry.exists() or member not in registry.read_text()
    assert subprocess.run(["id", hub.system_user(member)], capture_output=True).returncode != 0


def test_admin_groups_make_hub_admins(hub: HubProcess) -> None:
    status, b = login(hub, hub.names["admin"], PASSWORD)
    assert status == 302 and b.get("/hub/api/user").json()["admin"] is True
    status, b = login(hub, hub.names["member"], PASSWORD)
    assert status == 302 and b.get("/hub/api/user").json()["admin"] is False


@pytest.mark.parametrize("who", ["system", "outsider"])
def test_system_accounts_and_outsiders_are_refused_with_the_right_password(
        hub: HubProcess, who: str) -> None:
    status, b = login(hub, hub.names[who], PASSWORD)
    assert status == 403 and not b.logged_in()


def test_root_is_refused(hub: HubProcess) -> None:
    status, b = login(hub, "root", PASSWORD)
    assert status == 403 and not b.logged_in()


def test_lockout_applies_in_pam_mode(hub: HubProcess) -> None:
    member = hub.names["member"]
    for _ in range(2):
        assert login(hub, member, "wrong password!")[0] == 403
    assert login(hub, member, PASSWORD)[0] == 403  # locked: the right password is refused
    assert member in hub.teamhub("user", "locked", "--json").stdout
    assert f"unlocked {member}" in hub.teamhub("user", "unlock", member).stdout
    assert login(hub, member, PASSWORD)[0] == 302


@pytest.mark.parametrize("args", [("add", "x"), ("passwd", "x"), ("remove", "x", "--yes"),
                                  ("block", "x"), ("unblock", "x")])
def test_account_commands_say_what_to_do_instead(hub: HubProcess, args: tuple[str, ...]) -> None:
    proc = hub.teamhub("user", *args, check=False, input="a good long password\n")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "auth.mode is pam" in lines[0], proc.stderr
    assert "teamhub user" not in proc.stdout
