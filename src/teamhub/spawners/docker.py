"""Run each hub user's server in its own container on the local Docker engine.

The docker backend (`spawner.backend = "docker"`). Everything about the user's server is
worked out exactly as for the local backend (LocalSpawner: the Linux account made on
first need, project ACLs, the environment rebuilt from scratch, argv with the same
options, limits resolved from `limits.*` and the user's groups, a private runtime dir for
kernel sockets); only the last step differs: the LaunchSpec becomes a container
(teamhub.system.containers) instead of a process.

Docker calls go straight to the Engine API (teamhub.system.docker), each on a worker
thread of its own, so many users can start at once; the hub's event loop never waits on
Docker. The container id is kept in the hub's state: a hub restart leaves containers
running and re-adopts them.

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

from .. import image_choice, images
from ..errors import ContainerEnterError, DockerError, ImageError, NoFreePort
from ..projects.apply import Layout, Projects
from ..system import nsenter
from ..system.containers import (
    LABEL_PORT,
    LABEL_SERVER,
    LABEL_USER,
    CgroupLimits,
    Mount,
    container_config,
    container_name_problem,
    ensure_home_volume,
)
from ..system.docker import Engine
from ..system.sandbox import LaunchSpec
from ..system.users import SystemUser
from ..system.users import lookup as users_lookup
from . import forkserver
from .local import SERVER_PORTS, LocalSpawner, SpawnFailed

# The holder's keep-alive FIFO, in the server's private runtime folder (mounted inside).
KEEPALIVE = ".teamhub-keepalive"


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
        suffix = f"-{self.name}" if self.name else ""
        return f"teamhub-{self.user.name}{suffix}"

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

    def _mounts(self, spec: LaunchSpec, engine: Engine) -> list[Mount]:
        if self.home_mode == "volume":
            assert spec.uid is not None and spec.gid is not None
            volume = ensure_home_volume(engine, self.user.name, spec.uid, spec.gid)
            mounts = [Mount(volume, spec.cwd, read_only=False, kind="volume")]
        else:
            mounts = [Mount(spec.cwd, spec.cwd, read_only=False)]
        runtime_dir = spec.env.get("JUPYTER_RUNTIME_DIR")
        if runtime_dir:
            mounts.append(Mount(runtime_dir, runtime_dir, read_only=False))
        if self.runtime_dir:
            mounts.append(Mount(self.runtime_dir, self.runtime_dir))
        if self.envs_root and Path(self.envs_root).is_dir():
            mounts.append(Mount(self.envs_root, self.envs_root))
        hub_socket = unix_socket_path(spec.env.get("JUPYTERHUB_API_URL", ""))
        if hub_socket:
            # The hub's API is a unix socket: its folder (root's, new socket at each hub
            # start) goes in read-only at its own path, so the server reaches the hub.
            folder = str(Path(hub_socket).parent)
            mounts.append(Mount(folder, folder))
        return mounts + self._project_mounts()

    def _project_mounts(self) -> list[Mount]:
        """Each project folder the user may use, at its own path (so ~/projects links work):
        read-only for readers. The folders' ACLs still decide (same uid, same inodes), so a
        revoke bites at the next file open; a new grant or read → write needs a restart."""
        if not (self.projects_root and self.accounts_db
                and (self.db_url or Path(self.accounts_db).exists())):
            return []
        layout = Layout(root=Path(self.projects_root), store_path=Path(self.accounts_db),
                        store_url=self.db_url,
                        prefix=self.system_prefix, registry=Path(self.registry_path))
        mounts = []
        for name, access in sorted(Projects(layout).accessible(self.user.name).items()):
            folder = str(layout.folder(name))
            if Path(folder).is_dir():
                mounts.append(Mount(folder, folder, read_only=access != "write"))
        return mounts

    def _cgroup_limits(self) -> CgroupLimits:
        resolved = self.resolved_limits()
        if resolved is None:
            return CgroupLimits()
        return CgroupLimits(memory=resolved.memory, cpu=resolved.cpu, tasks=resolved.tasks)

    def _create_and_start(self, spec: LaunchSpec, limits: CgroupLimits,
                          holder: str | None = None) -> str:
        """The container for SPEC, started; nothing is left behind when this fails.

        With HOLDER (its keep-alive FIFO, made here) the container only holds itself open
        and the server is started into it afterwards; else the server is its command."""
        engine = Engine()
        ref = images.reference(self.image)
        if engine.image(ref) is None:
            raise SpawnFailed(images.missing_message(self.image))
        if holder is not None:
            assert spec.uid is not None and spec.gid is not None
            nsenter.make_keepalive(holder, spec.uid, spec.gid)
        config = container_config(
            spec, image=ref, mounts=self._mounts(spec, engine), limits=limits,
            labels={LABEL_USER: self.user.name, LABEL_SERVER: self.name or "",
                    LABEL_PORT: str(self.port)}, holder=holder)
        gpu = self.gpu_container_devices()
        config["HostConfig"]["Mounts"] += [Mount(f, f).as_api() for f in gpu.pop("binds", [])]
        config["HostConfig"].update(gpu)
        # One left from a crash or a hub killed mid-start would block the name.
        engine.remove(self.container_name)
        ident = engine.create(self.container_name, config)
        try:
            engine.start(ident)
        except DockerError:
            engine.remove(ident)
            raise
        return ident

    async def _container(self, spec: LaunchSpec, limits: CgroupLimits,
                         holder: str | None = None) -> None:
        """Create and start the container (self.container_id), or raise SpawnFailed."""
        try:
            self.container_id = await asyncio.to_thread(self._create_and_start, spec, limits,
                                                        holder)
        except SpawnFailed:
            raise
        except (DockerError, ValueError, OSError) as exc:
            self.log.error("Cannot start a container for %s: %s", self.user.name, exc)
            raise SpawnFailed(f"Your server's container could not be started: {exc}") from None

    async def _start_entered(self, spec: LaunchSpec, limits: CgroupLimits) -> None:
        """The fast start: a container that only holds itself open, and the server forked
        from the warm fork server into it (teamhub.system.nsenter), imports already done."""
        keepalive = str(Path(spec.env["JUPYTER_RUNTIME_DIR"]) / KEEPALIVE)
        await self._container(spec, limits, holder=keepalive)
        info = await asyncio.to_thread(Engine().container, self.container_id)
        pid = int(((info or {}).get("State") or {}).get("Pid") or 0)
        if not pid:
            raise ContainerEnterError("the container stopped before its server could start")
        target = {"pid": pid, "id": self.container_id, "keepalive": keepalive}
        await forkserver.spawn(Path(self.fork_server_socket), replace(spec, container=target))

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
                    await asyncio.to_thread(Engine().remove, self.container_id
                                            or self.container_name)
                except DockerError as gone:
                    raise SpawnFailed(f"Your server's container could not be started: "
                                      f"{gone}") from None
                self.container_id = ""
                if isinstance(exc, forkserver.ForkServerUnavailable):
                    self._restart_fork_server()
        if how != "entered":
            await self._container(spec, limits)
        created = time.monotonic()
        await self.attach_gpus(await asyncio.to_thread(self._container_pid))
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
                    tail = await asyncio.to_thread(Engine().logs, self.container_id, 8)
                    tail = " | ".join(line.strip() for line in tail.splitlines() if line.strip())
                    await asyncio.to_thread(Engine().remove, self.container_id)
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

    def _container_pid(self) -> int | None:
        """The host pid of the container's init: what witnesses its GPUs."""
        info = Engine().container(self.container_id) or {}
        return (info.get("State") or {}).get("Pid") or None

    async def poll(self) -> int | None:
        """None while the container runs; its exit code (0 when it is gone) otherwise."""
        if not self.container_id:
            return 0
        try:
            info = await asyncio.to_thread(Engine().container, self.container_id)
        except DockerError as exc:
            # An engine restart is not a dead server: ask again at the next poll.
            self.log.warning("Cannot ask Docker about %s's container: %s", self.user.name, exc)
            return None
        if info is None:
            return 0
        state = info.get("State") or {}
        if state.get("Running"):
            return None
        return int(state.get("ExitCode") or 0)

    async def stop(self, now: bool = False) -> None:
        engine = Engine()
        ident = self.container_id or self.container_name
        timeout = 0 if now else self.stop_timeout
        await asyncio.to_thread(engine.stop, ident, timeout)
        await asyncio.to_thread(engine.remove, ident)
        account = users_lookup(self.system_user_name)
        if account is not None:
            # Kernels are gone with the server: their sockets and keys go too.
            shutil.rmtree(Path(self.private_runtime_root) / str(account.uid), ignore_errors=True)
        self.clear_state()

