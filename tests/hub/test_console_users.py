"""The console's Users and Groups pages and the additions to "My account", on a real hub in
real Chromium: add a user and let them set their password through the one-time link;
block, unblock and remove (the Linux account goes too); groups made, filled, emptied and
deleted; search and paging over 30 accounts; who may do what (403s, `_xsrf`), names
escaped, the CSP header, axe-core and screenshots of each page. Approving signups is in
test_accounts_pages.py and test_accounts_browser.py (the old Accounts page's tests, moved
to this page)."""

from __future__ import annotations

import json
import os
import pwd
import re
import time

import pytest
import requests
from support.browser import login, output_dir, screenshots, serious_violations
from support.client import Browser as Client
from support.hub import PASSWORD, HubFactory, HubProcess, unique

from teamhub.accounts.store import AccountStore
from teamhub.gpu_allocations import Allocations

pytestmark = [pytest.mark.hub, pytest.mark.system]

USERS = "/hub/teamhub/console/users"
GROUPS = "/hub/teamhub/console/groups"
ME = "/hub/teamhub/console/me"
NEW_PW = "amber lantern meadow"


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory()
    h.admin, h.member = unique("adm"), unique("mem")
    h.add_user(h.admin, PASSWORD, "--admin")
    h.add_user(h.member, PASSWORD)
    h.start()
    return h


def client(hub: HubProcess, name: str, password: str = PASSWORD) -> Client:
    c = Client(hub.url)
    assert c.login(name, password).ok
    return c


def post(c: Client, path: str, data: dict[str, str], *, xsrf: bool = True) -> requests.Response:
    """POST DATA to PATH like the page's form (with the form's `_xsrf` unless XSRF is off)."""
    form = c.get(path)
    if form.status_code != 200:  # not allowed to see the page: a token from another one
        form = c.get("/hub/home")
    fields = dict(data)
    if xsrf:
        found = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
        fields["_xsrf"] = found.group(1) if found else c._xsrf("/hub/")
    return c.http.post(c.base + path, data=fields, allow_redirects=False, timeout=120)


def admin_page(hub: HubProcess, chromium, path: str) -> tuple:
    context = chromium.new_context()
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # data-confirm questions
    login(page, hub.url, hub.admin, PASSWORD, path)
    return context, page


def test_add_user_then_they_set_a_password_through_the_link_and_log_in(
        hub: HubProcess, chromium) -> None:
    added = unique("web")
    context, page = admin_page(hub, chromium, USERS)
    try:
        assert page.url.endswith(USERS)
        page.fill("#add-name", added)
        page.click("#add-submit")
        page.wait_for_load_state()
        assert f"Added {added}" in page.inner_text("#console-message")
        link = page.inner_text("#users-reset-link")
        assert "/hub/reset/" in link
        assert page.locator(f"#user-{added} .user-state").inner_text() == "active"
        # Shown once: the list, opened again, carries no link.
        page.goto(hub.url + USERS)
        assert page.locator("#users-reset-link").count() == 0
        # CPU, memory and home cells wait for usage-cells.js (the sampler's script).
        cells = page.locator(f'[data-usage-user="{added}"]')
        assert sorted(cells.evaluate_all("els => els.map(e => e.dataset.usageField)")) == [
            "cpu", "cpu_limit", "home", "memory", "memory_limit"]
        assert serious_violations(page) == []
        assert all(p.stat().st_size > 1000 for p in screenshots(page, output_dir("console"),
                                                                 "users"))
        newcomer = chromium.new_context()
        their = newcomer.new_page()
        their.goto(link)
        their.fill("#password_input", NEW_PW)
        their.fill("#password2_input", NEW_PW)
        their.click("#reset_submit")
        # The answer comes after the password is hashed: wait for it, not for the click.
        their.locator("#reset-done").wait_for(timeout=60_000)
        login(their, hub.url, added, NEW_PW, ME)
        assert their.text_content("#me-name") == added
        newcomer.close()
    finally:
        context.close()
        hub.teamhub("user", "remove", added, "--yes")


def test_reset_link_admin_flag_and_logout_from_the_list(hub: HubProcess) -> None:
    name = unique("rl")
    hub.add_user(name, PASSWORD)
    admin = client(hub, hub.admin)
    them = client(hub, name)
    made = post(admin, USERS, {"action": "reset-link", "name": name})
    assert made.status_code == 200 and f"A one-time link for {name}" in made.text
    token = re.search(r'id="users-reset-link"[^>]*>[^<]*/hub/reset/([^<\s]+)<', made.text)
    assert Client(hub.url).get(f"/hub/reset/{token.group(1)}").status_code == 200
    on = post(admin, USERS, {"action": "admin-on", "name": name})
    assert "is an admin (the running hub is updated)" in on.text
    assert them.get(USERS).status_code == 200  # from the store, on the very next request
    off = post(admin, USERS, {"action": "admin-off", "name": name})
    assert "is not an admin" in off.text and them.get(USERS).status_code == 403
    out = post(admin, USERS, {"action": "logout", "name": name})
    assert f"ended every browser session of {name} by the running hub" in out.text
    assert not them.logged_in()
    hub.teamhub("user", "remove", name, "--yes")


