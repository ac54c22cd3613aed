"""Kernels forked from a warm parent (envs.warm_kernels): indistinguishable from kernels
started the normal way, and never from a parent whose environment has changed since."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, runtime_dir, unique, world_dir
from test_forkserver import (
    STATUS_FIELDS,
    environ,
    fd_targets,
    parent_of,
    readable_memory,
    server_pid,
    stop_server,
)

from teamhub.system.processes import processes_of
from teamhub.system.uv import SYSTEM_CA

pytestmark = [pytest.mark.hub, pytest.mark.system]

# Values each start of a server gets anew (and so the kernels it starts).
PER_START = {"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_SERVICE_URL", "JPY_PARENT_PID"}
# What the kernel itself sees, printed as one JSON line.
INSIDE = """
import json, os, re, sys, threading, ipykernel.connect as c
cf = c.get_connection_file()
st = os.stat(cf)
um = os.umask(0); os.umask(um)
print(json.dumps({"pid": os.getpid(), "env": dict(os.environ), "cwd": os.getcwd(),
    "path": sys.path, "argv": sys.argv, "flags": repr(sys.flags),
    "executable": sys.executable, "prefix": sys.prefix,
    "ids": [os.getresuid(), os.getresgid(), sorted(os.getgroups())], "umask": um,
    "thread_names": sorted(re.sub(r"-\\d+", "-N", t.name) for t in threading.enumerate()),
    "conn": [cf, oct(st.st_mode), st.st_uid, st.st_gid,
             oct(os.stat(os.path.dirname(cf)).st_mode)]}))
"""


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    envs_root = world_dir("teamhub-wkenvs-")
    h = hub_factory(extra_toml=f'[envs]\nroot = "{envs_root}"\nwarm_kernels = "prewarm"\n')
    h.scratch.append(envs_root)
    h.users = [unique("wa"), unique("wb")]
    for name in h.users:
        h.add_user(name, PASSWORD)
    h.teamhub("env", "create", "wk", "six")
    h.start()
    return h


def browser(hub: HubProcess, name: str) -> Browser:
    b = Browser(hub.url)
    assert b.login(name, PASSWORD).status_code == 302
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    return b


def inside(b: Browser, name: str, kernel: str) -> dict[str, Any]:
    b.wait_kernel(name, kernel)
    out = b.execute(name, kernel, INSIDE)
    assert out["stdout"], out
    return json.loads(out["stdout"])


def is_warm(pid: int) -> bool:
    """Whether kernel PID was forked by a warm parent (not started by its server)."""
    cmd = Path(f"/proc/{parent_of(pid)}/cmdline").read_bytes()
    return b"warm_parent.py" in cmd


def quiet_fd_targets(pid: int) -> list[str]:
    """fd_targets(PID) once the kernel is quiet: IPython's history thread writes the cell
    just run after execute_reply, with history.sqlite's journal open for a moment (seen in
    CI), so a list taken during that write differs from any other kernel's."""
    deadline = time.monotonic() + 30
    last = fd_targets(pid)
    while True:
        time.sleep(0.3)
        now = fd_targets(pid)
        if now == last and not any(t.endswith("-journal") for t in now):
            return now
        if time.monotonic() > deadline:
            return now  # still busy: compared as it is, and the test says what differs
        last = now


def snapshot(hub: HubProcess, name: str, b: Browser, kernel_name: str) -> dict[str, Any]:
    seen = inside(b, name, b.new_kernel(name, kernel_name))
    pid = seen["pid"]
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    conn = seen["conn"][0]
    cmdline = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    server = server_pid(hub, name)
    return {
        "warm": is_warm(pid),
        "server_is_jpy_parent": seen["env"]["JPY_PARENT_PID"] == str(server),
        "status": {k: status[k].strip() for k in STATUS_FIELDS if k in status},
        "threads": status["Threads"].strip(),
        "env": {k: v for k, v in seen["env"].items() if k not in PER_START},
        "proc_environ": {k: v for k, v in environ(pid).items() if k not in PER_START},
        "limits": Path(f"/proc/{pid}/limits").read_text(),
        # Every descriptor, sockets and pipes by kind: a warm parent's must not leak in.
        "files": quiet_fd_targets(pid),
        "stdio": [re.sub(r"\[\d+\]", "[N]", os.readlink(f"/proc/{pid}/fd/{fd}"))
                  for fd in (0, 1, 2)],
        "stdout_is_servers": os.readlink(f"/proc/{pid}/fd/1")
        == os.readlink(f"/proc/{server}/fd/1"),
        "cwd": os.readlink(f"/proc/{pid}/cwd"),
        "in_kernel_cwd": seen["cwd"],
        "session_leader": (int(stat[2]), int(stat[3])) == (pid, pid),
        "cgroup": Path(f"/proc/{pid}/cgroup").read_text(),
        "proc_owner": os.stat(f"/proc/{pid}").st_uid,
        "cmdline": [a.replace(conn, "CONN") for a in cmdline],
        "argv": [a.replace(conn, "CONN") for a in seen["argv"]],
        "exe": os.readlink(f"/proc/{pid}/exe"),
        "path": seen["path"], "flags": seen["flags"], "executable": seen["executable"],
        "prefix": seen["prefix"], "ids": seen["ids"], "umask": seen["umask"],
        "thread_names": seen["thread_names"],
        "conn": [os.path.dirname(conn), *seen["conn"][1:]],
    }


