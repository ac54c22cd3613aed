"""`teamhub restart`: restart the hub so that it reads the settings again.

Users' servers and the proxy outlive the hub (README "Servers survive hub
restarts"), so a restart interrupts nobody's kernels: the hub stops, starts,
and adopts them again.

Two ways teamhub runs, two ways to restart it:
- as the systemd service (the hub's process is in teamhub.service): `systemctl
  restart teamhub`;
- in the foreground (`teamhub up` in a terminal, or install.sh's background
  start without systemd): the request `<state>/restart-requested` names the
  hub's pid, then SIGTERM; that `teamhub up` stops its hub as usual and, seeing
  the request, replaces itself with a fresh `teamhub up` (same pid, terminal and
  log; cli/up.py `start_again`).

Either way the command returns once the new hub answers: its CLI token, made new
at every start, has changed and the verified hub answers with it.
"""

from __future__ import annotations

import os
import signal
import time

import click

from .. import hubclient
from ..errors import HubError, HubImpostor, HubNotRunning, TeamhubError
from ..hubclient import HubIdentity
from ..paths import Paths
from ..system import systemd
from .base import Context, cli, pass_ctx
from .install import SERVICE

RESTART_TIMEOUT = 180.0


def _token(paths: Paths) -> str:
    try:
        return paths.api_token.read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_new_hub(paths: Paths, old_token: str, pid: int | None,
                     timeout: float = RESTART_TIMEOUT) -> None:
    """Until a hub started after OLD_TOKEN answers; TeamhubError after TIMEOUT, or at once
    when PID (a foreground hub that restarts in place) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not _alive(pid):
            raise TeamhubError(f"the hub (pid {pid}) stopped but did not start again",
                               "see its "
                               "log (`teamhub logs`) and start it with `teamhub up`")
        if _token(paths) not in ("", old_token):
            try:
                if hubclient.hub_running(paths):
                    return
            except HubImpostor:
                raise
            except HubError:
                pass  # starting: not answering yet
        time.sleep(0.5)
    raise TeamhubError(f"the hub did not answer within {timeout:g} s of the restart",
                       "see its "
                       "log (`teamhub logs`) and `teamhub status`")


def _under_systemd(pid: int | None) -> bool:
    if not systemd.booted() or not (systemd.UNIT_DIR / SERVICE).exists():
        return False
    return pid is None or systemd.in_unit(pid, SERVICE)


@cli.command()
@pass_ctx
def restart(ctx: Context) -> None:
    """Restart the hub so that changed settings take effect; users' servers keep running.

    Restarts teamhub.service when teamhub runs as the systemd service, else the
    foreground `teamhub up` (which starts itself again, same pid and terminal).
    Returns when the new hub answers. The proxy keeps the public port meanwhile;
    the hub's pages answer 503 for those seconds. Run it as root.
    """
    paths = ctx.paths
    pid = HubIdentity.of(paths).live_pid()
    old_token = _token(paths)
    if ctx.settings["hub.stop_servers_on_shutdown"]:
        click.echo("note: hub.stop_servers_on_shutdown is on: the stopping hub stops every "
                   "user's server", err=True)
    if _under_systemd(pid):
        systemd.systemctl("restart", SERVICE)
        wait_for_new_hub(paths, old_token, None)
        click.echo(f"restarted {SERVICE}; the hub answers")
        return
    if pid is None:
        raise HubNotRunning(f"no hub is running ({paths.hub_pid_file} names no live hub "
                            "process)", "start it with `teamhub up`")
    # Root-only state folder: nobody else can ask a hub to restart.
    paths.restart_request.write_text(f"{pid}\n")
    # An unprivileged hub (hub.unprivileged) reads and removes it as the state folder's owner.
    os.chown(paths.restart_request, paths.state_dir.stat().st_uid, -1)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        paths.restart_request.unlink(missing_ok=True)
        raise HubNotRunning(f"the hub (pid {pid}) ended just now",
                            "start it with "
                            "`teamhub up`") from None
    wait_for_new_hub(paths, old_token, pid)
    click.echo(f"restarted the hub (pid {pid}, `teamhub up` in the foreground); it answers")
