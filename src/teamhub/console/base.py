"""What every console page shares: who may see it, its headers, its frame and its forms.

- **Who**: every page needs a logged-in user; admin pages (`admin_only`, the default) need
  the admin flag *in the account store* (the hub's copy may lag), checked on the server for
  every request, GET and POST alike — hiding a link is not a check.
- **Changes** are POSTs; JupyterHub's `BaseHandler` refuses a POST without the right
  `_xsrf` token (403) before a handler runs, and the browser-isolation guard refuses
  cross-site ones.
- **Data for scripts** (`ConsoleData`: JSON, streamed build output) comes from JupyterHub
  `APIHandler`s, which want the XSRF token on GETs too (`X-XSRFToken`, which
  `static/console.js` sends from the page's `jhdata`): the hub serves pages only to
  top-level navigations (browser isolation), and a user's server on the same origin
  cannot learn an admin's token, so it cannot read these either.
- **Scripts**: a Content-Security-Policy without `'unsafe-inline'` for scripts. JupyterHub's
  own `page.html` has one inline script in `<head>` (its require.js config and `jhdata`),
  which its pages need and which holds the user's name and XSRF token: it is allowed by its
  hash, computed from the page as rendered, before any content of the page's own. Console
  scripts are files under `static/`, served from `/hub/teamhub/console/static/`; pages use no
  inline event handlers.
- Templates autoescape (JupyterHub's Jinja settings): names with HTML in them render as text.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from ..accounts.pages import AccountPage
from ..accounts.store import AccountStore
from ..hubguard import IsolatedStaticHandler
from ..paths import Paths
from ..settings import Settings, load

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
PREFIX = "teamhub/console"
T = TypeVar("T")

# JupyterHub's inline head script: the first inline <script> of the page, before </head>.
_HEAD_SCRIPT = re.compile(rb"<script(?: type=\"text/javascript\")?>(.*?)</script>", re.S)


@dataclass(frozen=True)
class Tab:
    id: str
    title: str
    path: str  # below /hub/
    admin_only: bool = True


TABS = (
    Tab("users", "Users", f"{PREFIX}/users"),
    Tab("groups", "Groups", f"{PREFIX}/groups"),
    Tab("projects", "Projects", f"{PREFIX}/projects"),
    Tab("envs", "Environments", f"{PREFIX}/envs"),
    Tab("system", "System", f"{PREFIX}/system"),
    Tab("me", "My account", f"{PREFIX}/me", admin_only=False),
    Tab("myenvs", "My environments", f"{PREFIX}/myenvs", admin_only=False),
)


def head_script_hash(html: bytes) -> str | None:
    """CSP source for JupyterHub's inline head script in HTML, or None if it has none."""
    head = html.split(b"</head>", 1)[0]
    for match in _HEAD_SCRIPT.finditer(head):
        body = match.group(1)
        if body.strip():
            digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
            return f"'sha256-{digest}'"
    return None


def content_security_policy(script_hash: str | None) -> str:
    scripts = "'self'" + (f" {script_hash}" if script_hash else "")
    return "; ".join((
        "default-src 'self'",
        f"script-src {scripts}",
        # Bootstrap and the pages set style attributes; styles cannot run code.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


class ConsoleAccess:
    """Who may use a console handler: checked in `prepare`, for every request."""

    admin_only = True
    is_admin = False

    async def check_access(self: Any) -> bool:
        """False after redirecting an anonymous page view to the login; 403 otherwise."""
        if self.current_user is None:
            if self.request.method in ("GET", "HEAD") and not isinstance(self, APIHandler):
                self.redirect(self.get_login_url() + "?" +
                              urlencode({"next": self.request.uri or ""}))
                return False
            raise web.HTTPError(403, "log in first")
        store = AccountStore(self.authenticator.store_path, self.authenticator.db_url)
        self.is_admin = await asyncio.get_running_loop().run_in_executor(
            None, _store_admin, store, self.current_user.name)
        if self.admin_only and not self.is_admin:
            raise web.HTTPError(403, "only hub admins can use this page")
        return True

    def teamhub_settings(self) -> tuple[Settings, Paths]:
        """(Blocking: reads teamhub.toml.) The settings in effect, as the CLI sees them."""
        settings = load()
        return settings, Paths.from_settings(settings)


def _store_admin(store: AccountStore, name: str) -> bool:
    # The store is the source of truth for the admin flag (the hub's copy may lag).
    account = store.get(name)
    return account is not None and account.admin and not account.pending


class ConsolePage(ConsoleAccess, AccountPage):
    """Base of every console page (see the module docstring)."""

    tab = ""
    scripts: tuple[str, ...] = ()  # files under static/ this page loads

    async def prepare(self) -> None:
        await super().prepare()
        await self.check_access()

    async def render_console(self, template: str, status: int = 200, **ns: Any) -> None:
        """Render TEMPLATE (below console/) in the console's frame, with its CSP."""
        tabs = [t for t in TABS if self.is_admin or not t.admin_only]
        html = await self.render_template(
            f"console/{template}", tabs=tabs, tab=self.tab, scripts=self.scripts,
            static=lambda name: f"{self.hub.base_url}{PREFIX}/static/{name}", **ns)
        body = html.encode() if isinstance(html, str) else html
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy",
                        content_security_policy(head_script_hash(body)))
        self.finish(body)


class ConsoleData(ConsoleAccess, APIHandler):
    """Base of the console's JSON endpoints (see the module docstring): the XSRF token is
    required on every method, GET included; errors are JSON."""

    async def prepare(self) -> None:
        await super().prepare()
        await self.check_access()

    async def blocking(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data))


class HomeHandler(ConsolePage):
    """`/hub/teamhub/console`: the first tab the user may see."""

    admin_only = False

    async def get(self) -> None:
        tab = TABS[0] if self.is_admin else next(t for t in TABS if not t.admin_only)
        self.redirect(f"{self.hub.base_url}{tab.path}")


class ConsoleStatic(IsolatedStaticHandler):
    """The console's scripts and styles, with the hub's isolation headers."""


def handlers() -> list[tuple[str, Any, dict[str, Any]] | tuple[str, Any]]:
    return [
        (rf"/{PREFIX}/?", HomeHandler),
        (rf"/{PREFIX}/static/(.*)", ConsoleStatic, {"path": str(STATIC)}),
    ]
