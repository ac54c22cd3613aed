"""db.url: checked, never printed with its password, and followed by the hub and the export."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import teamhub.cli
from teamhub.db.url import mask
from teamhub.errors import SettingsError
from teamhub.export.values import hub_database, store_url
from teamhub.paths import Paths
from teamhub.settings import Settings

URL = "postgresql://hub:s3cr%40t-pw@db.example:5433/team"


def config(toml: Path, *args: str) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TEAMHUB_")}
    return CliRunner(env=clean).invoke(teamhub.cli.cli, ["--config", str(toml), "config", *args])


def test_mask_hides_only_the_password() -> None:
    assert mask(URL) == "postgresql://hub:***@db.example:5433/team"
    assert mask("postgresql://hub@db/team") == "postgresql://hub@db/team"


@pytest.mark.parametrize("bad", ["mysql://u:s3cr%40t-pw@h/d", "postgresql://u:s3cr%40t-pw@/d",
                                 "postgresql://u:s3cr%40t-pw@h", "sqlite:///x.db"])
def test_bad_url_refused_without_its_password(settings: Callable[..., Settings],
                                              bad: str) -> None:
    with pytest.raises(SettingsError, match="db.url") as info:
        settings(f'[db]\nurl = "{bad}"\n')
    assert "s3cr" not in str(info.value)
    assert "postgresql://USER:PASSWORD@HOST" in str(info.value)


def test_default_is_the_embedded_sqlite_files(settings: Callable[..., Settings]) -> None:
    paths = Paths.from_settings(settings())
    assert paths.db_url == ""
    assert paths.hub_db_url == f"sqlite:///{paths.hub_db}"
    assert paths.store_exists is False


def test_config_show_get_set_mask_the_password(tmp_path: Path) -> None:
    toml = tmp_path / "t.toml"
    toml.write_text("")
    result = config(toml, "set", "db.url", URL)
    assert result.exit_code == 0, result.output
    assert "s3cr" not in result.output and "hub:***@db.example" in result.output
    assert "s3cr%40t-pw" in toml.read_text()  # the file keeps the real one
    for args in (("show",), ("show", "--json"), ("get", "db.url")):
        result = config(toml, *args)
        assert result.exit_code == 0, result.output
        assert "s3cr" not in result.output and "hub:***@db.example" in result.output


def test_export_hub_db_follows_db_url(settings: Callable[..., Settings]) -> None:
    assert hub_database(settings()) == {"type": "sqlite-pvc"}
    s = settings(f'[db]\nurl = "{URL}"\n')
    assert hub_database(s) == {"type": "postgres", "url": "postgresql://hub@db.example:5433/team",
                               "password": "s3cr@t-pw"}
    assert store_url(s) == "postgresql://hub@db.example:5433/team"
