"""The two hubs under test, each in its own temp folders on free loopback ports.

`TeamhubHub` runs a real `teamhub up` from an installed runtime prefix, with
users added by `teamhub user add`. `VanillaHub` is JupyterHub as a tutorial sets
it up: a venv from the system Python with `pip install jupyterhub jupyterlab`
(same versions as teamhub's runtime), PAMAuthenticator with Linux users made by
useradd + chpasswd, LocalProcessSpawner, configurable-http-proxy, default timeouts.

Both get the same configurable-http-proxy program (teamhub's) and the proxy's API
token through CONFIGPROXY_AUTH_TOKEN, which JupyterHub reads by default, so the
bench can time route changes against the proxy itself. Everything a hub creates
(Linux accounts, processes, folders) is removed by `cleanup`, which is safe to
call after a partial start.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from teamhub.system.processes import end_processes

Echo = Callable[[str], None]

CACHE_DIR = Path("/var/cache/teamhub-bench")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runtime_versions(python: Path) -> dict[str, str]:
    code = ("import json; from importlib.metadata import version as v; "
            "print(json.dumps({p: v(p) for p in ('jupyterhub', 'jupyterlab')}))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def ensure_vanilla_venv(versions: dict[str, str], echo: Echo,
                        cache_dir: Path = CACHE_DIR) -> Path:
    """A cached venv with exactly VERSIONS of jupyterhub and jupyterlab, built the way
    the tutorials say (system Python, venv, pip from the package index)."""
    name = "vanilla-" + "-".join(f"{k}-{v}" for k, v in sorted(versions.items()))
    venv = cache_dir / name
    done = venv / ".complete"
    if done.exists():
        return venv
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.chmod(0o755)
    # Two bench runs at once (a test and a person) must not build into the same folder.
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _build_venv(venv, versions, echo)
            done.touch()
    return venv


def _build_venv(venv: Path, versions: dict[str, str], echo: Echo) -> None:
    echo(f"building the vanilla JupyterHub venv in {venv} (cached for next runs)")
    shutil.rmtree(venv, ignore_errors=True)  # an interrupted build is started over
    # Users' servers run from this venv: it must be readable by everyone.
    old = os.umask(0o022)
    try:
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        pins = [f"{k}=={v}" for k, v in sorted(versions.items())]
        proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                               "--disable-pip-version-check", *pins],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(pins)} failed in {venv}:\n"
                               f"{proc.stderr[-2000:]}")
    finally:
        os.umask(old)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}:\n{tail(log)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{tail(log)}")


def tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _kill_pidfile(pidfile: Path, must_contain: str) -> None:
    """End the process named in PIDFILE if it still is the program we expect."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return
    if must_contain in cmdline:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


class Hub:
    """What the measurements need from either hub."""

    label = ""

    def __init__(self, proxy_cmd: Path, echo: Echo) -> None:
        self.echo = echo
        self.proxy_cmd = proxy_cmd
        self.work = Path(tempfile.mkdtemp(prefix=f"teamhub-bench-{self.label}-"))
        self.log = self.work / "hub.log"
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_port = free_port()
        self.proxy_token = secrets.token_hex(32)
        self.api_token = ""
        self.users: dict[str, str] = {}  # hub user name -> password
        self.prefix = ""  # of every Linux account this hub's users get
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def proxy_api(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def system_name(self, name: str) -> str:
        raise NotImplementedError

    def uid(self, name: str) -> int:
        return pwd.getpwnam(self.system_name(name)).pw_uid

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"http://127.0.0.1:{self.hub_port}/hub/api{path}",
                                headers={"Authorization": f"token {self.api_token}"},
                                timeout=60, **kw)

    def _launch(self, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        env = {**env, "CONFIGPROXY_AUTH_TOKEN": self.proxy_token}
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                         start_new_session=True)
        _wait_http(f"{self.url}/hub/login", self.proc, self.log, timeout=120)

    def stop_servers(self, timeout: float = 120) -> None:
        """Stop every user's server through the REST API and wait until all are gone."""
        for name in self.users:
            self.api("DELETE", f"/users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [n for n in self.users
                    if (r := self.api("GET", f"/users/{n}")).status_code == 200
                    and (r.json().get("servers") or r.json().get("pending"))]
            if not busy:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{self.label}: servers of {busy} did not stop within {timeout}s")

    def _stop_hub(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self) -> None:
        raise NotImplementedError


