"""teamhub's extension of every user's Jupyter server (enabled by the spawner's args).

1. A busy kernel is activity. jupyter_server counts only kernel *messages* as
   kernel activity, so a long computation that prints nothing makes the server
   look idle and the idle culler would stop it mid-computation. Every
   `$JUPYTER_TEAMHUB_BUSY_INTERVAL` seconds this extension looks at the kernels'
   execution_state (which jupyter_server tracks from their status messages)
   and, while any is busy, records "now" as activity; the single-user server
   reports it to the hub with its next activity update.
2. HSTS: when the hub serves TLS, `$JUPYTER_TEAMHUB_HSTS` holds the
   Strict-Transport-Security value, sent on every response of this server too
   (the proxy terminates TLS, so the server cannot know by itself).
3. Browser isolation (teamhub.browser_isolation): this server's pages cannot be
   framed and drop their opener, its XSRF cookie is HttpOnly (JupyterLab sends its
   token instead), JupyterLab appends its token to websockets, and
   `IsolationAuthorizer` refuses cookie-only websockets, so another user's page in
   the same origin cannot open this user's kernels or terminals.
4. `GET <base>/teamhub/api/kernelspecs-stamp`: a fingerprint of the kernel list, which
   teamhub's JupyterLab extension (src/teamhub/lab) asks for every 2 s while the page is
   visible, refreshing the launcher only when it changed (JupyterLab by itself asks for
   the kernel specs once a minute).
5. Warm kernels (teamhub.envs.warm_kernels): with `envs.warm_kernels = "prewarm"` the
   default kernel's warm parent is started as soon as the server runs. With it on, a front
   end listing the kernels (/api/kernelspecs, the stamp of 4.) starts the parents of the
   user's recent kernels, and unused parents stop (teamhub.envs.warm_ahead).
   `POST <base>/teamhub/api/warm-parents` with `{"kernel": NAME}` starts NAME's parent
   ahead of its first kernel (sent by teamhub's Lab extension from the launcher and the
   kernel dialog); with `{"notebook": PATH}`, the parent of the kernel that notebook
   names (from the file browser and links in rendered Markdown,
   teamhub.envs.notebook_kernel); so does a page opened at
   a notebook's URL (teamhub.envs.warm_hints).
6. Idle memory: the server's client of the hub (jupyterhub.httpclient, aiohttp) resolves
   host names with the standard library instead of c-ares (`hub_client_without_dns_threads`),
   and the start-up's garbage goes back to the system once the server has settled
   (`release_startup_garbage`).
7. Kernel websockets send each message at once (teamhub.kernel_ws: TCP_NODELAY).
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import os
from collections.abc import Awaitable
from datetime import datetime, timezone
from typing import Any

from aiohttp import connector as aiohttp_connector
from aiohttp.resolver import ThreadedResolver
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback

from . import kernel_ws
from .browser_isolation import FRAME_ANCESTORS, ISOLATION_HEADERS, websocket_refusal
from .envs.warm_ahead import WarmAhead
from .envs.warm_hints import WARM_AHEAD_SETTING, WarmParentHintHandler, hint_pages
from .envs.warm_kernels import (
    DEFAULT_IDLE_EXIT,
    WARM_CONFIG,
    WARM_PROVISIONER,
    discard_forked,
    prewarm_default,
)
from .spawners import page_templates

ACTIVITY_KEY = "teamhub_busy_last_activity"  # *_last_activity settings count as activity
DEFAULT_INTERVAL = 30.0
# Seconds after the extension loads: the server answers and the user's Lab page has
# usually been served by then.
STARTUP_SETTLE = 3.0


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "teamhub.serverext"}]


def busy_kernels(kernel_manager: Any) -> list[str]:
    """Ids of the kernels whose last status was busy."""
    kernels = getattr(kernel_manager, "_kernels", {})
    return [kid for kid, k in list(kernels.items())
            if getattr(k, "execution_state", None) == "busy"]


def mark_if_busy(serverapp: Any) -> bool:
    if busy_kernels(serverapp.kernel_manager):
        serverapp.web_app.settings[ACTIVITY_KEY] = datetime.now(timezone.utc)
        return True
    return False


def _interval() -> float:
    try:
        value = float(os.environ.get("JUPYTER_TEAMHUB_BUSY_INTERVAL", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


class IsolationAuthorizer(Authorizer):
    """Refuses browsers' websockets that prove only the user's cookies (kernels,
    terminals, events and language servers all ask the authorizer); everything else
    is allowed, as by jupyter_server's default authorizer (JupyterHub has already
    checked the user's scopes)."""

    def is_authorized(self, handler: Any, user: Any, action: str,
                      resource: str) -> bool | Awaitable[bool]:
        # Plain bool for every other request (some callers do not await); websocket
        # handlers await their authorizer, and the token check asks the hub.
        if handler.request.headers.get("Upgrade", "").lower() != "websocket":
            return True
        return self._websocket_allowed(handler, user)

    async def _websocket_allowed(self, handler: Any, user: Any) -> bool:
        token_authenticated = getattr(handler, "_token_authenticated", False) \
            or await _url_token_is_users(handler, user)
        reason = websocket_refusal(handler.request.headers, token_authenticated)
        if reason:
            self.log.warning("Refused %s %s: %s", handler.request.method,
                             handler.request.path, reason)
            return False
        return True


