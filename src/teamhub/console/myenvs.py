"""`/hub/teamhub/console/myenvs`: "My environments", for every user: their personal
environments (~/.venvs/NAME, each the kernel "Python (NAME, personal)"), create one with
the build's output streamed live (`.../myenvs/build`), delete one.

They are the user's own files: envs.mine runs `teamhub-env` as the user's Linux account,
never as root in their home: itself on a root hub, through the root helper's `user_env`
verb on an unprivileged one."""

from __future__ import annotations

from typing import Any

from tornado import web

from ..envs import mine
from ..errors import EnvError, TeamhubError
from ..spawners import roothelper
from .base import PREFIX, ConsolePage
from .envs import packages_of
from .stream import Echo, StreamingData


def runner_for(page: ConsolePage, hub_name: str) -> mine.Runner:
    """How `teamhub-env` runs as HUB_NAME's account: here (a root hub) or by the root
    helper (an unprivileged hub), which checks the account itself."""
    settings, paths = page.teamhub_settings()
    mine.check_backend(settings)
    if roothelper.direct():
        return mine.direct(mine.account(settings, paths, hub_name), paths)
    helper = roothelper.helper_work(paths)
    return lambda args, echo: helper.user_env(hub_name, args, echo)


class MyEnvsPage(ConsolePage):
    admin_only = False
    tab = "myenvs"
    scripts = ("build.js",)

    def _runner(self) -> mine.Runner:
        return runner_for(self, self.current_user.name)

    def _listing(self) -> list[dict[str, Any]]:
        return mine.list_envs(self._runner())

    def _delete(self, name: str) -> str:
        return mine.delete(self._runner(), name)

    async def _show(self, status: int = 200, **ns: Any) -> None:
        envs: list[dict[str, Any]] = []
        try:
            envs = await self.blocking(self._listing)
        except TeamhubError as exc:
            ns.setdefault("error", str(exc))
        await self.render_console("myenvs.html", status=status, envs=envs,
                                  build_url=f"{self.hub.base_url}{PREFIX}/myenvs/build", **ns)

    async def get(self) -> None:
        await self._show()

    async def post(self) -> None:
        if self.field("action") != "delete":
            raise web.HTTPError(400, "unknown action")
        try:
            message = await self.blocking(self._delete, self.field("name").strip())
        except TeamhubError as exc:
            await self._show(400, error=str(exc))
            return
        await self._show(message=message)


class MyEnvBuild(StreamingData):
    """POST {"name", "packages"}: make the user's ~/.venvs/NAME, streaming the output."""

    admin_only = False

    async def post(self) -> None:
        body = self.body_json()
        name = body.get("name", "")
        if not isinstance(name, str):
            raise web.HTTPError(400, "name must be text")

        def build(echo: Echo) -> str:
            runner = runner_for(self, self.current_user.name)
            packages = packages_of(body.get("packages", ""))
            if not name.strip():
                raise EnvError("give the environment a name", "e.g. `analysis`")
            return mine.create(runner, name.strip(), packages, echo)

        await self.stream(build)


def handlers() -> list[tuple[str, Any]]:
    return [(rf"/{PREFIX}/myenvs", MyEnvsPage), (rf"/{PREFIX}/myenvs/build", MyEnvBuild)]
