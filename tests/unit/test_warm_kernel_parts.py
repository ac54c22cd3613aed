"""Which warm parent may fork a kernel, and when a parent is stale (teamhub.envs.warm_kernels)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from teamhub.envs.kernels import LAUNCHER
from teamhub.envs.warm_kernels import (
    Forked,
    ForkedChild,
    WarmParents,
    fingerprint,
    launcher_index,
    parent_key,
)


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


def _forked(stamp: tuple[Any, ...]) -> Forked:
    """A stand-in for the parent the fork server forks beside a server: a real child of
    this process, so that adopting or refusing it can be seen (it is stopped or kept)."""
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    return Forked("/nonexistent/warm.sock", ForkedChild(pid), stamp)


def _ended(forked: Forked) -> int | None:
    deadline = time.monotonic() + 10
    while forked.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return forked.proc.returncode


def _runtime_kernel(tmp_path: Path) -> tuple[list[str], dict[str, str], tuple[Any, ...]]:
    """The default kernel of a server running this very python (the fork server's)."""
    cmd = [sys.executable, "-P", LAUNCHER, "-f", "c.json"]
    env = {"PATH": "/usr/bin", "HOME": str(tmp_path / "home")}
    return cmd, env, fingerprint(sys.executable, {})


def test_the_forked_parent_serves_a_kernel_of_the_fork_servers_python(tmp_path: Path) -> None:
    cmd, env, stamp = _runtime_kernel(tmp_path)
    parents, forked = WarmParents(str(tmp_path)), _forked(stamp)
    try:
        assert parents.adopt(cmd, env, forked) is None
        adopted = parents.parents[parent_key(cmd, 2, env)]
        assert (adopted.proc, adopted.socket_path) == (forked.proc, forked.socket_path)
        assert forked.proc.poll() is None
        # A later `pip install --user` makes it stale, as any parent.
        (tmp_path / "home" / ".local" / "lib" / "python3.11" / "site-packages").mkdir(
            parents=True)
        assert fingerprint(cmd[0], env) != adopted.stamp
    finally:
        forked.proc.terminate()
    assert _ended(forked) == -signal.SIGTERM


@pytest.mark.parametrize("change", ["ld_library_path", "pythonpath", "other_python",
                                    "user_site", "not_launcher"])
def test_the_forked_parent_is_stopped_where_a_fresh_kernel_would_differ(
        tmp_path: Path, change: str) -> None:
    """Its modules were imported by the fork server, with its environment: a kernel whose
    dynamic loader, interpreter start or site-packages would differ gets a parent of its own."""
    cmd, env, stamp = _runtime_kernel(tmp_path)
    if change == "ld_library_path":
        env["LD_LIBRARY_PATH"] = "/opt/cuda/lib64"
    elif change == "pythonpath":
        env["PYTHONPATH"] = str(tmp_path)
    elif change == "other_python":
        _env(tmp_path, "1")
        cmd[0] = str(tmp_path / "1" / "bin" / "python")
    elif change == "user_site":
        (tmp_path / "home" / ".local" / "lib" / "python3.11" / "site-packages").mkdir(
            parents=True)
    else:
        cmd[1:3] = ["-m", "ipykernel_launcher"]
    parents, forked = WarmParents(str(tmp_path)), _forked(stamp)
    why = parents.adopt(cmd, env, forked)
    assert why, "adopted a parent whose modules a fresh kernel would not import"
    assert parents.parents == {}
    assert _ended(forked) == -signal.SIGTERM
