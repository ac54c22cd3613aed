"""Environments as kernels, end to end: shared envs built by the CLI appear in allowed
users' launchers and run with their own prefix; personal envs appear for their owner
only; %pip in a shared env explains itself; spawner.environment reaches kernels."""

from __future__ import annotations

import os
import pwd
import shutil
import time

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubProcess, unique, world_dir

pytestmark = [pytest.mark.hub, pytest.mark.system]



@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    envs_root = world_dir("teamhub-envs-")
    projects_root = world_dir("teamhub-envprojects-")
    extra = f"""
[envs]
root = "{envs_root}"

[projects]
root = "{projects_root}"

[spawner.environment]
THX_VAR = "hello from settings"
LD_LIBRARY_PATH = "/opt/thx/lib"
PATH = "/opt/thx/bin"
"""
    h = HubProcess(tmp_path_factory.mktemp("hub"), extra_toml=extra)
    h.envs_root = envs_root
    h.projects_root = projects_root
    h.alice, h.bob = unique("alice"), unique("bob")
    try:
        h.add_user(h.alice, PASSWORD)
        h.add_user(h.bob, PASSWORD)
        h.teamhub("group", "create", "ml")
        h.teamhub("group", "add", "ml", h.alice)
        h.teamhub("env", "create", "shared", "six")
        h.teamhub("env", "create", "secret", "idna", "--groups", "ml")
        h.teamhub("project", "create", "planted", "--writers", h.alice, "--readers", h.bob)
        h.start()
        yield h
    finally:
        h.cleanup()
        shutil.rmtree(envs_root, ignore_errors=True)
        shutil.rmtree(projects_root, ignore_errors=True)


def _browser(hub: HubProcess, name: str) -> Browser:
    b = Browser(hub.url)
    assert b.login(name, PASSWORD).status_code == 302
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    return b


@pytest.fixture(scope="module")
def alice(hub: HubProcess) -> Browser:
    return _browser(hub, hub.alice)


@pytest.fixture(scope="module")
def bob(hub: HubProcess) -> Browser:
    return _browser(hub, hub.bob)


@pytest.fixture(scope="module")
def shared_kernel(hub: HubProcess, alice: Browser) -> str:
    kernel = alice.new_kernel(hub.alice, "env-shared")
    alice.wait_kernel(hub.alice, kernel)
    return kernel


def test_launchers_show_shared_envs_by_group(hub: HubProcess, alice: Browser,
                                             bob: Browser) -> None:
    a, b = alice.kernelspecs(hub.alice), bob.kernelspecs(hub.bob)
    assert {"python3", "env-shared", "env-secret"} <= set(a)
    assert {"python3", "env-shared"} <= set(b)
    assert "env-secret" not in b
    assert a["env-shared"]["display_name"] == "Python (shared)"


def test_group_membership_changes_env_visibility_at_once(hub: HubProcess,
                                                         bob: Browser) -> None:
    hub.teamhub("group", "add", "ml", hub.bob)
    try:
        assert "env-secret" in bob.kernelspecs(hub.bob)
    finally:
        hub.teamhub("group", "remove", "ml", hub.bob)
    assert "env-secret" not in bob.kernelspecs(hub.bob)


def test_shared_kernel_runs_in_the_env(hub: HubProcess, alice: Browser,
                                       shared_kernel: str) -> None:
    out = alice.execute(hub.alice, shared_kernel,
                        "import sys, os, six; print(sys.prefix); print(os.getuid())")
    assert not out["error"], out
    prefix, uid = out["stdout"].split()
    env = hub.envs_root / "shared"
    assert prefix in (str(env / "current"), os.path.realpath(env / "current"))
    assert int(uid) == pwd.getpwnam(hub.system_user(hub.alice)).pw_uid


def test_pip_in_shared_env_explains_and_installs_nothing(hub: HubProcess, alice: Browser,
                                                        shared_kernel: str) -> None:
    out = alice.execute(hub.alice, shared_kernel, "%pip install idna")
    assert not out["error"], out
    assert "read-only" in out["stdout"] and "teamhub-env create" in out["stdout"]
    assert "teamhub env install shared idna" in out["stdout"]
    out = alice.execute(hub.alice, shared_kernel, "import idna")
    assert out["error"].startswith("ModuleNotFoundError")


def test_settings_environment_reaches_every_kernel(hub: HubProcess, alice: Browser,
                                                   shared_kernel: str) -> None:
    code = ("import os; print(os.environ.get('THX_VAR')); print(os.environ.get("
            "'LD_LIBRARY_PATH')); print(os.environ['PATH'])")
    python3 = alice.new_kernel(hub.alice)
    alice.wait_kernel(hub.alice, python3)
    for kernel in (shared_kernel, python3):
        out = alice.execute(hub.alice, kernel, code)
        assert not out["error"], out
        var, ld, path = out["stdout"].splitlines()
        assert var == "hello from settings"
        assert ld == "/opt/thx/lib"
        parts = path.split(":")
        assert "/opt/thx/bin" in parts and "/usr/bin" in parts
    # In the shared env's kernel its own bin/ comes first.
    assert parts[0].endswith("/bin")


