"""Login attacks against a real hub through its real login form (catalogue 1, 2, 5, 6, 8, 12).

One hub for the module: lockout after 3 failures for 300 s (so a lock outlasts
a restart), and a client throttle high enough never to trip here (it has its
own module, test_login_throttle.py, because every test client is 127.0.0.1).
"""

from __future__ import annotations

import random
import re
import statistics
import time
import unicodedata
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from support import unixsocket
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique
from support.postgres import db_toml

pytestmark = [pytest.mark.hub, pytest.mark.system]

XSS = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory, module_db_url: str) -> HubProcess:
    # Run on each backend (db.url: the sqlite files, then PostgreSQL); the lock that
    # outlasts a hub restart is kept in the store either way.
    h = hub_factory(extra_toml=(
        "[auth]\nlockout_failures = 3\nlockout_base_seconds = 300\n"
        "client_max_failures = 100000\n" + db_toml(module_db_url)))
    h.u, h.v = unique("ls"), unique("lv")
    for name in (h.u, h.v):
        h.add_user(name, PASSWORD)
    h.start()
    return h


def login_answer(b: Browser, name: str, password: str,
                 next_url: str | None = None) -> requests.Response:
    page = b.get("/hub/login")
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text).group(1)
    params = {"next": next_url} if next_url is not None else None
    return b.http.post(b.base + "/hub/login", params=params,
                       data={"username": name, "password": password, "_xsrf": xsrf},
                       allow_redirects=False, timeout=60)


def blank(resp: requests.Response) -> tuple[int, str]:
    """Status and body of a login answer, the per-request xsrf token (in the form and in
    the page's script, where it carries a timestamp) and the echoed name blanked."""
    body = re.sub(r'xsrf_token: "[^"]*"', 'xsrf_token: ""', resp.text)
    return resp.status_code, re.sub(r'value="[^"]*"', 'value=""', body)


def api(hub: HubProcess, method: str, path: str, **kw) -> requests.Response:
    url = (hub.state / "hub_api_url").read_text().strip()
    token = (hub.state / "cli_api_token").read_text().strip()
    return unixsocket.session().request(method, f"{url}{path}", timeout=30,
                                        headers={"Authorization": f"token {token}"}, **kw)


# --- 8: brute force -------------------------------------------------------------------------

def test_lockout_refuses_the_right_password_and_survives_a_restart(hub: HubProcess) -> None:
    victim = unique("lk")
    hub.add_user(victim, PASSWORD)
    b = Browser(hub.url)
    for _ in range(3):
        assert login_answer(b, victim, "wrong password!").status_code == 403
    locked = login_answer(b, victim, PASSWORD)
    assert locked.status_code == 403 and not b.logged_in()
    # Same answer as a wrong password for an unknown name.
    assert blank(locked) == blank(login_answer(b, victim, "wrong password!"))
    listed = hub.teamhub("user", "locked", "--json").stdout
    assert victim in listed
    hub.stop()
    hub.start()
    assert login_answer(b, victim, PASSWORD).status_code == 403, "lock lost in restart"
    out = hub.teamhub("user", "unlock", victim.upper()).stdout
    assert f"unlocked {victim}" in out
    assert login_answer(b, victim, PASSWORD).status_code == 302
    assert b.logged_in()


def test_identical_answer_for_unknown_wrong_locked_blocked(hub: HubProcess) -> None:
    locked, blocked = unique("lk"), unique("bl")
    for name in (locked, blocked):
        hub.add_user(name, PASSWORD)
    hub.teamhub("user", "block", blocked)
    b = Browser(hub.url)
    for _ in range(3):
        login_answer(b, locked, "nope nope nope")
    # The form echoes the typed name; use names of the same length so bodies compare.
    unknown = unique("lk")
    answers = {
        "unknown": login_answer(b, unknown, PASSWORD),
        "wrong": login_answer(b, hub.u, "not the password"),
        "locked": login_answer(b, locked, PASSWORD),
        "blocked": login_answer(b, blocked, PASSWORD),
    }
    bodies = {k: blank(r) for k, r in answers.items()}
    assert len(set(bodies.values())) == 1, {k: v[0] for k, v in bodies.items()}
    assert not b.logged_in()
    hub.teamhub("user", "unlock", locked)