def set_warm(hub: HubProcess, on: bool) -> None:
    hub.stop()
    hub.teamhub("config", "set", "envs.warm_kernels", "prewarm" if on else "off")
    hub.start()


@pytest.fixture(scope="module")
def compared(hub: HubProcess) -> dict[str, Any]:
    """The default and a shared-env kernel of one user, started both ways."""
    name = hub.users[0]
    result: dict[str, Any] = {}
    for how in ("warm", "normal"):
        if how == "normal":
            set_warm(hub, False)
        b = browser(hub, name)
        for kernel in ("python3", "env-wk"):
            # The second kernel of an environment: its parent is surely up by now.
            b.new_kernel(name, kernel)
            result[(how, kernel)] = snapshot(hub, name, b, kernel)
        stop_server(hub, b, name)
    set_warm(hub, True)
    return result


PARTS = ["status", "threads", "thread_names", "env", "proc_environ", "limits", "files", "stdio",
         "stdout_is_servers", "cwd", "in_kernel_cwd", "session_leader", "cgroup",
         "proc_owner", "cmdline", "argv", "exe", "path", "flags", "executable", "prefix",
         "ids", "umask", "conn", "server_is_jpy_parent"]


@pytest.mark.parametrize("kernel", ["python3", "env-wk"])
def test_kernels_were_started_both_ways(compared: dict[str, Any], kernel: str) -> None:
    assert compared[("warm", kernel)]["warm"]
    assert not compared[("normal", kernel)]["warm"]


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("kernel", ["python3", "env-wk"])
def test_warm_kernel_is_indistinguishable(compared: dict[str, Any], kernel: str,
                                          part: str) -> None:
    assert compared[("warm", kernel)][part] == compared[("normal", kernel)][part]


def test_runs_as_the_user_with_private_connection_files(hub: HubProcess,
                                                        compared: dict[str, Any]) -> None:
    account = pwd.getpwnam(hub.system_user(hub.users[0]))
    warm = compared[("warm", "python3")]
    assert warm["ids"][0] == [account.pw_uid] * 3
    assert warm["status"]["CapEff"] == "0000000000000000"
    assert warm["umask"] == 0o077
    _dir, mode, uid, _gid, dir_mode = warm["conn"]
    assert (mode, uid) == ("0o100600", account.pw_uid)
    assert int(dir_mode, 8) & 0o777 == 0o700
    assert warm["session_leader"]


def test_no_other_users_secret_in_a_warm_kernel(hub: HubProcess,
                                                compared: dict[str, Any]) -> None:
    first, second = hub.users
    b1, b2 = browser(hub, first), browser(hub, second)
    secret = environ(server_pid(hub, first))["JUPYTERHUB_API_TOKEN"].encode()
    b2.new_kernel(second)
    seen = inside(b2, second, b2.new_kernel(second))
    assert is_warm(seen["pid"])
    assert secret not in readable_memory(seen["pid"])
    assert secret not in readable_memory(parent_of(seen["pid"]))
    stop_server(hub, b1, first)
    stop_server(hub, b2, second)


def warm_parents_of(uid: int) -> list[tuple[int, str]]:
    """(pid, socket) of each warm parent running as UID."""
    found = []
    for pid in processes_of(uid):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if any(part.endswith(b"warm_parent.py") for part in cmd):
            found.append((pid, cmd[-2].decode()))
    return found


