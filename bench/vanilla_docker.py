"""Vanilla JupyterHub + DockerSpawner + NativeAuthenticator, as hand-made setups run it.

Those setups (a docker-compose file, the hub image with `pip install dockerspawner
jupyterhub-nativeauthenticator`, a jupyterhub_config.py reading `SPAWNER_*` and `HUB_*`
environment variables) are reproduced here with the hub on this machine instead of in
a container of its own (the same programs; the hub in a container would add the
Docker socket mount and nothing measurable):

- a venv of /usr/bin/python3 with `pip install jupyterhub==X dockerspawner
  jupyterhub-nativeauthenticator` (X = teamhub's JupyterHub; the other two the
  latest on the package index when the venv is first built, cached afterwards and
  reported in the results);
- DockerSpawner on the host network with the documented workaround for it:
  `use_internal_ip = True` (otherwise DockerSpawner adds port bindings, which Docker
  refuses with host networking: "host" network_mode is incompatible with
  port_bindings, dockerspawner issue #462) and `get_ip_and_port` overridden to
  return `host_ip, port` (as dockerspawner's own docstring of that method says for
  network_mode=host); since every container shares the host's ports, each start
  takes a free random port (otherwise every server would want 8888);
- per-user volumes `jupyterhub-user-{username}` at /home/jovyan/work, containers
  removed on stop (SPAWNER_REMOVE), default timeouts, default concurrency;
- users sign up through NativeAuthenticator's form and an admin authorizes each at
  /hub/authorize/<name>, as on those hubs.

Three things differ from those setups, none of them about speed: the servers listen
on 127.0.0.1 instead of all interfaces (nothing here may be reachable from outside),
`pull_policy = "never"` (nothing is ever pulled here; with the image present the
default policy pulls nothing either), and a do-nothing `statsd` timer for
NativeAuthenticator's login handler, without which no one can log in on JupyterHub 6
(see the config).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import requests

from .containers import remove_tagged
from .hubs import Echo, Hub, kill_pidfile
from .vanilla import CACHE_DIR, ensure_venv

SPAWNER_PACKAGES = ("dockerspawner", "jupyterhub-nativeauthenticator")
_XSRF_FIELD = re.compile(r'name="_xsrf"\s+value="([^"]+)"')
# NativeAuthenticator's signup page answers 200 either way; its alert says how it went.
_ALERT = re.compile(r'<div class="alert ([^"]*)"[^>]*>(.*?)</div>', re.S)

VANILLA_DOCKER_CONFIG = """\
# JupyterHub + DockerSpawner + NativeAuthenticator as the hand-made docker-compose
# setups configure it: the servers' settings come from environment variables.
import os

import nativeauthenticator
from dockerspawner import DockerSpawner
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from jupyterhub.utils import random_port

c = get_config()  # noqa: F821

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.command = ["{proxy_cmd}"]

# NativeAuthenticator: users sign up, an admin authorizes them; it lets in only
# authorized users itself, so JupyterHub's own allow list is open.
c.JupyterHub.authenticator_class = "native"
c.JupyterHub.template_paths = [os.path.join(os.path.dirname(nativeauthenticator.__file__),
                                            "templates")]
c.Authenticator.admin_users = {{os.environ["HUB_ADMIN_USER"]}}
c.Authenticator.allow_all = True


# NativeAuthenticator 1.3.0's login handler times logins with JupyterHub's statsd
# client, which JupyterHub 6 removed: every form login fails with HTTP 500
# ('LoginHandler' object has no attribute 'statsd'). The smallest fix: a timer that
# does nothing (only where the attribute is missing).
class _NoTimer:
    def start(self):
        return self

    def stop(self, send=True):
        pass


class _NoStatsd:
    def timer(self, *args, **kwargs):
        return _NoTimer()


if not hasattr(NativeLoginHandler, "statsd"):
    NativeLoginHandler.statsd = _NoStatsd()


class HostNetworkDockerSpawner(DockerSpawner):
    \"\"\"The documented workaround for network_mode=host.\"\"\"

    async def start(self):
        # Every container shares the host's ports: each server gets a free one.
        self.port = random_port()
        return await super().start()

    async def get_ip_and_port(self):
        return self.host_ip, self.port


c.JupyterHub.spawner_class = HostNetworkDockerSpawner
c.DockerSpawner.image = os.environ["SPAWNER_NOTEBOOK_IMAGE"]
c.DockerSpawner.network_name = os.environ.get("SPAWNER_NETWORK_NAME", "host")
# Without it DockerSpawner adds port bindings, which Docker refuses on the host network.
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.ip = "127.0.0.1"
c.DockerSpawner.pull_policy = "never"
notebook_dir = os.environ.get("SPAWNER_NOTEBOOK_DIR", "/home/jovyan/work")
c.DockerSpawner.notebook_dir = notebook_dir
c.DockerSpawner.volumes = {{"jupyterhub-user-{{username}}": notebook_dir}}
c.DockerSpawner.remove = os.environ.get("SPAWNER_REMOVE", "true").lower() == "true"
if os.environ.get("SPAWNER_MEM_LIMIT"):
    c.DockerSpawner.mem_limit = os.environ["SPAWNER_MEM_LIMIT"]
if os.environ.get("SPAWNER_CPU_LIMIT"):
    c.DockerSpawner.cpu_limit = float(os.environ["SPAWNER_CPU_LIMIT"])
