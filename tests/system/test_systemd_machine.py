"""On a fresh Debian 12 machine with systemd as init (a container): the README's first
command installs teamhub as a service whose per-user limits really hold.

One machine for the whole module (installing takes minutes); the tests run in order and
build on each other: ada and bob log in, then one misbehaves, then the root-run install is
switched to an unprivileged hub, the hub is restarted, its proxy killed, and teamhub
upgraded, while bob's kernel keeps its state throughout.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests
from support.client import Browser
from support.docker_engine import DockerEngine
from support.hub import free_port
from support.systemd_machine import (
    SystemdMachine,
    ensure_image,
    readme_first_command,
)

pytestmark = [pytest.mark.system, pytest.mark.systemd]

MEMORY = 512 * 1024**2
TASKS = 200
PASSWORD = "correct horse battery"


class Hub:
    """What the tests need to know about the installed hub."""

    def __init__(self, machine: SystemdMachine, port: int, install_output: str) -> None:
        self.machine = machine
        self.port = port
        self.install_output = install_output
        self.url = f"http://localhost:{port}"
        self.browsers: dict[str, Browser] = {}
        self.kernels: dict[str, str] = {}

    def teamhub(self, args: str, **kw) -> str:
        return self.machine.exec(f"teamhub {args}", **kw).stdout

    def login(self, name: str, groups: tuple[str, ...] = ()) -> Browser:
        self.teamhub(f"user add {name} --password-stdin", input=PASSWORD + "\n")
        for group in groups:
            self.teamhub(f"group create {group}")
            self.teamhub(f"group add {group} {name}")
        b = Browser(self.url)
        assert b.login(name, PASSWORD).status_code == 302
        b.start_server(name)
        assert b.open_lab(name).status_code == 200
        self.browsers[name] = b
        self.kernels[name] = b.new_kernel(name)
        b.wait_kernel(name, self.kernels[name])
        return b

    def run(self, name: str, code: str, timeout: float = 60) -> dict[str, str]:
        return self.browsers[name].execute(name, self.kernels[name], code, timeout=timeout)

    def wait_until_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/hub/login", timeout=3).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise AssertionError(f"hub not answering after {timeout}s:\n"
                             + self.teamhub("logs -n 40", check=False))


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    engine = DockerEngine()
    engine.ensure()
    machine: SystemdMachine | None = None
    try:
        t0 = time.monotonic()
        tag, built = ensure_image()
        machine = SystemdMachine(tag)
        machine.start()
        # The container shares this machine's kernel, so its processes show in this
        # machine's /proc: other tests here that remove their Linux users end every process
        # of that uid, which would hit a container user with the same uid. Out of range.
        machine.exec(r"sed -i -E 's/^(UID|GID)_MIN\s.*/\1_MIN 200000/; "
                     r"s/^(UID|GID)_MAX\s.*/\1_MAX 299999/' /etc/login.defs")
        # --network host: the hub inside listens on this machine's loopback, so it gets
        # a free port here instead of 8000, which may be taken (hub and proxy APIs are
        # unix sockets inside the machine).
        port = free_port()
        machine.write("/etc/teamhub/teamhub.toml", f"""\
[hub]
ip = "127.0.0.1"
port = {port}
# The layout of the versions before hub.unprivileged: a root-run hub, until
# test_switch_of_a_root_run_install_to_an_unprivileged_hub upgrades it.
unprivileged = false

[limits]
memory = "{MEMORY // 1024**2}M"
cpu = "1"
tasks = {TASKS}

[limits.groups.big]
memory = "768M"
tasks = 300

