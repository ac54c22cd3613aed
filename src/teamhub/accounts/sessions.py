"""Hub sessions: renewed at login, ended everywhere at logout and account changes.

How JupyterHub 6 keeps a browser logged in, and what teamhub changes:

- The hub cookie (`jupyterhub-hub-login`) holds the user's `cookie_id`, signed
  with the cookie secret. JupyterHub never changes `cookie_id` (issues #3688,
  #706), so a copied cookie would work until it expires (14 days), through
  logout and password changes. teamhub replaces `cookie_id` (`end_sessions`)
  at logout, password change, block and delete: every hub cookie of that user,
  in every browser, stops working at once.
- Each single-user server keeps its own cookie (`jupyterhub-user-<name>`)
  holding an OAuth access token the hub issued to that server; `end_sessions`
  deletes those tokens, and servers re-check tokens with the hub at least every
  `HubOAuth.cache_max_age` seconds (teamhub lowers it, see hubconfig).
- `jupyterhub-session-id` is a plain, unsigned cookie naming the browser
  session (it ties OAuth tokens and the XSRF token to it). JupyterHub keeps
  whatever value the browser already had at login, so a value planted before
  login (by a page on the same host, e.g. a user's own server) would survive
  it. teamhub's login handler always starts a fresh session id.

Login does not replace `cookie_id`: that would log the user out of their other
browsers every time they log in somewhere, and is not needed against fixation,
because the hub cookie's value is only ever made from `cookie_id` by the hub
after a successful login, so no cookie can be planted that becomes valid.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.login import LoginHandler, LogoutHandler
from jupyterhub.scopes import needs_scope
from tornado import web

# The hub's own OAuth client: tokens issued to it are API tokens and the
# servers' own tokens; every other client is a single-user server's login.
HUB_CLIENT = "jupyterhub"


@dataclass
class Ended:
    """What end_sessions did."""

    oauth_tokens: int = 0
    api_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"oauth_tokens": self.oauth_tokens, "api_tokens": self.api_tokens}


def _running_server_tokens(db: Any, orm_user: orm.User) -> set[int]:
    """Ids of the tokens the hub made for the user's running servers.

    The hub names such a token "Server at <url>" and creates it just before it
    records the server as started; the newest such token created no later than
    that is the server's. (A user can write any note on their own tokens, so
    the note alone proves nothing.)
    """
    keep: set[int] = set()
    for spawner in orm_user._orm_spawners:
        if spawner.server is None or spawner.started is None:
            continue
        token = (db.query(orm.APIToken)
                 .filter(orm.APIToken.user_id == orm_user.id,
                         orm.APIToken.note == f"Server at {spawner.server.base_url}",
                         orm.APIToken.created <= spawner.started)
                 .order_by(orm.APIToken.created.desc()).first())
        if token is not None:
            keep.add(token.id)
    return keep


def end_sessions(db: Any, orm_user: orm.User, *, api_tokens: bool) -> Ended:
    """End every browser session of ORM_USER, in every browser; commit.

    Replaces `cookie_id` (all hub cookies stop working) and deletes the OAuth
    tokens behind single-user server cookies. With API_TOKENS also the user's
    API tokens (made on the token page or through the API); the tokens of the
    user's running servers are kept so that their servers keep working.

    This is the one function to call after a password change: the web
    change-password page calls it with api_tokens=True and then
    `handler.set_login_cookie(user)` to keep only the browser that changed it.
    """
    orm_user.cookie_id = orm.new_token()
    ended = Ended()
    keep = _running_server_tokens(db, orm_user) if api_tokens else set()
    for token in list(db.query(orm.APIToken).filter(orm.APIToken.user_id == orm_user.id)):
        browser = (token.client_id or HUB_CLIENT) != HUB_CLIENT or bool(token.session_id)
        if browser:
            ended.oauth_tokens += 1
        elif api_tokens and token.id not in keep:
            ended.api_tokens += 1
        else:
            continue
        db.delete(token)
    db.commit()
    return ended


def end_other_sessions(handler: Any, user: Any) -> Ended:
    """After a password change on a hub page: end every session and API token of
    USER (a JupyterHub User), then log HANDLER's own browser in again.

    For a logged-in POST handler (e.g. the change-password page):
    `end_other_sessions(self, self.current_user)`. The browser gets a new hub
    cookie and session id; its server logins are redone on its next visit.
    """
    ended = end_sessions(handler.db, user.orm_user, api_tokens=True)
    handler._session_id = uuid.uuid4().hex
    handler.set_session_cookie()
    handler.set_login_cookie(user)
    return ended


def end_sessions_in_db(hub_db: Path, name: str, *, api_tokens: bool) -> Ended | None:
    """end_sessions on the hub database file, for when no hub is running.

    None if the hub has never seen NAME (so they have no session to end).
    """
    if not hub_db.exists():
        return None
    session = orm.new_session_factory(f"sqlite:///{hub_db}")()
    try:
        orm_user = session.query(orm.User).filter_by(name=name).first()
        if orm_user is None:
            return None
        return end_sessions(session, orm_user, api_tokens=api_tokens)
    finally:
        session.close()


class TeamhubLoginHandler(LoginHandler):
    """The login form, with the browser's session id replaced at every login."""

    async def post(self) -> None:
        # JupyterHub's post() fails with a 500 (KeyError) when a field is missing;
        # a form without exactly one name and one password is simply a bad request.
        for field in ("username", "password"):
            if len(self.request.body_arguments.get(field, [])) != 1:
                raise web.HTTPError(400, "The login form needs one user name and one password.")
        await super().post()

    def set_login_cookie(self, user: Any) -> None:
        # Never carry a session id from before the login into the logged-in
        # session (fixation); the hub cookie is set afresh too.
        self._session_id = uuid.uuid4().hex
        self.set_session_cookie()
        self.set_hub_cookie(user)
        super().set_login_cookie(user)


class TeamhubLogoutHandler(LogoutHandler):
    """Logout ends the user's sessions in every browser, not just this one's cookies.

    The hub cookie holds the same value in each of the user's browsers, so the
    copy in this one (or one an attacker took) can only be made useless by
    replacing it everywhere. The user's API tokens are kept.
    """

    async def default_handle_logout(self) -> None:
        user = self.current_user
        orm_user = getattr(user, "orm_user", None)
        await super().default_handle_logout()
        if orm_user is not None:
            ended = end_sessions(self.db, orm_user, api_tokens=False)
            self.log.info("Ended the browser sessions of %s (%d server login(s))",
                          user.name, ended.oauth_tokens)


class SessionsAPIHandler(APIHandler):
    """DELETE /hub/api/teamhub/users/<name>/sessions[?api_tokens=1]

    How the CLI (`teamhub user logout|passwd|block`) ends a user's sessions while
    the hub runs: the hub must do it itself, because it caches users' rows.
    Needs the admin:users scope for that user.
    """

    @needs_scope("admin:users")
    async def delete(self, user_name: str) -> None:
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no user {user_name[:32]!r} in the hub")
        api_tokens = self.get_argument("api_tokens", "0") not in ("", "0", "false")
        ended = end_sessions(self.db, user.orm_user, api_tokens=api_tokens)
        self.log.info("Ended the sessions of %s: %s", user.name, ended.as_dict())
        self.write(ended.as_dict())


def handlers() -> list[tuple[str, Any]]:
    """The hub handlers teamhub's authenticators add (before JupyterHub's own)."""
    return [
        (r"/login", TeamhubLoginHandler),
        (r"/logout", TeamhubLogoutHandler),
        (r"/api/teamhub/users/([^/]+)/sessions", SessionsAPIHandler),
    ]
