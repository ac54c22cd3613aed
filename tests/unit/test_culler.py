"""The idle culler's wrapper (teamhub.culler) as the hub runs it: a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _catches_sigint(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def test_the_culler_stops_on_sigint_even_when_started_with_it_ignored(tmp_path: Path) -> None:
    # What a shell without job control does to a background `teamhub up` (install.sh
    # without systemd, nohup ... &): SIGINT ignored, inherited by the hub's services. The
    # hub stops them with SIGINT; the culler outlived every hub stop (seen: one orphan
    # per test hub, and each hub's stop stuck waiting for it).
    proc = subprocess.Popen(
        [sys.executable, "-m", "teamhub.culler", str(tmp_path / "hub.sock"),
         "--url=http://hub/hub/api", "--timeout=3600", "--cull-every=300"],
        env={**os.environ, "JUPYTERHUB_API_TOKEN": "not-a-hub-token"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 60
        while not _catches_sigint(proc.pid) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "the culler ended by itself"
        assert _catches_sigint(proc.pid), "the culler left SIGINT ignored"
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
