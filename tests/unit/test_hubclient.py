"""HubClient against real sockets served by this test process (no root needed).

The hub's identity here is this process: the state dir is a temp folder of the
user running the tests, and the pid file holds the test's own pid. Squatters of
another user, and a real hub, are in tests/system/test_sockets.py and
tests/hub/test_hub_channel.py.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from teamhub import hubclient
from teamhub.errors import HubImpostor, HubNotAnswering, HubNotRunning, TeamhubError
from teamhub.hubclient import Endpoint, HubClient, HubIdentity
from teamhub.paths import Paths

TOKEN = "s3cret"


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self) -> None:
        Recorder.seen.append({"path": self.path, "headers": dict(self.headers)})
        body = json.dumps({"version": "6.1.1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class UnixServer(http.server.HTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)

    def get_request(self):  # noqa: ANN201 (socketserver's own signature)
        sock, _ = self.socket.accept()
        return sock, ("local", 0)


def serve(server: http.server.HTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "jupyterhub.pid").write_text(f"{os.getpid()}\n")
    (state / "cli_api_token").write_text(TOKEN + "\n")
    return Paths(config_file=tmp_path / "t.toml", state_dir=state, runtime_dir=tmp_path,
                 home_root=tmp_path)


@pytest.fixture
def tcp_hub(paths: Paths) -> Iterator[int]:
    Recorder.seen = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    serve(server)
    port = server.server_address[1]
    paths.hub_url_file.write_text(f"http://127.0.0.1:{port}/hub/api\n")
    yield port
    server.shutdown()
    server.server_close()


def test_endpoints_of_both_unix_spellings_and_tcp() -> None:
    for scheme in ("http+unix", "unix+http"):
        e = Endpoint.parse(f"{scheme}://%2Frun%2Fteamhub%2Fhub.sock/hub/api/")
        assert (e.scheme, e.socket_path, e.prefix) == ("unix", "/run/teamhub/hub.sock", "/hub/api")
        assert str(e) == "unix socket /run/teamhub/hub.sock"
    e = Endpoint.parse("http://127.0.0.1:8081/hub/api")
    assert (e.scheme, e.host, e.port, e.prefix, str(e)) == (
        "http", "127.0.0.1", 8081, "/hub/api", "127.0.0.1:8081")
    assert str(Endpoint.parse("https://[::1]:8000")) == "[::1]:8000"
    for bad in ("ftp://x/", "http+unix://relative.sock/hub/api", "http://:99/", "http://h:99999/"):
        with pytest.raises(TeamhubError, match="cannot use the hub URL"):
            Endpoint.parse(bad)


def test_a_token_is_never_given_to_an_unverified_client() -> None:
    with pytest.raises(ValueError):
        HubClient("http://127.0.0.1:1", token=TOKEN)


def test_the_verified_hub_gets_the_token(paths: Paths, tcp_hub: int) -> None:
    reply = HubClient.for_cli(paths).call("GET", "/")
    assert reply == (200, {"version": "6.1.1"})
    assert Recorder.seen[-1]["path"] == "/hub/api/"
    assert Recorder.seen[-1]["headers"]["Authorization"] == f"token {TOKEN}"
    assert hubclient.hub_running(paths)


def test_a_listener_of_another_process_gets_nothing(paths: Paths, tcp_hub: int) -> None:
    # The pid file names another live process of ours, which does not hold the socket.
    other = subprocess.Popen(["sleep", "60"])
    try:
        paths.hub_pid_file.write_text(f"{other.pid}\n")
        with pytest.raises(HubImpostor, match=f"pid {os.getpid()}.*sent it nothing"):
            HubClient.for_cli(paths).call("GET", "/")
        assert Recorder.seen == []
    finally:
        other.kill()
        other.wait()


def test_without_a_live_hub_process_a_listener_is_an_impostor(paths: Paths,
                                                              tcp_hub: int) -> None:
    paths.hub_pid_file.unlink()
    with pytest.raises(HubImpostor, match="no hub is running"):
        HubClient.for_cli(paths).call("GET", "/")
    assert Recorder.seen == []


def test_provably_not_running_versus_not_answering(paths: Paths) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    paths.hub_url_file.write_text(f"http://127.0.0.1:{port}/hub/api\n")
    # A live hub process that does not listen (starting, stopping): not "not running".
    with pytest.raises(HubNotAnswering, match=f"pid {os.getpid()}"):
        HubClient.for_cli(paths).call("DELETE", "/users/x")
    paths.hub_pid_file.write_text("999999999\n")
    with pytest.raises(HubNotRunning):
        HubClient.for_cli(paths).call("DELETE", "/users/x")
    assert hubclient.hub_running(paths) is False and hubclient.hub_may_run(paths) is False
    paths.hub_url_file.unlink()
    with pytest.raises(HubNotRunning):
        HubClient.for_cli(paths)


def test_a_hub_that_does_not_answer_in_time(paths: Paths, monkeypatch) -> None:
    monkeypatch.setattr(hubclient, "READ_TIMEOUT", 0.3)
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        paths.hub_url_file.write_text(f"http://127.0.0.1:{silent.getsockname()[1]}/hub/api\n")
        with pytest.raises(HubNotAnswering, match="did not answer within 0.3 s"):
            HubClient.for_cli(paths).call("GET", "/")
        assert hubclient.hub_may_run(paths) is True


def test_unix_socket_hub(paths: Paths) -> None:
    Recorder.seen = []
    folder = paths.state_dir / "run"
    folder.mkdir(mode=0o755)
    path = folder / "hub.sock"
    server = UnixServer(str(path), Recorder)
    serve(server)
    try:
        paths.hub_url_file.write_text(
            f"http+unix://{urllib.parse.quote(str(path), safe='')}/hub/api\n")
        assert HubClient.for_cli(paths).call("GET", "/").status == 200
        assert Recorder.seen[-1]["headers"]["Authorization"] == f"token {TOKEN}"
        folder.chmod(0o777)  # anyone could have put their socket there
        with pytest.raises(HubImpostor, match="can be changed by users other than"):
            HubClient.for_cli(paths).call("GET", "/")
        assert len(Recorder.seen) == 1
    finally:
        server.shutdown()
        server.server_close()
    folder.chmod(0o755)
    with pytest.raises(HubNotAnswering):  # gone, but the pid file names a live process
        HubClient.for_cli(paths).call("GET", "/")


def test_identity_is_the_state_dirs_owner(paths: Paths) -> None:
    identity = HubIdentity.of(paths)
    assert identity.uid() == os.getuid() and identity.live_pid() == os.getpid()


def test_a_listener_that_cannot_be_verified_is_never_taken_for_no_hub(
        paths: Paths, tcp_hub: int) -> None:
    client = HubClient.for_cli(paths)
    paths.state_dir.rename(paths.state_dir.with_name("moved"))  # the hub's identity is gone
    with pytest.raises(HubImpostor, match="cannot tell what answers"):
        client.call("DELETE", "/users/x")
    assert Recorder.seen == []
