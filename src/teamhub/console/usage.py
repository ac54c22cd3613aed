"""The console's usage data, from the hub's usage sampler (console.sampler):

- `/hub/teamhub/console/api/usage/now` (every logged-in user): per user `cpu` (CPUs in
  use; 1.0 is one whole CPU), `memory` (bytes), their limits `cpu_limit` and
  `memory_limit` (null: none), `home` (bytes of disk, from the last walk; null: not yet
  known), `running` and `source` (`cgroup` or `processes`: where it was counted). An
  admin gets every user (or those named by `?user=NAME`, repeatable); anyone else only
  themself. `static/usage-cells.js` fills the pages' usage cells from it.
- `/hub/teamhub/console/api/usage/history` (admins): the last hour per user and the
  machine's total (`UsageSampler.history`).

Limits come from the spawner's own `resolved_limits` (teamhub.limits.resolve over the
`limits.*` settings and the user's groups; `SpawnerSettings.limits_of`): what their next
start enforces.
"""

from __future__ import annotations

from typing import Any

from jupyterhub import orm

from .base import PREFIX, ConsoleData
from .sampler import UsageSampler


def usage_now(sampler: UsageSampler, user: Any) -> dict[str, Any]:
    current = sampler.current.get(user.name)
    limits = sampler.spawners.limits_of(user)
    cpu_limit, memory_limit = (limits.cpu, limits.memory) if limits else (None, None)
    return {
        "cpu": current["cpu"] if current else None,
        "memory": current["memory"] if current else None,
        "cpu_limit": cpu_limit,
        "memory_limit": memory_limit,
        "home": sampler.homes.get(user.name),
        "running": current is not None,
        "source": current["source"] if current else None,
    }


class UsageData(ConsoleData):
    def initialize(self, sampler: UsageSampler) -> None:
        self.sampler = sampler


class UsageNowData(UsageData):
    admin_only = False

    async def get(self) -> None:
        if not self.is_admin:
            users = [self.current_user]
        elif names := self.get_arguments("user"):
            users = [u for u in map(self.find_user, names) if u is not None]
        else:
            users = [self.users[u] for u in self.db.query(orm.User).order_by(orm.User.name)]
        self.write_json({u.name: usage_now(self.sampler, u) for u in users})


class UsageHistoryData(UsageData):
    async def get(self) -> None:
        self.write_json(self.sampler.history())


def handlers(app: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """The usage endpoints, around this hub's sampler (made and started here: see
    console.sampler)."""
    sampler = UsageSampler(app)
    sampler.start()
    return [
        (rf"/{PREFIX}/api/usage/now", UsageNowData, {"sampler": sampler}),
        (rf"/{PREFIX}/api/usage/history", UsageHistoryData, {"sampler": sampler}),
    ]
