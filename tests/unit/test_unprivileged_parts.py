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


@pytest.mark.parametrize("toml,trial,named", [
    ('[spawner]\nbackend = "docker"\nfork_server = false\n', False, "spawner.fork_server"),
    ("[spawner]\nfork_server = false\n", False, "spawner.fork_server"),
    ("", True, "single-user trial"),
    ("[hub]\nport = 443\n", False, "hub.port"),
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


def test_tls_redirect_below_1024_is_refused_too(settings, tmp_path) -> None:
    (tmp_path / "c.pem").write_text("")
    s = settings(f'[tls]\ncert = "{tmp_path}/c.pem"\nkey = "{tmp_path}/c.pem"\n',
                 TEAMHUB_HUB_UNPRIVILEGED="true")
    with pytest.raises(PreflightError, match="tls.http_port is 80"):
        preflight.check_unprivileged(s, False)
    s = settings(f'[tls]\ncert = "{tmp_path}/c.pem"\nkey = "{tmp_path}/c.pem"\nhttp_port = 0\n',
                 TEAMHUB_HUB_UNPRIVILEGED="true")
    preflight.check_unprivileged(s, False)
