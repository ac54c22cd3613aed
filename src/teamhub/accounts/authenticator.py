"""JupyterHub Authenticators: teamhub's own account store, or PAM (accounts/pam.py).

Both share `GuardedAuthenticator.authenticate`: one path for every login, which
checks the per-client throttle and the per-name lockout, always runs the slow
password check (on a dummy hash for unknown names, and for locked ones too),
and answers every failure the same way, so that neither the response nor its
timing tells unknown, wrong-password, locked, blocked or pending apart.

Accounts live in the store beside the hub database (managed with
`teamhub user ...`); the hub asks the store at every login, so changes made
by the CLI take effect without restarting the hub.
"""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Bool, Integer, List, Unicode, default

from .. import console
from ..errors import AccountError
from ..system.names import MAX_RAW_LENGTH, canonical_name
from . import hubusers, pages, sessions
from .lockout import ClientThrottle, Lockout, LockoutPolicy, client_address
from .store import MAX_PASSWORD, Account, AccountStore


class GuardedAuthenticator(Authenticator):
    """Lockout, client throttle and uniform failures around a password check."""

    store_path = Unicode(
        help="""Path of the account store (sqlite). teamhub sets it to `accounts.sqlite`
        in the state directory. Login failures and locks are kept there too.""",
    ).tag(config=True)

    db_url = Unicode(
        help="""teamhub's db.url: empty when the account store is the sqlite file
        `store_path`, else the PostgreSQL database that holds it.""",
    ).tag(config=True)

    lockout_failures = Integer(
        5, help="""Failed logins for one name after which that name is locked."""
    ).tag(config=True)

    lockout_base_seconds = Integer(
        60, help="""Length of a name's first lock; each further lock doubles it."""
    ).tag(config=True)

    lockout_max_seconds = Integer(
        3600, help="""Longest lock of a name, however many locks came before."""
    ).tag(config=True)

    client_max_failures = Integer(
        30, help="""Failed logins (any names) from one client address per
        `client_window_seconds`, after which that address cannot log in until the
        window has moved on."""
    ).tag(config=True)

    client_window_seconds = Integer(
        900, help="""The window of `client_max_failures`, in seconds."""
    ).tag(config=True)

    trusted_proxies = List(
        Unicode(), help="""Addresses of reverse proxies in front of teamhub's own proxy
        whose X-Forwarded-For entries are believed (skipped when finding the client)."""
    ).tag(config=True)

    _throttle: ClientThrottle | None = None
    _account_store: AccountStore | None = None
    _store_lock = threading.Lock()

    @default("auth_refresh_age")
    def _auth_refresh_age_default(self) -> int:
        # Removed or blocked accounts and changed admin flags reach open sessions
        # within a minute.
        return 60

    def _store(self) -> AccountStore:
        """(Blocking: the first call opens the store and applies migrations.) The account
        store, opened once; each operation on it is its own short connection."""
        with self._store_lock:
            if self._account_store is None:
                self._account_store = AccountStore(Path(self.store_path), self.db_url)
            return self._account_store

    def lockout(self) -> Lockout:
        return Lockout(self._store(), LockoutPolicy(self.lockout_failures,
                                                    self.lockout_base_seconds,
                                                    self.lockout_max_seconds))

    @property
    def throttle(self) -> ClientThrottle:
        if self._throttle is None:
            self._throttle = ClientThrottle(self.client_max_failures, self.client_window_seconds)
        return self._throttle

    def get_handlers(self, app: Any) -> list[Any]:
        return [*sessions.handlers(), *console.handlers(app)]

    def login_name(self, username: str) -> str | None:
        """The name failures are counted under, or None when it cannot be an account."""
        try:
            return canonical_name(username)
        except AccountError:
            return None

    def check_password(self, name: str | None, password: str) -> dict[str, Any] | None:
        """(Blocking.) The auth model if PASSWORD is right for NAME and the account may
        log in; else None, after the same slow work as for a right password."""
        raise NotImplementedError

    def _attempt(self, name: str | None, password: str, refused: bool) -> dict[str, Any] | None:
        """(Blocking.) One login attempt; every failure path does the same store work."""
        lockout = self.lockout()
        locked = lockout.locked_until(name) > 0 if name else False
        model = self.check_password(name, password)
        if model is not None and name and not locked and not refused:
            lockout.record_success(name)
            return model
        if name:
            lockout.record_failure(name)
        else:
            # An impossible name is still a failure: keep the same store round trip.
            lockout.locked_until("")
        return None

    async def guarded_check(self, handler: Any, username: str, password: str,
                            what: str = "login") -> dict[str, Any] | None:
        """USERNAME's auth model if PASSWORD is right, behind the client throttle and the
        name's lockout: the login form and every other page that asks for a password
        (change password) count failures together and answer alike."""
        request = getattr(handler, "request", None)
        client = client_address(request, self.trusted_proxies) if request else "local"
        refused = self.throttle.blocked(client)
        name = self.login_name(username[: MAX_RAW_LENGTH + 1])
        # The slow check stays off the event loop, and runs for locked and
        # throttled attempts too: only the outcome differs, never the work.
        model = await asyncio.get_running_loop().run_in_executor(
            None, self._attempt, name, password[: MAX_PASSWORD + 1], refused
        )
        if model is None:
            self.throttle.record_failure(client)
            self.log.warning("Failed %s for %r from %s", what, username[:32], client)
        return model

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        username = data.get("username", "")
        password = data.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        return await self.guarded_check(handler, username, password)


