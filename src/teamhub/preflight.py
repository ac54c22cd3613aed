"""Checks `teamhub up` runs before starting anything; each failure says how to fix it."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

from .errors import PreflightError

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
        raise PreflightError(f"state folder {path} exists but is not a folder; {hint}")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PreflightError(
            f"state folder {path} is not writable ({exc.strerror}); {hint}"
        ) from None


def _listener(port: int) -> str:
    ss = shutil.which("ss")
    if not ss:
        return ""
    out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    line = out.stdout.strip().splitlines()[:1]
    if line and "users:((" in line[0]:
        return " by " + line[0].split("users:((", 1)[1].split(",")[0].strip('"')
    return ""


def check_port_free(ip: str, port: int, what: str, fix: str) -> None:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PreflightError(
                    f"{what} port {port} on {ip} is already in use{_listener(port)}; "
                    f"stop that program or {fix}"
                ) from None
            raise PreflightError(f"cannot listen on {ip}:{port} ({exc.strerror}); {fix}") from None


def check_own_name(ip: str) -> None:
    """Listening on all addresses, JupyterHub checks its proxy by this machine's name."""
    if ip not in ("0.0.0.0", "::", ""):
        return
    name = socket.gethostname()
    fix = (f"add the line '127.0.1.1 {name}' to /etc/hosts (install.sh does this), "
           "or listen on one address with `teamhub up --ip ADDRESS`")
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise PreflightError(
            f"this machine's name {name!r} does not resolve to an address, and JupyterHub "
            f"reaches its proxy by that name when listening on all addresses; {fix}"
        ) from None
    for family, _, _, _, addr in infos:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((addr[0], 0))
                return
            except OSError:
                continue
    found = ", ".join(sorted({str(i[4][0]) for i in infos}))
    raise PreflightError(
        f"this machine's name {name!r} resolves to {found}, not an address of this machine; {fix}"
    )


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
                             f"is missing or incomplete; {fix}")
    closed = _first_closed_dir(singleuser)
    if closed is not None:
        raise PreflightError(
            f"users cannot run the runtime {runtime_dir}: it lies inside {closed}, "
            f"which only its owner may enter; {fix}"
        )
    closed = _first_closed_dir(python)
    if closed is not None:
        raise PreflightError(
            f"users cannot run the runtime {runtime_dir}: its Python "
            f"{os.path.realpath(python)} lies inside {closed}, which only its owner may "
            f"enter (this is the classic 'interpreter in the admin's home' failure); {fix}"
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
        raise PreflightError(f"users cannot run {singleuser} ({exc}); {fix}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PreflightError(
            f"users cannot run {singleuser}: as user {NOBODY} it failed with: {last}; {fix}"
        )


def check_proxy(command: str) -> None:
    if shutil.which(command) is None:
        raise PreflightError(
            f"proxy program {command!r} not found; `install.sh` installs "
            "configurable-http-proxy beside the runtime (it needs nodejs), "
            "or set proxy.command to its path"
        )


def check_tls(cert: str, key: str) -> None:
    """A TLS pair the proxy can serve: both set, readable, matching, not expired."""
    from .tls import TlsError, check_usable

    try:
        check_usable(cert, key)
    except TlsError as exc:
        raise PreflightError(str(exc)) from None
def check_limits(settings: object) -> None:
    """Refuse to start when per-user limits are on but this machine cannot enforce them."""
    from .limits import limits_status

    ok, why = limits_status(settings)
    if not ok:
        raise PreflightError(why)


def check_docker(settings: object) -> None:
    """With the docker backend: the engine answers and the configured image is here."""
    from . import images
    from .errors import DockerError
    from .system.docker import Engine

    if settings["spawner.backend"] != "docker":  # type: ignore[index]
        return
    image = settings["docker.image"]  # type: ignore[index]
    try:
        engine = Engine()
        engine.ping()
        if not images.present(image, engine):
            raise PreflightError(images.missing_message(image))
    except DockerError as exc:
        raise PreflightError(f"spawner.backend is docker but {exc}") from None
