"""`/hub/teamhub/console/system` (admins): the machine and the hub at a glance.

- `teamhub doctor`'s checks with their fix hints: the CLI itself (`teamhub doctor
  --json`) in a child process. It starts kernels and asks this hub's own API (seconds), so
  the page loads first and `static/system.js` fetches `api/system/doctor`; its answer is
  kept, and "Check again" (a POST) runs the checks anew. A child process rather than a
  call: a hung check cannot hold the hub (it is killed after DOCTOR_TIMEOUT_S), and the
  hub process does not import every module doctor checks.
- Running servers, each with its CPU, memory and limits (`static/usage-cells.js`).
- The last hour of CPU and memory, per user and the machine's total, drawn by
  `static/system.js` as SVG from `api/usage/history` (console.usage).
- GPU holders (`teamhub gpu status`'s report), when this machine has GPUs.
- teamhub's and JupyterHub's versions, and the settings in effect, secrets hidden
  (teamhub.settings_view).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from jupyterhub import __version__ as jupyterhub_version
from tornado import web

from .. import __version__ as teamhub_version
from ..gpu_report import holdings_report
from ..paths import Paths
from ..settings_view import shown_settings
from .base import PREFIX, ConsoleData, ConsolePage

DOCTOR_TIMEOUT_S = 600
DOCTOR = [sys.executable, "-c", "from teamhub.cli import main; main()", "doctor", "--json"]


def running_servers(users: Any) -> list[dict[str, Any]]:
    """Every ready server: user, server name, backend, when it started, last activity."""
    rows = []
    for user in sorted(users.values(), key=lambda u: u.name):
        for name, spawner in sorted(user.spawners.items()):
            if not spawner.ready:
                continue
            orm_spawner = spawner.orm_spawner
            rows.append({
                "user": user.name,
                "server": name,
                "backend": "docker" if getattr(spawner, "container_id", "") else "local",
                "started": orm_spawner.started,
                "last_activity": orm_spawner.last_activity,
            })
    return rows


def _gpus(paths: Paths) -> list[dict[str, Any]]:
    try:
        return holdings_report(paths, with_usage=False)
    except Exception:  # noqa: BLE001 - a GPU report that cannot be made hides the section
        return []


class SystemPage(ConsolePage):
    tab = "system"
    scripts = ("usage-cells.js", "system.js")

    async def get(self) -> None:
        settings, paths = await self.blocking(self.teamhub_settings)
        rows = await self.blocking(shown_settings, settings)
        gpus = await self.blocking(_gpus, paths)
        await self.render_console(
            "system.html", servers=running_servers(self.users), settings_rows=rows,
            settings_file=str(settings.config_file), gpus=gpus,
            versions={"teamhub": teamhub_version, "JupyterHub": jupyterhub_version})


async def run_doctor() -> dict[str, Any]:
    """`teamhub doctor --json`'s answer ({"ok", "checks": [{name, ok, detail, fix,
    warning}]}); it exits 1 when a check fails, which is an answer too."""
    proc = await asyncio.create_subprocess_exec(
        *DOCTOR, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), DOCTOR_TIMEOUT_S)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise web.HTTPError(
            504, f"teamhub doctor did not finish within {DOCTOR_TIMEOUT_S}s") from None
    try:
        return json.loads(out)
    except ValueError:
        why = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise web.HTTPError(500, f"teamhub doctor failed: {why}") from None


class DoctorRuns:
    """The last doctor run in this hub (one at a time: a second request waits for it)."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self.lock = asyncio.Lock()

    async def run(self, again: bool) -> dict[str, Any]:
        async with self.lock:
            if self.result is None or again:
                self.result = {**await run_doctor(), "at": time.time()}
            return self.result


class DoctorData(ConsoleData):
    def initialize(self, runs: DoctorRuns) -> None:
        self.runs = runs

    async def get(self) -> None:
        self.write_json(await self.runs.run(again=False))

    async def post(self) -> None:
        self.write_json(await self.runs.run(again=True))


def handlers() -> list[tuple[str, Any] | tuple[str, Any, dict[str, Any]]]:
    return [
        (rf"/{PREFIX}/system", SystemPage),
        (rf"/{PREFIX}/api/system/doctor", DoctorData, {"runs": DoctorRuns()}),
    ]
