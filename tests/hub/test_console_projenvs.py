"""The console's Projects, Environments and My environments pages on a real hub, in real
Chromium: a grant and a revoke reach a running kernel, an env build's lines arrive while
it runs and its kernel reaches the user, a failed build changes nothing, a user makes and
deletes a personal env (as themselves), and who may do what.

Env builds use the package index (small packages: six, idna), as the env tests do. The
module's hub is unprivileged (the default): the root helper builds (env_build: uv as the
hub's account, the tree taken over by root) and runs `teamhub-env` as the user
(user_env)."""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import login, output_dir, screenshots, serious_violations
from support.client import Browser as Client
from support.hub import PASSWORD, HubFactory, HubProcess, unique, world_dir

pytestmark = [pytest.mark.hub, pytest.mark.system]

CONSOLE = "/hub/teamhub/console"
BAD = "teamhub-no-such-package-xyz"
BUILD_WAIT = 600_000  # ms: builds fetch from the package index on a shared machine


def _make_hub(hub_factory: HubFactory, **kwargs: Any) -> HubProcess:
    projects, envs = world_dir("teamhub-cprojects-"), world_dir("teamhub-cenvs-")
    h = hub_factory(extra_toml=f'[projects]\nroot = "{projects}"\n\n[envs]\nroot = "{envs}"\n',
                    **kwargs)
    h.scratch += [projects, envs]
    h.projects_root, h.envs_root = projects, envs
    h.admin, h.member = unique("adm"), unique("mem")
    h.group = unique("g")
    h.add_user(h.admin, PASSWORD, "--admin")
    h.add_user(h.member, PASSWORD)
    h.teamhub("group", "create", h.group)
    h.start()
    return h


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    """The default hub: unprivileged (hub.unprivileged)."""
    return _make_hub(hub_factory)


def client(hub: HubProcess, name: str) -> Client:
    c = Client(hub.url)
    assert c.login(name, PASSWORD).status_code == 302
    return c


def _member(hub: HubProcess) -> Client:
    c = client(hub, hub.member)
    c.start_server(hub.member)
    assert c.open_lab(hub.member).status_code == 200
    c.kernel = c.new_kernel(hub.member)
    c.wait_kernel(hub.member, c.kernel)
    return c


@pytest.fixture(scope="module")
def member(hub: HubProcess) -> Client:
    """The member with a running server and kernel (kernel id in .kernel)."""
    return _member(hub)


@pytest.fixture()
def page(hub: HubProcess, chromium) -> Iterator[Any]:
    context = chromium.new_context()
    p = context.new_page()
    p.on("dialog", lambda dialog: dialog.accept())  # data-confirm questions: yes
    try:
        yield p
    finally:
        context.close()


def hub_xsrf(c: Client) -> str:
    c.get(f"{CONSOLE}/myenvs")  # any hub page sets the hub's _xsrf cookie
    return c._xsrf("/hub/")


def test_members_get_403_on_every_admin_page_and_action(hub: HubProcess) -> None:
    c = client(hub, hub.member)
    token = hub_xsrf(c)
    for path in ("projects", "envs"):
        assert c.get(f"{CONSOLE}/{path}").status_code == 403
        reply = c.http.post(f"{hub.url}{CONSOLE}/{path}", timeout=30, data={
            "_xsrf": token, "action": "create" if path == "projects" else "delete",
            "name": "sneaky"})
        assert reply.status_code == 403, reply.text[:300]
    headers = {"X-XSRFToken": token}
    assert c.get(f"{CONSOLE}/envs/build", headers=headers).status_code == 403
    reply = c.http.post(f"{hub.url}{CONSOLE}/envs/build", headers=headers, timeout=30,
                        json={"action": "create", "name": "sneaky", "packages": "six"})
    assert reply.status_code == 403 and "sneaky" not in reply.text
    assert not (hub.envs_root / "sneaky").exists()
    assert "sneaky" not in hub.teamhub("project", "list").stdout
    # Their own page is theirs; the admin tabs are not shown to them.
    mine = c.get(f"{CONSOLE}/myenvs")
    assert mine.status_code == 200 and 'id="console-tab-myenvs"' in mine.text
    assert 'id="console-tab-projects"' not in mine.text
    assert "Content-Security-Policy" in mine.headers