async def _url_token_is_users(handler: Any, user: Any) -> bool:
    """Whether a websocket's ?token= (what JupyterLab appends) is a valid token of USER.

    JupyterHub itself reads URL tokens of websockets only when the browser says
    Sec-Fetch-Mode: websocket, which Chromium does not send.
    """
    token = handler.get_query_argument("token", "")
    hub_auth = getattr(getattr(handler, "identity_provider", None), "hub_auth", None)
    if not token or hub_auth is None or user is None:
        return False
    model = await hub_auth.user_for_token(token, sync=False)
    return (bool(model) and model.get("name") == getattr(user, "username", None)
            and bool(hub_auth.check_scopes(hub_auth.access_scopes, model)))


def kernelspecs_stamp(specs: dict[str, str]) -> str:
    """A short fingerprint of SPECS (kernel name → resource folder)."""
    return hashlib.sha256(json.dumps(sorted(specs.items())).encode()).hexdigest()[:16]


class KernelSpecsStampHandler(APIHandler):
    """The kernel list's fingerprint: names and folders only, no kernel.json read."""

    auth_resource = "kernelspecs"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        listed = getattr(self.kernel_spec_manager, "on_listing", None)
        if listed is not None:
            listed()
        specs = await ensure_async(self.kernel_spec_manager.find_kernel_specs())
        self.finish({"stamp": kernelspecs_stamp(specs)})


def isolate(settings: dict[str, Any]) -> None:
    """Browser isolation on this server's tornado SETTINGS (before any request)."""
    headers = settings.setdefault("headers", {})
    headers.update(ISOLATION_HEADERS)
    headers.setdefault("Content-Security-Policy", FRAME_ANCESTORS)
    settings["xsrf_cookie_kwargs"] = {**settings.get("xsrf_cookie_kwargs", {}), "httponly": True}
    # JupyterLab then puts ?token= on its websockets (PageConfig appendToken), which
    # IsolationAuthorizer requires; the same dict is JupyterLab's page config.
    settings.setdefault("page_config_data", {})["appendToken"] = "true"


def hub_client_without_dns_threads() -> None:
    """With aiodns installed, aiohttp's default resolver is c-ares, which starts two threads
    (and their stacks and malloc arena) in every server at its first request to the hub:
    ~1 MB of each idle server's own memory. The hub is reached at a unix socket or an IP
    address, which need no lookup; the threaded resolver asks getaddrinfo (in a worker
    thread) only when a name must be resolved. Before the hub client's first connector,
    which jupyterhub's own extension makes while it loads, before this one loads."""
    aiohttp_connector.DefaultResolver = ThreadedResolver


# At import: jupyter_server imports every enabled extension before it loads any.
hub_client_without_dns_threads()


def release_startup_garbage() -> None:
    """Collect the start-up's garbage and give the C allocator's free pages back to the
    system (malloc_trim): start-up frees much of what it allocated (configuration,
    schemas, templates), and an idle server would otherwise keep those pages, each one
    its own memory (~0.3 MB per server)."""
    gc.collect()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


def start_warm_ahead(serverapp: Any) -> WarmAhead:
    """Parents started when a front end lists the kernels, stopped when unused."""
    idle_exit = float(serverapp.config[WARM_CONFIG].get("idle_exit", DEFAULT_IDLE_EXIT))
    ahead = WarmAhead(serverapp, idle_exit)
    manager = serverapp.kernel_spec_manager
    if hasattr(manager, "on_listing"):
        loop = IOLoop.current()  # whichever thread lists them, parents start in the loop's
        manager.on_listing = lambda: loop.add_callback(ahead.listed)
    expire = PeriodicCallback(ahead.expire, max(1.0, min(60.0, idle_exit / 4)) * 1000)
    expire.start()
    serverapp.web_app.settings["teamhub_warm_expire"] = expire
    serverapp.web_app.settings[WARM_AHEAD_SETTING] = ahead
    return ahead


def _load_jupyter_server_extension(serverapp: Any) -> None:
    settings = serverapp.web_app.settings
    isolate(settings)
    kernel_ws.install(settings)
    hsts = os.environ.get("JUPYTER_TEAMHUB_HSTS", "")
    if hsts:
        settings["headers"]["Strict-Transport-Security"] = hsts
    base = settings.get("base_url", "/")
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, "teamhub/api/kernelspecs-stamp"), KernelSpecsStampHandler),
        (url_path_join(base, "teamhub/api/warm-parents"), WarmParentHintHandler)])
    # Once every extension has put its template environment in the settings.
    IOLoop.current().add_callback(page_templates.use_compiled, settings)

    def check() -> None:
        mark_if_busy(serverapp)

    warm = serverapp.config.KernelProvisionerFactory.get("default_provisioner_name") \
        == WARM_PROVISIONER
    if warm and serverapp.config[WARM_CONFIG].get("prewarm", False):
        # Once the loop runs (the server answers first), in its thread: the parent's life
        # is tied to that thread's.
        IOLoop.current().add_callback(prewarm_default, serverapp)
    else:
        discard_forked()  # the fork server made one, but this server's config says no
    if warm:
        start_warm_ahead(serverapp)
        # After every extension has set its page config hook (JupyterHub's, at load).
        IOLoop.current().add_callback(hint_pages, settings)

    IOLoop.current().call_later(STARTUP_SETTLE, release_startup_garbage)
    callback = PeriodicCallback(check, _interval() * 1000)
    callback.start()
    settings["teamhub_busy_callback"] = callback
    serverapp.log.info("teamhub: busy kernels count as activity (checked every %ss)%s",
                       _interval(), "; HSTS on" if hsts else "")
