"""Run a real `teamhub up` (hub + configurable-http-proxy) on loopback ports."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from teamhub.hubclient import HubClient, Reply
from teamhub.paths import Paths
from teamhub.settings import load
from teamhub.system.users import lookup, remove_system_user

# The password test users get: long enough for every password rule the hubs here set.
PASSWORD = "correct horse battery"


def runtime_dir() -> Path:
    """The world-readable runtime the tests run from (run-tests.sh builds it)."""
    return Path(os.environ.get("TEAMHUB_TEST_RUNTIME") or sys.prefix)


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A loopback port free now, never one this process was given before (two calls in a
    row, e.g. for a hub's port and its http port, could otherwise get the same one)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def world_dir(prefix: str) -> Path:
    """A temp folder other users can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def _reachable(path: Path) -> bool:
    """Whether every folder on PATH's real location lets other users through."""
    real = Path(os.path.realpath(path))
    return all(p.stat().st_mode & stat.S_IXOTH for p in (*real.parents, real))


def unique(prefix: str = "u") -> str:
    return prefix + secrets.token_hex(3)


class HubProcess:
    """A teamhub hub in its own temp state, config and home folders.

    Hubs run unprivileged by default (hub.unprivileged; all share the account `teamhub`,
    which tests/conftest.py removes at the end if the suite made it): the hub's account
    must reach its state and config, so a ROOT other users cannot enter (pytest's tmp_path,
    under a 0700 folder) is replaced by a world-traversable folder of the hub's own,
    removed in cleanup(). UNPRIVILEGED: hub.unprivileged set explicitly (false: a root hub,
    for a test of root-hub behaviour)."""

    def __init__(self, root: Path | None = None, *, system_prefix: str = "tht-",
                 ip: str = "127.0.0.1", extra_toml: str = "",
                 unprivileged: bool | None = None) -> None:
        self.own_root = root is None or not _reachable(root)
        self.root = world_dir("teamhub-hub-") if self.own_root else Path(root)
        self.home_root = world_dir("teamhub-homes-")
        self.port = free_port()
        self.config = self.root / "teamhub.toml"
        self.state = self.root / "state"
        self.log = self.root / "hub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.system_prefix = system_prefix
        # The test's own folders (a projects root...), removed after the hub in cleanup().
        self.scratch: list[Path] = []
        self.config.write_text(
            f"""
[hub]
ip = "{ip}"
port = {self.port}
log_level = "DEBUG"
{"" if unprivileged is None else f"unprivileged = {str(unprivileged).lower()}"}

[paths]
state_dir = "{self.state}"
runtime_dir = "{runtime_dir()}"
home_root = "{self.home_root}"

[users]
system_prefix = "{system_prefix}"

# Off explicitly: this machine has no systemd as init, and with limits on `teamhub up`
# refuses to start where it cannot enforce them. tests/system/test_systemd_machine.py
# tests limits on a real systemd machine.
[limits]
enabled = false
{extra_toml}"""
        )

    @property
    def paths(self) -> Paths:
        return Paths.from_settings(load(self.config, environ={}))

    @property
    def url(self) -> str:
        # `localhost`, not 127.0.0.1: cookie jars ignore cookies from IP-address hosts.
        return f"http://localhost:{self.port}"

    def teamhub(self, *args: str, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(runtime_dir() / "bin" / "teamhub"), "--config", str(self.config), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env,
                              timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"teamhub {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
        return proc

    def api(self, method: str, path: str, body: object | None = None, *,
            token: str | None = None) -> Reply:
        """The hub's REST API as the CLI reaches it (announced URL, TCP or unix socket,
        verified to be this hub), with the CLI's token or TOKEN."""
        paths = Paths(config_file=self.config, state_dir=self.state, runtime_dir=runtime_dir(),
                      home_root=self.home_root)
        client = HubClient.for_cli(paths)
        if token is not None:
            client = HubClient(client.url, token, client.identity)
        return client.call(method, path, body)

    def add_user(self, name: str, password: str, *extra: str) -> None:
        self.teamhub("user", "add", name, "--password-stdin", *extra, input=password + "\n")

    def start(self, *args: str, timeout: float = 90) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(runtime_dir() / "bin" / "teamhub"), "--config", str(self.config), "up",
             *args],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"teamhub up exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(f"{self.url}/hub/login", timeout=2).status_code == 200:
                    self._check_runs_as_set(self.proc.pid)
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"hub did not answer within {timeout}s:\n{self.tail()}")

    def _check_runs_as_set(self, pid: int) -> None:
        """The hub runs as hub.unprivileged says (its account by default, root when a test
        sets it false): what the tests below then test is what they mean to."""
        settings = load(self.config, environ={})
        uids = Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[:4]
        if settings["hub.unprivileged"]:
            expected = str(pwd.getpwnam(settings["hub.account"]).pw_uid)
        else:
            expected = "0"
        assert uids == [expected] * 4, f"the hub runs with uids {uids}, not {expected}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def make_server_die_at_start(self, browser: Any, name: str) -> None:
        """Start NAME's server once (so the Linux account and home exist), stop it, and plant
        a ~/.jupyter config that makes every later start of it exit with
        'config-says-no-thanks'. Only in hubs that read users' config (see
        `c.Spawner.disable_user_config`)."""
        browser.start_server(name)
        stop = browser.http.delete(f"{self.url}/hub/api/users/{name}/server",
                                   headers={"X-XSRFToken": browser._xsrf("/hub/")}, timeout=60)
        assert stop.status_code in (202, 204), stop.status_code
        account = pwd.getpwnam(self.system_user(name))
        confdir = os.path.join(account.pw_dir, ".jupyter")
        os.makedirs(confdir, exist_ok=True)
        conf = os.path.join(confdir, "jupyter_server_config.py")
        with open(conf, "w") as f:
            f.write("raise SystemExit('config-says-no-thanks')\n")
        for path in (confdir, conf):
            os.chown(path, account.pw_uid, account.pw_gid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "" not in browser.get(f"/hub/api/users/{name}").json().get("servers", {}):
                return
            time.sleep(0.2)

    def system_user(self, name: str) -> str:
        return self.system_prefix + name

    def _kill_pidfile(self, name: str) -> None:
        try:
            pid = int((self.state / name).read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass

    def cleanup(self) -> None:
        """Stop the hub and proxy, remove every Linux account it made, delete its folders."""
        self.stop()
        self._kill_pidfile("proxy.pid")
        shutil.rmtree(self.paths.socket_dir, ignore_errors=True)
        # Root's folder beside the state folder (Paths.root_dir), or an old layout's state.
        root_dir = self.state.with_name(self.state.name + "-root")
        for registry in (root_dir / "system_users.json", self.state / "system_users.json"):
            if not registry.exists():
                continue
            import json

            for name in json.loads(registry.read_text()):
                account = lookup(name)
                remove_system_user(name, registry=registry)
                if account is not None:
                    shutil.rmtree(f"/run/teamhub/{account.uid}", ignore_errors=True)
        shutil.rmtree(root_dir, ignore_errors=True)
        shutil.rmtree(self.home_root, ignore_errors=True)
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)


# hub_factory (tests/hub/conftest.py): makes a HubProcess with these keyword arguments in a
# fresh temp folder, and cleans it up when the test module is done.
HubFactory = Callable[..., HubProcess]
