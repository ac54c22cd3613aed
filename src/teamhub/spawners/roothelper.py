"""How the hub gets done what needs root: itself while it is root, else through the root
helper's verbs (teamhub.spawners.rootdoor). The one place that decides (`direct`); the
spawner and the PAM authenticator ask here.

An unprivileged hub (`hub.unprivileged`) cannot restart a helper that is gone: a spawn
then fails with a message for the user, and the hub log says to start teamhub again as
root.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import ForkServerUnavailable, HelperRefused
from .forkserver import STARTUP_WAIT_SECONDS, RootHelper, _recv_line

HELPER_GONE = ("the hub runs unprivileged (hub.unprivileged) and its root helper does not "
               "answer; it cannot be restarted without root: start teamhub again as root "
               "(`systemctl restart teamhub`, or `teamhub up`)")


def direct() -> bool:
    """Whether this process does root's work itself (it is root) rather than ask the helper."""
    return os.geteuid() == 0


class HelperClient(RootHelper):
    """The helper's verbs for the hub (async), and the password check for the
    authenticator, which JupyterHub calls from a worker thread (blocking)."""

    def check_password_blocking(self, user: str, password: str, timeout: float = 60) -> bool:
        """Whether PASSWORD is USER's through PAM (helper's verdict); a refusal (e.g. an
        account that may not use teamhub) is a no. ForkServerUnavailable when no helper
        answers properly."""
        request = {"op": "check_password", "user": user, "password": password}
        try:
            with self._connected(timeout) as conn:
                conn.sendall(json.dumps(request).encode() + b"\n")
                answer = json.loads(_recv_line(conn))
        except (OSError, ValueError, HelperRefused) as exc:
            raise ForkServerUnavailable(f"{HELPER_GONE} ({exc})") from None
        # A refusal ({"error": ...}: an account that may not use teamhub) is a no.
        return answer.get("ok") is True


    def _connected(self, timeout: float) -> socket.socket:
        """A connection to the helper; one that `teamhub up` has just started binds its
        socket only once its imports are done, so a missing socket is waited for (as the
        spawner's requests wait, forkserver.STARTUP_WAIT_SECONDS)."""
        deadline = time.monotonic() + STARTUP_WAIT_SECONDS
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(timeout)
            try:
                conn.connect(str(self.socket_path))
                return conn
            except (FileNotFoundError, ConnectionRefusedError):
                conn.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            except OSError:
                conn.close()
                raise


def client(socket_path: str | Path) -> HelperClient:
    return HelperClient(Path(socket_path))
