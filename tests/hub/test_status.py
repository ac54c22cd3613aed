"""`teamhub status` and `teamhub logs` where teamhub is not a systemd service (as here):
a real hub, a running server, then the hub stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubProcess, unique

pytestmark = [pytest.mark.hub, pytest.mark.system]



def test_status_follows_the_hub_and_logs_read_the_file(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path)
    name = unique("st")
    try:
        hub.add_user(name, PASSWORD)
        hub.start()
        b = Browser(hub.url)
        assert b.login(name, PASSWORD).status_code == 302
        b.start_server(name)

        info = json.loads(hub.teamhub("status", "--json").stdout)
        assert info["hub"]["running"] and info["proxy"]["running"]
        assert info["service"]["installed"] is False
        assert [s["user"] for s in info["servers"]] == [name]
        assert info["servers"][0]["ready"] is True
        text = hub.teamhub("status").stdout
        assert "hub:     running" in text and "servers: 1 running" in text and name in text

        logs = hub.teamhub("logs", "--file", str(hub.log), "-n", "5").stdout
        assert len(logs.splitlines()) == 5
        missing = hub.teamhub("logs", "--file", str(tmp_path / "none.log"), check=False)
        assert missing.returncode != 0 and "none.log" in missing.stderr

        hub.stop()
        hub._kill_pidfile("proxy.pid")
        down = hub.teamhub("status", check=False)
        assert down.returncode == 1
        assert "hub:     not answering" in down.stdout and "servers: unknown" in down.stdout
    finally:
        hub.cleanup()
