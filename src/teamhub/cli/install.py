"""`teamhub install` / `teamhub uninstall`: run teamhub as a systemd service.

Installing again is an upgrade: the hub database and account store are backed up
(timestamped, root-only), migrated, and the service restarted. Users' servers live in
their own systemd scopes (teamhub.slice), not in teamhub.service's cgroup, so stopping
the service (KillMode=control-group ends the hub and its proxy) leaves them running;
the hub picks them up again at start.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click

from .. import preflight, rootfiles
from ..accounts.store import AccountStore
from ..db.url import mask
from ..errors import TeamhubError
from ..hubclient import HubClient
from ..paths import Paths
from ..settings import Settings, set_value
from ..system import systemd
from .base import Context, cli, pass_ctx
from .up import ensure_admin, run_preflight

SERVICE = "teamhub.service"
BACKUPS = "backups"


def unit_text(settings: Settings, paths: Paths) -> str:
    """The teamhub.service unit for these settings."""
    teamhub = paths.runtime_dir / "bin" / "teamhub"
    env = []
    # Settings that came from the environment of this install must reach the service too.
    for origin in sorted(settings.origins.values()):
        if origin.startswith("env "):
            var = origin[4:]
            env.append(f'Environment="{var}={os.environ[var]}"')
    env_lines = "\n".join(env)
    return f"""# Written by `teamhub install`; re-run it or `teamhub uninstall` instead of editing.
[Unit]
Description=teamhub, the team Jupyter server
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={teamhub} --config {paths.config_file} up
Restart=on-failure
RestartSec=2
# Ends the hub and its proxy only: users' servers run in their own scopes (teamhub.slice).
KillMode=control-group
TimeoutStopSec=30
{env_lines}

