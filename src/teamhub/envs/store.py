"""Shared environments on disk: one folder per env, one venv per revision.

    <root>/<name>/teamhub-env.json   what the env is: groups, base Python, revisions
    <root>/<name>/revs/<n>/          a venv, built at its final path (venvs do not move)
    <root>/<name>/current -> revs/<n>
    <root>/<name>/logs/<n>.log       uv's output of each build (root only)
    <root>/.locks/envs.lock          held by every change (root only: see system/locks.py)
    <root>/.cache/                   uv's cache (root only: its lock files are 0666)
    <root>/.cache-build/             the builder's uv cache (0700, the builder's; below)

Every change builds a complete new revision from the recorded package list;
`current` is switched (os.replace of a new symlink, atomic) only after the
build succeeded and the new env imports ipykernel as an ordinary user. A
failed or interrupted build is deleted and `current` is left as it was.
Bytecode that the current revisions already have is reused (see bytecode.py):
most of a build's time is compiling, and most files are in an env already.

Who builds: root itself (the CLI), or a `Builder` (the root helper's builds for an
unprivileged hub: the hub's account). With a builder, root makes `revs/<n>` and hands it
to the builder; every step that runs uv or the new revision's python runs as the builder
(setpriv: its uid and gid, no other group, no_new_privs; umask 022; its own uv cache,
package files copied, not linked); once those processes ended, root takes the tree over
by file descriptors (system.takeover: nothing followed, fifos, foreign files and hard
links refused) and adds the `%pip` guard without following any link. Root runs nothing
of the tree: the import check runs as `nobody`. Bytecode is then all uv's (compiled as
the builder), none reused from the current revisions: those are root's, and the
builder could not hard-link them (protected_hardlinks).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import EnvError, LockError
from ..system import locks
from ..system.modes import share_read_only
from ..system.takeover import list_dir, open_nofollow_dir, take_over, write_new
from ..system.uv import Uv, world_usable
from .bytecode import compile_site, reusable
from .guard import MODULE, extension, guard_installed, stub

META = "teamhub-env.json"
_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
BASE_PACKAGES = ("ipykernel",)
# uv builds under this umask, so a new revision (and the cache files it links)
# is go-w from the start and the mode pass after it finds next to nothing to change.
BUILD_UMASK = 0o022
LOCK = Path(".locks") / "envs.lock"
OLD_LOCK = ".lock"  # world-readable lock of earlier versions: anyone could hold it

BUILD_CACHE = ".cache-build"  # a builder's uv cache, inside envs.root

Echo = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Builder:
    """An unprivileged account that runs uv and the new revision's python in a build."""

    uid: int
    gid: int
    setpriv: str = "setpriv"

    def command(self) -> tuple[str, ...]:
        return (self.setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--no-new-privs", "--")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise EnvError(f"invalid environment name {name[:40]!r}: use 1-32 of a-z, 0-9, '-', "
                       "'_', starting with a letter")
    return name


