"""The hubs under test, each in its own temp folders on free loopback ports.

`Hub` is what the measurements use of either hub; `TeamhubHub` runs a real
`teamhub up` from an installed runtime prefix, with users added by `teamhub user
add` (the vanilla JupyterHub is in vanilla.py).

Both hubs get the same configurable-http-proxy program (teamhub's). The vanilla hub
gets the proxy's API token through CONFIGPROXY_AUTH_TOKEN, which JupyterHub reads by
default; teamhub keeps its own (root-only, in its state folder) and its proxy's API on a
unix socket. Either way the bench can time route changes against the proxy itself.
Everything a hub creates (Linux accounts, processes, folders) is removed by
`cleanup`, which is safe to call after a partial start.
"""

from __future__ import annotations

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from teamhub.system import login_profile

from . import unixsocket
from .containers import remove_tagged

Echo = Callable[[str], None]


def free_ports(count: int) -> list[int]:
    """COUNT different free loopback ports: all held at once while they are picked (one
    at a time, the kernel may hand out the same port twice, and a hub's proxy then takes
    the port its hub wanted)."""
    held = [socket.socket() for _ in range(count)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


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


def kill_pidfile(pidfile: Path, must_contain: str) -> None:
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
        self.port, self.hub_port, self.proxy_port = free_ports(3)
        self.proxy_token = secrets.token_hex(32)
        self.api_token = ""
        self.users: dict[str, str] = {}  # hub user name -> password
        self.prefix = ""  # of every Linux account this hub's users get
        # Of every hub user name: with containers, names must not meet another run's.
        self.name_tag = ""
        # A shared environment's kernel (teamhub's `env-<name>`); vanilla has none.
        self.shared_env_kernel: str | None = None
        # Another one, whose first kernel is opened from its launcher card (teamhub's Lab
        # extension hints at it); vanilla has none.
        self.pointed_env_kernel: str | None = None
        # A third one, whose first kernel is opened from a link to a notebook of it (the
        # server reads the notebook's kernel as it serves the page); vanilla has none.
        self.linked_env_kernel: str | None = None
        # teamhub's envs.warm_kernels (an open JupyterLab starts warm kernel parents
        # unless it is off); vanilla has none.
        self.warm_kernels = "off"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def proxy_api(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def hub_api(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}/hub/api"

    def session(self) -> requests.Session:
        """A requests Session that reaches this hub's and proxy's APIs."""
        return requests.Session()

    def system_name(self, name: str) -> str:
        raise NotImplementedError

    def footprint(self) -> str:
        """What this hub leaves on the machine until cleanup (for the progress output)."""
        return f"Linux accounts {self.prefix}*"

    def container_name(self, name: str) -> str | None:
        """The container of NAME's server; None when servers are not containers."""
        return None

    def uid(self, name: str) -> int:
        return pwd.getpwnam(self.system_name(name)).pw_uid

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return self.session().request(method, f"{self.hub_api}{path}", timeout=60,
                                      headers={"Authorization": f"token {self.api_token}"}, **kw)

    def proxy_pid_file(self) -> Path:
        return self.work / "jupyterhub-proxy.pid"  # where JupyterHub writes it

    def service_pids(self) -> list[int]:
        """The hub's own processes: the hub and every root process below it (users' servers
        run as their accounts), and the proxy, wherever it was started from."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                if os.stat(f"/proc/{entry}").st_uid != 0:
                    continue
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        ours = {self.proc.pid}
        grew = True
        while grew:
            below = {pid for pid, ppid in parents.items() if ppid in ours} - ours
            grew = bool(below)
            ours |= below
        try:
            ours.add(int(self.proxy_pid_file().read_text().strip()))
        except (OSError, ValueError):
            pass
        return sorted(ours)

    def _launch(self, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        env = {**env, "CONFIGPROXY_AUTH_TOKEN": self.proxy_token}
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                         start_new_session=True)
        _wait_http(f"{self.url}/hub/login", self.proc, self.log, timeout=120)

    def stop_servers(self, timeout: float = 120) -> None:
        """Stop every user's server through the REST API, all requests at once (as an
        admin stopping everyone would), and wait until all are gone."""
        with ThreadPoolExecutor(max_workers=max(len(self.users), 1)) as pool:
            list(pool.map(lambda n: self.api("DELETE", f"/users/{n}/server"), self.users))
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

    def __init__(self, prefix: Path, proxy_cmd: Path, echo: Echo,
                 image: str | None = None, unprivileged: bool = False,
                 warm_kernels: str | None = None) -> None:
        """With IMAGE (a `teamhub image build` name), the docker backend runs from it; with
        UNPRIVILEGED, hub.unprivileged (a hub account of its own, removed at the end); without
        it a root hub (hub.unprivileged = false, set explicitly: the default is on). With
        WARM_KERNELS, that `envs.warm_kernels` instead of the default."""
        super().__init__(proxy_cmd, echo)
        self.warm_kernels = warm_kernels or "on-demand"
        self.runtime = prefix / "runtime"
        self.prefix = "thb" + secrets.token_hex(2) + "-"
        self.image = image
        if image:
            self.name_tag = "t" + secrets.token_hex(3) + "-"
        self.hub_account = "thbh" + secrets.token_hex(3) if unprivileged else ""
        # `teamhub up` writes the login profile for its accounts; the machine gets back
        # what it had (none on a fresh machine, a real install's otherwise).
        self.login_profile = login_profile.DEFAULT_PATH
        self.login_profile_before = (self.login_profile.read_bytes()
                                     if self.login_profile.exists() else None)
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
{f'account = "{self.hub_account}"{chr(10)}unprivileged = true' if unprivileged
 else "unprivileged = false"}

[paths]
state_dir = "{self.state}"
runtime_dir = "{self.runtime}"
home_root = "{self.home_root}"

[users]
system_prefix = "{self.prefix}"

[proxy]
command = "{proxy_cmd}"

[envs]
root = "{self.work / 'envs'}"
{f'warm_kernels = "{warm_kernels}"' if warm_kernels else ""}

[projects]
root = "{self.work / 'projects'}"

[limits]
# Per-user limits need systemd as init; without it teamhub refuses to start with
# them on, so they are measured where they can be enforced and off elsewhere.
# Containers run without limits, as the vanilla DockerSpawner's do.
enabled = {"true" if Path("/run/systemd/system").is_dir() and not image else "false"}
""")
        if image:
            with self.config.open("a") as f:
                f.write(f'\n[spawner]\nbackend = "docker"\n\n[docker]\nimage = "{image}"\n')

    def system_name(self, name: str) -> str:
        return self.prefix + name

    def proxy_pid_file(self) -> Path:
        return self.state / "proxy.pid"

    def footprint(self) -> str:
        if self.image:
            return f"Linux accounts {self.prefix}*, containers teamhub-{self.name_tag}*"
        return super().footprint()

    def container_name(self, name: str) -> str | None:
        return f"teamhub-{name}" if self.image else None

    # teamhub's hub and proxy APIs are unix sockets (see README, "Sockets and ports"), and
    # its proxy's token is its own, kept in the state folder.
    @property
    def hub_api(self) -> str:
        return (self.state / "hub_api_url").read_text().strip()

    @property
    def proxy_api(self) -> str:
        from teamhub.hubconfig import unix_url

        return unix_url(self._paths().proxy_api_socket)

    def _paths(self):
        from teamhub.paths import Paths
        from teamhub.settings import load

        return Paths.from_settings(load(self.config, environ={}))

    def session(self) -> requests.Session:
        return unixsocket.session()

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
        self.proxy_token = (self.state / "proxy_auth_token").read_text().strip()
        # An environment with ipykernel alone: its kernels are timed beside the default's.
        self.teamhub("env", "create", "bench")
        self.shared_env_kernel = "env-bench"
        self.teamhub("env", "create", "bench-pointed")
        self.pointed_env_kernel = "env-bench-pointed"
        self.teamhub("env", "create", "bench-linked")
        self.linked_env_kernel = "env-bench-linked"

    def add_users(self, names: list[str]) -> None:
        from teamhub.system.users import ensure_system_user

        for name in names:
            password = secrets.token_urlsafe(12)
            self.teamhub("user", "add", name, "--password-stdin", input=password + "\n")
            self.users[name] = password
            # Their Linux accounts too, as vanilla's are (PAM needs them before a login):
            # both hubs then time logins and starts of a team that exists, not teamhub's
            # one-time `useradd` at a user's very first start (~0.26 s each, one at a
            # time; README, "Benchmarks").
            ensure_system_user(self.system_name(name), registry=self.registry,
                               home_root=self.home_root, shell="/bin/bash")

    @property
    def registry(self) -> Path:
        """teamhub's account registry: root's, beside the state folder (Paths.root_dir)."""
        return self.state.with_name(self.state.name + "-root") / "system_users.json"

    def cleanup(self) -> None:
        from teamhub.system.users import lookup, remove_system_user

        try:
            if self.proc is not None and self.proc.poll() is None and self.users:
                self.stop_servers()  # teamhub keeps servers running across hub stops
        except Exception as exc:  # cleanup goes on regardless
            self.echo(f"{self.label}: stopping servers failed ({exc}); ending processes")
        self._stop_hub()
        kill_pidfile(self.proxy_pid_file(), "configurable-http-proxy")
        if self.image:  # servers stopped through the API are gone; anything left goes
            remove_tagged(f"teamhub-{self.name_tag}", None, self.echo)
        registry = self.registry
        if registry.exists():
            for sysname in json.loads(registry.read_text()):
                account = lookup(sysname)
                try:
                    remove_system_user(sysname, registry=registry)
                except Exception as exc:
                    self.echo(f"could not remove Linux account {sysname}: {exc}")
                if account is not None:
                    shutil.rmtree(f"/run/teamhub/{account.uid}", ignore_errors=True)
        if self.config.exists():
            shutil.rmtree(self._paths().socket_dir, ignore_errors=True)
        if self.hub_account:
            subprocess.run(["userdel", self.hub_account], capture_output=True)
        if self.login_profile_before is None:
            self.login_profile.unlink(missing_ok=True)
        else:
            self.login_profile.write_bytes(self.login_profile_before)
        shutil.rmtree(self.work, ignore_errors=True)
