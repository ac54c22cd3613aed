"""Per-user resource limits: what the settings say, what one user gets, and whether it holds.

The `[limits]` settings give every user's server a memory cap, a CPU cap, a cap on the
number of tasks (processes and threads: fork bombs stop there) and a private /tmp.
`[limits.groups.NAME]` tables override memory, cpu and tasks for members of hub group
NAME. A user in several such groups gets, for each resource separately, the most
generous value among those groups ("none" beats any number); groups are there to grant
more, never to take away what another membership gave. Users in no listed group get the
`[limits]` values.

The limits are enforced by running each server in a transient systemd scope
(`teamhub-user-NAME.scope` in `teamhub.slice`); kernels and terminals inherit it. When
they are on but cannot be enforced, `teamhub up` refuses to start (see `limits_status`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import DockerError
from .system import namespaces, systemd
from .system.docker import Engine


class Settings(Protocol):
    """What this module reads of teamhub.settings.Settings (which imports this module for
    its checks, so this module does not import it back)."""

    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any: ...


SLICE = "teamhub.slice"
RESOURCES = ("memory", "cpu", "tasks")
UNLIMITED = ("none", "unlimited", "infinity")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _total_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemTotal in /proc/meminfo")


def parse_memory(text: str, total: int | None = None) -> int | None:
    """Bytes from `512M`, `4G`, `2048` or `50%` (of this machine's memory); None: no limit."""
    t = str(text).strip().upper()
    if t.lower() in UNLIMITED:
        return None
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", t):
        pct = float(m.group(1))
        if not 0 < pct <= 100:
            raise ValueError("a percentage from 1% to 100%")
        return int((total if total is not None else _total_memory()) * pct / 100)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)B?", t)
    if not m or float(m.group(1)) <= 0:
        raise ValueError("a size such as 512M, 4G or 50% (of this machine's memory), or none")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


SHM_SHARED = "shared"


def parse_shm_size(text: str, total: int | None = None) -> int | None:
    """Bytes of each server's private /dev/shm from `1G`, `64M`, `10%`; None for `shared`."""
    if str(text).strip().lower() == SHM_SHARED:
        return None
    try:
        size = parse_memory(text, total)
    except ValueError:
        size = None
    if size is None or size < 1024**2:
        raise ValueError("a size of at least 1M such as 512M, 2G or 10% (of this machine's "
                         "memory), or `shared` (the machine's own /dev/shm, shared by all)")
    return size


def parse_cpu(text: str, cpus: int | None = None) -> float | None:
    """CPUs from `2`, `0.5` or `50%` (of this machine's CPUs); None: no limit."""
    t = str(text).strip()
    if t.lower() in UNLIMITED:
        return None
    ncpu = cpus if cpus is not None else (os.cpu_count() or 1)
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", t):
        pct = float(m.group(1))
        if not 0 < pct <= 100:
            raise ValueError("a percentage from 1% to 100%")
        return ncpu * pct / 100
    if re.fullmatch(r"\d+(?:\.\d+)?", t) and float(t) > 0:
        return float(t)
    raise ValueError("a number of CPUs such as 2 or 0.5, a share such as 50%, or none")


def parse_tasks(value: Any) -> int | None:
    """A task count (>= 16) from 4096 or "4096"; 0 or none: no limit."""
    t = str(value).strip().lower()
    if t in UNLIMITED or t == "0":
        return None
    if not t.isdigit() or int(t) < 16:
        raise ValueError("a whole number of at least 16 (a server alone needs a dozen), or 0")
    return int(t)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "memory": parse_memory, "cpu": parse_cpu, "tasks": parse_tasks}


def check_value(resource: str, value: Any) -> str | None:
    """None if VALUE is valid for RESOURCE, else what it must be (for settings checks)."""
    try:
        _PARSERS[resource](value)
    except ValueError as exc:
        return str(exc)
    return None


def check_groups(value: Mapping[str, Any]) -> str | None:
    """None if VALUE is a valid `limits.groups` table, else what it must be."""
    for group, table in value.items():
        if not isinstance(table, Mapping):
            return f"a table per group, e.g. [limits.groups.{group}] memory = \"8G\""
        for key, v in table.items():
            if key not in RESOURCES:
                return (f"tables whose keys are {', '.join(RESOURCES)} (group {group!r} has "
                        f"{key!r})")
            problem = check_value(key, v)
            if problem:
                return f"valid values ({group}.{key} = {v!r} must be {problem})"
    return None


@dataclass(frozen=True)
class Limits:
    """What one user's server gets. None means no limit on that resource."""

    memory: int | None = None  # bytes
    cpu: float | None = None  # CPUs
    tasks: int | None = None
    private_tmp: bool = False

    def scope_properties(self, cgroup_version: int = 2) -> dict[str, Any]:
        """systemd scope properties that enforce these limits."""
        props: dict[str, Any] = {}
        if self.memory is not None:
            props["MemoryAccounting"] = True
            props["MemoryMax"] = self.memory
            if cgroup_version == 2:
                # Otherwise the cap only moves the overflow into swap.
                props["MemorySwapMax"] = 0
        if self.cpu is not None:
            props["CPUAccounting"] = True
            props["CPUQuotaPerSecUSec"] = max(int(self.cpu * 1_000_000), 10_000)
        if self.tasks is not None:
            props["TasksAccounting"] = True
            props["TasksMax"] = self.tasks
        return props

    def as_dict(self) -> dict[str, Any]:
        return {"memory": self.memory, "cpu": self.cpu, "tasks": self.tasks,
                "private_tmp": self.private_tmp}


