"""teamhub.system.listen and unixhttp against the real thing: `ss`, sockets, a unix server."""

from __future__ import annotations

import http.server
import os
import socket
import threading
from pathlib import Path

import pytest

from teamhub.system import listen, unixhttp

pytestmark = pytest.mark.system


def test_auto_is_dual_stack_here_and_explicit_addresses_stay() -> None:
    assert listen.has_ipv6()  # this machine has ::1
    assert listen.listen_address("auto") == "::"
    assert listen.listen_address("127.0.0.1") == "127.0.0.1"
    assert listen.all_addresses("auto") and listen.all_addresses("0.0.0.0")
    assert not listen.all_addresses("127.0.0.1")


def test_listeners_names_every_family_with_pid_and_user() -> None:
    with socket.socket(socket.AF_INET6) as v6, socket.socket() as v4:
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::1", 0))
        port = v6.getsockname()[1]
        v6.listen()
        v4.bind(("127.0.0.1", port))
        v4.listen()
        found = listen.listeners(port)
        assert found is not None
        assert {x.address for x in found} == {f"[::1]:{port}", f"127.0.0.1:{port}"}
        assert {x.pid for x in found} == {os.getpid()}
        assert all(x.user == "root" for x in found)
        assert f"[::1]:{port} by " in found[0].describe() or f"127.0.0.1:{port} by " in \
            found[0].describe()
        # A dual-stack bind of :: on that port fails: someone is there.
        assert listen.in_use(listen.can_bind("::", port))
    assert listen.listeners(port) == []
    assert listen.can_bind("::", port) is None


def test_unixhttp_speaks_to_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = f"{self.path} {self.headers.get('Authorization')}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class UnixServer(http.server.HTTPServer):
        address_family = socket.AF_UNIX

        def server_bind(self) -> None:
            self.socket.bind(self.server_address)

        def get_request(self):
            return self.socket.accept()[0], ("local", 0)

    server = UnixServer(str(path), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http+unix://" + str(path).replace("/", "%2F") + "/hub/api/users?state=active"
        status, body = unixhttp.request(url, headers={"Authorization": "token t"})
        assert (status, body) == (200, b"/hub/api/users?state=active token t")
    finally:
        server.shutdown()
    with pytest.raises(OSError):
        unixhttp.request("http+unix://" + str(tmp_path / "none.sock").replace("/", "%2F") + "/")


def test_socket_answers_only_while_something_listens(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    assert not listen.socket_answers(path)  # no such file
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    assert not listen.socket_answers(path)  # bound, not listening
    sock.listen()
    assert listen.socket_answers(path)
    sock.close()
    assert not listen.socket_answers(path)  # a stale socket file is not an answer
