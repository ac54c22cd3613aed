"""The settings schema: layering, validation and atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from teamhub import settings
from teamhub.errors import SettingsError
from teamhub.settings import Setting, load, lookup, parse_text, set_value, unset_value


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_with_no_file(tmp_path: Path) -> None:
    s = load(tmp_path / "missing.toml", environ={})
    for setting in settings.SCHEMA:
        assert s[setting.key] == setting.default
        assert s.origins[setting.key] == "default"
    assert s.config_file == tmp_path / "missing.toml"


def test_file_overrides_defaults(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", '[hub]\nport = 9000\nlog_level = "DEBUG"\n')
    s = load(f, environ={})
    assert s["hub.port"] == 9000
    assert s["hub.log_level"] == "DEBUG"
    assert s.origins["hub.port"] == str(f)
    assert s["hub.ip"] == "auto"
    assert s.origins["hub.ip"] == "default"


def test_env_overrides_file(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "[hub]\nport = 9000\n")
    s = load(f, environ={"TEAMHUB_HUB_PORT": "9100"})
    assert s["hub.port"] == 9100
    assert s.origins["hub.port"] == "env TEAMHUB_HUB_PORT"


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "[hub]\nport = 9000\n")
    s = load(environ={"TEAMHUB_CONFIG": str(f)})
    assert s.config_file == f
    assert s["hub.port"] == 9000


def test_unknown_env_variable_in_a_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TEAMHUB_HUB_NOPE"):
        load(tmp_path / "t.toml", environ={"TEAMHUB_HUB_NOPE": "1"})


def test_unrelated_teamhub_variable_is_ignored(tmp_path: Path) -> None:
    # Only the settings' own TEAMHUB_<SECTION>_ namespace is strict.
    s = load(tmp_path / "t.toml", environ={"TEAMHUB_SOMETHING_ELSE": "x"})
    assert s["hub.port"] == 8000


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TEAMHUB_HUB_PORT.*'eighty'"):
        load(tmp_path / "t.toml", environ={"TEAMHUB_HUB_PORT": "eighty"})


def test_unknown_key_in_file_names_the_key(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "[hub]\nprot = 9000\n")
    with pytest.raises(SettingsError, match=r"hub\.prot"):
        load(f, environ={})


def test_wrong_type_names_key_value_and_type(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", '[hub]\nport = "x"\n')
    with pytest.raises(SettingsError) as info:
        load(f, environ={})
    msg = str(info.value)
    assert "hub.port" in msg
    assert "'x'" in msg
    assert "integer" in msg
    assert str(f) in msg


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "[hub]\nport = true\n")
    with pytest.raises(SettingsError, match=r"hub\.port = True.*integer"):
        load(f, environ={})


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_out_of_range(tmp_path: Path, port: int) -> None:
    f = write(tmp_path / "t.toml", f"[hub]\nport = {port}\n")
    with pytest.raises(SettingsError, match=r"hub\.port.*1 to 65535"):
        load(f, environ={})


def test_bad_choice_lists_allowed_values(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", '[hub]\nlog_level = "LOUD"\n')
    with pytest.raises(SettingsError) as info:
        load(f, environ={})
    msg = str(info.value)
    assert "hub.log_level" in msg and "'LOUD'" in msg
    for choice in ("DEBUG", "INFO", "WARNING", "ERROR"):
        assert choice in msg


@pytest.mark.parametrize(("line", "problem"), [
    ('[hub]\nip = "everywhere"', r"hub\.ip.*IP address"),
    ('[paths]\nstate_dir = "var/lib"', r"paths\.state_dir.*absolute path"),
    ('[hub]\ndefault_url = "lab"', r"hub\.default_url.*starts with a single '/'"),
    ('[users]\nsystem_prefix = "Jup_"', r"users\.system_prefix"),
    ("[spawner]\nstart_timeout = 0", r"spawner\.start_timeout.*greater than 0"),
])
def test_checks_reject_bad_values(tmp_path: Path, line: str, problem: str) -> None:
    f = write(tmp_path / "t.toml", line + "\n")
    with pytest.raises(SettingsError, match=problem):
        load(f, environ={})


def test_corrupt_toml_mentions_the_file(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "[hub\nport = \n")
    with pytest.raises(SettingsError, match="not valid TOML") as info:
        load(f, environ={})
    assert str(f) in str(info.value)


def test_non_table_top_level_key_errors(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "port = 8000\n")
    with pytest.raises(SettingsError, match=r"'port' must be a \[section\] table"):
        load(f, environ={})


def test_lookup_unknown_lists_known_keys() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting 'hub\.nope'.*hub\.port"):
        lookup("hub.nope")


def test_every_setting_has_a_unique_env_var() -> None:
    env_vars = [s.env_var for s in settings.SCHEMA]
    assert len(set(env_vars)) == len(env_vars)
    assert lookup("hub.port").env_var == "TEAMHUB_HUB_PORT"


def test_defaults_pass_their_own_checks() -> None:
    for s in settings.SCHEMA:
        assert settings.coerce(s, s.default, "default") == s.default


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("Yes", True), ("on", True), ("1", True),
    ("false", False), ("NO", False), ("off", False), (" 0 ", False),
])
def test_parse_text_bool(text: str, expected: bool) -> None:
    setting = lookup("hub.stop_servers_on_shutdown")
    assert parse_text(setting, text, "test") is expected


def test_parse_text_bool_rejects_other_words() -> None:
    with pytest.raises(SettingsError, match="not a boolean"):
        parse_text(lookup("hub.stop_servers_on_shutdown"), "maybe", "test")


def test_parse_text_int() -> None:
    setting = lookup("hub.port")
    assert parse_text(setting, " 8080 ", "test") == 8080
    with pytest.raises(SettingsError, match="not an integer"):
        parse_text(setting, "80.5", "test")
    with pytest.raises(SettingsError, match="1 to 65535"):
        parse_text(setting, "70000", "test")


def test_parse_text_list() -> None:
    # No list setting exists yet; the parser must still be right when one does.
    setting = Setting("hub.things", list, [], "A list used only by this test.")
    assert parse_text(setting, "a, b,,c ", "test") == ["a", "b", "c"]
    assert parse_text(setting, "", "test") == []


def test_parse_text_string_is_validated() -> None:
    with pytest.raises(SettingsError, match="absolute path"):
        parse_text(lookup("users.shell"), "bash", "test")


def test_set_value_writes_and_loads(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "t.toml"
    assert set_value(f, "hub.port", "8080") == 8080
    assert set_value(f, "hub.stop_servers_on_shutdown", "yes") is True
    s = load(f, environ={})
    assert s["hub.port"] == 8080
    assert s["hub.stop_servers_on_shutdown"] is True
    assert s.origins["hub.port"] == str(f)


def test_set_value_keeps_other_values_and_mode(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", '[hub]\nlog_level = "DEBUG"\n')
    f.chmod(0o600)
    set_value(f, "hub.port", "8080")
    s = load(f, environ={})
    assert s["hub.log_level"] == "DEBUG"
    assert s["hub.port"] == 8080
    assert f.stat().st_mode & 0o777 == 0o600


def test_rejected_set_leaves_file_alone(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "[hub]\nport = 9000\n")
    before = f.read_bytes()
    with pytest.raises(SettingsError):
        set_value(f, "hub.port", "x")
    with pytest.raises(SettingsError):
        set_value(f, "hub.nope", "1")
    assert f.read_bytes() == before


def test_set_value_refuses_to_overwrite_a_corrupt_file(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "[hub\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        set_value(f, "hub.port", "8080")
    assert f.read_text() == "[hub\n"


def test_set_value_ignores_environment_overrides(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken TEAMHUB_* variable must not stop an admin from fixing the file.
    monkeypatch.setenv("TEAMHUB_HUB_PORT", "broken")
    f = tmp_path / "t.toml"
    set_value(f, "hub.port", "8080")
    assert load(f, environ={})["hub.port"] == 8080


def test_unset_value_falls_back_to_default(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", '[hub]\nport = 9000\nlog_level = "DEBUG"\n')
    assert unset_value(f, "hub.port") is True
    s = load(f, environ={})
    assert s["hub.port"] == 8000
    assert s.origins["hub.port"] == "default"
    assert s["hub.log_level"] == "DEBUG"
    assert unset_value(f, "hub.port") is False


def test_unset_last_key_drops_the_section(tmp_path: Path) -> None:
    f = write(tmp_path / "t.toml", "[hub]\nport = 9000\n")
    assert unset_value(f, "hub.port") is True
    assert "[hub]" not in f.read_text()


def test_unset_on_missing_file_is_a_no_op(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    assert unset_value(f, "hub.port") is False
    assert not f.exists()


def test_write_leaves_no_temp_files(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    set_value(f, "hub.port", "8080")
    set_value(f, "hub.log_level", "ERROR")
    unset_value(f, "hub.port")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]


def test_failed_write_leaves_old_file_and_no_temp_files(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path / "t.toml", "[hub]\nport = 9000\n")
    before = f.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(settings.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        set_value(f, "hub.port", "8080")
    assert f.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]


def test_set_repairs_a_bad_value_in_the_file(tmp_path):
    from teamhub.settings import load, set_value

    cfg = tmp_path / "t.toml"
    cfg.write_text('[hub]\nport = "x"\n')
    set_value(cfg, "hub.port", "8080")
    assert load(cfg, environ={})["hub.port"] == 8080


def test_unset_removes_a_typo_key_and_unknown_key_errors_name_the_file(tmp_path):
    import pytest

    from teamhub.errors import SettingsError
    from teamhub.settings import load, unset_value

    cfg = tmp_path / "t.toml"
    cfg.write_text("[hub]\nprot = 1\n")
    with pytest.raises(SettingsError, match=str(cfg)):
        load(cfg, environ={})
    assert unset_value(cfg, "hub.prot") is True
    assert load(cfg, environ={})["hub.port"] == 8000


def test_every_setting_says_when_it_takes_effect() -> None:
    # A new setting fails here until it has an entry in settings.APPLIES.
    missing = [s.key for s in settings.SCHEMA if s.key not in settings.APPLIES]
    assert not missing, f"add these to settings.APPLIES: {missing}"
    assert set(settings.APPLIES) <= set(settings.BY_KEY), "APPLIES names unknown settings"
    for s in settings.SCHEMA:
        assert s.applies.when in settings.WHENS, s.key
        assert s.applies.describe()


def test_what_is_read_at_each_command_is_live_and_hub_config_needs_a_restart() -> None:
    assert lookup("envs.keep_revisions").applies.when == settings.LIVE
    default_url = lookup("hub.default_url").applies
    assert (default_url.when, default_url.servers) == (settings.HUB_RESTART, True)
    assert "teamhub restart" in default_url.describe()
    assert "next started" in default_url.describe()
    assert "next started" not in lookup("hub.port").applies.describe()
