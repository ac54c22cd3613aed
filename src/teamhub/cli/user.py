"""`teamhub user ...`: add, list, show, change and remove hub users.

These commands change the account store only. The Linux account of a hub user
is created by the spawner when their server first starts, and removed here by
`user remove` (only if teamhub created it).
"""

from __future__ import annotations

import secrets
import sys
from typing import Any

import click

from .. import hubaccounts, hubclient, user_admin
from ..accounts.store import Account
from ..errors import HubNotAnswering
from ..hubaccounts import hub_step
from ..system import users
from ..system.names import system_name
from .base import Context, echo_json, echo_listing, pass_ctx
from .project import actor
from .user_group import existing_account, list_in_hub, report_ended, store_of, user

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
    # Check all that can be checked before changing anything.
    plan = user_admin.plan_removal(ctx.settings, ctx.paths, store, name)
    if not yes:
        click.confirm(plan.question(keep_home), abort=True)
    user_admin.remove(ctx.settings, ctx.paths, store, plan, actor=actor(), keep_home=keep_home,
                      purge=purge, say=click.echo)


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
    user_admin.block(ctx.settings, ctx.paths, store_of(ctx), name, actor=actor(),
                     say=click.echo)


@user.command()
@click.argument("name")
@pass_ctx
def unblock(ctx: Context, name: str) -> None:
    """Unblock hub user NAME: they can log in again and get their project access back.

    Their servers are not started; they start them as usual after logging in.
    """
    user_admin.unblock(ctx.settings, ctx.paths, store_of(ctx), name, actor=actor(),
                       say=click.echo)
