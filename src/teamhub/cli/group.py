"""`teamhub group ...`: hub groups, kept in the account store and mirrored into JupyterHub.

Membership changes also re-apply the ACLs of every project granted to the
group (`@group`), so a new member gets access and a removed one loses it at once.
"""

from __future__ import annotations

import click

from .. import hubaccounts, hubclient
from ..accounts.groups import GroupStore, canonical_group
from ..envs.admin import refresh_visibility
from ..errors import AccountError
from ..projects.model import Principal
from ..system.names import canonical_name
from .base import Context, cli, echo_listing, hub_step, pass_ctx
from .project import actor, projects_of


def _check_hub(ctx: Context) -> None:
    """Before any change: a busy hub or an impostor on its port stops the command here."""
    hubclient.hub_running(ctx.paths)


def _sync_hub(ctx: Context, groups: GroupStore) -> None:
    # Shared environments limited to groups follow membership at once, like projects.
    refresh_visibility(ctx.settings)
    # Every sync sends the whole state: any later group command (or a hub start) catches up.
    with hub_step("the groups are changed in the account store",
                  "the hub takes them from there when it starts, and with the next "
                  "`teamhub group` change"):
        if hubaccounts.sync_groups(ctx.paths, groups.list()):
            click.echo("the running hub's groups are updated")


def _names(users: tuple[str, ...]) -> list[str]:
    names = [canonical_name(u) for u in users]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AccountError(f"user {dupes[0]!r} is named more than once", "name each user once")
    return names


def _reapply(ctx: Context, group: str, changed: list[str]) -> None:
    """Re-apply projects granted to @GROUP and refresh the links of the CHANGED users."""
    p = projects_of(ctx)
    touched = [pr for pr in p.store.list() if Principal("group", group) in pr.grants]
    for project in touched:
        p.apply_project(project)
    if touched:
        p.sync_links(changed)
        click.echo("re-applied project folders: " + ", ".join(pr.name for pr in touched))


@cli.group()
def group() -> None:
    """Manage hub groups (used in project grants as @NAME)."""


@group.command()
@click.argument("name")
@pass_ctx
def create(ctx: Context, name: str) -> None:
    """Create the empty group NAME."""
    _check_hub(ctx)
    groups = projects_of(ctx).groups
    click.echo(f"created group {groups.create(name)}")
    _sync_hub(ctx, groups)


@group.command()
@click.argument("name")
@pass_ctx
def delete(ctx: Context, name: str) -> None:
    """Delete group NAME; its project grants go too (members lose that access)."""
    _check_hub(ctx)
    p = projects_of(ctx)
    name = canonical_group(name)
    members = p.groups.members(name)  # fails for an unknown group, before any change
    touched = p.store.forget_principal(Principal("group", name), actor())
    p.groups.delete(name)
    for project in p.store.list():
        if project.name in touched:
            p.apply_project(project)
    p.sync_links(members)
    click.echo(f"deleted group {name}")
    _sync_hub(ctx, p.groups)


@group.command()
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@pass_ctx
def add(ctx: Context, name: str, users: tuple[str, ...]) -> None:
    """Add USERS to group NAME (all or none)."""
    _check_hub(ctx)
    groups = projects_of(ctx).groups
    name, names = canonical_group(name), _names(users)
    already = sorted(set(names) & set(groups.members(name)))
    if already:
        raise AccountError(f"user {already[0]!r} is already in group {name!r}; nothing changed")
    groups.add_members(name, names)
    click.echo(f"added to {name}: {', '.join(names)}")
    _reapply(ctx, name, names)
    _sync_hub(ctx, groups)


@group.command()
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@pass_ctx
def remove(ctx: Context, name: str, users: tuple[str, ...]) -> None:
    """Remove USERS from group NAME (all or none)."""
    _check_hub(ctx)
    groups = projects_of(ctx).groups
    name, names = canonical_group(name), _names(users)
    missing = sorted(set(names) - set(groups.members(name)))
    if missing:
        raise AccountError(f"user {missing[0]!r} is not in group {name!r}; nothing changed")
    groups.remove_members(name, names)
    click.echo(f"removed from {name}: {', '.join(names)}")
    _reapply(ctx, name, names)
    _sync_hub(ctx, groups)


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
