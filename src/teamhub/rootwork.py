"""What `teamhub user block|unblock|remove` and the project actions change on the machine
(processes, project folders and their ACLs, ~/projects links, the Linux account): the one
copy of root's part of them.

`Direct` does it, as root: the CLI and a root hub call it themselves, and the root helper
calls it for an unprivileged hub (teamhub.spawners.rootdoor's verbs `block_user`,
`unblock_user`, `remove_user`, `apply_project`, `sync_links`, `delete_project`, which
check every argument first and build their `Direct` from the helper's own policy). The
hub's side of those verbs (teamhub.spawners.roothelper.HelperWork) has the same methods.
Every method takes names only and recomputes the rest from the account store; the
bookkeeping (hub database, account store, the projects' audit log) stays with the callers
(teamhub.user_admin, teamhub.projects.actions). Blocking.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from .errors import ProjectError
from .projects.apply import Projects
from .system import acl, processes, users
from .system.names import system_name


class RootWork(Protocol):
    """Root's part of the user and project actions (see the module docstring)."""

    def cut_off(self, user: str) -> tuple[int | None, list[str]]:
        """End USER's Linux processes and take their project ACLs and links away (they are
        blocked in the store): (processes ended or None without an account, projects)."""

    def restore(self, user: str) -> None:
        """Give USER's account exactly the project access the store says (after unblock)."""

    def remove_account(self, user: str, keep_home: bool) -> None:
        """Strip USER's ACL entries from every project folder, then delete the Linux
        account teamhub made for them (with its home unless KEEP_HOME) and its runtime
        folder."""

    def apply_project(self, name: str, users: Iterable[str]) -> None:
        """Make project NAME's folder and ACLs what the store says; refresh USERS' links."""

    def sync_links(self, users: Iterable[str]) -> None:
        """Make USERS' ~/projects links what the store says."""

    def remove_folder(self, name: str, force: bool) -> str:
        """Remove project NAME's folder: refused (ProjectError) unless empty or FORCE, which
        moves it to the trash; where it went ("" when removed or absent)."""


def projects_with_acl(p: Projects, sysname: str) -> list[str]:
    """The projects whose folder ACL names Linux account SYSNAME (what is on disk)."""
    out = []
    for project in p.store.list():
        folder = p.layout.folder(project.name)
        if folder.is_dir() and sysname in acl.named_users(folder):
            out.append(project.name)
    return out


class Direct:
    """RootWork done by this (root) process."""

    def __init__(self, p: Projects, runtime_root: Path | None = None) -> None:
        self.p = p
        self.runtime_root = runtime_root

    def _sysname(self, user: str) -> str:
        return system_name(user, self.p.layout.prefix)

    def cut_off(self, user: str) -> tuple[int | None, list[str]]:
        sysname = self._sysname(user)
        linux = users.lookup(sysname)
        ended = None
        if linux is not None and linux.uid != 0:
            ended = len(processes.processes_of(linux.uid))
            processes.end_processes(linux.uid)
        touched = projects_with_acl(self.p, sysname) if linux is not None else []
        for name in touched:
            self.p.apply_project(self.p.store.get(name))
        self.p.sync_links([user])
        return ended, touched

    def restore(self, user: str) -> None:
        self.p.apply_for_user(user)

    def remove_account(self, user: str, keep_home: bool) -> None:
        sysname = self._sysname(user)
        self.p.strip_user(user)
        before = users.lookup(sysname)
        users.remove_system_user(sysname, registry=self.p.layout.registry, keep_home=keep_home)
        if before is not None and self.runtime_root is not None:
            shutil.rmtree(self.runtime_root / str(before.uid), ignore_errors=True)

    def apply_project(self, name: str, users: Iterable[str]) -> None:
        self.p.apply_project(self.p.store.get(name))
        self.p.sync_links(users)

    def sync_links(self, users: Iterable[str]) -> None:
        self.p.sync_links(users)

    def remove_folder(self, name: str, force: bool) -> str:
        folder = self.p.layout.folder(name)
        present = folder.is_dir() and not folder.is_symlink()
        if present and any(os.scandir(folder)) and not force:
            raise ProjectError(f"project {name!r} is not empty",
                               "nothing was deleted. Empty "
                               f"{folder} first, or use --force to move it to the trash")
        where = str(self.p.trash(name)) if present and force else ""
        if present and not where:
            folder.rmdir()
        return where
