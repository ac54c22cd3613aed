"""teamhub's extension of every user's Jupyter server (enabled by the spawner's args).

1. A busy kernel is activity. jupyter_server counts only kernel *messages* as
   kernel activity, so a long computation that prints nothing makes the server
   look idle and the idle culler would stop it mid-computation. Every
   `$JUPYTER_TEAMHUB_BUSY_INTERVAL` seconds this extension looks at the kernels'
   execution_state (which jupyter_server tracks from their status messages)
   and, while any is busy, records "now" as activity; the single-user server
   reports it to the hub with its next activity update.
2. HSTS: when the hub serves TLS, `$JUPYTER_TEAMHUB_HSTS` holds the
   Strict-Transport-Security value, sent on every response of this server too
   (the proxy terminates TLS, so the server cannot know by itself).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from tornado.ioloop import PeriodicCallback

ACTIVITY_KEY = "teamhub_busy_last_activity"  # *_last_activity settings count as activity
DEFAULT_INTERVAL = 30.0


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "teamhub.serverext"}]


def busy_kernels(kernel_manager: Any) -> list[str]:
    """Ids of the kernels whose last status was busy."""
    kernels = getattr(kernel_manager, "_kernels", {})
    return [kid for kid, k in list(kernels.items())
            if getattr(k, "execution_state", None) == "busy"]


def mark_if_busy(serverapp: Any) -> bool:
    if busy_kernels(serverapp.kernel_manager):
        serverapp.web_app.settings[ACTIVITY_KEY] = datetime.now(timezone.utc)
        return True
    return False


def _interval() -> float:
    try:
        value = float(os.environ.get("JUPYTER_TEAMHUB_BUSY_INTERVAL", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def _load_jupyter_server_extension(serverapp: Any) -> None:
    settings = serverapp.web_app.settings
    hsts = os.environ.get("JUPYTER_TEAMHUB_HSTS", "")
    if hsts:
        settings["headers"] = {**settings.get("headers", {}), "Strict-Transport-Security": hsts}
    callback = PeriodicCallback(lambda: mark_if_busy(serverapp), _interval() * 1000)
    callback.start()
    settings["teamhub_busy_callback"] = callback
    serverapp.log.info("teamhub: busy kernels count as activity (checked every %ss)%s",
                       _interval(), "; HSTS on" if hsts else "")
