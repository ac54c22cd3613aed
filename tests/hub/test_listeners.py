"""Nobody but teamhub listens where teamhub listens (issue 18, items 2 and 3).

An ordinary Linux user (`nobody`, a real unprivileged account) plays the attacker: a
squatter process that keeps trying to bind every TCP address of the public port (both
families, wildcard and loopback) and every unix socket teamhub uses, accepts whatever
connects and records every byte it receives. The hub is stopped (SIGTERM to `teamhub up`)
and started again meanwhile, with a user's server running, the CLI and a browser at work.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubProcess, free_port, unique

pytestmark = [pytest.mark.hub, pytest.mark.system]


# Keeps binding each target (every ~10 ms) until SIGTERM; accepts, reads, and at the end
# prints {"bound": [targets it got], "received": [what arrived]} as JSON.
SQUATTER = r"""
import json, select, signal, socket, sys
targets = json.loads(sys.argv[1])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

def bind(t):
    if t["kind"] == "unix":
        s = socket.socket(socket.AF_UNIX)
        where = t["path"]
    else:
        s = socket.socket(socket.AF_INET6 if ":" in t["ip"] else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ":" in t["ip"]:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(t.get("v6only", 0)))
        where = (t["ip"], t["port"])
    try:
        s.bind(where)
        s.listen(64)
    except OSError:
        s.close()
        return None
    s.setblocking(False)
    return s

pending, held, conns, bound, received = list(targets), [], [], [], []
print("ready", flush=True)
while not stop:
    for t in list(pending):
        s = bind(t)
        if s is not None:
            pending.remove(t)
            held.append(s)
            bound.append(t)
    ready = select.select(held + conns, [], [], 0.01)[0] if held else []
    for s in ready:
        if s in held:
            conn = s.accept()[0]
            conn.setblocking(False)
            conns.append(conn)
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if data:
            received.append(data.decode("latin-1"))
        else:
            conns.remove(s)
            s.close()
