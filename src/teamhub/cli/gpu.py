"""`teamhub gpu status|release`: who holds which GPU, and taking them back."""

from __future__ import annotations

import click

from .. import hubclient
from ..errors import GpuError, TeamhubError
from ..gpu_allocations import Allocations
from ..gpu_report import holdings_report
from .base import Context, cli, echo_json, pass_ctx


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n // 1024**2} MiB"


@cli.group()
def gpu() -> None:
    """GPUs: who holds which (`status`), and giving them back (`release`).

    What each user gets is set in `[gpus]` (`teamhub config set gpus.default 1`); see
    README "GPUs".
    """


@gpu.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
def gpu_status(ctx: Context, as_json: bool) -> None:
    """Each GPU: who holds it and since when, memory used, its processes."""
    report = holdings_report(ctx.paths)
    if as_json:
        echo_json({"devices": report})
        return
    if not report:
        click.echo("no GPUs found on this machine")
        return
    for d in report:
        holders = ", ".join(f"{h['user']}{'/' + h['server'] if h['server'] else ''}"
                            f"{' (shared)' if h['shared'] else ''} since {h['since']}"
                            for h in d["holders"]) or "free"
        click.echo(f"GPU {d['index']:5} {d['uuid']}  {d['name']}")
        click.echo(f"  held by: {holders}")
        click.echo(f"  memory:  {_mib(d['memory_used'])} used of {_mib(d['memory_total'])}")
        procs = ", ".join(f"pid {p['pid']} ({_mib(p['memory'])})" for p in d["processes"])
        click.echo(f"  processes: {procs or 'none'}")


def _stop_servers(ctx: Context, name: str, servers: set[str]) -> list[str]:
    """Ask the running hub to stop NAME's SERVERS; what it could not stop, and why."""
    try:
        client = hubclient.HubClient.for_cli(ctx.paths)
    except TeamhubError as exc:
        return [f"no hub answered ({exc}), so NAME's servers were not stopped"]
    problems = []
    for server in sorted(servers):
        path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
        try:
            reply = client.call("DELETE", path)
        except TeamhubError as exc:
            problems.append(f"stopping {name}'s server failed: {exc}")
            continue
        if reply.status not in (202, 204, 400):  # 400: it was not running
            problems.append(f"the hub answered {reply.status} to stopping {name}'s server")
    return problems


@gpu.command("release")
@click.argument("name")
@pass_ctx
def gpu_release(ctx: Context, name: str) -> None:
    """Give back every GPU hub user NAME holds: their servers that hold GPUs are stopped
    (through the running hub), and the devices return to the pool."""
    allocations = Allocations(ctx.paths.gpu_allocations)
    mine = [h for h in allocations.holdings() if h.holder == name]
    if not mine:
        raise GpuError(f"{name!r} holds no GPU (see `teamhub gpu status`)")
    problems = _stop_servers(ctx, name, {h.server for h in mine})
    uuids = allocations.release(name)
    click.echo(f"released {', '.join(uuids)} held by {name}")
    for problem in problems:
        click.echo(f"warning: {problem.replace('NAME', name)}; the server may still use "
                   "the device until it stops", err=True)
