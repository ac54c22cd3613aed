"""Idle culling with real servers and kernels and a short timeout: an idle server is
stopped; a server whose kernel computes silently (no output, so no kernel messages) is
not. Without teamhub's server extension the busy one would be culled too: jupyter_server
counts only kernel messages as activity."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import websocket
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique

pytestmark = [pytest.mark.hub, pytest.mark.system]

TIMEOUT = 30


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory(extra_toml=f"\n[culling]\ntimeout = {TIMEOUT}\nevery = 5\n")
    h.start()
    return h


def _send_silent_sleep(b: Browser, name: str, kernel_id: str, seconds: int) -> None:
    """Start a long silent computation and hang up, as a closed browser tab does."""
    ws_url = f"{b.base.replace('http', 'ws', 1)}/user/{name}/api/kernels/{kernel_id}/channels"
    ws_url += "?token=" + b.lab_tokens[name]  # as JupyterLab does (see Browser.execute)
    cookie = "; ".join(f"{c.name}={c.value}" for c in b.http.cookies)
    ws = websocket.create_connection(ws_url, header=[f"Cookie: {cookie}"], timeout=30)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": name, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": f"import time; time.sleep({seconds})", "silent": False,
                    "store_history": True, "user_expressions": {}, "allow_stdin": False,
                    "stop_on_error": True},
    }))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the kernel says it is busy with it
        msg = json.loads(ws.recv())
        if (msg.get("parent_header", {}).get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "busy"):
            break
    ws.close()


def _server(b: Browser, name: str) -> dict | None:
    return b.get(f"/hub/api/users/{name}").json().get("servers", {}).get("")


def test_idle_server_culled_busy_server_kept(hub: HubProcess) -> None:
    idle, busy = unique("idle"), unique("busy")
    browsers = {}
    for name in (idle, busy):
        hub.add_user(name, PASSWORD)
        b = Browser(hub.url)
        assert b.login(name, PASSWORD).status_code == 302
        b.start_server(name)
        assert b.open_lab(name).status_code == 200
        browsers[name] = b
    kernel = browsers[busy].new_kernel(busy)
    browsers[busy].wait_kernel(busy, kernel)
    _send_silent_sleep(browsers[busy], busy, kernel, 600)
    started = time.monotonic()
    # The idle one goes within timeout + cull interval + report delays.
    deadline = started + TIMEOUT * 4
    while _server(browsers[idle], idle) and time.monotonic() < deadline:
        time.sleep(2)
    assert _server(browsers[idle], idle) is None, "the idle server was not culled"
    # The busy one outlives well over twice the timeout with no message from its kernel.
    while time.monotonic() < started + TIMEOUT * 2.5:
        assert _server(browsers[busy], busy), "the server with a busy kernel was culled"
        time.sleep(2)
    kernels = browsers[busy].get(f"/user/{busy}/api/kernels").json()
    assert [k["execution_state"] for k in kernels] == ["busy"]
    log = hub.log.read_text()
    assert f"Culling server {idle}" in log
    assert f"Culling server {busy}" not in log