[limits.groups.bigger]
cpu = "none"
tasks = 250
""")
        machine.copy_checkout()
        command = readme_first_command()
        assert command == "./install.sh"
        proc = machine.exec(f"cd /root/teamhub && {command}", timeout=1200)
        print(f"image build {built:.0f}s; machine up and installed in "
              f"{time.monotonic() - t0:.0f}s")
        yield Hub(machine, port, proc.stdout)
    finally:
        if machine is not None:
            machine.remove()
        engine.stop()


def test_readme_command_installs_an_active_service(hub: Hub) -> None:
    m = hub.machine
    assert m.exec("systemctl is-active teamhub").stdout.strip() == "active"
    assert m.exec("systemctl is-enabled teamhub").stdout.strip() == "enabled"
    unit = m.exec("systemctl cat teamhub").stdout
    assert "ExecStart=/opt/teamhub/runtime/bin/teamhub" in unit and "Restart=on-failure" in unit
    assert m.exec("stat -c %a /var/lib/teamhub").stdout.strip() == "700"
    assert "teamhub is running as teamhub.service" in hub.install_output
    match = re.search(r"log in as 'admin' with password: (\S+)", hub.install_output)
    assert match, hub.install_output
    b = Browser(hub.url)
    assert b.login("admin", match.group(1)).status_code == 302


def test_users_log_in_and_run_code_inside_their_limits(hub: Hub) -> None:
    hub.login("ada")
    hub.login("bob", groups=("big", "bigger"))
    for name in ("ada", "bob"):
        assert hub.run(name, "5 * 4")["result"] == "20"
    hub.run("bob", "survivor = 'bob-42'")
    show = hub.machine.exec("systemctl show teamhub-user-ada.scope "
                            "-p MemoryMax -p MemoryLimit -p TasksMax -p CPUQuotaPerSecUSec "
                            "-p ActiveState -p Slice").stdout
    assert "ActiveState=active" in show and "Slice=teamhub.slice" in show
    assert f"TasksMax={TASKS}" in show
    assert "CPUQuotaPerSecUSec=1s" in show
    assert f"={MEMORY}" in show  # MemoryMax (cgroup v2) or the v1 memory limit
    # The kernel (a child of the server) runs in the user's scope, not in the hub's.
    cgroup = hub.run("ada", "print(open('/proc/self/cgroup').read())")["stdout"]
    assert "teamhub-user-ada.scope" in cgroup and "teamhub.service" not in cgroup
    # bob is in two groups with overrides: per resource, the more generous one wins.
    show = hub.machine.exec("systemctl show teamhub-user-bob.scope -p TasksMax "
                            "-p CPUQuotaPerSecUSec -p MemoryMax -p MemoryLimit").stdout
    assert "TasksMax=300" in show and "CPUQuotaPerSecUSec=infinity" in show
    assert f"={768 * 1024**2}" in show


def test_private_tmp(hub: Hub) -> None:
    hub.run("ada", "open('/tmp/ada-note', 'w').write('mine')")
    assert hub.run("bob", "import os; os.path.exists('/tmp/ada-note')")["result"] == "False"
    assert hub.machine.exec("test ! -e /tmp/ada-note", check=False).returncode == 0
    uid = hub.machine.exec("id -u jupyter-ada").stdout.strip()
    assert hub.machine.exec(f"cat /var/tmp/teamhub/{uid}/ada-note").stdout == "mine"
    assert hub.machine.exec(f"stat -c %a /var/tmp/teamhub/{uid}").stdout.strip() == "700"


def test_memory_hog_is_killed_and_other_users_keep_running(hub: Hub) -> None:
    hub.run("ada", "marker = 1")
    uid = hub.machine.exec("id -u jupyter-ada").stdout.strip()
    try:
        # Touches every page: three times the limit cannot be held.
        out = hub.run("ada", f"hog = b'x' * {3 * MEMORY}", timeout=20)
        print(f"hog request returned {out}")
    except Exception as exc:  # noqa: BLE001  (the kernel died mid-request: no reply)
        print(f"hog request ended with {exc!r}")
    result = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and result not in ("True", "False"):
        try:
            result = hub.run("ada", "'marker' in globals()", timeout=10)["result"]
        except Exception:  # noqa: BLE001  (still restarting)
            time.sleep(1)
    # The restarted kernel has forgotten `marker`: the kernel was killed, not just refused.
    assert result == "False", "ada's kernel was not killed (or the memory limit not applied)"
    assert hub.run("ada", "import os; os.getuid()")["result"] == uid
    assert hub.run("bob", "survivor")["result"] == "'bob-42'"
    ada = hub.browsers["ada"].get("/user/ada/api/status")
    assert ada.status_code == 200  # only the greedy kernel died, not ada's server


def test_fork_bomb_stops_at_the_tasks_limit(hub: Hub) -> None:
    code = """
