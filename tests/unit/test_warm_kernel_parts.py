"""Which warm parent may fork a kernel, and when a parent is stale (teamhub.envs.warm_kernels)."""

from __future__ import annotations

import os
from pathlib import Path

from teamhub.envs.kernels import LAUNCHER
from teamhub.envs.warm_kernels import fingerprint, launcher_index, parent_key


def test_only_teamhubs_launcher_is_forked() -> None:
    assert launcher_index(["/e/bin/python", "-P", LAUNCHER, "-f", "c.json"]) == 2
    assert launcher_index(["/e/bin/python", LAUNCHER, "-f", "c.json"]) == 1
    assert launcher_index(["/e/bin/python", "-m", "ipykernel_launcher", "-f", "c"]) is None
    assert launcher_index(["/e/bin/python", "-X", LAUNCHER, "-f", "c"]) is None
    assert launcher_index(["R", "--slave", "-e", "IRkernel::main()"]) is None


def test_one_parent_per_program_and_environment() -> None:
    cmd = ["/e/bin/python", "-P", LAUNCHER, "-f", "a.json"]
    env = {"PATH": "/e/bin:/usr/bin", "HOME": "/home/x"}
    key = parent_key(cmd, 2, env)
    # The connection file, extra arguments and the session name are per kernel.
    assert parent_key([*cmd[:3], "-f", "b.json", "--x=1"], 2, env) == key
    assert parent_key(cmd, 2, {**env, "JPY_SESSION_NAME": "nb.ipynb"}) == key
    # Anything that can change what the interpreter does at start is not.
    assert parent_key(cmd, 2, {**env, "PYTHONPATH": "/tmp/evil"}) != key
    assert parent_key(["/f/bin/python", *cmd[1:]], 2, env) != key


def _env(root: Path, rev: str) -> Path:
    site = root / rev / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / rev / "bin").mkdir()
    (root / rev / "bin" / "python").symlink_to("/usr/bin/python3")
    return site


def test_a_new_revision_or_a_pip_install_makes_a_parent_stale(tmp_path: Path) -> None:
    site = _env(tmp_path, "1")
    (tmp_path / "current").symlink_to("1")
    python = str(tmp_path / "current" / "bin" / "python")
    env = {"HOME": str(tmp_path / "home")}
    first = fingerprint(python, env)
    assert fingerprint(python, env) == first
    # pip install: a new folder in site-packages.
    os.utime(site, ns=(1, 1))
    before_pip = fingerprint(python, env)
    (site / "idna").mkdir()
    assert fingerprint(python, env) != before_pip
    # teamhub env install: `current` now names another revision.
    settled = fingerprint(python, env)
    _env(tmp_path, "2")
    (tmp_path / "current").unlink()
    (tmp_path / "current").symlink_to("2")
    assert fingerprint(python, env) != settled


def test_the_users_own_site_packages_count_too(tmp_path: Path) -> None:
    _env(tmp_path, "1")
    python = str(tmp_path / "1" / "bin" / "python")
    home = tmp_path / "home"
    env = {"HOME": str(home)}
    before = fingerprint(python, env)
    (home / ".local" / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    assert fingerprint(python, env) != before
