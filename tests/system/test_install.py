"""The Quick start's first command: install.sh installs, starts the hub detached, and
prints how to log in; the printed admin password gets a working JupyterLab kernel."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.client import Browser
from support.hub import HubProcess, runtime_dir, unique

pytestmark = [pytest.mark.system, pytest.mark.hub]

REPO = Path(__file__).resolve().parents[2]


def test_install_sh_starts_a_hub_a_user_can_work_in(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path)
    admin = unique("root-ish")
    # The hub's own account, by a name of this test's (another hub may run meanwhile).
    account = unique("thub")
    hub.config.write_text(hub.config.read_text().replace(
        "[hub]\n", f'[hub]\naccount = "{account}"\n', 1))
    pid_file, log = tmp_path / "teamhub.pid", tmp_path / "teamhub.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
    env["TEAMHUB_CONFIG"] = str(hub.config)
    try:
        proc = subprocess.run(
            [str(REPO / "install.sh"), "--prefix", str(runtime_dir().parent), "--extras", "test",
             "--admin", admin, "--port", str(hub.port), "--log", str(log),
             "--pid-file", str(pid_file)],
            capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "teamhub is up" in proc.stdout
        made = pwd.getpwnam(account)
        assert made.pw_uid < 1000 and made.pw_dir == str(hub.state)
        assert made.pw_shell.endswith("nologin")
        # hub.unprivileged is on by default: the hub runs as its account, and of its
        # processes only the root helper is root.
        hub_pid = int(pid_file.read_text())
        assert _uids(hub_pid) == {made.pw_uid}
        password = re.search(rf"log in as '{admin}' with password: (\S+)", proc.stdout).group(1)
        b = Browser(hub.url)
        assert b.login(admin, password).status_code == 302
        b.start_server(admin)
        assert b.open_lab(admin).status_code == 200
        kernel = b.new_kernel(admin)
        assert b.execute(admin, kernel, "5 * 4")["result"] == "20"
        server_uid = pwd.getpwnam(hub.system_user(admin)).pw_uid
        who = {pid: (_uids(pid), _cmdline(pid)) for pid in _descendants(hub_pid)}
        root = [cmd for uids, cmd in who.values() if 0 in uids]
        assert root and all("teamhub.spawners.forkserver" in cmd for cmd in root), who
        assert any(uids == {server_uid} and "jupyterhub-singleuser" in cmd
                   for uids, cmd in who.values()), who
        assert all(uids <= {0, made.pw_uid, server_uid} for uids, _ in who.values()), who
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        hub.cleanup()
        subprocess.run(["userdel", account], capture_output=True)


def _uids(pid: int) -> set[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {int(u) for u in status.split("\nUid:")[1].split()[:4]}


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _descendants(pid: int) -> list[int]:
    """PID's living descendants (what `ps` would show of the hub's tree)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        here = todo.pop()
        kids = [p for p, parent in parents.items() if parent == here]
        found += kids
        todo += kids
    return found
