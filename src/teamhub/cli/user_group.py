"""The `teamhub user` group and what its command modules share.

The group's commands live in user.py (accounts), user_lifecycle.py (signups,
reset links, admin flag) and sessions.py (login locks, browser sessions); each
imports this module, and cli/__init__.py imports them.
"""

from __future__ import annotations

import click

from .. import hubaccounts
from ..accounts.store import Account, AccountStore
from ..errors import AccountError, TeamhubError
from ..system.names import canonical_name
from .base import Context, cli


def store_of(ctx: Context) -> AccountStore:
    return AccountStore(ctx.paths.accounts_db, ctx.paths.db_url)


def existing_account(store: AccountStore, name: str) -> Account:
    account = store.get(canonical_name(name))  # invalid names fail here, with the rule
    if account is None:
        raise AccountError(f"user {name!r} does not exist", "see `teamhub user list`")
    return account


# What only makes sense for teamhub's own accounts; in PAM mode the machine's
# Linux accounts are the accounts, managed with the system's own tools.
BUILTIN_ONLY = {
    "add": "create the Linux account with `adduser NAME`",
    "passwd": "set a password with `passwd NAME`, then `teamhub user logout NAME`",
    "remove": "remove the Linux account with `deluser NAME` (it then cannot log in)",
    "block": "lock the Linux account with `usermod -L NAME`, then `teamhub user logout NAME`",
    "unblock": "unlock the Linux account with `usermod -U NAME`",
}


@cli.group()
@click.pass_context
def user(click_ctx: click.Context) -> None:
    """Manage hub users (teamhub's own accounts)."""
    hint = BUILTIN_ONLY.get(click_ctx.invoked_subcommand or "")
    ctx = click_ctx.find_object(Context)
    if hint and ctx is not None and ctx.settings["auth.mode"] == "pam":
        raise AccountError(f"`teamhub user {click_ctx.invoked_subcommand}` manages teamhub's "
                           f"own accounts, but auth.mode is pam (Linux accounts): {hint}")


def report_ended(name: str, how: str, counts: dict[str, int]) -> None:
    if how == "none":
        click.echo(f"{name} has no hub sessions to end")
        return
    where = "by the running hub" if how == "hub" else "in the hub database (no hub is running)"
    text = f"ended every browser session of {name} {where}"
    if counts.get("api_tokens"):
        text += f"; revoked {counts['api_tokens']} API token(s)"
    click.echo(text)


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
