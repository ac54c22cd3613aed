"""What `teamhub group create|delete|add|remove` change, for the CLI and the console's
Groups page alike, and what each group grants (projects, envs, limits, GPUs).

Membership changes also re-apply the ACLs of every project granted to the group
(`@group`), so a new member gets access and a removed one loses it at once. Each change
reports through SAY, line by line (see user_admin).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hubaccounts, hubclient
from .accounts.groups import GroupStore, canonical_group
from .envs.admin import refresh_visibility
from .envs.store import SharedEnvs
from .errors import AccountError
from .hubaccounts import hub_step
from .paths import Paths
from .projects.actions import projects_of
from .projects.model import Principal
from .system.names import canonical_name
from .system.uv import Uv

Say = Callable[[str], None]


def _sync_hub(settings: Any, paths: Paths, groups: GroupStore, say: Say) -> None:
    # Shared environments limited to groups follow membership at once, like projects.
    refresh_visibility(settings)
    # Every sync sends the whole state: any later group change (or a hub start) catches up.
    with hub_step("the groups are changed in the account store",
                  "the hub takes them from there when it starts, and with the next "
                  "`teamhub group` change"):
        if hubaccounts.sync_groups(paths, groups.list()):
            say("the running hub's groups are updated")


def member_names(users: Iterable[str]) -> list[str]:
    names = [canonical_name(u) for u in users]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AccountError(f"user {dupes[0]!r} is named more than once", "name each user once")
    return names


def _reapply(settings: Any, paths: Paths, group: str, changed: list[str], say: Say) -> None:
    """Re-apply projects granted to @GROUP and refresh the links of the CHANGED users."""
    p = projects_of(settings, paths)
    touched = [pr for pr in p.store.list() if Principal("group", group) in pr.grants]
    for project in touched:
        p.apply_project(project)
    if touched:
        p.sync_links(changed)
        say("re-applied project folders: " + ", ".join(pr.name for pr in touched))


def create(settings: Any, paths: Paths, name: str, *, say: Say) -> str:
    """Create the empty group NAME; its canonical name."""
    hubclient.hub_running(paths)  # a busy hub or an impostor stops it before any change
    groups = projects_of(settings, paths).groups
    made = groups.create(name)
    say(f"created group {made}")
    _sync_hub(settings, paths, groups, say)
    return made


def delete(settings: Any, paths: Paths, name: str, *, actor: str, say: Say) -> None:
    """Delete group NAME; its project grants go too (members lose that access)."""
    hubclient.hub_running(paths)
    p = projects_of(settings, paths)
    name = canonical_group(name)
    members = p.groups.members(name)  # fails for an unknown group, before any change
    touched = p.store.forget_principal(Principal("group", name), actor)
    p.groups.delete(name)
    for project in p.store.list():
        if project.name in touched:
            p.apply_project(project)
    p.sync_links(members)
    say(f"deleted group {name}")
    _sync_hub(settings, paths, p.groups, say)


def add_members(settings: Any, paths: Paths, name: str, users: Iterable[str], *,
                say: Say) -> None:
    """Add USERS to group NAME (all or none)."""
    hubclient.hub_running(paths)
    groups = projects_of(settings, paths).groups
    name, names = canonical_group(name), member_names(users)
    already = sorted(set(names) & set(groups.members(name)))
    if already:
        raise AccountError(f"user {already[0]!r} is already in group {name!r}; nothing changed")
    groups.add_members(name, names)
    say(f"added to {name}: {', '.join(names)}")
    _reapply(settings, paths, name, names, say)
    _sync_hub(settings, paths, groups, say)


def remove_members(settings: Any, paths: Paths, name: str, users: Iterable[str], *,
                   say: Say) -> None:
    """Remove USERS from group NAME (all or none)."""
    hubclient.hub_running(paths)
    groups = projects_of(settings, paths).groups
    name, names = canonical_group(name), member_names(users)
    missing = sorted(set(names) - set(groups.members(name)))
    if missing:
        raise AccountError(f"user {missing[0]!r} is not in group {name!r}; nothing changed")
    groups.remove_members(name, names)
    say(f"removed from {name}: {', '.join(names)}")
    _reapply(settings, paths, name, names, say)
    _sync_hub(settings, paths, groups, say)


@dataclass
class Grants:
    """What membership of one group gives."""

    projects: dict[str, str] = field(default_factory=dict)  # project → read | write
    envs: list[str] = field(default_factory=list)  # shared envs limited to the group
    limits: dict[str, Any] = field(default_factory=dict)  # [limits.groups.NAME]
    gpus: str | None = None  # [gpus.groups] NAME = ...


def grants(settings: Any, paths: Paths) -> dict[str, Grants]:
    """Every group's grants, from the store and the settings in effect."""
    p = projects_of(settings, paths)
    out = {name: Grants() for name in p.groups.list()}
    for project in p.store.list():
        for principal, level in project.grants.items():
            if principal.kind == "group" and principal.name in out:
                out[principal.name].projects[project.name] = level
    envs = SharedEnvs(Path(settings["envs.root"]), Uv(Path("uv")), "")
    if envs.root.is_dir():
        for env in envs.names():
            for group in envs.meta(env).get("groups", []):
                if group in out:
                    out[group].envs.append(env)
    for group, table in (settings["limits.groups"] or {}).items():
        if group in out:
            out[group].limits = dict(table)
    for group, value in (settings["gpus.groups"] or {}).items():
        if group in out:
            out[group].gpus = str(value)
    return out
