"""The `teamhub` command itself: version, help, and how errors look."""

from __future__ import annotations

from click.testing import CliRunner

import teamhub
from teamhub import cli as cli_module


def run(*args: str, **kw):
    return CliRunner().invoke(cli_module.cli, list(args), **kw)


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"teamhub, version {teamhub.__version__}"


def test_help_lists_every_command_group() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("up", "config", "user"):
        assert f"  {name}" in result.output


def test_settings_error_is_one_line_with_nonzero_exit(tmp_path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[nope]\nx = 1\n")
    result = run("--config", str(cfg), "user", "list", env={"TEAMHUB_CONFIG": None})
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("teamhub: error:") and "nope.x" in lines[0]
