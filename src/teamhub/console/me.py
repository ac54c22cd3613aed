"""`/hub/teamhub/console/me`: "My account", for every logged-in user: who they are here and
where to change their password. (Projects, personal environments and usage join it.)"""

from __future__ import annotations

from typing import Any

from .base import PREFIX, ConsolePage


class MyAccountPage(ConsolePage):
    admin_only = False
    tab = "me"

    async def get(self) -> None:
        account = await self.blocking(self.store.get, self.current_user.name)
        await self.render_console("me.html", account=account)


def handlers() -> list[tuple[str, Any]]:
    return [(rf"/{PREFIX}/me", MyAccountPage)]