def _post_time(b: Browser, name: str, password: str) -> float:
    page = b.get("/hub/login")
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text).group(1)
    start = time.perf_counter()
    resp = b.http.post(b.base + "/hub/login", allow_redirects=False, timeout=60,
                       data={"username": name, "password": password, "_xsrf": xsrf})
    elapsed = time.perf_counter() - start
    assert resp.status_code in (302, 403)
    return elapsed


def _timing_medians(hub: HubProcess, locked: str, rounds: int) -> dict[str, float]:
    b = Browser(hub.url)
    times: dict[str, list[float]] = {"unknown": [], "wrong": [], "locked": []}
    for _ in range(rounds):
        # A right login resets the count, so two wrong ones stay under the lock limit.
        assert login_answer(Browser(hub.url), hub.v, PASSWORD).status_code == 302
        kinds = ["unknown", "unknown", "wrong", "wrong", "locked", "locked"]
        random.shuffle(kinds)
        for kind in kinds:
            name = {"unknown": unique("tu"), "wrong": hub.v, "locked": locked}[kind]
            times[kind].append(_post_time(b, name, "a wrong password"))
    return {k: statistics.median(v) for k, v in times.items()}


def test_timing_does_not_tell_unknown_wrong_or_locked_apart(hub: HubProcess) -> None:
    """Medians over many interleaved tries: a loaded machine slows all kinds alike.

    Without the dummy-hash verify for unknown names (or with a lock checked
    instead of, rather than beside, the password check) those answers skip an
    argon2 verify and come back far outside the bound, in every measurement. A
    load spike on the shared 2-core machine can spoil one measurement, so up to
    three are taken and one within the bound passes.
    """
    locked = unique("tl")
    hub.add_user(locked, PASSWORD)
    for _ in range(3):
        login_answer(Browser(hub.url), locked, "nope nope nope")
    seen = []
    for _ in range(3):
        medians = _timing_medians(hub, locked, rounds=12)
        seen.append(medians)
        bound = max(0.2 * medians["wrong"], 0.015)
        print("login timing medians (s):", medians)
        if (abs(medians["unknown"] - medians["wrong"]) < bound
                and abs(medians["locked"] - medians["wrong"]) < bound):
            break
    else:
        pytest.fail(f"login timing tells kinds apart in every measurement: {seen}")
    hub.teamhub("user", "unlock", locked)


# --- 6: name normalisation ------------------------------------------------------------------

def test_name_forms_reach_one_canonical_account(hub: HubProcess) -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in hub.u)
    assert unicodedata.normalize("NFKC", fullwidth) == hub.u
    for form in (hub.u.upper(), f"  {hub.u}  ", fullwidth, hub.u.title()):
        b = Browser(hub.url)
        assert login_answer(b, form, PASSWORD).status_code == 302, form
        assert b.get("/hub/api/user").json()["name"] == hub.u
    hub_users = {u["name"] for u in api(hub, "GET", "/users").json()}
    assert not any(n != n.lower() or n.strip() != n for n in hub_users), hub_users


SYSTEM = ["root", "daemon", "nobody", "Root", "ROOT\t"]
MALFORMED = ["..", "../root", "a" * 300, "x" * 100_000, "ro\u200bot", "root\n", "bin/sh", "",
             "ada\x00", "\u0430da"]


@pytest.mark.parametrize("name", SYSTEM + MALFORMED)
def test_system_and_malformed_names_cannot_log_in(hub: HubProcess, name: str) -> None:
    """System accounts are never hub accounts (a hub user `root` would be Linux
    `<prefix>root`, see test_preexisting_linux_account_is_never_used); malformed
    names cannot even be created."""
    b = Browser(hub.url)
    resp = login_answer(b, name, PASSWORD)
    assert resp.status_code in (400, 403), resp.status_code
    assert not b.logged_in()
    if len(name) > 64:
        assert name[:200] not in resp.text  # never echoed in full
    if name in MALFORMED and "\x00" not in name:  # (no NUL in a command line)
        proc = hub.teamhub("user", "add", name or "''", "--password-stdin",
                           input=PASSWORD + "\n", check=False)
        assert proc.returncode != 0


# --- 1: open redirect -----------------------------------------------------------------------