def _req_name(req: str) -> str:
    """The normalised project name of a requirement (`Foo_Bar>=1` → `foo-bar`)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else req.strip().lower()


def merge_packages(spec: list[str], added: list[str]) -> list[str]:
    """SPEC with ADDED requirements; a new requirement replaces one of the same project."""
    names = {_req_name(a) for a in added}
    return [s for s in spec if _req_name(s) not in names] + list(added)


def remove_packages(spec: list[str], removed: list[str]) -> list[str]:
    names = {_req_name(r) for r in removed}
    missing = names - {_req_name(s) for s in spec}
    if missing:
        raise EnvError(f"not in the environment's package list: {', '.join(sorted(missing))}")
    return [s for s in spec if _req_name(s) not in names]


def read_requirements(path: Path) -> list[str]:
    """Requirement lines of a requirements file (comments and blank lines dropped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise EnvError(f"cannot read {path}: {exc.strerror}") from None
    reqs = []
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise EnvError(f"{path}: only package lines are supported, not {line!r}")
        reqs.append(line)
    return reqs


def prune_plan(revisions: list[int], current: int, keep: int) -> list[int]:
    """Which revisions to delete: all but the newest KEEP, never CURRENT."""
    kept = sorted(revisions)[-keep:]
    return [r for r in sorted(revisions) if r not in kept and r != current]


def previous_revision(revisions: list[int], current: int) -> int:
    older = [r for r in sorted(revisions) if r < current]
    if not older:
        raise EnvError("there is no older revision to roll back to", "see `teamhub env history`")
    return older[-1]


def _write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class SharedEnvs:
    """The shared environments under ROOT, built with UV from BASE_PYTHON."""

    def __init__(self, root: Path, uv: Uv, base_python: str, keep: int = 3,
                 lock_timeout: float = 600, builder: Builder | None = None) -> None:
        self.root = root
        self.uv = uv
        self.builder = builder
        self._build_uv = dataclasses.replace(uv, umask=BUILD_UMASK)
        if builder is not None:
            self._build_uv = dataclasses.replace(self._build_uv, cache_dir=root / BUILD_CACHE,
                                                 prefix=builder.command())
        self.base_python = base_python
        self.keep = keep
        self.lock_timeout = lock_timeout

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK

    # -- reading ---------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if _NAME_RE.fullmatch(p.name) and (p / META).is_file())

    def meta(self, name: str) -> dict[str, Any]:
        path = self.root / check_name(name) / META
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise EnvError(f"environment {name!r} does not exist",
                           "see `teamhub env list`") from None

    def current_python(self, name: str) -> Path:
        return self.root / name / "current" / "bin" / "python"

    def revision(self, meta: dict[str, Any], rev: int) -> dict[str, Any]:
        for r in meta["revisions"]:
            if r["rev"] == rev:
                return r
        raise EnvError(f"environment {meta['name']!r} has no revision {rev}",
                       f"kept: {', '.join(str(r['rev']) for r in meta['revisions'])}")

    def current_spec(self, meta: dict[str, Any]) -> list[str]:
        return list(self.revision(meta, meta["current"])["packages"])

    # -- changing --------------------------------------------------------
    def make_private(self, cache: Path | None) -> None:
        """No lock file under ROOT that users can open: the old one goes, CACHE is 0700.

        Package files reach envs as hard links, which need no access to the
        cache folder; uv's lock files in it (0666) must be out of users' reach.
        """
        (self.root / OLD_LOCK).unlink(missing_ok=True)
        if cache is not None:
            locks.private_dir(cache)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One change at a time; only root can hold this lock, and nobody for ever."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.make_private(self.uv.cache_dir)
        try:
            with locks.exclusive(self.lock_path, self.lock_timeout,
                                 waiting=lambda line: print(line, file=sys.stderr)):
                yield
        except LockError as exc:
            raise EnvError(f"the shared environments are busy: {exc}",
                           "wait for that command "
                           "to finish (or stop it), then try again. Nothing was changed. "
                           "`teamhub config set envs.lock_timeout SECONDS` waits longer"
                           ) from None

    def create(self, name: str, packages: list[str], *, python: str | None = None,
               groups: list[str] | None = None, echo: Echo = print) -> dict[str, Any]:
        check_name(name)
        with self._locked():
            envdir = self.root / name
            if (envdir / META).exists():
                raise EnvError(f"environment {name!r} already exists", "use `teamhub env install`")
            shutil.rmtree(envdir, ignore_errors=True)  # leftovers of an interrupted create
            meta = {"name": name, "groups": sorted(groups or []),
                    "python": python or self.base_python, "created": time.time(),
                    "current": None, "revisions": []}
            envdir.mkdir()
            # Explicit, not through mkdir's mode: the hub (the console's builds) runs with
            # umask 077, and users' kernels must pass through.
            os.chmod(envdir, 0o755)
            try:
                return self._build(meta, packages, f"create {' '.join(packages)}".strip(), echo)
            except BaseException:
                shutil.rmtree(envdir, ignore_errors=True)
                raise

    def change(self, name: str, packages: list[str], action: str,
               echo: Echo = print) -> dict[str, Any]:
        with self._locked():
            return self._build(self.meta(name), packages, action, echo)

    def set_groups(self, name: str, groups: list[str]) -> None:
        with self._locked():
            meta = self.meta(name)
            meta["groups"] = sorted(groups)
            _write_json(self.root / name / META, meta)

    def rollback(self, name: str, rev: int | None = None) -> int:
        with self._locked():
            meta = self.meta(name)
            kept = [r["rev"] for r in meta["revisions"]]
            target = previous_revision(kept, meta["current"]) if rev is None else rev
            self.revision(meta, target)
            self._switch(self.root / name, target)
            meta["current"] = target
            _write_json(self.root / name / META, meta)
            return target

    def delete(self, name: str) -> None:
        with self._locked():
            self.meta(name)
            envdir = self.root / name
            # Hide it from kernels first (no META → not an env), then remove the files.
            (envdir / META).unlink()
            shutil.rmtree(envdir)

    def _compiled_sites(self, site: Path) -> list[Path]:
        """The site-packages of every env's current revision like SITE (same lib/pythonX.Y)."""
        return [self.root / n / "current" / site.relative_to(site.parents[2])
                for n in self.names()]

    def _hand_to_builder(self, target: Path) -> None:
        """TARGET (new, root's) and the builder's uv cache: the builder's."""
        assert self.builder is not None
        b = self.builder
        cache = self.root / BUILD_CACHE
        try:
            cache.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(cache)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, b.uid):
            raise EnvError(f"{cache} is not a folder of root's or the builder's",
                           f"remove it (`rm -rf {cache}`); it is only a cache")
        fd = open_nofollow_dir(cache)
        try:
            os.fchown(fd, b.uid, b.gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        os.chown(target, b.uid, b.gid, follow_symlinks=False)

    def _build_as_builder(self, target: Path, python: Path, name: str, packages: list[str],
                          log: Any, echo: Echo) -> None:
        """uv installs (and compiles) as the builder; root takes the tree over, then adds
        the `%pip` guard (guard.py) without following any link of the tree."""
        assert self.builder is not None
        self._build_uv.install(python, [*BASE_PACKAGES, *packages], log=log, echo=echo,
                               compile_bytecode=True)
        rev = target.name
        echo(f"==> [{name} rev {rev}] taking over the built tree (root's from here)")
        taken = take_over(target, self.builder.uid)
        log.write(f"taken over: {taken} entries\n")
        versions = [v for v in list_dir(target, "lib") if re.fullmatch(r"python3\.\d+", v)]
        if len(versions) != 1:
            raise EnvError(f"the new revision has {len(versions)} lib/python3.* folders")
        write_new(target, f"lib/{versions[0]}/site-packages/{MODULE}.py", extension(name))
        for tool in ("pip", "pip3"):
            write_new(target, f"bin/{tool}", stub(name), 0o755)

    def _switch(self, envdir: Path, rev: int) -> None:
        tmp = envdir / ".current.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(f"revs/{rev}", tmp)
        os.replace(tmp, envdir / "current")

    def _build(self, meta: dict[str, Any], packages: list[str], action: str,
               echo: Echo) -> dict[str, Any]:
        name = meta["name"]
        envdir = self.root / name
        revs = envdir / "revs"
        logs = envdir / "logs"
        revs.mkdir(exist_ok=True)
        os.chmod(revs, 0o755)  # whatever the caller's umask (see create)
        logs.mkdir(mode=0o700, exist_ok=True)
        on_disk = [int(p.name) for p in revs.iterdir() if p.name.isdigit()]
        known = [r["rev"] for r in meta["revisions"]]
        for stale in set(on_disk) - set(known):  # an interrupted build's remains
            shutil.rmtree(revs / str(stale), ignore_errors=True)
        rev = max([0, *on_disk, *known]) + 1
        target = revs / str(rev)
        log_path = logs / f"{rev}.log"
        with open(log_path, "w") as log:
            os.chmod(log_path, 0o600)
            try:
                echo(f"==> [{name} rev {rev}] creating venv from {meta['python']}")
                # Root-only until built: uv's own lock file in it is 0666.
                target.mkdir(mode=0o700)
                if self.builder is not None:
                    self._hand_to_builder(target)
                self._build_uv.venv(target, meta["python"], log=log, echo=echo)
                python = target / "bin" / "python"
                if self.builder is None and not world_usable(python):
                    raise EnvError(f"the interpreter {os.path.realpath(python)} cannot be run by "
                                   "ordinary users", "use a system-wide Python")
                echo(f"==> [{name} rev {rev}] installing {', '.join(packages) or '(base only)'}")
                if self.builder is not None:
                    self._build_as_builder(target, python, name, packages, log, echo)
                else:
                    with guard_installed(python, name) as site:
                        # Nothing to reuse (the first env): uv compiles, as plain uv would.
                        index = reusable(site, self._compiled_sites(site))
                        self._build_uv.install(python, [*BASE_PACKAGES, *packages], log=log,
                                               echo=echo, compile_bytecode=not index)
                    echo(f"==> [{name} rev {rev}] compiling bytecode")
                    reused = compile_site(python, site, index)
                    echo(f"{reused} compiled modules reused from the current revisions")
                    share_read_only(target)
                _private_lock(target)
                echo(f"==> [{name} rev {rev}] checking that users can import ipykernel")
                version = _check_kernel(python, log)
            except BaseException as exc:
                log.write(f"\nbuild failed: {exc!r}\n")
                shutil.rmtree(target, ignore_errors=True)
                if isinstance(exc, EnvError):
                    raise EnvError(f"{exc}\n(build log: {log_path}; the environment's current "
                                   "revision is unchanged)") from None
                raise
        meta["revisions"].append({"rev": rev, "packages": list(packages), "action": action,
                                  "created": time.time(),
                                  "python_version": version})
        self._switch(envdir, rev)
        meta["current"] = rev
        for old in prune_plan([r["rev"] for r in meta["revisions"]], rev, self.keep):
            shutil.rmtree(revs / str(old), ignore_errors=True)
            meta["revisions"] = [r for r in meta["revisions"] if r["rev"] != old]
        _write_json(envdir / META, meta)
        echo(f"==> [{name}] revision {rev} is now current")
        return meta


def _private_lock(target: Path) -> None:
    """uv's lock file in TARGET 0600 (readable, anyone could flock it); never a link's."""
    try:
        fd = os.open(target / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return  # none, or not a plain file (a link: ELOOP)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _check_kernel(python: Path, log: Any) -> str:
    """The env must import ipykernel; as root, checked as `nobody` (proves it is readable).

    Returns the env's Python version, which the same run prints.
    """
    cmd = [str(python), "-c", "import sys, ipykernel; print(sys.version.split()[0])"]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
    log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise EnvError("the new environment cannot import ipykernel: "
                       + (proc.stderr.strip().splitlines() or ["?"])[-1])
    return (proc.stdout.strip().splitlines() or [""])[-1]
