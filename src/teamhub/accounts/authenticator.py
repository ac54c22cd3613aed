"""JupyterHub Authenticator backed by teamhub's own account store.

Accounts live in the store beside the hub database (managed with
`teamhub user ...`); the hub asks the store at every login, so changes made
by the CLI take effect without restarting the hub.
"""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Bool, Integer, Unicode, default

from ..errors import AccountError
from ..system.names import canonical_name
from .store import AccountStore


class TeamhubAuthenticator(Authenticator):
    """Log in with a teamhub account: name and password checked against the account store."""

    store_path = Unicode(
        help="""Path of the account store (sqlite). teamhub sets it to `accounts.sqlite`
        in the state directory.""",
    ).tag(config=True)

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

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        from .pages import handlers

        return [*super().get_handlers(app), *handlers()]

    @default("any_allow_config")
    def _any_allow_config_default(self) -> bool:
        # The account store is the allow list: only accounts in it can log in.
        return True

    @default("auth_refresh_age")
    def _auth_refresh_age_default(self) -> int:
        # Removed or blocked accounts and changed admin flags reach open sessions
        # within a minute.
        return 60

    def _store(self) -> AccountStore:
        return AccountStore(self.store_path)

    def normalize_username(self, username: str) -> str:
        # The same folding canonical_name applies, without raising: validate_username
        # rejects what does not fit the rule.
        return unicodedata.normalize("NFKC", username).strip().lower()

    def validate_username(self, username: str) -> bool:
        try:
            return canonical_name(username) == username
        except AccountError:
            return False

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        username = data.get("username", "")
        password = data.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        store = self._store()
        # argon2 is deliberately slow: keep it off the event loop. verify() spends the
        # same time for unknown names, so a login does not reveal which names exist.
        account = await asyncio.get_running_loop().run_in_executor(
            None, store.verify, self.normalize_username(username)[:64], password[:1024]
        )
        if account is None:
            self.log.warning("Failed login for %r", username[:32])
            return None
        return {"name": account.name, "admin": account.admin}

    def check_allowed(self, username: str, authentication: dict[str, Any] | None = None) -> bool:
        account = self._store().get(username)
        return account is not None and not account.blocked and not account.pending

    async def refresh_user(self, user: Any, handler: Any = None) -> bool | dict[str, Any]:
        # False makes the hub drop the session: removed and blocked accounts are
        # logged out within auth_refresh_age, API tokens included.
        account = self._store().get(user.name)
        if account is None or account.blocked or account.pending:
            return False
        if account.admin != user.admin:
            return {"name": account.name, "admin": account.admin}
        return True
