"""`teamhub backup FILE` / `teamhub restore FILE`."""

from __future__ import annotations

from pathlib import Path

import click

from .. import backup as backup_mod
from ..errors import TeamhubError
from .base import Context, cli, echo_json, pass_ctx


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@pass_ctx
def backup(ctx: Context, file: Path, as_json: bool) -> None:
    """Save settings, accounts, groups, project grants and env definitions to FILE.

    FILE (a .tar.gz, readable by root only) holds no users' files, no project
    contents and no built environments. It is safe to run while the hub runs.
    """
    manifest = backup_mod.write_archive(file, ctx.settings)
    if as_json:
        echo_json(manifest)
        return
    click.echo(f"backed up {len(manifest['files'])} file(s) to {file}: "
               + ", ".join(sorted(manifest["files"])))


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Restore over an existing install (its accounts, groups and grants are "
                   "replaced) or while a hub runs.")
@pass_ctx
def restore(ctx: Context, file: Path, force: bool) -> None:
    """Restore a `teamhub backup` FILE: settings, accounts, groups, project grants.

    The whole archive is checked before anything changes. Refused over an
    existing install or a running hub unless --force. Project folders and their
    ACLs are recreated; shared environments are not built here (that needs the
    package index and time): the commands to rebuild them are printed and saved
    as a script in the state folder.
    """
    archive = backup_mod.read_archive(file)
    # The install to protect is where the current settings put things, and where the
    # archive's settings would.
    reasons = backup_mod.live_reasons(ctx.settings)
    for reason in backup_mod.live_reasons(backup_mod.archive_settings(archive)):
        if reason not in reasons:
            reasons.append(reason)
    if not force and reasons:
        raise TeamhubError(f"refusing to restore over a live install: {'; '.join(reasons)}",
                           "stop the hub and add --force to replace its accounts, groups and "
                           "grants with the backup's")
    done = backup_mod.restore(archive, ctx.config_file)
    click.echo(f"restored {file} (teamhub {archive.manifest.get('teamhub_version')}, "
               f"made {archive.manifest.get('created')}) into {done['state_dir']}; "
               f"project folders repaired: {', '.join(done['projects']) or 'none'}")
    if done["env_commands"]:
        click.echo("shared environments are not rebuilt yet; run "
                   f"{done['env_script']} (or these commands):")
        for line in done["env_commands"]:
            click.echo("  " + line)
    click.echo("users log in again with their old passwords once the hub is (re)started.")
