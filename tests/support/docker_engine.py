"""The local Docker engine for tests: used if running, else started here without any bridge.

`dockerd --bridge=none --iptables=false --ip-masq=false`: these machines cannot create a
Docker network, and the tests only ever use `--network host` (loopback traffic only).
Shared by the systemd-machine tests and the docker-backend tests.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path


class EngineError(AssertionError):
    pass


def _docker(*args: str, timeout: float = 120, input: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise EngineError(f"docker {' '.join(args[:3])} failed: "
                          f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


class DockerEngine:
    """The local Docker engine; started here (without any bridge network) if not running."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(f"/tmp/teamhub-dockerd-{secrets.token_hex(3)}.log")

    def running(self) -> bool:
        if shutil.which("docker") is None:
            return False
        try:
            return _docker("info", timeout=20, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def ensure(self) -> None:
        if self.running():
            return
        if shutil.which("dockerd") is None:
            raise EngineError("dockerd is not installed; run-tests.sh installs docker.io")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"dockerd exited: {self.log.read_text()[-2000:]}")
            if self.running():
                return
            time.sleep(0.5)
        raise EngineError(f"dockerd did not answer within 60s; see {self.log}")

    def stop(self) -> None:
        """Stop dockerd if this object started it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.unlink(missing_ok=True)
