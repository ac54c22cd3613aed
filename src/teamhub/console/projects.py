"""`/hub/teamhub/console/projects`: the Projects page (admins). Create a project, grant
and revoke read or write for users and @groups, see each user's effective access,
archive, delete (refused when not empty, as `teamhub project delete` without --force),
the audit log. Every action is `teamhub project ...` through the same functions
(projects.actions); applying ACLs is OS work, so it runs on an executor, and root's: an
unprivileged hub (hub.unprivileged) has the root helper do it (roothelper.work)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tornado import web

from ..errors import TeamhubError
from ..projects import actions
from ..projects.apply import Projects
from ..rootwork import RootWork
from ..spawners import roothelper
from .base import PREFIX, ConsolePage


class ProjectsPage(ConsolePage):
    tab = "projects"

    def _projects(self) -> Projects:
        settings, paths = self.teamhub_settings()
        return actions.projects_of(settings, paths)

    def _root(self, p: Projects) -> RootWork:
        return roothelper.work(p, self.teamhub_settings()[1])

    def _listing(self) -> list[dict[str, Any]]:
        p = self._projects()
        rows = []
        for project in p.store.list():
            row = actions.describe(p, project)
            row["grants"] = [(str(k), v) for k, v in project.grants.items()]
            row["log"] = p.store.history(project.name)
            rows.append(row)
        return rows

    async def _show(self, status: int = 200, **ns: Any) -> None:
        projects = await self.blocking(self._listing)
        await self.render_console("projects.html", status=status, projects=projects, **ns)

    async def get(self) -> None:
        await self._show()

    async def post(self) -> None:
        action = self.field("action")
        work = self._actions().get(action)
        if work is None:
            raise web.HTTPError(400, f"unknown action {action[:40]!r}")
        try:
            lines = await self.blocking(work)
        except TeamhubError as exc:
            await self._show(400, error=str(exc))
            return
        await self._show(message="; ".join(lines))

    def _actions(self) -> dict[str, Callable[[], list[str]]]:
        """What each form's `action` does (each a blocking call of projects.actions)."""
        actor = self.current_user.name  # the admin, for the audit log
        name = self.field("name").strip()

        def create() -> list[str]:
            settings, paths = self.teamhub_settings()
            p = actions.projects_of(settings, paths)
            return actions.create(settings, p, name, self.field("writers"),
                                  self.field("readers"), self.field("description").strip(),
                                  actor, self._root(p))

        def grant() -> list[str]:
            settings, paths = self.teamhub_settings()
            p = actions.projects_of(settings, paths)
            access = self.field("access")
            return actions.grant(settings, p, name, self.field("who"),
                                 access if access in ("read", "write") else None, actor,
                                 self._root(p))

        def revoke() -> list[str]:
            p = self._projects()
            return actions.revoke(p, name, self.field("who"), actor, self._root(p))

        def archive() -> list[str]:
            p = self._projects()
            return actions.archive(p, name, actor, self._root(p))

        def delete() -> list[str]:
            p = self._projects()
            return actions.delete(p, name, self.field("force") == "yes", actor, self._root(p))

        return {"create": create, "grant": grant, "revoke": revoke, "archive": archive,
                "delete": delete}


def handlers() -> list[tuple[str, Any]]:
    return [(rf"/{PREFIX}/projects", ProjectsPage)]
