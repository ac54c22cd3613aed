"""Locks only root can take, with a bounded wait that names whoever holds them.

A lock file that an ordinary user can open is a lock they can take: flock()
needs no write access, so a world-readable lock file lets anyone stall every
program that waits on it. These live in a root-only folder (0700), are 0600,
and are opened without following symlinks. Root-only, or rather the owner's only:
in the state folder of an unprivileged hub (hub.unprivileged), which belongs to the
hub's account, the locks are that account's, so that the hub (not root) and the root
CLI can both take them. Nothing here knows about JupyterHub or environments.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import LockError

POLL_S = 0.2
# Say who we wait for once the wait is long enough for a person to wonder.
TELL_AFTER_S = 1.0


def owner(folder: Path) -> tuple[int, int]:
    """(uid, gid) the locks in FOLDER's lock folder belong to: this process's, except that
    root's in another account's folder (the state folder of an unprivileged hub: the CLI)
    are that account's, whose hub takes them too."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    st = os.stat(folder)
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else (0, 0)


def private_dir(path: Path) -> Path:
    """Make PATH a real folder owned by root (or see `owner`), mode 0700 (creating it if
    missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise LockError(f"{path} is not a folder (a symlink?)", "move it away and try again")
    uid, gid = owner(path.parent)
    if st.st_uid != uid or st.st_gid != gid:
        os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700, follow_symlinks=False)
    return path


def holder(path: Path) -> tuple[int, str] | None:
    """(pid, command line) of the process holding a flock on PATH, from /proc/locks."""
    try:
        st = os.stat(path, follow_symlinks=False)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 6:
            continue  # "->": a process waiting for the lock, not holding it
        try:
            pid = int(parts[4])
            major, minor, inode = parts[5].split(":")
            same = (int(inode) == st.st_ino and int(major, 16) == os.major(st.st_dev)
                    and int(minor, 16) == os.minor(st.st_dev))
        except ValueError:
            continue
        if same and pid > 0:
            return pid, _command(pid)
    return None


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    # One line whatever the arguments hold (a `python -c` script has newlines).
    text = " ".join(raw.decode(errors="replace").replace("\0", " ").split())
    return text[:200] or "?"


def describe(path: Path) -> str:
    found = holder(path)
    if found is None:
        return "another process"
    return f"pid {found[0]} ({found[1]})"


@contextmanager
def exclusive(path: Path, timeout: float,
              waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on PATH (its folder root-only); wait at most TIMEOUT seconds.

    Raises LockError naming the holder when the wait runs out; WAITING (if
    given) is told once whom we wait for.
    """
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LockError(f"{path} is not a regular file", "move it away and try again")
        uid, gid = owner(path.parent.parent)
        if st.st_uid != uid or stat.S_IMODE(st.st_mode) != 0o600:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o600)
        start = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= timeout:
                    raise LockError(f"{path} is still held by {describe(path)} after "
                                    f"{timeout:g} s") from None
                if waiting is not None and not told and waited >= TELL_AFTER_S:
                    waiting(f"waiting for {describe(path)} to release {path} "
                            f"(at most {timeout:g} s)")
                    told = True
                time.sleep(POLL_S)
        yield
    finally:
        os.close(fd)
