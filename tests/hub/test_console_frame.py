"""The console's frame (teamhub.console.base) on a real hub, in real Chromium: who gets in,
the Content-Security-Policy that runs no inline script of ours yet keeps JupyterHub's own
page script working, the static files, accessibility, and screenshots."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from support.browser import login, output_dir, screenshots, serious_violations
from support.client import Browser as Client
from support.hub import PASSWORD, HubFactory, HubProcess, unique

pytestmark = [pytest.mark.hub, pytest.mark.system]


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory()
    h.admin, h.member = unique("adm"), unique("mem")
    h.add_user(h.admin, PASSWORD, "--admin")
    h.add_user(h.member, PASSWORD)
    h.start()
    return h


def client(hub: HubProcess, name: str) -> Client:
    c = Client(hub.url)
    assert c.login(name, PASSWORD).ok
    return c


def script_sources(csp: str) -> list[str]:
    directive = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    return directive.split()[1:]


def test_the_console_opens_on_the_first_tab_each_may_see(hub: HubProcess) -> None:
    admin = client(hub, hub.admin).get("/hub/teamhub/console", allow_redirects=False)
    member = client(hub, hub.member).get("/hub/teamhub/console", allow_redirects=False)
    assert admin.status_code == 302 and admin.headers["Location"].endswith("/teamhub/console/users")
    assert member.status_code == 302 and member.headers["Location"].endswith("/teamhub/console/me")


def test_logged_out_visitors_are_sent_to_the_login(hub: HubProcess) -> None:
    reply = Client(hub.url).get("/hub/teamhub/console/me", allow_redirects=False)
    assert reply.status_code == 302
    assert unquote(reply.headers["Location"]) == "/hub/login?next=/hub/teamhub/console/me"


def test_pages_carry_a_csp_without_inline_scripts(hub: HubProcess) -> None:
    reply = client(hub, hub.member).get("/hub/teamhub/console/me")
    assert reply.status_code == 200
    csp = reply.headers["Content-Security-Policy"]
    sources = script_sources(csp)
    assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources
    assert sources[0] == "'self'" and sources[1].startswith("'sha256-") and len(sources) == 2
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert reply.headers["Cache-Control"] == "no-store"
    # The member sees no admin tab; the nav bar links to "My account", not the console.
    assert 'id="console-tab-me"' in reply.text and 'id="console-tab-users"' not in reply.text
    assert 'id="teamhub-me-link"' in reply.text and 'id="teamhub-console-link"' not in reply.text


def test_static_files_have_the_hubs_isolation_headers(hub: HubProcess) -> None:
    reply = Client(hub.url).get("/hub/teamhub/console/static/console.js")
    assert reply.status_code == 200 and "teamhubConsole" in reply.text
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert Client(hub.url).get("/hub/teamhub/console/static/../base.py").status_code in (403, 404)


def test_in_chromium_the_page_script_runs_ours_loads_and_axe_finds_nothing_serious(
        hub: HubProcess, chromium) -> None:
    context = chromium.new_context()
    page = context.new_page()
    try:
        login(page, hub.url, hub.member, PASSWORD, "/hub/teamhub/console/me")
        assert page.url.endswith("/hub/teamhub/console/me")
        assert page.text_content("#me-name") == hub.member
        # JupyterHub's inline head script ran (allowed by its hash) and ours loaded.
        assert page.evaluate("() => window.jhdata.xsrf_token.length > 0")
        assert page.evaluate("() => typeof window.teamhubConsole.getJSON") == "function"
        # An inline script added to the page is refused by the policy.
        page.evaluate("""() => { const s = document.createElement('script');
                                 s.textContent = 'window.injected = 1';
                                 document.body.appendChild(s); }""")
        assert page.evaluate("() => window.injected") is None
        assert serious_violations(page) == []
        shots = screenshots(page, output_dir("console"), "me")
        assert all(path.stat().st_size > 1000 for path in shots)
    finally:
        context.close()
