"""Run each hub user's server in its own container on the local Docker engine.

The docker backend (`spawner.backend = "docker"`). Everything about the user's server is
worked out exactly as for the local backend (LocalSpawner: the Linux account made on
first need, project ACLs, the environment rebuilt from scratch, argv with the same
options, limits resolved from `limits.*` and the user's groups, a private runtime dir for
kernel sockets); only the last step differs: the LaunchSpec becomes a container
(teamhub.system.containers) instead of a process.

A root hub's Docker calls go straight to the Engine API (teamhub.system.docker), each on
a worker thread of its own, so many users can start at once; the hub's event loop never
waits on Docker. An unprivileged hub (hub.unprivileged) has no Docker socket: the root
helper's container verbs (teamhub.spawners.helper_container) make, inspect, stop and
read its containers; `roothelper.direct()` decides which. Either way the container is
built by the same code (teamhub.spawners.container_launch). The container id is kept in
the hub's state: a hub restart leaves containers running and re-adopts them.

Fast start (with the fork server on, the default): the container's command only holds
the container open, and the server is forked from the warm fork server into it
(teamhub.system.nsenter: its cgroups, namespaces and hardening), so it does not import
JupyterLab afresh in every container. The container still ends with its server (the
holder waits on a FIFO only the server holds open), so stop, poll and re-adoption are the
same for both ways. If entering fails, the server is its container's command, as before.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tornado import web
from traitlets import Dict, Integer, Unicode, default

from .. import image_choice
from ..errors import ContainerEnterError, DockerError, ImageError, NoFreePort
from ..system.containers import CgroupLimits, container_name_problem
from ..system.docker import Engine
from ..system.sandbox import LaunchSpec
from ..system.users import SystemUser
from ..system.users import lookup as users_lookup
from . import container_launch, forkserver, roothelper
from .container_launch import KEEPALIVE
from .local import SERVER_PORTS, LocalSpawner, SpawnFailed


def unix_socket_path(url: str) -> str | None:
    """The socket of an `http+unix://<percent-encoded path>/...` URL (None for TCP URLs)."""
    parts = urlsplit(url)
    if parts.scheme in ("http+unix", "unix+http") and unquote(parts.netloc).startswith("/"):
        return unquote(parts.netloc)
    return None


class DockerSpawner(LocalSpawner):
    """The user's JupyterLab as their own Linux account, in container `teamhub-<name>`."""

    image = Unicode(
        "base",
        help="""Image users' servers run from: a `teamhub image build` name (`base` →
        `teamhub/base:latest`) or a full local image reference. Never pulled.""",
    ).tag(config=True)

    allowed_images = Dict(
        help="""`docker.images`: more images users may choose on the spawn page besides
        `image` (name → {display, groups}); see teamhub.image_choice.""",
    ).tag(config=True)

    runtime_dir = Unicode(
        help="""The runtime (a venv of /usr/bin/python3), mounted read-only at the same path."""
    ).tag(config=True)

    envs_root = Unicode(
        "", help="""Shared environments folder, mounted read-only at the same path."""
    ).tag(config=True)

    home_mode = Unicode(
        "bind",
        help="""`bind`: the user's home folder on this machine, at the same path. `volume`:
        a named volume `teamhub-user-<name>` mounted at the home's path instead.""",
    ).tag(config=True)

    stop_timeout = Integer(
        10, help="""Seconds a stopping server gets before its container is killed."""
    ).tag(config=True)

    container_id = Unicode("")

    # The configured default, kept while `image` holds one start's choice.
    _default_image: str | None = None

    # Image choice: the spawn page's form, and the one check every start's options pass
    # (form, query or REST API alike), before anything is created.

    def image_options(self) -> list[image_choice.ImageOption]:
        if self._default_image is None:
            self._default_image = self.image
        return image_choice.allowed(self._default_image, self.allowed_images,
                                    [group.name for group in self.user.groups])

    @default("options_form")
    def _image_form(self):  # noqa: ANN202 - JupyterHub calls it with the spawner
        def form(spawner: DockerSpawner) -> str:
            stored = spawner.orm_spawner.user_options if spawner.orm_spawner else None
            chosen = (stored or {}).get(image_choice.FORM_FIELD, "")
            return image_choice.form_html(spawner.image_options(),
                                          chosen if isinstance(chosen, str) else "")
        return form

    @default("options_from_form")
    def _image_from_form(self):  # noqa: ANN202 - JupyterHub calls it with the spawner
        def from_form(form_data: dict, spawner: DockerSpawner) -> dict:
            options = image_choice.from_form(form_data)
            spawner._chosen_image(options)  # a bad choice: the form again, with the reason
            return options
        return from_form

    @default("apply_user_options")
    def _apply_image_choice(self):  # noqa: ANN202 - JupyterHub calls it with the spawner
        def apply(spawner: DockerSpawner, user_options: dict) -> None:
            # First of all, before anything is made for this start.
            problem = container_name_problem(spawner.container_name)
            if problem:
                spawner.log.error("Cannot start %s's server: %s", spawner.user.name, problem)
                error = web.HTTPError(500, problem, reason="No container name")
                error.jupyterhub_message = problem  # type: ignore[attr-defined]
                raise error
            # JupyterHub has saved these options as the user's choice: a refused one goes.
            spawner.image = spawner._chosen_image(user_options, forget=True)
        return apply

    def _chosen_image(self, user_options: object, forget: bool = False) -> str:
        """The image USER_OPTIONS picks for this user; HTTP 400 naming the allowed ones
        (and, with FORGET, the saved options dropped: the next plain start is the default)."""
        try:
            return image_choice.choose(user_options, self.image_options())
        except ImageError as exc:
            self.log.warning("Refused a server start for %s: %s", self.user.name, exc)
            if forget and self.orm_spawner is not None:
                self.orm_spawner.user_options = {}
            error = web.HTTPError(400, str(exc), reason="Image not allowed")
            # What the spawn page shows.
            error.jupyterhub_message = str(exc)  # type: ignore[attr-defined]
            raise error from None

    @property
    def container_name(self) -> str:
        return container_launch.container_name(self.user.name, self.name or "")

    def launch_extras(self) -> dict:
        # Docker's cgroups enforce the limits and the container has its own /tmp:
        # no systemd scope, no private /tmp mount.
        return {"scope": None, "private_tmp": None}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.container_id = state.get("container_id", "")

    def get_state(self) -> dict:
        state = super().get_state()
        if self.container_id:
            state["container_id"] = self.container_id
        return state

    def clear_state(self) -> None:
        super().clear_state()
        self.container_id = ""

    def _site(self, spec: LaunchSpec) -> container_launch.Site:
        """What this root hub's containers are built from (the helper has its own copy)."""
        hub_socket = unix_socket_path(spec.env.get("JUPYTERHUB_API_URL", ""))
        return container_launch.Site(
            home_mode=self.home_mode, runtime_dir=self.runtime_dir, envs_root=self.envs_root,
            hub_socket_dir=str(Path(hub_socket).parent) if hub_socket else "",
            projects_root=self.projects_root, accounts_db=self.accounts_db,
            db_url=self.db_url, prefix=self.system_prefix, registry=self.registry_path)

    def _cgroup_limits(self) -> CgroupLimits:
        resolved = self.resolved_limits()
        if resolved is None:
            return CgroupLimits()
        return CgroupLimits(memory=resolved.memory, cpu=resolved.cpu, tasks=resolved.tasks)

    def _create_and_start(self, spec: LaunchSpec, limits: CgroupLimits,
                          holder: str | None = None) -> str:
        """(Root hub.) The container for SPEC, started; nothing is left behind when this
        fails. With HOLDER the container only holds itself open (the fast start)."""
        return container_launch.create_and_start(
            Engine(), spec, user=self.user.name, server=self.name or "", port=self.port,
            image=self.image, site=self._site(spec), limits=limits,
            gpu=self.gpu_container_devices(), holder=holder)

    async def _container(self, spec: LaunchSpec, limits: CgroupLimits,
                         holder: str | None = None) -> None:
        """Create and start the container (self.container_id), or raise SpawnFailed."""
        try:
            if roothelper.direct():
                self.container_id = await asyncio.to_thread(self._create_and_start, spec,
                                                            limits, holder)
            else:
                self.container_id, _ = await self._helper_start(spec, limits, fast=False)
        except ImageError as exc:
            raise SpawnFailed(exc.message) from None
        except (DockerError, ValueError, OSError, forkserver.ForkServerUnavailable) as exc:
            self.log.error("Cannot start a container for %s: %s", self.user.name, exc)
            raise SpawnFailed(f"Your server's container could not be started: {exc}") from None

    async def _helper_start(self, spec: LaunchSpec, limits: CgroupLimits,
                            fast: bool) -> tuple[str, int]:
        """(Unprivileged hub.) The root helper makes the container (and, FAST, enters the
        server into it): (container id, server's host pid or 0)."""
        return await self.root_helper.container_start(
            spec, user=self.user.name, server=self.name or "", image=self.image,
            limits=limits, gpus=[d.uuid for d in self._gpu_devices], fast=fast)

    async def _start_entered(self, spec: LaunchSpec, limits: CgroupLimits) -> None:
        """The fast start: a container that only holds itself open, and the server forked
        from the warm fork server into it (teamhub.system.nsenter), imports already done."""
        if not roothelper.direct():
            try:
                self.container_id, _ = await self._helper_start(spec, limits, fast=True)
            except ImageError as exc:
                raise SpawnFailed(exc.message) from None
            return
        keepalive = str(Path(spec.env["JUPYTER_RUNTIME_DIR"]) / KEEPALIVE)
        await self._container(spec, limits, holder=keepalive)
        info = await asyncio.to_thread(Engine().container, self.container_id)
        pid = int(((info or {}).get("State") or {}).get("Pid") or 0)
        if not pid:
            raise ContainerEnterError("the container stopped before its server could start")
        target = {"pid": pid, "id": self.container_id, "keepalive": keepalive}
        await forkserver.spawn(Path(self.fork_server_socket), replace(spec, container=target))

    # The container's state, output and removal: the engine's answers for a root hub, the
    # helper's (for this user's teamhub container only) for an unprivileged one.

    async def _state(self) -> dict | None:
        """The container's State (Running, ExitCode, Pid); None when it is gone."""
        if roothelper.direct():
            info = await asyncio.to_thread(Engine().container, self.container_id)
            return None if info is None else (info.get("State") or {})
        try:
            answer = await self.root_helper.container_state(self.user.name, self.name or "")
        except forkserver.ForkServerUnavailable as exc:
            raise DockerError(str(exc)) from None
        if not answer.get("exists"):
            return None
        if self.container_id and answer.get("id") != self.container_id:
            return None  # another start's container by that name: this one is gone
        return {"Running": answer.get("running"), "ExitCode": answer.get("exit_code"),
                "Pid": answer.get("pid")}

    async def _remove(self, timeout: int | None = None) -> None:
        """Stop (within TIMEOUT seconds; None: at once) and remove the container."""
        if roothelper.direct():
            engine = Engine()
            ident = self.container_id or self.container_name
            if timeout is not None:
                await asyncio.to_thread(engine.stop, ident, timeout)
            await asyncio.to_thread(engine.remove, ident)
            return
        try:
            await self.root_helper.container_stop(self.user.name, self.name or "",
                                                  timeout or 0)
        except forkserver.ForkServerUnavailable as exc:
            raise DockerError(str(exc)) from None

    async def _logs(self, lines: int) -> str:
        if roothelper.direct():
            return await asyncio.to_thread(Engine().logs, self.container_id, lines)
        try:
            return await self.root_helper.container_logs(self.user.name, self.name or "", lines)
        except forkserver.ForkServerUnavailable as exc:
            return f"(no output: {exc})"

    async def start(self) -> tuple[str, int]:
        began = time.monotonic()
        user = await self._prepared_account()
        if user is None:
            raise SpawnFailed("the docker backend cannot run in the single-user trial")
        await self.take_gpus()
        try:
            return await self._start_container(user, began)
        except BaseException:
            self.release_gpus()  # a start that failed holds nothing
            raise

    async def _start_container(self, user: SystemUser, began: float) -> tuple[str, int]:
        # A fresh port at every start (the last one may be taken by now), never one another
        # start in progress holds (system/ports.py).
        try:
            self.port = SERVER_PORTS.take()
        except NoFreePort as exc:
            raise SpawnFailed(f"No port is free for your server ({exc.message}); ask your admin",
                              reason="port") from None
        try:
            return await self._start_on_port(user, began)
        finally:
            SERVER_PORTS.release(self.port)

    async def _start_on_port(self, user: SystemUser, began: float) -> tuple[str, int]:
        spec = await asyncio.to_thread(self._launch_spec, user, self._log_path())
        prepared = time.monotonic()
        # Resolved here, on the hub's thread: it reads the user's groups from the hub DB.
        limits = self._cgroup_limits()
        how = "as its command"
        if self.fork_server and self.fork_server_socket:
            try:
                await self._start_entered(spec, limits)
                how = "entered"
            except (forkserver.ForkServerUnavailable, ContainerEnterError) as exc:
                self.log.warning("Starting %s's server as its container's command (slow): %s",
                                 self.user.name, exc)
                try:
                    await self._remove()
                except DockerError as gone:
                    raise SpawnFailed(f"Your server's container could not be started: "
                                      f"{gone}") from None
                self.container_id = ""
                if isinstance(exc, forkserver.ForkServerUnavailable):
                    if not roothelper.direct():
                        self.log.error("Cannot start %s's server: %s. %s", self.user.name,
                                       exc, roothelper.HELPER_GONE)
                        raise SpawnFailed("Your server could not be started: teamhub's root "
                                          f"helper refused or is gone ({exc}); ask your admin "
                                          "to run `teamhub doctor`", reason="helper") from None
                    self._restart_fork_server()
        if how != "entered":
            await self._container(spec, limits)
        created = time.monotonic()
        await self.attach_gpus(await self._container_pid())
        await self._wait_container_listening()
        self.log.debug("Started %s's container %s (server %s): account+spec %.3fs, "
                       "container and server start %.3fs, until listening %.3fs",
                       self.user.name, self.container_id[:12], how, prepared - began,
                       created - prepared, time.monotonic() - created)
        return ("127.0.0.1", self.port)

    async def _wait_container_listening(self) -> None:
        """Return once the port accepts connections; fail fast if the container exits first."""
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        next_check = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_check:
                code = await self.poll()
                if code is not None:
                    tail = await self._logs(8)
                    tail = " | ".join(line.strip() for line in tail.splitlines() if line.strip())
                    await self._remove()
                    self.clear_state()
                    self.log.error("Container of %s exited with %s during start: %s",
                                   self.user.name, code, tail)
                    raise SpawnFailed(f"Your server stopped while starting (exit code {code}). "
                                      f"Its last output: {tail or '(none)'}")
                next_check = time.monotonic() + 0.25
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.1)

    async def _container_pid(self) -> int | None:
        """The host pid of the container's init: what witnesses its GPUs."""
        state = await self._state() or {}
        return state.get("Pid") or None

    async def poll(self) -> int | None:
        """None while the container runs; its exit code (0 when it is gone) otherwise."""
        if not self.container_id:
            return 0
        try:
            state = await self._state()
        except DockerError as exc:
            # An engine (or helper) restart is not a dead server: ask again at the next poll.
            self.log.warning("Cannot ask Docker about %s's container: %s", self.user.name, exc)
            return None
        if state is None:
            return 0
        if state.get("Running"):
            return None
        return int(state.get("ExitCode") or 0)

    async def stop(self, now: bool = False) -> None:
        await self._remove(0 if now else self.stop_timeout)
        if roothelper.direct():
            account = users_lookup(self.system_user_name)
            if account is not None:
                # Kernels are gone with the server: their sockets and keys go too (the
                # helper's container_stop does this for an unprivileged hub).
                shutil.rmtree(Path(self.private_runtime_root) / str(account.uid),
                              ignore_errors=True)
        self.clear_state()
