"""Environments: revision bookkeeping, visibility, kernel discovery, settings and config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from traitlets.config import Config

from teamhub import hubconfig
from teamhub.envs import kernels, visibility
from teamhub.envs.store import (
    check_name,
    merge_packages,
    previous_revision,
    prune_plan,
    read_requirements,
    remove_packages,
)
from teamhub.errors import EnvError, SettingsError
from teamhub.paths import Paths
from teamhub.settings import load, set_value
from teamhub.spawners.local import merge_path


def test_install_replaces_same_project_and_keeps_order() -> None:
    assert merge_packages(["six", "Idna>=3"], ["idna==3.7", "packaging"]) == [
        "six", "idna==3.7", "packaging"]
    assert remove_packages(["six", "idna"], ["Six"]) == ["idna"]
    with pytest.raises(EnvError, match="not in the environment"):
        remove_packages(["six"], ["numpy"])


def test_requirements_file_lines(tmp_path: Path) -> None:
    f = tmp_path / "r.txt"
    f.write_text("# c\nsix==1.16  # pinned\n\nidna\n")
    assert read_requirements(f) == ["six==1.16", "idna"]
    f.write_text("--index-url http://x\n")
    with pytest.raises(EnvError, match="only package lines"):
        read_requirements(f)


def test_prune_keeps_newest_and_never_current() -> None:
    assert prune_plan([1, 2, 3, 4], current=4, keep=3) == [1]
    assert prune_plan([1, 2, 3, 4], current=1, keep=2) == [2]
    assert prune_plan([1], current=1, keep=1) == []
    assert previous_revision([2, 3, 5], 5) == 3
    with pytest.raises(EnvError, match="no older revision"):
        previous_revision([2, 3], 2)


@pytest.mark.parametrize("bad", ["", "A", "../x", "x/y", "1abc", "a" * 40, ".cache"])
def test_env_names_are_safe_folder_names(bad: str) -> None:
    with pytest.raises(EnvError):
        check_name(bad)


def test_visibility_maps_groups_to_linux_accounts() -> None:
    index = visibility.compute({"pub": [], "ml": ["ml", "x"], "none": ["empty"]},
                               {"ml": ["ada", "bob"], "x": ["bob", "cy"], "empty": []},
                               "jupyter-")
    envs = index["envs"]
    assert envs["pub"] == {"users": None}
    assert envs["ml"] == {"users": ["jupyter-ada", "jupyter-bob", "jupyter-cy"]}
    assert envs["none"] == {"users": []}
    assert visibility.allowed(envs["pub"], "anyone")
    assert visibility.allowed(envs["ml"], "jupyter-ada")
    assert not visibility.allowed(envs["ml"], "jupyter-dan")
    assert not visibility.allowed(None, "jupyter-ada")  # unknown env: hidden


def _fake_env(path: Path, ipykernel: bool = True) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")
    if ipykernel:
        pkg = path / "lib" / "python3.11" / "site-packages" / "ipykernel"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
    return path


def test_shared_specs_follow_the_visibility_index(tmp_path: Path) -> None:
    for name in ("pub", "ml", "gone"):
        _fake_env(tmp_path / name / "revs" / "1")
        (tmp_path / name / "current").symlink_to("revs/1")
        (tmp_path / name / "teamhub-env.json").write_text("{}")
    (tmp_path / "gone" / "teamhub-env.json").unlink()  # being deleted
    visibility.write(tmp_path, visibility.compute(
        {"pub": [], "ml": ["ml"], "gone": []}, {"ml": ["ada"]}, "j-"))
    ada = kernels.shared_specs(tmp_path, "j-ada")
    bob = kernels.shared_specs(tmp_path, "j-bob")
    assert sorted(ada) == ["env-ml", "env-pub"]
    assert sorted(bob) == ["env-pub"]
    spec = ada["env-pub"]
    assert spec.display_name == "Python (pub)"
    assert spec.argv[0] == str(tmp_path / "pub" / "current" / "bin" / "python")
    assert "--IPKernelApp.extensions=teamhub_pip_guard" in spec.argv
    assert json.loads((tmp_path / "visibility.json").read_text())["version"] == 1


def test_personal_specs_need_ipykernel(tmp_path: Path) -> None:
    _fake_env(tmp_path / "venvs" / "My Env")
    _fake_env(tmp_path / "venvs" / "plain", ipykernel=False)
    _fake_env(tmp_path / "conda" / "geo")
    specs = kernels.personal_specs([str(tmp_path / "venvs"), str(tmp_path / "conda"),
                                    str(tmp_path / "missing")])
    assert sorted(specs) == ["personal-geo", "personal-my-env"]
    assert specs["personal-my-env"].display_name == "Python (My Env, personal)"


def test_environment_setting_is_a_table(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('[spawner]\nenvironment = { LD_LIBRARY_PATH = "/opt/x/lib" }\n')
    assert load(f, environ={})["spawner.environment"] == {"LD_LIBRARY_PATH": "/opt/x/lib"}
    env = load(f, environ={"TEAMHUB_SPAWNER_ENVIRONMENT": "A=1,B=x=y"})
    assert env["spawner.environment"] == {"A": "1", "B": "x=y"}
    env = load(f, environ={"TEAMHUB_SPAWNER_ENVIRONMENT": '{"A": "1,2"}'})
    assert env["spawner.environment"] == {"A": "1,2"}
    for bad in ("nokey", '{"A": 1}', "1A=x", '{"A": '):
        with pytest.raises(SettingsError):
            load(f, environ={"TEAMHUB_SPAWNER_ENVIRONMENT": bad})
    f.write_text("[spawner]\nenvironment = { A = 1 }\n")
    with pytest.raises(SettingsError, match="table of strings"):
        load(f, environ={})
    f.write_text("")
    set_value(f, "spawner.environment", "K=V")
    assert load(f, environ={})["spawner.environment"] == {"K": "V"}


def test_spawner_gets_environment_env_keep_and_kernel_manager(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('[spawner]\nenvironment = { A = "1" }\nenv_keep = ["HTTPS_PROXY"]\n'
                 '[envs]\nroot = "/srv/envs"\n')
    s = load(f, environ={})
    c = Config()
    hubconfig.update_spawner(c, s, Paths.from_settings(s))
    assert {k: v for k, v in c.Spawner.environment.items() if "INTERVAL" not in k} == {"A": "1"}
    assert c.Spawner.env_keep == ["LANG", "LC_ALL", "HTTPS_PROXY"]
    ksm = hubconfig.KERNEL_SPEC_MANAGER
    assert f"--ServerApp.kernel_spec_manager_class={ksm}" in c.Spawner.args
    assert "--TeamhubKernelSpecManager.envs_root=/srv/envs" in c.Spawner.args


def test_admin_path_goes_first_unless_placed() -> None:
    assert merge_path("/rt/bin:/usr/bin", None) == "/rt/bin:/usr/bin"
    assert merge_path("/rt/bin:/usr/bin", "/opt/x/bin") == "/opt/x/bin:/rt/bin:/usr/bin"
    assert merge_path("/rt/bin:/usr/bin", "$PATH:/opt/x/bin") == "/rt/bin:/usr/bin:/opt/x/bin"


def test_every_ipykernel_spec_starts_through_the_safe_launcher(tmp_path: Path) -> None:
    new, old = _fake_env(tmp_path / "new"), _fake_env(tmp_path / "old")
    (old / "lib" / "python3.11").rename(old / "lib" / "python3.9")
    assert kernels.env_python_version(new) == (3, 11)
    assert kernels.env_python_version(old) == (3, 9)
    assert kernels.env_python_version(tmp_path / "none") is None
    specs = kernels.personal_specs([str(tmp_path)])
    # -P only where the interpreter has it: an unknown option would kill the kernel.
    assert specs["personal-new"].argv[:4] == [str(new / "bin" / "python"), "-P",
                                               kernels.LAUNCHER, "-f"]
    assert specs["personal-old"].argv[:3] == [str(old / "bin" / "python"), kernels.LAUNCHER,
                                               "-f"]
    # Installed specs (the runtime's own python3, `ipykernel install`) are rewritten too.
    assert kernels.safe_argv(["python", "-m", "ipykernel_launcher", "-f", "{c}"]) == [
        "python", "-P", kernels.LAUNCHER, "-f", "{c}"]
    assert kernels.safe_argv([str(old / "bin" / "python"), "-m", "ipykernel_launcher"]) == [
        str(old / "bin" / "python"), kernels.LAUNCHER]
    assert kernels.safe_argv(["R", "--slave"]) == ["R", "--slave"]
    manager = kernels.TeamhubKernelSpecManager()
    assert manager.get_kernel_spec("python3").argv[1:3] == ["-P", kernels.LAUNCHER]
    listed = manager.get_all_specs()["python3"]["spec"]
    assert listed["argv"][1:3] == ["-P", kernels.LAUNCHER]


@pytest.mark.skipif(os.geteuid() != 0, reason="makes root-owned folders")
def test_up_makes_an_older_install_s_locks_private(tmp_path: Path) -> None:
    from teamhub.envs import admin

    root = tmp_path / "envs"
    (root / ".cache").mkdir(parents=True, mode=0o755)
    (root / ".lock").write_text("")
    (root / ".lock").chmod(0o644)
    f = tmp_path / "t.toml"
    f.write_text(f'[envs]\nroot = "{root}"\n[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    admin.refresh_visibility(load(f, environ={}))  # what `teamhub up` runs
    assert not (root / ".lock").exists()
    assert (root / ".cache").stat().st_mode & 0o777 == 0o700


def test_kernel_spec_manager_lists_shared_and_personal_envs_at_each_call(
        tmp_path: Path) -> None:
    shared, personal = tmp_path / "shared", tmp_path / "venvs"
    _fake_env(shared / "pub" / "revs" / "1")
    (shared / "pub" / "current").symlink_to("revs/1")
    (shared / "pub" / "teamhub-env.json").write_text("{}")
    visibility.write(shared, visibility.compute({"pub": []}, {}, "j-"))
    manager = kernels.TeamhubKernelSpecManager(envs_root=str(shared),
                                               personal_dirs=[str(personal)])
    assert {"python3", "env-pub"} <= set(manager.find_kernel_specs())
    assert "personal-mine" not in manager.find_kernel_specs()
    _fake_env(personal / "mine")  # made while the server runs: listed at the next call
    assert "personal-mine" in manager.find_kernel_specs()
    spec = manager.get_kernel_spec("env-pub")
    assert spec.argv[0] == str(shared / "pub" / "current" / "bin" / "python")
    assert manager.get_kernel_spec("personal-mine").display_name == "Python (mine, personal)"
