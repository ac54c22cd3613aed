"""`teamhub config ...` driven through click's test runner, against a temporary file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import teamhub.cli
from teamhub import settings
from teamhub.paths import Paths


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    return tmp_path / "t.toml"


def run(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    # Shield the tests from whatever TEAMHUB_* variables the developer has set.
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TEAMHUB_")}
    clean.update(env or {})
    return CliRunner(env=clean).invoke(teamhub.cli.cli, ["--config", str(config), "config", *args])


def error_line(result: Result, *needles: str) -> str:
    """The single `teamhub: error: ...` line, checked to contain every needle."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("teamhub: error: "), result.output
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_show_lists_every_setting_with_origin(toml_file: Path) -> None:
    toml_file.write_text("[hub]\nport = 9000\n")
    result = run(toml_file, "show")
    assert result.exit_code == 0, result.output
    assert "[hub]" in result.output
    assert f"port = 9000  # {toml_file}" in result.output
    assert 'ip = "auto"  # default' in result.output
    assert "stop_servers_on_shutdown = false  # default" in result.output
    for setting in settings.SCHEMA:
        assert f"[{setting.section}]" in result.output
        assert f"\n{setting.name} = " in result.output


def test_show_is_valid_toml(toml_file: Path) -> None:
    toml_file.write_text('[hub]\nlog_level = "DEBUG"\n')
    result = run(toml_file, "show")
    assert settings.tomllib.loads(result.output) == settings.load(toml_file, environ={}).as_dict()