def test_posts_without_xsrf_are_refused(hub: HubProcess) -> None:
    c = client(hub, hub.admin)
    hub_xsrf(c)
    for path, data in (("projects", {"action": "create", "name": "noxsrf"}),
                       ("envs", {"action": "delete", "name": "noxsrf"}),
                       ("myenvs", {"action": "delete", "name": "noxsrf"})):
        assert c.http.post(f"{hub.url}{CONSOLE}/{path}", data=data,
                           timeout=30).status_code == 403
    for path in ("envs/build", "myenvs/build"):
        reply = c.http.post(f"{hub.url}{CONSOLE}/{path}", timeout=30,
                            json={"action": "create", "name": "noxsrf", "packages": "six"})
        assert reply.status_code == 403
    assert "noxsrf" not in hub.teamhub("project", "list").stdout
    assert not (hub.envs_root / "noxsrf").exists()


def kernel_writes(c: Client, hub: HubProcess, project: str) -> str:
    """What the member's running kernel gets writing into the project's folder itself (not
    through ~/projects, whose link a revoke removes)."""
    out = c.execute(hub.member, c.kernel,
                    "import os\ntry:\n"
                    f"    open('{hub.projects_root / project}/k.txt', 'a').write('x')\n"
                    "    print('wrote')\nexcept OSError as e:\n    print(type(e).__name__)")
    assert not out["error"], out
    return out["stdout"].strip()


def test_projects_page_create_grant_revoke_reach_a_running_kernel(
        hub: HubProcess, member: Client, page) -> None:
    name = unique("proj")
    login(page, hub.url, hub.admin, PASSWORD, f"{CONSOLE}/projects")
    # Names with HTML are refused, and the refusal shows them as text.
    page.fill("#create-name", "<b>x</b>")
    page.eval_on_selector("#create-name", "e => e.removeAttribute('pattern')")
    page.click("#project-create button[type=submit]")
    assert "<b>x</b>" in page.text_content("#console-error")
    assert page.locator("#console-error b").count() == 0

    page.fill("#create-name", name)
    page.fill("#create-description", "<i>not markup</i>")
    page.click("#project-create button[type=submit]")
    assert f"created project {name}" in page.text_content("#console-message")
    section = f"#project-{name}"
    assert "<i>not markup</i>" in page.text_content(section)
    assert page.locator(f"{section} i").count() == 0

    page.fill(f"#grant-who-{name}", hub.member)
    page.select_option(f"#grant-access-{name}", "write")
    page.click(f"{section} .grant-form button[type=submit]")
    assert f"granted write on {name} to {hub.member}" in page.text_content("#console-message")
    assert hub.member in page.text_content(f"{section} .effective")
    assert kernel_writes(member, hub, name) == "wrote"

    # Not empty: refused as by the CLI; nothing is deleted.
    page.click(f"{section} form[data-confirm^='Delete'] button[type=submit]")
    assert "is not empty" in page.text_content("#console-error")
    assert (hub.projects_root / name / "k.txt").exists()

    page.click(f"{section} .grants form[data-confirm] button[type=submit]")
    assert f"revoked {hub.member} on {name}" in page.text_content("#console-message")
    assert kernel_writes(member, hub, name) == "PermissionError"  # the running kernel lost it

    log = page.text_content(f"{section} .audit-log")
    assert re.search(rf"{hub.admin}\s*grant\s*{hub.member}=write", log), log
    assert re.search(rf"{hub.admin}\s*revoke\s*{hub.member}", log), log
    page.click(f"{section} summary")
    assert serious_violations(page) == []
    screenshots(page, output_dir("console"), "projects")

    page.click(f"{section} form[data-confirm^='Archive'] button[type=submit]")
    assert f"archived project {name}" in page.text_content("#console-message")
    page.check(f"#force-{name}")
    page.click(f"{section} form[data-confirm^='Delete'] button[type=submit]")
    assert f"deleted project {name}; its files are in" in page.text_content("#console-message")
    assert not (hub.projects_root / name).exists()


