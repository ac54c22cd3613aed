"""`teamhub config ...`: read and change teamhub.toml without hand-editing it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from .. import settings as settings_mod
from ..errors import SettingsError
from ..hubclient import HubIdentity
from ..paths import Paths
from ..settings import toml_literal
from .base import Context, cli, echo_json, pass_ctx


def plain(value: Any) -> str:
    """How `get` prints a value: bare for strings and integers, so scripts can use it."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    return toml_literal(value)


def config_d(config_file: Path) -> Path:
    # Same rule as Paths.config_d, computed without loading the settings so that
    # `config path` still answers when the file or the environment is broken.
    return config_file.parent / "jupyterhub_config.d"


def _write_problem(path: Path, exc: OSError) -> SettingsError:
    return SettingsError(
        f"cannot write settings file {path}: {exc.strerror or exc}",
        "run as root, or pass --config FILE to use another file"
    )


def _env_override_note(setting: settings_mod.Setting) -> None:
    if setting.env_var in os.environ:
        click.echo(
            f"note: environment variable {setting.env_var} overrides this "
            f"(currently {os.environ[setting.env_var]!r})",
            err=True,
        )


def _running_hub_paths(ctx: Context) -> Paths | None:
    """The paths of the hub these settings run, read before a change (a new
    paths.state_dir must not hide the hub that runs on the old one); None when the
    current settings cannot even be loaded."""
    try:
        return ctx.paths
    except SettingsError:
        return None


def _when_note(setting: settings_mod.Setting, paths: Paths | None) -> None:
    """Say when the change takes effect and, if a restart is needed, how."""
    applies = setting.applies
    if applies.when != settings_mod.HUB_RESTART:
        click.echo(f"takes effect {applies.describe()}")
        return
    pid = HubIdentity.of(paths).live_pid() if paths is not None else None
    if paths is not None and pid is None:
        click.echo("no hub is running: takes effect when teamhub starts (`teamhub up`, or "
                   "`systemctl start teamhub` where installed)")
        return
    servers = ("; running servers keep the old value until they are next started"
               if applies.servers else "")
    click.echo("takes effect after a hub restart: run `teamhub restart` (users' servers "
               f"keep running){servers}")


@cli.group()
def config() -> None:
    """Show and change teamhub's settings (teamhub.toml).

    Each setting's effective value comes from its default, then the settings
    file, then a TEAMHUB_<SECTION>_<KEY> environment variable, later ones
    winning. `set` and `unset` say when a change takes effect: at once, at each
    user's next server start, or after `teamhub restart`.
    """


@config.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: {section: {name: {value, origin}}}.")
@pass_ctx
def show(ctx: Context, as_json: bool) -> None:
    """Print every effective setting and where its value came from.

    The origin is `default`, the settings file's path, or `env VAR` for a
    TEAMHUB_* environment variable. The output is valid TOML.
    """
    s = ctx.settings
    grouped: dict[str, dict[str, tuple[Any, str]]] = {}
    for setting in settings_mod.SCHEMA:
        grouped.setdefault(setting.section, {})[setting.name] = (
            setting.shown(s.values[setting.key]), s.origins[setting.key])
    if as_json:
        echo_json({
            section: {name: {"value": v, "origin": o} for name, (v, o) in table.items()}
            for section, table in grouped.items()
        })
        return
    click.echo(f"# settings file: {s.config_file}")
    for section, table in grouped.items():
        click.echo(f"\n[{section}]")
        for name, (value, origin) in table.items():
            click.echo(f"{name} = {toml_literal(value)}  # {origin}")


@config.command()
@click.argument("key")
@pass_ctx
def get(ctx: Context, key: str) -> None:
    """Print the effective value of KEY (e.g. `hub.port`).

    Strings and integers are printed bare, booleans and lists as TOML.
    """
    # Checked before loading, so a typo is reported as such even when the
    # file or the environment has a problem of its own.
    setting = settings_mod.lookup(key)
    click.echo(plain(setting.shown(ctx.settings[key])))


@config.command("set")
@click.argument("key")
@click.argument("value")
@pass_ctx
def set_(ctx: Context, key: str, value: str) -> None:
    """Store VALUE for KEY (e.g. `hub.port 8080`) in the settings file.

    VALUE is checked first; a bad key or value leaves the file untouched.
    Booleans take true/false, lists take comma-separated items, tables
    take K=V,K=V or a JSON object. The file is rewritten in one step, so a
    reader never sees half of it; comments in it are not kept. Then says when
    the change takes effect, and offers `teamhub restart` when it needs one.
    """
    path = ctx.config_file
    setting = settings_mod.lookup(key)
    hub_paths = _running_hub_paths(ctx)
    try:
        stored = settings_mod.set_value(path, key, value)
    except OSError as exc:
        raise _write_problem(path, exc) from None
    click.echo(f"set {key} = {toml_literal(setting.shown(stored))} in {path}")
    _when_note(setting, hub_paths)
    _env_override_note(setting)


@config.command()
@click.argument("key")
@pass_ctx
def unset(ctx: Context, key: str) -> None:
    """Remove KEY from the settings file, so its default applies again (and say when)."""
    path = ctx.config_file
    setting = settings_mod.lookup(key)
    hub_paths = _running_hub_paths(ctx)
    try:
        removed = settings_mod.unset_value(path, key)
    except OSError as exc:
        raise _write_problem(path, exc) from None
    default = toml_literal(setting.default)
    if removed:
        click.echo(f"unset {key} in {path}; it is now the default, {default}")
        _when_note(setting, hub_paths)
    else:
        click.echo(f"{key} was not set in {path}; it already is the default, {default}")
    _env_override_note(setting)


@config.command()
@pass_ctx
def path(ctx: Context) -> None:
    """Print where the settings file and the raw JupyterHub config folder are.

    Python files in jupyterhub_config.d are loaded by the hub after teamhub's
    own configuration: the escape hatch for anything teamhub has no setting for.
    """
    file = ctx.config_file
    state = "" if file.exists() else "  (does not exist yet: every setting is its default)"
    click.echo(f"settings file: {file}{state}")
    click.echo(f"jupyterhub_config.d: {config_d(file)}")
