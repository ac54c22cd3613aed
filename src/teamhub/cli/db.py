"""`teamhub db migrate --to URL`: move the sqlite files into PostgreSQL."""

from __future__ import annotations

import click

from .. import hubclient
from ..db import move
from ..system import listen
from .base import Context, cli, echo_json, pass_ctx


@cli.group()
def db() -> None:
    """The hub's database and the account store (sqlite files or PostgreSQL, `db.url`)."""


@db.command()
@click.option("--to", "url", required=True, metavar="URL",
              help="postgresql://USER:PASSWORD@HOST:5432/DATABASE (an empty database).")
@click.option("--json", "as_json", is_flag=True, help="Print the tables copied as JSON.")
@pass_ctx
def migrate(ctx: Context, url: str, as_json: bool) -> None:
    """Copy the hub database and the account store into PostgreSQL, then use it.

    Run with the hub stopped. Every table is copied in one transaction and checked
    (row count and checksum) against the sqlite original before it commits; only
    then is db.url set in the settings file. A failed copy changes nothing. The
    sqlite files stay as they were: unsetting db.url goes back to them.
    """
    paths = ctx.paths
    running = hubclient.hub_may_run(paths) or listen.socket_answers(paths.hub_socket)
    moved = move.migrate(ctx.settings, url, hub_running=running)
    if as_json:
        echo_json({"db_url": moved.url, "tables": [
            {"table": t.name, "rows": t.rows, "sha256": t.sha256} for t in moved.tables]})
        return
    for t in moved.tables:
        click.echo(f"{t.name:24} {t.rows:>7} row(s)  sha256 {t.sha256[:16]}  ok")
    click.echo(f"copied {len(moved.tables)} table(s) and set db.url = {moved.url}; start the "
               "hub (`teamhub up` or systemctl start teamhub) to use it")