def held_package(folder: Path, owner: int = 0) -> tuple[Path, Path]:
    """A local package whose build waits until the returned file exists: a build that
    installs it cannot end before the test lets it (FOLDER must be readable by whoever
    builds; OWNER owns the package folder, where its build writes). (package folder, the
    file that lets it go)."""
    go = folder / "go"
    pkg = folder / "heldpkg"
    pkg.mkdir()
    (pkg / "setup.py").write_text(
        "import os, time\nfrom setuptools import setup\n"
        f"deadline = time.time() + 900\nwhile not os.path.exists({str(go)!r}) "
        "and time.time() < deadline:\n    time.sleep(0.2)\n"
        "setup(name='heldpkg', version='1.0', py_modules=[])\n")
    for path in (folder, pkg):
        path.chmod(0o755)
    (pkg / "setup.py").chmod(0o644)
    os.chown(pkg, owner, owner)
    return pkg, go


def first_lines_arrive_while_held(page, form: str, go: Path, done: Path | None) -> None:
    """Submit FORM (its build installs the held package); its first lines must be in the
    page while the build is held (the build cannot end before GO exists; DONE, what it
    makes at its end, is still absent), then let it go. Output buffered to the end of the
    build would never show here."""
    page.click(f"{form} button[type=submit]")
    page.wait_for_function("() => document.getElementById('build-log').textContent.length > 0"
                           " || document.body.dataset.build !== 'running'",
                           timeout=BUILD_WAIT)
    assert page.evaluate("() => document.body.dataset.build") == "running", \
        page.text_content("#build-status")
    assert done is None or not done.exists()
    go.touch()


def build(page, form: str) -> str:
    """Submit the build FORM; wait for its end; 'ok' or 'failed'."""
    page.click(f"{form} button[type=submit]")
    page.wait_for_function("() => ['ok', 'failed'].includes(document.body.dataset.build)",
                           timeout=BUILD_WAIT)
    return page.evaluate("() => document.body.dataset.build")


def test_envs_page_streams_a_build_and_the_user_gets_the_kernel(
        hub: HubProcess, member: Client, page) -> None:
    name, held = unique("e"), unique("h")
    builder = pwd.getpwnam("teamhub")  # the hub's account (hub.account): the builder
    login(page, hub.url, hub.admin, PASSWORD, f"{CONSOLE}/envs")
    # The build's lines reach the page while it runs, not at its end.
    pkg, go = held_package(Path(world_dir("teamhub-cheld-")), builder.pw_uid)
    hub.scratch.append(pkg.parent)
    page.fill("#env-create-name", held)
    page.fill("#env-create-packages", str(pkg))
    first_lines_arrive_while_held(page, "#env-create", go, hub.envs_root / held / "current")
    page.wait_for_function("() => document.body.dataset.build !== 'running'", timeout=BUILD_WAIT)
    assert page.evaluate("() => document.body.dataset.build") == "ok", \
        page.text_content("#build-status")

    page.fill("#env-create-name", name)
    page.fill("#env-create-packages", "six")
    assert build(page, "#env-create") == "ok", page.text_content("#build-status")
    log = page.text_content("#build-log")
    assert f"==> [{name} rev 1] creating venv" in log and "installing six" in log
    assert f"created environment {name}" in page.text_content("#build-status")
    assert f"env-{name}" in member.kernelspecs(hub.member)
    # uv ran as the hub's account (its own cache); the revision is root's, nothing of it
    # the hub's account's, nothing group/other may write, no setuid.
    assert "taking over the built tree" in log
    cache = hub.envs_root / ".cache-build"
    assert os.stat(cache).st_uid == builder.pw_uid and os.stat(cache).st_mode & 0o777 == 0o700
    rev = hub.envs_root / name / "revs" / "1"
    odd = [f"{p} {oct(st.st_mode)} {st.st_uid}" for p in [rev, *rev.rglob("*")]
           if (st := p.lstat()).st_uid != 0
           or (not p.is_symlink() and st.st_mode & 0o7022)]
    assert odd == []

    page.click("#build-reload")
    page.wait_for_selector(f"#env-{name}")
    assert page.text_content(f"#env-{name} .env-revision").strip() == "rev 1"
    assert "MiB" in page.text_content(f"#env-{name} .env-size")
    assert serious_violations(page) == []
    screenshots(page, output_dir("console"), "envs")

    # A failed build shows uv's error and leaves `current` as it was.
    page.fill(f"#install-{name}", BAD)
    assert build(page, f"#env-{name} form:has(#install-{name})") == "failed"
    status = page.text_content("#build-status")
    assert BAD in status and "unchanged" in status
    assert os.readlink(hub.envs_root / name / "current") == "revs/1"

    # Install, then roll back from the history.
    page.fill(f"#install-{name}", "idna")
    assert build(page, f"#env-{name} form:has(#install-{name})") == "ok"
    page.click("#build-reload")
    page.wait_for_selector(f"#env-{name}")
    assert "idna" in page.text_content(f"#env-{name} .env-packages")
    page.click(f"#env-{name} summary")
    page.click(f"#env-{name} .env-history form button[type=submit]")
    assert "revision 1 is now current" in page.text_content("#console-message")
    assert os.readlink(hub.envs_root / name / "current") == "revs/1"

    # Visibility: only a group the member is not in, then everyone again.
    page.fill(f"#groups-{name}", hub.group)
    page.click(f"#env-{name} form:has(#groups-{name}) button[type=submit]")
    assert f"visible to {hub.group}" in page.text_content("#console-message")
    assert f"env-{name}" not in member.kernelspecs(hub.member)
    page.fill(f"#groups-{name}", "")
    page.click(f"#env-{name} form:has(#groups-{name}) button[type=submit]")
    assert f"env-{name}" in member.kernelspecs(hub.member)

    page.click(f"#env-{name} form:has(input[value=export]) button[type=submit]")
    export = page.text_content("#env-export")
    assert "six==" in export and "--hash=sha256:" in export