def _more(resource: str, a: Any, b: Any) -> Any:
    """The more generous of two raw values for RESOURCE."""
    pa, pb = _PARSERS[resource](a), _PARSERS[resource](b)
    if pa is None:
        return a
    if pb is None:
        return b
    return a if pa >= pb else b


def resolve(config: Mapping[str, Any], groups: Iterable[str]) -> Limits | None:
    """The limits for a user in GROUPS, from CONFIG (the `limits.*` settings without the
    prefix: enabled, memory, cpu, tasks, private_tmp, groups); None when limits are off."""
    if not config.get("enabled", True):
        return None
    chosen: dict[str, Any] = {}
    overrides: Mapping[str, Mapping[str, Any]] = config.get("groups") or {}
    for group in sorted(set(groups)):
        for resource, value in (overrides.get(group) or {}).items():
            chosen[resource] = (value if resource not in chosen
                                else _more(resource, chosen[resource], value))
    raw = {r: chosen.get(r, config.get(r, "none")) for r in RESOURCES}
    return Limits(memory=parse_memory(raw["memory"]), cpu=parse_cpu(raw["cpu"]),
                  tasks=parse_tasks(raw["tasks"]),
                  private_tmp=bool(config.get("private_tmp", False)))


def from_settings(settings: Settings) -> dict[str, Any]:
    """The `limits.*` settings as the plain table `resolve` takes."""
    return {key.split(".", 1)[1]: settings[key] for key in settings.values
            if key.startswith("limits.")}


def needed_controllers(config: Mapping[str, Any]) -> set[str]:
    """cgroup controllers the configured limits (including any group's) rely on."""
    need: set[str] = set()
    tables = [config, *(config.get("groups") or {}).values()]
    for table in tables:
        for resource, controller in (("memory", "memory"), ("cpu", "cpu"), ("tasks", "pids")):
            if resource in table and _PARSERS[resource](table[resource]) is not None:
                need.add(controller)
    return need


def limits_status(settings: Settings) -> tuple[bool, str]:
    """(True, what is enforced) or (False, why the configured limits cannot be enforced
    and how to fix it)."""
    config = from_settings(settings)
    problem = _shm_problem(settings["spawner.shm_size"])
    if problem:
        return False, problem
    if not config.get("enabled", True):
        return True, ("per-user limits are off (limits.enabled = false): one user can use "
                      "all memory, CPUs and processes")
    off = "or turn limits off with `teamhub config set limits.enabled false`"
    if os.geteuid() != 0:
        return False, f"per-user limits need root to set up; run teamhub as root, {off}"
    if settings["spawner.backend"] == "docker":
        return docker_limits_status(config)
    if not systemd.booted():
        return False, ("per-user limits are configured but systemd is not running as init "
                       "on this machine, so they cannot be enforced; run teamhub on a systemd "
                       f"machine (`teamhub install`), {off}")
    missing = needed_controllers(config) - systemd.controllers()
    if missing:
        return False, ("per-user limits are configured but the cgroup controller(s) "
                       f"{', '.join(sorted(missing))} are not available, so they cannot be "
                       "enforced; enable them in the kernel command line (e.g. "
                       f"cgroup_enable=memory), set that limit to none, {off}")
    base = resolve(config, [])
    assert base is not None
    parts = [f"memory {_human(base.memory)}",
             f"cpu {'none' if base.cpu is None else f'{base.cpu:g} CPUs'}",
             f"tasks {base.tasks or 'none'}",
             f"private /tmp {'on' if base.private_tmp else 'off'}"]
    groups = sorted(config.get("groups") or {})
    extra = f"; group overrides: {', '.join(groups)}" if groups else ""
    return True, "per-user limits enforced by systemd: " + ", ".join(parts) + extra


def _shm_problem(shm_size: str) -> str | None:
    """Why servers could not get their private /dev/shm here (it needs no systemd, but
    root and mount namespaces: containers without CAP_SYS_ADMIN lack them); None if fine."""
    if parse_shm_size(shm_size) is None or os.geteuid() != 0:
        return None  # shared; or the single-user trial, which never mounts anything
    why = namespaces.probe()
    if why is None:
        return None
    return (f"each server's private /dev/shm (spawner.shm_size = {shm_size}) cannot be set "
            f"up on this machine: {why}")


# What `docker info` reports for each cgroup controller the limits rely on.
_DOCKER_FEATURES = {"memory": "MemoryLimit", "cpu": "CpuCfsQuota", "pids": "PidsLimit"}


def docker_limits_status(config: Mapping[str, Any]) -> tuple[bool, str]:
    """limits_status for the docker backend: Docker's own cgroups enforce the limits."""
    off = "or turn limits off with `teamhub config set limits.enabled false`"
    try:
        info = Engine().info()
    except DockerError as exc:
        return False, ("per-user limits are enforced by Docker with spawner.backend = docker, "
                       f"but {exc}")
    missing = sorted(c for c in needed_controllers(config) if not info.get(_DOCKER_FEATURES[c]))
    if missing:
        return False, ("per-user limits are configured but the Docker engine cannot enforce "
                       f"{', '.join(missing)} limits here (see `docker info` warnings); set "
                       f"that limit to none, {off}")
    base = resolve(config, [])
    assert base is not None
    return True, (f"per-user limits enforced by Docker's cgroups: memory {_human(base.memory)}, "
                  f"cpu {'none' if base.cpu is None else f'{base.cpu:g} CPUs'}, "
                  f"tasks {base.tasks or 'none'}")


def _human(n: int | None) -> str:
    if n is None:
        return "none"
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.3g}{unit}"
    return str(n)