print(json.dumps({"bound": bound, "received": received}), flush=True)
"""


class Squatter:
    """SQUATTER running as `nobody`."""

    def __init__(self, targets: list[dict]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SQUATTER, json.dumps(targets)], stdout=subprocess.PIPE,
            text=True, user="nobody", group="nogroup", extra_groups=[], cwd="/")
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def finish(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def public_targets(port: int) -> list[dict]:
    """Every way to listen on PORT: wildcards and loopback, each family, IPv6-only too."""
    return [{"kind": "tcp", "ip": ip, "port": port, "v6only": v6only}
            for ip, v6only in (("::", 0), ("::", 1), ("0.0.0.0", 0), ("127.0.0.1", 0),
                               ("::1", 1))]


def socket_targets(hub: HubProcess) -> list[dict]:
    paths = hub.paths
    return [{"kind": "unix", "path": str(p)}
            for p in (paths.hub_socket, paths.proxy_api_socket, paths.socket_dir / "x.sock")]


def up_check(hub: HubProcess, ip: str) -> subprocess.CompletedProcess[str]:
    text = hub.config.read_text()
    hub.config.write_text("\n".join(f'ip = "{ip}"' if line.startswith("ip = ") else line
                                    for line in text.splitlines()))
    return hub.teamhub("up", "--check", check=False)


def test_an_ipv6_only_squatter_makes_up_refuse_and_is_named(tmp_path: Path) -> None:
    """Item 2: a user's IPv6-only socket on [::]:PORT would take every visitor who comes
    over IPv6 while teamhub listened on IPv4 only; `up` refuses, naming who holds it."""
    hub = HubProcess(tmp_path)
    squatter = Squatter([{"kind": "tcp", "ip": "::", "port": hub.port, "v6only": 1}])
    try:
        time.sleep(0.3)
        for ip in ("0.0.0.0", "auto"):
            result = up_check(hub, ip)
            assert result.returncode != 0, f"up --check passed with hub.ip = {ip}"
            assert f"public port {hub.port} is already in use" in result.stderr
            assert f"[::]:{hub.port} by python" in result.stderr and "user nobody" in result.stderr
            assert f"pid {squatter.proc.pid}" in result.stderr
    finally:
        squatter.kill()
        hub.cleanup()


def test_with_the_default_address_no_user_can_listen_on_the_public_port(tmp_path: Path) -> None:
    """Item 2: on the default (`auto`: `::`, dual-stack) the proxy holds the port in both
    families, so no other socket can listen on it, IPv6-only or not, wildcard or loopback."""
    hub = HubProcess(tmp_path, ip="auto")
    try:
        hub.start()
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{hub.port}"], capture_output=True,
                                   text=True).stdout
        assert f"*:{hub.port}" in listening or f"[::]:{hub.port}" in listening, listening
        squatter = Squatter(public_targets(hub.port))
        time.sleep(1)
        assert squatter.finish()["bound"] == []
        check = hub.teamhub("doctor", "--json", "--check", "port conflicts", check=False)
        result = json.loads(check.stdout)["checks"][0]
        assert result["ok"], result
        assert "teamhub's proxy on" in result["detail"]
    finally:
        hub.cleanup()


def test_doctor_names_a_squatter_in_the_other_family(tmp_path: Path) -> None:
    """Item 2: on IPv4 only (hub.ip = 127.0.0.1, as the tests run), a user listening on
    [::1]:PORT serves everyone who types `localhost`: doctor fails and names them."""
    hub = HubProcess(tmp_path)
    try:
        hub.start()
        squatter = Squatter([{"kind": "tcp", "ip": "::1", "port": hub.port, "v6only": 1}])
        try:
            time.sleep(0.3)
            check = hub.teamhub("doctor", "--json", "--check", "port conflicts", check=False)
        finally:
            squatter.kill()
        assert check.returncode == 1
        detail = json.loads(check.stdout)["checks"][0]["detail"]
        assert f"public port {hub.port} is taken: [::1]:{hub.port} by python" in detail
        assert "user nobody" in detail
    finally:
        hub.cleanup()


def test_nothing_can_be_taken_over_while_the_hub_restarts(tmp_path: Path) -> None:
    """Item 3: while the hub is down and while it starts again, a user's process can bind
    none of the public port's addresses nor any of teamhub's sockets, so it receives no
    login, cookie, CLI token, proxy token or server token; users' servers keep their
    routes, and the restarted hub adopts the running proxy."""
    hub = HubProcess(tmp_path, ip="auto")
    name = unique("sq")
    squatter = None
    try:
        hub.add_user(name, PASSWORD)
        hub.add_user("admin", PASSWORD, "--admin")
        hub.start()
        b = Browser(hub.url)
        assert b.login(name, PASSWORD).status_code == 302
        b.start_server(name)
        assert b.open_lab(name).status_code == 200  # OAuth done: the server's cookie is set
        assert b.get(f"/user/{name}/api/status").status_code == 200
        proxy_pid = (hub.state / "proxy.pid").read_text().strip()
        # Users' servers reach the hub's socket; the proxy's API is root's alone.
        probe = ("import socket, sys\nfor p in sys.argv[1:]:\n s = socket.socket(socket.AF_UNIX)\n"
                 " try: s.connect(p); print('ok')\n except OSError as e: print(e.errno)")
        seen = subprocess.run([sys.executable, "-c", probe, str(hub.paths.hub_socket),
                               str(hub.paths.proxy_api_socket)], capture_output=True, text=True,
                              user="nobody", group="nogroup", extra_groups=[]).stdout.split()
        assert seen == ["ok", "13"]  # 13: EACCES

        hub.stop()
        squatter = Squatter(public_targets(hub.port) + socket_targets(hub))
        # While the hub is down: the CLI asks the hub, a user sends their password, the
        # running server reports activity (with its token) to the hub's API.
        hub.teamhub("user", "admin", name, "--on")
        login = Browser(hub.url)
        login.http.post(f"{hub.url}/hub/login", data={"username": name, "password": PASSWORD},
                        timeout=30)
        # The server's route still works: the proxy outlived the hub.
        assert b.get(f"/user/{name}/api/status").status_code == 200
        time.sleep(2)
        hub.start()
        assert (hub.state / "proxy.pid").read_text().strip() == proxy_pid
        assert "Adopting the running proxy" in hub.tail(400)
        hub.teamhub("user", "admin", name, "--off")
        assert Browser(hub.url).login(name, PASSWORD).status_code == 302
        caught = squatter.finish()
        squatter = None
        assert caught == {"bound": [], "received": []}
        assert b.get(f"/user/{name}/api/status").status_code == 200
    finally:
        if squatter is not None:
            squatter.kill()
        hub.cleanup()


def test_a_second_hub_is_refused_while_one_runs(tmp_path: Path) -> None:
    """The ports no longer tell (the proxy outlives hubs): the hub's socket does."""
    hub = HubProcess(tmp_path)
    try:
        hub.start()
        second = hub.teamhub("up", "--check", check=False)
        assert second.returncode != 0
        assert f"a hub already runs here (it answers on {hub.paths.hub_socket})" in second.stderr
        hub.stop()
        assert hub.teamhub("up", "--check", check=False).returncode == 0
    finally:
        hub.cleanup()


def test_a_killed_proxy_comes_back_on_the_same_port(tmp_path: Path) -> None:
    """The hub restarts a proxy that died (a new token, routes restored)."""
    hub = HubProcess(tmp_path)
    name = unique("pk")
    try:
        hub.add_user(name, PASSWORD)
        hub.start()
        b = Browser(hub.url)
        assert b.login(name, PASSWORD).status_code == 302
        b.start_server(name)
        assert b.open_lab(name).status_code == 200
        old_token = (hub.state / "proxy_auth_token").read_text()
        hub._kill_pidfile("proxy.pid")
        token = hub.state / "proxy_auth_token"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                # The dying proxy may still answer once: only the new one counts.
                if (token.read_text() != old_token
                        and b.get(f"/user/{name}/api/status", timeout=2).status_code == 200):
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("the proxy did not come back:\n" + hub.tail())
        assert (hub.state / "proxy_auth_token").read_text() != old_token
    finally:
        hub.cleanup()


def test_the_proxy_is_replaced_when_its_options_change(tmp_path: Path) -> None:
    """An adopted proxy must be the one the hub would start now: a changed public port
    means a new proxy there, and the old port closed."""
    hub = HubProcess(tmp_path)
    try:
        hub.start()
        old_pid, old_port = (hub.state / "proxy.pid").read_text().strip(), hub.port
        hub.stop()
        hub.port = free_port()
        hub.config.write_text(hub.config.read_text().replace(f"port = {old_port}",
                                                             f"port = {hub.port}"))
        hub.start()
        assert (hub.state / "proxy.pid").read_text().strip() != old_pid
        assert "Replacing the running proxy" in hub.tail(400)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", old_port), timeout=2).close()
    finally:
        hub.cleanup()
