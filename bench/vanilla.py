"""Vanilla JupyterHub as a tutorial sets it up.

A venv from the system Python with `pip install jupyterhub jupyterlab` (the same
versions as teamhub's runtime, cached between runs), PAMAuthenticator with Linux
users made by useradd + chpasswd, LocalProcessSpawner, configurable-http-proxy,
default timeouts.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from teamhub.system.processes import end_processes

from .hubs import Echo, Hub, kill_pidfile

CACHE_DIR = Path("/var/cache/teamhub-bench")


def runtime_versions(python: Path,
                     packages: tuple[str, ...] = ("jupyterhub", "jupyterlab")) -> dict[str, str]:
    code = ("import json, sys; from importlib.metadata import version as v; "
            "print(json.dumps({p: v(p) for p in sys.argv[1:]}))")
    out = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def ensure_vanilla_venv(versions: dict[str, str], echo: Echo,
                        cache_dir: Path = CACHE_DIR) -> Path:
    """A cached venv with exactly VERSIONS of jupyterhub and jupyterlab, built the way
    the tutorials say (system Python, venv, pip from the package index)."""
    name = "vanilla-" + "-".join(f"{k}-{v}" for k, v in sorted(versions.items()))
    return ensure_venv(name, [f"{k}=={v}" for k, v in sorted(versions.items())], echo,
                       cache_dir)


def ensure_venv(name: str, requirements: list[str], echo: Echo,
                cache_dir: Path = CACHE_DIR) -> Path:
    """CACHE_DIR/NAME: a venv of /usr/bin/python3 with REQUIREMENTS, built once."""
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
            _build_venv(venv, requirements, echo)
            done.touch()
    return venv


def _build_venv(venv: Path, requirements: list[str], echo: Echo) -> None:
    echo(f"building the vanilla venv {venv} (cached for next runs)")
    shutil.rmtree(venv, ignore_errors=True)  # an interrupted build is started over
    # Users' servers run from this venv: it must be readable by everyone.
    old = os.umask(0o022)
    try:
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                               "--disable-pip-version-check", *requirements],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} failed in {venv}:\n"
                               f"{proc.stderr[-2000:]}")
    finally:
        os.umask(old)


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
        kill_pidfile(self.proxy_pid_file(), "configurable-http-proxy")
        for name in self.created:
            try:
                end_processes(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue
            proc = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
            if proc.returncode not in (0, 12):  # 12: home could not be removed (reported)
                self.echo(f"userdel {name} failed: {proc.stderr.strip()}")
        shutil.rmtree(self.work, ignore_errors=True)