def test_show_json_has_values_and_origins(toml_file: Path) -> None:
    toml_file.write_text("[hub]\nport = 9000\n")
    result = run(toml_file, "show", "--json", env={"TEAMHUB_HUB_LOG_LEVEL": "ERROR"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["hub"]["port"] == {"value": 9000, "origin": str(toml_file)}
    assert data["hub"]["ip"] == {"value": "auto", "origin": "default"}
    assert data["hub"]["log_level"] == {"value": "ERROR", "origin": "env TEAMHUB_HUB_LOG_LEVEL"}
    assert {f"{sec}.{name}" for sec, table in data.items() for name in table} == set(
        settings.BY_KEY)


def test_get_prints_plain_values(toml_file: Path) -> None:
    assert run(toml_file, "get", "hub.port").output == "8000\n"
    assert run(toml_file, "get", "hub.ip").output == "auto\n"
    assert run(toml_file, "get", "hub.stop_servers_on_shutdown").output == "false\n"


def test_get_unknown_key(toml_file: Path) -> None:
    error_line(run(toml_file, "get", "hub.nope"), "hub.nope", "hub.port")


def test_set_then_get(toml_file: Path) -> None:
    result = run(toml_file, "set", "hub.port", "8080")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"set hub.port = 8080 in {toml_file}"
    assert run(toml_file, "get", "hub.port").output == "8080\n"
    result = run(toml_file, "set", "hub.stop_servers_on_shutdown", "yes")
    assert result.output.splitlines()[0] == \
        f"set hub.stop_servers_on_shutdown = true in {toml_file}"
    assert run(toml_file, "get", "hub.stop_servers_on_shutdown").output == "true\n"
    assert run(toml_file, "get", "hub.port").output == "8080\n"


def test_set_bad_key_leaves_file_untouched(toml_file: Path) -> None:
    toml_file.write_text("# mine\n[hub]\nport = 9000\n")
    before = toml_file.read_bytes()
    error_line(run(toml_file, "set", "hub.prot", "8080"), "hub.prot")
    assert toml_file.read_bytes() == before


@pytest.mark.parametrize(("key", "value"), [
    ("hub.port", "x"),
    ("hub.port", "70000"),
    ("hub.log_level", "LOUD"),
    ("hub.stop_servers_on_shutdown", "maybe"),
])
def test_set_bad_value_leaves_file_untouched(toml_file: Path, key: str, value: str) -> None:
    toml_file.write_text("# mine\n[hub]\nport = 9000\n")
    before = toml_file.read_bytes()
    error_line(run(toml_file, "set", key, value), key, value)
    assert toml_file.read_bytes() == before


def test_set_bad_value_creates_no_file(toml_file: Path) -> None:
    error_line(run(toml_file, "set", "hub.port", "x"), "hub.port")
    assert not toml_file.exists()


def test_set_notes_environment_override(toml_file: Path) -> None:
    result = run(toml_file, "set", "hub.port", "8080", env={"TEAMHUB_HUB_PORT": "9999"})
    assert result.exit_code == 0, result.output
    assert "note: environment variable TEAMHUB_HUB_PORT overrides this" in result.output
    assert settings.load(toml_file, environ={})["hub.port"] == 8080


def test_set_works_while_environment_is_broken(toml_file: Path) -> None:
    # The file must stay fixable even when a TEAMHUB_* variable would make load() fail.
    env = {"TEAMHUB_HUB_PORT": "not-a-port", "TEAMHUB_HUB_NOPE": "1"}
    result = run(toml_file, "set", "hub.log_level", "DEBUG", env=env)
    assert result.exit_code == 0, result.output
    result = run(toml_file, "unset", "hub.log_level", env=env)
    assert result.exit_code == 0, result.output


def test_unset(toml_file: Path) -> None:
    toml_file.write_text("[hub]\nport = 9000\n")
    result = run(toml_file, "unset", "hub.port")
    assert result.exit_code == 0, result.output
    assert "unset hub.port" in result.output and "8000" in result.output
    assert run(toml_file, "get", "hub.port").output == "8000\n"
    result = run(toml_file, "unset", "hub.port")
    assert result.exit_code == 0, result.output
    assert "was not set" in result.output


def _with_state(toml_file: Path, hub_pid: int | None) -> Path:
    """Settings whose state folder is a temporary one, with a hub "running" as HUB_PID
    (a live root process that wrote the pid file: what the CLI takes for the hub)."""
    state = toml_file.parent / "state"
    state.mkdir(mode=0o700)
    if hub_pid is not None:
        (state / "jupyterhub.pid").write_text(f"{hub_pid}\n")
    toml_file.write_text(f'[paths]\nstate_dir = "{state}"\n')
    return state


def test_set_says_a_restart_is_needed_and_offers_the_command(toml_file: Path) -> None:
    _with_state(toml_file, os.getpid())  # this test process plays the running hub
    result = run(toml_file, "set", "hub.default_url", "/tree")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f'set hub.default_url = "/tree" in {toml_file}'
    assert lines[1] == ("takes effect after a hub restart: run `teamhub restart` (users' "
                        "servers keep running); running servers keep the old value until "
                        "they are next started")
    result = run(toml_file, "unset", "hub.log_level")
    assert "was not set" in result.output and "teamhub restart" not in result.output
    run(toml_file, "set", "hub.log_level", "DEBUG")
    result = run(toml_file, "unset", "hub.log_level")
    assert result.output.splitlines()[1] == ("takes effect after a hub restart: run "
                                             "`teamhub restart` (users' servers keep running)")


def test_set_without_a_running_hub_says_it_applies_at_start(toml_file: Path) -> None:
    _with_state(toml_file, None)
    result = run(toml_file, "set", "hub.default_url", "/tree")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].startswith(
        "no hub is running: takes effect when teamhub starts (`teamhub up`")


def test_set_of_a_live_setting_needs_no_restart(toml_file: Path) -> None:
    _with_state(toml_file, os.getpid())
    result = run(toml_file, "set", "envs.keep_revisions", "5")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == (
        "takes effect at once: the next command, login or request uses it; no restart needed")
    assert "teamhub restart" not in result.output


def test_unset_unknown_key(toml_file: Path) -> None:
    error_line(run(toml_file, "unset", "hub.nope"), "hub.nope")


@pytest.mark.parametrize("args", [("show",), ("get", "hub.port"), ("set", "hub.port", "8080"),
                                  ("unset", "hub.port")])
def test_corrupt_file_gives_clear_error(toml_file: Path, args: tuple[str, ...]) -> None:
    toml_file.write_text("[hub\nport = 9000\n")
    before = toml_file.read_bytes()
    error_line(run(toml_file, *args), str(toml_file), "not valid TOML")
    assert toml_file.read_bytes() == before


def test_unwritable_file_gives_clear_error(toml_file: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated, because the tests may run as root, who can write anywhere.
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    toml_file.write_text("[hub]\nport = 9000\n")
    monkeypatch.setattr(settings.tempfile, "mkstemp", denied)
    for args in (("set", "hub.port", "8080"), ("unset", "hub.port")):
        error_line(run(toml_file, *args), "cannot write", str(toml_file), "--config")
    assert toml_file.read_text() == "[hub]\nport = 9000\n"

def test_path(toml_file: Path) -> None:
    result = run(toml_file, "path")
    assert result.exit_code == 0, result.output
    assert f"settings file: {toml_file}" in result.output
    assert "does not exist yet" in result.output
    config_d = Paths.from_settings(settings.load(toml_file, environ={})).config_d
    assert f"jupyterhub_config.d: {config_d}" in result.output
    toml_file.write_text("")
    assert "does not exist" not in run(toml_file, "path").output

