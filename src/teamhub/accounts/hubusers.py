"""JupyterHub's user API, kept in step with the account store (README "One list of users").

Creating a hub user through the API is refused for names that are no teamhub account by
`TeamhubAuthenticator.add_user`, which JupyterHub calls for every user it creates. Renaming
calls no authenticator hook: the admin page's "Edit User" would turn `ada` into a hub user
`ada2` that teamhub does not know (and that could never log in), so renames are refused here.
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.apihandlers.users import UserAPIHandler
from tornado import web


class AccountUserAPIHandler(UserAPIHandler):
    """`/hub/api/users/NAME`: JupyterHub's own handler, without renames."""

    async def patch(self, user_name: str) -> Any:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            data = None  # JupyterHub's own handler answers 400 for it
        if isinstance(data, dict) and "name" in data and data["name"] != user_name:
            raise web.HTTPError(400, f"{user_name} is a teamhub account, which cannot be "
                                "renamed: add the new name with `teamhub user add NAME` and "
                                f"remove the old one with `teamhub user remove {user_name}`")
        return await super().patch(user_name)


def handlers() -> list[tuple[str, Any]]:
    return [(r"/api/users/([^/]+)", AccountUserAPIHandler)]
