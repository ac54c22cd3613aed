"""The `teamhub` command itself: version, help, and how errors look."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

import teamhub
from teamhub import cli as cli_module


def run(*args: str, **kw):
    return CliRunner().invoke(cli_module.cli, list(args), **kw)


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"teamhub, version {teamhub.__version__}"


def _commands(group: click.Group) -> list[click.Command]:
    found: list[click.Command] = []
    for command in group.commands.values():
        found.append(command)
        if isinstance(command, click.Group):
            found += _commands(command)
    return found


def test_help_lists_every_command_group() -> None:
    result = run("--help")
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:", 1)[1].splitlines()
              if line.startswith("  ") and line.strip()}
    assert listed == set(cli_module.cli.commands)
    # Every command module under teamhub/cli adds at least one command (none is forgotten
    # by cli/__init__.py, which imports them).
    modules = {p.stem for p in Path(cli_module.__file__).parent.glob("*.py")} - {
        "__init__", "base", "user_group"}
    adding = {c.callback.__module__.rsplit(".", 1)[1] for c in _commands(cli_module.cli)
              if c.callback is not None}
    assert modules <= adding, modules - adding
    assert len(listed) >= 12


def test_settings_error_is_one_line_with_nonzero_exit(tmp_path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[nope]\nx = 1\n")
    result = run("--config", str(cfg), "user", "list", env={"TEAMHUB_CONFIG": None})
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("teamhub: error:") and "nope.x" in lines[0]