def test_prewarm_forks_the_default_kernels_parent_with_the_server(
        hub: HubProcess, compared: dict[str, Any]) -> None:
    """The parent is forked off the server's process before the server starts (its modules
    shared with the fork server), and the first kernel comes from it."""
    name = hub.users[1]
    b = browser(hub, name)
    uid = pwd.getpwnam(hub.system_user(name)).pw_uid
    server = server_pid(hub, name)
    [(parent, sock)] = warm_parents_of(uid)
    assert os.path.basename(sock) == f"warm-forked-{server}.sock"
    assert parent_of(parent) == server
    stat = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()
    assert (int(stat[2]), int(stat[3])) == (parent, parent), "not its own session"
    seen = inside(b, name, b.new_kernel(name))
    assert parent_of(seen["pid"]) == parent
    stop_server(hub, b, name)


def test_a_users_own_site_packages_get_a_parent_of_their_own(
        hub: HubProcess, compared: dict[str, Any]) -> None:
    """The fork server imported the kernels' modules without the user's ~/.local: with one
    (it counts for every parent, see warm_kernels.fingerprint), the forked parent is stopped
    and a parent is started as a fresh interpreter."""
    name = hub.users[1]
    account = pwd.getpwnam(hub.system_user(name))
    local = Path(account.pw_dir) / ".local"
    site = local / "lib" / "python{}.{}".format(*sys.version_info[:2]) / "site-packages"
    site.mkdir(parents=True)
    try:
        for folder in (site, *site.parents):
            if folder == Path(account.pw_dir):
                break
            os.chown(folder, account.pw_uid, account.pw_gid)
        b = browser(hub, name)
        deadline = time.monotonic() + 60
        while not (parents := warm_parents_of(account.pw_uid)) \
                or any("warm-forked-" in sock for _, sock in parents):
            assert time.monotonic() < deadline, f"warm parents: {parents}"
            time.sleep(0.2)
        seen = inside(b, name, b.new_kernel(name))
        assert is_warm(seen["pid"])
        assert "warm-forked-" not in Path(f"/proc/{parent_of(seen['pid'])}/cmdline").read_text()
        stop_server(hub, b, name)
    finally:
        shutil.rmtree(local / "lib")


def test_another_local_user_cannot_reach_a_warm_parent(hub: HubProcess,
                                                      compared: dict[str, Any]) -> None:
    name = hub.users[0]
    b = browser(hub, name)
    seen = inside(b, name, b.new_kernel(name))
    parent = parent_of(seen["pid"])
    sock = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[-2].decode()
    assert sock.startswith(os.path.dirname(seen["conn"][0]) + "/"), sock
    nobody = pwd.getpwnam("nobody")
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             f"try:\n    s.connect({sock!r})\nexcept PermissionError:\n    sys.exit(3)\n")
    other = subprocess.run([sys.executable, "-c", probe], user=nobody.pw_uid,
                           group=nobody.pw_gid, extra_groups=[], capture_output=True,
                           text=True, timeout=60)
    assert other.returncode == 3, other.stderr
    stop_server(hub, b, name)


def _kernel_sees(b: Browser, name: str, kernel_name: str, code: str) -> tuple[bool, str]:
    seen = inside(b, name, kernel := b.new_kernel(name, kernel_name))
    return is_warm(seen["pid"]), b.execute(name, kernel, code)["stdout"]


def test_env_install_reaches_the_next_kernel(hub: HubProcess,
                                             compared: dict[str, Any]) -> None:
    name = hub.users[0]
    b = browser(hub, name)
    warm, out = _kernel_sees(b, name, "env-wk", "import sys; print(sys.prefix)")
    warm, out = _kernel_sees(b, name, "env-wk", "import sys; print(sys.prefix)")
    assert warm, "the second kernel of an env should be forked"
    before = os.path.realpath(out.strip())
    hub.teamhub("env", "install", "wk", "idna")
    warm, out = _kernel_sees(b, name, "env-wk",
                             "import sys, idna; print(sys.prefix, idna.__name__)")
    assert out.split()[1:] == ["idna"], out
    assert os.path.realpath(out.split()[0]) != before
    # The new revision's parent serves the kernels after it.
    warm, out = _kernel_sees(b, name, "env-wk", "import idna; print(idna.__name__)")
    assert (warm, out.strip()) == (True, "idna")
    stop_server(hub, b, name)


