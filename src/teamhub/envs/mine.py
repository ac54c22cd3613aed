"""A hub user's personal environments (~/.venvs/NAME), managed from the console's
"My environments" page.

They are the user's own files, so nothing here touches them as root: every operation runs
`teamhub-env` (the command the user runs inside their server) as the user's own Linux
account, through `setpriv` with their uid, gid and groups, their home and a clean
environment (`command`). A root hub runs it itself (`direct`); an unprivileged hub asks
the root helper's `user_env` verb, which checks the account and the arguments (`ARGS`
rules: teamhub.spawners.rootdoor) and runs the same `command`, streaming its lines.
Blocking: each call waits for that command.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..errors import EnvError
from ..paths import Paths
from ..settings import Settings
from ..system import users
from ..system.names import system_name
from .store import check_name

Echo = Callable[[str], None]
# Runs `teamhub-env ARGS` as the user, each output line to the echo; its exit code.
Runner = Callable[[list[str], Echo], int]
ERROR_PREFIX = "teamhub-env: error: "
# The environment that says how this machine reaches the package index (nothing else of
# the caller's environment reaches the user's command).
INDEX_ENV = ("SSL_CERT_FILE", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "PIP_INDEX_URL",
             "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")
MAX_PACKAGES = 100
MAX_ARG = 400


def check_backend(settings: Settings) -> None:
    if settings["spawner.backend"] != "local":
        raise EnvError("personal environments are made inside your server with this backend",
                       "open a terminal in your server and run `teamhub-env create NAME PKG`")


def account(settings: Settings, paths: Paths, hub_name: str) -> users.SystemUser:
    """HUB_NAME's Linux account, if teamhub made it and its home is there (root only: the
    registry is root's; an unprivileged hub's helper checks it itself)."""
    check_backend(settings)
    sysname = system_name(hub_name, settings["users.system_prefix"])
    found = users.lookup(sysname)
    if (found is None or not users.is_managed(sysname, registry=paths.system_users)
            or not os.path.isdir(found.home)):
        raise EnvError(f"{hub_name} has no home on this machine yet",
                       "start your server once, then come back")
    return found


def index_env() -> dict[str, str]:
    """How this machine reaches the package index, from this process's environment."""
    return {name: os.environ[name] for name in INDEX_ENV if name in os.environ}


def command(user: users.SystemUser, runtime_dir: Path, *args: str,
            index: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run `teamhub-env ARGS` as USER; INDEX: how
    the package index is reached (default: as this process reaches it)."""
    argv = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--",
            str(runtime_dir / "bin" / "teamhub-env"), *args]
    env = {"HOME": user.home, "USER": user.name, "LOGNAME": user.name,
           "PATH": f"{runtime_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
           "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}  # lines as they come, not in blocks
    given = index_env() if index is None else index
    env.update({name: given[name] for name in INDEX_ENV if name in given})
    return argv, env


def check_args(args: object) -> list[str]:
    """ARGS if they are what the page runs (`list --json`, `create NAME -- PKG...`,
    `delete NAME`), else EnvError: the helper runs nothing else as the user."""
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise EnvError("arguments must be a list of text")
    if args == ["list", "--json"]:
        return args
    if len(args) == 2 and args[0] == "delete":
        check_name(args[1])
        return args
    if len(args) >= 3 and args[0] == "create" and args[2] == "--":
        check_name(args[1])
        check_packages(args[3:])
        return args
    raise EnvError(f"teamhub-env {' '.join(args)[:60]!r} is not what this page runs",
                   "list --json, create NAME -- PKG..., delete NAME")


def check_packages(packages: object) -> list[str]:
    """PACKAGES if they are package requirements (no option, at most MAX_PACKAGES, none
    empty, over MAX_ARG characters or with white space), else EnvError."""
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise EnvError("packages must be a list of text")
    if len(packages) > MAX_PACKAGES:
        raise EnvError(f"at most {MAX_PACKAGES} packages at once")
    for pkg in packages:
        if (not pkg or pkg.startswith("-") or len(pkg) > MAX_ARG
                or any(c.isspace() or c == "\0" for c in pkg)):
            raise EnvError(f"{pkg[:60]!r} is not a package name", "give package names only")
    return packages


def run_as(user: users.SystemUser, runtime_dir: Path, args: list[str], echo: Echo,
           index: dict[str, str] | None = None) -> int:
    """Run `teamhub-env ARGS` as USER (`command`), each output line to ECHO; exit code."""
    argv, env = command(user, runtime_dir, *args, index=index)
    proc = subprocess.Popen(argv, env=env, cwd=user.home, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    for raw in proc.stdout:
        echo(raw.rstrip("\n"))
    return proc.wait()


def direct(user: users.SystemUser, paths: Paths) -> Runner:
    """The runner of a root process: `teamhub-env` as USER, run here."""
    return lambda args, echo: run_as(user, paths.runtime_dir, args, echo)


def _run(runner: Runner, args: list[str], echo: Echo | None) -> str:
    """Run `teamhub-env ARGS` with RUNNER; each output line to ECHO; EnvError on failure."""
    lines: list[str] = []
    error: list[str] = []  # teamhub-env's error: its "error:" line and what follows

    def line(text: str) -> None:
        lines.append(text)
        if text.startswith(ERROR_PREFIX) or error:
            error.append(text.removeprefix(ERROR_PREFIX))
        elif echo is not None:
            echo(text)

    code = runner(check_args(args), line)
    if code != 0:
        raise EnvError("\n".join(error[:13] if error else lines[-12:])
                       or f"teamhub-env {args[0]} failed (exit {code})")
    return "\n".join(lines)


def list_envs(runner: Runner) -> list[dict[str, object]]:
    """The user's personal environments: [{name, kernel, path}]."""
    data = json.loads(_run(runner, ["list", "--json"], None) or "[]")
    return data if isinstance(data, list) else []


def create(runner: Runner, name: str, packages: list[str], echo: Echo) -> str:
    return _run(runner, ["create", name, "--", *packages], echo).splitlines()[-1]


def delete(runner: Runner, name: str) -> str:
    return _run(runner, ["delete", name], None).splitlines()[-1]
