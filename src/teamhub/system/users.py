"""The Linux accounts teamhub creates for hub users, and only those.

A registry file (JSON, root-only) lists every account teamhub created with its
uid. It is the only proof that an account is teamhub's: GECOS can be changed by
the user (chfn) and names can collide with accounts made by hand, so neither is
trusted. teamhub never runs a hub user as, kills the processes of, or deletes
an account that is not in the registry with the same uid.
"""

from __future__ import annotations

import fcntl
import grp
import json
import os
import pwd
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SystemUserError
from .names import LINUX_NAME_RE
from .processes import end_processes

LOGIN_DEFS = Path("/etc/login.defs")
DEFAULT_UID_MIN = 1000
_USERADD_NAME_IN_USE = 9  # useradd(8): "username or group name already in use"


@dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


def lookup(name: str) -> SystemUser | None:
    """The Linux account NAME, or None if there is none."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return SystemUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_shell)


def uid_min() -> int:
    """UID_MIN from /etc/login.defs: uids below it belong to root and system services."""
    try:
        lines = LOGIN_DEFS.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return DEFAULT_UID_MIN
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "UID_MIN":
            try:
                return int(parts[1], 0)
            except ValueError:
                break
    return DEFAULT_UID_MIN


# --- registry -------------------------------------------------------------------


@contextmanager
def _locked(registry: Path) -> Iterator[None]:
    """Hold the registry's lock: the hub and the CLI may change it at the same time."""
    _make_parent(registry)
    lock = registry.with_name(registry.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _make_parent(registry: Path) -> None:
    if not registry.parent.is_dir():
        registry.parent.mkdir(parents=True, mode=0o700, exist_ok=True)


def parse_registry(text: str, registry: Path) -> dict[str, dict[str, Any]]:
    """The registry's entries from TEXT (the file REGISTRY's), or why not."""
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("uid"), int) for v in data.values()
    ):
        raise SystemUserError(
            f"the teamhub account registry {registry} is damaged (expected a JSON object "
            '{"name": {"uid": N, "home": "..."}})', 'restore it from a backup or repair it by hand'
        )
    return data


def add_entries(registry: Path, entries: dict[str, dict[str, Any]]) -> list[str]:
    """Add ENTRIES (another registry's: an older install's, rootfiles.migrate) to REGISTRY,
    under its lock; an account REGISTRY knows already keeps its own entry. The names added."""
    with _locked(registry):
        current = _read(registry)
        added = [name for name in sorted(entries) if name not in current]
        if added or not registry.exists():
            _write(registry, {**current, **{name: entries[name] for name in added}})
        return added


def _read(registry: Path) -> dict[str, dict[str, Any]]:
    try:
        st = registry.stat()
        text = registry.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SystemUserError(
            f"cannot read the teamhub account registry {registry}: {exc.strerror}",
            "run this as root"
        ) from None
    # Whoever can write the registry can make teamhub adopt, kill or delete an
    # account, so a file others could have written is not believed. Root's is believed by
    # an unprivileged hub too (it reads it through its group: see `share_with_group`).
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise SystemUserError(
            f"the teamhub account registry {registry} is writable by other users or not "
            f"owned by uid {os.geteuid()}",
            f"check its contents, then `chown root: {registry}` "
            f"and `chmod 600 {registry}`"
        )
    return parse_registry(text, registry)