[Install]
WantedBy=multi-user.target
"""


def backup_state(paths: Paths, stamp: str | None = None) -> Path | None:
    """Copy the hub DB and account store into <state>/backups/<UTC time>/ (0700, files
    0600), consistently even while the hub writes; None if there is nothing to back up."""
    sources = [p for p in (paths.hub_db, paths.accounts_db) if p.exists()]
    if not sources:
        return None
    stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    root = paths.state_dir / BACKUPS
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    folder = root / stamp
    folder.mkdir(mode=0o700)
    for src in sources:
        dest = folder / src.name
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        with sqlite3.connect(src) as s, sqlite3.connect(dest) as d:
            s.backup(d)
        os.chmod(dest, 0o600)
    return folder


def migrate(paths: Paths) -> None:
    """Bring the hub DB (jupyterhub upgrade-db) and the account store to this version."""
    if paths.db_url:
        _upgrade_server_hub_db(paths)
    elif paths.hub_db.exists():
        jupyterhub = paths.runtime_dir / "bin" / "jupyterhub"
        proc = subprocess.run(
            [str(jupyterhub), "upgrade-db", f"--JupyterHub.db_url=sqlite:///{paths.hub_db}"],
            capture_output=True, text=True, timeout=300, cwd=paths.state_dir,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise TeamhubError(f"jupyterhub upgrade-db failed: {' | '.join(tail)}",
                               "the "
                               f"database was backed up first, see {paths.state_dir / BACKUPS}")
    if paths.store_exists:
        AccountStore(paths.accounts_db, paths.db_url)  # opening it applies pending migrations


def _upgrade_server_hub_db(paths: Paths) -> None:
    """JupyterHub's own upgrade of a PostgreSQL hub database (its alembic, run with an ini
    file that holds the URL: the password never appears on a command line)."""
    # Deferred: JupyterHub's database helpers are needed only here.
    from jupyterhub import dbutil

    env_path = f"{paths.runtime_dir / 'bin'}:{os.environ.get('PATH', '')}"
    old_path = os.environ.get("PATH")
    os.environ["PATH"] = env_path  # dbutil runs `alembic` from PATH: the runtime's own
    try:
        dbutil.upgrade(paths.hub_db_url)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise TeamhubError(f"upgrading the hub database in {mask(paths.db_url)} failed ({exc})",
                           "back the database up (pg_dump), then see `teamhub doctor`") from None
    finally:
        if old_path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old_path


def wait_for_hub(port: int, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if systemd.unit_active(SERVICE) == "failed":
            return False
        try:
            if HubClient(f"http://127.0.0.1:{port}").call("GET", "/hub/login").status < 400:
                return True
        except TeamhubError:
            pass
        time.sleep(0.5)
    return False


def _need_systemd(what: str) -> None:
    if os.geteuid() != 0:
        raise TeamhubError(f"teamhub {what} must run as root (sudo teamhub {what})")
    if not systemd.booted() or shutil.which("systemctl") is None:
        raise TeamhubError(
            f"teamhub {what} needs systemd as init, which this machine does not run",
            "start teamhub with `./install.sh` (it runs the hub detached) or `teamhub up`"
        )


@cli.command()
@click.option("--admin", metavar="NAME", default="admin", show_default=True,
              help="First admin account; a new one gets a generated password, printed once.")
@click.option("--port", type=int, help="Public port, saved in the settings (hub.port).")
@click.option("--no-start", is_flag=True, help="Write and enable the service, do not start it.")
@pass_ctx
def install(ctx: Context, admin: str, port: int | None, no_start: bool) -> None:
    """Install (or upgrade) teamhub as the systemd service teamhub.service.

    Writes the unit (runtime from paths.runtime_dir, settings from the settings file,
    state in paths.state_dir, root-only), enables and starts it, and waits until the hub
    answers. Run again after updating the runtime to upgrade: the hub database and
    account store are backed up to <state>/backups/<time>/ first, then migrated, then
    the service is restarted; users' servers keep running.
    """
    _need_systemd("install")
    if port is not None:
        set_value(ctx.config_file, "hub.port", str(port))
        ctx._settings = None
    settings = ctx.settings
    paths = ctx.paths
    preflight.ensure_state_dir(paths.state_dir)
    preflight.check_runtime(paths.runtime_dir, paths.singleuser, paths.runtime_python)
    upgrade = (systemd.UNIT_DIR / SERVICE).exists() or paths.hub_db.exists()
    if upgrade:
        folder = backup_state(paths)
        if folder is not None:
            click.echo(f"Backed up the hub database and account store to {folder}")
    was_active = systemd.unit_active(SERVICE) == "active"
    if was_active:
        click.echo("Stopping teamhub.service (users' servers keep running)")
        systemd.systemctl("stop", SERVICE)

    try:
        # Root's own files beside the state folder (an older install's moved there).
        rootfiles.migrate(paths, rootfiles.hub_group(settings))
        migrate(paths)
        # What `teamhub up` would refuse (ports, proxy, limits it cannot enforce) is said
        # here, once, instead of by a service that fails and restarts over and over.
        run_preflight(settings, paths, trial=False)
    except TeamhubError:
        if was_active:  # leave the service as it was found
            systemd.systemctl("start", SERVICE, check=False)
        raise

    password = ensure_admin(paths, admin)
    systemd.write_unit(SERVICE, unit_text(settings, paths))
    systemd.systemctl("daemon-reload")
    systemd.systemctl("enable", "--quiet", SERVICE)
    if no_start:
        click.echo(f"Installed {SERVICE}; start it with `systemctl start teamhub`")
        return
    systemd.systemctl("restart", SERVICE)
    hub_port = settings["hub.port"]
    if not wait_for_hub(hub_port):
        click.echo(systemd.journal(SERVICE, 20), err=True)
        raise TeamhubError(f"{SERVICE} did not answer on port {hub_port} within 2 minutes",
                           "see `teamhub logs` (its last lines are above)")
    click.echo(f"teamhub is {'upgraded and ' if upgrade else ''}running as {SERVICE}: "
               f"http://{_host()}:{hub_port}/")
    if password:
        click.echo(f"    log in as '{admin}' with password: {password}   "
                   f"(saved in {paths.initial_password})")


def _host() -> str:
    import socket

    return socket.getfqdn() or "localhost"


@cli.command()
@click.option("--purge", is_flag=True,
              help="Also delete the state folder (hub DB, accounts, backups), root's folder "
                   "beside it (the registry of Linux accounts, the helper's log) and the "
                   "settings file. Users' homes, project folders and Linux accounts are kept.")
@pass_ctx
def uninstall(ctx: Context, purge: bool) -> None:
    """Remove the teamhub service; keeps all data unless --purge.

    Stops teamhub.service and every user's server (teamhub.slice), disables the service
    and removes its unit file.
    """
    _need_systemd("uninstall")
    paths = ctx.paths
    systemd.systemctl("disable", "--now", "--quiet", SERVICE, check=False)
    systemd.stop_unit("teamhub.slice")  # every server, and the proxy's scope
    removed = systemd.remove_unit(SERVICE)
    systemd.systemctl("daemon-reload")
    systemd.systemctl("reset-failed", check=False)
    click.echo(f"Removed {SERVICE}" if removed else f"{SERVICE} was not installed")
    if purge:
        for path in (paths.state_dir, paths.root_dir):
            shutil.rmtree(path, ignore_errors=True)
        paths.config_file.unlink(missing_ok=True)
        click.echo(f"Deleted {paths.state_dir}, {paths.root_dir} and {paths.config_file}")
    else:
        click.echo(f"Kept {paths.state_dir}, {paths.root_dir} (the account registry) and "
                   f"{paths.config_file} (--purge deletes them)")
    sys.stdout.flush()
