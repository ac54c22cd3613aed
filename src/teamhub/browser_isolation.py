"""Browser isolation: what keeps a page served by one member's server from acting as another.

Without `hub.domain`, the hub and every user's server share one browser origin,
and a member controls what their own server sends (any process on its port), so
a page of A's runs in the origin of B's hub pages and B's server. The origin
cannot be split without a domain; what can be done is to make everything that
would let such a page act as B unreachable to it:

- pages (hub and servers) cannot be framed (CSP frame-ancestors 'none',
  X-Frame-Options DENY), and a page opened by another page loses its opener
  (Cross-Origin-Opener-Policy: same-origin), so A's page never holds a document of
  B's and cannot read its tokens or cookies;
- the hub's HTML pages (they carry B's XSRF token) are only served to navigations:
  a fetch()/XHR, <script>, <img>... of one is refused (Fetch Metadata);
- cookie-authenticated state changes at the hub must come from the hub's own
  origin (Sec-Fetch-Site) and, where the browser says, from a hub page (Referer);
- users' servers only accept browsers' websockets that carry the page's token
  (JupyterLab appends it), so a page that has only B's cookies cannot open B's
  kernels or terminals.

Sec-Fetch-* headers and COOP are set and honoured by browsers only in secure
contexts (https, or http to localhost): over plain http to a LAN address none of
this applies, which is why `teamhub doctor` recommends TLS or `hub.domain`.

This module is the policy only (no JupyterHub imports): the hub side applies it
in `hubguard`, users' servers in `serverext`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

# On every response of the hub and of users' servers.
FRAME_ANCESTORS = "frame-ancestors 'none'"
ISOLATION_HEADERS = {
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values a state change at the hub may carry ("none": typed or
# bookmarked by the user, never a page's script).
STATE_CHANGE_SITES = frozenset({"same-origin", "none"})


def page_refusal(headers: Mapping[str, str]) -> str | None:
    """Why a request for an HTML page must be refused, or None.

    Only a top-level navigation may load a page. Requests without Fetch Metadata
    (other clients, old browsers, plain-http LAN origins) cannot be told apart and
    pass.
    """
    mode = headers.get("Sec-Fetch-Mode")
    if mode is None:
        return None
    dest = headers.get("Sec-Fetch-Dest", "document")
    if mode == "navigate" and dest == "document":
        return None
    return (f"this page opens only as a page of its own (Sec-Fetch-Mode {mode}, "
            f"Sec-Fetch-Dest {dest}): it is not served to scripts or frames")


def state_change_refusal(method: str, headers: Mapping[str, str], page_prefix: str) -> str | None:
    """Why a cookie-authenticated state change (POST, PUT, PATCH, DELETE) must be refused.

    It must come from this origin (Sec-Fetch-Site: cannot be set by scripts) and,
    when the browser names the page it came from, from a page under PAGE_PREFIX.
    The Referer alone proves little (a script may choose any same-origin referrer);
    the XSRF token, which only the hub's own pages carry, remains the real check.
    Token-authenticated requests (an Authorization header) do not come from a
    browser's cookies and are not this function's business.
    """
    if method.upper() in SAFE_METHODS or headers.get("Authorization"):
        return None
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in STATE_CHANGE_SITES:
        return f"changes are only accepted from the hub's own pages (Sec-Fetch-Site {site})"
    referer = headers.get("Referer")
    if referer:
        path = urlsplit(referer).path
        if not path.startswith(page_prefix):
            return f"changes are only accepted from the hub's own pages, not from {path}"
    return None


def websocket_refusal(headers: Mapping[str, str], token_authenticated: bool) -> str | None:
    """Why a websocket to a user's server must be refused, or None.

    A browser page (browsers always send Origin on a websocket handshake, and no
    script can leave it out) that proves nothing but the user's cookies could be
    anyone's page in the same origin: it must carry the user's token, as
    JupyterLab's own sockets do (teamhub sets appendToken). Chromium sends no
    Fetch Metadata on websocket handshakes, so Origin is what marks a browser.
    """
    if headers.get("Upgrade", "").lower() != "websocket" or token_authenticated:
        return None
    if headers.get("Origin") is None:
        return None
    return "websockets from a browser need the page's token (cookies alone are refused)"
