"""The hub's side of the fork server's socket, against a stand-in server (no root)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from teamhub.spawners import forkserver


def _answer_later(path: Path, delay: float) -> threading.Thread:
    """Bind PATH after DELAY seconds (as a fork server does once its imports are done) and
    answer one request with {"ok": true}."""

    def serve() -> None:
        time.sleep(delay)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        conn, _ = listener.accept()
        with conn, listener:
            conn.makefile("rb").readline()
            conn.sendall(json.dumps({"ok": True}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_spawn_waits_for_the_fork_server_this_process_started(tmp_path: Path) -> None:
    # Seen in CI: the hub's first spawn came while the fork server was still importing
    # (no socket yet) and that user got the slow start (ForkServerUnavailable).
    path = tmp_path / "forkserver.sock"
    loading = subprocess.Popen(["sleep", "60"])  # stands for the fork server, still loading
    forkserver._started[str(path)] = loading
    try:
        server = _answer_later(path, 1.0)

        async def ask() -> dict:
            answer, _, writer = await forkserver._request(path, {"op": "ping"})
            writer.close()
            return answer

        answer = asyncio.run(ask())
        server.join(10)
        assert answer == {"ok": True}
    finally:
        forkserver._started.pop(str(path), None)
        loading.kill()
        loading.wait()


def test_no_fork_server_of_ours_means_no_wait(tmp_path: Path) -> None:
    with pytest.raises(forkserver.ForkServerUnavailable):
        asyncio.run(forkserver._request(tmp_path / "none.sock", {"op": "ping"}))
