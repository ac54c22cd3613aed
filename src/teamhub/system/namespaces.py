"""A private /tmp for one process tree, through a mount namespace of its own.

Plain OS code through libc (Python 3.11 has no os.unshare). Meant to be called in a
freshly forked server process while it is still root, before it drops privileges.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat

from ..errors import TeamhubError

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MS_BIND = 0x1000


class NamespaceError(TeamhubError):
    """A private /tmp could not be set up."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise NamespaceError(
            f"{what} failed ({os.strerror(err)}); private /tmp needs root and mount "
            "namespaces: run teamhub as root, or set `teamhub config set limits.private_tmp "
            "false`"
        )


def private_tmp(path: str) -> None:
    """Give the calling process a mount namespace of its own whose /tmp is PATH.

    PATH must already exist as a real folder (the caller creates it 0700 for the user).
    Mounts made outside afterwards still reach the process (slave propagation); nothing
    it mounts reaches anybody else.
    """
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NamespaceError(f"private /tmp source {path} is not a folder")
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None), "making / a slave mount")
    _check(libc.mount(path.encode(), b"/tmp", None, MS_BIND, None), f"bind-mounting {path} on /tmp")
