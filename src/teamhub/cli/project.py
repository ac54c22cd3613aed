"""`teamhub project ...`: team project folders shared through POSIX ACLs.

Each command changes the grants in the account store first, then re-applies
the project's ACLs from there and refreshes the users' ~/projects links, so
the store is always what counts and `project repair` can redo the disk part.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

import click

from ..errors import DockerError
from ..projects.apply import Projects
from ..projects.model import (
    Project,
    ProjectError,
    check_project_name,
    parse_principal,
    parse_principals,
)
from ..system.containers import running_users
from ..system.docker import Engine
from ..user_admin import projects_for
from .base import Context, cli, echo_json, echo_listing, pass_ctx


def actor() -> str:
    """Who is running the command, for the audit log (the human behind sudo if any)."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def projects_of(ctx: Context) -> Projects:
    return projects_for(ctx.settings, ctx.paths)


def _describe(p: Projects, project: Project) -> dict[str, Any]:
    return {
        "name": project.name,
        "path": str(p.layout.folder(project.name)),
        "description": project.description,
        "archived": project.archived,
        "created": project.created,
        "writers": [str(k) for k, v in project.grants.items() if v == "write"],
        "readers": [str(k) for k, v in project.grants.items() if v == "read"],
        "effective": p.effective(project),
    }


def _change(p: Projects, name: str, before: dict[str, str]) -> dict[str, str]:
    """Re-apply project NAME and refresh links of everyone whose access may have changed;
    the effective access after."""
    after = p.apply_project(p.store.get(name))
    p.sync_links(set(before) | set(after))
    return after


def _next_start_note(ctx: Context, name: str, before: dict[str, str],
                     after: dict[str, str]) -> str | None:
    """With the docker backend, a running container's project mounts are fixed at its start:
    new access, or read → write, waits for the next start there (a revoke or write → read
    bites at once: the ACLs decide every open). Who that concerns, or None."""
    if ctx.settings["spawner.backend"] != "docker":
        return None
    gained = [u for u, access in after.items()
              if before.get(u) is None or (access == "write" and before[u] != "write")]
    if not gained:
        return None
    try:
        running = running_users(Engine(), gained)
    except DockerError as exc:
        return (f"note: users' containers get the new access to {name} at their next server "
                f"start (could not ask Docker which run now: {exc})")
    if not running:
        return None
    return (f"note: {', '.join(running)} run(s) a server in a container, which gets the new "
            f"access to {name} at its next start (stop and start the server)")


@cli.group()
def project() -> None:
    """Manage team project folders (~/projects/NAME for everyone granted)."""


@project.command()
@click.argument("name")
@click.option("--writers", metavar="LIST", help="Users and @groups who may change files, "
              "comma separated: ada,@data-team.")
@click.option("--readers", metavar="LIST", help="Users and @groups who may only read.")
@click.option("--description", default="", help="One line saying what the project is for.")
@pass_ctx
def create(ctx: Context, name: str, writers: str | None, readers: str | None,
           description: str) -> None:
    """Create project NAME (folder <projects.root>/NAME) with its first grants."""
    name = check_project_name(name)
    grants = dict.fromkeys(parse_principals(readers), "read")
    grants.update(dict.fromkeys(parse_principals(writers), "write"))  # write wins
    p = projects_of(ctx)
    if p.layout.folder(name).exists():
        raise ProjectError(f"{p.layout.folder(name)} already exists but is no project",
                           "move it "
                           "away or choose another name")
    p.store.create(name, description, grants, actor())
    after = _change(p, name, {})
    click.echo(f"created project {name} at {p.layout.folder(name)}")
    note = _next_start_note(ctx, name, {}, after)
    if note:
        click.echo(note)


@project.command()
@click.argument("name")
@click.argument("who")
@click.option("--write", "access", flag_value="write", help="May create, change and delete.")
@click.option("--read", "access", flag_value="read", help="May only open and copy.")
@pass_ctx
def grant(ctx: Context, name: str, who: str, access: str | None) -> None:
    """Give WHO (a user, or @group) --write or --read access to project NAME."""
    if access is None:
        raise ProjectError("say which access to grant: --write or --read")
    p = projects_of(ctx)
    before = p.effective(p.store.get(name))
    principal = parse_principal(who)
    p.store.grant(name, principal, access, actor())
    after = _change(p, name, before)
    click.echo(f"granted {access} on {name} to {principal}")
    note = _next_start_note(ctx, name, before, after)
    if note:
        click.echo(note)


