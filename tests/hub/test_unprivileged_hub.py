"""hub.unprivileged: root `teamhub up` hands the state folder to the hub's own account,
starts the root helper and drops root; the hub, proxy and culler then run as that account
with no capabilities, and everything that needs root goes through the helper.

One hub for the module, first run as root (an install of the previous version: root-owned
state, an account, a running server), then switched to hub.unprivileged: the upgrade.
The hub's account gets a random name (another test's hub may run at the same time).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.client import Browser
from support.hub import PASSWORD, HubProcess, free_port, runtime_dir, unique, world_dir
from support.unprivileged import as_hub_account, remove_account
from test_forkserver import fd_targets

from teamhub.spawners import forkserver
from teamhub.system import users
from teamhub.system.processes import process_uids, processes_of

pytestmark = [pytest.mark.hub, pytest.mark.system]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _pid(path: Path) -> int:
    return int(path.read_text().strip())


def _server_pid(hub: HubProcess, name: str) -> int:
    """The user's server: the oldest process of its account."""
    uid = pwd.getpwnam(hub.system_user(name)).pw_uid
    pids = processes_of(uid)
    assert pids, f"no process of {name}"
    return min(pids, key=lambda p: int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1]
                                       .split()[19]))


def _wait(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s")


def _login(hub: HubProcess, name: str) -> Browser:
    b = Browser(hub.url)
    resp = b.login(name, PASSWORD)
    assert resp.status_code == 302, resp.text[:500]
    return b


def _stop_server(hub: HubProcess, b: Browser, name: str) -> None:
    resp = b.http.delete(f"{hub.url}/hub/api/users/{name}/server",
                         headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    assert resp.status_code in (202, 204), resp.text
    _wait(lambda: "" not in b.get(f"/hub/api/users/{name}").json().get("servers", {}),
          f"{name}'s server did not stop")


@pytest.fixture(scope="module")
def hub() -> Iterator[HubProcess]:
    # Not pytest's tmp_path: the hub's account must reach its state folder (root-only 0700).
    root = world_dir("teamhub-unpriv-")
    projects, envs = world_dir("teamhub-unpriv-projects-"), world_dir("teamhub-unpriv-envs-")
    # A root hub first (the previous version), then switched: unprivileged set explicitly.
    h = HubProcess(root, unprivileged=False,
                   extra_toml=f'[projects]\nroot = "{projects}"\n\n'
                              f'[envs]\nroot = "{envs}"\n')
    h.scratch += [projects, envs]
    h.projects_root, h.envs_root = projects, envs
    h.account = unique("thub")
    text = h.config.read_text()
    h.config.write_text(text.replace("[hub]\n", f'[hub]\naccount = "{h.account}"\n', 1))
    h.old, h.alice = unique("old"), unique("alice")
    try:
        # The previous version: the hub runs as root and leaves root-owned state behind.
        h.add_user(h.old, PASSWORD)
        h.start()
        h.old_browser = _login(h, h.old)
        h.old_browser.start_server(h.old)
        h.old_pid = _server_pid(h, h.old)
        h.stop()
        assert h.state.stat().st_uid == 0
        # The previous version kept root's own files in the state folder: put them there,
        # as its install would have them (the next root start moves them out again).
        h.old_registry = json.loads(h.paths.system_users.read_text())
        assert h.system_user(h.old) in h.old_registry
        os.replace(h.paths.system_users, h.state / "system_users.json")
        (h.state / "logs").mkdir(mode=0o700, exist_ok=True)
        h.old_log = h.paths.fork_server_log.read_bytes()
        os.replace(h.paths.fork_server_log, h.state / "logs" / "forkserver.log")
        shutil.rmtree(h.paths.root_dir)
        h.teamhub("config", "set", "hub.unprivileged", "true")
        h.start()
        h.add_user(h.alice, PASSWORD)
        h.admin = unique("adm")
        h.add_user(h.admin, PASSWORD, "--admin")
        yield h
    finally:
        try:
            h.cleanup()
        finally:
            remove_account(h, h.account, "userdel")
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def alice(hub: HubProcess) -> Browser:
    b = _login(hub, hub.alice)
    b.start_server(hub.alice)
    return b


def test_the_hub_account_is_a_system_account_homed_in_the_state_folder(hub: HubProcess) -> None:
    pw = pwd.getpwnam(hub.account)
    assert 0 < pw.pw_uid < 1000
    assert pw.pw_dir == str(hub.state)
    assert pw.pw_shell.endswith("nologin")
    assert not Path("/home", hub.account).exists()
    assert os.getgrouplist(hub.account, pw.pw_gid) == [pw.pw_gid]


def test_state_folder_moved_to_the_hub_account(hub: HubProcess) -> None:
    uid = pwd.getpwnam(hub.account).pw_uid
    for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "accounts.sqlite",
                 "proxy_auth_token", "cli_api_token"):
        info = (hub.state / name).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, 0o600), name
    info = hub.state.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, 0o700)
    assert hub.paths.socket_dir.stat().st_uid == uid


