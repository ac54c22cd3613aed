"""The hub's side of browser isolation (policy in `browser_isolation`).

Headers and the HttpOnly XSRF cookie are plain JupyterHub settings (hubconfig
`update_browser_isolation`). Refusing requests before a handler runs is not: JupyterHub
has no per-request hook, and its handlers, the account pages and the 404 page all
derive from `BaseHandler`, whose `prepare` identifies the user. `install` wraps
that one method (once, in the hub process, from jupyterhub_config.py); a JupyterHub
without it fails the hub's start loudly instead of running unguarded.

A refusal is a plain-text 403: JupyterHub's error pages embed the user's XSRF
token, so they must never be the answer to a script.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler, UserUrlHandler
from jupyterhub.handlers.static import CacheControlStaticFilesHandler
from tornado import web

from .browser_isolation import ISOLATION_HEADERS, page_refusal, state_change_refusal

_MARK = "_teamhub_guarded"


class IsolatedStaticHandler(CacheControlStaticFilesHandler):
    """/hub/static/ with the same framing and opener headers as every hub page."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        for name, value in ISOLATION_HEADERS.items():
            self.set_header(name, value)


def refusal(handler: BaseHandler) -> str | None:
    """Why the hub must refuse HANDLER's request, or None."""
    request = handler.request
    if request.method in ("GET", "HEAD"):
        if isinstance(handler, APIHandler):
            # JupyterHub itself requires the XSRF token on scripted, cookie-authenticated
            # API reads; the API never answers with a page.
            return None
        if isinstance(handler, UserUrlHandler) and "api" in request.path.split("/"):
            # A server's API while the server is down: JupyterHub answers JSON 424,
            # which JupyterLab needs to offer a restart.
            return None
        return page_refusal(request.headers)
    return state_change_refusal(request.method, request.headers, handler.hub.base_url)


def install() -> None:
    """Guard every hub handler's `prepare`: refuse what `refusal` names."""
    original = BaseHandler.prepare
    if getattr(original, _MARK, False):
        return

    async def prepare(self: BaseHandler) -> Any:
        await original(self)
        reason = refusal(self)
        if reason:
            self.log.warning("Refused %s %s: %s", self.request.method, self.request.path, reason)
            self.clear()
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            for name, value in ISOLATION_HEADERS.items():
                self.set_header(name, value)
            raise web.Finish(f"403 Forbidden: {reason}\n")

    setattr(prepare, _MARK, True)
    BaseHandler.prepare = prepare
