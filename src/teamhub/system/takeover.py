"""Root takes over a tree another account built, without ever following that account's
links (shared environment builds of an unprivileged hub: teamhub.envs.store).

The tree is walked by file descriptors only: every directory is opened with O_NOFOLLOW
and O_DIRECTORY below an already-taken directory, every entry is looked at with
`follow_symlinks=False` and opened with O_NOFOLLOW, and what is changed is what was
opened (fchown, fchmod). A directory is taken (root's, no group/other write) before its
entries are read, so the builder can no longer add, rename or swap entries in it while
root walks it. Refused (TakeoverError; the caller deletes the tree): anything that is not
a directory, regular file or symlink (fifo, socket, device), anything not owned by the
builder, a regular file with more than one hard link (it would be someone else's file
too). Kept, neutralised: setuid, setgid and sticky bits and group/other write are
stripped; symlinks are chowned with lchown and never followed.

`write_new` puts a new file into a taken tree the same way (no component followed, the
file created exclusively), for what root adds after the takeover.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import TakeoverError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
KEEP_BITS = 0o755  # no setuid/setgid/sticky, no group/other write


def take_over(path: Path, builder_uid: int) -> int:
    """Make the tree at PATH (a directory BUILDER_UID owns, in a folder only root can
    change) root's; the number of entries taken. TakeoverError on anything refused."""
    try:
        fd = os.open(path, DIR_FLAGS)
        try:
            return _take_dir(fd, str(path), builder_uid)
        finally:
            os.close(fd)
    except OSError as exc:  # e.g. ELOOP: a link where a directory was
        raise _refuse(str(exc.filename or path), exc.strerror or str(exc)) from None


def _refuse(where: str, why: str) -> TakeoverError:
    return TakeoverError(f"the build left {where}: {why}",
                         "nothing of it was used; check what the packages' build code does")


def _owned(st: os.stat_result, where: str, builder_uid: int) -> None:
    if st.st_uid != builder_uid:
        raise _refuse(where, f"owned by uid {st.st_uid}, not the builder's {builder_uid}")


def _take_dir(fd: int, where: str, builder_uid: int) -> int:
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(where, "not a directory")
    _owned(st, where, builder_uid)
    os.fchown(fd, 0, 0)
    os.fchmod(fd, stat.S_IMODE(st.st_mode) & KEEP_BITS | 0o555)  # shared: a+rx
    taken = 1
    with os.scandir(fd) as entries:
        names = [e.name for e in entries]
    for name in names:
        here = f"{where}/{name}"
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            _owned(st, here, builder_uid)
            os.chown(name, 0, 0, dir_fd=fd, follow_symlinks=False)
            taken += 1
        elif stat.S_ISDIR(st.st_mode):
            sub = os.open(name, DIR_FLAGS, dir_fd=fd)
            try:
                taken += _take_dir(sub, here, builder_uid)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            taken += _take_file(fd, name, here, builder_uid)
        else:
            raise _refuse(here, f"neither a directory, a regular file nor a symlink "
                                f"(mode {stat.filemode(st.st_mode)})")
    return taken


def _take_file(dir_fd: int, name: str, where: str, builder_uid: int) -> int:
    fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(where, "not a regular file")
        _owned(st, where, builder_uid)
        if st.st_nlink != 1:
            raise _refuse(where, f"a file with {st.st_nlink} hard links")
        os.fchown(fd, 0, 0)  # clears setuid/setgid too; the mode below makes sure
        mode = stat.S_IMODE(st.st_mode) & KEEP_BITS | 0o444  # shared: a+r, a+x if u+x
        os.fchmod(fd, mode | (0o111 if mode & 0o100 else 0))
    finally:
        os.close(fd)
    return 1


def open_nofollow_dir(path: Path, relative: str = "") -> int:
    """A descriptor of PATH/RELATIVE, a directory reached without following any link of
    RELATIVE (nor PATH itself)."""
    parts = [p for p in relative.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"bad relative path {relative!r}")
    fd = os.open(path, DIR_FLAGS)
    for part in parts:
        try:
            sub = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = sub
    return fd


def list_dir(top: Path, relative: str) -> list[str]:
    """Names in TOP/RELATIVE, reached as open_nofollow_dir does."""
    fd = open_nofollow_dir(top, relative)
    try:
        with os.scandir(fd) as entries:
            return sorted(e.name for e in entries)
    finally:
        os.close(fd)


def write_new(top: Path, relative: str, text: str, mode: int = 0o644) -> bool:
    """Create TOP/RELATIVE with TEXT, no component followed as a link and the file new
    (O_EXCL): False when something is there already (left as it is)."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"bad relative path {relative!r}")
    fd = open_nofollow_dir(top, "/".join(parts[:-1]))
    try:
        try:
            out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, mode, dir_fd=fd)
        except FileExistsError:
            return False
        try:
            os.write(out, text.encode())
            os.fchmod(out, mode)
        finally:
            os.close(out)
        return True
    finally:
        os.close(fd)
