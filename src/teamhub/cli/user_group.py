"""The `teamhub user` group and what its command modules share.

The group's commands live in user.py (accounts), user_lifecycle.py (signups,
reset links, admin flag) and sessions.py (login locks, browser sessions); each
imports this module, and cli/__init__.py imports them.
"""

from __future__ import annotations

import click

from .. import hubaccounts
from ..accounts.store import AccountStore
from ..errors import TeamhubError
from ..user_admin import check_builtin, ended_text, existing_account
from .base import Context, cli

__all__ = ["existing_account", "list_in_hub", "report_ended", "store_of", "user"]


def store_of(ctx: Context) -> AccountStore:
    return AccountStore(ctx.paths.accounts_db, ctx.paths.db_url)


@cli.group()
@click.pass_context
def user(click_ctx: click.Context) -> None:
    """Manage hub users (teamhub's own accounts)."""
    ctx = click_ctx.find_object(Context)
    if ctx is not None:
        check_builtin(ctx.settings, click_ctx.invoked_subcommand or "")


def report_ended(name: str, how: str, counts: dict[str, int]) -> None:
    click.echo(ended_text(name, how, counts))


def list_in_hub(ctx: Context, name: str, admin: bool) -> None:
    """One list of users: a running hub lists a new account at once (its admin page too).
    The account is made either way; a hub that does not answer lists it at its next
    start or the user's first login, so that only earns a warning."""
    try:
        if hubaccounts.add_user(ctx.paths, name, admin):
            click.echo(f"the running hub lists {name} now")
    except TeamhubError as exc:
        click.echo(f"teamhub: warning: {exc}; the hub lists {name} at its next start or "
                   "their first login", err=True)
