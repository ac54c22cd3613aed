"""`teamhub group ...`: hub groups, kept in the account store and mirrored into JupyterHub.

The changes are group_admin's functions (the console's Groups page calls them too).
"""

from __future__ import annotations

import click

from .. import group_admin
from .base import Context, cli, echo_listing, pass_ctx
from .project import actor, projects_of


@cli.group()
def group() -> None:
    """Manage hub groups (used in project grants as @NAME)."""


@group.command()
@click.argument("name")
@pass_ctx
def create(ctx: Context, name: str) -> None:
    """Create the empty group NAME."""
    group_admin.create(ctx.settings, ctx.paths, name, say=click.echo)


@group.command()
@click.argument("name")
@pass_ctx
def delete(ctx: Context, name: str) -> None:
    """Delete group NAME; its project grants go too (members lose that access)."""
    group_admin.delete(ctx.settings, ctx.paths, name, actor=actor(), say=click.echo)


@group.command()
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@pass_ctx
def add(ctx: Context, name: str, users: tuple[str, ...]) -> None:
    """Add USERS to group NAME (all or none)."""
    group_admin.add_members(ctx.settings, ctx.paths, name, users, say=click.echo)


@group.command()
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@pass_ctx
def remove(ctx: Context, name: str, users: tuple[str, ...]) -> None:
    """Remove USERS from group NAME (all or none)."""
    group_admin.remove_members(ctx.settings, ctx.paths, name, users, say=click.echo)


@group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object {group: [members]}.")
@pass_ctx
def list_groups(ctx: Context, as_json: bool) -> None:
    """List groups and their members."""
    groups = projects_of(ctx).groups.list()
    echo_listing(groups, as_json,
                 (f"{name}: {', '.join(members) or '(no members)'}"
                  for name, members in groups.items()),
                 empty="no groups; create one with `teamhub group create NAME`")