class TeamhubAuthenticator(GuardedAuthenticator):
    """Log in with a teamhub account: name and password checked against the account store."""

    signup_enabled = Bool(
        False,
        help="""Serve the signup page `/hub/signup` (setting `auth.signup`). New accounts are
        pending until an admin approves them, unless `open_signup` is on.""",
    ).tag(config=True)

    open_signup = Bool(
        False,
        help="""Accounts made on the signup page can log in at once, without approval
        (setting `auth.open_signup`).""",
    ).tag(config=True)

    min_password_length = Integer(
        10,
        help="""Shortest password the signup, change-password and reset pages accept
        (setting `auth.min_password_length`).""",
    ).tag(config=True)

    system_prefix = Unicode(
        "jupyter-",
        help="""Prefix of users' Linux accounts; signup refuses names whose Linux account
        exists but was not made by teamhub.""",
    ).tag(config=True)

    system_users_registry = Unicode(
        "",
        help="""Registry of the Linux accounts teamhub made (empty: signup does not check
        Linux accounts).""",
    ).tag(config=True)

    def get_handlers(self, app: Any) -> list[Any]:
        # The login/logout handlers first: JupyterHub's own /login must not win.
        return [*super().get_handlers(app), *pages.handlers(), *hubusers.handlers()]

    @default("any_allow_config")
    def _any_allow_config_default(self) -> bool:
        # The account store is the allow list: only accounts in it can log in.
        return True

    def normalize_username(self, username: str) -> str:
        # The same folding canonical_name applies, without raising: validate_username
        # rejects what does not fit the rule.
        return unicodedata.normalize("NFKC", username).strip().lower()

    def validate_username(self, username: str) -> bool:
        try:
            return canonical_name(username) == username
        except AccountError:
            return False

    def _account(self, name: str) -> Account | None:
        """(Blocking.) NAME's account in the store, if any."""
        return self._store().get(name)

    def check_password(self, name: str | None, password: str) -> dict[str, Any] | None:
        # verify() runs argon2 on a dummy hash for unknown names and refuses blocked
        # (and any other not-active) accounts after the same verify.
        account = self._store().verify(name or "", password)
        return None if account is None else {"name": account.name, "admin": account.admin}

    async def add_user(self, user: Any) -> None:
        # One list of users: every hub user is a teamhub account. JupyterHub calls this
        # for each user it creates (REST API and so its admin page's "Add Users", config,
        # first login) and for each user in its database at start; a name that is no
        # active account is refused here, so the API answers 400 with this message and
        # makes no hub-only user. Those already in the database (made before this check)
        # are only logged at start; `teamhub doctor` reports them and `--fix` removes them.
        account = await asyncio.to_thread(self._account, user.name)
        if account is None or account.pending:
            what = "is waiting for approval" if account else "is not a teamhub account"
            raise ValueError(f"{user.name} {what}: hub users are teamhub's accounts; add "
                             f"one with `teamhub user add {user.name}` on the server (or on "
                             "the hub's Accounts page)")
        super().add_user(user)

    async def check_allowed(self, username: str,
                            authentication: dict[str, Any] | None = None) -> bool:
        # The store (sqlite, a 30 s busy timeout) is read off the event loop.
        account = await asyncio.to_thread(self._account, username)
        return account is not None and not account.blocked and not account.pending

    async def refresh_user(self, user: Any, handler: Any = None) -> bool | dict[str, Any]:
        # False makes the hub drop the session: removed and blocked accounts are
        # logged out within auth_refresh_age, API tokens included.
        account = await asyncio.to_thread(self._account, user.name)
        if account is None or account.blocked or account.pending:
            return False
        if account.admin != user.admin:
            return {"name": account.name, "admin": account.admin}
        return True
