"""Browser isolation: the request policy, its JupyterHub settings, hub.domain, the
wildcard certificate and doctor's check. The browser-level proof is
tests/hub/test_browser_isolation.py (real Chromium)."""

from __future__ import annotations

import socket

import pytest
from traitlets.config import Config

from teamhub import doctor, hubconfig
from teamhub.browser_isolation import page_refusal, state_change_refusal, websocket_refusal
from teamhub.paths import Paths
from teamhub.settings import Settings, SettingsError
from teamhub.tls import covers, domain_names, self_signed

# --- policy --------------------------------------------------------------------------

def test_pages_only_to_top_level_navigations() -> None:
    assert page_refusal({}) is None  # no Fetch Metadata: cannot tell, passes
    assert page_refusal({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}) is None
    for mode, dest in (("cors", "empty"), ("same-origin", "empty"), ("no-cors", "script"),
                       ("navigate", "iframe"), ("no-cors", "image")):
        reason = page_refusal({"Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest})
        assert reason and mode in reason


def test_state_changes_only_from_this_origin_and_its_pages() -> None:
    page = {"Sec-Fetch-Site": "same-origin", "Referer": "http://h:8000/hub/token"}
    assert state_change_refusal("POST", page, "/hub/") is None
    assert state_change_refusal("GET", {"Sec-Fetch-Site": "cross-site"}, "/hub/") is None
    assert state_change_refusal("POST", {}, "/hub/") is None  # a non-browser client
    assert state_change_refusal("POST", {"Sec-Fetch-Site": "none"}, "/hub/") is None
    assert "same-site" in state_change_refusal("POST", {"Sec-Fetch-Site": "same-site"}, "/hub/")
    assert "cross-site" in state_change_refusal("DELETE", {"Sec-Fetch-Site": "cross-site"},
                                                "/hub/")
    from_a = {"Sec-Fetch-Site": "same-origin", "Referer": "http://h:8000/user/a/evil.html"}
    assert "/user/a/evil.html" in state_change_refusal("POST", from_a, "/hub/")
    # Token-authenticated: not a browser's cookies.
    assert state_change_refusal("POST", {**from_a, "Authorization": "token x"}, "/hub/") is None


def test_browser_websockets_need_a_token() -> None:
    ws = {"Upgrade": "websocket", "Origin": "http://h:8000"}
    assert websocket_refusal(ws, token_authenticated=False)
    assert websocket_refusal(ws, token_authenticated=True) is None
    # Not a browser (no Origin), or not a websocket: not this rule's business.
    assert websocket_refusal({"Upgrade": "websocket"}, token_authenticated=False) is None
    assert websocket_refusal({"Origin": "http://h:8000"}, token_authenticated=False) is None


# --- settings → JupyterHub --------------------------------------------------------------

def test_isolation_settings_without_domain(settings):
    c = Config()
    hubconfig.update_tornado_settings(c, settings())
    hubconfig.update_browser_isolation(c, settings())
    tornado = c.JupyterHub.tornado_settings
    assert tornado["headers"]["X-Frame-Options"] == "DENY"
    assert tornado["headers"]["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in tornado["headers"]  # no TLS
    assert tornado["xsrf_cookie_kwargs"] == {"samesite": "Lax", "httponly": True}
    assert tornado["static_handler_class"].__name__ == "IsolatedStaticHandler"
    assert c.Spawner.disable_user_config is True
    assert "subdomain_host" not in c.JupyterHub
    assert "cookie_host_prefix_enabled" not in c.JupyterHub


@pytest.mark.parametrize("toml, want, host_prefix", [
    ('[hub]\ndomain = "hub.example.org"\n', "http://hub.example.org:8000", False),
    ('[hub]\ndomain = "hub.example.org"\nport = 80\n', "http://hub.example.org", False),
    ('[hub]\ndomain = "hub.example.org"\nport = 443\n[tls]\ncert = "/c"\nkey = "/k"\n',
     "https://hub.example.org", True),
    ('[hub]\ndomain = "hub.example.org"\n[tls]\ncert = "/c"\nkey = "/k"\n',
     "https://hub.example.org:8000", True),
])
def test_domain_gives_subdomain_host_and_host_cookies_under_tls(settings, toml, want,
                                                                 host_prefix):
    c = Config()
    hubconfig.update_browser_isolation(c, settings(toml))
    assert c.JupyterHub.subdomain_host == want
    assert c.JupyterHub.cookie_host_prefix_enabled is host_prefix


def test_domain_from_environment_and_refused_when_malformed(settings):
    assert settings(TEAMHUB_HUB_DOMAIN="hub.lan")["hub.domain"] == "hub.lan"
    for bad in ("hub", "Hub.Example.org", "hub.example.org:8000", "https://hub.x", "a..b"):
        with pytest.raises(SettingsError, match="DNS name"):
            settings(f'[hub]\ndomain = "{bad}"\n')


def test_servers_get_the_isolation_authorizer(settings):
    args = hubconfig.server_args(settings())
    assert "--ServerApp.authorizer_class=teamhub.serverext.IsolationAuthorizer" in args


def test_server_settings_isolate_and_make_lab_send_its_token():
    from teamhub.serverext import isolate

    tornado = {"headers": {"Content-Security-Policy": "frame-ancestors 'none'"},
               "page_config_data": {"x": 1}}
    isolate(tornado)
    assert tornado["headers"]["X-Frame-Options"] == "DENY"
    assert tornado["headers"]["Cross-Origin-Opener-Policy"] == "same-origin"
    assert tornado["xsrf_cookie_kwargs"] == {"httponly": True}
    assert tornado["page_config_data"] == {"x": 1, "appendToken": "true"}


# --- certificate and doctor ---------------------------------------------------------------

def test_wildcard_certificate_covers_domain_and_one_label(tmp_path, settings):
    info = self_signed(tmp_path / "c.pem", tmp_path / "k.pem",
                       ["localhost", *domain_names("hub.example.org")], 30)
    assert covers(info.names, "hub.example.org")
    assert covers(info.names, "ada.hub.example.org")
    assert not covers(info.names, "a.b.hub.example.org")
    assert not covers(info.names, "evil-hub.example.org")
    assert domain_names("") == []


def _probe(s: Settings) -> doctor.Probe:
    return doctor.Probe(s, Paths.from_settings(s))


def test_doctor_warns_without_domain_and_says_more_over_plain_http(tmp_path, settings):
    result = doctor.browser_isolation(_probe(settings()))
    assert result.ok and result.warning
    assert "share one browser origin" in result.detail
    assert "plain http" in result.detail and "hub.domain" in result.fix
    (tmp_path / "c.pem").touch()
    tls = doctor.browser_isolation(_probe(settings('[tls]\ncert = "/c"\nkey = "/k"\n')))
    assert tls.ok and tls.warning and "plain http" not in tls.detail


def test_doctor_checks_wildcard_dns_and_certificate(tmp_path, settings, monkeypatch):
    # This machine has no wildcard DNS to point at; getaddrinfo answers as a resolver
    # with `*.hub.example.org` would (and fails for any other name).
    real = socket.getaddrinfo

    def resolver(host, *args, **kw):
        if host == "hub.example.org" or host.endswith(".hub.example.org"):
            return real("127.0.0.1", *args, **kw)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    missing = doctor.browser_isolation(_probe(settings('[hub]\ndomain = "other.example"\n')))
    assert not missing.ok and "teamhub-check.other.example" in missing.detail
    assert "*.other.example" in missing.fix
    plain = doctor.browser_isolation(_probe(settings('[hub]\ndomain = "hub.example.org"\n')))
    assert plain.ok and not plain.warning and "own origin" in plain.detail

    narrow = self_signed(tmp_path / "n.pem", tmp_path / "nk.pem", ["hub.example.org"], 30)
    assert narrow.names == ["hub.example.org"]
    toml = ('[hub]\ndomain = "hub.example.org"\n'
            f'[tls]\ncert = "{tmp_path}/n.pem"\nkey = "{tmp_path}/nk.pem"\n')
    uncovered = doctor.browser_isolation(_probe(settings(toml)))
    assert not uncovered.ok and "teamhub-check.hub.example.org" in uncovered.detail
    assert "teamhub tls self-signed" in uncovered.fix
    self_signed(tmp_path / "w.pem", tmp_path / "wk.pem", domain_names("hub.example.org"), 30)
    toml = toml.replace("/n.pem", "/w.pem").replace("/nk.pem", "/wk.pem")
    assert doctor.browser_isolation(_probe(settings(toml))).ok


def test_tls_self_signed_covers_hub_domain_and_its_wildcard(tmp_path):
    from click.testing import CliRunner

    from teamhub import cli as cli_module
    from teamhub.tls import inspect

    cfg = tmp_path / "teamhub.toml"
    cfg.write_text(f'[hub]\ndomain = "hub.example.org"\n[paths]\nstate_dir = "{tmp_path}/st"\n')
    result = CliRunner().invoke(cli_module.cli, ["--config", str(cfg), "tls", "self-signed",
                                                 "--hostname", "10.0.0.5"],
                                env={"TEAMHUB_CONFIG": None})
    assert result.exit_code == 0, result.output
    names = inspect(tmp_path / "st/tls/cert.pem", tmp_path / "st/tls/key.pem").names
    assert names == ["10.0.0.5", "hub.example.org", "*.hub.example.org"]


def test_authorizer_answers_plainly_except_for_browser_websockets():
    import asyncio
    from types import SimpleNamespace

    from teamhub.serverext import IsolationAuthorizer

    def handler(headers):
        request = SimpleNamespace(headers=headers, method="GET", path="/user/b/api/x")
        return SimpleNamespace(request=request, get_query_argument=lambda name, default: "")

    authorizer = IsolationAuthorizer()
    assert authorizer.is_authorized(handler({}), None, "read", "contents") is True
    ws = {"Upgrade": "websocket", "Origin": "http://h"}
    assert asyncio.run(authorizer.is_authorized(handler(ws), None, "execute", "kernels")) is False
    token_ws = handler(ws)
    token_ws._token_authenticated = True
    assert asyncio.run(authorizer.is_authorized(token_ws, None, "execute", "kernels")) is True
