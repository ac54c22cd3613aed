"""Per-user limits: parsing, group resolution, scope properties, settings and config mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from teamhub import hubconfig, limits
from teamhub.errors import SettingsError
from teamhub.paths import Paths

GIB = 1024**3


@pytest.mark.parametrize(("text", "expected"), [
    ("512M", 512 * 1024**2), ("4G", 4 * GIB), ("1.5G", int(1.5 * GIB)), ("2048", 2048),
    ("4GB", 4 * GIB), ("none", None), ("50%", 8 * GIB),
])
def test_memory_sizes(text: str, expected: int | None) -> None:
    assert limits.parse_memory(text, total=16 * GIB) == expected


@pytest.mark.parametrize("bad", ["", "lots", "-1G", "0", "4X", "150%", "0%"])
def test_bad_memory_sizes_say_what_is_allowed(bad: str) -> None:
    with pytest.raises(ValueError, match="512M|percentage"):
        limits.parse_memory(bad, total=GIB)


def test_cpu_and_tasks() -> None:
    assert limits.parse_cpu("2", cpus=8) == 2.0
    assert limits.parse_cpu("0.5", cpus=8) == 0.5
    assert limits.parse_cpu("50%", cpus=8) == 4.0
    assert limits.parse_cpu("none") is None
    with pytest.raises(ValueError):
        limits.parse_cpu("0")
    assert limits.parse_tasks(4096) == 4096
    assert limits.parse_tasks("0") is None
    with pytest.raises(ValueError, match="at least 16"):
        limits.parse_tasks(3)


BASE = {"enabled": True, "memory": "2G", "cpu": "1", "tasks": 512, "private_tmp": True,
        "groups": {"gpu-team": {"memory": "32G"},
                   "big-cpu": {"cpu": "8", "memory": "4G"},
                   "free": {"tasks": "none"}}}


def test_user_in_no_listed_group_gets_the_base_limits() -> None:
    got = limits.resolve(BASE, ["staff"])
    assert got == limits.Limits(memory=2 * GIB, cpu=1.0, tasks=512, private_tmp=True)


def test_several_groups_give_the_most_generous_value_per_resource() -> None:
    got = limits.resolve(BASE, ["big-cpu", "gpu-team", "free"])
    assert got is not None
    assert (got.memory, got.cpu, got.tasks) == (32 * GIB, 8.0, None)
    # Order of membership does not matter.
    assert limits.resolve(BASE, ["free", "gpu-team", "big-cpu"]) == got


def test_a_group_override_can_also_lower_a_resource_for_its_members_only() -> None:
    # A lone membership is applied as written (the admin asked for it).
    cfg = {**BASE, "groups": {"interns": {"memory": "1G"}}}
    assert limits.resolve(cfg, ["interns"]).memory == GIB  # type: ignore[union-attr]
    assert limits.resolve(cfg, []).memory == 2 * GIB  # type: ignore[union-attr]


def test_disabled_means_no_limits() -> None:
    assert limits.resolve({**BASE, "enabled": False}, ["gpu-team"]) is None


def test_scope_properties() -> None:
    lim = limits.Limits(memory=GIB, cpu=1.5, tasks=100)
    assert lim.scope_properties(2) == {
        "MemoryAccounting": True, "MemoryMax": GIB, "MemorySwapMax": 0,
        "CPUAccounting": True, "CPUQuotaPerSecUSec": 1_500_000,
        "TasksAccounting": True, "TasksMax": 100,
    }
    assert "MemorySwapMax" not in lim.scope_properties(1)
    assert limits.Limits().scope_properties() == {}


def test_needed_controllers_include_group_overrides() -> None:
    cfg = {"memory": "none", "cpu": "none", "tasks": 0, "groups": {"g": {"tasks": 64}}}
    assert limits.needed_controllers(cfg) == {"pids"}
    assert limits.needed_controllers(BASE) == {"memory", "cpu", "pids"}


def test_defaults_are_on(settings) -> None:
    s = settings()
    cfg = limits.from_settings(s)
    assert cfg["enabled"] is True and cfg["private_tmp"] is True
    got = limits.resolve(cfg, [])
    assert got is not None and got.memory and got.cpu and got.tasks


def test_group_tables_in_toml(settings) -> None:
    s = settings('[limits]\nmemory = "2G"\n\n[limits.groups.gpu-team]\n'
                           'memory = "32G"\ntasks = 8192\n')
    assert s["limits.groups"] == {"gpu-team": {"memory": "32G", "tasks": 8192}}
    assert limits.resolve(limits.from_settings(s), ["gpu-team"]).tasks == 8192  # type: ignore


@pytest.mark.parametrize(("text", "needle"), [
    ('[limits.groups.g]\nmemry = "3G"\n', "'memry'"),
    ('[limits.groups.g]\nmemory = "lots"\n', "g.memory = 'lots'"),
    ('[limits]\ngroups = { g = "3G" }\n', "table of tables"),
    ('[limits]\nmemory = "3 GB please"\n', "limits.memory"),
    ('[limits]\ntasks = 2\n', "at least 16"),
])
def test_bad_limit_settings_are_refused_naming_the_value(settings, text: str,
                                                         needle: str) -> None:
    with pytest.raises(SettingsError, match="limits") as info:
        settings(text)
    assert needle in str(info.value)


def test_group_overrides_from_the_environment(settings) -> None:
    s = settings(TEAMHUB_LIMITS_GROUPS='{"ml": {"cpu": "4"}}')
    assert s["limits.groups"] == {"ml": {"cpu": "4"}}


def test_update_limits_hands_the_spawner_the_settings(settings) -> None:
    s = settings('[limits]\nenabled = false\nmemory = "1G"\n')
    c = Config()
    hubconfig.update_limits(c, s, Paths.from_settings(s))
    assert c.LocalSpawner.limits["enabled"] is False
    assert c.LocalSpawner.limits["memory"] == "1G"
    assert c.LocalSpawner.private_tmp_root == "/var/tmp/teamhub"


def test_status_when_off_says_so(settings) -> None:
    ok, why = limits.limits_status(settings("[limits]\nenabled = false\n"))
    assert ok and "off" in why


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="systemd runs here")
def test_status_without_systemd_explains_how_to_fix(settings) -> None:
    ok, why = limits.limits_status(settings())
    assert not ok
    assert "limits.enabled false" in why


def test_shm_size_is_a_size_or_shared(settings) -> None:
    assert limits.parse_shm_size("64M") == 64 * 1024**2
    assert limits.parse_shm_size("10%", total=10 * GIB) == GIB
    assert limits.parse_shm_size("Shared") is None
    for bad in ("none", "0", "512K", "lots"):
        with pytest.raises(ValueError, match="shared"):
            limits.parse_shm_size(bad)
    with pytest.raises(SettingsError, match="spawner.shm_size"):
        settings('[spawner]\nshm_size = "none"\n')


def test_update_shm_gives_the_spawner_bytes_and_none_in_the_trial(settings) -> None:
    c = Config()
    hubconfig.update_shm(c, settings())
    assert c.LocalSpawner.shm_size == GIB  # the default, 1G
    hubconfig.update_shm(c, settings('[spawner]\nshm_size = "shared"\n'))
    assert c.LocalSpawner.shm_size == 0
    hubconfig.update_shm(c, settings('[spawner]\nshm_size = "2G"\n'), trial=True)
    assert c.LocalSpawner.shm_size == 0


def test_status_refuses_a_private_shm_the_machine_cannot_give(settings, monkeypatch) -> None:
    # Stands in for a container without CAP_SYS_ADMIN, which this machine is not;
    # tests/system/test_limits_here.py runs the real probe, also where it fails.
    monkeypatch.setattr(limits.namespaces, "probe", lambda: "unshare(CLONE_NEWNS) failed")
    monkeypatch.setattr(limits.os, "geteuid", lambda: 0)
    ok, why = limits.limits_status(settings("[limits]\nenabled = false\n"))
    assert not ok and "spawner.shm_size = 1G" in why and "unshare" in why
    ok, why = limits.limits_status(settings(
        '[limits]\nenabled = false\n[spawner]\nshm_size = "shared"\n'))
    assert ok and "off" in why
