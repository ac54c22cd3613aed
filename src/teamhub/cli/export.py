"""`teamhub export z2jh --out DIR`."""

from __future__ import annotations

from pathlib import Path

import click

from ..export.bundle import LossError, export_z2jh
from ..export.values import Options
from .base import Context, cli, echo_json, pass_ctx


@cli.group()
def export() -> None:
    """Write this team's hub for another platform (Kubernetes: `z2jh`)."""


@export.command("z2jh")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Folder to create (must not exist): values.yaml, storage.yaml, "
                   "MIGRATION.md, images/.")
@click.option("--allow-loss", is_flag=True,
              help="Export even when some settings cannot be expressed in the chart "
                   "(each is listed, and again in MIGRATION.md).")
@click.option("--registry", default="", metavar="PREFIX",
              help="Registry prefix of the two images, e.g. registry.example.org/team "
                   "(default: local names teamhub/hub and teamhub/singleuser).")
@click.option("--guarantee", default=0.25, type=click.FloatRange(0.01, 1.0), show_default=True,
              help="CPU and memory requests as a share of the limits (1: guaranteed QoS).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def export_z2jh_command(ctx: Context, out: Path, allow_loss: bool, registry: str,
                        guarantee: float, as_json: bool) -> None:
    """A Zero to JupyterHub (Helm chart) deployment of this team, in folder OUT.

    From the settings and the account store: the chart's values (teamhub's login and
    account pages, each user's server as their own uid, limits, idle culling, shared
    envs, project folders per grant, GPUs, TLS), the volumes, the build contexts of
    the hub and single-user images, and MIGRATION.md with the steps in order. Settings
    the chart cannot express are listed one per line and stop the export unless
    --allow-loss. Run it as root on the teamhub machine.
    """
    try:
        result = export_z2jh(ctx.settings, out, Options(registry=registry, guarantee=guarantee),
                             allow_loss=allow_loss)
    except LossError as exc:
        for line in exc.losses:
            click.echo(f"teamhub: cannot express: {line}", err=True)
        raise
    if as_json:
        echo_json({"out": str(result.out), **result.summary})
        return
    for line in result.losses:
        click.echo(f"lost (--allow-loss): {line}")
    for line in result.notes:
        click.echo(f"note: {line}")
    s = result.summary
    click.echo(f"wrote {result.out}: {s['users']} user(s), {s['groups']} group(s), "
               f"{s['projects']} project(s), {s['envs']} shared env(s) for the Zero to "
               f"JupyterHub chart {s['chart_version']}; next: {result.out}/MIGRATION.md")