def test_roots_files_moved_out_of_the_state_folder(hub: HubProcess) -> None:
    """What the helper trusts (the account registry) and its log were in the state folder
    (the previous version's layout): the root start moved them into root's folder beside it,
    nothing lost, shared with the hub's account's group for reading only."""
    account = pwd.getpwnam(hub.account)
    assert not (hub.state / "system_users.json").exists()
    assert not (hub.state / "logs" / "forkserver.log").exists()
    folder = hub.paths.root_dir.stat()
    assert (folder.st_uid, folder.st_gid, stat.S_IMODE(folder.st_mode)) == \
        (0, account.pw_gid, 0o710)
    registry = hub.paths.system_users
    info = registry.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, account.pw_gid, 0o640)
    entries = json.loads(registry.read_text())
    assert {k: entries[k] for k in hub.old_registry} == hub.old_registry
    assert hub.paths.fork_server_log.read_bytes().startswith(hub.old_log)
    # The accounts are still known to the helper: the next tests log the old account in
    # (its server survived) and start new servers through it.


def test_compromised_hub_cannot_rename_or_replace_roots_files(hub: HubProcess) -> None:
    """The hub's account reads the registry (its pages ask whether teamhub made an account)
    but can neither rename, replace, remove nor link it, its lock or the helper's log, nor
    list or move their folder."""
    registry, log, folder = (hub.paths.system_users, hub.paths.fork_server_log,
                             hub.paths.root_dir)
    before = registry.read_bytes()
    assert as_hub_account(hub.account, "cat", str(registry)).stdout.encode() == before
    lock = registry.with_name(registry.name + ".lock")
    for cmd in (["mv", str(registry), f"{registry}.x"],
                ["ln", "-sfn", "/etc/shadow", str(registry)],
                ["cp", "/dev/null", str(registry)],
                ["rm", "-f", str(registry)],
                ["rm", "-f", str(lock)],
                ["ln", "-s", "/etc/shadow", str(folder / "new")],
                ["sh", "-c", f"echo x >> {log}"],
                ["ls", str(folder)],
                ["mv", str(folder), f"{folder}.x"]):
        proc = as_hub_account(hub.account, *cmd)
        assert proc.returncode != 0, (cmd, proc.stdout, proc.stderr)
    assert registry.read_bytes() == before and not registry.is_symlink()
    assert folder.is_dir() and not folder.is_symlink() and not (folder / "new").exists()


def test_old_account_logs_in_and_its_server_survived(hub: HubProcess) -> None:
    assert process_uids(hub.old_pid), "the server started by the root hub is gone"
    b = _login(hub, hub.old)
    assert b.open_lab(hub.old).status_code == 200
    kernel = b.new_kernel(hub.old)
    assert b.execute(hub.old, kernel, "5 * 4")["result"] == "20"


@pytest.mark.parametrize("what", ["hub", "proxy"])
def test_runs_as_the_hub_account_without_capabilities(hub: HubProcess, what: str) -> None:
    pid = _pid(hub.state / ("jupyterhub.pid" if what == "hub" else "proxy.pid"))
    status = _status(pid)
    uid = pwd.getpwnam(hub.account).pw_uid
    assert {int(x) for x in status["Uid"].split()} == {uid}
    assert status["Groups"].split() == [str(pwd.getpwnam(hub.account).pw_gid)]
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(status[caps], 16) == 0, (caps, status[caps])
    assert status["NoNewPrivs"] == "1"
    if what == "proxy":
        # Started by the root helper (no port below 1024: no capability at all).
        assert f"started the proxy (pid {pid}, no capability)" in (
            hub.paths.fork_server_log).read_text()


def test_spawn_kernel_and_stop_through_the_helper(hub: HubProcess, alice: Browser) -> None:
    assert alice.open_lab(hub.alice).status_code == 200
    kernel = alice.new_kernel(hub.alice)
    assert alice.execute(hub.alice, kernel, "import os; os.getuid()")["result"] == str(
        pwd.getpwnam(hub.system_user(hub.alice)).pw_uid)
    pid = _server_pid(hub, hub.alice)
    # The helper opened the server's log for the hub's account to read.
    log = hub.state / "logs" / f"{hub.alice}.log"
    assert log.stat().st_uid == pwd.getpwnam(hub.account).pw_uid
    runtime = hub.paths.private_runtime / str(pwd.getpwnam(hub.system_user(hub.alice)).pw_uid)
    assert runtime.is_dir()
    _stop_server(hub, alice, hub.alice)
    _wait(lambda: not process_uids(pid), "the stopped server's process did not end")
    # Its kernels' sockets and keys go with it, as when a root hub stops a server.
    _wait(lambda: not runtime.exists(), f"{runtime} was left after the stop")
    alice.start_server(hub.alice)


