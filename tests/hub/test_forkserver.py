"""Servers forked from the fork server: indistinguishable from normally started ones,
carrying nothing of the fork server or of other users; survival (an unprivileged hub, the
default); fallback and the fork server's restart (a root hub: only root can start one)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique

from teamhub.system.processes import processes_of

pytestmark = [pytest.mark.hub, pytest.mark.system]

# Values a hub gives each start of a server anew (its token, its port).
PER_START = {"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_SERVICE_URL"}
STATUS_FIELDS = ("Umask", "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd",
                 "CapAmb", "NoNewPrivs", "Seccomp", "SigBlk", "SigIgn", "SigCgt")


def _make_hub(hub_factory: HubFactory, **kwargs: Any) -> HubProcess:
    h = hub_factory(**kwargs)
    h.users = [unique("fa"), unique("fb"), unique("fc")]
    # A server dying at start is made here by the user's own ~/.jupyter config, which
    # teamhub ignores by default (README "Browser isolation"): read it in this hub.
    confd = h.config.parent / "jupyterhub_config.d"
    confd.mkdir()
    (confd / "60-user-config.py").write_text("c.Spawner.disable_user_config = False\n")
    for name in h.users:
        h.add_user(name, PASSWORD)
    h.start()
    return h


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    """The default hub: unprivileged (hub.unprivileged), its servers forked by the root
    helper."""
    return _make_hub(hub_factory)


@pytest.fixture(scope="module")
def root_hub(hub, hub_factory: HubFactory) -> HubProcess:
    """A root hub (hub.unprivileged = false), for what only a root hub does: start a
    server the normal way when the fork server is gone (compared with a forked one here),
    and start a new fork server. An unprivileged hub cannot start the root helper again:
    its start fails with a message instead (tests/hub/test_unprivileged_hub.py)."""
    return _make_hub(hub_factory, unprivileged=False)


def fork_server_pid(hub: HubProcess, timeout: float = 30) -> int:
    """The pid of this hub's fork server once it listens."""
    sock = str(hub.state / "forkserver.sock").encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"teamhub.spawners.forkserver" in cmd and sock in cmd and _listening(hub):
                return int(entry)
        time.sleep(0.2)
    raise AssertionError(f"no fork server for {sock!r}:\n{hub.tail()}")


def _listening(hub: HubProcess) -> bool:
    return bool(_socket_inodes(str(hub.state / "forkserver.sock")))


def _socket_inodes(path: str) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] == path:
            inodes.add(parts[6])
    return inodes


def login(hub: HubProcess, name: str) -> Browser:
    b = Browser(hub.url)
    assert b.login(name, PASSWORD).status_code == 302
    return b


