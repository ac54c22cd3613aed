"""A hub user's personal environments (~/.venvs/NAME), managed from the console's
"My environments" page.

They are the user's own files, so nothing here touches them as root: every operation runs
`teamhub-env` (the command the user runs inside their server) as the user's own Linux
account, through `setpriv` with their uid, gid and groups, their home and a clean
environment. Blocking: each call waits for that command.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable

from ..errors import EnvError
from ..paths import Paths
from ..settings import Settings
from ..system import users
from ..system.names import system_name
from .store import check_name

Echo = Callable[[str], None]
ERROR_PREFIX = "teamhub-env: error: "


def account(settings: Settings, paths: Paths, hub_name: str) -> users.SystemUser:
    """HUB_NAME's Linux account, if teamhub made it and its home is there."""
    if settings["spawner.backend"] != "local":
        raise EnvError("personal environments are made inside your server with this backend",
                       "open a terminal in your server and run `teamhub-env create NAME PKG`")
    if os.geteuid() != 0:
        # An unprivileged hub (hub.unprivileged) cannot run anything as the user: not
        # through the root helper yet (README "What runs as root").
        raise EnvError("this page cannot manage personal environments on this hub (it runs "
                       "unprivileged)", "open a terminal in your server and run "
                       "`teamhub-env create NAME PKG` (or `list`, `delete NAME`)")
    sysname = system_name(hub_name, settings["users.system_prefix"])
    found = users.lookup(sysname)
    if (found is None or not users.is_managed(sysname, registry=paths.system_users)
            or not os.path.isdir(found.home)):
        raise EnvError(f"{hub_name} has no home on this machine yet",
                       "start your server once, then come back")
    return found


def command(user: users.SystemUser, paths: Paths, *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run `teamhub-env ARGS` as USER."""
    argv = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--",
            str(paths.runtime_dir / "bin" / "teamhub-env"), *args]
    env = {"HOME": user.home, "USER": user.name, "LOGNAME": user.name,
           "PATH": f"{paths.runtime_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
           "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}  # lines as they come, not in blocks
    for name in ("SSL_CERT_FILE", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "PIP_INDEX_URL",
                 "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"):
        if name in os.environ:  # how this machine reaches the package index
            env[name] = os.environ[name]
    return argv, env


def _run(user: users.SystemUser, paths: Paths, args: list[str], echo: Echo | None) -> str:
    """Run `teamhub-env ARGS` as USER; each output line to ECHO; EnvError on failure."""
    argv, env = command(user, paths, *args)
    proc = subprocess.Popen(argv, env=env, cwd=user.home, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    error: list[str] = []  # teamhub-env's error: its "error:" line and what follows
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        lines.append(line)
        if line.startswith(ERROR_PREFIX) or error:
            error.append(line.removeprefix(ERROR_PREFIX))
        elif echo is not None:
            echo(line)
    if proc.wait() != 0:
        raise EnvError("\n".join(error[:13] if error else lines[-12:])
                       or f"teamhub-env {args[0]} failed (exit {proc.returncode})")
    return "\n".join(lines)


def list_envs(user: users.SystemUser, paths: Paths) -> list[dict[str, object]]:
    """USER's personal environments: [{name, kernel, path}]."""
    data = json.loads(_run(user, paths, ["list", "--json"], None) or "[]")
    return data if isinstance(data, list) else []


def create(user: users.SystemUser, paths: Paths, name: str, packages: list[str],
           echo: Echo) -> str:
    check_name(name)
    for pkg in packages:
        if pkg.startswith("-"):
            raise EnvError(f"{pkg!r} is not a package name", "give package names only")
    return _run(user, paths, ["create", name, "--", *packages], echo).splitlines()[-1]


def delete(user: users.SystemUser, paths: Paths, name: str) -> str:
    check_name(name)
    return _run(user, paths, ["delete", name], None).splitlines()[-1]
