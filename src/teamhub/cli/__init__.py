"""The `teamhub` command: the root group (cli/base.py) and one module per command group.

This package collects the command modules, which add their commands to the root
group as they are imported; they import cli/base.py, never this package.
"""

from __future__ import annotations

from . import (  # noqa: F401  (imported for the commands they add)
    backup,
    config,
    db,
    doctor,
    env,
    export,
    gpu,
    group,
    image,
    install,
    lab,
    project,
    restart,
    sessions,
    status,
    tls,
    up,
    user,
    user_lifecycle,
)
from .base import cli


def main() -> None:
    cli()
