"""Put the project grants onto disk: ACLs on each project folder, links in each home.

Everything here is idempotent and recomputed from the store, so `teamhub
project repair` (or simply the next grant) undoes any drift or tampering. ACL
entries are per Linux *user*, groups already expanded: Linux re-checks a named
user entry at every open(), so a revoke is effective for running kernels at
once, which a supplementary group (fixed for a process's lifetime) would not be.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..accounts.groups import GroupStore
from ..accounts.store import AccountStore
from ..errors import ProjectError
from ..system import acl, users
from ..system.names import system_name
from .model import Project, ProjectStore, check_project_name, effective

LINKS_DIR = "projects"  # ~/projects/NAME in every home
TRASH_DIR = ".trash"  # project names start with a letter, so this never clashes


@dataclass(frozen=True)
class Layout:
    """Where things are: the projects root, the store, and how hub users map to Linux."""

    root: Path
    store_path: Path
    prefix: str
    registry: Path
    store_url: str = ""  # db.url: empty for the sqlite file store_path

    def folder(self, name: str) -> Path:
        return self.root / check_project_name(name)  # never a path: root works in there

    def account(self, hub_name: str) -> users.SystemUser | None:
        """HUB_NAME's Linux account if it exists and is teamhub's (else: no ACLs yet)."""
        sysname = system_name(hub_name, self.prefix)
        account = users.lookup(sysname)
        if account is None or not users.is_managed(sysname, registry=self.registry):
            return None
        return account


class Projects:
    """The store's view (projects, groups, users) plus the operations that apply it."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.accounts = AccountStore(layout.store_path, layout.store_url)
        self.groups = GroupStore(self.accounts)
        self.store = ProjectStore(self.accounts)

    def effective(self, project: Project) -> dict[str, str]:
        # Blocked accounts count for nothing until unblocked; their grants stay.
        active = [a.name for a in self.accounts.list() if not a.blocked]
        return effective(project, self.groups.list(), active)

    def ensure_root(self) -> None:
        root = self.layout.root
        if not root.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            os.chmod(root, 0o755)

    def ensure_folder(self, name: str) -> Path:
        self.ensure_root()
        folder = self.layout.folder(name)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            st = os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode):
                raise ProjectError(
                    f"{folder} exists and is not a folder (a symlink?)",
                    "move it away and run "
                    f"`teamhub project repair {name}`"
                ) from None
        return folder

    def apply_project(self, project: Project) -> dict[str, str]:
        """Make PROJECT's folder ACLs exactly its effective grants; returns them.

        Only writers may own anything inside: the owner of a file can write,
        chmod and setfacl it whatever the ACL says, so files of everyone else
        (revoked, downgraded to read, out of the writer group, blocked) are
        handed to root, after their write entries are gone.
        """
        eff = self.effective(project)
        entries: dict[str, str] = {}
        writers: set[int] = set()
        for hub_name, access in eff.items():
            account = self.layout.account(hub_name)
            if account is not None:
                entries[account.name] = acl.WRITE if access == "write" else acl.READ
                if access == "write" and not project.archived:
                    writers.add(account.uid)
        folder = self.ensure_folder(project.name)
        acl.apply(folder, entries, owner_root=project.archived)
        acl.disown_all_but(folder, writers)
        return eff

    def accessible(self, hub_name: str) -> dict[str, str]:
        """{project: access} for HUB_NAME."""
        out = {}
        for project in self.store.list():
            access = self.effective(project).get(hub_name)
            if access:
                out[project.name] = access
        return out

    def sync_links(self, hub_names: Iterable[str]) -> None:
        for hub_name in sorted(set(hub_names)):
            account = self.layout.account(hub_name)
            if account is not None:
                sync_links(self.layout.root, account, self.accessible(hub_name))

    def apply_for_user(self, hub_name: str) -> None:
        """Give HUB_NAME's (possibly brand-new) Linux account exactly its project access."""
        account = self.layout.account(hub_name)
        if account is None:
            return
        mine = self.accessible(hub_name)
        for project in self.store.list():
            folder = self.layout.folder(project.name)
            if project.name in mine:
                if not folder.is_dir():
                    self.apply_project(project)
                perms = acl.WRITE if mine[project.name] == "write" else acl.READ
                if acl.named_users(folder).get(account.name) != perms.replace("X", "x"):
                    acl.grant(folder, account.name, perms)
                if perms == acl.READ:
                    acl.disown(folder, account.name)  # a reader owns nothing there
            elif folder.is_dir() and account.name in acl.named_users(folder):
                acl.disown(folder, account.name)
                acl.revoke(folder, account.name)
        sync_links(self.layout.root, account, mine)

    def strip_user(self, hub_name: str) -> None:
        """Before HUB_NAME's account goes: strip its ACL entries and files off every
        project folder (its grants stay in the store until the caller forgets them).

        Entries name a uid; left behind, they would hand the project to whoever
        gets that uid next.
        """
        account = self.layout.account(hub_name)
        if account is not None:
            for project in self.store.list():
                folder = self.layout.folder(project.name)
                if folder.is_dir():
                    acl.disown(folder, account.name)
                    acl.revoke(folder, account.name)

    def repair(self, names: Iterable[str] | None = None) -> list[str]:
        """Re-apply ACLs of NAMES (default: all projects) and every user's links."""
        projects = self.store.list()
        if names is not None:
            wanted = set(names)
            projects = [p for p in projects if p.name in wanted]
        for project in projects:
            self.apply_project(project)
        self.sync_links(a.name for a in self.accounts.list())
        return [p.name for p in projects]

    def trash(self, name: str) -> Path:
        """Move project NAME's folder into the root-only trash; returns where it went."""
        trash = self.layout.root / TRASH_DIR
        trash.mkdir(mode=0o700, exist_ok=True)
        os.chmod(trash, 0o700)
        target = trash / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}"
        n = 0
        while target.exists():
            n += 1
            target = trash / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{n}"
        os.rename(self.layout.folder(name), target)
        return target


