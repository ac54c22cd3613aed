"""The console: hub pages where admins run the team hub and every user manages their own
things (README "Console"). Each page calls the same functions as the matching CLI command.

This package collects the pages' handlers; the authenticators register them with the hub
(`get_handlers`), so they live under `/hub/teamhub/console/`.
"""

from __future__ import annotations

from typing import Any

from . import base, envs, me, myenvs, projects


def handlers() -> list[tuple[str, Any, dict[str, Any]] | tuple[str, Any]]:
    return [*base.handlers(), *me.handlers(), *projects.handlers(), *envs.handlers(),
            *myenvs.handlers()]
