"""`/hub/teamhub/console/users`: the admins' list of users, with search and paging, and what
`teamhub user ...` does: add (with a one-time reset link, shown once), reset link,
block/unblock, admin on/off, log out everywhere, remove, approve/reject signups.

Each action is a POST (`_xsrf`, checked by JupyterHub) calling the CLI's own function
(user_admin, accounts.lifecycle) off the event loop; its report lines, or its error
("message; hint"), are shown above the list. CPU, memory and home disk use are cells that
`static/usage-cells.js` fills from the usage sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from jupyterhub import orm
from tornado import web

from .. import hubaccounts, user_admin
from ..accounts import lifecycle
from ..accounts.store import Account, AccountStore
from ..errors import AccountError, TeamhubError
from ..gpu_allocations import Allocations
from ..paths import Paths
from ..projects.actions import projects_of
from ..spawners import roothelper
from ..system import users
from ..system.names import system_name
from .base import PREFIX, ConsolePage

PAGE_SIZE = 25
RESET_LINK_LIFETIME = "24h"  # the CLI's default for `teamhub user reset-link`
# What an admin may not do to themselves here (locking themselves out of the page they
# are on); another admin, or the CLI on the server, can.
NOT_TO_ONESELF = ("block", "remove", "admin-off")
ACTIONS = ("add", "approve", "reject", "reset-link", "block", "unblock", "admin-on",
           "admin-off", "logout", "remove")


@dataclass
class Row:
    """One user as the list shows them."""

    account: Account
    remove_question: str
    server: str = "not running"  # or "running (local)", with its image and GPUs
    last_activity: str = ""

    @property
    def state(self) -> str:
        return ("waiting for approval" if self.account.pending
                else "blocked" if self.account.blocked else "active")


def _stamp(when: datetime | None) -> str:
    if when is None:
        return ""
    if when.tzinfo is None:  # JupyterHub stores naive UTC
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _listing(settings: Any, paths: Paths, store: AccountStore, query: str,
             page: int) -> tuple[list[Row], int, list[Account]]:
    """(Blocking.) The rows of page PAGE of the accounts matching QUERY, the page count,
    and the pending signups."""
    accounts = store.list()
    wanted = query.strip().lower()
    found = [a for a in accounts if wanted in a.name.lower()] if wanted else accounts
    pages = max(1, -(-len(found) // PAGE_SIZE))
    shown = found[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    rows = []
    for account in shown:
        sysname = system_name(account.name, settings["users.system_prefix"])
        managed = users.is_managed(sysname, registry=paths.system_users)
        rows.append(Row(account, user_admin.Removal(account, sysname, managed).question()))
    return rows, pages, [a for a in accounts if a.pending]


def _gpu_labels(paths: Paths) -> dict[str, list[str]]:
    """(Blocking.) Hub user → the GPUs their servers hold (uuid, with the server's name)."""
    held: dict[str, list[str]] = {}
    try:
        holdings = Allocations(paths.gpu_allocations).holdings()
    except (OSError, TeamhubError):
        return held
    for holding in holdings:
        held.setdefault(holding.holder, []).append(
            holding.uuid + (f" ({holding.server})" if holding.server else ""))
    return held


class UsersPage(ConsolePage):
    tab = "users"
    scripts = ("usage-cells.js",)

    def _query(self) -> tuple[str, int]:
        query = self.get_argument("q", "")[:100]
        try:
            page = max(1, int(self.get_argument("page", "1")))
        except ValueError:
            page = 1
        return query, page

    def _server_info(self, rows: list[Row], backend: str, gpus: dict[str, list[str]]) -> None:
        """From the hub's own user models: servers running, and the last activity."""
        for row in rows:
            found = orm.User.find(self.db, row.account.name)
            if found is None:
                continue
            row.last_activity = _stamp(found.last_activity)
            user = self._user_from_orm(found)
            running = []
            for spawner in user.spawners.values():
                if not spawner.active:
                    continue
                what = (spawner.name or "default") + f" ({backend}"
                image = getattr(spawner, "image", "")
                what += f", {image})" if image and backend == "docker" else ")"
                running.append(what)
            if running:
                row.server = "running: " + ", ".join(running)
            if gpus.get(row.account.name):
                row.server += "; GPUs held: " + ", ".join(gpus[row.account.name])

    async def _show(self, status: int = 200, **ns: Any) -> None:
        query, page = self._query()
        settings, paths = await self.blocking(self.teamhub_settings)
        rows, pages, pending = await self.blocking(_listing, settings, paths, self.store,
                                                   query, page)
        gpus = await self.blocking(_gpu_labels, paths)
        self._server_info(rows, settings["spawner.backend"], gpus)
        here = f"{self.hub.base_url}{PREFIX}/users"
        page_url = {n: f"{here}?{urlencode({'q': query, 'page': n})}" for n in range(1, pages + 1)}
        await self.render_console(
            "users.html", status, rows=rows, pending=pending, query=query, page=min(page, pages),
            pages=pages, page_url=page_url, here=here, me=self.current_user.name, **ns)

    async def get(self) -> None:
        await self._show(message=None, error=None, link=None)

    async def post(self) -> None:
        action, name = self.field("action"), self.field("name")
        if action not in ACTIONS:
            raise web.HTTPError(400, "action must be one of " + ", ".join(ACTIONS))
        lines: list[str] = []
        link = None
        try:
            if action in NOT_TO_ONESELF and name.strip().lower() == self.current_user.name:
                raise AccountError(f"you cannot {action.replace('-', ' ')} yourself here",
                                   "ask another admin, or use `teamhub user` on the server")
            settings, paths = await self.blocking(self.teamhub_settings)
            if action == "add":
                link = await self._add(settings, name, lines)
            elif action in ("approve", "reject"):
                await self._decide(action, name, lines)
            elif action == "reset-link":
                link = await self._reset_link(name, lines)
            else:
                await self.blocking(self._change, settings, paths, action, name, lines.append)
        except TeamhubError as exc:
            # What was done before the failure stays in view, then what failed.
            await self._show(400, message="; ".join(lines) or None, error=str(exc), link=None)
            return
        self.log.info("Admin %s (console): %s %s: %s", self.current_user.name, action,
                      name[:64], "; ".join(lines))
        await self._show(message="; ".join(lines), error=None, link=link)

    def _change(self, settings: Any, paths: Paths, action: str, name: str, say: Any) -> None:
        """(Blocking.) The actions that are CLI functions as they are."""
        actor = self.current_user.name
        # What these do to the machine: this hub itself when it is root, else the helper.
        root = roothelper.work(projects_of(settings, paths), paths)
        if action in ("block", "unblock", "remove"):
            user_admin.check_builtin(settings, action)
        if action == "block":
            user_admin.block(settings, paths, self.store, name, actor=actor, say=say, root=root)
        elif action == "unblock":
            user_admin.unblock(settings, paths, self.store, name, actor=actor, say=say,
                               root=root)
        elif action in ("admin-on", "admin-off"):
            user_admin.set_admin(paths, self.store, name, action == "admin-on", say=say)
        elif action == "logout":
            account = user_admin.existing_account(self.store, name)
            say(user_admin.ended_text(account.name, *hubaccounts.end_sessions(
                paths, account.name, api_tokens=False)))
        elif action == "remove":
            plan = user_admin.plan_removal(settings, paths, self.store, name)
            user_admin.remove(settings, paths, self.store, plan, actor=actor, keep_home=False,
                              purge=False, say=say, root=root)

    def _link(self, token: str) -> str:
        return f"{self.request.protocol}://{self.request.host}{self.hub.base_url}reset/{token}"

    async def _list_in_hub(self, name: str, admin: bool) -> None:
        """One list of users: the new (or approved) account appears on the admin page now."""
        from jupyterhub import roles
        from jupyterhub.utils import maybe_future

        user = self.user_from_username(name)
        if admin and not user.admin:
            user.admin = True
            roles.assign_default_roles(self.db, entity=user)
            self.db.commit()
        await maybe_future(self.authenticator.add_user(user))

    async def _add(self, settings: Any, name: str, lines: list[str]) -> str:
        user_admin.check_builtin(settings, "add")
        admin = self.field("admin") == "on"
        account, token, expires = await self.blocking(
            lifecycle.add_with_reset_link, self.store, name, admin=admin)
        await self._list_in_hub(account.name, account.admin)
        lines.append(f"Added {account.name}" + (" (admin)" if account.admin else "")
                     + ". Give them this one-time link to set their password (valid until "
                     f"{expires} UTC; shown only now):")
        return self._link(token)

    async def _decide(self, action: str, name: str, lines: list[str]) -> None:
        decide = lifecycle.approve if action == "approve" else lifecycle.reject
        done = await self.blocking(decide, self.store, name)
        if action == "approve":
            await self._list_in_hub(done, admin=False)  # signups are never admins
        lines.append(f"{'Approved' if action == 'approve' else 'Rejected'} {done}.")

    async def _reset_link(self, name: str, lines: list[str]) -> str:
        account = await self.blocking(user_admin.existing_account, self.store, name)
        token, until = await self.blocking(
            lifecycle.create_reset_link, self.store, account.name,
            lifecycle.parse_duration(RESET_LINK_LIFETIME))
        lines.append(f"A one-time link for {account.name} to set a new password (valid until "
                     f"{until} UTC; shown only now; older links stop working):")
        return self._link(token)


def handlers() -> list[tuple[str, Any]]:
    return [(rf"/{PREFIX}/users", UsersPage)]