def sync_links(root: Path, account: users.SystemUser, names: Iterable[str]) -> None:
    """Make ~/projects hold exactly one link per project in NAMES (root/NAME).

    Runs as root inside a home the user controls, so every step works on
    directory fds opened with O_NOFOLLOW: a user who swaps ~/projects for a
    symlink gets their change ignored, never root writing elsewhere. Only
    links that point at a project folder are ever removed; the user's own
    files are left alone.
    """
    want = {n: str(root / n) for n in names}
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        home_fd = os.open(account.home, flags)
    except OSError:
        return  # no home (yet), or not a real folder: nothing to show links in
    try:
        if os.fstat(home_fd).st_uid != account.uid:
            return
        try:
            fd = os.open(LINKS_DIR, flags, dir_fd=home_fd)
        except FileNotFoundError:
            if not want:
                return
            os.mkdir(LINKS_DIR, 0o700, dir_fd=home_fd)
            fd = os.open(LINKS_DIR, flags, dir_fd=home_fd)
            os.fchown(fd, account.uid, account.gid)
        except OSError:
            return  # the user put something else there; theirs to keep
        try:
            if os.fstat(fd).st_uid != account.uid:
                return
            _sync_dir(fd, root, want, account)
        finally:
            os.close(fd)
    finally:
        os.close(home_fd)


def _sync_dir(fd: int, root: Path, want: dict[str, str], account: users.SystemUser) -> None:
    for entry in os.listdir(fd):
        try:
            target = os.readlink(entry, dir_fd=fd)
        except OSError:
            continue  # not a link: the user's own file or folder
        if os.path.dirname(target) != str(root):
            continue  # a link the user made to somewhere else
        if want.get(entry) == target:
            del want[entry]
        else:
            os.unlink(entry, dir_fd=fd)
    for name, target in want.items():
        try:
            os.symlink(target, name, dir_fd=fd)
        except FileExistsError:
            continue  # the user has a file of that name; theirs wins
        os.chown(name, account.uid, account.gid, dir_fd=fd, follow_symlinks=False)
