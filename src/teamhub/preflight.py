"""Checks `teamhub up` runs before starting anything; each failure says how to fix it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Set
from pathlib import Path

from . import images
from .errors import DockerError, PreflightError, TlsError
from .gpu_report import gpus_status
from .gpus import configured, from_settings
from .limits import limits_status
from .proxy import chp_library
from .settings import Settings
from .system import listen
from .system.docker import Engine
from .tls import check_usable

NOBODY = "nobody"


def check_root(trial: bool) -> None:
    if os.geteuid() != 0 and not trial:
        raise PreflightError(
            "teamhub up must run as root: each person's server runs as their own Linux "
            "account, which only root can arrange. Run it with sudo, or try it without "
            "isolation as yourself with `teamhub up --single-user-trial`"
        )


def ensure_state_dir(path: Path) -> None:
    """Create the state folder root-only (0700), or say why it cannot be used."""
    hint = "set paths.state_dir to a writable folder (`teamhub config set paths.state_dir DIR`)"
    if path.exists() and not path.is_dir():
        raise PreflightError(f"state folder {path} exists but is not a folder", f"{hint}")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PreflightError(
            f"state folder {path} is not writable ({exc.strerror})", f"{hint}"
        ) from None


def check_port_free(ip: str, port: int, what: str, fix: str, ours: Set[int] = frozenset(),
                    helper_binds: bool = False) -> None:
    """Nothing but teamhub's own proxy (pids OURS) may listen on PORT, in either family and
    on any address: a socket another user holds on [::]:PORT would otherwise take every
    IPv6 visitor while teamhub listens on IPv4 (or the reverse). HELPER_BINDS: the root
    helper starts the proxy (an unprivileged `teamhub restart`), so a port below 1024 that
    this process may not bind is no fault of the port's."""
    found = listen.listeners(port) or []
    strangers = [x for x in found if x.pid not in ours]
    if helper_binds and port < 1024 and ours:
        # The helper's proxy holds CAP_NET_BIND_SERVICE, so this account may not look into
        # it (ptrace rules) and `ss` names no program; below 1024 nobody unprivileged can
        # listen at all, and our recorded proxy runs.
        strangers = [x for x in strangers if x.pid is not None]
    if strangers:
        raise PreflightError(
            f"{what} port {port} is already in use: "
            f"{'; '.join(x.describe() for x in strangers)}", f"stop that program or {fix}"
        )
    if found:
        return  # our own proxy, left running by the previous hub: it is adopted
    error = listen.can_bind(ip, port)
    if listen.in_use(error):
        raise PreflightError(f"{what} port {port} on {ip} is already in use",
                             f"stop that program or {fix}")
    if helper_binds and isinstance(error, PermissionError) and port < 1024:
        return  # nobody listens there (above); the helper's proxy may bind it
    if error is not None:
        raise PreflightError(f"cannot listen on {ip}:{port} ({error.strerror})", f"{fix}")


def check_no_hub_answers(hub_socket: Path) -> None:
    """A second hub would take over the first one's socket (JupyterHub replaces it)."""
    if not listen.socket_answers(hub_socket):
        return
    raise PreflightError(f"a hub already runs here (it answers on {hub_socket})",
                         "stop it "
                         "first (`systemctl stop teamhub`, or end its `teamhub up`)")


def ensure_socket_dir(path: Path, hub_uid: int | None = None,
                      previous_uid: int | None = None) -> None:
    """The folder of the hub's and proxy's sockets: writable by its owner only (0755), in a
    root-owned parent, so that no user can put a socket of their own there. Its owner is
    root, or HUB_UID (`hub.unprivileged`: the hub binds its sockets as that account); one
    that root, HUB_UID or PREVIOUS_UID (the hub's account before a switch back) owns is
    taken over."""
    if os.geteuid() != 0:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return
    for folder in (path.parent, path):
        folder.mkdir(mode=0o755, exist_ok=True)
        info = os.lstat(folder)
        owners = {0} if folder == path.parent else {0, hub_uid, previous_uid}
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in owners:
            raise PreflightError(
                f"{folder} must be a folder owned by root (it holds the hub's sockets)",
                f"remove it (`rm -rf {folder}`) and start again"
            )
        os.chmod(folder, 0o755)
    os.chown(path, hub_uid or 0, -1, follow_symlinks=False)


def _low_ports(settings: Settings) -> list[int]:
    """The proxy's ports below 1024 (public, HTTPS redirect): only root may bind them."""
    ports = [settings["hub.port"]]
    if settings["tls.cert"]:
        ports.append(settings["tls.http_port"])
    return [p for p in ports if 0 < p < 1024]


