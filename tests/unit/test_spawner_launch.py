"""LocalSpawner's launch description and placement decisions, in process and without root.

The spawner is JupyterHub's own object for a JupyterHub user (an in-memory hub
database): what it would start is described, nothing is started. Whether systemd is
init is the one thing set per test (`systemd.booted`), as the decision depends on it.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.spawner import SpawnException
from jupyterhub.user import User

from teamhub.limits import SLICE, from_settings
from teamhub.spawners import local
from teamhub.spawners.local import LocalSpawner


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    db = orm.new_session_factory("sqlite://")()
    orm_user = orm.User(name="ada")
    db.add(orm_user)
    db.commit()
    yield User(orm_user, {})
    db.close()


def spawner(user: User, **traits: Any) -> LocalSpawner:
    traits.setdefault("cmd", ["/rt/bin/jupyterhub-singleuser"])
    return user._new_spawner("", spawner_class=LocalSpawner, hub=Hub(), **traits)


def test_trial_launch_description(user: User, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMHUB_HUB_SECRET", "never-for-users")
    s = spawner(user, single_user_trial=True, args=["--KernelManager.transport=ipc"],
                runtime_bin="/rt/bin", env_keep=["LANG", "LC_ALL"],
                environment={"PATH": "/opt/tools:$PATH", "A": "1"})
    spec = s._launch_spec(None, tmp_path / "ada.log")
    me = pwd.getpwuid(os.getuid())
    assert spec.argv[:2] == ["/rt/bin/jupyterhub-singleuser", "--KernelManager.transport=ipc"]
    assert all(a.startswith("--LanguageServerManager.node_roots=") for a in spec.argv[2:])
    assert spec.cwd == me.pw_dir and spec.umask == 0o077 and spec.uid is None
    assert (spec.env["USER"], spec.env["HOME"]) == (me.pw_name, me.pw_dir)
    # The admin's PATH goes first, with teamhub's where `$PATH` stands.
    assert spec.env["PATH"] == "/opt/tools:/rt/bin:" + local.SYSTEM_PATH
    assert spec.env["A"] == "1" and spec.env["JUPYTERHUB_USER"] == "ada"
    assert "TEAMHUB_HUB_SECRET" not in spec.env
    # The trial runs unprivileged: no scope, no private /tmp or /dev/shm.
    assert (spec.scope, spec.private_tmp, spec.shm_size) == (None, None, None)


def test_servers_get_a_scope_whenever_systemd_runs(user: User, settings: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.systemd, "booted", lambda: True)
    monkeypatch.setattr(local.systemd, "cgroup_version", lambda: 2)
    off = spawner(user, limits=from_settings(settings("[limits]\nenabled = false\n"))
                  ).launch_extras()
    assert off["scope"]["properties"]["Slice"] == SLICE
    assert "MemoryMax" not in off["scope"]["properties"]
    on = spawner(user, limits=from_settings(settings('[limits]\nmemory = "1G"\ncpu = "2"\n'
                                                     "tasks = 100\n")),
                 shm_size=64 << 20).launch_extras()
    props = on["scope"]["properties"]
    assert on["scope"]["unit"].startswith("teamhub-user-")
    assert (props["MemoryMax"], props["MemorySwapMax"], props["TasksMax"]) == (1 << 30, 0, 100)
    assert props["CPUQuotaPerSecUSec"] == 2_000_000
    assert on["shm_size"] == 64 << 20


def test_limits_without_systemd_refuse_to_start_with_a_spawn_exception(
        user: User, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.systemd, "booted", lambda: False)
    assert spawner(user, limits=from_settings(settings("[limits]\nenabled = false\n"))
                   ).launch_extras()["scope"] is None
    with pytest.raises(SpawnException) as failed:
        spawner(user, limits=from_settings(settings())).launch_extras()
    assert failed.value.reason == "limits"
    assert "systemd is not running" in failed.value.message
