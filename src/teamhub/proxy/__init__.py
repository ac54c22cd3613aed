"""The proxy in front of everything: configurable-http-proxy's library behind teamhub's
launcher (launch.mjs), run and adopted across hub restarts by `chp.TeamhubProxy`.

This module imports nothing from JupyterHub (preflight and hubconfig use it); `chp` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

LAUNCHER = Path(__file__).with_name("launch.mjs")
# The API token chp.TeamhubProxy makes for each proxy it starts (secrets.token_hex(32)).
TOKEN_RE = re.compile(r"[0-9a-f]{64}")


def launcher_argv(*, node: str, chp: str, ip: str, port: int, api_socket: str,
                  error_target: str, log_level: str = "info", host_routing: bool = False,
                  ssl_key: str = "", ssl_cert: str = "", redirect_port: int = 0) -> list[str]:
    """The proxy's whole command line: node running the launcher on CHP's library. Built
    the same way by the hub (chp.TeamhubProxy) and by the root helper, which starts the
    proxy of a hub that runs unprivileged (teamhub.helper_policy, spawners.rootdoor)."""
    argv = [node, str(LAUNCHER), "--chp", chp, "--ip", ip or "0.0.0.0", "--port", str(port),
            "--api-socket", api_socket, "--error-target", error_target,
            "--log-level", log_level]
    if host_routing:
        argv.append("--host-routing")
    if ssl_key and ssl_cert:
        argv += ["--ssl-key", ssl_key, "--ssl-cert", ssl_cert]
        if redirect_port:
            argv += ["--redirect-port", str(redirect_port), "--redirect-to", str(port)]
    return argv


def chp_library(command: str) -> Path | None:
    """configproxy.js of the configurable-http-proxy program COMMAND (path or name on PATH)."""
    exe = shutil.which(command)
    if exe is None:
        return None
    # <package>/bin/configurable-http-proxy, usually reached through node_modules/.bin/.
    lib = Path(os.path.realpath(exe)).parent.parent / "lib" / "configproxy.js"
    return lib if lib.is_file() else None


def start_time(pid: int) -> str | None:
    """PID's start time (clock ticks since boot), None if no such live process: a pid
    plus its start time names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def read_record(record_file: Path) -> dict | None:
    """The record `chp.TeamhubProxy` keeps of the proxy it runs, if that proxy still runs."""
    try:
        record = json.loads(record_file.read_text())
        pid, started = int(record["pid"]), str(record["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if start_time(pid) == started else None
