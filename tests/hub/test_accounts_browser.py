"""The account pages in real headless Chromium: the whole flow, and cross-site attacks.

Chromium is the distribution's (apt `chromium`, installed by run-tests.sh),
driven by Playwright, which never downloads a browser here. The "evil" site
is a plain HTTP server on another loopback address (127.0.0.2), so it is a
different site from the hub at `localhost`.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator

import pytest
from support.client import Browser
from support.hub import HubFactory, HubProcess, free_port, unique
from test_accounts_pages import ADMIN_PW, NEW_PW, PW, accounts_rows, pending, signup

pytestmark = [pytest.mark.hub, pytest.mark.system]



@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory(extra_toml="[auth]\nsignup = true\n")
    h.admin = unique("adm")
    h.add_user(h.admin, ADMIN_PW, "--admin")
    h.start()
    return h


class EvilSite:
    """Serves PAGES (path → HTML) from 127.0.0.2 in a thread."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                body = pages.get(self.path, "not found").encode()
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", free_port()), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def evil() -> Iterator[EvilSite]:
    site = EvilSite()
    try:
        yield site
    finally:
        site.close()


def login(page, hub: HubProcess, name: str, password: str, next_path: str) -> None:
    page.goto(f"{hub.url}/hub/login?next={next_path}")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_load_state()


def test_signup_approve_login_change_password_in_chromium(hub: HubProcess, chromium) -> None:
    name = unique("cr")
    visitor = chromium.new_context()
    page = visitor.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.click("#teamhub-signup-link a")
    page.wait_for_url(re.compile(r"/hub/signup$"))
    page.fill("#username_input", name)
    page.fill("#password_input", PW)
    page.fill("#password2_input", PW)
    page.click("#signup_submit")
    assert "your request was received" in page.inner_text("#signup-done")
    assert name in pending(hub)

    admin = chromium.new_context()
    apage = admin.new_page()
    login(apage, hub, hub.admin, ADMIN_PW, "/hub/home")
    # The console (its first tab: Users) is where signups are approved.
    apage.click("#teamhub-console-link")
    apage.wait_for_url(re.compile(r"/hub/teamhub/console/users$"))
    apage.click(f"#pending-{name} button[value=approve]")
    apage.wait_for_load_state()
    assert f"Approved {name}" in apage.inner_text("#console-message")
    assert name not in pending(hub)

    login(page, hub, name, PW, "/hub/change-password")
    page.wait_for_url(re.compile(r"/hub/change-password$"))
    page.fill("#current_input", PW)
    page.fill("#password_input", NEW_PW)
    page.fill("#password2_input", NEW_PW)
    page.click("#change_submit")
    assert "was changed" in page.inner_text("#change-done")
    visitor.close()
    admin.close()
    assert Browser(hub.url).login(name, PW).status_code == 403
    assert Browser(hub.url).login(name, NEW_PW).status_code == 302


def test_admin_page_lists_cli_users_and_adds_through_the_users_page(
        hub: HubProcess, chromium) -> None:
    made = unique("cli")
    hub.add_user(made, PW)
    context = chromium.new_context()
    page = context.new_page()
    login(page, hub, hub.admin, ADMIN_PW, "/hub/admin")
    page.wait_for_url(re.compile(r"/hub/admin"))
    # JupyterHub's React admin page lists the account made on the command line at once.
    page.get_by_text(made, exact=True).first.wait_for()
    # Its own "Add Users" (which would make hub-only users) is replaced by teamhub's.
    assert not page.locator(".add-users-button").is_visible()
    page.click("#teamhub-add-users")
    page.wait_for_url(re.compile(r"/hub/teamhub/console/users"))
    added = unique("web")
    page.fill("#add-name", added)
    page.click("#add-submit")
    page.wait_for_load_state()
    assert "/hub/reset/" in page.inner_text("#users-reset-link")
    page.goto(f"{hub.url}/hub/admin")
    page.get_by_text(added, exact=True).first.wait_for()
    context.close()


def _hub_403s(hub: HubProcess, path: str) -> int:
    return len(re.findall(rf"403 POST {re.escape(path)} ", hub.log.read_text(errors="replace")))


def test_cross_site_form_and_fetch_cannot_approve_or_change_password(
        hub: HubProcess, chromium, evil: EvilSite) -> None:
    """Catalogue 3 from a real browser on another site.

    A logged-in admin (and user) visit pages on 127.0.0.2 that auto-submit a
    form to the hub and fire `fetch(..., {mode: 'no-cors', method: 'POST',
    credentials: 'include'})`. The requests reach the hub (its log shows each
    refused with 403) and change nothing. The form posts are what the XSRF
    check stops: Chromium sends the hub's fresh cookies with a top-level
    cross-site POST (its "Lax+POST" allowance for cookies without a SameSite
    attribute). Checked to fail with the XSRF check switched off
    (c.JupyterHub.tornado_settings = {"xsrf_cookies": False}): the form post
    then approves the account.
    """
    victim, waiting = unique("xv"), unique("xw")
    hub.add_user(victim, PW)
    signup(hub, waiting)
    before = accounts_rows(hub)
    target = hub.url
    evil.pages["/approve.html"] = f"""<!doctype html><body>
      <form id="f" method="post" action="{target}/hub/teamhub/console/users">
        <input name="action" value="approve"><input name="name" value="{waiting}">
      </form><script>document.getElementById('f').submit()</script></body>"""
    evil.pages["/approve-fetch.html"] = f"""<!doctype html><body><script>
      fetch("{target}/hub/teamhub/console/users", {{method: "POST", mode: "no-cors",
        credentials: "include", headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
        body: "action=approve&name={waiting}"}})
        .finally(() => {{ document.title = "sent"; }});
    </script></body>"""
    evil.pages["/password.html"] = f"""<!doctype html><body>
      <form id="f" method="post" action="{target}/hub/change-password">
        <input name="current_password" value="{PW}"><input name="password" value="{NEW_PW}">
        <input name="password2" value="{NEW_PW}">
      </form><script>document.getElementById('f').submit()</script></body>"""
    evil.pages["/password-fetch.html"] = f"""<!doctype html><body><script>
      fetch("{target}/hub/change-password", {{method: "POST", mode: "no-cors",
        credentials: "include", headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
        body: "current_password={PW}&password={NEW_PW}&password2={NEW_PW}"
          .replace(/ /g, "+")}})
        .finally(() => {{ document.title = "sent"; }});
    </script></body>"""

    approvals = _hub_403s(hub, "/hub/teamhub/console/users")
    changes = _hub_403s(hub, "/hub/change-password")
    for who, password, form, fetch in ((hub.admin, ADMIN_PW, "/approve.html",
                                        "/approve-fetch.html"),
                                       (victim, PW, "/password.html", "/password-fetch.html")):
        context = chromium.new_context()
        page = context.new_page()
        login(page, hub, who, password, "/hub/home")
        assert "/hub/login" not in page.url  # logged in
        page.goto(evil.url + form)
        page.wait_for_url(re.compile(r"localhost:\d+/hub/"))
        page.wait_for_load_state()
        assert "403" in page.content()
        page.goto(evil.url + fetch)
        page.wait_for_function("document.title === 'sent'")
        context.close()

    # Both attempts on each endpoint reached the hub and were refused.
    assert _hub_403s(hub, "/hub/teamhub/console/users") >= approvals + 2
    assert _hub_403s(hub, "/hub/change-password") >= changes + 2
    assert accounts_rows(hub) == before
    assert waiting in pending(hub)
    assert Browser(hub.url).login(victim, PW).status_code == 302
    hub.teamhub("user", "reject", waiting)
