"""Root's own files beside the state folder (Paths.root_dir): the registry of the accounts
teamhub made (and its lock) and the root helper's log.

They used to be in the state folder, which is the hub's account's with hub.unprivileged:
that account could rename, replace or link those names (the registry is what the root
helper trusts). Root makes root_dir at each root start (`teamhub up`, `teamhub install`,
`teamhub restore`), and moves an older install's registry and helper log out of the state
folder into it (`migrate`), reading them there never through a link and only when they
are still root's own files.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
from pathlib import Path

from .errors import RootFilesError
from .paths import Paths
from .settings import Settings
from .system import users


def hub_group(settings: Settings) -> int | None:
    """The group root_dir is shared with: the hub's account's (hub.unprivileged, once the
    account exists), else none."""
    account = users.lookup(settings["hub.account"]) if settings["hub.unprivileged"] else None
    return account.gid if account is not None and account.uid != 0 else None


def ensure_root_dir(paths: Paths, gid: int | None = None) -> None:
    """root_dir made (or taken back) root's: 0710 with group GID (the hub's account's, so
    that it reaches the registry shared with it), else 0700 root's alone. Refused where
    someone else could rename it: its parent must be root's and writable by root alone
    (sticky, like /tmp, will do)."""
    folder = paths.root_dir
    parent = os.stat(folder.parent) if folder.parent.is_dir() else None
    if parent is not None and (parent.st_uid != 0 or (
            parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX)):
        raise RootFilesError(
            f"{folder.parent}, the folder of the state folder and of root's own files "
            f"({folder.name}: the account registry, the root helper's log), can be changed "
            f"by others than root (uid {parent.st_uid}, mode {stat.S_IMODE(parent.st_mode):04o})",
            f"`chown root: {folder.parent}` and `chmod go-w {folder.parent}`, or set "
            "paths.state_dir to a folder in one only root can change (e.g. /var/lib/teamhub)")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if info.st_uid != 0:
            raise RootFilesError(
                f"{folder} (root's own files: the account registry, the root helper's log) "
                f"is not root's (uid {info.st_uid})",
                f"check what is in it, then `chown -R root: {folder}` and start teamhub again")
        os.fchown(fd, 0, 0 if gid is None else gid)
        os.fchmod(fd, 0o700 if gid is None else 0o710)
    finally:
        os.close(fd)


def migrate(paths: Paths, gid: int | None = None) -> list[str]:
    """Make root_dir (ensure_root_dir) and move into it what an older install kept in the
    state folder: the registry (entries merged into one there already: nothing lost) and
    the helper's log. What it did, in words (also said on stderr)."""
    ensure_root_dir(paths, gid)
    done = []
    old = _roots_own(paths.old_system_users)
    if old is not None:
        with old:
            entries = users.parse_registry(old.read().decode("utf-8"), paths.old_system_users)
        users.add_entries(paths.system_users, entries)
        paths.old_system_users.unlink()
        done.append(f"moved the account registry ({len(entries)} accounts) from "
                    f"{paths.old_system_users} to {paths.system_users}")
    old_lock = paths.old_system_users.with_name(paths.old_system_users.name + ".lock")
    old_lock.unlink(missing_ok=True)
    log = _roots_own(paths.old_fork_server_log)
    if log is not None:
        with log:
            fd = os.open(paths.fork_server_log,
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "ab") as out:
                shutil.copyfileobj(log, out)
        paths.old_fork_server_log.unlink()
        done.append(f"moved the root helper's log to {paths.fork_server_log}")
    if paths.system_users.exists() and gid is not None:
        users.share_with_group(paths.system_users, gid)
    for line in done:
        print(f"teamhub: {line}", file=sys.stderr)
    return done


def registry_bytes(paths: Paths) -> bytes | None:
    """The registry's bytes (for a backup): in root_dir, or where an install not yet started
    as root since its upgrade keeps it (only if still root's own file there)."""
    if paths.system_users.is_file():
        return paths.system_users.read_bytes()
    old = _roots_own(paths.old_system_users)
    if old is None:
        return None
    with old:
        return old.read()


def _roots_own(path: Path) -> io.BufferedReader | None:
    """PATH opened for reading if it is a regular file of root's that nobody else could have
    written (not a link, one name only), else None. Anything else there is set aside as
    `PATH.untrusted` (said on stderr), never read: the state folder may be the hub's
    account's, which could have put it there, and a later step (take_back's chown) must not
    make it look like root's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        fd = -1
    if fd >= 0:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022 \
                and info.st_nlink == 1:
            return io.BufferedReader(io.FileIO(fd, "rb"))
        os.close(fd)
    aside = path.with_name(path.name + ".untrusted")
    os.replace(path, aside)  # the name itself, never what a link points to
    print(f"teamhub: {path} is not a file of root's alone: not used, set aside as {aside}",
          file=sys.stderr)
    return None
