"""The hub's account pages: signup, change password and reset links (adding accounts and
approving signups is the console's Users page, teamhub.console.users).

Registered through `TeamhubAuthenticator.get_handlers`, so they live under
`/hub/`. Every state change is a POST, and JupyterHub's BaseHandler checks the
`_xsrf` token of every POST before the handler runs (a missing or wrong token
is a 403); GET only shows forms.

Form fields are read from the raw request body, not with tornado's
get_argument (which quietly turns control characters into spaces, so a
password with a NUL would be stored as something other than what was typed).
Oversized fields are refused before they are decoded, hashed or logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jupyterhub.handlers import BaseHandler
from tornado import web

from ..errors import AccountError, InvalidLink
from . import lifecycle
from .policy import MAX_LENGTH
from .sessions import end_other_sessions, end_sessions
from .store import AccountStore

TEMPLATES = Path(__file__).with_name("templates")

# Raw bytes accepted per form field: a password of MAX_LENGTH characters of up
# to 4 UTF-8 bytes each. Anything longer is refused before decoding.
MAX_FIELD_BYTES = 4 * MAX_LENGTH

T = TypeVar("T")


class AccountPage(BaseHandler):
    """What the account pages share: the store, form fields, off-loop argon2."""

    @property
    def store(self) -> AccountStore:
        return AccountStore(self.authenticator.store_path, self.authenticator.db_url)

    def field(self, name: str) -> str:
        """Form field NAME as text ('' if absent); 400 if oversized or not UTF-8."""
        values = self.request.body_arguments.get(name) or [b""]
        raw = values[0]
        if len(raw) > MAX_FIELD_BYTES:
            # Neither the value nor its start is shown or logged.
            raise web.HTTPError(400, f"the {name} field is too long "
                                     f"(at most {MAX_LENGTH} characters)")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPError(400, f"the {name} field is not valid UTF-8 text") from None

    async def blocking(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        # argon2 is deliberately slow: keep it off the hub's event loop.
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))

    async def _after_password_change(self, name: str) -> None:
        """What follows every successful password change of user NAME (change page
        and reset links).

        Every session of NAME ends (a new cookie_id, so copied cookies die) and so do
        their API tokens: whoever knew the old password may have made some.
        """
        from jupyterhub import orm

        orm_user = orm.User.find(self.db, name)
        if orm_user is not None:
            end_sessions(self.db, orm_user, api_tokens=True)

    async def page(self, template: str, status: int = 200, **ns: Any) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(await self.render_template(template, **ns))


class SignupHandler(AccountPage):
    """`/hub/signup`: ask for an account (only with the `auth.signup` setting on)."""

    def _check_enabled(self) -> None:
        if not self.authenticator.signup_enabled:
            raise web.HTTPError(404)

    async def get(self) -> None:
        self._check_enabled()
        await self.page("signup.html", username="", error=None, done=False)

    async def post(self) -> None:
        self._check_enabled()
        raw_name = self.field("username")
        password, again = self.field("password"), self.field("password2")
        if password != again:
            await self.page("signup.html", 400, username="", done=False,
                            error="The two passwords differ; type the same password twice.")
            return
        auth = self.authenticator
        registry = Path(auth.system_users_registry) if auth.system_users_registry else None
        try:
            outcome = await self.blocking(
                lifecycle.request_signup, self.store, raw_name, password,
                open_signup=auth.open_signup, min_length=auth.min_password_length,
                system_prefix=auth.system_prefix, registry=registry)
        except AccountError as exc:
            await self.page("signup.html", 400, username="", done=False, error=str(exc))
            return
        # The log (root-only) may say what the page does not.
        self.log.info("Signup for %s: %s", outcome.name,
                      ("pending approval" if outcome.pending else "active") if outcome.created
                      else "name already taken or requested; dropped")
        await self.page("signup.html", username="", error=None, done=True,
                        open_signup=auth.open_signup)


class ChangePasswordHandler(AccountPage):
    """`/hub/change-password`: a logged-in user sets a new password (asks the current one)."""

    @web.authenticated
    async def get(self) -> None:
        await self.page("change_password.html", error=None, done=False)

    @web.authenticated
    async def post(self) -> None:
        user = self.current_user
        current = self.field("current_password")
        new, again = self.field("password"), self.field("password2")
        error = None
        # Behind the login's lockout and client throttle: the current-password field
        # must not be a way around them. Locked, throttled and wrong answer alike.
        if await self.authenticator.guarded_check(self, user.name, current,
                                                  what="current-password check") is None:
            error, status = "The current password is wrong.", 403
        elif new != again:
            error, status = "The two new passwords differ; type the same password twice.", 400
        else:
            try:
                await self.blocking(self.store.set_password, user.name, new,
                                    min_length=self.authenticator.min_password_length)
            except AccountError as exc:
                error, status = str(exc), 400
        if error:
            await self.page("change_password.html", status, error=error, done=False)
            return
        self.log.info("User %s changed their password", user.name)
        await self._after_password_change(user.name)
        await self.page("change_password.html", error=None, done=True)

    async def _after_password_change(self, name: str) -> None:
        # Every other browser is logged out; this one is logged in again, with a
        # new cookie and session id.
        end_other_sessions(self, self.current_user)


class ResetHandler(AccountPage):
    """`/hub/reset/<token>`: a one-time link made by `teamhub user reset-link NAME`."""

    def prepare(self) -> Any:
        # The token is in the URL: never let it leave in a Referer header.
        self.set_header("Referrer-Policy", "no-referrer")
        return super().prepare()

    async def _invalid(self) -> None:
        await self.page("reset.html", 404, valid=False, account_name="", error=None, done=False)

    async def get(self, token: str) -> None:
        name = await self.blocking(lifecycle.reset_link_user, self.store, token)
        if name is None:
            await self._invalid()
            return
        await self.page("reset.html", valid=True, account_name=name, error=None, done=False)

    async def post(self, token: str) -> None:
        new, again = self.field("password"), self.field("password2")
        name = await self.blocking(lifecycle.reset_link_user, self.store, token)
        if name is None:
            await self._invalid()
            return
        if new != again:
            await self.page("reset.html", 400, valid=True, account_name=name, done=False,
                            error="The two passwords differ; type the same password twice.")
            return
        try:
            await self.blocking(lifecycle.redeem_reset_link, self.store, token, new,
                                min_length=self.authenticator.min_password_length)
        except InvalidLink:
            await self._invalid()
            return
        except AccountError as exc:
            await self.page("reset.html", 400, valid=True, account_name=name, done=False,
                            error=str(exc))
            return
        self.log.info("Password of %s set through a reset link", name)
        await self._after_password_change(name)
        await self.page("reset.html", valid=True, account_name=name, error=None, done=True)


class AccountsAdminHandler(AccountPage):
    """`/hub/teamhub/accounts`: the old accounts page, now the console's Users page (which
    adds, approves and rejects, and more); old bookmarks land there."""

    def _moved(self) -> None:
        self.redirect(f"{self.hub.base_url}teamhub/console/users", status=303)

    def get(self) -> None:
        self._moved()

    def post(self) -> None:
        # Nothing is done here: the form that posts to this address is gone.
        self._moved()


def handlers() -> list[tuple[str, type[BaseHandler]]]:
    return [
        (r"/signup", SignupHandler),
        (r"/change-password", ChangePasswordHandler),
        (r"/reset/([^/]+)", ResetHandler),
        (r"/teamhub/accounts", AccountsAdminHandler),
    ]