@project.command()
@click.argument("name")
@click.argument("who")
@pass_ctx
def revoke(ctx: Context, name: str, who: str) -> None:
    """Take WHO's grant on project NAME away; effective at once, even for running kernels."""
    p = projects_of(ctx)
    before = p.effective(p.store.get(name))
    principal = parse_principal(who)
    p.store.revoke(name, principal, actor())
    _change(p, name, before)
    click.echo(f"revoked {principal} on {name}")


@project.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def list_projects(ctx: Context, as_json: bool) -> None:
    """List projects with their grants."""
    p = projects_of(ctx)
    rows = [_describe(p, pr) for pr in p.store.list()]
    echo_listing(rows, as_json,
                 (f"{r['name']}{' (archived)' if r['archived'] else ''}: writers "
                  f"{', '.join(r['writers']) or '-'}; readers {', '.join(r['readers']) or '-'}"
                  for r in rows),
                 empty="no projects; create one with `teamhub project create NAME`")


@project.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_ctx
def show(ctx: Context, name: str, as_json: bool) -> None:
    """Show project NAME: grants and the effective access of each user."""
    p = projects_of(ctx)
    info = _describe(p, p.store.get(name))
    if as_json:
        echo_json(info)
        return
    for key in ("name", "path", "description", "archived", "created"):
        click.echo(f"{key}: {info[key]}")
    click.echo(f"writers: {', '.join(info['writers']) or '-'}")
    click.echo(f"readers: {', '.join(info['readers']) or '-'}")
    for user, access in info["effective"].items():
        click.echo(f"  {user}: {access}")


@project.command()
@click.argument("name")
@pass_ctx
def archive(ctx: Context, name: str) -> None:
    """Make project NAME read-only for everyone (files are handed to root)."""
    p = projects_of(ctx)
    before = p.effective(p.store.get(name))
    p.store.archive(name, actor())
    _change(p, name, before)
    click.echo(f"archived project {name}: everyone with access can now only read it")


@project.command()
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Delete even if not empty: the folder is moved to <projects.root>/.trash.")
@pass_ctx
def delete(ctx: Context, name: str, force: bool) -> None:
    """Delete project NAME; refused unless its folder is empty (or --force)."""
    p = projects_of(ctx)
    project = p.store.get(name)
    before = p.effective(project)
    folder = p.layout.folder(project.name)
    present = folder.is_dir() and not folder.is_symlink()
    if present and any(os.scandir(folder)) and not force:
        raise ProjectError(f"project {name!r} is not empty",
                           "nothing was deleted. Empty "
                           f"{folder} first, or use --force to move it to the trash")
    where = str(p.trash(project.name)) if present and force else ""
    if present and not where:
        folder.rmdir()
    p.store.delete(project.name, actor(), f"moved to {where}" if where else "was empty")
    p.sync_links(before)
    click.echo(f"deleted project {name}" + (f"; its files are in {where}" if where else ""))


@project.command()
@click.argument("name", required=False)
@pass_ctx
def repair(ctx: Context, name: str | None) -> None:
    """Re-apply ACLs (of NAME, or of every project) and everyone's ~/projects links."""
    p = projects_of(ctx)
    names = None if name is None else [p.store.get(name).name]
    done = p.repair(names)
    for n in done:
        p.store.log(n, actor(), "repair")
    click.echo(f"repaired {len(done)} project(s)" + (f": {', '.join(done)}" if done else ""))


@project.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def log(ctx: Context, name: str, as_json: bool) -> None:
    """Show the audit trail of project NAME: when, who, what."""
    rows = projects_of(ctx).store.history(check_project_name(name))
    echo_listing(rows, as_json,
                 (f"{r['at']}  {r['actor']}  {r['action']}  {r['detail']}".rstrip()
                  for r in rows))
