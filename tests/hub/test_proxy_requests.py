"""What the proxy itself answers (issue 18, item 10, and the proxy's half of item 1).

- Paths that are not valid percent-encoding get 400 from the proxy: configurable-http-
  proxy's own routing answered them with 500.
- A `Service-Worker-Allowed` header passes only on the hub's route: a user's server
  could otherwise let a service worker take scope "/" and control the hub's pages in a
  colleague's browser.

The backend behind the test routes is a real HTTP server started here (the proxy does not
know who is behind a route; a user's server sending the header looks exactly like this).
"""

from __future__ import annotations

import http.client
import http.server
import json
import pwd
import threading
from pathlib import Path

import pytest
import websocket
from support.hub import HubProcess

from teamhub.settings import load
from teamhub.system import unixhttp

pytestmark = [pytest.mark.hub, pytest.mark.system]

BAD_PATHS = ["/hub/reset/%FF%FE", "/user/x/%E0%A4%A", "/hub/%", "/%C0", "//", "/user/%ZZ/"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    hub = HubProcess(tmp_path_factory.mktemp("proxyreq"))
    hub.start()
    yield hub
    hub.cleanup()


def raw_get(hub: HubProcess, path: str) -> tuple[int, dict[str, str]]:
    """GET PATH exactly as written (requests would re-quote a broken escape)."""
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def test_undecodable_paths_get_400_not_500(hub: HubProcess) -> None:
    for path in BAD_PATHS:
        assert raw_get(hub, path)[0] == 400, path
    assert raw_get(hub, "/hub/login")[0] == 200
    assert raw_get(hub, "/hub/reset/%41bc")[0] < 500


def test_undecodable_websocket_paths_get_400(hub: HubProcess) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(f"ws://127.0.0.1:{hub.port}/user/x/%E0%A4%A/api/kernels",
                                    timeout=30)
    assert err.value.status_code == 400


class _WorkerBackend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Service-Worker-Allowed", "/")
        self.send_header("Content-Type", "text/javascript")
        self.end_headers()
        self.wfile.write(b"self.addEventListener('fetch', () => {});\n")

    def log_message(self, *args: object) -> None:
        pass


def _routes(hub: HubProcess, method: str, path: str = "", body: dict | None = None):
    token = (hub.state / "proxy_auth_token").read_text().strip()
    url = ("http+unix://" + str(hub.paths.proxy_api_socket).replace("/", "%2F")
           + "/api/routes" + path)
    status, raw = unixhttp.request(url, method, {"Authorization": f"token {token}"},
                                   json.dumps(body).encode() if body else None)
    assert status < 300, (method, path, status)
    return json.loads(raw) if raw else None


def test_service_worker_allowed_passes_only_on_the_hub_route(hub: HubProcess) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WorkerBackend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{server.server_address[1]}"
    hub_route = _routes(hub, "GET")["/"]
    try:
        for route in ("/user/swtest", "/services/swtest"):
            _routes(hub, "POST", route, {"target": target})
            status, headers = raw_get(hub, route + "/sw.js")
            assert status == 200 and "service-worker-allowed" not in headers, route
        # The very same backend behind the hub's route keeps the header.
        _routes(hub, "POST", "/", {**hub_route, "target": target})
        status, headers = raw_get(hub, "/hub/sw.js")
        assert status == 200 and headers.get("service-worker-allowed") == "/"
    finally:
        _routes(hub, "POST", "/", hub_route)
        for route in ("/user/swtest", "/services/swtest"):
            _routes(hub, "DELETE", route)
        server.shutdown()
    assert raw_get(hub, "/hub/login")[0] == 200


def test_proxy_api_is_the_hub_accounts_only_socket(hub: HubProcess) -> None:
    """The hub's only: its account's (hub.unprivileged, the default), 0600."""
    sock = Path(hub.paths.proxy_api_socket)
    assert sock.is_socket() and oct(sock.stat().st_mode & 0o777) == "0o600"
    assert sock.stat().st_uid == pwd.getpwnam(load(hub.config, environ={})["hub.account"]).pw_uid


def test_posts_the_hub_refuses_get_the_hubs_answer_never_503(hub: HubProcess) -> None:
    # The hub answers a refused POST and closes at once; over a fresh connection per
    # request (what CHP does for a unix-socket target) the proxy's own end-of-request
    # write then met a closed socket and it answered 503 (26 of 300 here before the fix).
    statuses: dict[int, int] = {}
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    try:
        for _ in range(300):
            conn.request("POST", "/hub/no-such-page", body=b"a=1&b=2",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
    finally:
        conn.close()
    # The hub refuses it (403: no XSRF token); whatever it says must reach the client.
    assert list(statuses) == [403], statuses
