"""hub.unprivileged's decisions that need no hub: what `teamhub up` refuses, where the PAM
check goes, and who decides between doing root's work and asking the helper."""

from __future__ import annotations

import os

import pytest
from traitlets.config import Config

from teamhub import hubconfig, preflight
from teamhub.errors import PreflightError
from teamhub.paths import Paths
from teamhub.spawners import roothelper
from teamhub.system.listen import Listener


@pytest.mark.parametrize("toml,trial,named", [
    ('[spawner]\nbackend = "docker"\nfork_server = false\n', False, "spawner.fork_server"),
    ("[spawner]\nfork_server = false\n", False, "spawner.fork_server"),
    ("", True, "single-user trial"),
])
def test_up_refuses_what_the_helper_cannot_do_yet(settings, toml: str, trial: bool,
                                                  named: str) -> None:
    s = settings(toml, TEAMHUB_HUB_UNPRIVILEGED="true")
    with pytest.raises(PreflightError) as caught:
        preflight.check_unprivileged(s, trial)
    assert "hub.unprivileged" in caught.value.message and named in caught.value.message
    if trial:  # the trial cannot have it at all
        assert "teamhub config unset hub.unprivileged" in caught.value.hint
    else:
        assert "teamhub config set hub.unprivileged false" in caught.value.hint
    if "fork_server" in named:
        assert "teamhub config unset spawner.fork_server" in caught.value.hint


def test_up_accepts_both_backends_and_ignores_the_rest_when_off(settings) -> None:
    preflight.check_unprivileged(settings("", TEAMHUB_HUB_UNPRIVILEGED="true"), False)
    preflight.check_unprivileged(settings('[spawner]\nbackend = "docker"\n',
                                          TEAMHUB_HUB_UNPRIVILEGED="true"), False)
    preflight.check_unprivileged(settings('[spawner]\nfork_server = false\n',
                                          TEAMHUB_HUB_UNPRIVILEGED="false"), True)
    preflight.check_unprivileged(settings('[spawner]\nfork_server = false\n',
                                          TEAMHUB_HUB_UNPRIVILEGED="false"), False)


def test_on_by_default_but_not_in_the_trial(settings) -> None:
    """hub.unprivileged is on by default; the trial (it runs as you) leaves the default
    alone, while an explicit `true` in it is refused (above)."""
    s = settings("")
    assert s["hub.unprivileged"] is True and s.origins["hub.unprivileged"] == "default"
    preflight.check_unprivileged(s, True)
    with pytest.raises(PreflightError) as caught:
        preflight.check_unprivileged(settings("[spawner]\nfork_server = false\n"), False)
    assert "hub.unprivileged is on (the default) but spawner.fork_server is off" in \
        caught.value.message
    with pytest.raises(PreflightError):
        preflight.check_unprivileged(settings("[hub]\nunprivileged = true\n"), True)


def test_pam_check_knows_the_helpers_socket(settings, tmp_path) -> None:
    c = Config()
    s = settings(f'[paths]\nstate_dir = "{tmp_path}/st"\n')
    hubconfig.update_auth(c, Paths.from_settings(s))
    assert c.TeamhubPAMAuthenticator.helper_socket == f"{tmp_path}/st/forkserver.sock"


def test_one_place_decides_root_or_helper() -> None:
    assert roothelper.direct() is (os.geteuid() == 0)


def test_ports_below_1024_need_only_setpriv(settings, tmp_path, monkeypatch) -> None:
    """The root helper starts the proxy with CAP_NET_BIND_SERVICE: 443 and the redirect's 80
    are fine; only without util-linux's setpriv is a port below 1024 refused."""
    (tmp_path / "c.pem").write_text("")
    tls = f'[hub]\nport = 443\n[tls]\ncert = "{tmp_path}/c.pem"\nkey = "{tmp_path}/c.pem"\n'
    s = settings(tls, TEAMHUB_HUB_UNPRIVILEGED="true")
    preflight.check_unprivileged(s, False)
    monkeypatch.setattr(preflight.shutil, "which", lambda name: None)
    with pytest.raises(PreflightError, match="port 443 is below 1024.*setpriv") as caught:
        preflight.check_unprivileged(s, False)
    assert "util-linux" in caught.value.hint
    # The redirect port alone (80, its default) needs it as well; no low port: no setpriv.
    s = settings(tls.replace("port = 443", "port = 8443"), TEAMHUB_HUB_UNPRIVILEGED="true")
    with pytest.raises(PreflightError, match="port 80 is below 1024"):
        preflight.check_unprivileged(s, False)
    s = settings(tls.replace("port = 443", "port = 8443") + "http_port = 0\n",
                 TEAMHUB_HUB_UNPRIVILEGED="true")
    preflight.check_unprivileged(s, False)


def test_a_restarted_unprivileged_hub_leaves_a_low_port_to_the_helper(monkeypatch) -> None:
    """`teamhub restart` of an unprivileged hub runs the checks as the hub's account, which
    may not bind a port below 1024 itself: the helper's proxy will."""
    monkeypatch.setattr(preflight.listen, "listeners", lambda port: [])
    monkeypatch.setattr(preflight.listen, "can_bind",
                        lambda ip, port: PermissionError(13, "Permission denied"))
    preflight.check_port_free("127.0.0.1", 443, "public", "fix", helper_binds=True)
    with pytest.raises(PreflightError, match="Permission denied"):
        preflight.check_port_free("127.0.0.1", 443, "public", "fix")
    with pytest.raises(PreflightError, match="Permission denied"):  # not a low port's fault
        preflight.check_port_free("127.0.0.1", 8443, "public", "fix", helper_binds=True)
    monkeypatch.setattr(preflight.listen, "can_bind",
                        lambda ip, port: OSError(98, "Address already in use"))
    with pytest.raises(PreflightError, match="already in use"):
        preflight.check_port_free("127.0.0.1", 443, "public", "fix", helper_binds=True)


def test_a_restarted_unprivileged_hub_knows_its_low_port_proxy_unseen(monkeypatch) -> None:
    """The hub's account cannot see which program holds a port for a proxy with a capability
    (ptrace rules): on a low port with our proxy running, that one is not a stranger."""
    unseen = [Listener("127.0.0.1:443", None, "", "")]
    monkeypatch.setattr(preflight.listen, "listeners", lambda port: unseen)
    preflight.check_port_free("127.0.0.1", 443, "public", "fix", {77}, helper_binds=True)
    for ours, helper_binds, port in (({77}, False, 443), (set(), True, 443),
                                     ({77}, True, 8443)):
        with pytest.raises(PreflightError, match="already in use"):
            preflight.check_port_free("127.0.0.1", port, "public", "fix", ours,
                                      helper_binds=helper_binds)
    monkeypatch.setattr(preflight.listen, "listeners",
                        lambda port: [Listener("[::]:443", 5, "nc", "mallory")])
    with pytest.raises(PreflightError, match="mallory"):
        preflight.check_port_free("127.0.0.1", 443, "public", "fix", {77}, helper_binds=True)
