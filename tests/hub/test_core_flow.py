"""The core promise, end to end: log in through the form, get JupyterLab as your own
Linux account, run code in a kernel; servers survive a hub restart; users are isolated."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import time

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique

from teamhub.system.processes import processes_of

pytestmark = [pytest.mark.hub, pytest.mark.system]



@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory()
    h.alice, h.bob = unique("alice"), unique("bob")
    h.add_user(h.alice, PASSWORD)
    h.add_user(h.bob, PASSWORD)
    h.start()
    return h


@pytest.fixture(scope="module")
def alice(hub: HubProcess) -> Browser:
    b = Browser(hub.url)
    resp = b.login(hub.alice, PASSWORD)
    assert resp.status_code == 302, resp.text[:500]
    b.start_server(hub.alice)
    return b


@pytest.fixture(scope="module")
def alice_kernel(hub: HubProcess, alice: Browser) -> str:
    assert alice.open_lab(hub.alice).status_code == 200
    return alice.new_kernel(hub.alice)


def test_wrong_password_gets_no_session(hub: HubProcess) -> None:
    b = Browser(hub.url)
    resp = b.login(hub.alice, PASSWORD + "x")
    assert resp.status_code == 403
    assert not b.logged_in()


def test_lab_is_served_after_form_login(hub: HubProcess, alice: Browser) -> None:
    resp = alice.open_lab(hub.alice)
    assert resp.status_code == 200
    assert resp.url.endswith(f"/user/{hub.alice}/lab")
    assert "JupyterLab" in resp.text


def test_kernel_runs_code_as_the_users_linux_account(hub: HubProcess, alice: Browser,
                                                      alice_kernel: str) -> None:
    assert alice.execute(hub.alice, alice_kernel, "5 * 4")["result"] == "20"
    account = pwd.getpwnam(hub.system_user(hub.alice))
    assert account.pw_uid >= 1000
    out = alice.execute(hub.alice, alice_kernel,
                        "import os; m = os.umask(0); os.umask(m); "
                        "print(os.getuid(), os.getgid(), oct(m), os.getcwd(), os.environ['HOME'])")
    uid, gid, umask, cwd, home = out["stdout"].split()
    assert (int(uid), int(gid)) == (account.pw_uid, account.pw_gid)
    assert umask == "0o77"
    assert cwd == home == account.pw_dir
    assert stat.S_IMODE(os.stat(account.pw_dir).st_mode) == 0o700


def test_kernel_environment_carries_nothing_of_the_hub(hub: HubProcess, alice: Browser,
                                                       alice_kernel: str) -> None:
    out = alice.execute(hub.alice, alice_kernel,
                        "import os; print(sorted(k for k in os.environ if 'CONFIGPROXY' in k "
                        "or k.startswith('TEAMHUB') or 'PYENV' in k)); print(os.environ['PATH'])")
    leaked, path = out["stdout"].splitlines()
    assert leaked == "[]"
    assert "/root" not in path


def test_kernel_sockets_are_private_to_the_user(hub: HubProcess, alice: Browser,
                                                alice_kernel: str) -> None:
    out = alice.execute(hub.alice, alice_kernel,
                        "import json, os; from ipykernel.connect import get_connection_info; "
                        "info = json.loads(get_connection_info()); "
                        "print(info['transport'], info['ip'])")
    transport, where = out["stdout"].split()
    account = pwd.getpwnam(hub.system_user(hub.alice))
    assert transport == "ipc"
    folder = os.path.dirname(where)
    assert folder == f"/run/teamhub/{account.pw_uid}"
    info = os.stat(folder)
    assert (info.st_uid, info.st_mode & 0o777) == (account.pw_uid, 0o700)
    # The five channels are unix sockets there, not TCP ports. (ipykernel still binds
    # one loopback pipe for forked subprocesses' output; it drops messages lacking a
    # random per-kernel token.)
    sockets = [e for e in os.scandir(folder) if stat.S_ISSOCK(e.stat().st_mode)]
    assert len(sockets) >= 5


def test_user_added_while_hub_runs_can_log_in(hub: HubProcess) -> None:
    carol = unique("carol")
    hub.add_user(carol, PASSWORD)
    b = Browser(hub.url)
    assert b.login(carol, PASSWORD).status_code == 302
    assert b.logged_in()


def test_other_user_cannot_reach_or_read_alice(hub: HubProcess, alice: Browser,
                                               alice_kernel: str) -> None:
    bob = Browser(hub.url)
    assert bob.login(hub.bob, PASSWORD).status_code == 302
    bob.start_server(hub.bob)
    # Bob's browser on Alice's server URL: refused, not served.
    resp = bob.get(f"/user/{hub.alice}/lab")
    assert resp.status_code == 403 or f"/user/{hub.alice}/lab" not in resp.url
    assert bob.get(f"/user/{hub.alice}/api/kernels").status_code in (403, 404)
    # Bob's own kernel, as his Linux account, cannot look into Alice's home.
    assert bob.open_lab(hub.bob).status_code == 200
    kernel = bob.new_kernel(hub.bob)
    alice_home = pwd.getpwnam(hub.system_user(hub.alice)).pw_dir
    out = bob.execute(hub.bob, kernel, f"import os; os.listdir({alice_home!r})")
    assert out["error"].startswith("PermissionError")


def test_servers_and_kernels_survive_hub_restart(hub: HubProcess, alice: Browser,
                                                 alice_kernel: str) -> None:
    alice.execute(hub.alice, alice_kernel, "x = 41")
    account = pwd.getpwnam(hub.system_user(hub.alice))
    pids_before = processes_of(account.pw_uid)
    assert pids_before
    hub.stop()
    time.sleep(1)
    for p in pids_before:
        os.kill(p, 0)  # still alive while the hub is down
    hub.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if alice.get(f"/user/{hub.alice}/api/kernels").status_code == 200:
            break
        time.sleep(0.3)
    kernels = alice.get(f"/user/{hub.alice}/api/kernels").json()
    assert alice_kernel in [k["id"] for k in kernels]
    assert alice.execute(hub.alice, alice_kernel, "x + 1")["result"] == "42"


def test_killed_server_is_noticed_and_can_start_again(hub: HubProcess) -> None:
    dave = unique("dave")
    hub.add_user(dave, PASSWORD)
    b = Browser(hub.url)
    assert b.login(dave, PASSWORD).status_code == 302
    b.start_server(dave)
    uid = pwd.getpwnam(hub.system_user(dave)).pw_uid
    for p in processes_of(uid):
        os.kill(p, signal.SIGKILL)
    # A request for the dead server sends the browser to the hub, which checks the server.
    b.get(f"/user/{dave}/lab")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        model = b.get(f"/hub/api/users/{dave}").json()
        if "" not in model.get("servers", {}):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("hub did not notice the killed server")
    b.start_server(dave)
    assert b.open_lab(dave).status_code == 200
