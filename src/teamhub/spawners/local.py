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
from subprocess import DEVNULL, STDOUT, Popen
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Bool, Integer, List, Unicode

from ..errors import TeamhubError
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


def _drop_privileges(user: SystemUser | None) -> Any:
    """preexec_fn for the server: become USER (all groups, gid, uid) with umask 077."""

    def preexec() -> None:
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

    @property
    def system_user_name(self) -> str:
        if self.existing_accounts:
            return self.user.name
        return system_name(self.user.name, self.system_prefix)

    def _existing_account(self) -> SystemUser:
        """PAM mode's account: the user's own, checked again at every start."""
        from ..accounts.pam import account_problem

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
            account = users_lookup(self.system_user_name)
            if account is not None:
                # Kernels are gone with the server: their sockets and keys go too.
                shutil.rmtree(Path(self.private_runtime_root) / str(account.uid),
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
                preexec_fn=_drop_privileges(user),
                start_new_session=True,  # the server outlives hub restarts and its signals
                close_fds=True,
            )
        except OSError as exc:
            self.log.error("Cannot run %s for %s: %s", cmd[0], self.user.name, exc)
            raise SpawnFailed(
                f"The server program {cmd[0]} could not be run ({exc.strerror}); "
                "ask your admin to run `teamhub doctor`"
            ) from None
        finally:
            os.close(fd)
        self.pid = self.proc.pid
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
