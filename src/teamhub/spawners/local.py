"""Start each hub user's server as that user's own Linux account on this machine.

Builds on JupyterHub's LocalProcessSpawner (pid kept in the hub DB, so servers
survive hub restarts) and adds what a shared machine needs: the Linux account
is made on first need and never mapped onto an account teamhub did not create;
the server runs with umask 077 from a home that is 0700; the environment is
rebuilt from scratch rather than inherited from the hub; and a server that
dies while starting is reported at once, with its own last words, instead of
after the hub's HTTP timeout.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import sys
import time
from pathlib import Path
from subprocess import PIPE, STDOUT, Popen
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SpawnException
from traitlets import Bool, Dict, Integer, List, Unicode

from .. import limits as limits_model
from ..envs.warm_kernels import PREWARM_ARG
from ..errors import ForkServerUnavailable, NoFreePort, PrivateFolderError, TeamhubError
from ..projects.apply import Layout, Projects
from ..system import login_profile, namespaces, private_dirs, sockets, systemd
from ..system.names import system_name
from ..system.ports import PortPool
from ..system.processes import process_uids
from ..system.sandbox import LaunchSpec, current_rlimits
from ..system.users import (
    SystemUser,
    account_problem,
    check_usable,
    ensure_system_user,
    is_managed,
)
from ..system.users import lookup as users_lookup
from . import forkserver, lsp, roothelper
from .gpu import GpuSupport

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# Every start in this hub takes its port here: servers that start at the same moment never
# get one port twice (system/ports.py says how that made a burst's user open another's).
SERVER_PORTS = PortPool()
# Requests to the fork server in flight at once from this hub. It answers one at a time
# and its socket queues 64 connections; beyond that connects fail (EAGAIN, or EINVAL from
# asyncio) and starts fell back to fresh interpreters (~1.5 s of CPU each instead of
# ~0.1 s), which in a burst of 100 made everyone slower still. Waiting here is cheap.
FORK_REQUESTS_IN_FLIGHT = 16
_fork_requests: asyncio.Semaphore | None = None


def _fork_server_turn() -> asyncio.Semaphore:
    global _fork_requests
    if _fork_requests is None:
        _fork_requests = asyncio.Semaphore(FORK_REQUESTS_IN_FLIGHT)
    return _fork_requests


class SpawnFailed(SpawnException):
    """The user's server could not start: JupyterHub's SpawnException, so the hub counts it
    as a failed start (not an error) in its failure limit and metrics, and shows MESSAGE
    to the user as it is (on the spawn page and in the progress events)."""

    def __init__(self, message: str, *, reason: str = "start-failed") -> None:
        super().__init__(message, reason=reason, status_code=500)
        # The progress API shows str() of other exceptions; this is what the user reads.
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return self.message


def _log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_bytes()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _root_only_folder(root: Path, mode: int = 0o777) -> None:
    try:
        private_dirs.root_only_folder(root, mode)
    except PrivateFolderError as exc:
        raise SpawnFailed(exc.message) from None


def _fresh_folder(folder: Path, user: SystemUser) -> None:
    private_dirs.fresh_folder(folder, user.uid, user.gid)


def merge_path(ours: str, admin: Any) -> str:
    """PATH from teamhub's own and the admin's `spawner.environment` PATH.

    The admin's entries go first; a `$PATH` (or `${PATH}`) in theirs marks where
    ours goes instead, so either order can be chosen.
    """
    if not isinstance(admin, str) or not admin:
        return ours
    if "$PATH" in admin or "${PATH}" in admin:
        return admin.replace("${PATH}", ours).replace("$PATH", ours)
    return f"{admin}:{ours}"


def limit_env(limits: limits_model.Limits | None) -> dict[str, str]:
    """The user's share as the variables JupyterHub gives servers (MEM_LIMIT in bytes,
    CPU_LIMIT in CPUs): jupyter-resource-usage shows memory use against it."""
    env = {}
    if limits is not None and limits.memory is not None:
        env["MEM_LIMIT"] = str(limits.memory)
    if limits is not None and limits.cpu is not None:
        env["CPU_LIMIT"] = str(limits.cpu)
    return env


class LocalSpawner(GpuSupport, LocalProcessSpawner):
    """Run the user's JupyterLab as their own Linux account (`<prefix><name>`)."""

    system_prefix = Unicode(
        "jupyter-",
        help="""Prefix of the Linux account made for each hub user
        (hub user `ada` → Linux user `jupyter-ada`).""",
    ).tag(config=True)

    home_root = Unicode(
        "/home", help="Folder under which the Linux accounts' homes are created."
    ).tag(config=True)

    shell = Unicode("/bin/bash", help="Login shell of the Linux accounts teamhub creates.").tag(
        config=True
    )

    registry_path = Unicode(
        help="""Registry of the Linux accounts teamhub created. Only accounts listed there
        are ever used to run servers.""",
    ).tag(config=True)

    server_log_dir = Unicode(
        help="""Root-only folder where each server's output is written
        (`<hub user>.log`); the tail is shown to the user when a start fails.""",
    ).tag(config=True)

    runtime_bin = Unicode(
        help="""The runtime's `bin` folder, put first on the server's PATH."""
    ).tag(config=True)

    private_runtime_root = Unicode(
        "/run/teamhub",
        help="""Root-owned folder holding one private (0700) folder per Linux account,
        `<root>/<uid>`, used as the server's JUPYTER_RUNTIME_DIR: kernel connection files
        and kernel sockets live there. Its path is short on purpose: kernels talk over unix
        sockets, whose paths are limited to 107 characters.""",
    ).tag(config=True)

    projects_root = Unicode(
        "", help="""Folder of the team project folders; empty: no projects."""
    ).tag(config=True)

    accounts_db = Unicode(
        "", help="""The account store, where project grants are kept."""
    ).tag(config=True)

    db_url = Unicode(
        "", help="""teamhub's db.url: empty when the account store is the sqlite file
        accounts_db, else the PostgreSQL database that holds it."""
    ).tag(config=True)

    single_user_trial = Bool(
        False,
        help="""Run every server as the account running the hub, with no isolation between
        users. Only for trying teamhub without root (`teamhub up --single-user-trial`).""",
    ).tag(config=True)

    fork_server = Bool(
        True,
        help="""Start servers by forking a warm, secret-free fork server (~0.1 s) instead of
        a fresh interpreter (~1.5 s). Falls back to a fresh interpreter, and says why in the
        hub log, whenever the fork server is unavailable.""",
    ).tag(config=True)

    fork_server_socket = Unicode(
        "", help="""Root-only unix socket of the fork server; empty: no fork server."""
    ).tag(config=True)

    fork_server_log = Unicode(
        "", help="""Log file of a fork server the spawner (re)starts itself."""
    ).tag(config=True)

    existing_accounts = Bool(
        False,
        help="""PAM mode: run each server as the existing Linux account of the same name
        (no prefix, nothing created), and only if it is an ordinary person's account: not
        root, uid at least `min_uid`, in one of `allowed_groups` when that is set.""",
    ).tag(config=True)

    min_uid = Integer(
        1000, help="""With existing_accounts: lowest uid a server may run as."""
    ).tag(config=True)

    allowed_groups = List(
        Unicode(), help="""With existing_accounts: groups one of which the account must be in
        (empty: any)."""
    ).tag(config=True)

    _forked = False
    # JupyterHub's traits, typed for the checker (annotations only: the traits stay).
    port: int
    proc: Popen[bytes] | None

    limits = Dict(
        help="""The `limits.*` settings (enabled, memory, cpu, tasks, private_tmp, groups);
        each server's share is resolved from them and the user's groups at every start
        (see teamhub.limits).""",
    ).tag(config=True)

    private_tmp_root = Unicode(
        "/var/tmp/teamhub",
        help="""Root-owned folder holding each server's private /tmp, `<root>/<uid>` (0700,
        emptied at every start), when `limits.private_tmp` is on.""",
    ).tag(config=True)

    shm_size = Integer(
        0,
        help="""Bytes of each server's own /dev/shm, a tmpfs in its mount namespace
        (`spawner.shm_size`); 0: the machine's shared /dev/shm.""",
    ).tag(config=True)

    @property
    def scope_unit(self) -> str:
        """The transient systemd scope this user's server runs in."""
        suffix = f"-{self.name}" if self.name else ""
        return f"teamhub-user-{self.user.name}{suffix}.scope"

    def resolved_limits(self) -> limits_model.Limits | None:
        """This user's share from the `limits.*` settings and their groups; None: limits off."""
        return limits_model.resolve(self.limits or {"enabled": False},
                                    [g.name for g in self.user.groups])

    def launch_extras(self) -> dict[str, Any]:
        """How the server process must be placed before it runs user code.

        `scope`: `{"unit", "properties"}` of the systemd scope to enter (limits, if on;
        always a scope when systemd runs, so that servers live outside teamhub.service's
        cgroup and survive its restarts), or None without systemd. `private_tmp`: the
        folder to mount on /tmp, or None. `shm_size`: bytes of its own /dev/shm, or None.
        """
        if self.single_user_trial:
            return {"scope": None, "private_tmp": None, "shm_size": None}
        gpu = self.gpu_launch_extras()
        resolved = self.resolved_limits()
        scope = None
        if systemd.booted():
            props: dict[str, Any] = {
                "Description": f"teamhub server of {self.user.name}",
                "Slice": limits_model.SLICE,
                "CollectMode": "inactive-or-failed",
            }
            if resolved is not None:
                props.update(resolved.scope_properties(systemd.cgroup_version()))
            props.update(gpu["scope_properties"])
            scope = {"unit": self.scope_unit, "properties": props}
        elif resolved is not None:
            raise SpawnFailed("per-user limits are on but systemd is not running here; "
                              "ask your admin to run `teamhub doctor`", reason="limits")
        private_tmp = None
        if resolved is not None and resolved.private_tmp:
            account = users_lookup(self.system_user_name)
            if account is not None:
                private_tmp = str(Path(self.private_tmp_root) / str(account.uid))
        return {"scope": scope, "private_tmp": private_tmp, "shm_size": self.shm_size or None,
                "devices": gpu["devices"]}

    def _fresh_private_tmp(self, path: str, user: SystemUser) -> None:
        """PATH as an empty folder only USER can enter, under a root-only-writable root."""
        folder = Path(path)
        _root_only_folder(folder.parent, mode=0o711)
        _fresh_folder(folder, user)

    @property
    def system_user_name(self) -> str:
        if self.existing_accounts:
            return self.user.name
        return system_name(self.user.name, self.system_prefix)

    def _existing_account(self) -> SystemUser:
        """PAM mode's account: the user's own, checked again at every start."""
        problem = account_problem(self.user.name, min_uid=self.min_uid,
                                  allowed_groups=set(self.allowed_groups))
        if problem:
            raise TeamhubError(f"Linux account {self.user.name!r} may not run a server: {problem}")
        account = users_lookup(self.user.name)
        if account is None or account.uid == 0:
            raise TeamhubError(f"Linux account {self.user.name!r} is not usable")
        return account

    def _system_user(self) -> SystemUser | None:
        if self.single_user_trial:
            return None
        if self.existing_accounts:
            return self._existing_account()
        ensure_system_user(
            self.system_user_name,
            registry=Path(self.registry_path),
            home_root=Path(self.home_root),
            shell=self.shell,
        )
        user = check_usable(self.system_user_name, registry=Path(self.registry_path))
        self._apply_projects()
        return user

    def _ready_account(self) -> SystemUser | None:
        """(Blocking.) The account when nothing of root's is left to do for it: PAM mode's
        own (only checked), or one teamhub made already while there are no project folders
        to apply; None: ask the helper. The helper checks it again at the spawn."""
        if self.existing_accounts:
            return self._existing_account()
        if self.projects_root and Path(self.projects_root).is_dir():
            return None
        try:
            if not is_managed(self.system_user_name, registry=Path(self.registry_path)):
                return None
            return check_usable(self.system_user_name, registry=Path(self.registry_path))
        except TeamhubError:
            return None

    async def _account_from_helper(self) -> SystemUser:
        """The helper makes the account and applies its project folders (from the store)."""
        ready = await asyncio.to_thread(self._ready_account)
        if ready is not None:
            return ready
        try:
            _, _, warning = await self.root_helper.ensure_account(self.user.name)
        except ForkServerUnavailable as exc:
            if not str(exc).startswith("fork server refused: "):
                # Gone, not a refusal: the hub log says what brings it back.
                self.log.error("No root helper for %s's account: %s. %s", self.user.name, exc,
                               roothelper.HELPER_GONE)
            raise TeamhubError(str(exc).removeprefix("fork server refused: ")) from None
        if warning:
            self.log.warning("Could not apply project folders for %s: %s", self.user.name,
                             warning)
        account = await asyncio.to_thread(users_lookup, self.system_user_name)
        if account is None:
            raise TeamhubError(f"Linux account {self.system_user_name!r} is missing")
        return account

    def _apply_projects(self) -> None:
        """Give a (possibly brand-new) account its project ACLs and ~/projects links."""
        if not (self.projects_root and self.accounts_db
                and (self.db_url or Path(self.accounts_db).exists())):
            return
        layout = Layout(root=Path(self.projects_root), store_path=Path(self.accounts_db),
                        store_url=self.db_url,
                        prefix=self.system_prefix, registry=Path(self.registry_path))
        try:
            Projects(layout).apply_for_user(self.user.name)
        except (TeamhubError, OSError) as exc:
            # Project access is not worth refusing a server over; repair can fix it later.
            self.log.warning("Could not apply project folders for %s: %s", self.user.name, exc)

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        if self.single_user_trial:
            account = pwd.getpwuid(os.getuid())
        else:
            account = pwd.getpwnam(self.system_user_name)
        env["USER"] = env["LOGNAME"] = account.pw_name
        env["HOME"] = account.pw_dir
        env["SHELL"] = account.pw_shell or "/bin/sh"
        path = [self.runtime_bin] if self.runtime_bin else []
        env["PATH"] = merge_path(":".join([*path, SYSTEM_PATH]), self.environment.get("PATH"))
        env.update(self.gpu_env())
        # Lab's terminal is a login shell, whose /etc/profile resets PATH: teamhub's
        # profile (system.login_profile) puts this one back.
        env[login_profile.SERVER_PATH_ENV] = env["PATH"]
        if not self.single_user_trial:
            env.update(limit_env(self.resolved_limits()))
        return env

    def _private_runtime_dir(self, user: SystemUser) -> str:
        """A fresh, empty folder only USER can enter (nothing left from an earlier uid owner);
        the helper makes it for an unprivileged hub."""
        root = Path(self.private_runtime_root)
        if not roothelper.direct():
            return str(root / str(user.uid))
        _root_only_folder(root)
        os.chmod(root, 0o755)  # explicit: the hub's umask is 077, and users must pass through
        folder = root / str(user.uid)
        _fresh_folder(folder, user)
        return str(folder)

    @property
    def root_helper(self) -> roothelper.HelperClient:
        return roothelper.client(self.fork_server_socket)

    async def _signal(self, sig: int) -> bool:
        """JupyterHub's: whether the server's process still exists, after sending SIG. An
        unprivileged hub looks in /proc for 0 and asks the helper for the others."""
        if roothelper.direct() or self.single_user_trial:
            return await super()._signal(sig)
        account = users_lookup(self.system_user_name)
        if account is None or process_uids(self.pid) != {account.uid}:
            return False  # gone (or the pid is someone else's by now)
        if sig == 0:
            return True
        try:
            await self.root_helper.signal(self.user.name, self.pid, sig)
        except ForkServerUnavailable as exc:
            self.log.warning("Could not signal %s's server (pid %s): %s", self.user.name,
                             self.pid, exc)
            return bool(process_uids(self.pid))
        return True

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if not self.single_user_trial and not roothelper.direct():
            # The helper stops the scope; it makes the runtime and /tmp folders afresh at
            # the next start.
            try:
                await self.root_helper.stop_scope(self.user.name, self.name or "")
            except ForkServerUnavailable as exc:
                self.log.warning("Could not stop %s's scope: %s", self.user.name, exc)
        elif not self.single_user_trial:
            # Whatever the server left behind in its scope (stray processes) ends with it.
            await asyncio.to_thread(systemd.stop_unit, self.scope_unit)
            account = users_lookup(self.system_user_name)
            if account is not None:
                # Kernels are gone with the server: their sockets and keys go too,
                # and so does its private /tmp.
                shutil.rmtree(Path(self.private_runtime_root) / str(account.uid),
                              ignore_errors=True)
                shutil.rmtree(Path(self.private_tmp_root) / str(account.uid),
                              ignore_errors=True)

    def _log_path(self) -> Path:
        folder = Path(self.server_log_dir)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder / f"{self.user.name}.log"

    def _launch_spec(self, user: SystemUser | None, log_path: Path) -> LaunchSpec:
        env = self.get_env()
        home = user.home if user is not None else env["HOME"]
        cmd = [*self.cmd, *self.get_args(), *lsp.server_args(home)]
        if not os.path.isabs(cmd[0]):
            cmd[0] = shutil.which(cmd[0]) or cmd[0]
        if user is not None:
            env["JUPYTER_RUNTIME_DIR"] = self._private_runtime_dir(user)
        return LaunchSpec(
            argv=cmd, env=env, cwd=home,
            username=user.name if user is not None else None,
            uid=user.uid if user is not None else None,
            gid=user.gid if user is not None else None,
            umask=0o077, log_path=str(log_path),
            # What a server started by the hub inherits: both start paths set exactly these.
            rlimits=current_rlimits(),
            **self.launch_extras(),
        )

    def _prepare_placement(self, spec: LaunchSpec, user: SystemUser | None) -> None:
        """What must exist before `become()` enters SPEC's scope and private /tmp."""
        if spec.private_tmp and user is not None:
            self._fresh_private_tmp(spec.private_tmp, user)
        if spec.devices:
            namespaces.ensure_cover(spec.devices["cover"])
        if spec.scope:
            # A scope left by an earlier server (stray processes) would block the name.
            systemd.stop_unit(spec.scope["unit"])

    async def _prepared_account(self) -> SystemUser | None:
        """The user's Linux account, made on first need (None in the single-user trial)."""
        try:
            if self.single_user_trial or roothelper.direct():
                return await asyncio.to_thread(self._system_user)
            return await self._account_from_helper()
        except TeamhubError as exc:
            self.log.error("Cannot prepare Linux account for %s: %s", self.user.name, exc)
            raise SpawnFailed(f"Your Linux account could not be prepared: {exc}",
                              reason="account") from None

    async def start(self) -> tuple[str, int]:
        began = time.monotonic()
        user = await self._prepared_account()
        await self.take_gpus()
        try:
            return await self._start_as(user, began)
        except BaseException:
            self.release_gpus()  # a start that failed holds nothing
            raise

    async def _start_as(self, user: SystemUser | None, began: float) -> tuple[str, int]:
        prepared = time.monotonic()
        try:
            # The configured (or last) port if it is still free, else a fresh one.
            self.port = SERVER_PORTS.take(preferred=self.port)
        except NoFreePort as exc:
            raise SpawnFailed(f"No port is free for your server ({exc.message}); ask your admin",
                              reason="port") from None
        try:
            return await self._launch(user, began, prepared)
        finally:
            SERVER_PORTS.release(self.port)

    async def _launch(self, user: SystemUser | None, began: float,
                      prepared: float) -> tuple[str, int]:
        log_path = self._log_path()
        spec = await asyncio.to_thread(self._launch_spec, user, log_path)
        try:
            if roothelper.direct():  # else the helper does it (helper_spec.place)
                await asyncio.to_thread(self._prepare_placement, spec, user)
        except (TeamhubError, OSError, SpawnFailed) as exc:
            self.log.error("Cannot set up limits for %s: %s", self.user.name, exc)
            raise SpawnFailed(f"Your server's limits could not be set up: {exc}",
                              reason="limits") from None
        launched = time.monotonic()
        with open(log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start\n".encode())
        self.proc = None
        self._forked = False
        if self.fork_server and not self.single_user_trial and self.fork_server_socket:
            try:
                async with _fork_server_turn():
                    self.pid = await forkserver.spawn(Path(self.fork_server_socket), spec)
                self._forked = True
            except ForkServerUnavailable as exc:
                if not roothelper.direct():
                    self.log.error("Cannot start %s's server: %s. %s", self.user.name, exc,
                                   roothelper.HELPER_GONE)
                    raise SpawnFailed("Your server could not be started: teamhub's root "
                                      f"helper refused or is gone ({exc}); ask your admin to "
                                      "run `teamhub doctor`", reason="helper") from None
                self.log.warning("Starting %s's server the normal way: %s", self.user.name, exc)
                self._restart_fork_server()
        if not self._forked:
            self._launch_normally(spec)
        await self.attach_gpus(self.pid)
        forked = time.monotonic()
        await self._wait_listening(log_path)
        self.log.debug("Started %s's server (%s): account %.3fs, spec %.3fs, launch %.3fs, "
                       "until listening %.3fs", self.user.name,
                       "forked" if self._forked else "fresh interpreter", prepared - began,
                       launched - prepared, forked - launched, time.monotonic() - forked)
        return ("127.0.0.1", self.port)

    def _restart_fork_server(self) -> None:
        """Start a fork server for the next spawns if none is running (this one goes on without)."""
        if not self.fork_server_log:
            return
        try:
            forkserver.start(Path(self.fork_server_socket), sys.executable,
                             Path(self.fork_server_log),
                             kernels=PREWARM_ARG in self.args)
        except OSError as exc:
            self.log.warning("Could not start the fork server: %s", exc)

    def _launch_normally(self, spec: LaunchSpec) -> None:
        """A fresh interpreter: the sandbox launcher reads SPEC from a pipe and execs the server."""
        fd = os.open(spec.log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.proc = Popen(
                [sys.executable, "-I", "-m", "teamhub.system.sandbox"],
                env={"PATH": SYSTEM_PATH}, cwd="/", stdin=PIPE, stdout=fd, stderr=STDOUT,
                close_fds=True,
            )
        except OSError as exc:
            self.log.error("Cannot run the launcher for %s: %s", self.user.name, exc)
            raise SpawnFailed(
                f"The server launcher could not be run ({exc.strerror}); "
                "ask your admin to run `teamhub doctor`", reason="launcher"
            ) from None
        finally:
            os.close(fd)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(spec.to_json())
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # the launcher died: reported with its log below
        self.pid = self.proc.pid

    async def _exit_code(self) -> int | None:
        """The starting server's exit code, None while it runs (-1: ended, code unknown)."""
        if self.proc is not None:
            return self.proc.poll()
        if self._forked:
            # /proc first: the fork server (one thread, busy forking everyone else's servers
            # in a burst) is asked only about a server that has ended, for its exit code.
            # Asked at every poll, a burst of 100 sent it hundreds of requests a second.
            if process_uids(self.pid):
                return None
            try:
                async with _fork_server_turn():
                    running, code = await forkserver.status(Path(self.fork_server_socket),
                                                            self.pid)
            except ForkServerUnavailable:
                running, code = False, None
            if not running:
                return code if code is not None else -1
        return None

    def _listener_is_ours(self, sock: socket.socket) -> bool:
        """Whether what took connection SOCK is this user's server: a port that answers is
        not proof, another process may hold it (the server then exits, `address already in
        use`, and is reported as failed instead of another's server passing for it)."""
        conn = sockets.connection(sock)
        if conn is None:
            return False
        if any(sockets.holds(self.pid, listener.inode) for listener in conn.listeners):
            return True
        if self.single_user_trial or sockets.open_files_readable(self.pid):
            return False
        # A hub that cannot read another account's open files (not root, or root without
        # CAP_SYS_PTRACE, as in a container with Docker's default capabilities): the
        # listener's owner (which the kernel records) must then be the server's account.
        return any(listener.uid in process_uids(self.pid) for listener in conn.listeners)

    async def _wait_listening(self, log_path: Path) -> None:
        """Return once the port accepts connections; fail fast if the server exits first."""
        deadline = time.monotonic() + self.start_timeout
        delay = 0.005
        while time.monotonic() < deadline:
            code = await self._exit_code()
            if code is not None:
                if self.proc is not None:
                    with self.proc:
                        pass
                self.clear_state()
                tail = _log_tail(log_path)
                self.log.error("Server of %s exited with %s during start: %s",
                               self.user.name, code, tail)
                raise SpawnFailed(
                    f"Your server stopped while starting (exit code {code}). "
                    f"Its last output: {tail or '(none)'}", reason="exited"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if await asyncio.to_thread(self._listener_is_ours, sock):
                        return
            except OSError:
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)
