"""Sessions (catalogue 7): renewed at login, and ended everywhere by logout, password
change, block and delete: old hub cookies, server cookies and tokens stop working.

A "stolen" copy of a browser's cookies is kept before each event and replayed
after it. With JupyterHub's defaults (cookie_id never rotated) every replay in
this module succeeds, so each test fails if teamhub's rotation is removed.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique

pytestmark = [pytest.mark.hub, pytest.mark.system]

PLANTED = "0123456789abcdef0123456789abcdef"

PASSWORD_PAGE = """
from jupyterhub.handlers.base import BaseHandler
from tornado import web
from teamhub.accounts.sessions import end_other_sessions

class PasswordChanged(BaseHandler):
    @web.authenticated
    def post(self):
        self.finish(end_other_sessions(self, self.current_user).as_dict())

c.JupyterHub.extra_handlers = [(r"/test-password-changed", PasswordChanged)]
"""


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory()
    # Stands in for the change-password page (another module): a logged-in POST
    # that calls end_other_sessions exactly as that page does.
    confd = h.config.parent / "jupyterhub_config.d"
    confd.mkdir()
    (confd / "50-password-changed.py").write_text(PASSWORD_PAGE)
    h.start()
    return h


def new_user(hub: HubProcess) -> str:
    name = unique("ss")
    hub.add_user(name, PASSWORD)
    return name


def logged_in(hub: HubProcess, name: str) -> Browser:
    b = Browser(hub.url)
    assert b.login(name, PASSWORD).status_code == 302
    return b


def stolen(b: Browser) -> requests.Session:
    """Another client holding a copy of B's cookies."""
    thief = requests.Session()
    thief.cookies.update(b.http.cookies)
    return thief


def hub_accepts(hub: HubProcess, s: requests.Session) -> bool:
    return s.get(f"{hub.url}/hub/api/user", timeout=30).status_code == 200


def server_accepts(hub: HubProcess, s: requests.Session, name: str) -> bool:
    resp = s.get(f"{hub.url}/user/{name}/api/status", allow_redirects=False, timeout=30)
    return resp.status_code == 200


