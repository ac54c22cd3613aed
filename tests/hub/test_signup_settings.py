"""Signup is off by default (no page, no link); with `auth.open_signup` it needs no approval.

One hub, restarted once with the settings changed, as an admin would do.
"""

from __future__ import annotations

import pytest
from support.client import Browser
from support.hub import HubFactory, HubProcess, unique
from test_accounts_pages import PW, login_answer, signup

pytestmark = [pytest.mark.hub, pytest.mark.system]


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory()
    h.start()
    return h


def test_signup_off_by_default_then_open_signup(hub: HubProcess) -> None:
    b = Browser(hub.url)
    assert b.get("/hub/signup").status_code == 404
    assert "teamhub-signup-link" not in b.get("/hub/login").text
    b.get("/hub/login")
    form = {"username": "x" + unique(), "password": PW, "password2": PW, "_xsrf": b._xsrf("/hub/")}
    resp = b.http.post(b.base + "/hub/signup", data=form, timeout=30)
    assert resp.status_code == 404
    assert hub.teamhub("user", "list", "--json").stdout.strip() == "[]"

    hub.stop()
    hub.teamhub("config", "set", "auth.signup", "true")
    hub.teamhub("config", "set", "auth.open_signup", "true")
    hub.start()
    assert "teamhub-signup-link" in Browser(hub.url).get("/hub/login").text
    name, taken = unique("op"), unique("ot")
    hub.add_user(taken, PW)
    fresh = signup(hub, name)
    assert fresh.status_code == 200 and "your account is ready" in fresh.text
    assert json_pending(hub) == []
    assert Browser(hub.url).login(name, PW).status_code == 302  # no approval needed
    # A taken name gets the same answer and keeps its owner's password.
    other = signup(hub, taken, "another fine passphrase")
    assert login_answer(other) == login_answer(fresh)
    assert Browser(hub.url).login(taken, PW).status_code == 302
    assert Browser(hub.url).login(taken, "another fine passphrase").status_code == 403


def json_pending(hub: HubProcess) -> list[str]:
    import json

    return json.loads(hub.teamhub("user", "pending", "--json").stdout)
