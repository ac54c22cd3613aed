"""Many users at the same moment (issue 16): every one of them ends up in their own Lab.

A burst of 100 once left one user with HTTP 424 ("server not running") at
/hub/user/<name>/lab after the hub had said the server was ready: two servers starting
together had been given the same port; the loser exited (`address already in use`) while
the hub's readiness check reached the winner's server and took it for the loser's.
The second test sets that collision up on purpose, with a port the admin configured.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, free_port, unique

pytestmark = [pytest.mark.hub, pytest.mark.system]

BURST = 10


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory()
    h.users = [unique("burst") for _ in range(BURST)]
    for name in h.users:
        h.add_user(name, PASSWORD)
    # Two more for the collision test: an admin's fixed port makes both servers ask for it.
    h.first, h.second = unique("porta"), unique("portb")
    h.add_user(h.first, PASSWORD)
    h.add_user(h.second, PASSWORD)
    h.fixed_port = free_port()
    config_d = h.config.parent / "jupyterhub_config.d"
    config_d.mkdir()
    (config_d / "fixed-port.py").write_text(f"c.LocalSpawner.port = {h.fixed_port}\n")
    h.start()
    return h


def _ready(b: Browser, name: str, timeout: float = 240) -> str:
    """Log NAME in, start their server, wait until the hub says it is ready, open Lab:
    the path Lab finally answered at (or what went wrong)."""
    resp = b.login(name, PASSWORD)
    if resp.status_code != 302:
        return f"login: HTTP {resp.status_code}"
    b.start_server(name, timeout=timeout)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        page = b.open_lab(name)
        last = f"HTTP {page.status_code} at {urlparse(page.url).path}"
        if page.status_code == 200 and urlparse(page.url).path == f"/user/{name}/lab":
            return urlparse(page.url).path
        if page.status_code == 424:  # the hub says the server is not running: final
            break
        time.sleep(0.5)
    return last


def _served_by(b: Browser, name: str) -> str:
    """The user whose server answered NAME's Lab: the hub user in its page config."""
    found = re.search(r'"hubUser":\s*"([^"]+)"', b.open_lab(name).text)
    return found.group(1) if found else ""


def test_a_burst_of_users_all_get_their_own_lab(hub: HubProcess) -> None:
    browsers = {name: Browser(hub.url) for name in hub.users}
    with ThreadPoolExecutor(len(browsers)) as pool:
        outcome = dict(zip(browsers, pool.map(lambda n: _ready(browsers[n], n), browsers),
                           strict=True))
    assert outcome == {name: f"/user/{name}/lab" for name in hub.users}, hub.tail(80)
    for name, b in browsers.items():
        assert _served_by(b, name) == name
        b.http.close()


def test_a_port_another_server_holds_is_not_taken_for_a_new_servers(hub: HubProcess) -> None:
    first, second = Browser(hub.url), Browser(hub.url)
    assert _ready(first, hub.first) == f"/user/{hub.first}/lab"
    assert _served_by(first, hub.first) == hub.first
    # The second server is configured with the same port, which the first holds.
    assert _ready(second, hub.second) == f"/user/{hub.second}/lab", hub.tail(60)
    assert _served_by(second, hub.second) == hub.second
