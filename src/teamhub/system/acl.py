"""POSIX ACL plumbing for shared folders: plain setfacl/getfacl/chown, nothing of JupyterHub.

Every change is applied recursively with `-P` (physical walk): a symlink that a
user plants inside a shared folder (say, to /etc/shadow) is never followed, so
root's setfacl/chown can only ever touch what really lies inside the folder.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..errors import AclError

READ = "r-X"
WRITE = "rwX"

# The folder itself: root-owned, setgid (new files get group root, whose ACL
# entry is ---), nothing for "other"; the named-user ACL entries are the only way in.
FOLDER_MODE = 0o2770



def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise AclError(
            f"cannot run {argv[0]}: {exc.strerror}", "install the `acl` package (apt install acl)"
        ) from None
    if proc.returncode != 0:
        raise AclError(
            f"{' '.join(argv[:2])} ... failed: {proc.stderr.strip() or proc.returncode}",
            "check that the filesystem supports ACLs (mount option `acl`) and run as root"
        )
    return proc.stdout


def acl_spec(entries: Mapping[str, str]) -> str:
    """The full `setfacl --set` text: owner, named users (access and default), nothing else.

    The mask is set explicitly to rwX (access and default) so that a file created
    with restrictive mode bits cannot silently cap named users below their grant.
    """
    parts = ["u::rwX", "g::---", "o::---", "m::rwX",
             "d:u::rwX", "d:g::---", "d:o::---", "d:m::rwX"]
    for name, perms in sorted(entries.items()):
        if perms not in (READ, WRITE):
            raise ValueError(f"permissions must be {READ!r} or {WRITE!r}, not {perms!r}")
        parts += [f"u:{name}:{perms}", f"d:u:{name}:{perms}"]
    return ",".join(parts)


def apply(folder: Path, entries: Mapping[str, str], *, owner_root: bool = False) -> None:
    """Make FOLDER's ACLs (recursively, default ACLs on every directory) exactly ENTRIES.

    ENTRIES maps Linux account names to READ or WRITE. Anything else (stray
    entries, chmod -R 777 tampering) is replaced. OWNER_ROOT also hands every
    file to root, so that no creator keeps write access through ownership
    (archived folders).
    """
    os.chown(folder, 0, 0, follow_symlinks=False)
    if owner_root:
        _run(["chown", "-R", "-h", "-P", "root:root", str(folder)])
    _run(["setfacl", "-R", "-P", "--set", acl_spec(entries), str(folder)])
    # setfacl rewrote the mode bits; put the setgid bit (and 0770) back on the top.
    os.chmod(folder, FOLDER_MODE)


def grant(folder: Path, name: str, perms: str) -> None:
    """Add or change one user's entries everywhere inside FOLDER, leaving others alone."""
    if perms not in (READ, WRITE):
        raise ValueError(f"permissions must be {READ!r} or {WRITE!r}, not {perms!r}")
    _run(["setfacl", "-R", "-P", "-m", f"u:{name}:{perms},d:u:{name}:{perms}", str(folder)])


def revoke(folder: Path, name: str) -> None:
    """Strip NAME's access and default entries from FOLDER and everything inside it."""
    _run(["setfacl", "-R", "-P", "-x", f"u:{name},d:u:{name}", str(folder)])


def named_users(path: Path, *, default: bool = False) -> dict[str, str]:
    """The named-user entries of PATH's access (or default) ACL: {name: 'rwx'-style}."""
    out = _run(["getfacl", "-p", "-c", "-E", *(["-d"] if default else []), str(path)])
    found: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.strip().split(":")
        if default and parts and parts[0] == "default":
            parts = parts[1:]
        if len(parts) == 3 and parts[0] == "user" and parts[1]:
            found[parts[1]] = parts[2]
    return found


def disown(folder: Path, owner: str | int) -> None:
    """Hand every file OWNER (a name, or a uid) owns inside FOLDER to root.

    Ownership outlives ACL entries: the owner of a file may chmod it and
    setfacl it (re-share it with anyone) whatever its ACL says, and a user who
    lost access but still owned a file could keep reading it through a hard
    link planted elsewhere. chown's own tree walk (-P, fd-relative) is used so
    a swapped-in symlink cannot redirect it.
    """
    spec = f"+{owner}" if isinstance(owner, int) else owner  # +N: a uid, never a name
    _run(["chown", "-R", "-h", "-P", f"--from={spec}", "root:root", str(folder)])


def owners(folder: Path) -> set[int]:
    """The uids that own FOLDER or anything inside it; symlinks are never followed."""
    found = {os.lstat(folder).st_uid}
    # fwalk works relative to directory fds, so a folder swapped for a symlink
    # while we walk is looked at, not gone through.
    for _path, dirs, files, dir_fd in os.fwalk(folder):
        for name in dirs + files:
            try:
                found.add(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_uid)
            except FileNotFoundError:
                continue  # removed while we walked
    return found


def disown_all_but(folder: Path, keep: set[int], *, rounds: int = 5) -> None:
    """Hand everything inside FOLDER not owned by a uid in KEEP (or root) to root.

    Called after the ACLs no longer give those users write access: while a
    user still owns a folder they can create files in it, so a walk can miss
    files made during it; a few rounds settle it (once they own no folder,
    they can create nothing).
    """
    for _ in range(rounds):
        stale = owners(folder) - keep - {0}
        if not stale:
            return
        for uid in sorted(stale):
            disown(folder, uid)
    stale = owners(folder) - keep - {0}
    if stale:
        raise AclError(f"files in {folder} keep being created by uid(s) "
                       f"{', '.join(map(str, sorted(stale)))} while their write access is "
                       "taken away", "stop their processes and run `teamhub project repair`")
