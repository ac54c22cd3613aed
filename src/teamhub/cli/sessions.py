"""`teamhub user unlock|locked|logout`: login locks and browser sessions.

Work in both auth modes and with or without a running hub (the lockout lives
in the account store; sessions are ended by the hub, or in its database).
"""

from __future__ import annotations

import time

import click

from .. import hubaccounts
from ..accounts.lockout import Lockout
from ..accounts.store import AccountStore
from ..errors import AccountError
from ..system.names import LINUX_NAME_RE, canonical_name
from .base import Context, echo_listing, pass_ctx
from .user_group import report_ended, user


def login_name(ctx: Context, raw: str) -> str:
    """RAW as the name logins are counted under in the configured auth mode."""
    if ctx.settings["auth.mode"] == "pam":
        name = raw.strip().lower()
        if not LINUX_NAME_RE.fullmatch(name):
            raise AccountError(f"{raw[:32]!r} is not a Linux user name", "see `getent passwd`")
        return name
    return canonical_name(raw)


def _lockout(ctx: Context) -> Lockout:
    return Lockout(AccountStore(ctx.paths.accounts_db, ctx.paths.db_url))


@user.command()
@click.argument("name")
@pass_ctx
def unlock(ctx: Context, name: str) -> None:
    """Let NAME log in again now: forget its failed logins and end its lock.

    The per-client-address throttle lives in the running hub's memory and is
    not changed; it lets an address in again after `auth.client_window_seconds`.
    """
    canonical = login_name(ctx, name)
    was_locked = _lockout(ctx).unlock(canonical)
    click.echo(f"unlocked {canonical}" if was_locked
               else f"{canonical} was not locked; its failed logins are forgotten")


@user.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object {name: seconds left}.")
@pass_ctx
def locked(ctx: Context, as_json: bool) -> None:
    """List the names locked after too many failed logins, with the time left."""
    now = time.time()
    rows = {n: int(until - now + 0.999) for n, until in _lockout(ctx).locked_names().items()}
    echo_listing(rows, as_json,
                 (f"{name}  locked for {left} more second(s)" for name, left in rows.items()),
                 empty="no name is locked")


@user.command()
@click.argument("name")
@click.option("--api-tokens", is_flag=True,
              help="Also revoke the API tokens NAME made (their running servers keep theirs).")
@pass_ctx
def logout(ctx: Context, name: str, api_tokens: bool) -> None:
    """Log NAME out of every browser at once.

    Their hub cookies and the cookies of their servers stop working (servers
    notice within seconds); running servers and kernels keep running.
    """
    canonical = login_name(ctx, name)
    if ctx.settings["auth.mode"] == "builtin" and AccountStore(
            ctx.paths.accounts_db, ctx.paths.db_url).get(canonical) is None:
        raise AccountError(f"user {canonical!r} does not exist", "see `teamhub user list`")
    how, counts = hubaccounts.end_sessions(ctx.paths, canonical, api_tokens=api_tokens)
    report_ended(canonical, how, counts)