def eventually_refused(check, timeout: float = 40) -> bool:
    """Servers trust the hub's word on a token for up to 10 s (HubOAuth.cache_max_age)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not check():
            return True
        time.sleep(1)
    return not check()


def api_token(b: Browser, name: str) -> str:
    resp = b.http.post(f"{b.base}/hub/api/users/{name}/tokens", json={"note": "script"},
                       headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


def token_works(hub: HubProcess, token: str) -> bool:
    return requests.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {token}"},
                        timeout=30).status_code == 200


def set_cookies(resp: requests.Response) -> list[str]:
    out = []
    for r in [*resp.history, resp]:
        out += r.raw.headers.getlist("Set-Cookie")
    return out


def test_login_replaces_a_planted_session_id(hub: HubProcess) -> None:
    name = new_user(hub)
    b = Browser(hub.url)
    b.http.cookies.set("jupyterhub-session-id", PLANTED, domain="localhost.local", path="/")
    b.get("/hub/login")
    assert b.login(name, PASSWORD).status_code == 302
    ids = [c.value for c in b.http.cookies if c.name == "jupyterhub-session-id"]
    assert ids and PLANTED not in ids, ids
    # The planted value is not what the hub ties this session's tokens to either.
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    assert server_accepts(hub, b.http, name)


def test_cookies_are_httponly_and_samesite_lax(hub: HubProcess) -> None:
    name = new_user(hub)
    b = Browser(hub.url)
    headers = set_cookies(b.login(name, PASSWORD))
    b.start_server(name)
    headers += set_cookies(b.open_lab(name))
    wanted = ("jupyterhub-hub-login", "jupyterhub-session-id", f"jupyterhub-user-{name}")
    for cookie in wanted:
        found = [h for h in headers if h.startswith(cookie + "=")]
        assert found, (cookie, headers)
        for h in found:
            flags = {f.strip().lower() for f in h.split(";")[1:]}
            assert "httponly" in flags and "samesite=lax" in flags, h
            assert "secure" not in flags, h  # plain http here; see the TLS test


def test_logout_ends_every_browser_session_but_keeps_api_tokens(hub: HubProcess) -> None:
    name = new_user(hub)
    b, other = logged_in(hub, name), logged_in(hub, name)
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    token = api_token(b, name)
    thief = stolen(b)
    assert hub_accepts(hub, thief) and server_accepts(hub, thief, name)
    b.get("/hub/logout")
    assert not hub_accepts(hub, thief), "hub cookie still valid after logout"
    assert not hub_accepts(hub, other.http), "other browser still logged in"
    assert eventually_refused(lambda: server_accepts(hub, thief, name)), \
        "server cookie still valid after logout"
    assert token_works(hub, token)
    # Logging in again works, and the still-running server accepts the new session.
    fresh = logged_in(hub, name)
    assert fresh.open_lab(name).status_code == 200 and server_accepts(hub, fresh.http, name)


def test_password_change_ends_sessions_and_tokens_not_the_server(hub: HubProcess) -> None:
    name = new_user(hub)
    b = logged_in(hub, name)
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    token = api_token(b, name)
    thief = stolen(b)
    out = hub.teamhub("user", "passwd", name, "--password-stdin",
                      input="a brand new password\n").stdout
    assert "ended every browser session" in out and "revoked 1 API token" in out, out
    assert not hub_accepts(hub, thief) and not hub_accepts(hub, b.http)
    assert not token_works(hub, token)
    assert eventually_refused(lambda: server_accepts(hub, thief, name))
    fresh = Browser(hub.url)
    assert fresh.login(name, "a brand new password").status_code == 302
    assert fresh.open_lab(name).status_code == 200 and server_accepts(hub, fresh.http, name)


def test_password_page_keeps_only_the_browser_that_changed_it(hub: HubProcess) -> None:
    name = new_user(hub)
    b, other = logged_in(hub, name), logged_in(hub, name)
    token = api_token(b, name)
    thief = stolen(b)
    resp = b.http.post(f"{hub.url}/hub/test-password-changed", timeout=30,
                       headers={"X-XSRFToken": b._xsrf("/hub/")})
    assert resp.status_code == 200 and resp.json()["api_tokens"] == 1, resp.text
    assert b.logged_in(), "the browser that changed the password was logged out"
    assert not hub_accepts(hub, thief) and not hub_accepts(hub, other.http)
    assert not token_works(hub, token)


def test_block_ends_the_session_at_once(hub: HubProcess) -> None:
    name = new_user(hub)
    b = logged_in(hub, name)
    thief = stolen(b)
    hub.teamhub("user", "block", name)
    # At once, not after the auth refresh age (60 s here).
    assert not hub_accepts(hub, thief)
    hub.teamhub("user", "unblock", name)
    assert not hub_accepts(hub, thief), "unblock brought an old session back"
    assert logged_in(hub, name).logged_in()


def test_delete_and_recreate_does_not_revive_old_cookies(hub: HubProcess) -> None:
    name = new_user(hub)
    b = logged_in(hub, name)
    thief = stolen(b)
    hub.teamhub("user", "remove", name, "--yes")
    assert not hub_accepts(hub, thief)
    hub.add_user(name, PASSWORD)
    assert not hub_accepts(hub, thief)
    assert logged_in(hub, name).logged_in()


def test_cli_logout_without_a_running_hub(hub: HubProcess) -> None:
    name = new_user(hub)
    b = logged_in(hub, name)
    token = api_token(b, name)
    thief = stolen(b)
    hub.stop()
    try:
        out = hub.teamhub("user", "logout", name, "--api-tokens").stdout
        assert "in the hub database" in out and "revoked 1 API token" in out, out
    finally:
        hub.start()
    assert not hub_accepts(hub, thief) and not token_works(hub, token)
    assert logged_in(hub, name).logged_in()


def test_cli_logout_with_a_running_hub(hub: HubProcess) -> None:
    name = new_user(hub)
    b = logged_in(hub, name)
    token = api_token(b, name)
    out = hub.teamhub("user", "logout", name).stdout
    assert "by the running hub" in out
    assert not hub_accepts(hub, b.http) and token_works(hub, token)
    # An account made while the hub runs is a hub user at once (one list of users), so
    # the running hub answers for it too, with nothing to end.
    never = unique("ss")
    hub.add_user(never, PASSWORD)
    out = hub.teamhub("user", "logout", never).stdout
    assert "by the running hub" in out and "API token" not in out


class TLSHub(HubProcess):
    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory: pytest.TempPathFactory):
    """A hub serving https through the proxy, with a self-signed certificate given
    to JupyterHub by a jupyterhub_config.d snippet (as an admin could)."""
    # Unprivileged (the default): root reads the pair from jupyterhub_config.d, copies it for
    # the hub's account, and the root helper's proxy serves it (README "What runs as root").
    h = TLSHub(tmp_path_factory.mktemp("tlshub"))
    confd = h.config.parent / "jupyterhub_config.d"
    confd.mkdir()
    key, cert = confd / "key.pem", confd / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    h.admin_cert = cert
    (confd / "50-tls.py").write_text(f"c.JupyterHub.ssl_key = {str(key)!r}\n"
                                     f"c.JupyterHub.ssl_cert = {str(cert)!r}\n")
    h.tls_name = unique("st")
    before = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)  # so HubProcess.start's probe trusts it
    try:
        h.add_user(h.tls_name, PASSWORD)
        h.start()
        yield h
    finally:
        if before is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = before
        h.cleanup()


def test_the_config_d_pair_reaches_the_unprivileged_hubs_proxy(tls_hub: HubProcess) -> None:
    """The proxy the root helper started runs as the hub's account and serves the copy root
    made of the config.d pair; the hub sees the same proxy (no "runs as root configured
    it" warning: its own view of the pair is the copy too)."""
    record = json.loads((tls_hub.state / "proxy.json").read_text())
    status = Path(f"/proc/{record['pid']}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid == pwd.getpwnam("teamhub").pw_uid
    argv = Path(f"/proc/{record['pid']}/cmdline").read_bytes().decode().split("\0")
    copy = tls_hub.state / "tls" / "unprivileged-cert.pem"
    assert argv[argv.index("--ssl-cert") + 1] == str(copy)
    assert copy.read_bytes() == tls_hub.admin_cert.read_bytes()
    assert "runs as root configured it" not in tls_hub.log.read_text(errors="replace")


def test_cookies_are_secure_under_tls(tls_hub: HubProcess) -> None:
    b = Browser(tls_hub.url)
    resp = b.login(tls_hub.tls_name, PASSWORD)
    assert resp.status_code == 302
    headers = [h for h in set_cookies(resp) if re.match(r"jupyterhub-(hub-login|session-id)=", h)]
    assert len(headers) >= 2, headers
    for h in headers:
        flags = {f.strip().lower() for f in h.split(";")[1:]}
        assert {"secure", "httponly", "samesite=lax"} <= flags, h
    assert b.logged_in()