import os, signal, errno
pids, err = [], None
for _ in range(5000):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        signal.pause()
        os._exit(0)
    pids.append(pid)
for p in pids:
    os.kill(p, signal.SIGKILL)
for p in pids:
    os.waitpid(p, 0)
print(len(pids), err == errno.EAGAIN)
"""
    out = hub.run("ada", code, timeout=120)
    forked, stopped = out["stdout"].split()
    assert stopped == "True", out
    assert 0 < int(forked) < TASKS
    assert hub.run("bob", "survivor")["result"] == "'bob-42'"
    assert hub.run("ada", "1 + 1")["result"] == "2"


def _status_of(m: SystemdMachine, pid: str) -> dict[str, str]:
    lines = m.exec(f"cat /proc/{pid}/status").stdout.splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_switch_of_a_root_run_install_to_an_unprivileged_hub(hub: Hub) -> None:
    """The upgrade from today's root-run layout: the service's hub drops to the `teamhub`
    account; accounts, grants and running servers (with their kernels' state) survive, and
    the rest of this module (restart, a killed proxy, status, an upgrade by install.sh,
    doctor, backup, uninstall, restore) runs against the unprivileged hub."""
    m = hub.machine
    m.exec("mkdir -p /srv/teamhub/projects && chmod 0755 /srv/teamhub /srv/teamhub/projects")
    hub.teamhub("project create lab --writers bob")
    bob_pid = hub.run("bob", "import os; os.getpid()")["result"]
    hub.teamhub("config set hub.unprivileged true")
    assert "restarted teamhub.service; the hub answers" in hub.teamhub("restart")
    hub.wait_until_up()
    main = m.exec("systemctl show -p MainPID --value teamhub").stdout.strip()
    account = m.exec("id -u teamhub").stdout.strip()
    status = _status_of(m, main)
    assert status["Uid"].split() == [account] * 4, status["Uid"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    proxy = m.exec("cat /var/lib/teamhub/proxy.pid").stdout.strip()
    assert _status_of(m, proxy)["Uid"].split()[0] == account
    # The helper started it in a scope of its own: it outlives the service's restarts.
    cgroup = m.exec(f"cat /proc/{proxy}/cgroup").stdout
    assert f"teamhub-proxy-{proxy}.scope" in cgroup and "teamhub.service" not in cgroup
    # Root keeps only the helper: every other root process of the service's cgroup is gone.
    helper = m.exec("pgrep -u root -f 'teamhub.spawners.forkserver'").stdout.split()
    assert helper, m.exec("ps -eo user,pid,args").stdout
    owners = m.exec("stat -c %U /var/lib/teamhub /var/lib/teamhub/jupyterhub.sqlite "
                    "/var/lib/teamhub/accounts.sqlite").stdout.split()
    assert owners == ["teamhub"] * 3
    # The registry is root's, in root's folder beside the state folder (moved there).
    assert m.exec("stat -c %U /var/lib/teamhub-root /var/lib/teamhub-root/system_users.json"
                  ).stdout.split() == ["root", "root"]
    assert m.exec("test -e /var/lib/teamhub/system_users.json", check=False).returncode != 0
    # Servers survive, kernel state included; new starts go through the helper.
    assert hub.run("bob", "survivor")["result"] == "'bob-42'"
    assert hub.run("bob", "os.getpid()")["result"] == bob_pid
    hub.login("cy")
    assert hub.run("cy", "import os; os.getuid()")["result"] == \
        m.exec("id -u jupyter-cy").stdout.strip()
    scope = m.exec("systemctl is-active teamhub-user-cy.scope", check=False).stdout.strip()
    assert scope == "active"
    acl = m.exec("getfacl -p /srv/teamhub/projects/lab").stdout
    assert "user:jupyter-bob:rwx" in acl, acl
    assert hub.run("bob", "import os; os.path.isdir(os.path.expanduser('~/projects/lab'))"
                   )["result"] == "True"


def test_hub_restart_keeps_both_servers(hub: Hub) -> None:
    ada_pid = hub.run("ada", "import os; os.getpid()")["result"]
    before = hub.machine.exec("systemctl show -p MainPID --value teamhub").stdout.strip()
    proxy = hub.machine.exec("cat /var/lib/teamhub/proxy.pid").stdout.strip()
    # What `teamhub config set` offers after a change: systemctl restart under the service.
    assert "restarted teamhub.service; the hub answers" in hub.teamhub("restart")
    assert hub.machine.exec("systemctl show -p MainPID --value teamhub").stdout.strip() \
        not in ("0", before)
    hub.wait_until_up()
    assert hub.run("bob", "survivor")["result"] == "'bob-42'"
    assert hub.run("ada", "os.getpid()")["result"] == ada_pid
    # The proxy held the port throughout, and the new hub adopted it.
    assert hub.machine.exec("cat /var/lib/teamhub/proxy.pid").stdout.strip() == proxy


def test_killed_proxy_is_back_with_routes_within_seconds(hub: Hub) -> None:
    old = hub.machine.exec("cat /var/lib/teamhub/proxy.pid").stdout.strip()
    hub.machine.exec(f"kill -9 {old}")
    start = time.monotonic()
    while time.monotonic() - start < 60:
        try:
            if hub.browsers["bob"].get("/user/bob/api/status", timeout=3).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    took = time.monotonic() - start
    print(f"proxy back with routes after {took:.1f}s")
    assert took < 30
    assert hub.run("bob", "survivor")["result"] == "'bob-42'"


def test_status_and_logs(hub: Hub) -> None:
    import json

    info = json.loads(hub.teamhub("status --json"))
    assert info["service"]["state"] == "active"
    assert info["hub"]["running"] and info["proxy"]["running"]
    assert {s["user"] for s in info["servers"]} >= {"ada", "bob"}
    text = hub.teamhub("status")
    assert "service: active" in text and "servers: " in text
    logs = hub.teamhub("logs -n 200")
    # A line JupyterHub itself wrote (its log format), not just the journal's unit name.
    assert re.search(r"\[[DIWEC] \d{4}-\d\d-\d\d [\d:.]+ JupyterHub \w+:\d+\]", logs), logs[-2000:]


def test_install_rerun_upgrades_with_a_backup_and_keeps_servers(hub: Hub) -> None:
    m = hub.machine
    out = m.exec("cd /root/teamhub && ./install.sh", timeout=900).stdout
    match = re.search(r"Backed up the hub database and account store to (\S+)", out)
    assert match, out[-2000:]
    folder = match.group(1)
    assert folder.startswith("/var/lib/teamhub/backups/")
    assert m.exec(f"stat -c %a {folder}").stdout.strip() == "700"
    names = m.exec(f"ls {folder}").stdout.split()
    assert names == ["accounts.sqlite", "jupyterhub.sqlite"]
    assert m.exec(f"stat -c %a {folder}/jupyterhub.sqlite").stdout.strip() == "600"
    users = m.exec(f"/opt/teamhub/runtime/bin/python -c \"import sqlite3; print(sorted(r[0] for r"
                   f" in sqlite3.connect('{folder}/jupyterhub.sqlite').execute('select name "
                   "from users')))\"").stdout
    assert "'ada'" in users and "'bob'" in users
    assert "upgraded and running" in out
    hub.wait_until_up()
    assert hub.run("bob", "survivor")["result"] == "'bob-42'"


def test_failed_upgrade_leaves_the_service_running(hub: Hub) -> None:
    m = hub.machine
    m.exec("teamhub config set proxy.command /nonexistent/chp")
    try:
        proc = m.exec("teamhub install", check=False, timeout=300)
        assert proc.returncode != 0
        assert "teamhub: error:" in proc.stderr and "/nonexistent/chp" in proc.stderr
        assert m.exec("systemctl is-active teamhub", check=False).stdout.strip() == "active"
    finally:
        m.exec("teamhub config unset proxy.command")
    hub.wait_until_up()
    assert hub.run("bob", "survivor")["result"] == "'bob-42'"


def test_stopping_a_server_ends_its_strays_and_private_tmp(hub: Hub) -> None:
    m = hub.machine
    # A process that left the server's session and process group still is in its scope.
    hub.run("ada", "import subprocess; subprocess.Popen(['setsid', 'sleep', '987654'])")
    assert m.exec("pgrep -u jupyter-ada -f 'sleep 987654'", check=False).returncode == 0
    uid = m.exec("id -u jupyter-ada").stdout.strip()
    b = hub.browsers["ada"]
    resp = b.http.delete(f"{hub.url}/hub/api/users/ada/server",
                         headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    assert resp.status_code in (202, 204), resp.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if m.exec("pgrep -u jupyter-ada", check=False).returncode != 0:
            break
        time.sleep(0.5)
    assert m.exec("pgrep -u jupyter-ada -f 'sleep 987654'", check=False).returncode != 0
    assert m.exec("systemctl is-active teamhub-user-ada.scope",
                  check=False).stdout.strip() != "active"
    assert m.exec(f"test -e /var/tmp/teamhub/{uid}", check=False).returncode != 0
    assert hub.run("bob", "survivor")["result"] == "'bob-42'"


def test_doctor_passes_and_names_a_runtime_users_cannot_read(hub: Hub) -> None:
    import json

    m = hub.machine
    proc = m.exec("teamhub doctor --json", check=False, timeout=300)
    report = json.loads(proc.stdout)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert proc.returncode == 0 and report["ok"], failed
    limits = next(c for c in report["checks"] if c["name"] == "limits enforceable")
    assert "limits are off" not in limits["detail"]
    m.exec("chmod 0700 /opt/teamhub")
    try:
        proc = m.exec("teamhub doctor --json", check=False, timeout=300)
    finally:
        m.exec("chmod 0755 /opt/teamhub")
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    broken = checks["runtime usable by users"]
    assert not broken["ok"] and "/opt/teamhub" in broken["detail"] + broken["fix"], broken
    assert checks["hub database"]["ok"]


def test_backup_taken_before_the_purge(hub: Hub) -> None:
    m = hub.machine
    m.exec("mkdir -p /srv/teamhub/projects && chmod 0755 /srv/teamhub /srv/teamhub/projects")
    hub.teamhub("project create thesis --writers bob --readers @big")
    hub.teamhub("backup /root/teamhub-backup.tar.gz")
    assert m.exec("stat -c %a /root/teamhub-backup.tar.gz").stdout.strip() == "600"


def test_uninstall_keeps_data_unless_purged(hub: Hub) -> None:
    m = hub.machine
    out = m.exec("teamhub uninstall").stdout
    assert "Removed teamhub.service" in out
    assert m.exec("systemctl is-active teamhub", check=False).stdout.strip() != "active"
    assert m.exec("test -f /var/lib/teamhub/accounts.sqlite", check=False).returncode == 0
    assert m.exec("systemctl is-active teamhub-user-bob.scope",
                  check=False).stdout.strip() != "active"
    m.exec("teamhub uninstall --purge")
    assert m.exec("test -e /var/lib/teamhub", check=False).returncode != 0
    assert m.exec("test -e /var/lib/teamhub-root", check=False).returncode != 0


def test_restore_after_purge_brings_accounts_and_grants_back(hub: Hub) -> None:
    import json

    m = hub.machine
    out = m.exec("teamhub restore /root/teamhub-backup.tar.gz", timeout=300).stdout
    assert "Restored" in out or "restored" in out, out
    m.exec("cd /root/teamhub && ./install.sh", timeout=900)
    hub.wait_until_up()
    grants = json.loads(hub.teamhub("project show thesis --json"))
    assert "bob" in json.dumps(grants) and "@big" in json.dumps(grants)
    assert "big" in hub.teamhub("group list")
    b = Browser(hub.url)
    assert b.login("bob", PASSWORD).status_code == 302
    assert Browser(hub.url).login("bob", "wrong " + PASSWORD).status_code != 302
    # The restored grant is applied to the folder again, for bob's (kept) Linux account.
    acl = m.exec("getfacl -p /srv/teamhub/projects/thesis").stdout
    assert "user:jupyter-bob:rwx" in acl, acl
