"""A private /tmp and /dev/shm for one process tree, through a mount namespace of its own.

Plain OS code through libc (Python 3.11 has no os.unshare). Meant to be called in a
freshly forked server process while it is still root, before it drops privileges.
"""

from __future__ import annotations

import ctypes
import os
import stat
from typing import Any

from ..errors import NamespaceError

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MS_BIND = 0x1000
SHM = "/dev/shm"



def _libc() -> ctypes.CDLL:
    # The interpreter's own C library: ctypes.util.find_library runs `ldconfig -p` in a
    # subprocess, in every server being started (~1 MB of its memory, and a fork).
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise NamespaceError(
            f"{what} failed ({os.strerror(err)})",
            "a private /tmp and /dev/shm need root and "
            "mount namespaces: run teamhub as root, or turn them off with `teamhub config set "
            "limits.private_tmp false` and `teamhub config set spawner.shm_size shared`"
        )


def private_mounts(tmp: str | None = None, shm_size: int | None = None,
                   devices: dict[str, Any] | None = None) -> None:
    """Give the calling process a mount namespace of its own.

    TMP (a real folder the caller made 0700 for the user) is bound on /tmp.
    SHM_SIZE (bytes) mounts a fresh tmpfs of that size on /dev/shm: the user's
    shared memory and POSIX semaphores are theirs alone, can fill only their
    own, and vanish with the namespace, when the last process in it ends.
    Mounts made outside afterwards still reach the process (slave
    propagation); nothing it mounts reaches anybody else.
    DEVICES (`{"hide": [...], "mask": [...], "cover": file}`) covers each device
    node in `hide` with COVER, a root-owned empty file of mode 0000, so opening it
    fails (EACCES) for anyone but root, and mounts an empty read-only tmpfs on each
    folder in `mask` (the driver's /proc entries of GPUs it must not see). The
    process cannot undo either: it is not root, and mounts inherited into a
    namespace a user makes are locked together.
    """
    if tmp is not None:
        info = os.lstat(tmp)
        if not stat.S_ISDIR(info.st_mode):
            raise NamespaceError(f"private /tmp source {tmp} is not a folder")
    if shm_size is not None and not os.path.isdir(SHM):
        raise NamespaceError(f"{SHM} does not exist here",
                             "set `teamhub config set "
                             "spawner.shm_size shared`")
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None), "making / a slave mount")
    if tmp is not None:
        _check(libc.mount(tmp.encode(), b"/tmp", None, MS_BIND, None),
               f"bind-mounting {tmp} on /tmp")
    if shm_size is not None:
        options = f"size={int(shm_size)},mode=1777".encode()
        _check(libc.mount(b"tmpfs", SHM.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options),
               f"mounting a {shm_size}-byte tmpfs on {SHM}")
    if devices:
        _hide_devices(libc, devices)


def ensure_cover(path: str) -> str:
    """PATH as a root-owned empty regular file of mode 0000 (made if missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NamespaceError(f"{path} is not a regular file", "remove it")
        os.ftruncate(fd, 0)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0)
    finally:
        os.close(fd)
    return path


def _hide_devices(libc: ctypes.CDLL, devices: dict[str, Any]) -> None:
    cover = str(devices.get("cover") or "")
    info = os.lstat(cover) if cover else None
    if info is None or not stat.S_ISREG(info.st_mode) or info.st_uid != 0 \
            or stat.S_IMODE(info.st_mode) != 0 or info.st_size:
        raise NamespaceError(f"device cover {cover!r} must be a root-owned empty file of "
                             "mode 0000")
    for node in devices.get("hide") or []:
        if os.path.lexists(node):
            _check(libc.mount(cover.encode(), str(node).encode(), None, MS_BIND, None),
                   f"covering {node}")
    for folder in devices.get("mask") or []:
        if os.path.isdir(folder):
            _check(libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs",
                              MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=555"),
                   f"masking {folder}")


def private_tmp(path: str) -> None:
    """Give the calling process a mount namespace of its own whose /tmp is PATH."""
    private_mounts(tmp=path)


def probe(shm_size: int | None = 1 << 20) -> str | None:
    """None if this machine lets root give a server private mounts; else why not.

    Tried in a throw-away child (a mount namespace cannot be left again), for
    start-up checks: containers without CAP_SYS_ADMIN cannot do it, and every
    server start would fail there.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        try:
            private_mounts(shm_size=shm_size)
            os.write(write, b"ok")
        except (NamespaceError, OSError) as exc:
            os.write(write, str(exc).encode()[:4000])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        answer = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    return None if answer == "ok" else answer or "the probe process died"