def test_pip_install_in_a_personal_env_reaches_the_next_kernel(
        hub: HubProcess, compared: dict[str, Any]) -> None:
    name = hub.users[1]
    b = browser(hub, name)
    kernel = b.new_kernel(name)
    b.wait_kernel(name, kernel)
    out = b.execute(name, kernel,
                    "import subprocess; p = subprocess.run(['teamhub-env', 'create', "
                    "'mine', 'six'], capture_output=True, text=True); "
                    "print(p.returncode); print(p.stderr[-400:])", timeout=240)
    assert out["stdout"].startswith("0"), out
    deadline = time.monotonic() + 30
    while "personal-mine" not in b.kernelspecs(name):
        assert time.monotonic() < deadline, "personal env did not show up"
        time.sleep(0.5)
    probe = "import importlib.util as u; print(u.find_spec('idna') is not None)"
    _kernel_sees(b, name, "personal-mine", probe)
    warm, out = _kernel_sees(b, name, "personal-mine", probe)
    assert (warm, out.strip()) == (True, "False")
    uv = str(runtime_dir() / "bin" / "uv")
    # uv as teamhub-env runs it (the system's certificates), `pip install` into the env.
    out = b.execute(name, kernel,
                    "import os, subprocess; p = subprocess.run([" + repr(uv) + ", 'pip', "
                    "'install', '--python', os.path.expanduser('~/.venvs/mine/bin/python'), "
                    "'idna'], capture_output=True, text=True, "
                    f"env=dict(os.environ, SSL_CERT_FILE={SYSTEM_CA!r})); "
                    "print(p.returncode); print(p.stderr[-400:])", timeout=240)
    assert out["stdout"].startswith("0"), out
    _warm, out = _kernel_sees(b, name, "personal-mine", probe)
    assert out.strip() == "True"
    stop_server(hub, b, name)
    home = pwd.getpwnam(hub.system_user(name)).pw_dir
    shutil.rmtree(os.path.join(home, ".venvs"), ignore_errors=True)


# With `on-demand` (the default): parents start when the user's JupyterLab lists the
# kernels, and exit when nothing uses them (teamhub.envs.warm_ahead).
IDLE = 8


@pytest.fixture(scope="module")
def on_demand(hub: HubProcess, compared: dict[str, Any]) -> HubProcess:
    hub.stop()
    hub.teamhub("config", "set", "envs.warm_kernels", "on-demand")
    hub.teamhub("config", "set", "envs.warm_idle", str(IDLE))
    hub.start()
    return hub


def parents_soon(b: Browser, name: str, uid: int, count: int,
                 timeout: float = 90) -> list[tuple[int, str]]:
    """The user's warm parents once there are COUNT, listing the kernels every 2 s as
    teamhub's JupyterLab extension does (parents start only with a core to spare)."""
    deadline = time.monotonic() + timeout
    while len(found := warm_parents_of(uid)) < count:
        assert time.monotonic() < deadline, f"warm parents: {found}"
        b.kernelspecs(name)
        time.sleep(2)
    return found


def recent_file(hub: HubProcess, name: str) -> Path:
    home = pwd.getpwnam(hub.system_user(name)).pw_dir
    return Path(home) / ".local" / "share" / "jupyter" / "teamhub" / "recent-kernels.json"


def test_an_open_lab_starts_the_default_kernels_parent(on_demand: HubProcess) -> None:
    hub = on_demand
    name = hub.users[1]
    recent_file(hub, name).unlink(missing_ok=True)
    b = browser(hub, name)
    uid = pwd.getpwnam(hub.system_user(name)).pw_uid
    assert warm_parents_of(uid) == [], "a parent before any front end asked"
    [(parent, _sock)] = parents_soon(b, name, uid, 1)
    seen = inside(b, name, b.new_kernel(name))
    assert parent_of(seen["pid"]) == parent, "the first kernel did not come from it"
    assert json.loads(recent_file(hub, name).read_text()) == ["python3"]
    stop_server(hub, b, name)