def _write(registry: Path, data: dict[str, dict[str, Any]]) -> None:
    """Replace the registry atomically, so a crash leaves the old or the new file."""
    _make_parent(registry)
    try:
        old = os.lstat(registry)
        group, mode = old.st_gid, stat.S_IMODE(old.st_mode) & 0o640
    except FileNotFoundError:
        # In root's folder with the hub's account's group (hub.unprivileged,
        # rootfiles.ensure_root_dir): that group reads it.
        folder = os.stat(registry.parent)
        group, mode = (folder.st_gid, 0o640) if folder.st_gid != 0 else (-1, 0o600)
    fd, tmp = tempfile.mkstemp(prefix=f".{registry.name}.", dir=registry.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # Kept as share_with_group left it (readable by the hub's group, never writable).
            os.fchown(f.fileno(), -1, group)
            os.fchmod(f.fileno(), mode | 0o600)
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, registry)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def share_with_group(registry: Path, gid: int) -> None:
    """Let group GID read the registry (an unprivileged hub's own group: its pages ask
    whether teamhub made an account); it stays root's to write."""
    try:
        # Never through a link: the folder is the hub's account's.
        fd = os.open(registry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fchown(fd, 0, gid)
        os.fchmod(fd, 0o640)
    finally:
        os.close(fd)


def is_managed(name: str, *, registry: Path) -> bool:
    """Whether teamhub created (and so may use or remove) the Linux account NAME."""
    return name in _read(registry)


# --- checks ---------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not LINUX_NAME_RE.fullmatch(name):
        raise SystemUserError(
            f"{str(name)[:40]!r} is not a valid Linux account name",
            "use up to 32 of "
            "a-z, 0-9, '_', '-' starting with a letter or '_'"
        )


def _foreign(name: str) -> SystemUserError:
    return SystemUserError(
        f"Linux account {name!r} already exists and was not created by teamhub",
        "teamhub "
        "never runs hub users as existing accounts. Rename the hub user or remove/rename "
        "the Linux account"
    )


def _check_ours(user: SystemUser, entries: dict[str, dict[str, Any]]) -> None:
    if user.uid < uid_min():
        raise SystemUserError(
            f"Linux account {user.name!r} (uid {user.uid}) is root or a system account",
            f"teamhub only uses accounts with uid >= {uid_min()}. Rename the hub user"
        )
    entry = entries.get(user.name)
    if entry is None or entry.get("uid") != user.uid:
        raise _foreign(user.name)


def check_usable(name: str, *, registry: Path) -> SystemUser:
    """The account NAME if teamhub may run a server as it, else SystemUserError."""
    _check_name(name)
    user = lookup(name)
    if user is None:
        raise SystemUserError(
            f"Linux account {name!r} does not exist",
            "start the server again to have "
            "teamhub create it"
        )
    _check_ours(user, _read(registry))
    return user


# --- create and remove ----------------------------------------------------------


# useradd/userdel give up at once, "cannot lock /etc/passwd; try again later", while any
# other program (an admin's adduser, another teamhub command, a package's postinst)
# holds the shadow-utils lock; a user's first server start must not fail for that.
_LOCK_BUSY = "try again later"
_LOCK_WAIT_SECONDS = 30.0


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    pause = 0.05
    while True:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise SystemUserError(f"cannot run {argv[0]}: {exc.strerror}",
                                  "install the "
                                  "`passwd` package and run as root") from None
        if (proc.returncode == 0 or _LOCK_BUSY not in proc.stderr
                or time.monotonic() > deadline):
            return proc
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _userdel(name: str, *, remove_home: bool) -> subprocess.CompletedProcess[str]:
    return _run(["userdel", *(["--remove"] if remove_home else []), name])


def ensure_system_user(name: str, *, registry: Path, home_root: Path, shell: str) -> SystemUser:
    """The teamhub account NAME, created (home HOME_ROOT/NAME, mode 0700) if missing."""
    _check_name(name)
    with _locked(registry):
        entries = _read(registry)
        existing = lookup(name)
        if existing is not None:
            _check_ours(existing, entries)
            return existing
        # A registry entry without an account means it was deleted by hand;
        # it is recreated below and the entry overwritten with the new uid.
        home = home_root / name
        if not home_root.is_dir():
            try:
                home_root.mkdir(parents=True, exist_ok=True)
                os.chmod(home_root, 0o755)
            except OSError as exc:
                raise SystemUserError(
                    f"cannot create the home root {home_root} ({exc.strerror})",
                    "check "
                    "paths.home_root (`teamhub config show`)"
                ) from None
        home_existed = os.path.lexists(home)
        proc = _run(["useradd", "--create-home", "--home-dir", str(home), "--shell", shell,
                     "--user-group", "--comment", "teamhub user", name])
        if proc.returncode == _USERADD_NAME_IN_USE:
            # Someone else's account or group got the name meanwhile: nothing of
            # ours to roll back, and theirs must not be touched.
            raise SystemUserError(
                f"useradd could not create Linux account {name!r}: {proc.stderr.strip()}",
                "rename the hub user or remove/rename the existing account or group"
            )
        try:
            if proc.returncode != 0:
                # useradd can fail after writing the account (e.g. home not
                # creatable, exit 12); the cleanup below removes it again.
                raise SystemUserError(
                    f"useradd could not create Linux account {name!r}: "
                    f"{proc.stderr.strip() or f'exit status {proc.returncode}'}"
                )
            user = lookup(name)
            if user is None or user.uid < uid_min():
                raise SystemUserError(
                    f"useradd did not create Linux account {name!r} with a uid >= {uid_min()}",
                    "check UID_MIN in /etc/login.defs"
                )
            st = os.lstat(home)
            # A home left behind earlier (keep_home, or made by hand) must really be
            # this account's: chmod follows symlinks, and a foreign owner would
            # leave the new user in a home they do not own.
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != user.uid:
                raise SystemUserError(
                    f"{home} already exists and is not a folder owned by the new account "
                    f"{name!r}", f"move it away (or `chown -R {name}: {home}`) and try again"
                )
            os.chmod(home, 0o700)
            entries[name] = {"uid": user.uid, "home": str(home)}
            _write(registry, entries)
        except BaseException as exc:
            if lookup(name) is not None:
                # Never delete a home that was there before useradd ran.
                _userdel(name, remove_home=not home_existed)
            if isinstance(exc, OSError):
                raise SystemUserError(
                    f"could not set up Linux account {name!r} ({exc})",
                    "it was removed again. "
                    "Fix the cause and start the server again"
                ) from exc
            raise
        return user


def remove_system_user(name: str, *, registry: Path, keep_home: bool = False) -> None:
    """End the processes of teamhub account NAME, delete it (and its home) and forget it."""
    _check_name(name)
    with _locked(registry):
        entries = _read(registry)
        if name not in entries:
            raise SystemUserError(
                f"Linux account {name!r} was not created by teamhub (it is not in {registry})",
                "teamhub only removes accounts it created. Remove it with userdel yourself "
                "if that is what you want"
            )
        user = lookup(name)
        reason = ""
        if user is not None:
            _check_ours(user, entries)
            # Only the home teamhub made is deleted, not whatever the passwd
            # entry was pointed at since (usermod -d).
            ours = user.home == entries[name].get("home")
            end_processes(user.uid)
            proc = _userdel(name, remove_home=not keep_home and ours)
            reason = (proc.stderr.strip() or f"exit status {proc.returncode}") if ours else (
                f"it is not the home teamhub created, {entries[name].get('home')}")
            if lookup(name) is not None:
                raise SystemUserError(
                    f"userdel could not remove Linux account {name!r}: {reason}",
                    "end its processes and try again"
                )
        del entries[name]
        _write(registry, entries)
    # The account is gone and forgotten either way; a home userdel could not
    # delete is reported so it does not silently linger with the old uid.
    if user is not None and not keep_home and os.path.lexists(user.home):
        raise SystemUserError(
            f"Linux account {name!r} was removed but its home {user.home} was not "
            f"({reason})", "remove it by hand"
        )


def account_problem(name: str, *, min_uid: int, allowed_groups: set[str]) -> str | None:
    """Why Linux account NAME may not use teamhub in PAM mode, or None if it may: an
    ordinary account (uid at least MIN_UID) in one of ALLOWED_GROUPS when any are set."""
    if not LINUX_NAME_RE.fullmatch(name):
        return "not a Linux user name"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return "no such Linux account"
    if entry.pw_uid == 0 or entry.pw_uid < min_uid:
        return f"uid {entry.pw_uid} is a system account (below {min_uid})"
    if allowed_groups:
        gids = set(os.getgrouplist(name, entry.pw_gid))
        names = set()
        for gid in gids:
            try:
                names.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                pass
        if not names & allowed_groups:
            return "in none of the allowed groups"
    return None
