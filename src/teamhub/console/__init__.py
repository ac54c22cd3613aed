"""The console: hub pages where admins run the team hub and every user manages their own
things (README "Console"). Each page calls the same functions as the matching CLI command.

This package collects the pages' handlers; the authenticators register them with the hub
(`get_handlers`), so they live under `/hub/teamhub/console/`.
"""

from __future__ import annotations

from typing import Any

from . import base, envs, groups, me, myenvs, projects, system, usage, users


def handlers(app: Any) -> list[tuple[str, Any, dict[str, Any]] | tuple[str, Any]]:
    """Every console handler; APP (the JupyterHub application) is what the usage sampler
    watches (console.sampler)."""
    return [*base.handlers(), *me.handlers(), *users.handlers(), *groups.handlers(),
            *projects.handlers(), *envs.handlers(), *myenvs.handlers(),
            *system.handlers(), *usage.handlers(app)]