def test_env_names_with_html_are_refused_as_text(hub: HubProcess, page) -> None:
    login(page, hub.url, hub.admin, PASSWORD, f"{CONSOLE}/envs")
    page.fill("#env-create-name", "<img src=x>")
    assert build(page, "#env-create") == "failed"
    assert "invalid environment name '<img src=x>'" in page.text_content("#build-status")
    assert page.locator("#build img").count() == 0
    assert not [p for p in os.listdir(hub.envs_root) if "<" in p or "img" in p]


def test_a_user_makes_and_deletes_a_personal_env_as_themselves(
        hub: HubProcess, member: Client, page) -> None:
    """On the unprivileged hub: the root helper runs `teamhub-env` as the user (user_env)."""
    login(page, hub.url, hub.member, PASSWORD, f"{CONSOLE}/myenvs")
    account = pwd.getpwnam(hub.system_user(hub.member))
    venv = os.path.join(account.pw_dir, ".venvs", "mine")
    pkg, go = held_package(Path(world_dir("teamhub-cheld-")), account.pw_uid)
    hub.scratch.append(pkg.parent)
    page.fill("#myenv-name", "mine")
    page.fill("#myenv-packages", f"six {pkg}")
    # Lines come while the build is held: teamhub-env's output is not buffered to its end.
    first_lines_arrive_while_held(page, "#myenv-create", go, None)
    page.wait_for_function("() => document.body.dataset.build !== 'running'", timeout=BUILD_WAIT)
    assert page.evaluate("() => document.body.dataset.build") == "ok", \
        page.text_content("#build-status")
    assert "Python (mine, personal)" in page.text_content("#build-status")
    assert os.stat(venv).st_uid == account.pw_uid  # made by the user, not by root
    assert os.lstat(os.path.join(venv, "bin", "python")).st_uid == account.pw_uid
    six = list(Path(venv).glob("lib/python*/site-packages/six.py"))
    assert six and six[0].stat().st_uid == account.pw_uid
    assert "personal-mine" in member.kernelspecs(hub.member)
    # A kernel of it runs, the env's own python.
    kernel = member.new_kernel(hub.member, "personal-mine")
    member.wait_kernel(hub.member, kernel)
    out = member.execute(hub.member, kernel, "import sys, six; print(sys.prefix)")
    assert out["stdout"].strip() == venv, out

    page.click("#build-reload")
    page.wait_for_selector("#myenv-mine")
    assert serious_violations(page) == []
    screenshots(page, output_dir("console"), "myenvs")
    page.click("#myenv-mine button[type=submit]")
    assert "deleted" in page.text_content("#console-message")
    assert not os.path.exists(venv)
    assert page.locator("#myenv-mine").count() == 0

    # A name that is no env name is refused before anything runs.
    page.fill("#myenv-name", "../x")
    assert build(page, "#myenv-create") == "failed"
    assert "invalid environment name" in page.text_content("#build-status")