def test_only_the_helper_runs_as_root(hub: HubProcess, alice: Browser) -> None:
    """`ps -o user,comm`: of the hub's processes and the users' servers, only the helper
    (the fork server) is root."""
    hub_pid = _pid(hub.state / "jupyterhub.pid")
    tree, parents = {hub_pid, _pid(hub.state / "proxy.pid")}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_status(int(entry))["PPid"])
            except (OSError, KeyError):
                pass
    grew = True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        grew, tree = bool(more), tree | more
    ps = subprocess.run(["ps", "-ww", "-o", "pid=,user:32=,args=", "-p", ",".join(map(str, tree))],
                        capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in ps.splitlines() if line.strip()]
    root = [r for r in rows if r[1] == "root"]
    assert len(root) == 1 and "teamhub.spawners.forkserver" in root[0][2], ps
    owners = {r[1] for r in rows}
    assert owners <= {"root", hub.account, hub.system_user(hub.alice),
                      hub.system_user(hub.old)}, ps
    assert hub.system_user(hub.alice) in owners, ps


@pytest.mark.parametrize("attempt", ["read shadow", "write runtime", "read a home",
                                     "signal a server"])
def test_compromised_hub_cannot(hub: HubProcess, alice: Browser, attempt: str) -> None:
    home = pwd.getpwnam(hub.system_user(hub.alice)).pw_dir
    cmd = {
        "read shadow": ["cat", "/etc/shadow"],
        "write runtime": ["touch", str(runtime_dir() / "bin" / "planted")],
        "read a home": ["ls", home],
        "signal a server": ["kill", "-0", str(_server_pid(hub, hub.alice))],
    }[attempt]
    proc = as_hub_account(hub.account, *cmd)
    assert proc.returncode != 0, proc.stdout
    assert "denied" in proc.stderr.lower() or "not permitted" in proc.stderr.lower(), proc.stderr


def test_doctor_says_the_hub_runs_unprivileged(hub: HubProcess) -> None:
    import json

    proc = hub.teamhub("doctor", "--json", check=False)
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["unprivileged hub"]["ok"], checks["unprivileged hub"]
    assert f"runs as {hub.account}" in checks["unprivileged hub"]["detail"]
    assert checks["root helper"]["ok"], checks["root helper"]
    secrets = checks["secrets and state permissions"]
    assert secrets["ok"] and f"0600 {hub.account}" in secrets["detail"], secrets
    assert checks["root's files"]["ok"], checks["root's files"]
    # A registry back at the old place (in the account's folder) is reported.
    old = hub.state / "system_users.json"
    old.write_text("{}\n")
    try:
        proc = hub.teamhub("doctor", "--json", check=False)
        found = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}["root's files"]
        assert not found["ok"] and str(old) in found["detail"], found
    finally:
        old.unlink()


def _console(hub: HubProcess, b: Browser, page: str, **data: str) -> requests.Response:
    """POST a console form of PAGE (users, projects, envs) as browser B."""
    path = f"/hub/teamhub/console/{page}"
    form = b.get(path)
    assert form.status_code == 200, form.text[-2000:]
    found = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
    fields = {**data, "_xsrf": found.group(1) if found else b._xsrf("/hub/")}
    return b.http.post(b.base + path, data=fields, allow_redirects=False, timeout=120)


def test_console_env_build_with_an_unknown_group_changes_nothing(hub: HubProcess) -> None:
    """Builds go through the helper (env_build; the builds themselves:
    tests/hub/test_console_projenvs.py); an unknown group is refused before anything."""
    admin = _login(hub, hub.admin)
    admin.get("/hub/teamhub/console/envs")
    resp = admin.http.post(f"{hub.url}/hub/teamhub/console/envs/build", timeout=60,
                           headers={"X-XSRFToken": admin._xsrf("/hub/")},
                           json={"action": "create", "name": "e1", "packages": "six",
                                 "groups": "nosuchgroupx"})
    assert resp.status_code == 200, resp.text[-2000:]
    assert "unknown group(s): nosuchgroupx" in resp.text, resp.text[-2000:]
    assert not (hub.envs_root / "e1").exists()


def test_console_env_access_rollback_delete_through_the_helper(hub: HubProcess) -> None:
    import json

    env, group = unique("env"), unique("g")
    hub.teamhub("env", "create", env, "six")
    hub.teamhub("env", "install", env, "idna")
    hub.teamhub("group", "create", group)
    folder = hub.envs_root / env
    assert os.readlink(folder / "current") == "revs/2"
    admin = _login(hub, hub.admin)
    resp = _console(hub, admin, "envs", action="access", name=env, groups=group)
    assert f"environment {env}: visible to {group}" in resp.text, resp.text[-2000:]
    assert json.loads((folder / "teamhub-env.json").read_text())["groups"] == [group]
    assert env in (hub.envs_root / "visibility.json").read_text()
    resp = _console(hub, admin, "envs", action="access", name=env, groups="nosuchgroupx")
    assert resp.status_code == 400 and "unknown group" in resp.text
    resp = _console(hub, admin, "envs", action="rollback", name=env, rev="1")
    assert f"environment {env}: revision 1 is now current" in resp.text, resp.text[-2000:]
    assert os.readlink(folder / "current") == "revs/1"
    assert (folder / "current").stat().st_uid == 0  # still root's tree
    resp = _console(hub, admin, "envs", action="delete", name=env)
    assert f"deleted environment {env}" in resp.text, resp.text[-2000:]
    assert not folder.exists()
    assert env not in (hub.envs_root / "visibility.json").read_text()
    hub.teamhub("group", "delete", group)


