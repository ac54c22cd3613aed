"""Signup, approval, change password, reset links and admin flag against a real hub.

One hub for the module (signup on, approval needed), driven through its real
HTML forms with a cookie-keeping HTTP client (tests/support/client.py) and the
real CLI; Linux accounts are created by real server starts where a test needs
a server. Attack tests (CSRF without a token, oversized and control-character
input) are here too; the cross-site attempts in real Chromium are in
test_accounts_browser.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool
from support.client import Browser
from support.hub import HubFactory, HubProcess, unique
from support.postgres import db_toml

pytestmark = [pytest.mark.hub, pytest.mark.system]

ADMIN_PW = "admin kettle harbour"
PW = "violet kettle harbour"
NEW_PW = "amber lantern meadow"
# Adding, approving and rejecting is the console's Users page (the old Accounts page moved).
USERS = "/hub/teamhub/console/users"


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory, module_db_url: str) -> HubProcess:
    # Once on each backend (db.url: the sqlite files, then PostgreSQL).
    h = hub_factory(extra_toml="[auth]\nsignup = true\n" + db_toml(module_db_url))
    h.db_url = module_db_url
    h.admin = unique("adm")
    h.add_user(h.admin, ADMIN_PW, "--admin")
    h.start()
    return h


def xsrf_of(html: str) -> str:
    match = re.search(r'name="_xsrf" value="([^"]+)"', html)
    assert match, "form has no _xsrf field"
    return match.group(1)


def post_form(b: Browser, path: str, data: dict[str, str], *, xsrf: bool = True,
              page: str | None = None) -> requests.Response:
    """GET the form at PAGE (default PATH), then POST DATA to PATH like a browser."""
    form = b.get(page or path)
    fields = dict(data)
    if xsrf:
        found = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
        fields["_xsrf"] = found.group(1) if found else b._xsrf("/hub/")
    return b.http.post(b.base + path, data=fields, allow_redirects=False, timeout=60)


def signup(hub: HubProcess, name: str, password: str = PW) -> requests.Response:
    return post_form(Browser(hub.url), "/hub/signup",
                     {"username": name, "password": password, "password2": password})


def pending(hub: HubProcess) -> list[str]:
    return [r["name"] for r in json.loads(hub.teamhub("user", "pending", "--json").stdout)]


def accounts_rows(hub: HubProcess) -> list[tuple]:
    """The store's accounts and reset links, read past teamhub (on either backend)."""
    url = getattr(hub, "db_url", "")
    engine = create_engine(url or f"sqlite:///{hub.state / 'accounts.sqlite'}",
                           poolclass=NullPool)
    schema = "teamhub." if url else ""  # PostgreSQL: the store's own schema
    try:
        with engine.connect() as conn:
            return [tuple(row) for sql in (
                f"SELECT name, password_hash, admin, pending FROM {schema}accounts ORDER BY name",
                f"SELECT * FROM {schema}reset_links ORDER BY token_hash")
                for row in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def login_answer(resp: requests.Response) -> tuple[int, str]:
    """Status and body of a login answer, the per-request xsrf token blanked out."""
    text = re.sub(r'value="[^"]*"', 'value=""', resp.text)
    return resp.status_code, re.sub(r'xsrf_token: "[^"]*"', 'xsrf_token: ""', text)


def logged_in_admin(hub: HubProcess) -> Browser:
    b = Browser(hub.url)
    assert b.login(hub.admin, ADMIN_PW).status_code == 302
    return b


def test_signup_pending_approve_login_change_password(hub: HubProcess) -> None:
    name = unique("su")
    login_page = Browser(hub.url).get("/hub/login").text
    assert 'id="teamhub-signup-link"' in login_page and "/hub/signup" in login_page

    resp = signup(hub, name.upper())  # the canonical name rule applies: stored lower-case
    assert resp.status_code == 200, resp.text[:500]
    assert "your request was received" in resp.text
    assert name in pending(hub)

    # Pending: the right password is answered exactly like a wrong one.
    right = Browser(hub.url).login(name, PW)
    wrong = Browser(hub.url).login(name, PW + "x")
    assert right.status_code == wrong.status_code == 403
    assert login_answer(right) == login_answer(wrong)

    assert "approved" in hub.teamhub("user", "approve", name).stdout
    b = Browser(hub.url)
    assert b.login(name, PW).status_code == 302 and b.logged_in()
    # Every hub page links to the password page; only admins see the Console link.
    home = b.get("/hub/home").text
    assert 'id="teamhub-password-link"' in home and 'id="teamhub-console-link"' not in home

    # Change password: the current one is required, then the old one stops working.
    bad = post_form(b, "/hub/change-password", {"current_password": NEW_PW,
                                                 "password": NEW_PW, "password2": NEW_PW})
    assert bad.status_code == 403 and "current password is wrong" in bad.text
    weak = post_form(b, "/hub/change-password", {"current_password": PW,
                                                  "password": "qwertyuiop",
                                                  "password2": "qwertyuiop"})
    assert weak.status_code == 400 and "commonly used" in weak.text
    assert "qwertyuiop" not in weak.text
    differ = post_form(b, "/hub/change-password", {"current_password": PW,
                                                    "password": NEW_PW, "password2": PW})
    assert differ.status_code == 400 and "differ" in differ.text
    ok = post_form(b, "/hub/change-password", {"current_password": PW,
                                               "password": NEW_PW, "password2": NEW_PW})
    assert ok.status_code == 200 and 'id="change-done"' in ok.text
    assert b.logged_in()  # this browser stays logged in (_after_password_change)
    assert Browser(hub.url).login(name, PW).status_code == 403
    assert Browser(hub.url).login(name, NEW_PW).status_code == 302


# auth.lockout_failures: this module's hub keeps the default.
LOCKOUT_FAILURES = 5


def change_password(b: Browser, current: str) -> requests.Response:
    return post_form(b, "/hub/change-password", {"current_password": current,
                                                 "password": NEW_PW, "password2": NEW_PW})


def test_current_password_check_has_the_login_lockout(hub: HubProcess) -> None:
    """Issue 18 item 8: the current-password field is not a way around the login's
    lockout. Before the fix, eight wrong guesses were followed by a working one."""
    name = unique("lo")
    hub.add_user(name, PW)
    b = Browser(hub.url)
    assert b.login(name, PW).status_code == 302
    wrong = [change_password(b, f"wrong guess {i}") for i in range(LOCKOUT_FAILURES)]
    assert [r.status_code for r in wrong] == [403] * LOCKOUT_FAILURES
    right = change_password(b, PW)
    assert right.status_code == 403, "the right current password worked past the lockout"
    assert login_answer(right) == login_answer(wrong[-1])  # locked reads as wrong
    assert name in hub.teamhub("user", "locked").stdout
    # One lock for the name: the login form refuses the right password too.
    assert Browser(hub.url).login(name, PW).status_code == 403
    assert "unlocked" in hub.teamhub("user", "unlock", name).stdout
    done = change_password(b, PW)
    assert done.status_code == 200 and 'id="change-done"' in done.text
    assert Browser(hub.url).login(name, NEW_PW).status_code == 302


def test_approve_and_reject_on_the_admin_page(hub: HubProcess) -> None:
    keep, drop = unique("ka"), unique("kd")
    for name in (keep, drop):
        assert signup(hub, name).status_code == 200
    admin = logged_in_admin(hub)
    page = admin.get(USERS)
    assert page.status_code == 200
    assert f'id="pending-{keep}"' in page.text and f'id="pending-{drop}"' in page.text
    assert 'id="teamhub-console-link"' in page.text
    assert 'id="teamhub-accounts-link"' not in page.text
    # The old Accounts page sends its visitors (and old bookmarks) to the Users page.
    moved = admin.get("/hub/teamhub/accounts", allow_redirects=False)
    assert moved.status_code == 303 and moved.headers["Location"].endswith(USERS)
    # GET changes nothing, whatever it carries.
    admin.get(f"{USERS}?action=approve&name={keep}")
    assert keep in pending(hub)

    resp = post_form(admin, USERS, {"action": "approve", "name": keep})
    assert resp.status_code == 200 and f"Approved {keep}" in resp.text
    resp = post_form(admin, USERS, {"action": "reject", "name": drop})
    assert resp.status_code == 200 and f"Rejected {drop}" in resp.text
    assert keep not in pending(hub) and drop not in pending(hub)
    assert Browser(hub.url).login(keep, PW).status_code == 302
    assert Browser(hub.url).login(drop, PW).status_code == 403
    assert hub.teamhub("user", "show", drop, check=False).returncode != 0

    again = post_form(admin, USERS, {"action": "approve", "name": drop})
    assert again.status_code == 400 and "no signup for" in again.text
    bad = post_form(admin, USERS, {"action": "<b>x</b>", "name": keep})
    assert bad.status_code == 400 and "<b>x</b>" not in bad.text


def test_users_page_is_for_admins_only(hub: HubProcess) -> None:
    name = unique("na")
    hub.add_user(name, PW)
    lurker = unique("lk")
    signup(hub, lurker)
    b = Browser(hub.url)
    assert b.login(name, PW).status_code == 302
    assert b.get(USERS).status_code == 403
    # A non-admin cannot approve either, even with a valid token of its own.
    resp = post_form(b, USERS, {"action": "approve", "name": lurker},
                     page="/hub/home")
    assert resp.status_code == 403
    assert lurker in pending(hub)
    anonymous = Browser(hub.url).get(USERS, allow_redirects=False)
    assert anonymous.status_code == 302 and "/hub/login" in anonymous.headers["Location"]
    hub.teamhub("user", "reject", lurker)


def test_signup_does_not_reveal_taken_or_pending_names(hub: HubProcess) -> None:
    taken, waiting, fresh = unique("tk"), unique("wt"), unique("fr")
    hub.add_user(taken, PW)
    signup(hub, waiting)
    before = accounts_rows(hub)
    answers = {n: signup(hub, n, NEW_PW) for n in (taken, waiting)}
    assert accounts_rows(hub) == before  # nothing changed for taken or pending names
    answers[fresh] = signup(hub, fresh, NEW_PW)
    bodies = {n: login_answer(r) for n, r in answers.items()}
    assert bodies[taken] == bodies[waiting] == bodies[fresh]
    assert Browser(hub.url).login(taken, PW).status_code == 302  # still the owner's password
    for n in (waiting, fresh):
        hub.teamhub("user", "reject", n)


@pytest.mark.parametrize(("name", "password", "again", "error"), [
    ("bad name!", PW, PW, "invalid user name"),
    ("ok" + unique(), "tiny-pw", "tiny-pw", "too short"),
    ("ok" + unique(), "password1234", "password1234", "commonly used"),
    ("ok" + unique(), PW, NEW_PW, "differ"),
])
def test_signup_errors(hub: HubProcess, name: str, password: str, again: str,
                       error: str) -> None:
    before = accounts_rows(hub)
    resp = post_form(Browser(hub.url), "/hub/signup",
                     {"username": name, "password": password, "password2": again})
    assert resp.status_code == 400 and error in resp.text
    assert password not in resp.text
    assert accounts_rows(hub) == before


def test_reset_link_once_expired_unknown(hub: HubProcess) -> None:
    name = unique("rs")
    hub.add_user(name, PW)
    link = hub.teamhub("user", "reset-link", name).stdout.strip()
    assert link.startswith(f"http://127.0.0.1:{hub.port}/hub/reset/")
    path = "/hub/reset/" + link.rsplit("/", 1)[1]
    b = Browser(hub.url)
    before = accounts_rows(hub)
    form = b.get(path)
    assert form.status_code == 200 and name in form.text
    assert form.headers["Referrer-Policy"] == "no-referrer"
    assert accounts_rows(hub) == before  # opening the link changes nothing
    weak = post_form(b, path, {"password": "tiny-pw", "password2": "tiny-pw"})
    assert weak.status_code == 400 and "too short" in weak.text
    done = post_form(b, path, {"password": NEW_PW, "password2": NEW_PW})
    assert done.status_code == 200 and 'id="reset-done"' in done.text
    assert Browser(hub.url).login(name, NEW_PW).status_code == 302
    assert Browser(hub.url).login(name, PW).status_code == 403

    used = b.get(path)
    expired_link = hub.teamhub("user", "reset-link", name, "--expires", "1s").stdout.strip()
    time.sleep(2.5)
    expired = b.get("/hub/reset/" + expired_link.rsplit("/", 1)[1])
    unknown = b.get("/hub/reset/" + "A" * 43)
    garbage = b.get("/hub/reset/%00%0a..%2f")
    pages = [login_answer(r) for r in (used, expired, unknown, garbage)]
    assert all(p == pages[0] for p in pages) and pages[0][0] == 404
    assert 'id="reset-invalid"' in used.text
    # A POST through a spent link (with a valid form token) changes nothing either.
    spent = b.http.post(b.base + path, data={"password": "yet another passphrase",
                                             "password2": "yet another passphrase",
                                             "_xsrf": xsrf_of(form.text)}, timeout=30)
    assert spent.status_code == 404
    assert Browser(hub.url).login(name, NEW_PW).status_code == 302


def test_admin_on_off_reaches_the_running_hub(hub: HubProcess) -> None:
    name = unique("ad")
    hub.add_user(name, PW)
    b = Browser(hub.url)
    assert b.login(name, PW).status_code == 302  # the hub knows the user now
    assert b.get("/hub/api/user").json()["admin"] is False
    out = hub.teamhub("user", "admin", name, "--on").stdout
    assert "running hub is updated" in out
    assert b.get("/hub/api/user").json()["admin"] is True
    assert b.get(USERS).status_code == 200
    assert b.get("/hub/admin").status_code == 200
    hub.teamhub("user", "admin", name, "--off")
    assert b.get("/hub/api/user").json()["admin"] is False
    assert b.get(USERS).status_code == 403
    # A user who never logged in is a hub user too (made by `user add`): changed at once.
    never = unique("nv")
    hub.add_user(never, PW)
    assert "running hub is updated" in hub.teamhub("user", "admin", never, "--on").stdout
    assert hub.api("GET", f"/users/{never}").body["admin"] is True
    assert Browser(hub.url).login(never, PW).status_code == 302


def test_every_post_needs_the_xsrf_token(hub: HubProcess) -> None:
    """Catalogue 3: without `_xsrf` every account POST is a 403 and nothing changes.

    Checked to fail without the protection: with the hub's XSRF check switched
    off (c.JupyterHub.tornado_settings = {"xsrf_cookies": False} in a config.d
    file), these POSTs succeed and the assertions on the store fail.
    """
    victim, waiting = unique("cv"), unique("cw")
    hub.add_user(victim, PW)
    signup(hub, waiting)
    token = hub.teamhub("user", "reset-link", victim).stdout.strip().rsplit("/", 1)[1]
    admin = logged_in_admin(hub)
    user = Browser(hub.url)
    assert user.login(victim, PW).status_code == 302
    before = accounts_rows(hub)
    attempts = [
        (admin, USERS, {"action": "approve", "name": waiting}),
        (user, "/hub/change-password", {"current_password": PW, "password": NEW_PW,
                                        "password2": NEW_PW}),
        (Browser(hub.url), f"/hub/reset/{token}", {"password": NEW_PW, "password2": NEW_PW}),
        (Browser(hub.url), "/hub/signup", {"username": unique("cx"), "password": PW,
                                           "password2": PW}),
    ]
    for b, path, data in attempts:
        b.get(path)  # the browser holds the _xsrf cookie; only the form field is missing
        resp = b.http.post(b.base + path, data=data, allow_redirects=False, timeout=30)
        assert resp.status_code == 403, (path, resp.status_code)
        wrong = b.http.post(b.base + path, data={**data, "_xsrf": "2|forged|token|x"},
                            allow_redirects=False, timeout=30)
        assert wrong.status_code == 403, (path, wrong.status_code)
    assert accounts_rows(hub) == before
    assert waiting in pending(hub)
    hub.teamhub("user", "reject", waiting)


def test_oversized_and_control_character_input(hub: HubProcess) -> None:
    """Catalogue 4: megabyte and control-character fields are refused quickly with a
    4xx, never echoed, never logged in full."""
    name = unique("ov")
    hub.add_user(name, PW)
    token = hub.teamhub("user", "reset-link", name).stdout.strip().rsplit("/", 1)[1]
    before = accounts_rows(hub)
    big_name = "Q" * 1_000_000
    big_pw = "Z" * 1_000_000
    cases = [
        ("/hub/signup", {"username": big_name, "password": PW, "password2": PW}),
        ("/hub/signup", {"username": "ok" + unique(), "password": big_pw, "password2": big_pw}),
        ("/hub/signup", {"username": "ctl\x00name\x1b[31m", "password": PW, "password2": PW}),
        ("/hub/signup", {"username": "ok" + unique(), "password": "pass\x00word long",
                         "password2": "pass\x00word long"}),
        ("/hub/signup", {"username": "\udcff" * 3, "password": PW, "password2": PW}),
        (f"/hub/reset/{token}", {"password": big_pw, "password2": big_pw}),
        (f"/hub/reset/{token}", {"password": "new\nline password", "password2":
                                 "new\nline password"}),
    ]
    for path, data in cases:
        b = Browser(hub.url)
        xsrf = xsrf_of(b.get(path).text)
        body = "&".join(f"{k}={requests.utils.quote(v, safe='', errors='surrogateescape')}"
                        for k, v in data.items()) + f"&_xsrf={xsrf}"
        start = time.monotonic()
        resp = b.http.post(b.base + path, data=body.encode("utf-8", "surrogateescape"),
                           headers={"Content-Type": "application/x-www-form-urlencoded"},
                           timeout=60)
        elapsed = time.monotonic() - start
        assert 400 <= resp.status_code < 500, (path, resp.status_code)
        assert "Q" * 100 not in resp.text and "Z" * 100 not in resp.text
        assert "\x1b" not in resp.text and "\x00" not in resp.text
        assert elapsed < 20, elapsed  # a loose bound: refused, not hashed or looped over
    # Login with megabyte fields: JupyterHub's own form, the same 403 as any failure.
    for username, password in ((big_name, PW), (name, big_pw), ("ctl\x00x", PW)):
        resp = Browser(hub.url).login(username, password)
        assert resp.status_code == 403 and "Q" * 100 not in resp.text
    assert accounts_rows(hub) == before
    assert Browser(hub.url).get(f"/hub/reset/{token}").status_code == 200  # still unused
    log = hub.log.read_text(errors="replace")
    assert "Q" * 100 not in log and "Z" * 100 not in log
    assert "name\x1b" not in log  # (the proxy colours its own lines: look for ours only)