class TeamhubHub(Hub):
    label = "teamhub"

    def __init__(self, prefix: Path, proxy_cmd: Path, echo: Echo) -> None:
        super().__init__(proxy_cmd, echo)
        self.runtime = prefix / "runtime"
        self.prefix = "thb" + secrets.token_hex(2) + "-"
        self.state = self.work / "state"
        self.config = self.work / "teamhub.toml"
        self.home_root = self.work / "homes"
        self.home_root.mkdir()
        for path in (self.work, self.home_root):
            path.chmod(0o755)  # homes live below: their owners must be able to reach them
        self.config.write_text(f"""
[hub]
ip = "127.0.0.1"
port = {self.port}
internal_port = {self.hub_port}

[paths]
state_dir = "{self.state}"
runtime_dir = "{self.runtime}"
home_root = "{self.home_root}"

[users]
system_prefix = "{self.prefix}"

[proxy]
api_port = {self.proxy_port}
command = "{proxy_cmd}"

[envs]
root = "{self.work / 'envs'}"

[projects]
root = "{self.work / 'projects'}"
""")

    def system_name(self, name: str) -> str:
        return self.prefix + name

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}

    def teamhub(self, *args: str, input: str | None = None) -> None:
        proc = subprocess.run([str(self.runtime / "bin" / "teamhub"), "--config",
                               str(self.config), *args], input=input, capture_output=True,
                              text=True, env=self._env(), timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"teamhub {' '.join(args)} failed: {proc.stderr}{proc.stdout}")

    def start(self) -> None:
        self._launch([str(self.runtime / "bin" / "teamhub"), "--config", str(self.config),
                      "up"], self._env(), self.work)
        self.api_token = (self.state / "cli_api_token").read_text().strip()

    def add_users(self, names: list[str]) -> None:
        for name in names:
            password = secrets.token_urlsafe(12)
            self.teamhub("user", "add", name, "--password-stdin", input=password + "\n")
            self.users[name] = password

    def cleanup(self) -> None:
        from teamhub.system.users import lookup, remove_system_user

        try:
            if self.proc is not None and self.proc.poll() is None and self.users:
                self.stop_servers()  # teamhub keeps servers running across hub stops
        except Exception as exc:  # cleanup goes on regardless
            self.echo(f"{self.label}: stopping servers failed ({exc}); ending processes")
        self._stop_hub()
        _kill_pidfile(self.state / "proxy.pid", "configurable-http-proxy")
        registry = self.state / "system_users.json"
        if registry.exists():
            for sysname in json.loads(registry.read_text()):
                account = lookup(sysname)
                try:
                    remove_system_user(sysname, registry=registry)
                except Exception as exc:
                    self.echo(f"could not remove Linux account {sysname}: {exc}")
                if account is not None:
                    shutil.rmtree(f"/run/teamhub/{account.uid}", ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


VANILLA_CONFIG = """\
# JupyterHub as the tutorials set it up: PAM logins for Linux users, a local
# process per user, configurable-http-proxy. Only ports, the proxy program and a
# service token for the benchmark's own API calls are set.
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.command = ["{proxy_cmd}"]
c.JupyterHub.authenticator_class = "pam"
c.JupyterHub.spawner_class = "localprocess"
c.Authenticator.allowed_users = {users!r}
c.JupyterHub.services = [{{"name": "bench", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{"name": "bench", "services": ["bench"],
    "scopes": ["admin:users", "admin:servers", "list:users", "read:users"]}}]
"""


class VanillaHub(Hub):
    label = "vanilla"

    def __init__(self, venv: Path, proxy_cmd: Path, echo: Echo) -> None:
        super().__init__(proxy_cmd, echo)
        self.venv = venv
        self.prefix = "thv" + secrets.token_hex(2) + "-"
        self.created: list[str] = []  # Linux accounts this run made

    def system_name(self, name: str) -> str:
        return name  # PAM: the hub user is the Linux user

    def add_users(self, names: list[str]) -> None:
        for short in names:
            name = self.prefix + short
            password = secrets.token_urlsafe(12)
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name],
                           check=True, capture_output=True)
            self.created.append(name)
            subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True,
                           capture_output=True)
            self.users[name] = password

    def start(self) -> None:
        self.api_token = secrets.token_hex(32)
        config = self.work / "jupyterhub_config.py"
        config.write_text(VANILLA_CONFIG.format(
            port=self.port, hub_port=self.hub_port, proxy_port=self.proxy_port,
            proxy_cmd=self.proxy_cmd, users=set(self.users), token=self.api_token))
        # As after `source venv/bin/activate`: the spawner finds jupyterhub-singleuser on PATH.
        env = {**os.environ, "PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}",
               "VIRTUAL_ENV": str(self.venv)}
        self._launch([str(self.venv / "bin" / "jupyterhub"), "-f", str(config)], env,
                     self.work)

    def cleanup(self) -> None:
        self._stop_hub()  # cleanup_servers (default True) stops the servers and the proxy
        _kill_pidfile(self.work / "jupyterhub-proxy.pid", "configurable-http-proxy")
        for name in self.created:
            try:
                end_processes(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue
            proc = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
            if proc.returncode not in (0, 12):  # 12: home could not be removed (reported)
                self.echo(f"userdel {name} failed: {proc.stderr.strip()}")
        shutil.rmtree(self.work, ignore_errors=True)
