"""The parts behind a user's first day in Lab: login profile, Lab extensions, the default
URL check, limits shown in Lab, the hub pages' branding, the fork child's identity."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from traitlets import HasTraits, Unicode
from traitlets.config import Config

from teamhub import __version__
from teamhub.errors import LabExtensionError
from teamhub.hubconfig import update_branding
from teamhub.labext import default_url_server, lab_extensions, package_name
from teamhub.limits import Limits
from teamhub.serverext import kernelspecs_stamp
from teamhub.spawners import identity
from teamhub.spawners.identity import _set_class_default
from teamhub.spawners.local import limit_env
from teamhub.system import login_profile


def _source(text: str, tmp_path: Path, env: dict[str, str], script: str) -> str:
    profile = tmp_path / "profile.sh"
    profile.write_text(text)
    proc = subprocess.run(["sh", "-c", f". {profile}; {script}"], env=env,
                          capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout.strip()


def test_profile_puts_the_servers_path_back_in_labs_terminal(tmp_path: Path) -> None:
    text = login_profile.render(server_path="/rt/bin:/usr/bin", environment={"A": "1"},
                                prefix="nobody-matches-", min_uid=1000)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/games",
           login_profile.SERVER_PATH_ENV: "/rt/bin:/usr/local/bin:/usr/bin:/bin"}
    out = _source(text, tmp_path, env, 'echo "$PATH|${A:-unset}"')
    # The server's own entries first, once each; the login's extra ones kept after them.
    assert out == "/rt/bin:/usr/local/bin:/usr/bin:/bin:/usr/games|unset"


def test_profile_gives_a_teamhub_accounts_login_the_path_and_variables(tmp_path: Path) -> None:
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    environment = {"LD_LIBRARY_PATH": "/opt/x y/lib", "PATH": "ignored", "bad-name": "1",
                   "QUOTE": "it's"}
    text = login_profile.render(server_path="/rt/bin:/usr/bin", environment=environment,
                                prefix=me[:3], min_uid=1000)
    out = _source(text, tmp_path, {"PATH": "/usr/bin:/bin"},
                  'echo "$PATH|$LD_LIBRARY_PATH|$QUOTE"')
    assert out == "/rt/bin:/usr/bin:/bin|/opt/x y/lib|it's"
    other = login_profile.render(server_path="/rt/bin", environment=environment,
                                 prefix="zz-not-" + me, min_uid=1000)
    assert _source(other, tmp_path, {"PATH": "/usr/bin:/bin"}, 'echo "$PATH"') == "/usr/bin:/bin"


def test_profile_in_pam_mode_selects_accounts_by_uid(tmp_path: Path) -> None:
    uid = os.getuid()
    text = login_profile.render(server_path="/rt/bin", environment={"B": "2"}, prefix=None,
                                min_uid=uid)
    assert _source(text, tmp_path, {"PATH": "/bin"}, 'echo "$B"') == "2"
    text = login_profile.render(server_path="/rt/bin", environment={"B": "2"}, prefix=None,
                                min_uid=uid + 1)
    assert _source(text, tmp_path, {"PATH": "/bin"}, 'echo "${B:-unset}"') == "unset"


def test_profile_written_world_readable_and_only_when_changed(tmp_path: Path) -> None:
    target = tmp_path / "profile.d" / "teamhub.sh"
    assert login_profile.install("x\n", target) is False  # no profile.d: nothing written
    target.parent.mkdir()
    assert login_profile.install("x\n", target) is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert login_profile.install("x\n", target) is False
    assert login_profile.install("y\n", target) is True and target.read_text() == "y\n"
    assert [p.name for p in target.parent.iterdir()] == ["teamhub.sh"]


@pytest.mark.parametrize("spec, name", [
    ("Bokeh", "bokeh"), ("jupyter_bokeh>=4", "jupyter-bokeh"),
    ("jupyterlab-execute-time==3.3", "jupyterlab-execute-time")])
def test_package_name(spec: str, name: str) -> None:
    assert package_name(spec) == name


@pytest.mark.parametrize("spec", ["", "-e .", "./local", "git+https://x/y", "pkg @ file:///x"])
def test_package_name_refuses_what_is_not_an_index_name(spec: str) -> None:
    with pytest.raises(LabExtensionError, match="not a package name"):
        package_name(spec)


def _runtime_with(tmp_path: Path, enabled: dict[str, bool]) -> Path:
    confd = tmp_path / "etc" / "jupyter" / "jupyter_server_config.d"
    confd.mkdir(parents=True)
    for name, on in enabled.items():
        (confd / f"{name}.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": {name: on}}}))
    return tmp_path


def test_default_url_needs_the_extension_that_serves_it(tmp_path: Path) -> None:
    runtime = _runtime_with(tmp_path, {"jupyterlab": True, "notebook": False})
    assert default_url_server(runtime, "/lab") == (True, "jupyterlab")
    assert default_url_server(runtime, "/lab/tree/x.ipynb") == (True, "jupyterlab")
    ok, detail = default_url_server(runtime, "/tree")
    assert not ok and "disabled" in detail
    ok, detail = default_url_server(tmp_path / "none", "/tree")
    assert not ok and "not installed" in detail
    assert default_url_server(runtime, "/voila")[0] is None


def test_lab_extensions_lists_plain_and_scoped(tmp_path: Path) -> None:
    root = tmp_path / "share" / "jupyter" / "labextensions"
    for name in ("plain", "@scope/inner"):
        (root / name).mkdir(parents=True)
        (root / name / "package.json").write_text("{}")
    (root / "no-package").mkdir()
    assert lab_extensions(tmp_path) == {"plain", "@scope/inner"}


def test_limits_shown_in_lab_come_from_the_users_share() -> None:
    assert limit_env(None) == {}
    assert limit_env(Limits(memory=2 << 30, cpu=1.5)) == {"MEM_LIMIT": str(2 << 30),
                                                         "CPU_LIMIT": "1.5"}
    assert limit_env(Limits(tasks=10)) == {}


def test_hub_pages_name_teamhub_and_its_version() -> None:
    c = Config()
    update_branding(c)
    assert c.JupyterHub.template_vars["teamhub_name"] == "teamhub"
    assert c.JupyterHub.template_vars["teamhub_version"] == __version__


def test_kernelspecs_stamp_changes_with_the_list_only() -> None:
    a = kernelspecs_stamp({"python3": "/a", "personal-x": "/b"})
    assert a == kernelspecs_stamp({"personal-x": "/b", "python3": "/a"})
    assert a != kernelspecs_stamp({"python3": "/a"})


def test_a_class_default_computed_at_import_can_be_computed_again() -> None:
    class App(HasTraits):
        folder = Unicode("/nonexistent/.jupyter")

    _set_class_default(App, "folder", "/home/ada/.jupyter")
    assert App().folder == "/home/ada/.jupyter"


def test_send2trash_home_trash_follows_the_user(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    trash = pytest.importorskip("send2trash.plat_other")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    saved = {k: getattr(trash, k) for k in ("XDG_DATA_HOME", "HOMETRASH_B", "HOMETRASH")}
    try:
        identity._send2trash()
        assert trash.HOMETRASH == str(tmp_path / ".local" / "share" / "Trash")
    finally:
        vars(trash).update(saved)
