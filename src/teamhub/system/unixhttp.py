"""HTTP requests to `http://` URLs and to unix sockets named as `http+unix://<quoted path>/...`
(the form JupyterHub and configurable-http-proxy use). Standard library only."""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import unquote, urlsplit


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None, timeout: float = 10,
            context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """(status, body) of one request; OSError (also http.client's errors) if none came."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    conn: http.client.HTTPConnection
    if parts.scheme == "http+unix":
        conn = _UnixConnection(unquote(parts.netloc), timeout)
    elif parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=context)
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    else:
        raise ValueError(f"not an http, https or http+unix URL: {url}")
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except http.client.HTTPException as exc:
        raise OSError(f"{url}: {exc!r}") from None
    finally:
        conn.close()