def _acl(folder: Path) -> str:
    return subprocess.run(["getfacl", "-cp", str(folder)], capture_output=True, text=True,
                          check=True).stdout


def _link(hub: HubProcess, name: str, project: str) -> Path:
    return Path(pwd.getpwnam(hub.system_user(name)).pw_dir, "projects", project)


@pytest.fixture(scope="module")
def bob(hub: HubProcess) -> Browser:
    """A user with a running server (so a Linux account), for the console's actions."""
    hub.bob = unique("bob")
    hub.add_user(hub.bob, PASSWORD)
    b = _login(hub, hub.bob)
    b.start_server(hub.bob)
    return b


def test_console_projects_through_the_helper(hub: HubProcess, alice: Browser,
                                             bob: Browser) -> None:
    admin = _login(hub, hub.admin)
    hub.project = name = unique("proj")
    folder = hub.projects_root / name
    resp = _console(hub, admin, "projects", action="create", name=name, writers=hub.bob,
                    readers="", description="")
    assert resp.status_code == 200 and f"created project {name}" in resp.text, resp.text[-2000:]
    assert f"user:{hub.system_user(hub.bob)}:rwx" in _acl(folder)
    assert os.readlink(_link(hub, hub.bob, name)) == str(folder)
    resp = _console(hub, admin, "projects", action="grant", name=name, who=hub.alice,
                    access="read")
    assert f"granted read on {name} to {hub.alice}" in resp.text, resp.text[-2000:]
    assert f"user:{hub.system_user(hub.alice)}:r-x" in _acl(folder)
    assert os.readlink(_link(hub, hub.alice, name)) == str(folder)
    resp = _console(hub, admin, "projects", action="revoke", name=name, who=hub.alice)
    assert f"revoked {hub.alice} on {name}" in resp.text, resp.text[-2000:]
    assert hub.system_user(hub.alice) not in _acl(folder)
    assert not os.path.lexists(_link(hub, hub.alice, name))
    # Not empty: refused, as by the CLI, and nothing is deleted.
    (folder / "kept.txt").write_text("x")
    resp = _console(hub, admin, "projects", action="delete", name=name)
    assert resp.status_code == 400 and "is not empty" in resp.text, resp.text[-2000:]
    assert (folder / "kept.txt").exists()
    assert name in hub.teamhub("project", "list").stdout


def test_console_block_unblock_remove_through_the_helper(hub: HubProcess, bob: Browser) -> None:
    admin = _login(hub, hub.admin)
    sysname = hub.system_user(hub.bob)
    folder = hub.projects_root / hub.project
    server = _server_pid(hub, hub.bob)
    resp = _console(hub, admin, "users", action="block", name=hub.bob)
    assert resp.status_code == 200, resp.text[-2000:]
    assert f"blocked user {hub.bob}" in resp.text and f"of Linux account {sysname}" in resp.text
    assert f"removed access to projects: {hub.project}" in resp.text
    _wait(lambda: not processes_of(pwd.getpwnam(sysname).pw_uid),
          "the blocked user's processes did not end")
    assert not process_uids(server)
    assert sysname not in _acl(folder)
    assert not os.path.lexists(_link(hub, hub.bob, hub.project))
    assert Browser(hub.url).login(hub.bob, PASSWORD).status_code != 302

    resp = _console(hub, admin, "users", action="unblock", name=hub.bob)
    assert f"unblocked user {hub.bob}" in resp.text, resp.text[-2000:]
    assert f"project access: {hub.project} (write)" in resp.text
    assert f"user:{sysname}:rwx" in _acl(folder)
    assert os.readlink(_link(hub, hub.bob, hub.project)) == str(folder)
    _login(hub, hub.bob)

    uid = pwd.getpwnam(sysname).pw_uid
    resp = _console(hub, admin, "users", action="remove", name=hub.bob)
    assert f"removed user {hub.bob} and Linux account {sysname}" in resp.text, resp.text[-2000:]
    assert users.lookup(sysname) is None
    assert not (hub.paths.private_runtime / str(uid)).exists()
    assert sysname not in _acl(folder) and f"user:{uid}:" not in _acl(folder)
    assert hub.bob not in hub.teamhub("user", "list").stdout

    resp = _console(hub, admin, "projects", action="delete", name=hub.project, force="yes")
    assert f"deleted project {hub.project}; its files are in" in resp.text, resp.text[-2000:]
    assert not folder.exists()


