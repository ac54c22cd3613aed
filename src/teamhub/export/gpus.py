"""GPU settings → whole `nvidia.com/gpu` devices per user, as Kubernetes hands them out.

Written against the `[gpus]` settings' documented shape (issue 12): `gpus.default` (a
string), `gpus.groups` and `gpus.users` (tables of strings), each value `none`, `all`,
`N` (N devices held exclusively), a list of indices or UUIDs (`0,2`, `GPU-…`, `MIG-…`),
or `shared:N` / `shared:<list>`. They are read from `settings.values` with `none` for a
missing key, so this works before and after those settings exist.

Kubernetes' NVIDIA device plugin gives a pod N whole devices, exclusively, chosen by the
scheduler: `N` carries over exactly. Everything else changes meaning and is reported:
particular devices cannot be named, sharing needs the device plugin's time-slicing, and
"every device of the machine" has no equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESOURCE = "nvidia.com/gpu"
KEYS = ("gpus.default", "gpus.groups", "gpus.users")


@dataclass
class GpuPlan:
    default: int = 0
    groups: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    losses: list[str] = field(default_factory=list)

    def as_values(self) -> dict[str, Any]:
        return {"resource": RESOURCE, "default": self.default, "groups": self.groups,
                "users": self.users}


def count(key: str, value: str) -> tuple[int, str | None]:
    """(devices a pod asks for, why that is not what VALUE meant, or None)."""
    text = str(value).strip().lower()
    if text in ("", "none", "0"):
        return 0, None
    if text.isdigit():
        return int(text), None
    if text == "all":
        return 0, (f"{key} = all: Kubernetes has no 'every GPU of the node'; give a number "
                   "of devices (exported as none)")
    shared = text.startswith("shared:")
    body = text.split(":", 1)[1] if shared else text
    n = int(body) if body.isdigit() else len([p for p in body.split(",") if p.strip()])
    if shared:
        return n, (f"{key} = {value}: Kubernetes hands out whole devices exclusively; "
                   "sharing needs the NVIDIA device plugin's time-slicing (exported as "
                   f"{n} exclusive)")
    return n, (f"{key} = {value}: the scheduler picks the devices, particular ones cannot "
               f"be named (exported as {n})")


def plan(values: dict[str, Any]) -> GpuPlan:
    """The per-user device counts of the `gpus.*` entries in VALUES (settings.values)."""
    result = GpuPlan()
    result.default, loss = count("gpus.default", values.get("gpus.default", "none"))
    losses = [loss]
    for section, target in (("groups", result.groups), ("users", result.users)):
        for name, value in sorted((values.get(f"gpus.{section}") or {}).items()):
            target[name], loss = count(f"gpus.{section}.{name}", value)
            losses.append(loss)
    result.losses = [loss for loss in losses if loss]
    return result


def devices_for(gpus: dict[str, Any], user: str, groups: list[str]) -> int:
    """What USER in GROUPS gets: their own value, else their groups' most, else default."""
    if user in (gpus.get("users") or {}):
        return int(gpus["users"][user])
    mine = [int(n) for g, n in (gpus.get("groups") or {}).items() if g in groups]
    return max(mine) if mine else int(gpus.get("default") or 0)