if os.environ.get("HUB_CONCURRENT_SPAWN_LIMIT"):
    c.JupyterHub.concurrent_spawn_limit = int(os.environ["HUB_CONCURRENT_SPAWN_LIMIT"])

# The benchmark's own API calls (stopping servers, reading users).
c.JupyterHub.services = [{{"name": "bench", "api_token": os.environ["BENCH_API_TOKEN"]}}]
c.JupyterHub.load_roles = [{{"name": "bench", "services": ["bench"],
    "scopes": ["admin:users", "admin:servers", "list:users", "read:users"]}}]
"""


def vanilla_docker_config(port: int, hub_port: int, proxy_port: int, proxy_cmd: Path) -> str:
    return VANILLA_DOCKER_CONFIG.format(port=port, hub_port=hub_port, proxy_port=proxy_port,
                                        proxy_cmd=proxy_cmd)


def vanilla_docker_env(image: str, admin: str, api_token: str) -> dict[str, str]:
    """What the compose file's `environment:` gives the hub: only the image is set; memory,
    CPU and concurrency stay at their defaults, as teamhub's side runs without limits."""
    return {"SPAWNER_NOTEBOOK_IMAGE": image, "SPAWNER_REMOVE": "true",
            "HUB_ADMIN_USER": admin, "BENCH_API_TOKEN": api_token}


def ensure_vanilla_docker_venv(jupyterhub: str, echo: Echo,
                               cache_dir: Path = CACHE_DIR) -> Path:
    return ensure_venv(f"vanilla-docker-jupyterhub-{jupyterhub}",
                       [f"jupyterhub=={jupyterhub}", *SPAWNER_PACKAGES], echo, cache_dir)


def form_xsrf(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=60)
    found = _XSRF_FIELD.search(page.text)
    if page.status_code != 200 or not found:
        raise RuntimeError(f"GET {url}: HTTP {page.status_code}, no _xsrf field")
    return found.group(1)


class VanillaDockerHub(Hub):
    label = "vanilla"

    def __init__(self, venv: Path, image: str, proxy_cmd: Path, echo: Echo) -> None:
        super().__init__(proxy_cmd, echo)
        self.venv = venv
        self.image = image
        # Every hub user name starts with it, so its containers and volumes are found.
        # Letters and digits only: DockerSpawner escapes anything else in container
        # names ("-" becomes "-2d").
        self.name_tag = "v" + secrets.token_hex(3)
        self.admin = self.name_tag + "admin"
        self.admin_password = secrets.token_urlsafe(12)
        self.admin_http: requests.Session | None = None

    def footprint(self) -> str:
        return (f"containers jupyter-{self.name_tag}*, volumes "
                f"jupyterhub-user-{self.name_tag}*")

    def container_name(self, name: str) -> str:
        return f"jupyter-{name}"  # DockerSpawner's default name_template, nothing escaped

    def start(self) -> None:
        self.api_token = secrets.token_hex(32)
        config = self.work / "jupyterhub_config.py"
        config.write_text(vanilla_docker_config(self.port, self.hub_port, self.proxy_port,
                                                self.proxy_cmd))
        env = {**os.environ, "PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}",
               "VIRTUAL_ENV": str(self.venv),
               **vanilla_docker_env(self.image, self.admin, self.api_token)}
        self._launch([str(self.venv / "bin" / "jupyterhub"), "-f", str(config)], env,
                     self.work)
        # The admin signs up first (admins are authorized at signup) and logs in.
        self._signup(self.admin, self.admin_password)
        self.admin_http = requests.Session()
        xsrf = form_xsrf(self.admin_http, f"{self.url}/hub/login")
        resp = self.admin_http.post(f"{self.url}/hub/login", allow_redirects=False, timeout=60,
                                    data={"username": self.admin, "_xsrf": xsrf,
                                          "password": self.admin_password})
        if resp.status_code != 302:
            raise RuntimeError(f"{self.label}: admin login failed: HTTP {resp.status_code}")

    def _signup(self, name: str, password: str) -> None:
        with requests.Session() as http:
            xsrf = form_xsrf(http, f"{self.url}/hub/signup")
            resp = http.post(f"{self.url}/hub/signup", timeout=60, data={
                "username": name, "signup_password": password,
                "signup_password_confirmation": password, "_xsrf": xsrf})
        alert = _ALERT.search(resp.text)
        if resp.status_code != 200 or (alert and "alert-danger" in alert.group(1)):
            said = re.sub(r"\s+", " ", alert.group(2)).strip() if alert else ""
            raise RuntimeError(f"{self.label}: signing up {name} failed: "
                               f"HTTP {resp.status_code} {said}")

    def add_users(self, names: list[str]) -> None:
        assert self.admin_http is not None, "start() first"
        for short in names:
            name = short
            password = secrets.token_urlsafe(12)
            self._signup(name, password)
            resp = self.admin_http.get(f"{self.url}/hub/authorize/{name}", timeout=60)
            if resp.status_code != 200:
                raise RuntimeError(f"{self.label}: authorizing {name} failed: "
                                   f"HTTP {resp.status_code}")
            self.users[name] = password

    def cleanup(self) -> None:
        if self.admin_http is not None:
            self.admin_http.close()
        self._stop_hub()  # cleanup_servers (default True) stops and removes the containers
        kill_pidfile(self.work / "jupyterhub-proxy.pid", "configurable-http-proxy")
        remove_tagged(f"jupyter-{self.name_tag}", f"jupyterhub-user-{self.name_tag}",
                      self.echo)
        shutil.rmtree(self.work, ignore_errors=True)

