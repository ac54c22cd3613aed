"""`teamhub user ...`: add, list, show, change and remove hub users.

These commands change the account store only. The Linux account of a hub user
is created by the spawner when their server first starts, and removed here by
`user remove` (only if teamhub created it).
"""

from __future__ import annotations

import secrets
import shutil
import sys
from typing import TYPE_CHECKING, Any

import click

from .. import hubaccounts, hubclient
from ..accounts.store import Account
from ..errors import HubNotAnswering
from ..system import acl, processes, users
from ..system.containers import home_volume, remove_user_containers, remove_user_volume
from ..system.docker import Engine
from ..system.names import system_name
from .base import Context, echo_json, echo_listing, hub_step, pass_ctx
from .project import actor, projects_of
from .user_group import existing_account, list_in_hub, report_ended, store_of, user

if TYPE_CHECKING:
    from ..projects.apply import Projects
    from ..projects.model import Project

_STDIN_HELP = ("Read the password from standard input (one trailing newline is dropped) "
               "instead of generating one.")


def _min_length(ctx: Context) -> int:
    return int(ctx.settings["auth.min_password_length"])


def _password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated?): read from stdin, or a fresh random one."""
    if not from_stdin:
        return secrets.token_urlsafe(15), True
    text = sys.stdin.read()
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text, False


def _show_generated(name: str, password: str) -> None:
    click.echo(f"password for {name}: {password}")
    click.echo(f"(shown only now; change it with `teamhub user passwd {name}`)")


def _describe(ctx: Context, account: Account) -> dict[str, Any]:
    sysname = system_name(account.name, ctx.settings["users.system_prefix"])
    existing = users.lookup(sysname)
    home = existing.home if existing else str(ctx.paths.home_root / sysname)
    return {
        "name": account.name,
        "admin": account.admin,
        "blocked": account.blocked,
        "pending": account.pending,
        "created": account.created,
        "system_user": sysname,
        "system_user_exists": existing is not None,
        "home": home,
    }


@user.command()
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user a hub admin.")
@click.option("--password-stdin", is_flag=True, help=_STDIN_HELP)
@pass_ctx
def add(ctx: Context, name: str, admin: bool, password_stdin: bool) -> None:
    """Add hub user NAME.

    Without --password-stdin a strong password is generated and printed once.
    The user's Linux account is created when their server first starts.
    """
    password, generated = _password(password_stdin)
    account = store_of(ctx).add(name, password, admin=admin, min_length=_min_length(ctx))
    click.echo(f"added user {account.name}" + (" (admin)" if account.admin else ""))
    if generated:
        _show_generated(account.name, password)
    list_in_hub(ctx, account.name, account.admin)


@user.command()
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help=_STDIN_HELP)
@pass_ctx
def passwd(ctx: Context, name: str, password_stdin: bool) -> None:
    """Set a new password for hub user NAME.

    Without --password-stdin a strong password is generated and printed once.
    """
    store = store_of(ctx)
    account = existing_account(store, name)
    password, generated = _password(password_stdin)
    # A busy hub or an impostor on its port stops the command before anything changes.
    hubclient.hub_running(ctx.paths)
    store.set_password(account.name, password, min_length=_min_length(ctx))
    click.echo(f"changed the password of {account.name}")
    with hub_step(f"the password of {account.name} is changed",
                  f"to finish, run `teamhub user logout {account.name} --api-tokens` once "
                  "the hub answers"):
        report_ended(account.name,
                     *hubaccounts.end_sessions(ctx.paths, account.name, api_tokens=True))
    if generated:
        _show_generated(account.name, password)


@user.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@pass_ctx
def list_users(ctx: Context, as_json: bool) -> None:
    """List hub users with their Linux account and home."""
    rows = [_describe(ctx, a) for a in store_of(ctx).list()]
    table = [("NAME", "ADMIN", "SYSTEM USER", "HOME")] + [
        (r["name"] + (" (blocked)" if r["blocked"] else "")
         + (" (pending)" if r["pending"] else ""), "yes" if r["admin"] else "no",
         r["system_user"] + ("" if r["system_user_exists"] else " (not yet created)"), r["home"])
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    echo_listing(rows, as_json,
                 ("  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)),
                             row[3]]) for row in table))


@user.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_ctx
def show(ctx: Context, name: str, as_json: bool) -> None:
    """Show hub user NAME: admin flag, Linux account, home and server state."""
    info = _describe(ctx, existing_account(store_of(ctx), name))
    try:
        state = hubaccounts.hub_state(ctx.paths, info["name"])
    except HubNotAnswering as exc:
        click.echo(f"teamhub: warning: {exc}", err=True)
        state = None
    info["server"] = state.get("servers") if isinstance(state, dict) else None
    if as_json:
        echo_json(info)
        return
    for key in ("name", "admin", "blocked", "pending", "created", "system_user",
                "system_user_exists", "home"):
        click.echo(f"{key}: {info[key]}")
    servers = info["server"]
    if not servers:
        click.echo("server: not running" if servers == {} else
                   "server: unknown (no hub is running, or it has not seen this user yet)")
    for server, model in (servers or {}).items():
        ready = "ready" if model.get("ready") else "starting or stopping"
        click.echo(f"server {server or '(default)'}: {ready} at {model.get('url', '?')}")


@user.command()
@click.argument("name")
@click.option("--keep-home", is_flag=True,
              help="Keep the Linux account's home folder (and the files in it).")
@click.option("--purge", is_flag=True,
              help="Also remove the user's home volume (docker backend, docker.home = "
                   "\"volume\"); without it the volume is kept and listed by doctor.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def remove(ctx: Context, name: str, keep_home: bool, purge: bool, yes: bool) -> None:
    """Remove hub user NAME: stop their server, delete their Linux account (if
    teamhub created it; with its home unless --keep-home) and their account."""
    store = store_of(ctx)
    account = existing_account(store, name)
    sysname = system_name(account.name, ctx.settings["users.system_prefix"])
    registry = ctx.paths.system_users
    # Check all that can be checked before changing anything.
    managed = users.is_managed(sysname, registry=registry)
    if managed and users.lookup(sysname) is not None:
        users.check_usable(sysname, registry=registry)
    if not yes:
        what = f"hub user {account.name}"
        if managed:
            what += f" and Linux account {sysname}" + ("" if keep_home else " with its home")
        click.confirm(f"Remove {what}?", abort=True)
    # Order: hub, then Linux account, then the store last. Each step is
    # idempotent (hub: 404 is fine; Linux: gone from the registry is skipped),
    # so if one fails the user is still listed and re-running `user remove`
    # finishes the job. Removing from the store first would leave a server or
    # an account behind that no `teamhub user` command could reach any more.
    # A hub that does not answer stops it here, with nothing changed.
    hubaccounts.delete_user(ctx.paths, account.name)
    if ctx.settings["spawner.backend"] == "docker":
        # The hub stopped (and so removed) a running server; this catches a container left
        # running while the hub was down.
        engine = Engine()
        for gone in remove_user_containers(engine, account.name):
            click.echo(f"removed container {gone}")
        if purge and remove_user_volume(engine, account.name):
            click.echo(f"removed volume {home_volume(account.name)}")
        elif any(v["Name"] == home_volume(account.name) for v in engine.volumes()):
            click.echo(f"kept volume {home_volume(account.name)} (their files); remove it with "
                       f"`docker volume rm {home_volume(account.name)}`")
    projects_of(ctx).forget_user(account.name, actor())
    if managed:
        account_before = users.lookup(sysname)
        users.remove_system_user(sysname, registry=registry, keep_home=keep_home)
        if account_before is not None:
            shutil.rmtree(ctx.paths.private_runtime / str(account_before.uid),
                          ignore_errors=True)
    store.remove(account.name)
    click.echo(f"removed user {account.name}"
               + (f" and Linux account {sysname}" if managed else ""))
    if not managed and users.lookup(sysname) is not None:
        click.echo(f"Linux account {sysname} was not created by teamhub and was left alone")


def _projects_with_acl(p: Projects, sysname: str) -> list[Project]:
    """The projects whose folder ACL names Linux account SYSNAME (what is on disk)."""
    out = []
    for project in p.store.list():
        folder = p.layout.folder(project.name)
        if folder.is_dir() and sysname in acl.named_users(folder):
            out.append(project)
    return out


@user.command()
@click.argument("name")
@pass_ctx
def block(ctx: Context, name: str) -> None:
    """Block hub user NAME at once, keeping the account, its files and grants.

    A blocked user cannot log in (the hub answers as for a wrong password), and
    open browser sessions are turned away within the hub's auth refresh age
    (60 s unless changed). With a hub running, their servers are stopped and
    their API tokens revoked. Every process of their Linux account is ended,
    and they lose all project access (ACLs and ~/projects links). Their
    project grants are kept: `teamhub user unblock NAME` gives everything back.
    """
    store = store_of(ctx)
    account = existing_account(store, name)
    sysname = system_name(account.name, ctx.settings["users.system_prefix"])
    # A busy hub or an impostor on its port stops the command before anything changes.
    hubclient.hub_running(ctx.paths)
    already = store.set_blocked(account.name, True)
    click.echo(f"user {account.name} was already blocked; making sure nothing is left"
               if already else f"blocked user {account.name}: logins are refused")
    with hub_step(f"user {account.name} is blocked (logins are refused)",
                  f"to finish, run `teamhub user block {account.name}` again once the hub "
                  "answers"):
        cut = hubaccounts.cut_off_user(ctx.paths, account.name)
        if cut is None:
            click.echo("no hub is running: it refuses the user when it starts")
        else:
            click.echo(f"hub: stopped {cut['servers']} server(s), revoked {cut['tokens']} "
                       "API token(s)")
        report_ended(account.name,
                     *hubaccounts.end_sessions(ctx.paths, account.name, api_tokens=True))
    linux = users.lookup(sysname)
    if linux is not None and linux.uid != 0:
        count = len(processes.processes_of(linux.uid))
        processes.end_processes(linux.uid)
        click.echo(f"ended {count} process(es) of Linux account {sysname}")
    p = projects_of(ctx)
    touched = _projects_with_acl(p, sysname) if linux is not None else []
    for project in touched:
        p.apply_project(project)
        p.store.log(project.name, actor(), "block", account.name)
    p.sync_links([account.name])
    click.echo("removed access to projects: " + ", ".join(x.name for x in touched)
               if touched else "no project access to remove")


@user.command()
@click.argument("name")
@pass_ctx
def unblock(ctx: Context, name: str) -> None:
    """Unblock hub user NAME: they can log in again and get their project access back.

    Their servers are not started; they start them as usual after logging in.
    """
    store = store_of(ctx)
    account = existing_account(store, name)
    already = store.set_blocked(account.name, False)
    click.echo(f"user {account.name} was not blocked" if already
               else f"unblocked user {account.name}: logins work again")
    p = projects_of(ctx)
    p.apply_for_user(account.name)
    mine = p.accessible(account.name)
    if not already:
        for project in mine:
            p.store.log(project, actor(), "unblock", account.name)
    click.echo("project access: " + ", ".join(f"{k} ({v})" for k, v in mine.items())
               if mine else "no project access to restore")

