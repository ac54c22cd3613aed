"""The authenticators' decisions, in process and without root: who may log in, who is
logged out at the next auth refresh, and that the account store is read off the event
loop (JupyterHub awaits these on its only thread) and opened once."""

from __future__ import annotations

import asyncio
import pwd
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from jupyterhub.tests import mocking

from teamhub.accounts.authenticator import TeamhubAuthenticator
from teamhub.accounts.pam import TeamhubPAMAuthenticator
from teamhub.accounts.store import AccountStore
from teamhub.system.names import LINUX_NAME_RE

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with an active, an admin, a blocked and a pending account (hashing
    passwords is slow on purpose: made once, copied for each test)."""
    folder = tmp_path_factory.mktemp("accounts")
    store = AccountStore(folder / "accounts.sqlite")
    store.add("ada", PASSWORD)
    store.add("bob", PASSWORD, admin=True)
    store.add("cy", PASSWORD)
    store.set_blocked("cy", True)
    store.add("dee", PASSWORD, pending=True)
    return folder


@pytest.fixture
def auth(accounts: Path, tmp_path: Path) -> TeamhubAuthenticator:
    for path in accounts.iterdir():
        shutil.copy2(path, tmp_path / path.name)
    return TeamhubAuthenticator(store_path=str(tmp_path / "accounts.sqlite"),
                                lockout_failures=2)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_only_active_accounts_are_allowed(auth: TeamhubAuthenticator) -> None:
    assert run(auth.check_allowed("ada")) is True
    assert run(auth.check_allowed("cy")) is False  # blocked
    assert run(auth.check_allowed("dee")) is False  # waiting for approval
    assert run(auth.check_allowed("nobody-here")) is False


def test_refresh_logs_out_removed_and_blocked_and_follows_the_admin_flag(
        auth: TeamhubAuthenticator, tmp_path: Path) -> None:
    assert run(auth.refresh_user(SimpleNamespace(name="ada", admin=False))) is True
    assert run(auth.refresh_user(SimpleNamespace(name="ada", admin=True))) == {
        "name": "ada", "admin": False}
    assert run(auth.refresh_user(SimpleNamespace(name="cy", admin=False))) is False
    AccountStore(tmp_path / "accounts.sqlite").remove("ada")
    assert run(auth.refresh_user(SimpleNamespace(name="ada", admin=False))) is False


def test_login_decisions_and_the_lockout(auth: TeamhubAuthenticator) -> None:
    def login(name: str, password: str) -> Any:
        return run(auth.authenticate(None, {"username": name, "password": password}))

    assert login("Ada", PASSWORD) == {"name": "ada", "admin": False}
    assert login("bob", PASSWORD) == {"name": "bob", "admin": True}
    assert login("cy", PASSWORD) is None  # blocked: refused like a wrong password
    assert login("dee", PASSWORD) is None  # pending
    assert login("bob", "wrong") is None
    assert login("bob", "wrong") is None
    assert login("bob", PASSWORD) is None  # locked after lockout_failures
    assert login("bad name!", PASSWORD) is None


def test_the_store_is_read_off_the_event_loop_and_opened_once(
        auth: TeamhubAuthenticator) -> None:
    threads = []
    read = auth._account

    def spy(name: str) -> Any:
        threads.append(threading.get_ident())
        return read(name)

    auth._account = spy  # type: ignore[method-assign]
    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread
    assert run(auth.check_allowed("ada")) is True
    assert run(auth.refresh_user(SimpleNamespace(name="ada", admin=False))) is True
    assert len(threads) == 2 and loop_thread not in threads
    assert auth._store() is auth._store()


@pytest.fixture
def pam(tmp_path: Path) -> Iterator[TeamhubPAMAuthenticator]:
    # JupyterHub's own PAM stand-ins: a password is right when it equals the name.
    with mock.patch.multiple("pamela", authenticate=mocking.mock_authenticate,
                             check_account=mocking.mock_check_account):
        yield TeamhubPAMAuthenticator(store_path=str(tmp_path / "accounts.sqlite"))


def test_pam_mode_lets_in_ordinary_accounts_only(pam: TeamhubPAMAuthenticator) -> None:
    ordinary = next(e.pw_name for e in pwd.getpwall() if e.pw_uid >= 1000
                    and LINUX_NAME_RE.fullmatch(e.pw_name))

    def login(name: str, password: str) -> Any:
        return run(pam.authenticate(None, {"username": name, "password": password}))

    assert login(ordinary, ordinary) == {"name": ordinary}
    assert login(ordinary, "wrong") is None
    assert login("root", "root") is None  # uid 0: never, whatever PAM says
    assert login("no-such-account", "no-such-account") is None
    assert run(pam.check_allowed(ordinary)) is True
    assert run(pam.check_allowed("root")) is False
    assert run(pam.refresh_user(SimpleNamespace(name="no-such-account"))) is False
    pam.allowed_groups = {"teamhub-no-such-group"}
    assert run(pam.check_allowed(ordinary)) is False
