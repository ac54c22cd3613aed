"""The console's usage parts without a hub: the sampler's rings and history, what a
spawner's target is, and the settings table's secret hiding."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config, LoggingConfigurable

from teamhub import hubconfig
from teamhub.console.sampler import KEEP_SECONDS, SpawnerSettings, UsageSampler, target_of
from teamhub.paths import Paths
from teamhub.settings import load
from teamhub.settings_view import HIDDEN, masked, shown_settings
from teamhub.system.usage import CGROUP, PROCESSES, Machine, Reading, Target


def machine(busy: float, total: float) -> Machine:
    return Machine(busy=busy, total=total, memory_used=1 << 30, memory_total=4 << 30, cpus=2)


def test_the_sampler_keeps_cpus_in_use_and_memory_per_user_for_an_hour() -> None:
    sampler = UsageSampler(LoggingConfigurable(), sample_seconds=10)
    t0 = 1_000_000.0
    sampler.record(t0, 0.0, {"ada": Reading(100, {"a": 5.0}, CGROUP)}, machine(10, 20))
    assert sampler.current["ada"] == {"cpu": None, "memory": 100, "source": CGROUP}
    sampler.record(t0 + 10, 10.0, {"ada": Reading(200, {"a": 10.0}, CGROUP),
                                   "bob": Reading(50, {"p": 1.0}, PROCESSES)}, machine(25, 40))
    assert sampler.current["ada"]["cpu"] == 0.5  # 5 CPU seconds in 10 s
    assert sampler.current["bob"]["cpu"] is None  # first seen: nothing to compare yet
    history = sampler.history(now=t0 + 10)
    assert history["users"]["ada"] == [[t0, None, 100], [t0 + 10, 0.5, 200]]
    assert history["machine"][-1] == [t0 + 10, 1.5, 1 << 30]  # 15 of 20 s busy, 2 CPUs
    assert (history["cpus"], history["memory_total"], history["interval"]) == (2, 4 << 30, 10)
    # bob stops: he leaves "current" but his hour stays; an hour later it is gone.
    sampler.record(t0 + 20, 20.0, {"ada": Reading(200, {"a": 10.0}, CGROUP)}, machine(30, 60))
    assert set(sampler.current) == {"ada"} and "bob" in sampler.history(now=t0 + 20)["users"]
    assert "bob" not in sampler.history(now=t0 + 20 + KEEP_SECONDS)["users"]


def test_a_spawners_target_names_its_scope_container_or_account() -> None:
    local = SimpleNamespace(pid=42, scope_unit="teamhub-user-ada.scope",
                            system_user_name="jupyter-ada")
    assert target_of(local) == Target(pid=42, marker="teamhub-user-ada.scope",
                                      account="jupyter-ada")
    docker = SimpleNamespace(pid=0, container_id="c0ffee", system_user_name="jupyter-ada",
                             scope_unit="x")
    assert target_of(docker) == Target(container="c0ffee", marker="c0ffee",
                                       account="jupyter-ada")
    trial = SimpleNamespace(pid=7, scope_unit="s", system_user_name="root",
                            single_user_trial=True)
    assert target_of(trial) == Target(pid=7, marker="s", account=None)
    assert target_of(SimpleNamespace(pid=0)) is None


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("key", "/etc/teamhub/tls.key", "/etc/teamhub/tls.key"),  # a path to a key is no secret
    ("key", "", ""),
    ("api_token", "abc123", HIDDEN),
    ("password", "hunter2hunter2", HIDDEN),
    ("client_secret", "1234", HIDDEN),
    ("min_password_length", 10, 10),
    ("url", "postgresql+psycopg2://hub:s3cret@db.example/hub",
     f"postgresql+psycopg2://hub:{HIDDEN}@db.example/hub"),
    ("url", "https://example.org/a:b@c", "https://example.org/a:b@c"),
    ("environment", {"HF_TOKEN": "hf_xyz", "LANG": "C"}, {"HF_TOKEN": HIDDEN, "LANG": "C"}),
    ("signup", True, True),
])
def test_secrets_are_hidden_by_name_and_form(name, value, shown) -> None:  # noqa: ANN001
    assert masked(name, value) == shown


def test_the_settings_table_lists_every_setting_with_secrets_hidden(tmp_path: Path,
                                                                   monkeypatch) -> None:  # noqa: ANN001
    config = tmp_path / "teamhub.toml"
    config.write_text('[tls]\nkey = "/etc/k.pem"\n[spawner]\n'
                      'environment = { DB_PASSWORD = "pw-in-env-table", PATH = "/x" }\n')
    monkeypatch.setenv("TEAMHUB_CONFIG", str(config))
    rows = {r.key: r for r in shown_settings(load())}
    assert rows["tls.key"].value == '"/etc/k.pem"' and not rows["tls.key"].hidden
    assert "pw-in-env-table" not in rows["spawner.environment"].value
    assert rows["spawner.environment"].hidden and "/x" in rows["spawner.environment"].value
    assert rows["console.sample_seconds"].origin == "default"
    assert rows["auth.min_password_length"].value == "10"


def test_homes_and_limits_come_from_the_hubs_spawner_config(settings, tmp_path: Path) -> None:  # noqa: ANN001
    s = settings('[users]\nsystem_prefix = "j-"\n[limits]\nmemory = "2G"\ncpu = "1"\n'
                 '[limits.groups.ml]\ncpu = "4"\n')
    paths = Paths.from_settings(s)
    c = Config()
    hubconfig.update_spawner(c, s, paths)
    hubconfig.update_limits(c, s, paths)
    hubconfig.update_docker(c, s, paths)
    spawners = SpawnerSettings.of(c)
    assert spawners.home_place("ada") == ("account", "j-ada")
    # A user with no spawner loaded gets what their spawner would resolve, without one
    # being made; a loaded spawner is asked itself.
    ada = SimpleNamespace(spawners={}, groups=[SimpleNamespace(name="ml")])
    got = spawners.limits_of(ada)
    assert (got.cpu, got.memory) == (4.0, 2 * 1024**3)
    assert ada.spawners == {}
    loaded = SimpleNamespace(resolved_limits=lambda: None)
    assert spawners.limits_of(SimpleNamespace(spawners={"": loaded}, groups=[])) is None
    # The docker backend with volume homes; PAM mode's own accounts; the trial's none.
    s = settings('[spawner]\nbackend = "docker"\n[docker]\nhome = "volume"\n')
    c = Config()
    hubconfig.update_spawner(c, s, paths)
    hubconfig.update_docker(c, s, paths)
    assert SpawnerSettings.of(c).home_place("ada") == ("volume", "teamhub-user-ada")
    c.LocalSpawner.existing_accounts = True
    c.JupyterHub.spawner_class = "teamhub.spawners.local.LocalSpawner"
    assert SpawnerSettings.of(c).home_place("ada") == ("account", "ada")
    c.LocalSpawner.single_user_trial = True
    assert SpawnerSettings.of(c).home_place("ada") is None
