"""Every setting has a Zero to JupyterHub mapping or a reason why not; losses are reported."""

from __future__ import annotations

import pytest

from teamhub.export import gpus
from teamhub.export.mapping import MAPPING, losses
from teamhub.settings import SCHEMA, load


def test_every_setting_has_an_export_entry() -> None:
    missing = [s.key for s in SCHEMA if s.key not in MAPPING]
    assert not missing, (f"settings without an entry in teamhub/export/mapping.py MAPPING "
                         f"(give each a `to` or a `reason`): {missing}")


def test_entries_say_where_or_why_not() -> None:
    for key, rule in MAPPING.items():
        assert bool(rule.to) != bool(rule.reason), f"{key}: exactly one of `to` and `reason`"
    # Entries for settings not in this branch's schema are only issue 12's GPU settings,
    # which the export reads from settings.values when present.
    extra = set(MAPPING) - {s.key for s in SCHEMA}
    assert extra <= set(gpus.KEYS)


def _values(**changes: object) -> dict:
    values = dict(load("/nonexistent/teamhub.toml", environ={}).values)
    values.update(changes)
    return values


def test_defaults_lose_only_the_task_limit() -> None:
    assert losses(_values()) == [
        "limits.tasks = 2048: Kubernetes limits processes per node (the kubelet's "
        "podPidsLimit), not per pod; set it there"]
    assert losses(_values(**{"limits.tasks": 0})) == []
    assert losses(_values(**{"limits.enabled": False})) == []


@pytest.mark.parametrize("changes, fragment", [
    ({"auth.mode": "pam"}, "auth.mode = pam"),
    ({"hub.ip": "127.0.0.1"}, "hub.ip = 127.0.0.1"),
    ({"spawner.env_keep": ["HTTPS_PROXY"]}, "spawner.env_keep"),
    ({"limits.groups": {"big": {"tasks": 4096}}}, "limits.groups.big.tasks"),
    ({"gpus.default": "all"}, "gpus.default = all"),
    ({"gpus.groups": {"ml": "shared:2"}}, "gpus.groups.ml = shared:2"),
    ({"gpus.users": {"ada": "0,2"}}, "gpus.users.ada = 0,2"),
])
def test_inexpressible_values_are_named(changes: dict, fragment: str) -> None:
    found = losses(_values(**{"limits.tasks": 0, **changes}))
    assert len(found) == 1 and found[0].startswith(fragment), found


def test_gpu_counts_and_who_gets_what() -> None:
    plan = gpus.plan({"gpus.default": "1", "gpus.groups": {"ml": "2", "viz": "shared:1"},
                      "gpus.users": {"ada": "none"}})
    assert (plan.default, plan.groups, plan.users) == (1, {"ml": 2, "viz": 1}, {"ada": 0})
    table = plan.as_values()
    assert gpus.devices_for(table, "ada", ["ml"]) == 0  # the user's own value wins
    assert gpus.devices_for(table, "bob", ["ml", "viz"]) == 2  # most generous group
    assert gpus.devices_for(table, "cy", []) == 1
