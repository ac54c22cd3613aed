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
import stat
import time
from pathlib import Path
from subprocess import DEVNULL, STDOUT, Popen, SubprocessError
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Bool, Dict, Unicode

from .. import limits as limits_model
from ..errors import TeamhubError
from ..system import namespaces, systemd
from ..system.names import system_name
from ..system.users import SystemUser, check_usable, ensure_system_user
from ..system.users import lookup as users_lookup

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


class SpawnFailed(TeamhubError):
    """The user's server could not start; the message is shown to the user."""


def _log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_bytes()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


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


def _drop_privileges(user: SystemUser | None, private_tmp: str | None = None) -> Any:
    """preexec_fn for the server: private /tmp if asked, then become USER with umask 077."""

    def preexec() -> None:
        if private_tmp:
            namespaces.private_tmp(private_tmp)
        if user is not None:
            os.initgroups(user.name, user.gid)
            os.setgid(user.gid)
            os.setuid(user.uid)
        os.umask(0o077)

    return preexec


class LocalSpawner(LocalProcessSpawner):
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

    single_user_trial = Bool(
        False,
        help="""Run every server as the account running the hub, with no isolation between
        users. Only for trying teamhub without root (`teamhub up --single-user-trial`).""",
    ).tag(config=True)

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

    @property
    def scope_unit(self) -> str:
        """The transient systemd scope this user's server runs in."""
        suffix = f"-{self.name}" if self.name else ""
        return f"teamhub-user-{self.user.name}{suffix}.scope"

    def launch_extras(self) -> dict[str, Any]:
        """How the server process must be placed before it runs user code.

        `scope`: `{"unit", "properties"}` of the systemd scope to enter (limits, if on;
        always a scope when systemd runs, so that servers live outside teamhub.service's
        cgroup and survive its restarts), or None without systemd. `private_tmp`: the
        folder to mount on /tmp, or None.
        """
        if self.single_user_trial:
            return {"scope": None, "private_tmp": None}
        resolved = limits_model.resolve(self.limits or {"enabled": False},
                                        [g.name for g in self.user.groups])
        scope = None
        if systemd.booted():
            props: dict[str, Any] = {
                "Description": f"teamhub server of {self.user.name}",
                "Slice": limits_model.SLICE,
                "CollectMode": "inactive-or-failed",
            }
            if resolved is not None:
                props.update(resolved.scope_properties(systemd.cgroup_version()))
            scope = {"unit": self.scope_unit, "properties": props}
        elif resolved is not None:
            raise SpawnFailed("per-user limits are on but systemd is not running here; "
                              "ask your admin to run `teamhub doctor`")
        private_tmp = None
        if resolved is not None and resolved.private_tmp:
            account = users_lookup(self.system_user_name)
            if account is not None:
                private_tmp = str(Path(self.private_tmp_root) / str(account.uid))
        return {"scope": scope, "private_tmp": private_tmp}

    def _fresh_private_tmp(self, path: str, user: SystemUser) -> None:
        """PATH as an empty folder only USER can enter, under a root-only-writable root."""
        folder = Path(path)
        root = folder.parent
        root.mkdir(mode=0o711, parents=True, exist_ok=True)
        info = os.lstat(root)
        if info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o022 or not stat.S_ISDIR(info.st_mode):
            raise SpawnFailed(f"{root} must be a root-owned folder that only root can write")
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(mode=0o700)
        os.chown(folder, user.uid, user.gid)
        os.chmod(folder, 0o700)

    @property
    def system_user_name(self) -> str:
        return system_name(self.user.name, self.system_prefix)

    def _system_user(self) -> SystemUser | None:
        if self.single_user_trial:
            return None
        ensure_system_user(
            self.system_user_name,
            registry=Path(self.registry_path),
            home_root=Path(self.home_root),
            shell=self.shell,
        )
        user = check_usable(self.system_user_name, registry=Path(self.registry_path))
        self._apply_projects()
        return user

    def _apply_projects(self) -> None:
        """Give a (possibly brand-new) account its project ACLs and ~/projects links."""
        if not (self.projects_root and self.accounts_db and Path(self.accounts_db).exists()):
            return
        from ..projects.apply import Layout, Projects

        layout = Layout(root=Path(self.projects_root), store_path=Path(self.accounts_db),
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
        return env

    def _private_runtime_dir(self, user: SystemUser) -> str:
        """A fresh, empty folder only USER can enter (nothing left from an earlier uid owner)."""
        root = Path(self.private_runtime_root)
        root.mkdir(parents=True, exist_ok=True)
        info = os.lstat(root)
        if info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o022 or not stat.S_ISDIR(info.st_mode):
            raise SpawnFailed(f"{root} must be a root-owned folder that only root can write")
        os.chmod(root, 0o755)  # explicit: the hub's umask is 077, and users must pass through
        folder = root / str(user.uid)
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(mode=0o700)
        os.chown(folder, user.uid, user.gid)
        return str(folder)

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if not self.single_user_trial:
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

    async def start(self) -> tuple[str, int]:
        try:
            user = await asyncio.to_thread(self._system_user)
        except TeamhubError as exc:
            self.log.error("Cannot prepare Linux account for %s: %s", self.user.name, exc)
            raise SpawnFailed(f"Your Linux account could not be prepared: {exc}") from None
        if self.port == 0:
            self.port = random_port()
        cmd = [*self.cmd, *self.get_args()]
        env = self.get_env()
        if user is not None:
            env["JUPYTER_RUNTIME_DIR"] = await asyncio.to_thread(self._private_runtime_dir, user)
        try:
            extras = self.launch_extras()
            if extras["private_tmp"] and user is not None:
                await asyncio.to_thread(self._fresh_private_tmp, extras["private_tmp"], user)
            if extras["scope"]:
                # A scope left by an earlier server (stray processes) would block the name.
                await asyncio.to_thread(systemd.stop_unit, extras["scope"]["unit"])
        except (TeamhubError, OSError) as exc:
            self.log.error("Cannot set up limits for %s: %s", self.user.name, exc)
            raise SpawnFailed(f"Your server's limits could not be set up: {exc}") from None
        log_path = self._log_path()
        home = user.home if user is not None else env["HOME"]
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start\n".encode())
            self.proc = Popen(
                cmd,
                env=env,
                cwd=home,
                stdin=DEVNULL,
                stdout=fd,
                stderr=STDOUT,
                preexec_fn=_drop_privileges(user, extras["private_tmp"]),
                start_new_session=True,  # the server outlives hub restarts and its signals
                close_fds=True,
            )
        except OSError as exc:
            self.log.error("Cannot run %s for %s: %s", cmd[0], self.user.name, exc)
            raise SpawnFailed(
                f"The server program {cmd[0]} could not be run ({exc.strerror}); "
                "ask your admin to run `teamhub doctor`"
            ) from None
        except SubprocessError as exc:  # preexec_fn failed, e.g. the private /tmp mount
            self.log.error("Cannot prepare the server process of %s: %s", self.user.name, exc)
            raise SpawnFailed("Your server could not be given its private /tmp; ask your "
                              "admin to run `teamhub doctor`") from None
        finally:
            os.close(fd)
        self.pid = self.proc.pid
        if extras["scope"]:
            # Racy until the fork server's become() enters the scope before exec: for a few
            # milliseconds the server runs in the hub's cgroup. It forks nothing that early.
            try:
                await asyncio.to_thread(systemd.place_in_scope, self.proc.pid,
                                        extras["scope"]["unit"], extras["scope"]["properties"])
            except TeamhubError as exc:
                self.proc.kill()
                self.proc.wait()
                self.clear_state()
                self.log.error("Cannot place the server of %s in its scope: %s",
                               self.user.name, exc)
                raise SpawnFailed(f"Your server's limits could not be applied: {exc}") from None
        await self._wait_listening(log_path)
        return ("127.0.0.1", self.port)

    async def _wait_listening(self, log_path: Path) -> None:
        """Return once the port accepts connections; fail fast if the server exits first."""
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                with self.proc:
                    self.clear_state()
                tail = _log_tail(log_path)
                self.log.error("Server of %s exited with %s during start: %s",
                               self.user.name, code, tail)
                raise SpawnFailed(
                    f"Your server stopped while starting (exit code {code}). "
                    f"Its last output: {tail or '(none)'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.2)