def test_an_open_lab_starts_the_parents_of_the_last_used_kernels(
        on_demand: HubProcess) -> None:
    """Across servers: the kernels the user started last (in their own data folder)."""
    hub = on_demand
    name = hub.users[1]
    b = browser(hub, name)
    b.wait_kernel(name, b.new_kernel(name, "env-wk"))
    assert json.loads(recent_file(hub, name).read_text())[0] == "env-wk"
    assert os.stat(recent_file(hub, name)).st_uid == pwd.getpwnam(
        hub.system_user(name)).pw_uid
    stop_server(hub, b, name)
    b = browser(hub, name)
    uid = pwd.getpwnam(hub.system_user(name)).pw_uid
    found = parents_soon(b, name, uid, 2)
    programs = sorted(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                      for pid, _ in found)
    assert len(programs) == 2 and any("/wk/" in p for p in programs), programs
    seen = inside(b, name, b.new_kernel(name, "env-wk"))
    assert parent_of(seen["pid"]) in [pid for pid, _ in found]
    stop_server(hub, b, name)


def test_an_unused_parent_exits_and_a_busy_one_stays(on_demand: HubProcess) -> None:
    hub = on_demand
    name = hub.users[0]
    b = browser(hub, name)
    uid = pwd.getpwnam(hub.system_user(name)).pw_uid
    kernel = b.new_kernel(name)
    seen = inside(b, name, kernel)
    parent = parent_of(seen["pid"])
    assert is_warm(seen["pid"])
    # No front end lists the kernels from here on; the kernel runs: the parent stays.
    time.sleep(IDLE * 2)
    assert parent in [pid for pid, _ in warm_parents_of(uid)]
    b.http.delete(f"{hub.url}/user/{name}/api/kernels/{kernel}",
                  headers={"X-XSRFToken": b._xsrf(f"/user/{name}/")}, timeout=60)
    deadline = time.monotonic() + IDLE * 4
    while parent in [pid for pid, _ in warm_parents_of(uid)]:
        assert time.monotonic() < deadline, "the unused parent did not exit"
        time.sleep(0.5)
    # The server goes on; its next kernel starts a parent again (and waits for it).
    seen = inside(b, name, b.new_kernel(name))
    assert is_warm(seen["pid"]) and parent_of(seen["pid"]) != parent
    stop_server(hub, b, name)


def hint(b: Browser, name: str, body: Any) -> Any:
    """POST a warm-parent hint to NAME's server, as teamhub's Lab extension sends one."""
    return b.http.post(f"{b.base}/user/{name}/teamhub/api/warm-parents", json=body,
                       headers={"X-XSRFToken": b._xsrf(f"/user/{name}/")}, timeout=60)


def test_a_launcher_hint_starts_a_never_used_envs_parent(on_demand: HubProcess) -> None:
    """The first kernel of an env the user never started: the hint (the pointer resting on
    its launcher card) starts its parent, and that kernel comes from it."""
    hub = on_demand
    name, other = hub.users
    b = browser(hub, name)
    recent_file(hub, name).unlink(missing_ok=True)  # asked for only at a kernel listing
    uid = pwd.getpwnam(hub.system_user(name)).pw_uid
    assert warm_parents_of(uid) == [], "a parent before any front end asked"
    resp = hint(b, name, {"kernel": "env-wk"})
    assert resp.status_code == 200 and resp.json() == {"kernel": "env-wk", "warm": True}, \
        resp.text
    # Only that env's parent: no kernel list was asked for, so not the default kernel's.
    [(parent, _sock)] = warm_parents_of(uid)
    program = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert "/wk/" in program, program
    seen = inside(b, name, b.new_kernel(name, "env-wk"))
    assert parent_of(seen["pid"]) == parent, "the env's first kernel did not come from it"
    # What the server answers to a hint it cannot use.
    missing = hint(b, name, {"kernel": "no-such-env"})
    assert missing.status_code == 404 and "no-such-env" in missing.text, missing.text
    assert hint(b, name, {"name": "env-wk"}).status_code == 400
    # Another user's server is not theirs to start processes in.
    b2 = browser(hub, other)
    foreign = b2.http.post(f"{hub.url}/user/{name}/teamhub/api/warm-parents",
                           json={"kernel": "env-wk"}, allow_redirects=False, timeout=60)
    assert foreign.status_code in (302, 403), foreign.status_code
    stop_server(hub, b, name)
    stop_server(hub, b2, other)


