"""`/hub/teamhub/console/me`: "My account", for every logged-in user: who they are here, the
projects they may read or write (and through which groups), their CPU and memory against
their limits and their home's disk use (cells `static/usage-cells.js` fills), and a form
that changes their password (it posts to `/hub/change-password`, the one password page)."""

from __future__ import annotations

from typing import Any

from ..paths import Paths
from ..projects.actions import projects_of
from .base import PREFIX, ConsolePage


def _mine(settings: Any, paths: Paths, name: str) -> tuple[dict[str, str], list[str]]:
    """(Blocking.) NAME's projects (project → read | write) and groups."""
    p = projects_of(settings, paths)
    return p.accessible(name), p.groups.groups_of(name)


class MyAccountPage(ConsolePage):
    admin_only = False
    tab = "me"
    scripts = ("usage-cells.js",)

    async def get(self) -> None:
        name = self.current_user.name
        account = await self.blocking(self.store.get, name)
        settings, paths = await self.blocking(self.teamhub_settings)
        projects, groups = await self.blocking(_mine, settings, paths, name)
        await self.render_console("me.html", account=account, projects=projects, groups=groups)


def handlers() -> list[tuple[str, Any]]:
    return [(rf"/{PREFIX}/me", MyAccountPage)]
