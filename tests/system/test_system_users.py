"""Real Linux accounts: teamhub creates, uses and removes only its own."""

from __future__ import annotations

import grp
import json
import os
import secrets
import signal
import stat
import string
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from teamhub.accounts.store import AccountStore
from teamhub.cli import cli
from teamhub.errors import SystemUserError
from teamhub.system import processes, users

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates real Linux accounts: needs root"),
]

SHELL = "/bin/sh"
PW = "a fine password"


@pytest.fixture
def new_name() -> Iterator[Callable[[], str]]:
    """Hands out unique account names; deletes every such account and group afterwards."""
    names: list[str] = []

    def make() -> str:
        # A letter first, so the suffix alone is also a valid hub user name.
        suffix = secrets.choice(string.ascii_lowercase) + "".join(
            secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        names.append(f"thtest{suffix}")
        return names[-1]

    yield make
    for name in names:
        if users.lookup(name) is not None:
            subprocess.run(["pkill", "-KILL", "-u", name], check=False)
            subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        try:
            grp.getgrnam(name)
        except KeyError:
            continue
        subprocess.run(["groupdel", name], capture_output=True, check=False)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    # Where the CLI (_cli: state_dir = tmp_path/state) keeps it: root's folder beside the
    # state folder (Paths.root_dir).
    return tmp_path / "state-root" / "system_users.json"


@pytest.fixture
def home_root(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ensure(registry: Path, home_root: Path) -> Callable[[str], users.SystemUser]:
    def call(name: str) -> users.SystemUser:
        return users.ensure_system_user(name, registry=registry, home_root=home_root, shell=SHELL)

    return call


def _entries(registry: Path) -> dict:
    return json.loads(registry.read_text()) if registry.exists() else {}


def _plain_useradd(name: str) -> None:
    subprocess.run(["useradd", "--no-create-home", name], check=True, capture_output=True)


def test_ensure_creates_account(ensure, new_name, registry: Path, home_root: Path) -> None:
    name = new_name()
    user = ensure(name)
    assert users.lookup(name) == user
    assert user.uid >= users.uid_min()
    assert user.home == str(home_root / name)
    assert user.shell == SHELL
    st = os.stat(user.home)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == user.uid
    assert stat.S_IMODE(home_root.stat().st_mode) == 0o755
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600
    assert _entries(registry) == {name: {"uid": user.uid, "home": user.home}}
    assert users.is_managed(name, registry=registry)
    assert users.check_usable(name, registry=registry) == user


def test_ensure_waits_while_another_program_holds_the_passwd_lock(
        ensure, new_name, registry: Path) -> None:
    # shadow-utils' own lock, as any adduser/useradd running elsewhere holds it: a link
    # /etc/passwd.lock to a file naming a live process. useradd then fails at once with
    # "cannot lock /etc/passwd; try again later" (the first server start failed so).
    name = new_name()
    lock = Path("/etc/passwd.lock")
    mine = Path(f"/etc/passwd.{os.getpid()}")
    mine.write_text(str(os.getpid()))
    os.link(mine, lock)
    mine.unlink()
    released = threading.Timer(1.5, lock.unlink)
    try:
        released.start()
        user = ensure(name)
    finally:
        released.join()
        lock.unlink(missing_ok=True)
    assert users.lookup(name) == user


def test_ensure_is_idempotent(ensure, new_name, registry: Path) -> None:
    name = new_name()
    first = ensure(name)
    before = registry.read_text()
    assert ensure(name) == first
    assert registry.read_text() == before


@pytest.mark.parametrize("name", ["root", "daemon"])
def test_system_accounts_refused(ensure, registry: Path, name: str, monkeypatch) -> None:
    # A regression here must fail the test, not kill every root process.
    monkeypatch.setattr(users, "end_processes", lambda uid: pytest.fail("would kill"))
    monkeypatch.setattr(users, "_userdel", lambda *a, **k: pytest.fail("would userdel"))
    with pytest.raises(SystemUserError, match="not created by teamhub|system account"):
        ensure(name)
    with pytest.raises(SystemUserError):
        users.check_usable(name, registry=registry)
    with pytest.raises(SystemUserError, match="not created by teamhub"):
        users.remove_system_user(name, registry=registry)
    # Even a registry entry claiming the account does not make it usable.
    uid = users.lookup(name).uid  # type: ignore[union-attr]
    users._write(registry, {name: {"uid": uid, "home": "/"}})
    for call in (lambda: ensure(name),
                 lambda: users.check_usable(name, registry=registry),
                 lambda: users.remove_system_user(name, registry=registry)):
        with pytest.raises(SystemUserError, match="system account"):
            call()
    assert users.lookup(name) is not None


def test_existing_account_refused(ensure, new_name, registry: Path) -> None:
    name = new_name()
    _plain_useradd(name)
    with pytest.raises(SystemUserError, match="already exists and was not created by teamhub"):
        ensure(name)
    with pytest.raises(SystemUserError, match="not created by teamhub"):
        users.check_usable(name, registry=registry)
    with pytest.raises(SystemUserError, match="not created by teamhub"):
        users.remove_system_user(name, registry=registry)
    assert users.lookup(name) is not None
    assert not users.is_managed(name, registry=registry)


def test_gecos_is_not_trusted(ensure, new_name, registry: Path) -> None:
    name = new_name()
    subprocess.run(["useradd", "--comment", "teamhub user", name], check=True)
    with pytest.raises(SystemUserError, match="not created by teamhub"):
        ensure(name)


def test_mismatched_uid_refused(ensure, new_name, registry: Path) -> None:
    name = new_name()
    user = ensure(name)
    users._write(registry, {name: {"uid": user.uid + 1, "home": user.home}})
    with pytest.raises(SystemUserError, match="not created by teamhub"):
        ensure(name)
    with pytest.raises(SystemUserError, match="not created by teamhub"):
        users.check_usable(name, registry=registry)
    with pytest.raises(SystemUserError, match="not created by teamhub"):
        users.remove_system_user(name, registry=registry)
    assert users.lookup(name) is not None


def test_registry_writable_by_others_refused(ensure, new_name, registry: Path) -> None:
    ensure(new_name())
    registry.chmod(0o666)
    with pytest.raises(SystemUserError, match="chmod 600"):
        users.is_managed("x", registry=registry)


def test_deleted_by_hand_is_recreated(ensure, new_name, registry: Path) -> None:
    name = new_name()
    ensure(name)
    subprocess.run(["userdel", "--remove", name], check=True, capture_output=True)
    again = ensure(name)
    assert _entries(registry)[name]["uid"] == again.uid


def test_useradd_failure_leaves_nothing(ensure, new_name, registry: Path) -> None:
    name = new_name()
    subprocess.run(["groupadd", name], check=True)  # --user-group then fails
    with pytest.raises(SystemUserError, match="useradd could not create .*group"):
        ensure(name)
    assert users.lookup(name) is None
    assert name not in _entries(registry)


def test_failure_after_useradd_rolls_back(ensure, new_name, registry: Path, home_root: Path,
                                          monkeypatch) -> None:
    name = new_name()

    def broken_write(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(users, "_write", broken_write)
    with pytest.raises(SystemUserError, match="No space left.*removed again"):
        ensure(name)
    assert users.lookup(name) is None
    assert not (home_root / name).exists()
    assert not registry.exists()


def test_home_root_not_creatable(new_name, registry: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemUserError, match="cannot create the home root"):
        users.ensure_system_user(new_name(), registry=registry, home_root=blocker / "home",
                                 shell=SHELL)


def test_foreign_home_refused_and_rolled_back(ensure, new_name, home_root: Path,
                                               registry: Path) -> None:
    name = new_name()
    home = home_root / name
    home.mkdir(parents=True)
    (home / "keep").write_text("not yours")
    with pytest.raises(SystemUserError, match="move it away"):
        ensure(name)
    assert users.lookup(name) is None
    assert (home / "keep").read_text() == "not yours"
    assert name not in _entries(registry)


def test_remove_ends_processes_and_deletes(ensure, new_name, registry: Path) -> None:
    name = new_name()
    user = ensure(name)
    proc = subprocess.Popen(["sleep", "1000"], user=name, cwd="/")
    # Reap it as soon as it dies, as the hub would: zombies keep userdel busy.
    threading.Thread(target=proc.wait, daemon=True).start()
    users.remove_system_user(name, registry=registry)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert users.lookup(name) is None
    assert not os.path.lexists(user.home)
    assert name not in _entries(registry)


def test_remove_sigkills_what_ignores_sigterm(ensure, new_name, registry: Path,
                                               monkeypatch) -> None:
    name = new_name()
    ensure(name)
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"],
                            user=name, cwd="/", stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"  # trap is set
    threading.Thread(target=proc.wait, daemon=True).start()
    monkeypatch.setattr(processes, "TERM_TIMEOUT", 0.5)
    users.remove_system_user(name, registry=registry)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert users.lookup(name) is None


def test_keep_home(ensure, new_name, registry: Path) -> None:
    name = new_name()
    user = ensure(name)
    Path(user.home, "notebook.ipynb").write_text("{}")
    users.remove_system_user(name, registry=registry, keep_home=True)
    assert users.lookup(name) is None
    assert Path(user.home, "notebook.ipynb").exists()
    assert not users.is_managed(name, registry=registry)


def test_remove_deletes_only_the_home_teamhub_made(ensure, new_name, registry: Path,
                                                   tmp_path: Path) -> None:
    name = new_name()
    user = ensure(name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chown(elsewhere, user.uid, user.gid)
    subprocess.run(["usermod", "--home", str(elsewhere), name], check=True)
    with pytest.raises(SystemUserError, match="not the home teamhub created"):
        users.remove_system_user(name, registry=registry)
    assert users.lookup(name) is None
    assert elsewhere.is_dir()
    assert not users.is_managed(name, registry=registry)


def test_remove_missing_account_drops_entry(ensure, new_name, registry: Path) -> None:
    name = new_name()
    ensure(name)
    subprocess.run(["userdel", "--remove", name], check=True, capture_output=True)
    users.remove_system_user(name, registry=registry)
    assert not users.is_managed(name, registry=registry)


def test_concurrent_creation_keeps_every_entry(ensure, new_name, registry: Path) -> None:
    names = [new_name() for _ in range(4)]
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            ensure(name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(_entries(registry)) == sorted(names)


def test_bad_linux_names_refused(registry: Path, home_root: Path) -> None:
    for bad in ("-o", "a b", "../x", "", "x" * 33):
        with pytest.raises(SystemUserError, match="not a valid Linux account name"):
            users.ensure_system_user(bad, registry=registry, home_root=home_root, shell=SHELL)


def _cli(tmp_path: Path, *args: str, input: str | None = None):
    config = tmp_path / "teamhub.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'home_root = "{tmp_path / "home"}"\n[users]\nsystem_prefix = "thtest"\n')
    return CliRunner().invoke(cli, ["--config", str(config), "user", *args], input=input)


def test_cli_remove_deletes_managed_account(ensure, new_name, registry: Path,
                                            tmp_path: Path) -> None:
    sysname = new_name()
    hub_name = sysname.removeprefix("thtest")
    assert _cli(tmp_path, "add", hub_name, "--password-stdin", input=PW).exit_code == 0
    user = ensure(sysname)  # what the spawner does on first start
    shown = json.loads(_cli(tmp_path, "show", hub_name, "--json").stdout)
    assert shown["system_user"] == sysname and shown["system_user_exists"] is True
    assert shown["home"] == user.home
    proc = subprocess.Popen(["sleep", "1000"], user=sysname, cwd="/")
    threading.Thread(target=proc.wait, daemon=True).start()
    result = _cli(tmp_path, "remove", hub_name, "--yes")
    assert result.exit_code == 0, result.output
    assert f"and Linux account {sysname}" in result.stdout
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert users.lookup(sysname) is None and not os.path.lexists(user.home)
    assert AccountStore(tmp_path / "state" / "accounts.sqlite").get(hub_name) is None


def test_cli_remove_leaves_foreign_account_alone(new_name, tmp_path: Path) -> None:
    sysname = new_name()
    hub_name = sysname.removeprefix("thtest")
    _plain_useradd(sysname)
    assert _cli(tmp_path, "add", hub_name, "--password-stdin", input=PW).exit_code == 0
    result = _cli(tmp_path, "remove", hub_name, "--yes")
    assert result.exit_code == 0, result.output
    assert "left alone" in result.stdout
    assert users.lookup(sysname) is not None


def test_cli_remove_checks_before_changing(ensure, new_name, registry: Path,
                                           tmp_path: Path) -> None:
    sysname = new_name()
    hub_name = sysname.removeprefix("thtest")
    _cli(tmp_path, "add", hub_name, "--password-stdin", input=PW)
    user = ensure(sysname)
    users._write(registry, {sysname: {"uid": user.uid + 1, "home": user.home}})
    result = _cli(tmp_path, "remove", hub_name, "--yes")
    assert result.exit_code != 0
    assert "not created by teamhub" in result.stderr
    assert users.lookup(sysname) is not None
    assert AccountStore(tmp_path / "state" / "accounts.sqlite").get(hub_name) is not None