def test_block_unblock_and_remove_with_the_linux_account(hub: HubProcess, chromium) -> None:
    name = unique("rex")
    hub.add_user(name, PASSWORD)
    them = client(hub, name)
    them.start_server(name)
    linux = pwd.getpwnam(hub.system_user(name))
    context, page = admin_page(hub, chromium, f"{USERS}?q={name}")
    try:
        row = page.locator(f"#user-{name}")
        assert row.locator(".user-server").inner_text().startswith("running: default")
        assert row.locator(".user-activity").inner_text() != "never"
        row.locator("button[value=block]").click()
        page.wait_for_load_state()
        assert f"blocked user {name}: logins are refused" in page.inner_text("#console-message")
        assert "stopped 1 server(s)" in page.inner_text("#console-message")
        assert page.locator(f"#user-{name} .user-state").inner_text() == "blocked"
        assert Client(hub.url).login(name, PASSWORD).status_code == 403
        page.locator(f"#user-{name} button[value=unblock]").click()
        page.wait_for_load_state()
        assert f"unblocked user {name}" in page.inner_text("#console-message")
        assert Client(hub.url).login(name, PASSWORD).status_code == 302
        # Remove asks first, naming exactly what goes (what `teamhub user remove` asks).
        question = page.locator(f"#user-{name} form:has(button[value=remove])")
        assert question.get_attribute("data-confirm") == (
            f"Remove hub user {name} and Linux account {hub.system_user(name)} with its home?")
        asked = []
        page.once("dialog", lambda d: asked.append(d.message))
        page.locator(f"#user-{name} button[value=remove]").click()
        page.wait_for_load_state()
        assert asked and asked[0].startswith(f"Remove hub user {name}")
        assert (f"removed user {name} and Linux account {hub.system_user(name)}"
                in page.inner_text("#console-message"))
        assert page.locator(f"#user-{name}").count() == 0
    finally:
        context.close()
    with pytest.raises(KeyError):
        pwd.getpwnam(hub.system_user(name))
    assert not os.path.exists(linux.pw_dir)
    assert hub.teamhub("user", "show", name, check=False).returncode != 0


def test_gpu_holdings_show_in_the_server_column(hub: HubProcess) -> None:
    """No GPU here: the holding is recorded the way the GPU spawner records a re-adopted
    server's (gpu_allocations.adopt), held by this test's own process so it counts as live."""
    name = unique("gpu")
    hub.add_user(name, PASSWORD)
    allocations = Allocations(hub.paths.gpu_allocations)
    allocations.adopt(name, "", ["GPU-test-0"], False, os.getpid(), time.time())
    try:
        page = client(hub, hub.admin).get(f"{USERS}?q={name}").text
        row = page.split(f'id="user-{name}"', 1)[1].split("</tr>", 1)[0]
        assert "GPUs held: GPU-test-0" in row
    finally:
        allocations.release(name)
        hub.teamhub("user", "remove", name, "--yes")


def test_errors_are_shown_escaped_and_nothing_changes(hub: HubProcess) -> None:
    admin = client(hub, hub.admin)
    bad = post(admin, USERS, {"action": "add", "name": "<b>x</b>"})
    assert bad.status_code == 400 and 'id="console-error"' in bad.text
    assert "<b>x</b>" not in bad.text and "&lt;b&gt;x&lt;/b&gt;" in bad.text
    gone = post(admin, USERS, {"action": "block", "name": unique("nobody")})
    assert gone.status_code == 400 and "does not exist; see `teamhub user list`" in gone.text
    weird = post(admin, GROUPS, {"action": "create", "group": "<i>g</i>"})
    assert weird.status_code == 400 and "<i>g</i>" not in weird.text
    assert post(admin, USERS, {"action": "<b>x</b>", "name": "y"}).status_code == 400
    # An admin cannot lock themselves out from the page they are on.
    for action in ("block", "remove", "admin-off"):
        mine = post(admin, USERS, {"action": action, "name": hub.admin})
        assert mine.status_code == 400 and "yourself here" in mine.text, action
    account = AccountStore(hub.paths.accounts_db).get(hub.admin)
    assert account.admin and not account.blocked


def test_groups_create_fill_empty_delete_in_chromium(hub: HubProcess, chromium) -> None:
    group = unique("team")
    context, page = admin_page(hub, chromium, GROUPS)
    try:
        page.fill("#create-name", group)
        page.click("#create-submit")
        page.wait_for_load_state()
        assert f"created group {group}" in page.inner_text("#console-message")
        card = page.locator(f"#group-{group}")
        card.locator(f"#add-{group}").fill(hub.member)
        card.locator("button[aria-label^='Add to']").click()
        page.wait_for_load_state()
        assert f"added to {group}: {hub.member}" in page.inner_text("#console-message")
        assert json.loads(hub.teamhub("group", "list", "--json").stdout)[group] == [hub.member]
        assert hub.member in hub.api("GET", f"/groups/{group}").body["users"]
        assert serious_violations(page) == []
        screenshots(page, output_dir("console"), "groups")
        page.locator(f"#member-{group}-{hub.member} button").click()
        page.wait_for_load_state()
        assert f"removed from {group}: {hub.member}" in page.inner_text("#console-message")
        assert json.loads(hub.teamhub("group", "list", "--json").stdout)[group] == []
        page.locator(f"#group-{group} button[aria-label^='Delete group']").click()
        page.wait_for_load_state()
        assert f"deleted group {group}" in page.inner_text("#console-message")
        assert group not in json.loads(hub.teamhub("group", "list", "--json").stdout)
    finally:
        context.close()


