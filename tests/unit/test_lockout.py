"""Per-name lockout (durable, in the account store), per-client throttle, client address."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from teamhub import hubconfig
from teamhub.accounts.lockout import (
    ClientThrottle,
    Lockout,
    LockoutPolicy,
    client_address,
)
from teamhub.accounts.store import AccountStore
from teamhub.settings import load


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lockout(tmp_path: Path, clock: Clock) -> Lockout:
    return Lockout(AccountStore(tmp_path / "s" / "accounts.sqlite"),
                   LockoutPolicy(max_failures=3, base_seconds=60, max_seconds=200), clock)


def test_locks_after_n_failures_and_doubles_up_to_the_maximum(lockout: Lockout,
                                                              clock: Clock) -> None:
    assert lockout.record_failure("ada") == 0
    assert lockout.record_failure("ada") == 0
    assert lockout.record_failure("ada") == clock.now + 60
    assert lockout.locked_until("ada") == clock.now + 60
    # Attempts while locked neither count nor stretch the lock.
    for _ in range(10):
        assert lockout.record_failure("ada") == clock.now + 60
    clock.now += 61
    assert lockout.locked_until("ada") == 0
    for _ in range(2):
        assert lockout.record_failure("ada") == 0
    assert lockout.record_failure("ada") == clock.now + 120  # doubled
    clock.now += 121
    for _ in range(3):
        until = lockout.record_failure("ada")
    assert until == clock.now + 200  # capped at max_seconds
    assert lockout.locked_names() == {"ada": clock.now + 200}


def test_lock_is_durable_and_unknown_names_count_too(tmp_path: Path, lockout: Lockout,
                                                     clock: Clock) -> None:
    for _ in range(3):
        lockout.record_failure("nobody-here")
    again = Lockout(AccountStore(lockout.store.path), lockout.policy, clock)
    assert again.locked_until("nobody-here") == clock.now + 60
    assert again.unlock("nobody-here") is True
    assert again.locked_until("nobody-here") == 0
    assert again.unlock("nobody-here") is False


def test_success_forgets_failures_and_old_failures_fade(lockout: Lockout, clock: Clock) -> None:
    lockout.record_failure("ada")
    lockout.record_failure("ada")
    lockout.record_success("ada")
    assert lockout.record_failure("ada") == 0
    assert lockout.record_failure("ada") == 0
    clock.now += 201  # longer ago than max_seconds: the run starts over
    assert lockout.record_failure("ada") == 0
    assert lockout.state("ada").failures == 1


def test_client_throttle_window(clock: Clock) -> None:
    t = ClientThrottle(max_failures=3, window=100, clock=clock, max_clients=2)
    for _ in range(3):
        assert not t.blocked("10.0.0.1")
        t.record_failure("10.0.0.1")
    assert t.blocked("10.0.0.1")
    assert not t.blocked("10.0.0.2")
    clock.now += 101
    assert not t.blocked("10.0.0.1")
    for c in ("a", "b", "c"):
        t.record_failure(c)
    assert len(t._failures) == 2  # bounded memory


def _request(peer: str, **headers: str) -> SimpleNamespace:
    return SimpleNamespace(connection=SimpleNamespace(context=SimpleNamespace(
        address=(peer, 5555), remote_ip=headers.get("X-Real-Ip", peer))), headers=headers)


def test_client_address_believes_only_the_proxy_entry() -> None:
    # What configurable-http-proxy sends: the client's own header, then its peer appended.
    spoofed = _request("127.0.0.1", **{"X-Forwarded-For": "1.2.3.4, 9.9.9.9,203.0.113.7",
                                       "X-Real-Ip": "5.6.7.8"})
    assert client_address(spoofed) == "203.0.113.7"
    assert client_address(_request("127.0.0.1", **{"X-Forwarded-For": "::ffff:10.1.2.3"})) \
        == "10.1.2.3"
    assert client_address(_request("127.0.0.1", **{"X-Forwarded-For": "2001:db8:1:2:3:4:5:6"})) \
        == "2001:db8:1:2::/64"
    assert client_address(_request("127.0.0.1", **{"X-Forwarded-For": "x, junk"})) == "invalid"
    # No proxy header: the peer itself; a non-loopback peer's headers are ignored.
    assert client_address(_request("127.0.0.1")) == "127.0.0.1"
    assert client_address(_request("198.51.100.1", **{"X-Forwarded-For": "1.1.1.1"})) \
        == "198.51.100.1"
    # An admin's own reverse proxy in front is skipped when configured.
    behind = _request("127.0.0.1", **{"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.5"})
    assert client_address(behind) == "10.0.0.5"
    assert client_address(behind, ["10.0.0.5"]) == "203.0.113.9"


def test_login_security_settings_map_to_traitlets(tmp_path: Path) -> None:
    cfg = tmp_path / "teamhub.toml"
    cfg.write_text('[auth]\nlockout_failures = 7\nmode = "pam"\nallowed_groups = ["team"]\n'
                   'trusted_proxies = ["10.0.0.5"]\n')
    c = Config()
    hubconfig.update_login_security(c, load(cfg, environ={}))
    assert c.GuardedAuthenticator.lockout_failures == 7
    assert c.GuardedAuthenticator.trusted_proxies == ["10.0.0.5"]
    assert c.JupyterHub.authenticator_class.endswith("TeamhubPAMAuthenticator")
    assert c.TeamhubPAMAuthenticator.allowed_groups == {"team"}
    assert c.LocalSpawner.existing_accounts is True and c.LocalSpawner.min_uid == 1000
    hubconfig.update_tornado_settings(c, load(cfg, environ={}))
    assert c.JupyterHub.tornado_settings["cookie_options"] == {"samesite": "Lax"}
    assert "--HubOAuth.cache_max_age=10" in hubconfig.server_args(load(cfg, environ={}))
    builtin = Config()
    hubconfig.update_login_security(builtin, load(tmp_path / "none.toml", environ={}))
    assert "authenticator_class" not in builtin.JupyterHub
    assert "existing_accounts" not in builtin.LocalSpawner


def test_bad_trusted_proxy_is_refused(tmp_path: Path) -> None:
    from teamhub.errors import SettingsError

    cfg = tmp_path / "teamhub.toml"
    cfg.write_text('[auth]\ntrusted_proxies = ["nginx"]\n')
    with pytest.raises(SettingsError, match="nginx"):
        load(cfg, environ={})
