"""A user's first day in real headless Chromium, on one hub: the hub's pages say teamhub,
the terminal has teamhub's commands, a personal env made there reaches the launcher
within seconds and pointing at its card (or choosing it in the kernel dialog, or
pointing at a notebook of it in the file browser or at a link to one, or typing its path
in Open from Path) starts its warm parent, as does opening a notebook of it by its URL;
widgets and progress bars work, the layout comes back after logging out and in, /tree
is Notebook 7, no news prompt, a system-wide non-Python kernel runs, an ssh-like `su -`
login has teamhub's commands, and the admin adds a Lab extension.

The tests run in file order and build on each other (the env made in the terminal runs
the widgets notebook; its tabs are the restored layout), like the day they describe.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, runtime_dir, unique
from test_forkserver import parent_of

from teamhub import __version__
from teamhub.system.processes import processes_of

pytestmark = [pytest.mark.hub, pytest.mark.system]

ENV_NAME = "dayone"
MARK = "day-one-value"
# A system-wide kernel spec, as a distribution package installs one (e.g. r-cran-irkernel).
SYSTEM_KERNELS = Path("/usr/local/share/jupyter/kernels")
PROFILE = Path("/etc/profile.d/teamhub.sh")
# Lab asks for kernel specs by itself once a minute: well under that, not a timing claim.
LAUNCHER_DEADLINE = 15
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> Iterator[HubProcess]:
    h = hub_factory(extra_toml=f'\n[spawner.environment]\nTEAMHUB_DAY_ONE = "{MARK}"\n')
    h.user = unique("d1")
    h.kernel = unique("bash-d1-")
    spec_dir = SYSTEM_KERNELS / h.kernel
    # This hub's `teamhub up` must be what writes the login profile (not an earlier hub).
    PROFILE.unlink(missing_ok=True)
    try:
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [str(runtime_dir() / "bin" / "python"), "-m", "bash_kernel", "-f",
                     "{connection_file}"],
            "display_name": "Bash (day one)", "language": "bash"}))
        h.add_user(h.user, PASSWORD)
        h.start()
        yield h
    finally:
        shutil.rmtree(spec_dir, ignore_errors=True)
        h.stop()
        PROFILE.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def context(chromium):
    ctx = chromium.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


def home(hub: HubProcess) -> Path:
    return Path(pwd.getpwnam(hub.system_user(hub.user)).pw_dir)


def login(page: Any, hub: HubProcess) -> None:
    page.goto(f"{hub.url}/hub/login?next=/hub/home")
    page.fill("#username_input", hub.user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home"))


def open_lab(page: Any, hub: HubProcess) -> None:
    """Lab in PAGE; the server is started first (through the hub's spawn page) if needed."""
    page.goto(f"{hub.url}/hub/spawn", timeout=120000)
    page.wait_for_url(re.compile(rf"/user/{hub.user}/lab"), timeout=120000)
    page.wait_for_selector("#jupyter-config-data", state="attached", timeout=90000)
    page.wait_for_selector(".jp-LabShell", timeout=90000)


def wait_for_file(path: Path, timeout: float, text: str = "") -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            content = path.read_text()
            if text in content:
                return content
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{path} did not appear (with {text!r}) within {timeout}s")


def put_notebook(hub: HubProcess, name: str, cells: list[str], kernel: str,
                 markdown: Sequence[str] = ()) -> None:
    """A notebook of KERNEL in the user's home: the MARKDOWN cells, then the code CELLS."""
    account = pwd.getpwnam(hub.system_user(hub.user))
    nb = {"cells": [{"cell_type": "markdown", "id": f"m{i}", "metadata": {}, "source": src}
                    for i, src in enumerate(markdown)]
          + [{"cell_type": "code", "execution_count": None, "id": f"c{i}",
              "metadata": {}, "outputs": [], "source": src}
             for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"name": kernel, "display_name": kernel,
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = Path(account.pw_dir) / name
    path.write_text(json.dumps(nb))
    os.chown(path, account.pw_uid, account.pw_gid)


def choose_from_menu(page: Any, menu: str, item: str) -> None:
    """Menu bar › MENU › the item whose label starts with ITEM (some end in "…")."""
    page.get_by_role("menuitem", name=menu, exact=True).click()
    page.get_by_role("menuitem", name=re.compile("^" + re.escape(item))).click()


@pytest.fixture(scope="module")
def page(hub: HubProcess, context) -> Any:
    page = context.new_page()
    login(page, hub)
    return page


def test_hub_pages_say_teamhub(hub: HubProcess, page: Any) -> None:
    assert page.title() == "teamhub"
    footer = page.inner_text("#teamhub-footer")
    assert f"teamhub {__version__}" in footer and "JupyterHub" in footer
    # Still JupyterHub's page: its nav bar and its start button.
    assert page.locator("#start").count() == 1


def test_terminal_has_teamhub_env_python_and_environment(hub: HubProcess, page: Any) -> None:
    open_lab(page, hub)
    page.locator(".jp-LauncherCard[title*='Terminal'], .jp-LauncherCard:has-text('Terminal')"
                 ).first.click()
    page.wait_for_selector(".jp-Terminal .xterm", timeout=60000)
    page.click(".jp-Terminal .xterm")
    page.keyboard.type(
        f"teamhub-env create {ENV_NAME} ipywidgets tqdm > ~/create.log 2>&1; "
        "{ command -v teamhub-env; command -v python; command -v jupyter; "
        "python -c 'import sys; print(sys.prefix)'; echo \"env=$TEAMHUB_DAY_ONE\"; "
        "} > ~/terminal.txt 2>&1; touch ~/terminal-done\n")
    wait_for_file(home(hub) / "terminal-done", 600)
    hub.created_at = time.monotonic()
    lines = (home(hub) / "terminal.txt").read_text().splitlines()
    bindir = str(runtime_dir() / "bin")
    assert lines[:3] == [f"{bindir}/teamhub-env", f"{bindir}/python", f"{bindir}/jupyter"], \
        lines
    assert lines[3] == str(runtime_dir())
    assert lines[4] == f"env={MARK}"
    assert (home(hub) / ".venvs" / ENV_NAME / "bin" / "python").exists(), \
        (home(hub) / "create.log").read_text()[-2000:]


def test_personal_env_reaches_the_launcher_without_reload(hub: HubProcess, page: Any) -> None:
    # A new launcher shows the kernels Lab knows now; the env's card must appear in it
    # without reloading the page.
    choose_from_menu(page, "File", "New Launcher")
    card = page.locator(f".jp-LauncherCard:has-text('{ENV_NAME}, personal')").first
    card.wait_for(state="attached", timeout=LAUNCHER_DEADLINE * 1000)
    took = time.monotonic() - hub.created_at
    print(f"personal env in the launcher {took:.1f}s after teamhub-env create returned")


def env_parents(hub: HubProcess) -> list[int]:
    """The user's warm kernel parents of the personal env made in the terminal."""
    python = str(home(hub) / ".venvs" / ENV_NAME / "bin" / "python")
    found = []
    for pid in processes_of(pwd.getpwnam(hub.system_user(hub.user)).pw_uid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue  # ended since it was listed
        if cmd[0] == python and any(part.endswith("warm_parent.py") for part in cmd):
            found.append(pid)
    return found


def wait_for_env_parent(hub: HubProcess, after: str) -> None:
    deadline = time.monotonic() + LAUNCHER_DEADLINE
    while not env_parents(hub):
        assert time.monotonic() < deadline, f"no warm parent after {after}"
        time.sleep(0.2)


@contextmanager
def env_notebooks_in(hub: HubProcess, context: Any, folder: str,
                     names: Sequence[str]) -> Iterator[Any]:
    """A new page, with no parent of the env running and notebooks of it named NAMES in
    the user's FOLDER (removed after)."""
    stop_env_parents(hub)
    account = pwd.getpwnam(hub.system_user(hub.user))
    path = home(hub) / folder
    path.mkdir(exist_ok=True)
    os.chown(path, account.pw_uid, account.pw_gid)
    for name in names:
        put_notebook(hub, f"{folder}/{name}", ["print(1)"], f"personal-{ENV_NAME}")
    page = context.new_page()
    try:
        yield page
    finally:
        page.close()
        shutil.rmtree(path, ignore_errors=True)


def stop_env_parents(hub: HubProcess) -> None:
    for pid in env_parents(hub):
        os.kill(pid, signal.SIGTERM)  # as if it had gone unused: the server starts a new one
    deadline = time.monotonic() + 30
    while env_parents(hub):
        assert time.monotonic() < deadline, "the env's parent did not stop"
        time.sleep(0.1)


def test_pointing_at_an_envs_launcher_card_starts_its_warm_parent(hub: HubProcess,
                                                                   page: Any) -> None:
    """No kernel of the env has run yet: teamhub's Lab extension tells the server once the
    pointer rests on its card, and the env's warm parent starts before any click (its
    first kernel, in the next test, is forked from it)."""
    assert env_parents(hub) == []
    page.locator(f".jp-LauncherCard:has-text('{ENV_NAME}, personal')").first.hover()
    wait_for_env_parent(hub, "pointing at the card")
    page.mouse.move(0, 0)


def test_choosing_an_env_in_the_kernel_dialog_starts_its_warm_parent(hub: HubProcess,
                                                                      context: Any) -> None:
    """Change Kernel: choosing the env in the dialog starts its parent before "Select"."""
    stop_env_parents(hub)
    put_notebook(hub, "choose.ipynb", ["print(1)"], "python3")
    # A workspace of its own: the day's layout (restored later) is not touched.
    page = context.new_page()
    try:
        page.goto(f"{hub.url}/user/{hub.user}/lab/workspaces/choose/tree/choose.ipynb")
        page.wait_for_selector(".jp-StatusBar-Widget:has-text('| Idle')", timeout=120000)
        choose_from_menu(page, "Kernel", "Change Kernel")
        select = page.locator(".jp-Dialog select")
        select.wait_for(timeout=30000)
        option = select.locator(f"option:has-text('{ENV_NAME}, personal')").first
        select.select_option(value=option.get_attribute("value"))
        wait_for_env_parent(hub, "choosing the env")
        page.locator(".jp-Dialog button.jp-mod-reject").click()  # it keeps python3
    finally:
        page.close()


def test_pointing_at_a_notebook_in_the_file_browser_starts_its_kernels_parent(
        hub: HubProcess, context: Any) -> None:
    """A notebook of the env in a folder: the pointer resting on it in the file browser
    starts the env's parent before the double-click opens it."""
    with env_notebooks_in(hub, context, "hints", ["pick.ipynb"]) as page:
        page.goto(f"{hub.url}/user/{hub.user}/lab/workspaces/pick")
        page.locator(".jp-DirListing-item:has-text('hints')").first.dblclick(timeout=120000)
        item = page.locator(".jp-DirListing-item:has-text('pick.ipynb')").first
        item.wait_for(timeout=30000)
        assert env_parents(hub) == []
        item.hover()
        wait_for_env_parent(hub, "pointing at the notebook")


def test_pointing_at_a_link_to_a_notebook_starts_its_kernels_parent(
        hub: HubProcess, context: Any) -> None:
    """A notebook's Markdown links to notebooks of the env beside it, in a folder (their
    names need quoting in a URL): the pointer resting on the link, or the keyboard's focus, starts
    the env's parent before the click opens it; a link to a notebook of no kernel here
    and a web link start nothing."""
    with env_notebooks_in(hub, context, "read me", ["next step.ipynb", "step two.ipynb"]) \
            as page:
        put_notebook(hub, "read me/elsewhere.ipynb", ["print(1)"], "no-such-kernel")
        put_notebook(hub, "read me/index.ipynb", [], "python3", markdown=[
            "[the web](https://example.invalid/a.ipynb)",
            "[elsewhere](elsewhere.ipynb)",
            "[the next step](next%20step.ipynb)",
            "[step two](./step%20two.ipynb)"])
        page.goto(f"{hub.url}/user/{hub.user}/lab/workspaces/links/tree/read%20me/index.ipynb")
        for name in ("the web", "elsewhere", "the next step", "step two"):
            page.locator(f".jp-RenderedMarkdown a:has-text('{name}')").first.wait_for(
                timeout=120000)
        for name in ("the web", "elsewhere"):
            page.locator(f".jp-RenderedMarkdown a:has-text('{name}')").first.hover()
            time.sleep(1)  # ten times the rest that sends a hint
            page.mouse.move(0, 0)
        assert env_parents(hub) == []
        page.locator(".jp-RenderedMarkdown a:has-text('the next step')").first.hover()
        wait_for_env_parent(hub, "pointing at the link")
        page.mouse.move(0, 0)
        stop_env_parents(hub)
        # As Tab reaches it; another notebook (the same one is hinted once per 30 s).
        page.locator(".jp-RenderedMarkdown a:has-text('step two')").first.focus()
        wait_for_env_parent(hub, "the keyboard's focus on the link")


def test_typing_a_notebooks_path_in_open_from_path_starts_its_kernels_parent(
        hub: HubProcess, context: Any) -> None:
    """File › Open from Path: the path of a notebook of the env, typed (with JupyterLab's
    leading slash) and left to rest, starts the env's parent before "Open"; the path of a
    folder on the way there starts nothing."""
    with env_notebooks_in(hub, context, "typed", ["typed.ipynb"]) as page:
        page.goto(f"{hub.url}/user/{hub.user}/lab/workspaces/typed")
        page.wait_for_selector(".jp-LabShell", timeout=120000)
        choose_from_menu(page, "File", "Open from Path")
        field = page.locator(".jp-Dialog input")
        field.press_sequentially("/typed", delay=20)
        time.sleep(1)  # ten times the rest that sends a hint
        assert env_parents(hub) == []
        field.press_sequentially("/typed.ipynb", delay=20)
        wait_for_env_parent(hub, "typing the notebook's path")
        page.keyboard.press("Escape")


def parent_or_none(pid: int) -> int | None:
    try:
        return parent_of(pid)
    except OSError:
        return None  # ended since it was listed


def test_opening_a_notebook_by_its_url_starts_its_kernels_parent_first(
        hub: HubProcess, context: Any) -> None:
    """A link to a notebook of the env: the server starts the env's parent when it serves
    the page, so it runs before JupyterLab, loading, asks for the notebook's kernel (the
    sessions request is held in the browser until the parent has been looked for)."""
    stop_env_parents(hub)
    put_notebook(hub, "linked.ipynb", ["print(1)"], f"personal-{ENV_NAME}")
    page = context.new_page()
    parents_when_asked: list[list[int]] = []
    asked_at: list[float] = []

    def sessions(route: Any) -> None:
        if route.request.method == "POST" and not parents_when_asked:
            parents_when_asked.append(env_parents(hub))
            asked_at.append(time.clock_gettime(time.CLOCK_BOOTTIME))
        route.continue_()

    page.route(re.compile(r"/api/sessions"), sessions)
    try:
        page.goto(f"{hub.url}/user/{hub.user}/lab/workspaces/linked/tree/linked.ipynb")
        page.wait_for_selector(f".jp-StatusBar-Widget:has-text('{ENV_NAME}, personal) | Idle')",
                               timeout=120000)
        assert parents_when_asked, "JupyterLab asked for no session"
        [parent] = parents_when_asked[0]
        started = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[19])
        print(f"JupyterLab asked for the kernel {asked_at[0] - started / CLOCK_TICKS:.2f} s "
              "after the server started its parent")
        uid = pwd.getpwnam(hub.system_user(hub.user)).pw_uid
        assert parent in map(parent_or_none, processes_of(uid)), \
            "the notebook's kernel did not come from it"
    finally:
        page.close()
        (home(hub) / "linked.ipynb").unlink(missing_ok=True)


def test_widget_slider_and_tqdm_progress_bar(hub: HubProcess, page: Any) -> None:
    put_notebook(hub, "widgets.ipynb", [
        "import ipywidgets as w\n"
        "s = w.IntSlider(5)\n"
        "s.observe(lambda ch: open('slider.txt', 'w').write(str(ch['new'])), 'value')\n"
        "s",
        "from tqdm.notebook import tqdm\nimport time\n"
        "for _ in tqdm(range(20)):\n    time.sleep(0.05)",
    ], f"personal-{ENV_NAME}")
    page.goto(f"{hub.url}/user/{hub.user}/lab/tree/widgets.ipynb")
    # The kernel has answered once the status bar shows it idle (not "Connecting").
    page.wait_for_selector(f".jp-StatusBar-Widget:has-text('{ENV_NAME}, personal) | Idle')",
                           timeout=180000)
    handle = page.locator(".jp-OutputArea .widget-slider .noUi-handle").first
    dialogs = []
    for attempt in range(3):
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            # Lab asks for a kernel when a run reaches a notebook whose session is not up.
            dialogs.append(dialog.first.inner_text())
            dialog.locator("select").select_option(f"personal-{ENV_NAME}")
            dialog.locator("button.jp-mod-accept").click()
        page.click(".jp-Notebook .jp-Cell .cm-content >> nth=0")
        page.keyboard.press("Shift+Enter")
        page.keyboard.press("Shift+Enter")
        try:
            handle.wait_for(timeout=60000)
            break
        except Exception:  # noqa: BLE001 - once more, then show what is there
            page.screenshot(path=f"/tmp/lab-dbg/widgets{attempt}.png")
            if attempt == 2:
                raise AssertionError(f'{page.inner_text(".jp-Notebook")} {dialogs}') from None
    page.wait_for_selector(".jp-OutputArea .widget-readout:has-text('5')", timeout=30000)
    page.wait_for_selector(".jp-OutputArea .widget-html-content:has-text('100%')",
                           timeout=120000)
    handle.focus()
    page.keyboard.press("ArrowRight")
    assert wait_for_file(home(hub) / "slider.txt", 60) == "6"


def test_layout_with_two_notebooks_restored_after_logout(hub: HubProcess, page: Any,
                                                        context) -> None:
    put_notebook(hub, "second.ipynb", ["1 + 1"], "python3")
    page.goto(f"{hub.url}/user/{hub.user}/lab/tree/second.ipynb")
    page.wait_for_selector(".lm-TabBar-tab:has-text('second.ipynb')", timeout=90000)
    workspaces = home(hub) / ".jupyter" / "lab" / "workspaces"
    deadline = time.monotonic() + 60
    saved = ""
    while time.monotonic() < deadline:
        saved = "".join(p.read_text() for p in workspaces.glob("*.jupyterlab-workspace"))
        if "notebook:second.ipynb" in saved and "notebook:widgets.ipynb" in saved:
            break
        time.sleep(0.5)
    assert "notebook:second.ipynb" in saved and "notebook:widgets.ipynb" in saved, saved
    page.goto(f"{hub.url}/hub/logout")
    context.clear_cookies()
    login(page, hub)
    open_lab(page, hub)
    for name in ("widgets.ipynb", "second.ipynb"):
        page.wait_for_selector(f".lm-TabBar-tab:has-text('{name}')", timeout=60000)


def test_tree_is_the_notebook_file_view(hub: HubProcess, page: Any) -> None:
    page.goto(f"{hub.url}/user/{hub.user}/tree")
    page.wait_for_selector(".jp-DirListing-item:has-text('widgets.ipynb')", timeout=90000)
    assert re.search(rf"/user/{hub.user}/tree", page.url)
    assert page.locator(".jp-LabShell").count() == 0  # Notebook 7's shell, not Lab's


def test_doctor_checks_that_the_default_url_is_served(hub: HubProcess) -> None:
    for url, ok, warning in (("/tree", True, False), ("/lab", True, False),
                             ("/voila/render/x.ipynb", True, True)):
        hub.teamhub("config", "set", "hub.default_url", url)
        proc = hub.teamhub("doctor", "--json", "--check", "default URL served", check=False)
        [result] = json.loads(proc.stdout)["checks"]
        assert (result["ok"], result["warning"]) == (ok, warning), result
    hub.teamhub("config", "unset", "hub.default_url")


def test_no_jupyter_news_prompt_by_default(hub: HubProcess) -> None:
    b = Browser(hub.url)
    assert b.login(hub.user, PASSWORD).status_code == 302
    b.open_lab(hub.user)
    resp = b.get(f"/user/{hub.user}/lab/api/settings/@jupyterlab/apputils-extension:notification")
    assert resp.status_code == 200, resp.text[:300]
    # The runtime's overrides are the schema's defaults; the user's own settings can change them.
    defaults = {k: v.get("default") for k, v in resp.json()["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false", defaults
    assert defaults["checkForUpdates"] is False, defaults


def test_status_bar_memory_is_answered(hub: HubProcess) -> None:
    """jupyter-resource-usage's API answers (servers run without its Prometheus gauges)."""
    b = Browser(hub.url)
    assert b.login(hub.user, PASSWORD).status_code == 302
    b.open_lab(hub.user)
    resp = b.get(f"/user/{hub.user}/api/metrics/v1")
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["rss"] > 0, resp.json()


def test_system_wide_non_python_kernel_runs_with_the_environment(hub: HubProcess) -> None:
    b = Browser(hub.url)
    assert b.login(hub.user, PASSWORD).status_code == 302
    b.open_lab(hub.user)
    specs = b.kernelspecs(hub.user)
    assert specs[hub.kernel]["language"] == "bash", specs.get(hub.kernel)
    kernel = b.new_kernel(hub.user, hub.kernel)
    for _ in range(10):
        out = b.execute(hub.user, kernel, "echo $TEAMHUB_DAY_ONE; id -un")
        if out["stdout"]:
            break
        time.sleep(0.5)
    assert out["stdout"].split() == [MARK, hub.system_user(hub.user)], out


def test_su_login_shell_has_teamhub_env_and_environment(hub: HubProcess) -> None:
    script = ("command -v teamhub-env; command -v python; "
              "python -c 'import sys; print(sys.prefix)'; echo \"env=$TEAMHUB_DAY_ONE\"")
    proc = subprocess.run(["su", "-", hub.system_user(hub.user), "-c", script],
                          capture_output=True, text=True, timeout=60)
    bindir = str(runtime_dir() / "bin")
    assert proc.stdout.splitlines() == [f"{bindir}/teamhub-env", f"{bindir}/python",
                                        str(runtime_dir()), f"env={MARK}"], proc


def test_admin_adds_and_removes_a_lab_extension(hub: HubProcess) -> None:
    package, extension = "jupyterlab-execute-time", "jupyterlab-execute-time"
    refused = hub.teamhub("lab", "install", "tomli", check=False)
    assert refused.returncode != 0 and "no prebuilt JupyterLab extension" in refused.stderr
    hub.teamhub("lab", "install", package)
    try:
        listed = json.loads(hub.teamhub("lab", "list", "--json").stdout)
        assert [(e["name"], e["ok"]) for e in listed] == [(package, True)], listed
        assert extension in listed[0]["extensions"]
        doctor = hub.teamhub("doctor", "--check", "lab extensions", check=False)
        assert package in doctor.stdout, doctor.stdout
        b = Browser(hub.url)
        assert b.login(hub.user, PASSWORD).status_code == 302
        assert f'"name": "{extension}"' in b.open_lab(hub.user).text.replace('":"', '": "')
        # A rebuilt runtime lacks it: doctor says so, and `lab sync` (install.sh) brings it back.
        subprocess.run([str(runtime_dir() / "bin" / "uv"), "pip", "uninstall", "--python",
                        str(runtime_dir() / "bin" / "python"), package], check=True,
                       capture_output=True, timeout=120)
        doctor = hub.teamhub("doctor", "--check", "lab extensions", check=False)
        assert doctor.returncode == 1 and "teamhub lab sync" in doctor.stdout, doctor.stdout
        assert package in hub.teamhub("lab", "sync").stdout
        assert hub.teamhub("doctor", "--check", "lab extensions", check=False).returncode == 0
    finally:
        hub.teamhub("lab", "uninstall", package)
    assert json.loads(hub.teamhub("lab", "list", "--json").stdout) == []