# Requests to the helper as a compromised hub would send them: one connection each; prints
# {"pid", "answers"} (this process's pid, as the helper logs it), or {"pid", "connect":
# errno} when it cannot connect at all.
_ASK = r"""
import json, os, socket, sys
out = []
for request in json.loads(sys.argv[2]):
    conn = socket.socket(socket.AF_UNIX)
    try:
        conn.connect(sys.argv[1])
    except OSError as exc:
        print(json.dumps({"pid": os.getpid(), "connect": exc.errno}))
        raise SystemExit(0)
    conn.sendall(json.dumps(request).encode() + b"\n")
    out.append(json.loads(conn.makefile("rb").readline() or b"{}"))
print(json.dumps({"pid": os.getpid(), "answers": out}))
"""


@pytest.fixture(scope="module")
def strangers(hub: HubProcess) -> Iterator[dict[str, str]]:
    """Hub user names whose Linux accounts teamhub did not make: a system account, a
    person's account (each named as the hub user's would be)."""
    found = {"system": unique("sys"), "foreign": unique("forn")}
    try:
        subprocess.run(["useradd", "-r", hub.system_user(found["system"])], check=True,
                       capture_output=True)
        subprocess.run(["useradd", "-m", hub.system_user(found["foreign"])], check=True,
                       capture_output=True)
        yield found
    finally:
        for name in found.values():
            remove_account(hub, hub.system_user(name), "userdel", "-r")


def test_compromised_hub_cannot_misuse_the_console_verbs(hub: HubProcess, alice: Browser,
                                                         strangers: dict[str, str]) -> None:
    import json

    server = _server_pid(hub, hub.alice)
    attempts = [
        ({"op": "remove_user", "user": "root"}, "not in the account store"),
        ({"op": "block_user", "user": "../root"}, "bad user name"),
        ({"op": "unblock_user", "user": strangers["system"]}, "root or a system account"),
        ({"op": "remove_user", "user": strangers["system"]}, "root or a system account"),
        ({"op": "unblock_user", "user": strangers["foreign"]}, "not created by teamhub"),
        ({"op": "remove_user", "user": strangers["foreign"]}, "not created by teamhub"),
        ({"op": "block_user", "user": hub.alice}, "is not blocked in the account store"),
        ({"op": "remove_user", "user": hub.alice, "keep_home": True}, "unexpected field"),
        ({"op": "apply_project", "project": str(hub.projects_root / "x"), "users": []},
         "bad project name"),
        ({"op": "delete_project", "project": "../../etc", "force": True}, "bad project name"),
        ({"op": "sync_links", "users": ["Alice"]}, "canonical"),
        ({"op": "env_delete", "env": "../envs"}, "bad environment name"),
        ({"op": "env_rollback", "env": "e1", "rev": 1, "path": "/"}, "unexpected field"),
        ({"op": "env_delete", "env": "nosuchenv"}, "does not exist"),
        ({"op": "env_build", "action": "create", "env": "e2", "packages": [],
          "groups": ["nosuchgroupx"]}, "unknown group(s): nosuchgroupx"),
        ({"op": "env_build", "action": "wipe", "env": "e2", "packages": []}, "unknown action"),
        ({"op": "env_build", "action": "create", "env": "e2", "packages": ["-rx"]},
         "not a package name"),
    ]
    proc = as_hub_account(hub.account, str(runtime_dir() / "bin" / "python"), "-c", _ASK,
                           str(hub.paths.fork_server_socket),
                           json.dumps([a for a, _ in attempts]))
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)["answers"]
    log = hub.paths.fork_server_log.read_text()
    for (request, reason), answer in zip(attempts, answers, strict=True):
        assert reason in answer.get("error", ""), (request, answer)
        assert re.search(rf"refused pid \d+ uid {pwd.getpwnam(hub.account).pw_uid}: .*"
                         f"{re.escape(reason)}", log), (reason, log[-3000:])
    for name in strangers.values():
        assert users.lookup(hub.system_user(name)) is not None  # nothing was removed
    # The helper goes on serving: alice's server runs, and a new start works.
    assert process_uids(server)
    assert alice.open_lab(hub.alice).status_code == 200


def _helpers_of(hub: HubProcess) -> list[int]:
    assert hub.proc is not None
    return [p for p in processes_of(0)
            if b"teamhub.spawners.forkserver" in Path(f"/proc/{p}/cmdline").read_bytes()
            and int(_status(p)["PPid"]) == hub.proc.pid]


def test_restart_adopts_the_helper_and_keeps_servers(hub: HubProcess, alice: Browser) -> None:
    pid = _server_pid(hub, hub.alice)
    helper = _helpers_of(hub)
    assert len(helper) == 1
    proxy = _pid(hub.state / "proxy.pid")
    hub.teamhub("restart")
    # The proxy the helper started is adopted as it runs.
    assert _pid(hub.state / "proxy.pid") == proxy and process_uids(proxy)
    assert f"Adopting the running proxy (pid {proxy})" in hub.log.read_text()
    assert _status(hub.proc.pid)["Uid"].split()[0] == str(pwd.getpwnam(hub.account).pw_uid)
    assert os.path.exists(f"/proc/{helper[0]}"), "the helper did not outlive the restart"
    assert process_uids(pid)
    assert alice.open_lab(hub.alice).status_code == 200
    kernel = alice.new_kernel(hub.alice)
    assert alice.execute(hub.alice, kernel, "5 * 4")["result"] == "20"
    # A spawn after the restart goes through the adopted helper.
    _stop_server(hub, alice, hub.alice)
    alice.start_server(hub.alice)
    assert alice.open_lab(hub.alice).status_code == 200


