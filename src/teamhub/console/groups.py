"""`/hub/teamhub/console/groups`: the admins' groups: create, delete, add and remove members
(group_admin, the functions behind `teamhub group ...`), and what each group grants:
projects (`@group` grants), shared environments limited to it, its `[limits.groups]`
overrides and its `[gpus.groups]` value."""

from __future__ import annotations

from typing import Any

from tornado import web

from .. import group_admin
from ..errors import TeamhubError
from .base import PREFIX, ConsolePage

ACTIONS = ("create", "delete", "add", "remove")


def _overview(settings: Any, paths: Any) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """(Blocking.) Group → members, and group → its grants."""
    groups = group_admin.projects_of(settings, paths).groups.list()
    grants = group_admin.grants(settings, paths)
    # A group made between the two reads has no grants yet.
    return groups, {name: grants.get(name) or group_admin.Grants() for name in groups}


class GroupsPage(ConsolePage):
    tab = "groups"

    async def _show(self, status: int = 200, **ns: Any) -> None:
        settings, paths = await self.blocking(self.teamhub_settings)
        groups, grants = await self.blocking(_overview, settings, paths)
        await self.render_console("groups.html", status, groups=groups, grants=grants,
                                  here=f"{self.hub.base_url}{PREFIX}/groups", **ns)

    async def get(self) -> None:
        await self._show(message=None, error=None)

    async def post(self) -> None:
        action, group, user = self.field("action"), self.field("group"), self.field("user")
        if action not in ACTIONS:
            raise web.HTTPError(400, "action must be one of " + ", ".join(ACTIONS))
        lines: list[str] = []
        try:
            settings, paths = await self.blocking(self.teamhub_settings)
            await self.blocking(self._change, settings, paths, action, group, user,
                                lines.append)
        except TeamhubError as exc:
            await self._show(400, message="; ".join(lines) or None, error=str(exc))
            return
        self.log.info("Admin %s (console): group %s %s %s: %s", self.current_user.name,
                      action, group[:64], user[:64], "; ".join(lines))
        await self._show(message="; ".join(lines), error=None)

    def _change(self, settings: Any, paths: Any, action: str, group: str, user: str,
                say: Any) -> None:
        """(Blocking.) What `teamhub group ACTION` does."""
        if action == "create":
            group_admin.create(settings, paths, group, say=say)
        elif action == "delete":
            group_admin.delete(settings, paths, group, actor=self.current_user.name, say=say)
        elif action == "add":
            group_admin.add_members(settings, paths, group, user.split(), say=say)
        else:
            group_admin.remove_members(settings, paths, group, [user], say=say)


def handlers() -> list[tuple[str, Any]]:
    return [(rf"/{PREFIX}/groups", GroupsPage)]