EVIL = ["//evil.example", "https://evil.example/", "/\\evil.example", "\\\\evil.example",
        "%2F%2Fevil.example", "/%5Cevil.example", "///evil.example", "/\t/evil.example",
        "/\n/evil.example", "\t//evil.example", " //evil.example", "javascript:alert(1)",
        "http:evil.example", "https:/\\evil.example", "//evil.example@localhost",
        "/%09/evil.example", "http://localhost@evil.example/", "data:text/html,x"]


def _browser_target(base: str, location: str) -> str:
    """Where a browser would go for LOCATION (it drops tabs/newlines, reads \\ as /)."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip().replace("\\", "/")
    return urljoin(base + "/hub/login", cleaned)


@pytest.mark.parametrize("target", EVIL)
def test_next_never_leaves_the_host(hub: HubProcess, target: str) -> None:
    host = urlsplit(hub.url).netloc
    b = Browser(hub.url)
    resp = login_answer(b, hub.u, PASSWORD, next_url=target)
    assert resp.status_code == 302
    went = _browser_target(hub.url, resp.headers["Location"])
    assert urlsplit(went).scheme == "http" and urlsplit(went).netloc == host, resp.headers
    # Already logged in: /hub/login?next= redirects at once, same rule.
    again = b.get("/hub/login", params={"next": target}, allow_redirects=False)
    if again.status_code in (301, 302, 303, 307):
        went = _browser_target(hub.url, again.headers["Location"])
        assert urlsplit(went).netloc == host, again.headers


def test_same_host_next_is_followed(hub: HubProcess) -> None:
    b = Browser(hub.url)
    resp = login_answer(b, hub.u, PASSWORD, next_url="/hub/token")
    assert resp.headers["Location"] == "/hub/token"


# --- 2: HTML injection ----------------------------------------------------------------------

def test_names_and_urls_are_escaped_in_pages(hub: HubProcess) -> None:
    b = Browser(hub.url)
    failed = login_answer(b, XSS, PASSWORD)
    assert failed.status_code == 403 and XSS not in failed.text
    assert "&lt;script&gt;" in failed.text or "script" not in failed.text.lower().split(
        "login_error")[0]
    login_page = b.get("/hub/login", params={"next": f'/hub/"><{XSS}'})
    assert XSS not in login_page.text and '"><script' not in login_page.text
    assert login_answer(b, hub.u, PASSWORD).status_code == 302
    for path in (f"/hub/{XSS}", f"/hub/user/{XSS}", f"/user/{XSS}/lab", f"/hub/spawn/{XSS}",
                 f"/hub/home?x={XSS}", f"/hub/api/users/{XSS}"):
        resp = b.get(path)
        assert resp.status_code < 500, (path, resp.status_code)
        assert XSS not in resp.text and "<script>alert" not in resp.text, path


# --- 5: privilege escalation ----------------------------------------------------------------

def _xsrf_headers(b: Browser) -> dict[str, str]:
    return {"X-XSRFToken": b._xsrf("/hub/")}


def test_user_cannot_make_itself_admin_or_reach_another_user(hub: HubProcess) -> None:
    b = Browser(hub.url)
    assert login_answer(b, hub.u, PASSWORD).status_code == 302
    h = _xsrf_headers(b)
    base = b.base + "/hub/api"
    patch = b.http.patch(f"{base}/users/{hub.u}", json={"admin": True}, headers=h, timeout=30)
    assert patch.status_code == 403
    assert b.get("/hub/api/user").json()["admin"] is False
    assert api(hub, "GET", f"/users/{hub.u}").json()["admin"] is False
    # Another user's model, tokens and server.
    assert b.get(f"/hub/api/users/{hub.v}").status_code in (403, 404)
    assert b.get(f"/hub/api/users/{hub.v}/tokens").status_code in (403, 404)
    start = b.http.post(f"{base}/users/{hub.v}/server", headers=h, timeout=30)
    assert start.status_code in (403, 404)
    assert not api(hub, "GET", f"/users/{hub.v}").json().get("servers")
    # A token with more than the user has is refused, and so is a role grant.
    token = b.http.post(f"{base}/users/{hub.u}/tokens", json={"scopes": ["admin:users"]},
                        headers=h, timeout=30)
    assert token.status_code in (400, 403), token.text
    roles = b.http.post(f"{base}/roles", json={"name": "mine", "scopes": ["admin:users"],
                                               "users": [hub.u]}, headers=h, timeout=30)
    assert roles.status_code in (403, 404, 405)
    # teamhub's sessions endpoint: only for admin:users holders.
    mine = b.http.delete(f"{base}/teamhub/users/{hub.v}/sessions", headers=h, timeout=30)
    assert mine.status_code in (403, 404)


# --- 12: malformed requests -----------------------------------------------------------------

def test_malformed_requests_get_4xx_not_500(hub: HubProcess) -> None:
    b = Browser(hub.url)
    assert login_answer(b, hub.u, PASSWORD).status_code == 302
    h = {**_xsrf_headers(b), "Content-Type": "application/json"}
    base = b.base + "/hub/api"
    bad = [
        ("POST", f"/users/{hub.u}/tokens", b"{not json"),
        ("POST", f"/users/{hub.u}/tokens", b"\xff\xfe\xfa"),
        ("POST", f"/users/{hub.u}/tokens", b'["a list"]'),
        ("PATCH", f"/users/{hub.u}", b"\xc3\x28"),
        ("POST", f"/users/{hub.u}/server", b"{oops"),
        ("GET", "/users/no-such-user-here", None),
        ("DELETE", f"/users/{hub.u}/servers/no-such-server", None),
        ("GET", "/nothing/here", None),
    ]
    for method, path, body in bad:
        resp = b.http.request(method, base + path, data=body, headers=h, timeout=30)
        assert 400 <= resp.status_code < 500, (method, path, resp.status_code, resp.text[:200])
    # Bad percent-encoding straight to the hub (the proxy's own answer: see below).
    url = (hub.state / "hub_api_url").read_text().strip()
    assert unixsocket.session().get(f"{url}/users/%ff%fe", headers={"Authorization": "token x"},
                                    timeout=30).status_code in (400, 403, 404)
    # The login form: missing fields, bad UTF-8, a list where a name should be.
    page = b.get("/hub/login")
    xsrf = b._xsrf("/hub/")
    for data in ({"password": "x", "_xsrf": xsrf}, {"username": "x", "_xsrf": xsrf},
                 f"username=%ff%fe&password=x&_xsrf={xsrf}",
                 [("username", "a"), ("username", "b"), ("password", "p"), ("_xsrf", xsrf)]):
        resp = b.http.post(b.base + "/hub/login", data=data, allow_redirects=False, timeout=30,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert 400 <= resp.status_code < 500, (data, resp.status_code)
    assert page.status_code == 200
    # The CLI's sessions endpoint: unknown user, no token.
    assert api(hub, "DELETE", "/teamhub/users/no-such-user/sessions").status_code == 404
    url = (hub.state / "hub_api_url").read_text().strip()
    assert unixsocket.session().delete(f"{url}/teamhub/users/{hub.u}/sessions",
                                       timeout=30).status_code == 403


def test_bad_cli_input_is_one_line_and_changes_nothing(hub: HubProcess) -> None:
    import json

    before = json.loads(hub.teamhub("user", "locked", "--json").stdout)
    for args in (("user", "unlock", "../etc"), ("user", "unlock", "x" * 500),
                 ("user", "logout", "nobody-such"), ("user", "logout", "Bad Name")):
        proc = hub.teamhub(*args, check=False)
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("teamhub: error: "), proc.stderr
        assert "x" * 100 not in proc.stderr
    after = json.loads(hub.teamhub("user", "locked", "--json").stdout)
    # Nothing locked or unlocked; a lock from an earlier test may run out meanwhile
    # (this module takes minutes on a loaded machine, and runs on both backends).
    assert set(after) <= set(before)
    assert {name for name, left in before.items() if left > 120} <= set(after)


def test_bad_percent_encoding_through_the_proxy(hub: HubProcess) -> None:
    # teamhub's proxy launcher answers 400 where configurable-http-proxy's program said 500
    # (tests/hub/test_proxy_requests.py has more such paths).
    assert requests.get(f"{hub.url}/hub/api/users/%ff%fe", timeout=30).status_code == 400
