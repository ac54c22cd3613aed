"""How the CLI reaches the hub (issue 18 items 3 and 6): a real hub, real squatters.

- A user's process that listens on the hub's API port while the hub is down must
  never get the CLI's token, and the CLI must not claim the running hub acted.
- A hub that runs but does not answer (SIGSTOP) must never have its database
  changed behind its back: the CLI refuses, the account store is untouched, and
  the hub serves logins with a consistent database after SIGCONT.
- The CLI's token is new at every start; the previous one stops working.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, free_port, runtime_dir, unique, world_dir

from teamhub.hubclient import Endpoint

pytestmark = [pytest.mark.hub, pytest.mark.system]

NEW_PASSWORD = "amber lantern meadow"

# A hub look-alike: answers every request like a hub that did what it was asked,
# and writes each request's headers to stdout (one JSON line each).
SQUATTER = r"""
import http.server, json, sys
port = int(sys.argv[1])
class Fake(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        print(json.dumps({"method": self.command, "path": self.path,
                          "headers": dict(self.headers)}), flush=True)
        if self.path.endswith("/groups") and self.command == "GET":
            body = b"[]"
        else:
            body = json.dumps({"oauth_tokens": 0, "api_tokens": 0, "servers": {},
                               "api_tokens_list": [], "name": "x", "admin": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_DELETE = do_PATCH = answer
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Fake).serve_forever()
"""


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory()
    h.u, h.w = unique("ch"), unique("cw")
    for name in (h.u, h.w):
        h.add_user(name, PASSWORD)
    h.start()
    return h


@pytest.fixture(autouse=True)
def running(hub: HubProcess) -> None:
    """Each test starts with the hub running, whatever the one before left."""
    if hub.proc is None or hub.proc.poll() is not None:
        hub.start()


def cli_token(hub: HubProcess) -> str:
    return (hub.state / "cli_api_token").read_text().strip()


def api_status(hub: HubProcess, token: str) -> int:
    return hub.api("GET", "/users", token=token).status


def db_files(hub: HubProcess) -> dict[str, bytes]:
    """The hub database and its journal files, byte for byte."""
    return {p.name: p.read_bytes() for p in hub.state.glob("jupyterhub.sqlite*")}


class Squatter:
    """SQUATTER run as user nobody on PORT; `requests` is what it was sent."""

    def __init__(self, port: int) -> None:
        self.folder = world_dir("teamhub-squatter-")
        script = self.folder / "squat.py"
        script.write_text(SQUATTER)
        script.chmod(0o644)
        self.proc = subprocess.Popen([*nobody_python(), str(script), str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except requests.RequestException:
                assert self.proc.poll() is None, self.proc.stderr.read()
                time.sleep(0.1)
        self.requests: list[dict] = []

    def stop(self) -> list[dict]:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.requests = [json.loads(line) for line in out.splitlines() if line.strip()]
        self.requests = [r for r in self.requests if r["path"] != "/ready"]
        subprocess.run(["rm", "-rf", str(self.folder)], check=False)
        return self.requests


def nobody_python() -> list[str]:
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", python]


def test_squatter_on_the_hub_port_gets_no_token(hub: HubProcess) -> None:
    where = Endpoint.parse((hub.state / "hub_api_url").read_text())
    hub.teamhub("group", "create", "squatgroup")
    hub.stop()
    assert where.scheme == "unix", "the hub announces its unix socket"
    # The hub's socket lives in a folder only the hub's account can write: no user can
    # put a socket there, or remove the one a stopped hub left, before or after.
    for code in ("socket.socket(socket.AF_UNIX).bind(sys.argv[1])", "os.unlink(sys.argv[1])"):
        tried = subprocess.run([*nobody_python(), "-c", f"import os, socket, sys; {code}",
                                where.socket_path], capture_output=True, text=True)
        assert tried.returncode != 0, f"user nobody could run {code} on the hub's socket"
        assert any(e in tried.stderr for e in ("PermissionError", "FileNotFoundError",
                                                "Address already in use")), tried.stderr
    # An announcement an older release left (a loopback TCP port, as before the socket)
    # must not make the CLI hand its token to whoever listens there now.
    port = free_port()
    (hub.state / "hub_api_url").write_text(f"http://127.0.0.1:{port}/hub/api\n")
    where = Endpoint.parse((hub.state / "hub_api_url").read_text())
    squatter = Squatter(where.port)
    try:
        outcomes = {
            "passwd": hub.teamhub("user", "passwd", hub.u, "--password-stdin",
                                  input=NEW_PASSWORD + "\n", check=False),
            "logout": hub.teamhub("user", "logout", hub.u, check=False),
            "block": hub.teamhub("user", "block", hub.u, check=False),
            "admin": hub.teamhub("user", "admin", hub.u, "--on", check=False),
            "group": hub.teamhub("group", "add", "squatgroup", hub.u, check=False),
            "remove": hub.teamhub("user", "remove", hub.w, "--yes", check=False),
        }
    finally:
        sent = squatter.stop()
    leaked = [r for r in sent if "authorization" in {k.lower() for k in r["headers"]}]
    assert not leaked, f"the CLI sent its token to a squatter: {leaked[0]}"
    pid = str(squatter.proc.pid)
    for what, proc in outcomes.items():
        assert "running hub" not in proc.stdout, f"{what}: claims the hub did it: {proc.stdout}"
        assert proc.returncode != 0, f"{what} succeeded against a squatter: {proc.stdout}"
        # The error names what answers (the setpriv'd process keeps setpriv's pid).
        assert "nobody" in proc.stderr and pid in proc.stderr, f"{what}: {proc.stderr}"
    # Nothing was changed in the account store (each command checked the hub first).
    show = json.loads(hub.teamhub("user", "show", hub.u, "--json").stdout)
    assert show["blocked"] is False and show["admin"] is False
    assert json.loads(hub.teamhub("group", "list", "--json").stdout)["squatgroup"] == []
    assert hub.u in hub.teamhub("user", "list").stdout and hub.w in hub.teamhub(
        "user", "list").stdout
    hub.start()
    assert Browser(hub.url).login(hub.u, PASSWORD).status_code == 302


def test_cli_token_is_new_at_every_start(hub: HubProcess) -> None:
    old = cli_token(hub)
    assert api_status(hub, old) == 200
    assert (hub.state / "cli_api_token").stat().st_mode & 0o777 == 0o600
    hub.stop()
    hub.start()
    new = cli_token(hub)
    assert new != old
    assert api_status(hub, new) == 200
    assert api_status(hub, old) == 403, "the previous start's CLI token still works"
    assert (hub.state / "cli_api_token").stat().st_mode & 0o777 == 0o600


def test_frozen_hub_database_is_never_written(hub: HubProcess) -> None:
    victim, other = unique("fz"), unique("fo")
    for name in (victim, other):
        hub.add_user(name, PASSWORD)
    b = Browser(hub.url)
    assert b.login(victim, PASSWORD).status_code == 302 and b.logged_in()
    pid = hub.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = db_files(hub)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
        cmd = [str(runtime_dir() / "bin" / "teamhub"), "--config", str(hub.config)]
        started = time.monotonic()
        calls = {
            "logout": subprocess.Popen([*cmd, "user", "logout", victim], env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            "remove": subprocess.Popen([*cmd, "user", "remove", victim, "--yes"], env=env,
                                       text=True, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE),
            "passwd": subprocess.Popen([*cmd, "user", "passwd", other, "--password-stdin"],
                                       env=env, text=True, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        }
        outcomes = {w: p.communicate(NEW_PASSWORD + "\n" if w == "passwd" else None,
                                     timeout=90) for w, p in calls.items()}
        took = time.monotonic() - started
        # The hub database is exactly as the frozen hub left it: nobody wrote to it.
        assert db_files(hub) == frozen, "the hub database changed behind the frozen hub"
    finally:
        os.kill(pid, signal.SIGCONT)
    for what, (out, err) in outcomes.items():
        assert calls[what].returncode != 0, f"{what} acted behind a frozen hub: {out}{err}"
        assert "database" not in out, f"{what}: {out}"
        assert "did not answer" in err and str(pid) in err, f"{what}: {err}"
    assert took < 60
    # The account store is untouched: the victim is still a user, the password unchanged.
    assert victim in hub.teamhub("user", "list").stdout
    assert Browser(hub.url).login(other, PASSWORD).status_code == 302
    # The hub serves logins and its database is consistent; what it was asked before
    # it froze may still have been done by it (the victim's sessions ended): re-running
    # the command finishes the job through the hub.
    assert Browser(hub.url).login(victim, PASSWORD).status_code == 302
    again = hub.teamhub("user", "remove", victim, "--yes")
    assert f"removed user {victim}" in again.stdout
    assert Browser(hub.url).login(other, PASSWORD).status_code == 302
    log = hub.log.read_text(errors="replace")
    assert "StaleDataError" not in log and "PendingRollbackError" not in log
    with closing(sqlite3.connect(hub.state / "jupyterhub.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        names = {row[0] for row in db.execute("SELECT name FROM users")}
    assert victim not in names and other in names