def server_pid(hub: HubProcess, name: str) -> int:
    uid = pwd.getpwnam(hub.system_user(name)).pw_uid
    for pid in processes_of(uid):
        if b"jupyterhub-singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError(f"no server process for {name}")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def stop_server(hub: HubProcess, b: Browser, name: str) -> None:
    resp = b.http.delete(f"{hub.url}/hub/api/users/{name}/server",
                         headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    assert resp.status_code in (202, 204), resp.text
    for _ in range(150):
        if "" not in b.get(f"/hub/api/users/{name}").json().get("servers", {}):
            return
        time.sleep(0.2)
    raise AssertionError(f"server of {name} did not stop")


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(e.decode().split("=", 1) for e in raw.split(b"\0") if e)


def fd_targets(pid: int) -> list[str]:
    """What PID's open descriptors point at; one closed between the listing and its
    readlink (a connection the process just ended: seen in CI) is not open any more."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        out.append(re.sub(r"\[\d+\]", "[N]", target))
    return sorted(out)


def snapshot(pid: int) -> dict[str, Any]:
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    env = environ(pid)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return {
        "status": {k: status[k].strip() for k in STATUS_FIELDS if k in status},
        "env_keys": sorted(env),
        "env": {k: v for k, v in env.items() if k not in PER_START},
        "limits": Path(f"/proc/{pid}/limits").read_text(),
        # Sockets and pipes: the kinds only (the hub may hold a keep-alive connection open).
        "files": [t for t in fd_targets(pid) if not t.startswith(("socket:", "pipe:"))],
        "cwd": os.readlink(f"/proc/{pid}/cwd"),
        "session_leader": (int(stat[2]), int(stat[3])) == (pid, pid),
        "cgroup": Path(f"/proc/{pid}/cgroup").read_text(),
        "proc_owner": os.stat(f"/proc/{pid}").st_uid,
        "program": cmdline[:2],
        "exe": os.readlink(f"/proc/{pid}/exe"),
    }


def readable_memory(pid: int) -> bytes:
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            special = line.rstrip().endswith(("[vvar]", "[vsyscall]", "[vvar_vclock]"))
            if "r" not in perms or special:
                continue
            start, end = (int(x, 16) for x in addr.split("-"))
            if end - start > 512 << 20:
                continue
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except OSError:
                continue
    return b"".join(chunks)


def lab_saves(hub: HubProcess, name: str) -> dict[str, Any]:
    """What a user's Lab writes into their home as they work: the layout (workspace) and a
    setting. Each answer, and where it landed."""
    b = login(hub, name)  # a fresh browser: no cookie of an earlier server of the user
    page = b.open_lab(name)
    assert page.status_code == 200
    base = f"{hub.url}/user/{name}"
    headers = {"X-XSRFToken": b._xsrf(f"/user/{name}/")}
    workspace = {"data": {"layout-restorer:data": {"main": {"dock": None}}},
                 "metadata": {"id": "default"}}
    saved_workspace = b.http.put(f"{base}/lab/api/workspaces/default", json=workspace,
                                 headers=headers, timeout=30)
    setting = {"raw": '{"theme": "JupyterLab Dark"}'}
    saved_setting = b.http.put(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:themes",
                               json=setting, headers=headers, timeout=30)
    home = Path(pwd.getpwnam(hub.system_user(name)).pw_dir)
    return {
        # A forked server's page comes from the template the fork server compiled.
        "lab_page": re.sub(r'"token": "\w*"', '"token": "…"', page.text),
        "answers": [saved_workspace.status_code, saved_setting.status_code],
        "errors": [r.text[:300] for r in (saved_workspace, saved_setting)
                   if r.status_code >= 400],
        "in_home": [(home / ".jupyter/lab/workspaces").is_dir(),
                    (home / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension"
                     / "themes.jupyterlab-settings").is_file()],
    }


@pytest.fixture(scope="module")
def compared(root_hub: HubProcess) -> dict[str, Any]:
    """One user's server started both ways: forked, then (fork server killed) normally."""
    hub = root_hub
    name = hub.users[0]
    b = login(hub, name)
    forker = fork_server_pid(hub)
    b.start_server(name)
    pid = server_pid(hub, name)
    assert parent_of(pid) == forker, "first start should have been forked"
    time.sleep(1)
    forked = snapshot(pid)
    forked_fds = fd_targets(pid)
    forked["saves"] = lab_saves(hub, name)
    stop_server(hub, b, name)
    # What the forked server saved must not make the normal one look right.
    shutil.rmtree(Path(pwd.getpwnam(hub.system_user(name)).pw_dir) / ".jupyter",
                  ignore_errors=True)

    os.kill(forker, signal.SIGKILL)
    b.start_server(name)  # falls back to a fresh interpreter, and restarts the fork server
    pid = server_pid(hub, name)
    assert parent_of(pid) != forker
    time.sleep(1)
    normal = snapshot(pid)
    normal["saves"] = lab_saves(hub, name)
    stop_server(hub, b, name)
    return {"forked": forked, "normal": normal, "forked_fds": forked_fds, "forker": forker}


@pytest.mark.parametrize("part", ["status", "env_keys", "env", "limits", "files", "cwd",
                                  "session_leader", "cgroup", "proc_owner", "program", "exe",
                                  "saves"])
def test_forked_server_is_indistinguishable(compared: dict[str, Any], part: str) -> None:
    assert compared["forked"][part] == compared["normal"][part]


def test_started_as_the_user_with_umask_077(root_hub: HubProcess,
                                            compared: dict[str, Any]) -> None:
    hub = root_hub
    account = pwd.getpwnam(hub.system_user(hub.users[0]))
    status = compared["forked"]["status"]
    assert status["Uid"].split() == [str(account.pw_uid)] * 4
    assert status["Gid"].split() == [str(account.pw_gid)] * 4
    assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
    assert status["Umask"] == "0077"
    assert compared["forked"]["cwd"] == account.pw_dir
    assert compared["forked"]["session_leader"]
    assert compared["forked"]["env"]["HOME"] == account.pw_dir


@pytest.mark.parametrize("how", ["forked", "normal"])
def test_lab_saves_layout_and_settings_in_the_home(compared: dict[str, Any], how: str) -> None:
    """Layouts and settings go to the user's home (not the fork server's `nobody`'s)."""
    saves = compared[how]["saves"]
    assert saves["answers"] == [204, 204], saves["errors"]
    assert saves["in_home"] == [True, True]


def test_fallback_was_logged(root_hub: HubProcess, compared: dict[str, Any]) -> None:
    assert "the normal way" in root_hub.log.read_text(errors="replace")


def test_the_fork_server_built_what_every_server_builds(root_hub: HubProcess,
                                                        compared: dict[str, Any]) -> None:
    """jupyter_server's event schemas and the Lab page's template (teamhub.spawners.
    event_schemas, page_templates); the forked server's page equals the normal one's
    (test_forked_server_is_indistinguishable[saves])."""
    found = re.search(r"preloaded \d+ modules, (\d+) event schemas and (\d+) page templates",
                      root_hub.paths.fork_server_log.read_text(errors="replace"))
    assert found, root_hub.paths.fork_server_log.read_text(errors="replace")[-3000:]
    assert int(found[1]) == 3 and int(found[2]) >= 1
    assert 'id="jupyter-config-data"' in compared["forked"]["saves"]["lab_page"]


def test_fork_server_restarted_and_forks_again(root_hub: HubProcess,
                                               compared: dict[str, Any]) -> None:
    hub = root_hub
    name = hub.users[1]
    forker = fork_server_pid(hub)
    assert forker != compared["forker"]
    b = login(hub, name)
    b.start_server(name)
    assert parent_of(server_pid(hub, name)) == forker
    assert b.open_lab(name).status_code == 200
    kernel = b.new_kernel(name)
    assert b.execute(name, kernel, "5 * 4")["result"] == "20"


def test_no_fork_server_descriptor_or_other_users_secret(hub: HubProcess) -> None:
    """A later child is a copy of the fork server: nothing of it, nor of the user before."""
    first, second = hub.users[1], hub.users[2]
    b1 = login(hub, first)
    b1.start_server(first)
    first_pid = server_pid(hub, first)
    first_token = environ(first_pid)["JUPYTERHUB_API_TOKEN"]
    b2 = login(hub, second)
    b2.start_server(second)
    second_pid = server_pid(hub, second)
    forker = fork_server_pid(hub)
    assert parent_of(second_pid) == forker
    time.sleep(0.5)

    listening = _socket_inodes(str(hub.state / "forkserver.sock"))
    assert listening
    fds = os.listdir(f"/proc/{second_pid}/fd")
    for fd in fds:
        target = os.readlink(f"/proc/{second_pid}/fd/{fd}")
        assert not any(f"socket:[{inode}]" == target for inode in listening)

    second_env = environ(second_pid)
    own_token = second_env["JUPYTERHUB_API_TOKEN"]
    assert first_token not in "\0".join(f"{k}={v}" for k, v in second_env.items())
    memory = readable_memory(second_pid)
    # The scan finds a token where there is one (its own), so not finding the other means
    # it is not there.
    assert own_token.encode() in memory
    assert first_token.encode() not in memory
    # And the fork server itself never saw either.
    parent_memory = readable_memory(forker)
    assert first_token.encode() not in parent_memory
    assert own_token.encode() not in parent_memory


def test_running_servers_survive_fork_server_and_hub_restart(hub: HubProcess) -> None:
    name = hub.users[2]
    b = login(hub, name)
    b.start_server(name)
    pid = server_pid(hub, name)
    forker = fork_server_pid(hub)
    assert parent_of(pid) == forker
    assert b.open_lab(name).status_code == 200
    kernel = b.new_kernel(name)
    b.execute(name, kernel, "x = 19")
    hub.stop()
    # The fork server ends with the hub; its children keep running.
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{forker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{forker}")
    os.kill(pid, 0)
    hub.start()
    for _ in range(100):
        if b.get(f"/user/{name}/api/kernels").status_code == 200:
            break
        time.sleep(0.3)
    assert b.execute(name, kernel, "x + 1")["result"] == "20"
    stop_server(hub, b, name)
    # Its fork server is gone: the server, dead now, is init's to reap (an unprivileged hub
    # counts a zombie as stopped, as userdel does), which may take a moment.
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}")


def test_forked_server_dying_at_start_is_reported(hub: HubProcess) -> None:
    name = hub.users[1]
    b = login(hub, name)
    stop_server(hub, b, name)
    account = pwd.getpwnam(hub.system_user(name))
    confdir = os.path.join(account.pw_dir, ".jupyter")
    os.makedirs(confdir, exist_ok=True)
    conf = os.path.join(confdir, "jupyter_server_config.py")
    with open(conf, "w") as f:
        f.write("raise SystemExit('forked-config-says-no')\n")
    for path in (confdir, conf):
        os.chown(path, account.pw_uid, account.pw_gid)
    fork_server_pid(hub)
    started = time.monotonic()
    resp = b.http.post(f"{hub.url}/hub/api/users/{name}/server",
                       headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    message = resp.text
    deadline = time.monotonic() + 30
    while "forked-config-says-no" not in message and time.monotonic() < deadline:
        message = b.get(f"/hub/api/users/{name}/server/progress", timeout=10).text
        time.sleep(0.2)
    assert "stopped while starting" in message and "forked-config-says-no" in message
    assert time.monotonic() - started < 20
    os.unlink(conf)


def test_an_unprivileged_hub_whose_helper_is_gone_says_so(hub: HubProcess) -> None:
    """Last: the hub (unprivileged) cannot start a root helper again; a start fails with a
    message, and the hub log says to start teamhub again as root."""
    name = hub.users[0]
    b = login(hub, name)
    forker = fork_server_pid(hub)
    os.kill(forker, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{forker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    resp = b.http.post(f"{hub.url}/hub/api/users/{name}/server",
                       headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    message = resp.text
    deadline = time.monotonic() + 30
    while "could not be" not in message and time.monotonic() < deadline:
        message = b.get(f"/hub/api/users/{name}/server/progress", timeout=10).text
        time.sleep(0.2)
    assert "could not be" in message, message
    log = hub.log.read_text(errors="replace")
    assert "it cannot be restarted without root: start teamhub again as root" in log
    assert not os.path.exists(f"/proc/{forker}")  # and no new one: root starts it
    with pytest.raises(AssertionError):
        fork_server_pid(hub, timeout=2)
