"""`teamhub status` and `teamhub logs`: is it running, and what did it say."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import click

from .. import hubclient
from ..errors import DockerError, TeamhubError
from ..gpu_report import holdings_report
from ..system import listen, systemd
from ..system.containers import LABEL_SERVER, LABEL_USER
from ..system.docker import Engine
from .base import Context, cli, echo_json, pass_ctx
from .install import SERVICE

# Where install.sh's detached start writes (its --log default).
DEFAULT_LOG = Path("/var/log/teamhub/teamhub.log")


def _listening(port: int, ip: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((ip, port), timeout=2):
            return True
    except OSError:
        return False


def _hub(ctx: Context) -> tuple[bool, str, str]:
    """(running, where, problem): whether the verified hub answers, at what, and if not why."""
    try:
        client = hubclient.HubClient.for_cli(ctx.paths)
    except TeamhubError as exc:
        return False, "not announced", str(exc)
    try:
        return client.answers(), str(client.endpoint), ""
    except TeamhubError as exc:
        return False, str(client.endpoint), str(exc)


def _servers(ctx: Context) -> list[dict[str, Any]] | None:
    try:
        reply = hubclient.HubClient.for_cli(ctx.paths).call("GET", "/users?state=active")
    except TeamhubError:
        return None
    if reply.status != 200 or not isinstance(reply.body, list):
        return None
    out = []
    for user in reply.body:
        for name, server in (user.get("servers") or {}).items():
            out.append({"user": user["name"], "server": name, "ready": server.get("ready"),
                        "started": server.get("started"),
                        "last_activity": server.get("last_activity"),
                        "scope": f"teamhub-user-{user['name']}{'-' + name if name else ''}.scope"})
    return sorted(out, key=lambda s: (s["user"], s["server"]))


def _add_containers(servers: list[dict[str, Any]]) -> None:
    """With the docker backend: each server's container id (None: no container found)."""
    try:
        found = Engine().containers(label=LABEL_USER)
    except DockerError:
        found = []
    by_server = {((c.get("Labels") or {}).get(LABEL_USER), (c.get("Labels") or {})
                  .get(LABEL_SERVER, "")): c for c in found}
    for srv in servers:
        container = by_server.get((srv["user"], srv["server"]))
        srv["container"] = container["Id"][:12] if container else None
        srv["scope"] = None


def _gpus(ctx: Context) -> list[dict[str, Any]] | None:
    """Each GPU and its holders (no memory or processes: `teamhub gpu status` has those);
    None when this machine has none."""
    try:
        report = holdings_report(ctx.paths, with_usage=False)
    except TeamhubError:
        return None
    return [{"index": d["index"], "uuid": d["uuid"], "name": d["name"],
             "holders": d["holders"]} for d in report] or None


def gather(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    paths = ctx.paths
    service = systemd.unit_active(SERVICE) if systemd.booted() else ""
    installed = (systemd.UNIT_DIR / SERVICE).exists()
    hub_ok, hub_at, problem = _hub(ctx)
    # Listening is what tells the proxy is up; what it answers depends on the hub.
    ip = s["hub.ip"]
    public_ip = "127.0.0.1" if listen.all_addresses(ip) else ip
    public_ok = _listening(s["hub.port"], public_ip)
    servers = _servers(ctx) if hub_ok else None
    if servers and s["spawner.backend"] == "docker":
        _add_containers(servers)
    gpus = _gpus(ctx)
    return {
        "service": {"manager": "systemd" if systemd.booted() else "none",
                    "installed": installed, "state": service or "not managed by systemd"},
        "hub": {"running": hub_ok, "url": hub_at, "socket": str(paths.hub_socket),
                "problem": problem},
        "proxy": {"running": public_ok and listen.socket_answers(paths.proxy_api_socket),
                  "public_port": s["hub.port"], "api_socket": str(paths.proxy_api_socket)},
        "servers": servers,
        "gpus": gpus,
    }


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Show the service, hub, proxy and running users' servers.

    Exits 0 when the hub and proxy answer, 1 otherwise.
    """
    info = gather(ctx)
    if as_json:
        echo_json(info)
    else:
        svc = info["service"]
        click.echo(f"service: {svc['state']}" + ("" if svc["installed"] or svc["manager"] ==
                                                "none" else " (teamhub.service not installed)"))
        hub = info["hub"]
        click.echo(f"hub:     {'running' if hub['running'] else 'not answering'} ({hub['url']})"
                   + (f": {hub['problem']}" if hub["problem"] else ""))
        p = info["proxy"]
        click.echo(f"proxy:   {'running' if p['running'] else 'not answering'} "
                   f"(public port {p['public_port']}, api {p['api_socket']})")
        servers = info["servers"]
        if servers is None:
            click.echo("servers: unknown (no hub answered)")
        else:
            click.echo(f"servers: {len(servers)} running")
            for srv in servers:
                label = srv["user"] + (f"/{srv['server']}" if srv["server"] else "")
                where = f"  container {srv['container']}" if srv.get("container") else ""
                click.echo(f"  {label:24} {'ready' if srv['ready'] else 'starting':9} "
                           f"last active {srv['last_activity'] or '-'}{where}")
        for d in info["gpus"] or []:
            holders = ", ".join(h["user"] + (f"/{h['server']}" if h["server"] else "")
                                for h in d["holders"]) or "free"
            click.echo(f"gpu {d['index']}:   {holders} ({d['name']}, {d['uuid']})")
    if not (info["hub"]["running"] and info["proxy"]["running"]):
        raise SystemExit(1)


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option("-n", "--lines", default=100, show_default=True, help="How many recent lines.")
@click.option("--file", "log_file", type=click.Path(path_type=Path), default=None,
              help=f"Log file to read when teamhub is not a systemd service "
                   f"(default {DEFAULT_LOG}, where install.sh's detached start writes).")
def logs(follow: bool, lines: int, log_file: Path | None) -> None:
    """Show the hub's log: the service's journal under systemd, else install.sh's log file."""
    if log_file is None and systemd.booted() and (systemd.UNIT_DIR / SERVICE).exists() \
            and shutil.which("journalctl"):
        cmd = ["journalctl", "-u", SERVICE, "-n", str(lines), "--no-pager"]
        if follow:
            cmd.append("-f")
        os.execvp(cmd[0], cmd)
    path = log_file or DEFAULT_LOG
    if not path.exists():
        raise TeamhubError(f"no log at {path}: teamhub is not a systemd service here and was "
                           "not started by install.sh", "name the log with --file FILE")
    cmd = ["tail", "-n", str(lines), *(["-F"] if follow else []), str(path)]
    os.execvp(cmd[0], cmd)
