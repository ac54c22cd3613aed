"""Folders and files root makes for one account's server: never through a link, never
where anyone but root could have swapped something in.

Used by the spawner while the hub is root, and by the root helper for the hub's account
(teamhub.spawners.rootdoor), which may not make them itself.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..errors import PrivateFolderError


def root_only_folder(root: Path, mode: int = 0o777) -> None:
    """ROOT as a folder (made with MODE if missing) that only root can write: users' private
    folders are made in it, and a user who could write there could swap them for links."""
    root.mkdir(mode=mode, parents=True, exist_ok=True)
    info = os.lstat(root)
    if info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o022 or not stat.S_ISDIR(info.st_mode):
        raise PrivateFolderError(f"{root} must be a root-owned folder that only root can write",
                                 f"`chown root: {root}` and `chmod go-w {root}`")


def fresh_folder(folder: Path, uid: int, gid: int) -> None:
    """FOLDER as an empty folder only UID can enter (nothing left from an earlier owner)."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(mode=0o700)
    os.chown(folder, uid, gid)
    os.chmod(folder, 0o700)


def open_log(path: Path) -> int:
    """PATH opened for appending as a plain file of its own (made 0600 if missing): a link
    placed there by whoever can write its folder makes root write nowhere else."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise PrivateFolderError(f"{path} is not a plain file of its own", f"remove {path}")
    return fd
