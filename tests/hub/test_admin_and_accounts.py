"""First start with --admin, root-only state, the config.d escape hatch, binding all
addresses, account changes from the CLI reaching a running hub, one list of users
(CLI, hub API, the console's Users page, doctor) and `teamhub restart`."""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
import time

import pytest
import requests
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, runtime_dir, unique

from teamhub.accounts.store import AccountStore
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
    # Root's alone even though the hub runs unprivileged and owns the rest of the folder;
    # doctor expects it so.
    assert mode(secret) == 0o600 and os.stat(secret).st_uid == 0
    assert hub.state.stat().st_uid != 0
    assert hub.teamhub("doctor", "--check", "secrets and state permissions",
                       check=False).returncode == 0
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


# ---- one list of users (issue 19, item 7), and `teamhub restart` (item 6) ----

@pytest.fixture(scope="module")
def boss(hub: HubProcess) -> Browser:
    name, password = (hub.state / "initial-admin-password").read_text().split()
    b = Browser(hub.url)
    assert b.login(name, password).status_code == 302
    return b


def test_user_added_on_the_cli_is_a_hub_user_at_once(hub: HubProcess, boss: Browser) -> None:
    name = unique("lia")
    out = hub.teamhub("user", "add", name, "--admin", "--password-stdin", input=PASSWORD + "\n")
    assert f"the running hub lists {name} now" in out.stdout
    # What the admin page shows: its React app lists GET /hub/api/users.
    listed = {u["name"]: u for u in boss.get("/hub/api/users").json()}
    assert name in listed and listed[name]["admin"] is True


def test_the_hubs_add_users_api_makes_no_hub_only_user(hub: HubProcess, boss: Browser) -> None:
    stranger = unique("zed")
    # Exactly what the admin page's "Add Users" sends.
    resp = boss.http.post(f"{hub.url}/hub/api/users",
                          json={"usernames": [stranger], "admin": False},
                          headers={"X-XSRFToken": boss._xsrf("/hub/")}, timeout=60)
    assert resp.status_code == 400, resp.text
    assert f"`teamhub user add {stranger}`" in resp.json()["message"]
    assert boss.get(f"/hub/api/users/{stranger}").status_code == 404
    assert hub.api("POST", f"/users/{stranger}").status == 400
    assert hub.api("GET", f"/users/{stranger}").status == 404
    assert hub.teamhub("user", "show", stranger, check=False).returncode != 0
    page = boss.get("/hub/admin").text
    assert 'id="teamhub-add-users"' in page and "teamhub/console/users" in page
    # The admin page's "Edit User" could rename an account into a name teamhub does not know.
    member = unique("ren")
    hub.add_user(member, PASSWORD)
    resp = boss.http.patch(f"{hub.url}/hub/api/users/{member}", json={"name": member + "x"},
                           headers={"X-XSRFToken": boss._xsrf("/hub/")}, timeout=60)
    assert resp.status_code == 400 and "cannot be renamed" in resp.json()["message"]
    assert hub.api("GET", f"/users/{member}x").status == 404
    assert hub.api("PATCH", f"/users/{member}", {"admin": False}).status == 200


def test_users_page_adds_an_account_with_a_one_time_link(hub: HubProcess,
                                                         boss: Browser) -> None:
    name = unique("kim")
    form = boss.get("/hub/teamhub/console/users")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text).group(1)
    resp = boss.http.post(f"{hub.url}/hub/teamhub/console/users",
                          data={"_xsrf": xsrf, "action": "add", "name": name}, timeout=60)
    assert resp.status_code == 200, resp.text[-500:]
    link = re.search(r'id="users-reset-link"[^>]*>([^<]+)<', resp.text).group(1)
    assert "no-store" in resp.headers["Cache-Control"]
    assert boss.get(f"/hub/api/users/{name}").json()["admin"] is False
    assert '"pending": false' in hub.teamhub("user", "show", name, "--json").stdout
    user = Browser(hub.url)
    path = "/hub/reset/" + link.rsplit("/", 1)[1]
    page = user.get(path)
    done = user.http.post(hub.url + path, timeout=60, data={
        "_xsrf": re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1),
        "password": "a fresh passphrase of mine", "password2": "a fresh passphrase of mine"})
    assert 'id="reset-done"' in done.text
    assert Browser(hub.url).login(name, "a fresh passphrase of mine").status_code == 302


def test_doctor_reports_and_repairs_a_hub_only_user(hub: HubProcess) -> None:
    name = unique("ghost")
    hub.add_user(name, PASSWORD)
    # The store forgets the account behind the hub's back (say, an older backup restored).
    AccountStore(hub.paths.accounts_db).remove(name)
    found = hub.teamhub("doctor", "--check", "hub users", check=False)
    assert found.returncode == 1, found.stdout
    assert "FAIL hub users: hub users that are no teamhub account" in found.stdout
    assert name in found.stdout and "teamhub doctor --fix" in found.stdout
    fixed = hub.teamhub("doctor", "--check", "hub users", "--fix", check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"fix  hub users: removed 1 hub-only user(s) from the hub ({name})" in fixed.stdout
    assert "ok   hub users" in fixed.stdout
    assert hub.api("GET", f"/users/{name}").status == 404


def test_restart_reads_config_again_and_keeps_servers_and_kernels(hub: HubProcess) -> None:
    name = unique("ray")
    hub.add_user(name, PASSWORD)
    b = Browser(hub.url)
    assert b.login(name, PASSWORD).status_code == 302
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    kernel = b.new_kernel(name)
    b.wait_kernel(name, kernel)
    kernel_pid = b.execute(name, kernel, "import os; os.getpid()")["result"]
    # Made behind the running hub's back: the restarted hub lists it at start.
    late = unique("late")
    AccountStore(hub.paths.accounts_db).add(late, PASSWORD)
    (hub.config.parent / "jupyterhub_config.d" / "70-restart.py").write_text(
        f"c.JupyterHub.template_vars = {{'announcement_login': '{ANNOUNCEMENT} again'}}\n")
    hub_pid = hub.proc.pid
    # Not hub.teamhub(): its 120 s limit is below restart's own wait for a slow start.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
    out = subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "--config", str(hub.config),
                          "restart"], capture_output=True, text=True, env=env, timeout=400)
    assert f"restarted the hub (pid {hub_pid}" in out.stdout, out.stdout + out.stderr
    assert hub.proc.poll() is None  # the same `teamhub up`, started again in place
    assert hub.api("GET", f"/users/{late}").status == 200
    deadline = time.monotonic() + 60
    while b.get(f"/user/{name}/api/kernels").status_code != 200:
        assert time.monotonic() < deadline, "the server is not reachable after the restart"
        time.sleep(0.3)
    login_page = requests.get(hub.url + "/hub/login", timeout=30)
    assert login_page.status_code == 200 and f"{ANNOUNCEMENT} again" in login_page.text
    assert b.execute(name, kernel, "import os; os.getpid()")["result"] == kernel_pid