def test_personal_env_appears_for_its_owner_only(hub: HubProcess, alice: Browser,
                                                 bob: Browser) -> None:
    kernel = alice.new_kernel(hub.alice)
    alice.wait_kernel(hub.alice, kernel)
    out = alice.execute(hub.alice, kernel,
                        "import subprocess; p = subprocess.run(['teamhub-env', 'create', "
                        "'mine', 'six'], capture_output=True, text=True); "
                        "print(p.returncode); print(p.stderr[-400:])", timeout=240)
    assert out["stdout"].startswith("0"), out
    deadline = time.monotonic() + 10
    while "personal-mine" not in alice.kernelspecs(hub.alice):
        assert time.monotonic() < deadline, "personal env did not show up"
        time.sleep(0.5)
    spec = alice.kernelspecs(hub.alice)["personal-mine"]
    assert spec["display_name"] == "Python (mine, personal)"
    assert "personal-mine" not in bob.kernelspecs(hub.bob)
    mine = alice.new_kernel(hub.alice, "personal-mine")
    alice.wait_kernel(hub.alice, mine)
    out = alice.execute(hub.alice, mine, "import sys, six; print(sys.prefix)")
    home = pwd.getpwnam(hub.system_user(hub.alice)).pw_dir
    assert out["stdout"].strip() == f"{home}/.venvs/mine", out
    # Made by hand, without teamhub-env: shows up too.
    alice.execute(hub.alice, kernel,
                  "import shutil, os; shutil.copytree(os.path.expanduser('~/.venvs/mine'), "
                  "os.path.expanduser('~/.venvs/byhand'), symlinks=True)")
    deadline = time.monotonic() + 10
    while "personal-byhand" not in alice.kernelspecs(hub.alice):
        assert time.monotonic() < deadline, "hand-made env did not show up"
        time.sleep(0.5)


def test_access_and_delete_take_effect_without_restart(hub: HubProcess, alice: Browser,
                                                       bob: Browser) -> None:
    hub.teamhub("env", "access", "secret", "--groups", "")
    assert "env-secret" in bob.kernelspecs(hub.bob)
    hub.teamhub("env", "delete", "secret", "--yes")
    assert "env-secret" not in alice.kernelspecs(hub.alice)
    assert "env-secret" not in bob.kernelspecs(hub.bob)
    listed = hub.teamhub("env", "list", "--json").stdout
    assert '"shared"' in listed and '"secret"' not in listed


# What a writer leaves in a project folder: a module named like the one every
# kernel starts with (it records that it ran, then lets the real kernel start so
# that nobody notices), one named like a package the shared env has, and the
# user's own module the reader legitimately imports.
PLANTED = {
    "ipykernel_launcher.py": (
        "import os, runpy, sys\n"
        "with open(os.path.expanduser('~/planted-ran'), 'a') as f:\n"
        "    f.write('launcher %d\\n' % os.getuid())\n"
        "del sys.path[0]\n"
        "sys.modules.pop('ipykernel_launcher', None)\n"
        "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n"),
    "six.py": ("import os\n"
               "with open(os.path.expanduser('~/planted-ran'), 'a') as f:\n"
               "    f.write('six\\n')\n"),
    "helper.py": "VALUE = 42\n",
}


def _kernel_in(browser: Browser, user: str, folder: str, kernel: str) -> str:
    """Start KERNEL for a notebook in FOLDER (relative to the home), as JupyterLab does."""
    resp = browser.http.post(
        f"{browser.base}/user/{user}/api/sessions",
        json={"path": f"{folder}/n.ipynb", "name": "n.ipynb", "type": "notebook",
              "kernel": {"name": kernel}},
        headers={"X-XSRFToken": browser._xsrf(f"/user/{user}/")}, timeout=60)
    assert resp.status_code == 201, resp.text
    return resp.json()["kernel"]["id"]


@pytest.mark.parametrize("kernel", ["python3", "env-shared"])
def test_code_planted_in_a_project_folder_does_not_run_at_kernel_start(
        hub: HubProcess, alice: Browser, bob: Browser, kernel: str) -> None:
    writer = alice.new_kernel(hub.alice)
    alice.wait_kernel(hub.alice, writer)
    out = alice.execute(hub.alice, writer,
                        "import os\n"
                        f"for name, text in {PLANTED!r}.items():\n"
                        "    with open(os.path.expanduser('~/projects/planted/' + name), 'w') "
                        "as f:\n"
                        "        f.write(text)\n")
    assert not out["error"], out
    marker = pwd.getpwnam(hub.system_user(hub.bob)).pw_dir + "/planted-ran"
    if os.path.exists(marker):
        os.unlink(marker)
    reader = _kernel_in(bob, hub.bob, "projects/planted", kernel)
    bob.wait_kernel(hub.bob, reader)
    out = bob.execute(hub.bob, reader,
                      "import os, sys, helper, six\n"
                      "print(os.getcwd()); print(helper.VALUE); print(six.__file__)")
    assert not out["error"], out
    assert not os.path.exists(marker), "planted code ran as the reader: " + open(marker).read()
    cwd, value, six_file = out["stdout"].split()
    assert os.path.realpath(cwd) == os.path.realpath(hub.projects_root / "planted")
    assert value == "42"  # the notebook's folder is still importable ...
    assert "/planted/" not in six_file  # ... but never shadows an installed package
