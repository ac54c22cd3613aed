"""The root helper's rules that need no running helper (a real one:
tests/system/test_root_helper.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from traitlets.config import Config

from teamhub import helper_policy, hubconfig
from teamhub.errors import HelperRefused
from teamhub.paths import Paths
from teamhub.settings import Settings
from teamhub.spawners import rootdoor
from teamhub.spawners.rootdoor import Peer, Policy


def test_only_root_and_the_hubs_account_are_admitted() -> None:
    policy = Policy(hub_uid=990)
    assert rootdoor.admit(Peer(10, 0, 0), policy) is True
    assert rootdoor.admit(Peer(10, 990, 990), policy) is False
    with pytest.raises(HelperRefused, match="uid 1000 is neither root"):
        rootdoor.admit(Peer(10, 1000, 1000), policy)
    with pytest.raises(HelperRefused):  # no hub account yet: root alone
        rootdoor.admit(Peer(10, 990, 990), Policy())


@pytest.mark.parametrize("line, reason", [
    (b'{"op": "shell"}', "unknown verb"),
    (b"{", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"op": "status", "x": "' + b"y" * rootdoor.MAX_REQUEST + b'"}', "over"),
])
def test_bad_requests(line: bytes, reason: str) -> None:
    with pytest.raises(HelperRefused, match=reason):
        rootdoor.parse_request(line)


def test_names_and_scopes() -> None:
    assert rootdoor.hub_user("ada") == "ada"
    for bad in ("Ada", "../x", "a" * 80, 5, None):
        with pytest.raises(HelperRefused):
            rootdoor.hub_user(bad)
    assert rootdoor.scope_unit("ada", "") == "teamhub-user-ada.scope"
    assert rootdoor.scope_unit("ada", "gpu1") == "teamhub-user-ada-gpu1.scope"
    with pytest.raises(HelperRefused, match="bad server name"):
        rootdoor.scope_unit("ada", "x/../y")


def test_policy_is_built_from_the_hubs_own_settings(settings: Callable[..., Settings],
                                                    ) -> None:
    s = settings('[hub]\naccount = "nosuchaccountxyz"\n[spawner.environment]\nFOO = "1"\n')
    paths = Paths.from_settings(s)
    policy = helper_policy.build(s, paths)
    c = Config()
    hubconfig.update_spawner(c, s, paths)
    hubconfig.update_limits(c, s, paths)
    assert policy.hub_uid is None  # no such account: the helper serves root alone
    # The helper expects exactly what the hub's spawner is configured with.
    assert [policy.program, *policy.args] == [*c.Spawner.cmd, *c.Spawner.args]
    assert policy.registry == c.LocalSpawner.registry_path
    assert policy.prefix == c.LocalSpawner.system_prefix
    assert policy.home_root == c.LocalSpawner.home_root
    assert policy.server_log_dir == c.LocalSpawner.server_log_dir
    assert policy.private_runtime_root == c.LocalSpawner.private_runtime_root
    assert policy.private_tmp_root == c.LocalSpawner.private_tmp_root
    assert set(c.Spawner.environment) <= set(policy.extra_env_keys)
    assert "FOO" in policy.extra_env_keys
    assert Policy.from_json(policy.to_json()) == policy


def test_hub_account_setting_refuses_root(settings: Callable[..., Settings]) -> None:
    with pytest.raises(Exception, match="not root"):
        settings('[hub]\naccount = "root"\n')