def check_unprivileged(settings: Settings, trial: bool) -> None:
    """`hub.unprivileged` needs the root helper (the fork server): both backends start
    servers through it (the docker backend's containers too: the Docker socket is root's),
    and it starts the proxy, with CAP_NET_BIND_SERVICE for a port below 1024. Its default
    (on) does not apply to the single-user trial, which runs as the invoking user; an
    explicit `true` there is refused."""
    if not settings["hub.unprivileged"]:
        return
    default = settings.origins["hub.unprivileged"] == "default"
    if trial and default:
        return
    off = "turn it off (`teamhub config set hub.unprivileged false`: the hub runs as root)"
    why, fix = None, off
    if trial:
        why = "the single-user trial runs everything as you already"
        fix = "remove it for the trial (`teamhub config unset hub.unprivileged`)"
    elif not settings["spawner.fork_server"]:
        why = "spawner.fork_server is off, and servers start through the fork server (the " \
              "root helper) only"
        fix = off + " or turn the fork server back on (`teamhub config unset " \
                    "spawner.fork_server`)"
    if why:
        on = " (the default)" if default else ""
        raise PreflightError(f"hub.unprivileged is on{on} but {why}", fix)
    low = _low_ports(settings)
    if low and shutil.which("setpriv") is None:
        raise PreflightError(
            f"hub.unprivileged is on and port {low[0]} is below 1024, but util-linux's "
            "setpriv, with which the root helper lets the proxy alone bind it, is not "
            "installed", "install it (`apt-get install util-linux`), or choose a port "
            "from 1024 up")


def _first_closed_dir(path: Path) -> Path | None:
    """The first folder on PATH's real location that other users cannot enter."""
    real = Path(os.path.realpath(path))
    for parent in [*reversed(real.parents)]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            return parent
    return None


def check_runtime(runtime_dir: Path, singleuser: Path, python: Path) -> None:
    """An ordinary user must be able to run the single-user server from the runtime."""
    fix = ("rebuild it from a world-readable Python with `install.sh` "
           "(it uses the system's /usr/bin/python3), or set paths.runtime_dir")
    if not singleuser.exists():
        raise PreflightError(f"no single-user server at {singleuser}: the runtime {runtime_dir} "
                             "is missing or incomplete", fix)
    closed = _first_closed_dir(singleuser)
    if closed is not None:
        raise PreflightError(
            f"users cannot run the runtime {runtime_dir}: it lies inside {closed}, "
            "which only its owner may enter", fix
        )
    closed = _first_closed_dir(python)
    if closed is not None:
        raise PreflightError(
            f"users cannot run the runtime {runtime_dir}: its Python "
            f"{os.path.realpath(python)} lies inside {closed}, which only its owner may "
            "enter (this is the classic 'interpreter in the admin's home' failure)", fix
        )
    if os.geteuid() != 0:
        return
    try:
        proc = subprocess.run(
            [str(singleuser), "--version"], capture_output=True, text=True, timeout=60,
            user=NOBODY, group="nogroup", extra_groups=[], cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PreflightError(f"users cannot run {singleuser} ({exc})", fix) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PreflightError(
            f"users cannot run {singleuser}: as user {NOBODY} it failed with: {last}", fix
        )


def check_proxy(command: str) -> None:
    """teamhub runs configurable-http-proxy's library (with node) behind its own launcher."""
    fix = ("`install.sh` installs configurable-http-proxy beside the runtime (it needs "
           "nodejs), or set proxy.command to its path")
    if shutil.which(command) is None:
        raise PreflightError(f"proxy program {command!r} not found", f"{fix}")
    if chp_library(command) is None:
        raise PreflightError(f"{command} is not configurable-http-proxy's program (no "
                             "lib/configproxy.js beside it)", f"{fix}")
    if shutil.which("node") is None:
        raise PreflightError("node is not installed, and the proxy runs on it", f"{fix}")


def check_tls(cert: str, key: str) -> None:
    """A TLS pair the proxy can serve: both set, readable, matching, not expired."""
    try:
        check_usable(cert, key)
    except TlsError as exc:
        raise PreflightError(exc.message, exc.hint) from None


def check_limits(settings: Settings) -> None:
    """Refuse to start when per-user limits are on but this machine cannot enforce them."""
    ok, why = limits_status(settings)
    if not ok:
        raise PreflightError(why)


def check_gpus(settings: Settings, trial: bool = False) -> None:
    """Refuse to start when the `[gpus]` settings cannot be honoured (and so kept) here."""
    if trial:
        if configured(from_settings(settings)):
            raise PreflightError("[gpus] values other than none need root (GPUs are kept "
                                 "apart per Linux account)",
                                 "run teamhub up as root, or set "
                                 "them to none for the single-user trial")
        return
    ok, why = gpus_status(settings)
    if not ok:
        raise PreflightError(why)


def check_docker(settings: Settings) -> None:
    """With the docker backend: the engine answers and the configured image is here."""
    if settings["spawner.backend"] != "docker":
        return
    image = settings["docker.image"]
    try:
        engine = Engine()
        engine.ping()
        if not images.present(image, engine):
            raise PreflightError(images.missing_problem(image, "docker.image"),
                                 images.build_hint(image))
        missing = images.missing_allowed(settings["docker.images"], engine)
        if missing:
            raise PreflightError(missing)
    except DockerError as exc:
        raise PreflightError(f"spawner.backend is docker but {exc.message}", exc.hint) from None