def notebooks_naming(account: pwd.struct_passwd, folder_name: str,
                     kernels: dict[str, str]) -> Path:
    """FOLDER_NAME in ACCOUNT's home with a notebook STEM.ipynb naming each kernel of
    KERNELS (stem → kernel), as nbformat writes them; all the account's."""
    folder = Path(account.pw_dir) / folder_name
    folder.mkdir(exist_ok=True)
    os.chown(folder, account.pw_uid, account.pw_gid)
    for stem, kernel in kernels.items():
        nb = {"cells": [], "metadata": {"kernelspec": {"name": kernel, "display_name": kernel,
                                                       "language": "python"}},
              "nbformat": 4, "nbformat_minor": 5}
        (folder / f"{stem}.ipynb").write_text(json.dumps(nb, sort_keys=True, indent=1))
        os.chown(folder / f"{stem}.ipynb", account.pw_uid, account.pw_gid)
    return folder


def test_a_notebook_hint_starts_the_parent_of_the_kernel_it_names(
        on_demand: HubProcess) -> None:
    """The pointer resting on a notebook in the file browser: the server reads the kernel
    the notebook names and starts that kernel's parent before the notebook is opened."""
    hub = on_demand
    name = hub.users[0]
    account = pwd.getpwnam(hub.system_user(name))
    folder = notebooks_naming(account, "hinted", {"env": "env-wk", "elsewhere": "no-such-env"})
    b = browser(hub, name)
    recent_file(hub, name).unlink(missing_ok=True)
    assert warm_parents_of(account.pw_uid) == [], "a parent before any front end asked"
    resp = hint(b, name, {"notebook": "hinted/env.ipynb"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"notebook": "hinted/env.ipynb", "kernel": "env-wk", "warm": True}
    [(parent, _sock)] = warm_parents_of(account.pw_uid)
    program = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert "/wk/" in program, program
    # A notebook naming a kernel that is not here, and one that is not there: no parent,
    # and no error (it is only a hint); a path out of the server's files is refused.
    assert hint(b, name, {"notebook": "hinted/elsewhere.ipynb"}).json() == {
        "notebook": "hinted/elsewhere.ipynb", "kernel": "no-such-env", "warm": False}
    assert hint(b, name, {"notebook": "hinted/gone.ipynb"}).json() == {
        "notebook": "hinted/gone.ipynb", "kernel": None, "warm": False}
    outside = hint(b, name, {"notebook": "../../etc/passwd"})
    assert outside.status_code == 404 and "outside" in outside.text, outside.text
    assert len(warm_parents_of(account.pw_uid)) == 1
    stop_server(hub, b, name)
    shutil.rmtree(folder)


def parents_without_asking(uid: int, count: int, timeout: float = 60) -> list[tuple[int, str]]:
    """The user's warm parents once there are COUNT, with no front end listing kernels."""
    deadline = time.monotonic() + timeout
    while len(found := warm_parents_of(uid)) < count:
        assert time.monotonic() < deadline, f"warm parents: {found}"
        time.sleep(0.2)
    return found


def test_a_page_opened_at_a_notebook_starts_the_parent_of_its_kernel(
        on_demand: HubProcess) -> None:
    """A notebook opened by its URL (a bookmark, a link): the page's own request starts
    the parent of the kernel the notebook names, before JupyterLab has loaded and asked
    for that kernel (nothing here runs the page's scripts, so nothing else asks)."""
    hub = on_demand
    name = hub.users[0]
    account = pwd.getpwnam(hub.system_user(name))
    folder = notebooks_naming(account, "linked", {"env nb": "env-wk", "default nb": "python3"})
    b = browser(hub, name)  # JupyterLab's page at no notebook: no parent
    recent_file(hub, name).unlink(missing_ok=True)
    assert warm_parents_of(account.pw_uid) == [], "a parent before any front end asked"
    assert b.get(f"/user/{name}/lab/tree/linked/env%20nb.ipynb").status_code == 200
    [(parent, _sock)] = parents_without_asking(account.pw_uid, 1)
    program = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert "/wk/" in program, program
    seen = inside(b, name, b.new_kernel(name, "env-wk"))
    assert parent_of(seen["pid"]) == parent, "the notebook's kernel did not come from it"
    # Notebook 7's page of a notebook, and a page of no notebook.
    assert b.get(f"/user/{name}/notebooks/linked/default%20nb.ipynb").status_code == 200
    found = parents_without_asking(account.pw_uid, 2)
    assert parent in [pid for pid, _ in found]
    assert b.get(f"/user/{name}/lab/tree/linked").status_code == 200
    time.sleep(2)
    assert len(warm_parents_of(account.pw_uid)) == 2
    stop_server(hub, b, name)
    shutil.rmtree(folder)
