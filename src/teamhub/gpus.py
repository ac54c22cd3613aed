"""GPUs for people: what the `[gpus]` settings say, what one user gets, how it is kept.

Each value is one of `none`, `all` (every device, shared), `N` (N devices held
exclusively for the life of the server, picked from free ones), a list of indices or
UUIDs (`0,2`, `MIG-…`; held exclusively), or `shared:N` / `shared:0,2` (others may use
them too). `gpus.default` applies to everyone; `gpus.groups.NAME` to members of hub group
NAME (several groups: the most generous value, as with limits); `gpus.users.NAME` to one
user, and wins over their groups (it is the most specific word, and may also take away).

Which devices a start gets is decided by teamhub.gpu_allocations; how the server is kept
to them (environment, device nodes, cgroup) by `placement` here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .system.gpus import Device, Inventory

KINDS = ("none", "all", "count", "list")
FORMS = ("`none`, `all`, a number of GPUs held exclusively (`1`), a list of indices or "
         "UUIDs (`0,2`, `GPU-…`, `MIG-…`), or `shared:N` / `shared:0,2`")


@dataclass(frozen=True)
class Request:
    """What one value asks for."""

    kind: str = "none"
    count: int = 0
    ids: tuple[str, ...] = ()
    shared: bool = False

    def size(self, total: int) -> int:
        return {"none": 0, "all": total, "count": self.count, "list": len(self.ids)}[self.kind]

    def generosity(self, total: int) -> tuple[int, bool]:
        """More devices first; for as many, your own beats shared ones."""
        return (self.size(total), not self.shared)

    def describe(self) -> str:
        if self.kind in ("none", "all"):
            return self.kind
        what = str(self.count) if self.kind == "count" else ",".join(self.ids)
        return f"shared:{what}" if self.shared else what


NONE = Request()
_ID = re.compile(r"\d+(:\d+)?|(GPU|MIG)-[0-9A-Za-z/-]+")


def parse(value: Any) -> Request:
    """A Request from a setting's value; ValueError saying what it must be."""
    text = str(value).strip()
    low = text.lower()
    if low == "none":
        return NONE
    if low == "all":
        return Request("all", shared=True)
    shared = low.startswith("shared:")
    body = text[len("shared:"):].strip() if shared else text
    if body.isdigit() and "," not in body:
        if int(body) == 0:
            return NONE
        return Request("count", count=int(body), shared=shared)
    ids = tuple(part.strip() for part in body.split(",") if part.strip())
    bad = [i for i in ids if not _ID.fullmatch(i)]
    if not ids or bad or len(set(ids)) != len(ids):
        raise ValueError(FORMS + (f" ({bad[0]!r} is none of them)" if bad else ""))
    return Request("list", ids=ids, shared=shared)


def check_value(value: Any) -> str | None:
    try:
        parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def check_table(table: Mapping[str, Any]) -> str | None:
    for name, value in table.items():
        problem = check_value(value)
        if problem:
            return f"{FORMS} for each name ({name} = {value!r} is not)"
    return None


def from_settings(settings: Any) -> dict[str, Any]:
    """The `gpus.*` settings as the plain table `resolve` takes."""
    return {"default": settings["gpus.default"], "groups": dict(settings["gpus.groups"]),
            "users": dict(settings["gpus.users"])}


def configured(config: Mapping[str, Any]) -> bool:
    """Whether any value asks for a GPU (anything but `none`)."""
    values = [config.get("default", "none"), *(config.get("groups") or {}).values(),
              *(config.get("users") or {}).values()]
    return any(parse(v).kind != "none" for v in values)


def resolve(config: Mapping[str, Any], user: str, groups: Iterable[str],
            total: int) -> Request:
    """What USER (in GROUPS) gets on a machine with TOTAL schedulable devices."""
    users = config.get("users") or {}
    if user in users:
        return parse(users[user])
    listed = config.get("groups") or {}
    chosen: Request | None = None
    for group in sorted(set(groups)):
        if group in listed:
            req = parse(listed[group])
            if chosen is None or req.generosity(total) > chosen.generosity(total):
                chosen = req
    return chosen if chosen is not None else parse(config.get("default", "none"))


