"""`teamhub project ...`: team project folders shared through POSIX ACLs.

Each command changes the grants in the account store first, then re-applies
the project's ACLs from there and refreshes the users' ~/projects links, so
the store is always what counts and `project repair` can redo the disk part.
"""

from __future__ import annotations

import getpass
import os

import click

from ..projects import actions
from ..projects.apply import Projects
from ..projects.model import check_project_name
from .base import Context, cli, echo_json, echo_listing, pass_ctx


def actor() -> str:
    """Who is running the command, for the audit log (the human behind sudo if any)."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def projects_of(ctx: Context) -> Projects:
    return actions.projects_of(ctx.settings, ctx.paths)


def _echo(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


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
    _echo(actions.create(ctx.settings, projects_of(ctx), name, writers, readers,
                         description, actor()))

@project.command()
@click.argument("name")
@click.argument("who")
@click.option("--write", "access", flag_value="write", help="May create, change and delete.")
@click.option("--read", "access", flag_value="read", help="May only open and copy.")
@pass_ctx
def grant(ctx: Context, name: str, who: str, access: str | None) -> None:
    """Give WHO (a user, or @group) --write or --read access to project NAME."""
    _echo(actions.grant(ctx.settings, projects_of(ctx), name, who, access, actor()))

@project.command()
@click.argument("name")
@click.argument("who")
@pass_ctx
def revoke(ctx: Context, name: str, who: str) -> None:
    """Take WHO's grant on project NAME away; effective at once, even for running kernels."""
    _echo(actions.revoke(projects_of(ctx), name, who, actor()))

@project.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def list_projects(ctx: Context, as_json: bool) -> None:
    """List projects with their grants."""
    p = projects_of(ctx)
    rows = [actions.describe(p, pr) for pr in p.store.list()]
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
    info = actions.describe(p, p.store.get(name))
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
    _echo(actions.archive(projects_of(ctx), name, actor()))

@project.command()
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Delete even if not empty: the folder is moved to <projects.root>/.trash.")
@pass_ctx
def delete(ctx: Context, name: str, force: bool) -> None:
    """Delete project NAME; refused unless its folder is empty (or --force)."""
    _echo(actions.delete(projects_of(ctx), name, force, actor()))

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
