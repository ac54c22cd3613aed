"""The plain parts behind the console's Projects, Environments and My environments pages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from teamhub.console.envs import packages_of, tree_size
from teamhub.envs import admin, mine
from teamhub.errors import EnvError
from teamhub.paths import Paths
from teamhub.system.users import SystemUser


def test_packages_from_a_form_field() -> None:
    assert packages_of(" six, idna>=3\npandas ") == ["six", "idna>=3", "pandas"]
    assert packages_of("") == []
    with pytest.raises(EnvError, match="'--index-url' is not a package"):
        packages_of("six --index-url")
    with pytest.raises(EnvError):
        packages_of(["six"])


def test_groups_from_a_form_field() -> None:
    assert admin.parse_groups(" ml, data,,ml ") == ["data", "ml"]
    assert admin.parse_groups("") == []


def test_tree_size_counts_each_file_once_and_follows_no_link(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100)
    os.link(tmp_path / "a", tmp_path / "hard")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 10)
    os.symlink("/etc/passwd", tmp_path / "link")
    assert tree_size(str(tmp_path)) == 110 + len("/etc/passwd")


def test_personal_env_commands_run_as_the_user_with_a_clean_environment(tmp_path: Path) -> None:
    user = SystemUser("tht-ada", 4242, 4343, "/home/tht-ada", "/bin/bash")
    paths = Paths(config_file=tmp_path / "t.toml", state_dir=tmp_path, runtime_dir=Path("/rt"),
                  home_root=tmp_path)
    argv, env = mine.command(user, paths.runtime_dir, "create", "x", "--", "six")
    assert argv[:5] == ["setpriv", "--reuid=4242", "--regid=4343", "--init-groups", "--"]
    assert argv[5:] == ["/rt/bin/teamhub-env", "create", "x", "--", "six"]
    assert env["HOME"] == "/home/tht-ada" and env["USER"] == "tht-ada"
    assert env["PATH"].startswith("/rt/bin:") and env["PYTHONUNBUFFERED"] == "1"
    assert "UV_CACHE_DIR" not in env and "SUDO_USER" not in env


def test_personal_env_names_and_packages_are_checked_before_anything_runs(
        tmp_path: Path) -> None:
    user = SystemUser("nobody-here", 1, 1, str(tmp_path), "/bin/sh")
    paths = Paths(config_file=tmp_path / "t.toml", state_dir=tmp_path,
                  runtime_dir=tmp_path / "missing", home_root=tmp_path)
    ran: list[list[str]] = []
    runner = mine.direct(user, paths)

    def spy(args: list[str], echo: mine.Echo) -> int:
        ran.append(args)
        return runner(args, echo)

    with pytest.raises(EnvError, match="invalid environment name"):
        mine.create(spy, "../x", [], print)
    with pytest.raises(EnvError, match="not a package name"):
        mine.create(spy, "ok", ["--index-url=http://evil"], print)
    with pytest.raises(EnvError, match="invalid environment name"):
        mine.delete(spy, "/etc")
    assert ran == []


@pytest.mark.parametrize("args", [
    ["list"], ["list", "--json", "x"], ["create", "ok", "six"], ["create", "ok", "--", "-e."],
    ["create", "ok", "--", ""], ["create", "../x", "--"], ["delete", "a b"], ["run", "x"],
    ["delete", "ok", "--force"], "list --json", [["list"]], ["create", "ok", "--", *["p"] * 101],
])
def test_personal_env_arguments_outside_the_pages_commands_are_refused(args: object) -> None:
    with pytest.raises(EnvError):
        mine.check_args(args)


def test_personal_env_arguments_the_page_runs_pass() -> None:
    for args in (["list", "--json"], ["delete", "ok"], ["create", "ok", "--"],
                 ["create", "ok", "--", "six", "idna==3.7"]):
        assert mine.check_args(args) == args
