"""PAM mode: the machine's existing Linux accounts log in with their system password.

teamhub creates no accounts in this mode. Only ordinary people's accounts may
log in: never root, never a system account (uid below `min_uid`), never an
account outside `allowed_groups` (when set). The same lockout and client
throttle as for built-in accounts apply (GuardedAuthenticator).
"""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

import pamela
from jupyterhub.auth import Authenticator, PAMAuthenticator
from jupyterhub.utils import maybe_future
from traitlets import Integer, Unicode, default

from ..errors import ForkServerUnavailable
from ..spawners import roothelper
from ..system.names import LINUX_NAME_RE
from ..system.users import account_problem
from .authenticator import GuardedAuthenticator


class TeamhubPAMAuthenticator(GuardedAuthenticator, PAMAuthenticator):
    """Log in with an existing Linux account and its system password (PAM)."""

    min_uid = Integer(
        1000, help="""Lowest uid allowed to log in (and to run a server); root and
        system accounts below it never can."""
    ).tag(config=True)

    @default("allow_all")
    def _allow_all_default(self) -> bool:
        # Every ordinary account unless groups are named; check_allowed still
        # refuses root and system accounts either way.
        return False

    @default("any_allow_config")
    def _any_allow_config_default(self) -> bool:
        return True

    def normalize_username(self, username: str) -> str:
        return unicodedata.normalize("NFKC", username).strip().lower()

    def validate_username(self, username: str) -> bool:
        return LINUX_NAME_RE.fullmatch(username) is not None

    def login_name(self, username: str) -> str | None:
        name = self.normalize_username(username)
        return name if self.validate_username(name) else None

    def problem(self, name: str) -> str | None:
        return account_problem(name, min_uid=self.min_uid, allowed_groups=set(self.allowed_groups))

    helper_socket = Unicode(
        "", help="""The root helper's socket: an unprivileged hub (hub.unprivileged) cannot
        read /etc/shadow, so the helper checks passwords for it."""
    ).tag(config=True)

    def check_password(self, name: str | None, password: str) -> dict[str, Any] | None:
        # PAM runs for every name (an unknown one fails inside PAM, as a wrong
        # password does); who may use teamhub is decided only after that.
        if not roothelper.direct():
            return self._check_through_helper(name, password)
        try:
            pamela.authenticate(name or "nobody-invalid", password, service=self.service,
                                encoding=self.encoding)
            if self.check_account:
                pamela.check_account(name or "", service=self.service, encoding=self.encoding)
        except pamela.PAMError:
            return None
        if name is None:
            return None
        problem = self.problem(name)
        if problem:
            self.log.warning("Refusing Linux account %r: %s", name, problem)
            return None
        return {"name": name}

    def _check_through_helper(self, name: str | None, password: str) -> dict[str, Any] | None:
        """The helper runs PAM (service `login`) and refuses accounts that may not use
        teamhub; the same rules are checked here again."""
        if name is None:
            return None
        try:
            ok = roothelper.client(self.helper_socket).check_password_blocking(name, password)
        except ForkServerUnavailable as exc:
            self.log.error("Cannot check %r's password: %s", name, exc)
            return None
        if not ok or self.problem(name):
            return None
        return {"name": name}

    async def check_allowed(self, username: str,
                            authentication: dict[str, Any] | None = None) -> bool:
        # Account lookups (NSS: maybe LDAP) stay off the event loop.
        return await asyncio.to_thread(self.problem, username) is None

    async def refresh_user(self, user: Any, handler: Any = None) -> bool:
        # An account removed from the machine or the allowed groups is logged out.
        return await asyncio.to_thread(self.problem, user.name) is None

    async def add_user(self, user: Any) -> None:
        # Never create Linux accounts (LocalAuthenticator could): only the hub user.
        if await asyncio.to_thread(self.problem, user.name):
            raise ValueError(f"Linux account {user.name!r} may not use teamhub")
        await maybe_future(Authenticator.add_user(self, user))