def test_groups_show_what_they_grant(hub: HubProcess) -> None:
    group, project = unique("gr"), unique("pj")
    hub.teamhub("group", "create", group)
    hub.teamhub("project", "create", project, "--readers", f"@{group}")
    try:
        page = client(hub, hub.admin).get(GROUPS).text
        card = page.split(f'id="group-{group}"', 1)[1].split("</section>", 1)[0]
        assert f"{project} (read)" in card and "the defaults" in card and "the default" in card
    finally:
        hub.teamhub("project", "delete", project, "--force", check=False)
        hub.teamhub("group", "delete", group)


def test_search_and_paging_over_30_users(hub: HubProcess, chromium) -> None:
    stem = unique("pg")
    names = [f"{stem}{i:02d}" for i in range(30)]
    store = AccountStore(hub.paths.accounts_db)
    for name in names:
        store.add(name, PASSWORD)
    context, page = admin_page(hub, chromium, f"{USERS}?q={stem}")
    try:
        shown = page.locator(".user-row .user-name").all_inner_texts()
        assert shown == names[:25]
        page.locator("#users-pages a", has_text="2").click()
        page.wait_for_load_state()
        assert page.locator(".user-row .user-name").all_inner_texts() == names[25:]
        page.fill("#users-q", names[7])
        page.click("#users-search button")
        page.wait_for_load_state()
        assert page.locator(".user-row .user-name").all_inner_texts() == [names[7]]
        assert page.locator("#users-pages").count() == 0
    finally:
        context.close()
        for name in names:
            store.remove(name)


def test_my_account_shows_my_projects_usage_cells_and_changes_my_password(
        hub: HubProcess, chromium) -> None:
    name, project = unique("me"), unique("mine")
    hub.add_user(name, PASSWORD)
    hub.teamhub("project", "create", project, "--writers", name)
    context = chromium.new_context()
    page = context.new_page()
    try:
        login(page, hub.url, name, PASSWORD, ME)
        assert page.inner_text(f"#me-project-{project}").split() == [project, "write"]
        fields = page.locator(f'#me-usage [data-usage-user="{name}"]').evaluate_all(
            "els => els.map(e => e.dataset.usageField)")
        assert sorted(fields) == ["cpu", "cpu_limit", "home", "memory", "memory_limit"]
        # The sampler's usage-cells.js fills them from /api/usage/now (no server runs yet).
        memory = f'#me-usage [data-usage-user="{name}"][data-usage-field="memory"]'
        page.wait_for_function(f"() => document.querySelector('{memory}').textContent"
                               ".trim() === 'not running'", timeout=60_000)
        assert serious_violations(page) == []
        screenshots(page, output_dir("console"), "me-projects")
        page.fill("#current_input", PASSWORD)
        page.fill("#password_input", NEW_PW)
        page.fill("#password2_input", NEW_PW)
        page.click("#change_submit")
        page.locator("#change-done").wait_for(timeout=60_000)
        assert Client(hub.url).login(name, NEW_PW).status_code == 302
    finally:
        context.close()
        hub.teamhub("project", "delete", project, "--force", check=False)
        hub.teamhub("user", "remove", name, "--yes")


ACTIONS = {
    USERS: [{"action": a, "name": "someone"} for a in (
        "add", "approve", "reject", "reset-link", "block", "unblock", "admin-on",
        "admin-off", "logout", "remove")],
    GROUPS: [{"action": a, "group": "somegroup", "user": "someone"} for a in (
        "create", "delete", "add", "remove")],
}


def test_only_admins_get_in_and_every_post_needs_xsrf(hub: HubProcess) -> None:
    member, admin = client(hub, hub.member), client(hub, hub.admin)
    store = AccountStore(hub.paths.accounts_db)
    before = [(a.name, a.admin, a.blocked) for a in store.list()]
    for path, posts in ACTIONS.items():
        assert member.get(path).status_code == 403
        reply = admin.get(path)
        assert reply.status_code == 200 and "Content-Security-Policy" in reply.headers
        assert "'unsafe-inline'" not in reply.headers["Content-Security-Policy"].split(
            "script-src", 1)[1].split(";", 1)[0]
        for data in posts:
            # A member's valid token of its own does not make it an admin.
            assert post(member, path, data).status_code == 403, (path, data)
            assert post(admin, path, data, xsrf=False).status_code == 403, (path, data)
    assert [(a.name, a.admin, a.blocked) for a in store.list()] == before
    assert "somegroup" not in json.loads(hub.teamhub("group", "list", "--json").stdout)
