"""docs/reference.md is generated and complete: every setting and command documented."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from teamhub import docs, settings

REPO = Path(__file__).parents[2]
REFERENCE = REPO / "docs" / "reference.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return docs.render_reference()


def test_committed_reference_is_current(rendered: str) -> None:
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert committed == rendered, (
        f"{REFERENCE} is out of date; regenerate it from the repository root with: "
        f"{docs.GENERATE_COMMAND}"
    )


def test_render_is_deterministic(rendered: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # click would otherwise wrap help to the terminal running the generator.
    monkeypatch.setenv("COLUMNS", "200")
    assert docs.render_reference() == rendered


@pytest.mark.parametrize("setting", settings.SCHEMA, ids=lambda s: s.key)
def test_setting_is_documented(setting: settings.Setting, rendered: str) -> None:
    assert len(setting.help.strip()) >= 20, f"{setting.key}: help text missing or too short"
    assert f"#### `{setting.key}`" in rendered
    assert setting.env_var in rendered
    assert setting.help in rendered


def test_every_command_and_option_is_documented(rendered: str) -> None:
    seen = []
    for ctx in docs.iter_commands():
        cmd, path = ctx.command, ctx.command_path
        seen.append(path)
        assert (cmd.help or "").strip(), f"`{path}` has no help text (add a docstring)"
        assert f"### `{path}`" in rendered, f"`{path}` is missing from the reference"
        for param in cmd.get_params(ctx):
            if not isinstance(param, click.Option) or param.hidden:
                continue
            name = "/".join(param.opts)
            assert (param.help or "").strip(), f"`{path}` option {name} has no help="
            for opt in param.opts:
                assert opt in rendered, f"`{path}` option {opt} is missing from the reference"
    # The walk itself must reach below the root, or this test proves nothing.
    assert "teamhub config set" in seen


def test_check_accepts_current_and_rejects_stale(tmp_path: Path, rendered: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "reference.md"
    current.write_text(rendered, encoding="utf-8")
    assert docs.main(["--check", str(current)]) == 0

    stale = tmp_path / "stale.md"
    stale.write_text(rendered + "extra\n", encoding="utf-8")
    assert docs.main(["--check", str(stale)]) == 1
    assert docs.GENERATE_COMMAND in capsys.readouterr().err

    assert docs.main(["--check", str(tmp_path / "missing.md")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_main_prints_the_reference(rendered: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert docs.main([]) == 0
    assert capsys.readouterr().out == rendered
