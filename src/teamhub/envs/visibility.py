"""Who may see which shared environment: `<envs.root>/visibility.json`.

Group membership lives in the root-only account store, which users' servers
cannot read. So root writes a world-readable index mapping each env to the
Linux accounts allowed to use it (`null`: everyone); the kernel spec manager
in each server reads it at every listing. It is rewritten by every `teamhub env`
command that changes an env, by `teamhub env sync` and at `teamhub up`:
a membership change takes effect at the next of these, with no server restart.
An env missing from the index is hidden (fail closed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..system.names import system_name

INDEX = "visibility.json"


def compute(envs: dict[str, list[str]], groups: dict[str, list[str]],
            prefix: str) -> dict[str, Any]:
    """ENVS: env → its groups ([] = everyone); GROUPS: group → hub users."""
    index: dict[str, Any] = {}
    for env, env_groups in sorted(envs.items()):
        if not env_groups:
            index[env] = {"users": None}
            continue
        members = {u for g in env_groups for u in groups.get(g, [])}
        index[env] = {"users": sorted(system_name(u, prefix) for u in members)}
    return {"version": 1, "envs": index}


def write(root: Path, index: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, root / INDEX)


def read(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / INDEX).read_text())
    except (OSError, ValueError):
        return {}
    envs = data.get("envs") if isinstance(data, dict) else None
    return envs if isinstance(envs, dict) else {}


def allowed(entry: Any, account: str) -> bool:
    if not isinstance(entry, dict):
        return False
    users = entry.get("users")
    return users is None or (isinstance(users, list) and account in users)
