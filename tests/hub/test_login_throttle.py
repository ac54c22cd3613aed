"""Per-client throttle (catalogue 8) through the real proxy, and spoofed client addresses.

Its own hub: every test client is 127.0.0.1, so a low throttle would get in the
way of every other login test.
"""

from __future__ import annotations

import re

import pytest
import requests
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique

pytestmark = [pytest.mark.hub, pytest.mark.system]

LIMIT = 6


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory(extra_toml=(
        f"[auth]\nclient_max_failures = {LIMIT}\nclient_window_seconds = 600\n"
        "lockout_failures = 1000\n"))
    h.u = unique("th")
    h.add_user(h.u, PASSWORD)
    h.start()
    return h


def attempt(b: Browser, name: str, password: str, **headers: str) -> requests.Response:
    page = b.get("/hub/login", headers=headers)
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text).group(1)
    return b.http.post(b.base + "/hub/login", headers=headers, allow_redirects=False,
                       data={"username": name, "password": password, "_xsrf": xsrf}, timeout=60)


def test_spoofed_forwarding_headers_do_not_escape_the_client_throttle(hub: HubProcess) -> None:
    """Each failure claims another client address through every header a proxy might
    use. tornado (xheaders on) would believe X-Real-Ip, and a naive reading of
    X-Forwarded-For its left-most entry: either would give every try a fresh
    budget and this test would log in at the end."""
    b = Browser(hub.url)
    for i in range(LIMIT):
        fake = f"198.51.100.{i + 1}"
        resp = attempt(b, unique("nx"), "wrong password!", **{
            "X-Forwarded-For": fake, "X-Real-Ip": fake, "Forwarded": f"for={fake}"})
        assert resp.status_code == 403
    fake = "203.0.113.77"
    blocked = attempt(b, hub.u, PASSWORD, **{"X-Forwarded-For": fake, "X-Real-Ip": fake})
    assert blocked.status_code == 403 and not b.logged_in(), "throttle bypassed by headers"
    # The right password from the throttled address, no headers: refused too, and
    # the name itself is not locked (another address could log in).
    assert attempt(b, hub.u, PASSWORD).status_code == 403
    assert "no name is locked" in hub.teamhub("user", "locked").stdout
    assert "throttled" not in blocked.text.lower()  # same answer as a wrong password
    hub.stop()
    hub.start()  # the throttle lives in the hub's memory: a restart forgets it
    assert attempt(Browser(hub.url), hub.u, PASSWORD).status_code == 302


def test_current_password_check_counts_towards_the_client_throttle(hub: HubProcess) -> None:
    """Issue 18 item 8: wrong current passwords on /hub/change-password fill the same
    per-client budget as failed logins; then even the right one is refused."""
    b = Browser(hub.url)
    assert attempt(b, hub.u, PASSWORD).status_code == 302

    def change(current: str) -> requests.Response:
        page = b.get("/hub/change-password")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        return b.http.post(b.base + "/hub/change-password", allow_redirects=False, timeout=60,
                           data={"current_password": current, "password": "new " + PASSWORD,
                                 "password2": "new " + PASSWORD, "_xsrf": xsrf})

    try:
        for i in range(LIMIT):
            assert change(f"wrong guess {i}").status_code == 403
        assert change(PASSWORD).status_code == 403, "the client throttle was bypassed"
        assert attempt(Browser(hub.url), hub.u, PASSWORD).status_code == 403
        assert "no name is locked" in hub.teamhub("user", "locked").stdout
    finally:
        hub.stop()
        hub.start()  # forget the throttle for whatever runs next
    assert attempt(Browser(hub.url), hub.u, PASSWORD).status_code == 302