def problems(config: Mapping[str, Any], inventory: Inventory, known_groups: Iterable[str],
             known_users: Iterable[str]) -> list[str]:
    """Every value that cannot be honoured on this machine, each with its fix."""
    out: list[str] = []
    groups, users = set(known_groups), set(known_users)
    total = len(inventory.devices)
    where = [("gpus.default", config.get("default", "none"))]
    where += [(f"gpus.groups.{g}", v) for g, v in sorted((config.get("groups") or {}).items())]
    where += [(f"gpus.users.{u}", v) for u, v in sorted((config.get("users") or {}).items())]
    if configured(config) and not inventory.devices:
        return [f"{where[0][0] if parse(where[0][1]).kind != 'none' else 'a [gpus] value'} "
                f"asks for GPUs but {inventory.problem or 'this machine has none'}; install "
                "the NVIDIA driver, or set every [gpus] value to none "
                "(`teamhub config set gpus.default none`)"]
    for key, value in where:
        req = parse(value)
        if req.kind == "list":
            for ident in req.ids:
                if inventory.find(ident) is None:
                    known = ", ".join(f"{d.index} ({d.uuid})" for d in inventory.devices)
                    out.append(f"{key} = {value!r}: there is no GPU {ident!r} here; this "
                               f"machine has {known}")
        elif req.kind == "count" and req.count > total:
            out.append(f"{key} = {value!r} asks for {req.count} GPUs but this machine has "
                       f"{total}; ask for at most {total}")
    for group in sorted(set(config.get("groups") or {}) - groups):
        out.append(f"gpus.groups.{group}: there is no hub group {group!r}; create it "
                   f"(`teamhub group create {group}`) or remove the value "
                   "(`teamhub config unset gpus.groups`, then set the others again)")
    for user in sorted(set(config.get("users") or {}) - users):
        out.append(f"gpus.users.{user}: there is no user {user!r}; fix the name or remove it")
    return out


@dataclass(frozen=True)
class Placement:
    """How one server is kept to its devices."""

    devices: tuple[Device, ...]
    allow: tuple[str, ...] = ()  # device nodes it may open
    hide: tuple[str, ...] = ()  # per-device nodes covered in its mount namespace
    mask: tuple[str, ...] = ()  # /proc/driver/nvidia/gpus/<bus> of GPUs it has none of

    @property
    def restricted(self) -> bool:
        return bool(self.hide or self.mask)

    def env(self) -> dict[str, str]:
        """CUDA_VISIBLE_DEVICES by UUID (indices change with CUDA_DEVICE_ORDER; UUIDs do
        not); NVIDIA_VISIBLE_DEVICES for images built for NVIDIA's container runtime."""
        ids = ",".join(d.uuid for d in self.devices)
        return {"CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids or "void"}

    def mounts_spec(self, cover: str) -> dict[str, Any] | None:
        """What the sandbox covers in the server's mount namespace (None: nothing)."""
        if not self.restricted:
            return None
        return {"hide": list(self.hide), "mask": list(self.mask), "cover": cover}


def placement(inventory: Inventory, devices: Iterable[Device]) -> Placement:
    """The Placement of a server given DEVICES (`all` gets every device nobody holds
    exclusively, so it too is kept off the others)."""
    devices = tuple(devices)
    own = {node for d in devices for node in d.nodes}
    hide = tuple(n for n in inventory.all_nodes() if n not in own)
    buses = {d.pci_bus_id for d in devices}
    mask = tuple(f"{inventory.proc_gpus}/{b}" for b in sorted(inventory.bus_ids() - buses))
    allow = tuple(sorted(own)) + tuple(inventory.shared_nodes())
    return Placement(devices, allow=allow, hide=hide, mask=mask)
