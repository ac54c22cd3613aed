"""requests over unix sockets: URLs `http+unix://<percent-encoded path>/...`, the form of
teamhub's hub API URL (<state>/hub_api_url) and proxy API. Used by bench and the tests."""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlparse

import requests
import urllib3
from requests.adapters import HTTPAdapter


class _Connection(urllib3.connection.HTTPConnection):
    def __init__(self, *args, socket_path: str, **kw) -> None:
        super().__init__(*args, **kw)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        return sock


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class UnixAdapter(HTTPAdapter):
    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return _Pool("localhost", socket_path=unquote(urlparse(request.url).netloc))


def session() -> requests.Session:
    """A requests Session that also speaks http+unix://."""
    s = requests.Session()
    s.mount("http+unix://", UnixAdapter())
    return s
