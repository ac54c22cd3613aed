"""The console's System page and usage data on a real hub, in real Chromium: a user's busy
kernel makes their CPU line rise in the page's data, who may see what, doctor's checks,
secrets hidden in the settings table, accessibility and screenshots.

This machine has no systemd as init, so a forked server shares the fork server's cgroup:
what is counted here is the user's processes (the `processes` source of
teamhub.system.usage; the cgroup source is tested in tests/unit/test_usage_plumbing.py).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from support.browser import login, output_dir, screenshots, serious_violations
from support.client import Browser as Client
from support.hub import PASSWORD, HubFactory, HubProcess, unique

pytestmark = [pytest.mark.hub, pytest.mark.system]

TOKEN = "tok-" + secrets.token_hex(8)
URL_PASSWORD = "pw-" + secrets.token_hex(8)
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 15: pass\n'done'"
HISTORY = "/hub/teamhub/console/api/usage/history"
NOW = "/hub/teamhub/console/api/usage/now"


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory(extra_toml=f"""
[console]
sample_seconds = 2

[spawner.environment]
SERVICE_TOKEN = "{TOKEN}"
PIP_INDEX_URL = "https://teamhub:{URL_PASSWORD}@packages.example.org/simple"
""")
    h.admin, h.member = unique("adm"), unique("busy")
    h.add_user(h.admin, PASSWORD, "--admin")
    h.add_user(h.member, PASSWORD)
    h.start()
    return h


def client(hub: HubProcess, name: str) -> Client:
    c = Client(hub.url)
    assert c.login(name, PASSWORD).ok
    assert c.get("/hub/home").status_code == 200  # sets the hub's _xsrf cookie
    return c


def get_data(c: Client, path: str) -> Any:
    return c.get(path, headers={"X-XSRFToken": c._xsrf("/hub/")})


@pytest.fixture(scope="module")
def member(hub: HubProcess) -> Client:
    c = client(hub, hub.member)
    c.start_server(hub.member)
    assert c.open_lab(hub.member).status_code == 200
    return c


@pytest.fixture(scope="module")
def kernel(hub: HubProcess, member: Client) -> str:
    kernel_id = member.new_kernel(hub.member)
    member.wait_kernel(hub.member, kernel_id)
    return kernel_id


def test_non_admins_get_403_on_the_page_the_history_and_doctor(hub: HubProcess) -> None:
    c = client(hub, hub.member)
    assert c.get("/hub/teamhub/console/system").status_code == 403
    assert get_data(c, HISTORY).status_code == 403
    assert get_data(c, "/hub/teamhub/console/api/system/doctor").status_code == 403
    posted = c.http.post(hub.url + "/hub/teamhub/console/api/system/doctor",
                         headers={"X-XSRFToken": c._xsrf("/hub/")}, timeout=30)
    assert posted.status_code == 403
    # Without the XSRF header even the admin's page script (a browser's fetch) reads nothing.
    admin = client(hub, hub.admin)
    assert admin.get(HISTORY, headers={"Sec-Fetch-Mode": "cors",
                                       "Sec-Fetch-Site": "same-origin"}).status_code == 403
    assert get_data(admin, HISTORY).status_code == 200


def test_a_non_admins_usage_holds_only_themself(hub: HubProcess, member: Client) -> None:
    mine = get_data(member, f"{NOW}?user={hub.admin}").json()
    assert set(mine) == {hub.member}
    assert set(mine[hub.member]) >= {"cpu", "memory", "cpu_limit", "memory_limit", "home"}
    # Limits are off on this hub (no systemd here): no limit, as the spawner resolves it.
    assert mine[hub.member]["cpu_limit"] is None and mine[hub.member]["memory_limit"] is None
    everyone = get_data(client(hub, hub.admin), NOW).json()
    assert {hub.admin, hub.member} <= set(everyone)


def test_the_page_has_a_csp_and_hides_secrets_in_the_settings(hub: HubProcess) -> None:
    reply = client(hub, hub.admin).get("/hub/teamhub/console/system")
    assert reply.status_code == 200
    csp = reply.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert TOKEN not in reply.text and URL_PASSWORD not in reply.text
    assert "SERVICE_TOKEN" in reply.text and "packages.example.org" in reply.text
    # Paths are no secrets: the state folder is shown as it is.
    assert str(hub.state) in reply.text


def history_in_page(page: Any) -> dict[str, Any]:
    return page.evaluate(f"() => window.teamhubConsole.getJSON('{HISTORY}')")


def test_a_busy_kernel_makes_its_users_cpu_line_rise(hub: HubProcess, member: Client,
                                                     kernel: str, chromium) -> None:  # noqa: ANN001
    context = chromium.new_context()
    page = context.new_page()
    try:
        login(page, hub.url, hub.admin, PASSWORD, "/hub/teamhub/console/system")
        assert page.url.endswith("/hub/teamhub/console/system")
        # The member's server is sampled (a few points) before the kernel gets busy.
        page.wait_for_function(
            f"""async () => {{ const h = await window.teamhubConsole.getJSON('{HISTORY}');
                              return (h.users['{hub.member}'] || []).length >= 2; }}""",
            timeout=120_000, polling=1000)
        # Its CPU now, idle (the last sample before the kernel gets busy) ...
        busy_from = time.time()
        idle = [p[1] or 0.0 for p in history_in_page(page)["users"][hub.member]
                if p[0] < busy_from][-1]
        assert member.execute(hub.member, kernel, BUSY, timeout=180)["result"] == "'done'"
        # ... and while busy. Eight test runs share this machine's 2 CPUs, so a busy loop
        # gets a fraction of one CPU: the line must rise, not reach a set height.
        deadline = time.monotonic() + 120
        busy = idle
        while busy <= idle + 0.05 and time.monotonic() < deadline:
            time.sleep(1)
            busy = max((p[1] or 0.0 for p in history_in_page(page)["users"][hub.member]
                        if p[0] > busy_from), default=0.0)
        assert busy > idle + 0.05, (idle, busy)
        # The picture shows it: the member's CPU line in the SVG (redrawn every 10 s).
        line = f"svg polyline[data-user='{hub.member}']"
        page.wait_for_function(
            f"""() => {{ const l = document.querySelector("{line}");
                         return l && Number(l.getAttribute('data-max')) >= {busy - 0.001}; }}""",
            timeout=60_000, polling=1000)
        # The running servers' table shows the member's figures, written for people.
        cell = f"[data-usage-user='{hub.member}'][data-usage-field='memory']"
        page.wait_for_function(
            f"""() => Number(document.querySelector("{cell}")
                                     .getAttribute('data-usage-value')) > 0""",
            timeout=60_000, polling=1000)
        assert page.text_content(cell).endswith("MiB")
        # Their home's disk use: measured in the background soon after the first start.
        home = f"[data-usage-user='{hub.member}'][data-usage-field='home']"
        page.wait_for_function(
            f"""async () => {{ await window.teamhubUsage.fill();
                   return Number(document.querySelector("{home}")
                                 .getAttribute('data-usage-value')) > 0; }}""",
            timeout=120_000, polling=2000)
        assert page.text_content(
            f"[data-usage-user='{hub.member}'][data-usage-field='cpu_limit']") == "no limit"
        # Doctor's checks arrive after the page, with their hints.
        page.wait_for_selector("#system-doctor[data-done='1']", timeout=300_000)
        assert page.locator("#system-doctor-results li[data-check]").count() > 5
        content = page.content()
        assert TOKEN not in content and URL_PASSWORD not in content
        assert page.text_content("#system-versions").count(".") >= 2
        assert serious_violations(page) == []
        shots = screenshots(page, output_dir("console"), "system")
        assert all(path.stat().st_size > 1000 for path in shots)
    finally:
        context.close()
