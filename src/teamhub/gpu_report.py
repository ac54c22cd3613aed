"""GPUs as the admin sees them: can the `[gpus]` settings be honoured here, who holds what.

Used by `teamhub up` (refuses with one line), `teamhub doctor`, `teamhub status` and
`teamhub gpu status|release`. Reads the settings, the account store, discovery and the
allocation record; needs no running hub.
"""

from __future__ import annotations

import os
import pwd
import time
from typing import Any

from . import gpus as gpu_model
from .accounts.groups import GroupStore
from .accounts.store import AccountStore
from .gpu_allocations import Allocations
from .paths import Paths
from .settings import Settings
from .system import gpus as discovery
from .system import namespaces, systemd


def _known(settings: Settings, paths: Paths) -> tuple[list[str], list[str]]:
    """(hub groups, hub users) that `[gpus]` values may name."""
    groups: list[str] = []
    users: list[str] = []
    if paths.store_exists:
        store = AccountStore(paths.accounts_db, paths.db_url)
        groups = list(GroupStore(store).list())
        users = [a.name for a in store.list()]
    if settings["auth.mode"] == "pam":
        users += [p.pw_name for p in pwd.getpwall()]
    return groups, users


def gpus_status(settings: Settings, inventory: discovery.Inventory | None = None
                ) -> tuple[bool, str]:
    """(True, what is configured and how it is enforced) or (False, the first problem
    with its fix)."""
    config = gpu_model.from_settings(settings)
    inv = discovery.discover() if inventory is None else inventory
    if not gpu_model.configured(config) and not inv.devices:
        return True, "no GPUs configured ([gpus] all none) and none found"
    paths = Paths.from_settings(settings)
    problems = gpu_model.problems(config, inv, *_known(settings, paths))
    if problems:
        return False, problems[0]
    found = ", ".join(f"{d.index} {d.name} ({d.uuid})" for d in inv.devices)
    if settings["spawner.backend"] == "docker":
        how = ("Docker device requests by UUID (NVIDIA container toolkit)"
               if discovery.toolkit_present() else
               "only its device nodes passed to the container, driver files mounted")
        return True, f"GPUs ({inv.source}): {found}; each container gets {how}"
    if os.geteuid() != 0:
        return False, ("GPUs are only kept apart when teamhub runs as root; run it as root, "
                       "or set every [gpus] value to none")
    why = namespaces.probe(shm_size=None)
    if why is not None:
        return False, (f"GPU device nodes cannot be covered in servers' mount namespaces "
                       f"here: {why}")
    how = "CUDA_VISIBLE_DEVICES, other devices' nodes covered in its mount namespace"
    if systemd.booted():
        how += " and only its own allowed by its scope's device cgroup (DeviceAllow=)"
    return True, f"GPUs ({inv.source}): {found}; each server gets {how}"


def holdings_report(paths: Paths, inventory: discovery.Inventory | None = None,
                    with_usage: bool = True) -> list[dict[str, Any]]:
    """Each device: index, uuid, name, memory, holders (name, since, shared), memory used
    and processes (NVML or nvidia-smi, when they answer)."""
    inv = discovery.discover() if inventory is None else inventory
    held = Allocations(paths.gpu_allocations).holdings() if paths.state_dir.exists() else []
    used = discovery.usage() if with_usage and inv.devices else {}
    out = []
    for d in inv.devices:
        mine = [h for h in held if h.uuid == d.uuid]
        out.append({
            **d.as_dict(),
            "holders": [{"user": h.holder, "server": h.server, "shared": h.shared,
                         "since": time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                                time.localtime(h.since)),
                         "pid": h.pid} for h in mine],
            "memory_used": (used.get(d.uuid) or {}).get("memory_used"),
            "processes": (used.get(d.uuid) or {}).get("processes", []),
        })
    return out