def test_a_restart_cannot_move_the_proxy(hub: HubProcess, alice: Browser) -> None:
    """The proxy's command line is root's (the helper's policy): a port changed since root
    started teamhub takes a root start; `teamhub restart` keeps the proxy where it was and
    the hub's log says so."""
    import requests

    other = free_port()
    hub.teamhub("config", "set", "hub.port", str(other))
    try:
        hub.teamhub("restart")
        assert requests.get(f"{hub.url}/hub/login", timeout=30).status_code == 200
        log = hub.log.read_text()
        assert "The proxy runs as root configured it" in log and f"'{other}'" in log
        proxy = _pid(hub.state / "proxy.pid")
        assert not int(_status(proxy)["CapEff"], 16)  # still no low port: no capability
    finally:
        hub.teamhub("config", "set", "hub.port", str(hub.port))
    hub.teamhub("restart")
    # Back to what the helper runs: adopted, no replacement.
    assert _pid(hub.state / "proxy.pid") == proxy
    assert alice.open_lab(hub.alice).status_code == 200


def test_turning_it_off_gives_the_state_back_to_root(hub: HubProcess, alice: Browser) -> None:
    [helper] = _helpers_of(hub)
    hub.stop()
    # The kernel sends no parent-death signal across the hub's change of uid: the helper
    # must notice by itself that the hub is gone, and end.
    deadline = time.monotonic() + 30
    while process_uids(helper) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_uids(helper), f"root helper {helper} outlived its hub"
    # A registry the account planted at the old place is not believed by the root start
    # (set aside before the state folder is root's again, which would make it look root's).
    planted = hub.state / "system_users.json"
    assert as_hub_account(hub.account, "sh", "-c",
                          f"echo '{{\"root\": {{\"uid\": 0}}}}' > {planted}").returncode == 0
    hub.teamhub("config", "set", "hub.unprivileged", "false")
    hub.start()
    assert _status(hub.proc.pid)["Uid"].split()[0] == "0"
    assert not planted.exists() and planted.with_name(planted.name + ".untrusted").exists()
    assert "root" not in json.loads(hub.paths.system_users.read_text())
    folder = hub.paths.root_dir.stat()
    assert (folder.st_uid, folder.st_gid, stat.S_IMODE(folder.st_mode)) == (0, 0, 0o700)
    for path in (hub.state, hub.state / "jupyterhub.sqlite", hub.state / "accounts.sqlite"):
        assert path.stat().st_uid == 0, path
    assert hub.paths.socket_dir.stat().st_uid == 0
    b = _login(hub, hub.alice)
    assert b.open_lab(hub.alice).status_code == 200
    assert hub.teamhub("status").returncode == 0


