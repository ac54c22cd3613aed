"""`teamhub user pending|approve|reject|reset-link|admin`: signups, reset links, admin flag."""

from __future__ import annotations

import click

from .. import user_admin
from ..accounts import lifecycle
from ..errors import AccountError
from .base import Context, echo_listing, pass_ctx
from .user_group import existing_account, list_in_hub, store_of, user


@user.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@pass_ctx
def pending(ctx: Context, as_json: bool) -> None:
    """List signups waiting for approval, oldest first."""
    rows = [{"name": a.name, "requested": a.created}
            for a in lifecycle.pending(store_of(ctx))]
    width = max([len("NAME"), *(len(r["name"]) for r in rows)])
    echo_listing(rows, as_json,
                 [f"{'NAME'.ljust(width)}  REQUESTED (UTC)",
                  *(f"{r['name'].ljust(width)}  {r['requested']}" for r in rows)],
                 empty="no signups are waiting for approval")


@user.command()
@click.argument("name")
@pass_ctx
def approve(ctx: Context, name: str) -> None:
    """Approve the signup of NAME: they can log in from now on."""
    done = lifecycle.approve(store_of(ctx), name)
    click.echo(f"approved {done}: they can log in now")
    list_in_hub(ctx, done, admin=False)  # signups are never admins


@user.command()
@click.argument("name")
@pass_ctx
def reject(ctx: Context, name: str) -> None:
    """Reject the signup of NAME: the pending account is deleted (approved ones never are)."""
    done = lifecycle.reject(store_of(ctx), name)
    click.echo(f"rejected the signup of {done}")


def _base_url(ctx: Context, base_url: str | None) -> str:
    if base_url:
        if not base_url.startswith(("http://", "https://")) or any(c.isspace() for c in base_url):
            raise AccountError(f"invalid --base-url {base_url[:60]!r}: give the address people "
                               "open the hub at, e.g. https://hub.example.org")
        return base_url.rstrip("/")
    try:
        return ctx.paths.public_url_file.read_text().strip().rstrip("/")
    except OSError:
        raise AccountError("no running hub has announced its address (start it with "
                           "`teamhub up`), so pass the address people open the hub at "
                           "with --base-url, e.g. --base-url https://hub.example.org") from None


@user.command(name="reset-link")
@click.argument("name")
@click.option("--expires", default="24h", show_default=True, metavar="DURATION",
              help="How long the link works: a number with s, m, h or d (at most 30d).")
@click.option("--base-url", metavar="URL",
              help="Address people open the hub at (default: what the running hub announced).")
@pass_ctx
def reset_link(ctx: Context, name: str, expires: str, base_url: str | None) -> None:
    """Print a one-time link with which NAME sets a new password.

    Give it to the user over a channel you trust. Opening it shows a form; the
    password is set only when the form is sent, once. A new link (or any
    password change) makes older unused links stop working. Only a hash of
    the link is stored.
    """
    seconds = lifecycle.parse_duration(expires)
    base = _base_url(ctx, base_url)
    account = existing_account(store_of(ctx), name)
    token, until = lifecycle.create_reset_link(store_of(ctx), account.name, seconds)
    click.echo(f"{base}/hub/reset/{token}")
    click.echo(f"(one use, for {account.name}, valid until {until} UTC)", err=True)


@user.command()
@click.argument("name")
@click.option("--on/--off", "on", default=None,
              help="Make NAME a hub admin (--on) or an ordinary user (--off).")
@pass_ctx
def admin(ctx: Context, name: str, on: bool | None) -> None:
    """Make hub user NAME an admin (--on) or not (--off); a running hub follows at once."""
    if on is None:
        raise AccountError("say --on or --off, e.g. `teamhub user admin NAME --on`")
    user_admin.set_admin(ctx.paths, store_of(ctx), name, on, say=click.echo)
