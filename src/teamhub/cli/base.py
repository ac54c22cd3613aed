"""The root `teamhub` group and what every command module shares (context, JSON output,
error handling). The command modules import this one; cli/__init__.py imports them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import click

from .. import __version__
from ..errors import TeamhubError
from ..paths import Paths
from ..settings import Settings, config_path, load


@dataclass
class Context:
    """What every command gets: where the settings live, loaded lazily."""

    config_option: str | None
    _settings: Settings | None = None

    @property
    def config_file(self):
        return config_path(self.config_option)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load(self.config_option)
        return self._settings

    @property
    def paths(self) -> Paths:
        return Paths.from_settings(self.settings)


pass_ctx = click.make_pass_decorator(Context)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def echo_listing(rows: Any, as_json: bool, lines: Iterable[str], empty: str = "") -> None:
    """What every listing prints: ROWS as JSON with --json; else LINES (made only then),
    or EMPTY (what to do about it) when there are no rows."""
    if as_json:
        echo_json(rows)
    elif not rows and empty:
        click.echo(empty)
    else:
        for line in lines:
            click.echo(line)


class TeamhubGroup(click.Group):
    """Turns a TeamhubError anywhere below into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TeamhubError as exc:
            # One line: what is wrong, then how to fix it.
            hint = f"; {exc.hint}" if exc.hint else ""
            click.echo(f"teamhub: error: {exc.message}{hint}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=TeamhubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="teamhub")
@click.option("--config", "config_option", metavar="FILE", envvar="TEAMHUB_CONFIG",
              help="Settings file (default /etc/teamhub/teamhub.toml, or $TEAMHUB_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_option: str | None) -> None:
    """teamhub: the team Jupyter server.

    One machine, one port, every person their own JupyterLab as their own
    Linux account. Run `teamhub COMMAND --help` for any command.
    """
    ctx.obj = Context(config_option)