# The docker backend and ports below 1024 are not refused any more:
# tests/hub/test_docker_backend.py runs its hub unprivileged, and so does the TLS hub below on
# low ports.
@pytest.mark.parametrize("setting,value", [("spawner.fork_server", "false")])
def test_up_refuses_what_the_helper_cannot_do_yet(tmp_path: Path, setting: str,
                                                  value: str) -> None:
    config = tmp_path / "teamhub.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    teamhub = [str(runtime_dir() / "bin" / "teamhub"), "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
    for args in (("hub.unprivileged", "true"), (setting, value)):
        subprocess.run([*teamhub, "config", "set", *args], check=True, env=env,
                       capture_output=True)
    proc = subprocess.run([*teamhub, "up", "--check"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0
    assert "hub.unprivileged" in proc.stderr and setting in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture(scope="module")
def pam_hub() -> Iterator[HubProcess]:
    """PAM mode, unprivileged from the first start: the helper checks passwords."""
    root = world_dir("teamhub-unpriv-pam-")
    group = unique("thg")
    h = HubProcess(root, extra_toml=f'[auth]\nmode = "pam"\nallowed_groups = ["{group}"]\n')
    h.account, h.person = unique("thub"), unique("pp")
    h.config.write_text(h.config.read_text().replace(
        "[hub]\n", f'[hub]\naccount = "{h.account}"\nunprivileged = true\n', 1))
    try:
        subprocess.run(["groupadd", group], check=True, capture_output=True)
        subprocess.run(["useradd", "-m", "-G", group, h.person], check=True, capture_output=True)
        subprocess.run(["chpasswd"], input=f"{h.person}:{PASSWORD}\n", text=True, check=True,
                       capture_output=True)
        h.start()
        yield h
    finally:
        try:
            h.cleanup()
        finally:
            for name in (h.person, h.account):
                remove_account(h, name, "userdel", "-r")
            subprocess.run(["groupdel", group], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)


def test_pam_login_through_the_helper(pam_hub: HubProcess) -> None:
    assert _status(_pid(pam_hub.state / "jupyterhub.pid"))["Uid"].split()[0] != "0"
    wrong = Browser(pam_hub.url)
    assert wrong.login(pam_hub.person, PASSWORD + "x").status_code == 403
    b = _login(pam_hub, pam_hub.person)
    b.start_server(pam_hub.person)
    kernel = (b.open_lab(pam_hub.person), b.new_kernel(pam_hub.person))[1]
    assert b.execute(pam_hub.person, kernel, "import os; os.getuid()")["result"] == str(
        pwd.getpwnam(pam_hub.person).pw_uid)
    _stop_server(pam_hub, b, pam_hub.person)


class _TlsHub(HubProcess):
    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


def _low_ports(count: int) -> list[int]:
    """COUNT ports below 1024 that nothing listens on now (from a random start: another
    test run may be scanning too)."""
    found: list[int] = []
    start = secrets.randbelow(400)
    for port in [*range(600 + start, 1000), *range(600, 600 + start)]:
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s.bind(("::", port))
        except OSError:
            continue
        found.append(port)
        if len(found) == count:
            return found
    raise AssertionError("no free port between 600 and 1000")


@pytest.fixture(scope="module")
def tls_hub() -> Iterator[HubProcess]:
    """TLS with the pair outside the state folder, root's only (as /etc/letsencrypt is), on
    ports below 1024 (public and HTTP redirect): the helper's proxy binds them."""
    root = world_dir("teamhub-unpriv-tls-")
    port, http_port = _low_ports(2)
    h = _TlsHub(root, extra_toml=f"\n[tls]\nhttp_port = {http_port}\n")
    h.http_port = http_port
    h.account = unique("thub")
    text = h.config.read_text().replace(f"\nport = {h.port}\n", f"\nport = {port}\n", 1)
    h.config.write_text(text.replace(
        "[hub]\n", f'[hub]\naccount = "{h.account}"\nunprivileged = true\n', 1))
    h.port = port
    h.pair = root / "admins-tls"
    try:
        h.teamhub("tls", "self-signed", "--hostname", "localhost", "--days", "30")
        h.pair.mkdir(mode=0o700)
        for name in ("cert", "key"):
            shutil.move(h.state / "tls" / f"{name}.pem", h.pair / f"{name}.pem")
            h.teamhub("config", "set", f"tls.{name}", str(h.pair / f"{name}.pem"))
        os.environ["REQUESTS_CA_BUNDLE"] = str(h.pair / "cert.pem")
        h.start()
        yield h
    finally:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
        try:
            h.cleanup()
        finally:
            subprocess.run(["userdel", h.account], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)


def test_tls_proxy_reads_a_copy_of_roots_key(tls_hub: HubProcess) -> None:
    import requests

    resp = requests.get(f"https://localhost:{tls_hub.port}/hub/login", timeout=30,
                        verify=str(tls_hub.pair / "cert.pem"))
    assert resp.status_code == 200
    uid = pwd.getpwnam(tls_hub.account).pw_uid
    assert _status(_pid(tls_hub.state / "proxy.pid"))["Uid"].split()[0] == str(uid)
    copy = (tls_hub.state / "tls" / "unprivileged-key.pem").stat()
    assert (copy.st_uid, stat.S_IMODE(copy.st_mode)) == (uid, 0o600)
    original = (tls_hub.pair / "key.pem").stat()
    assert original.st_uid == 0 and stat.S_IMODE(original.st_mode) == 0o600


def test_first_account_added_while_the_hub_runs(tls_hub: HubProcess) -> None:
    """A fresh unprivileged hub has no account store yet: root's CLI makes it, the hub's."""
    name = unique("first")
    tls_hub.add_user(name, PASSWORD)
    info = (tls_hub.state / "accounts.sqlite").stat()
    assert info.st_uid == pwd.getpwnam(tls_hub.account).pw_uid
    b = _login(tls_hub, name)
    b.start_server(name)
    registry = tls_hub.paths.system_users.stat()
    assert registry.st_uid == 0 and stat.S_IMODE(registry.st_mode) == 0o640
    assert registry.st_gid == pwd.getpwnam(tls_hub.account).pw_gid
    _stop_server(tls_hub, b, name)


NET_BIND_SERVICE = 1 << 10


def _proxy_is_low_port_capable(hub: HubProcess, pid: int) -> None:
    """PID (the proxy) runs as the hub's account with CAP_NET_BIND_SERVICE alone."""
    status = _status(pid)
    account = pwd.getpwnam(hub.account)
    assert {int(x) for x in status["Uid"].split()} == {account.pw_uid}
    assert {int(x) for x in status["Gid"].split()} == {account.pw_gid}
    assert status["Groups"].split() == [str(account.pw_gid)]
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(status[caps], 16) == NET_BIND_SERVICE, (caps, status[caps])
    assert status["NoNewPrivs"] == "1"


def test_low_ports_proxy_holds_net_bind_service_alone(tls_hub: HubProcess) -> None:
    assert tls_hub.port < 1024 and tls_hub.http_port < 1024
    proxy = _pid(tls_hub.state / "proxy.pid")
    _proxy_is_low_port_capable(tls_hub, proxy)
    hub = _status(_pid(tls_hub.state / "jupyterhub.pid"))
    assert hub["Uid"].split()[0] == str(pwd.getpwnam(tls_hub.account).pw_uid)
    for caps in ("CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(hub[caps], 16) == 0, (caps, hub[caps])
    assert f"started the proxy (pid {proxy}, CAP_NET_BIND_SERVICE)" in (
        tls_hub.paths.fork_server_log).read_text()
    # Its output goes to a log of the account's own, never to the helper's (root's) log.
    log = tls_hub.state / "logs" / "proxy.log"
    assert os.readlink(f"/proc/{proxy}/fd/1") == os.readlink(f"/proc/{proxy}/fd/2") == str(log)
    assert log.stat().st_uid == pwd.getpwnam(tls_hub.account).pw_uid
    assert not any("forkserver.log" in target for target in fd_targets(proxy))
    # The hub runs the proxy it would have started itself: no stale-settings warning.
    assert "The proxy runs as root configured it" not in tls_hub.log.read_text()


def test_login_through_the_form_on_a_low_port(tls_hub: HubProcess) -> None:
    import requests

    name = unique("low")
    tls_hub.add_user(name, PASSWORD)
    b = _login(tls_hub, name)
    assert b.logged_in()
    resp = requests.get(f"http://localhost:{tls_hub.http_port}/hub/login",
                        allow_redirects=False, timeout=30)
    assert resp.status_code == 301
    assert resp.headers["Location"].startswith(f"https://localhost:{tls_hub.port}/")


def test_a_proxy_that_dies_is_started_again_by_the_helper(tls_hub: HubProcess) -> None:
    import requests

    pid_file = tls_hub.state / "proxy.pid"
    old = _pid(pid_file)
    os.kill(old, signal.SIGKILL)

    def new_proxy() -> bool:
        try:  # the hub removes the file before it starts the new proxy
            return _pid(pid_file) != old
        except (OSError, ValueError):
            return False

    _wait(new_proxy, "no new proxy")

    def answers() -> bool:
        try:
            return requests.get(f"{tls_hub.url}/hub/login", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    _wait(answers, "the new proxy did not answer")
    _proxy_is_low_port_capable(tls_hub, _pid(tls_hub.state / "proxy.pid"))


def test_restart_keeps_the_low_port_proxy(tls_hub: HubProcess) -> None:
    """`teamhub restart` runs as the hub's account, which cannot bind the ports itself: it
    adopts the helper's proxy, capabilities and all."""
    proxy = _pid(tls_hub.state / "proxy.pid")
    tls_hub.teamhub("restart")
    assert _pid(tls_hub.state / "proxy.pid") == proxy
    _proxy_is_low_port_capable(tls_hub, proxy)
    assert _status(tls_hub.proc.pid)["CapEff"] == "0000000000000000"
    name = unique("rs")
    tls_hub.add_user(name, PASSWORD)
    assert _login(tls_hub, name).logged_in()


# A compromised hub: raw requests on the helper's socket, as the hub's account.
@pytest.mark.parametrize("request_,reason", [
    ({"op": "start_proxy", "token": "ab" * 32, "argv": ["/bin/sh", "-c", "id"]},
     "unexpected field(s) argv"),
    ({"op": "start_proxy", "token": "ab" * 32, "port": 22}, "unexpected field(s) port"),
    ({"op": "start_proxy", "token": "x; rm -rf /"}, "not one the hub makes"),
    ({"op": "start_proxy", "token": "ab" * 33}, "not one the hub makes"),
    ({"op": "start_proxy"}, "not one the hub makes"),
])
def test_compromised_hub_cannot_start_another_proxy(tls_hub: HubProcess, request_: dict,
                                                    reason: str) -> None:
    proxy = _pid(tls_hub.state / "proxy.pid")
    python = str(runtime_dir() / "bin" / "python")
    proc = as_hub_account(tls_hub.account, python, "-I", "-c", _ASK,
                           str(tls_hub.paths.fork_server_socket), json.dumps([request_]))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert reason in out["answers"][0]["error"], out
    log = tls_hub.paths.fork_server_log
    _wait(lambda: f"refused pid {out['pid']} uid {pwd.getpwnam(tls_hub.account).pw_uid}: "
          in log.read_text(), "the refusal was not logged")
    assert reason in [x for x in log.read_text().splitlines() if f"pid {out['pid']} " in x][-1]
    # Nobody else can even connect; the helper keeps serving; the proxy is the same one.
    nobody = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             python, "-I", "-c", _ASK, str(tls_hub.paths.fork_server_socket),
                             json.dumps([{"op": "start_proxy", "token": "ab" * 32}])],
                            capture_output=True, text=True, timeout=60)
    assert json.loads(nobody.stdout)["connect"] == 13, nobody.stdout + nobody.stderr
    forkserver.ping(tls_hub.paths.fork_server_socket)
    assert _pid(tls_hub.state / "proxy.pid") == proxy and process_uids(proxy)
