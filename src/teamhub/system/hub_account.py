"""The hub's own unprivileged account, and root handing itself over to it for good.

OS plumbing (no JupyterHub): `install.sh` and root `teamhub up` make the account; `up`
gives it the state folder and then drops root (`drop_to`) before JupyterHub starts.
Run as `python -m teamhub.system.hub_account NAME HOME` it makes the account (install.sh).
"""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

from ..errors import SystemUserError
from . import users
from .users import SystemUser

NOLOGIN = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(p)),
               "/bin/false")
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_NET_BIND_SERVICE = 10


def ensure(name: str, home: Path) -> SystemUser:
    """The system account NAME (system uid, its own group, no login shell, home HOME, which
    is not made here: it is the state folder), made if missing. An account of that name
    that is root or a person's (uid at or above 1000) is refused, never taken over."""
    account = users.lookup(name)
    if account is None:
        proc = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
             str(home), "--shell", NOLOGIN, "--comment", "teamhub hub", name],
            capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        account = users.lookup(name)
        if account is None:
            raise SystemUserError(
                f"useradd could not create the hub's account {name!r}: "
                f"{proc.stderr.strip() or f'exit status {proc.returncode}'}",
                "create it by hand (`useradd --system --user-group --no-create-home "
                f"--shell {NOLOGIN} {name}`) or set hub.account to another name")
    if account.uid == 0 or account.uid >= 1000:
        raise SystemUserError(
            f"Linux account {name!r} (uid {account.uid}) is not a system account: the hub "
            "will not run as it", "set hub.account to another name "
            "(`teamhub config set hub.account NAME`)")
    return account


def give_tree(root: Path, uid: int, gid: int, keep: Collection[Path] = ()) -> None:
    """ROOT and everything below it owned by UID:GID, folders 0700, files 0600 (sockets and
    links left as they are, links never followed); KEEP (root's own files there) stay as
    they are."""
    kept = {str(p) for p in keep}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            path = os.path.join(folder, name) if name else folder
            if path in kept:
                continue
            try:
                # Through a descriptor opened without following links: what is changed is
                # what was looked at.
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue  # a link, a socket, or gone meanwhile
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, 0o700 if stat.S_ISDIR(info.st_mode) else 0o600)
            finally:
                os.close(fd)
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in kept]


def _prctl(*args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(*[ctypes.c_ulong(a) for a in args], *[ctypes.c_ulong(0)] * (5 - len(args))):
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _last_cap() -> int:
    return int(Path("/proc/sys/kernel/cap_last_cap").read_text())


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _clear_inheritable() -> None:
    """capset(2) with every set empty: what setuid leaves, the inheritable set, goes too."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two data structs
    data = (_CapData * 2)()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(header), data):
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def drop_to(account: SystemUser) -> None:
    """Become ACCOUNT for good: only its own group, its gid and uid (real, effective and
    saved), no capabilities in any set (the bounding set emptied first, so no program
    run later can regain one), no_new_privs (no setuid program either)."""
    for cap in range(_last_cap() + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([account.gid])
    os.setresgid(account.gid, account.gid, account.gid)
    # From root to another uid with KEEPCAPS off: the kernel clears permitted and effective.
    os.setresuid(account.uid, account.uid, account.uid)
    _clear_inheritable()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    os.environ.update(HOME=account.home, USER=account.name, LOGNAME=account.name)


def capabilities(pid: int | str = "self") -> dict[str, int]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of PID, as numbers."""
    caps = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            caps[key] = int(value.strip(), 16)
    return caps


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m teamhub.system.hub_account NAME HOME")
    try:
        account = ensure(sys.argv[1], Path(sys.argv[2]))
    except SystemUserError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"hub account {account.name} (uid {account.uid})")


if __name__ == "__main__":
    main()
