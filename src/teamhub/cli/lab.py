"""`teamhub lab install|uninstall|list|sync`: prebuilt JupyterLab extensions for everyone."""

from __future__ import annotations

import click

from ..labext import LabExtensions
from .base import Context, cli, echo_json, pass_ctx


def _extensions(ctx: Context) -> LabExtensions:
    paths = ctx.paths
    return LabExtensions(paths.runtime_dir, paths.state_dir)


@cli.group()
def lab() -> None:
    """JupyterLab extensions in every user's Lab (prebuilt ones, from the package index).

    They are installed into teamhub's runtime with every package already there held
    at its version, recorded, and installed again by install.sh after an upgrade.
    """


@lab.command("install")
@click.argument("package")
@pass_ctx
def install_cmd(ctx: Context, package: str) -> None:
    """Add the prebuilt extension PACKAGE (e.g. jupyterlab-execute-time) for everyone."""
    entry = _extensions(ctx).install(package, echo=lambda line: click.echo(line, err=True))
    click.echo(f"Installed {package} {entry['version']} (Lab extension "
               f"{', '.join(entry['extensions'])}): users get it when they reload Lab; "
               "a server part, if any, at their next server start.")


@lab.command("uninstall")
@click.argument("package")
@pass_ctx
def uninstall_cmd(ctx: Context, package: str) -> None:
    """Remove PACKAGE, added earlier with `teamhub lab install`."""
    _extensions(ctx).uninstall(package)
    click.echo(f"Removed {package}: gone from users' Lab at their next reload.")


@lab.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """The extensions added with `teamhub lab install`, and whether they are installed."""
    found = _extensions(ctx).listing()
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("No Lab extensions added; add one with `teamhub lab install PACKAGE`.")
        return
    for entry in found:
        state = entry["version"] or "MISSING (run `teamhub lab sync`)"
        click.echo(f"{entry['name']:<32} {state:<12} {', '.join(entry['extensions'])}")


@lab.command("sync")
@pass_ctx
def sync_cmd(ctx: Context) -> None:
    """Install the recorded extensions the runtime lacks (after an upgrade or rebuild)."""
    added = _extensions(ctx).sync(echo=lambda line: click.echo(line, err=True))
    click.echo(f"Installed again: {', '.join(added)}" if added
               else "Every recorded Lab extension is installed.")
