"""JupyterHub's proxy class for teamhub: the proxy outlives the hub, so its ports never fall free.

JupyterHub's own ConfigurableHTTPProxy kills whatever proxy it finds at start and starts a
new one, so every hub restart left the public port free for a moment, for anyone to take.
TeamhubProxy instead leaves the proxy running when the hub stops (`cleanup_proxy` off) and,
at the next start, adopts it when it is the very proxy the hub would start now (same
program, options, certificate: a fingerprint kept beside its pid) and answers on its API;
only otherwise is it replaced. Under systemd the proxy is moved into a scope of its own
(in teamhub.slice), so stopping or restarting teamhub.service leaves it running too.

With hub.unprivileged the hub cannot do either of what a proxy on port 80/443 needs (bind
a port below 1024, make a scope): the root helper starts it instead (`start_proxy`,
spawners.rootdoor), from root's own policy and the token alone, and the hub treats it as
an adopted proxy; a proxy that dies is started again the same way.

The proxy's API listens on a unix socket in a root-only folder, and its token is kept
(root-only) in the state folder so that a restarted hub can still talk to it; a new token
is made whenever a new proxy starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import time
from pathlib import Path
from subprocess import DEVNULL, Popen
from urllib.parse import unquote, urlparse

from aiohttp import ClientTimeout
from jupyterhub.httpclient import fetch
from jupyterhub.objects import Server
from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.utils import url_path_join
from tornado.ioloop import PeriodicCallback
from traitlets import Integer, Unicode, default

from ..errors import SystemdError
from ..spawners.forkserver import RootHelper
from ..system import systemd
from . import LAUNCHER, launcher_argv, start_time

READY_TIMEOUT = 15


class RunningProxy:
    """A proxy started by an earlier hub: as much of subprocess.Popen as JupyterHub uses."""

    def __init__(self, pid: int, started: str) -> None:
        self.pid = pid
        self.started = started

    def poll(self) -> int | None:
        return None if start_time(self.pid) == self.started else -1

    def terminate(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    def __enter__(self) -> RunningProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class TeamhubProxy(ConfigurableHTTPProxy):
    node = Unicode("node", config=True, help="The node program that runs the launcher.")
    chp_library = Unicode(config=True, help="configurable-http-proxy's lib/configproxy.js.")
    record_file = Unicode(config=True, help="Where the running proxy's pid and fingerprint "
                          "are kept (root-only).")
    token_file = Unicode(config=True, help="Where the running proxy's API token is kept.")
    redirect_port = Integer(0, config=True, help="Plain-HTTP port redirecting to HTTPS; 0: none.")
    systemd_slice = Unicode("", config=True, help="Move the proxy into a scope of its own in "
                            "this slice (so that it outlives teamhub.service); empty: stay.")
    helper_socket = Unicode("", config=True, help="The root helper that starts the proxy "
                            "(hub.unprivileged: the hub cannot bind a port below 1024 nor "
                            "make scopes); empty: the hub starts it itself.")

    _watch = None
    # The adopted proxy, or the one this hub launched (JupyterHub's trait is untyped).
    proxy_process: RunningProxy | Popen[bytes]

    @default("auth_token")
    def _token_from_file(self) -> str:
        try:
            return Path(self.token_file).read_text().strip()
        except OSError:
            return ""

    def _argv(self) -> list[str]:
        public = Server.from_url(self.public_url)
        api = urlparse(self.api_url)
        if api.scheme != "http+unix":
            raise ValueError(f"the proxy API must be a unix socket, not {self.api_url}")
        return launcher_argv(node=self.node, chp=self.chp_library, ip=public.ip,
                             port=public.port, api_socket=unquote(api.netloc),
                             error_target=url_path_join(self.hub.url, "error"),
                             log_level=self.log_level, host_routing=self.host_routing,
                             ssl_key=self.ssl_key or "", ssl_cert=self.ssl_cert or "",
                             redirect_port=self.redirect_port)

    def _fingerprint(self, argv: list[str]) -> str:
        """What makes a running proxy the one this hub would start: program, options, and the
        files it read at start (launcher, CHP itself, TLS pair)."""
        digest = hashlib.sha256(json.dumps(argv).encode())
        files = [LAUNCHER, Path(self.chp_library).parent.parent / "package.json"]
        files += [Path(p) for p in (self.ssl_cert, self.ssl_key) if p]
        for path in files:
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"missing:" + str(path).encode())
        return digest.hexdigest()

    def _recorded(self) -> tuple[RunningProxy | None, str]:
        try:
            record = json.loads(Path(self.record_file).read_text())
            proxy = RunningProxy(int(record["pid"]), str(record["started"]))
            return proxy, str(record["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, ""

    async def _answers(self, token: str) -> bool:
        """Whether a proxy answers on our API socket and takes TOKEN (a hung one: no)."""
        try:
            resp = await fetch(url_path_join(self.api_url, "api/routes"), raise_for_status=False,
                               headers={"Authorization": f"token {token}"},
                               timeout=ClientTimeout(total=5))
            resp.release()
        except Exception:  # noqa: BLE001 - any failure means: not (yet) our proxy
            return False
        return resp.status == 200

    async def start(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        argv = self._argv()
        fingerprint = self._fingerprint(argv)
        previous, recorded = self._recorded()
        if previous is not None and previous.poll() is None:
            token = self._token_from_file()
            if recorded == fingerprint and token and await self._answers(token):
                self.log.info("Adopting the running proxy (pid %i)", previous.pid)
                self.auth_token, self.proxy_process = token, previous
                self._start_watch()
                return
            self.log.warning("Replacing the running proxy (pid %i): it is not the proxy this "
                             "hub would start (other options or files), or it does not answer",
                             previous.pid)
            await self._end(previous)
        await self._launch(argv, fingerprint)
        self._start_watch()

    async def _end(self, proxy: RunningProxy) -> None:
        proxy.terminate()
        deadline = time.monotonic() + 10
        while proxy.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        proxy.kill()

    async def _launch(self, argv: list[str], fingerprint: str) -> None:
        token = secrets.token_hex(32)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        self.auth_token = token
        api_socket = Path(unquote(urlparse(self.api_url).netloc))
        api_socket.unlink(missing_ok=True)
        self.log.info("Starting proxy @ %s", self.public_url)
        self.log.debug("Proxy cmd: %s", argv)
        proc: RunningProxy | Popen[bytes]
        if self.helper_socket:
            proc, fingerprint = await self._launch_by_helper(argv, fingerprint, token)
        else:
            env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
                   "LANG": os.environ.get("LANG", "C.UTF-8"), "CONFIGPROXY_AUTH_TOKEN": token}
            # Its own session: a hub stopping (or a terminal closing) does not end it.
            proc = Popen(argv, env=env, start_new_session=True, umask=0o077, stdin=DEVNULL)
            if self.systemd_slice:
                await self._own_scope(proc.pid)
        self.proxy_process = proc
        started = start_time(proc.pid) or ""
        record = {"pid": proc.pid, "started": started, "fingerprint": fingerprint}
        Path(self.record_file).write_text(json.dumps(record) + "\n")
        Path(self.pid_file).write_text(str(proc.pid))
        deadline = time.monotonic() + READY_TIMEOUT
        while not await self._answers(token):
            if proc.poll() is not None:
                where = " (see its message above)" if isinstance(proc, Popen) else \
                    f" (see its log, {Path(self.record_file).parent / 'logs' / 'proxy.log'})"
                raise RuntimeError(f"the proxy exited at start{where}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the proxy did not answer within {READY_TIMEOUT}s")
            await asyncio.sleep(0.05)
        self.log.info("Proxy (pid %i) is up", proc.pid)

    async def _launch_by_helper(self, argv: list[str], fingerprint: str, token: str
                                ) -> tuple[RunningProxy, str]:
        """The root helper starts the proxy it was told of by root (spawners.rootdoor,
        `start_proxy`): the proxy and the fingerprint of what it runs."""
        answer = await RootHelper(Path(self.helper_socket)).start_proxy(token)
        proc = RunningProxy(int(answer["pid"]), str(answer["started"]))
        if answer.get("warning"):
            self.log.warning("Root helper: %s", answer["warning"])
        ran = [str(x) for x in answer.get("argv", [])]
        if ran != argv:
            self.log.warning("The proxy runs as root configured it when teamhub started, not "
                             "with this hub's settings (changed since?): restart teamhub as "
                             "root to apply them. It runs %s; this hub would run %s", ran, argv)
            fingerprint = self._fingerprint(ran)
        return proc, fingerprint

    async def _own_scope(self, pid: int) -> None:
        unit = f"teamhub-proxy-{pid}.scope"
        props = {"Description": "teamhub proxy", "Slice": self.systemd_slice,
                 "CollectMode": "inactive-or-failed"}
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, systemd.place_in_scope, pid, unit, props)
        except SystemdError as exc:
            self.log.warning("The proxy stays in the hub's cgroup (%s): it will stop and "
                             "restart with the hub", exc)

    def _start_watch(self) -> None:
        self._watch = PeriodicCallback(self.check_running, 1e3 * self.check_running_interval)
        self._check_running_callback = self._watch
        self._watch.start()
