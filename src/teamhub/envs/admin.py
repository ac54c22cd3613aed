"""Glue between settings, the account store and the shared envs: used by the CLI and `up`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..accounts.groups import GroupStore
from ..accounts.store import AccountStore
from ..errors import EnvError
from ..paths import Paths
from ..settings import Settings
from ..system.uv import Uv
from . import visibility
from .store import Echo, SharedEnvs, merge_packages, remove_packages

CACHE = ".cache"  # uv's cache, inside envs.root


def shared_envs(settings: Settings) -> SharedEnvs:
    paths = Paths.from_settings(settings)
    root = Path(settings["envs.root"])
    uv = paths.runtime_dir / "bin" / "uv"
    if not uv.exists():
        raise EnvError(f"uv is missing from the runtime ({uv})", "re-run install.sh")
    # The cache sits inside envs.root: root-owned, and on the same filesystem so
    # that uv hard-links package files instead of copying them into each env.
    return SharedEnvs(root, Uv(uv, root / CACHE), str(paths.runtime_python),
                      keep=settings["envs.keep_revisions"],
                      lock_timeout=settings["envs.lock_timeout"])


def group_members(settings: Settings) -> dict[str, list[str]]:
    paths = Paths.from_settings(settings)
    if not paths.store_exists:
        return {}
    return GroupStore(AccountStore(paths.accounts_db, paths.db_url)).list()


def check_groups(settings: Settings, groups: list[str]) -> None:
    known = group_members(settings)
    missing = [g for g in groups if g not in known]
    if missing:
        raise EnvError(f"unknown group(s): {', '.join(missing)}", "see `teamhub group list`")


def refresh_visibility(settings: Settings) -> dict[str, object]:
    """Rewrite <envs.root>/visibility.json from the envs and current group members.

    Call after anything that changes envs or group membership.
    """
    return publish_visibility(Path(settings["envs.root"]), group_members(settings),
                              settings["users.system_prefix"])


def locked_envs(root: Path, lock_timeout: float) -> SharedEnvs:
    """The shared envs under ROOT for what builds nothing (rollback, access, delete): the
    root helper's, which has no settings, only its policy."""
    return SharedEnvs(root, Uv(Path("uv"), root / CACHE), "", lock_timeout=lock_timeout)


def publish_visibility(root: Path, members: dict[str, list[str]],
                       prefix: str) -> dict[str, object]:
    """refresh_visibility from its inputs: the envs under ROOT, the groups' MEMBERS, the
    Linux accounts' PREFIX."""
    envs = SharedEnvs(root, Uv(Path("uv")), "")
    index = visibility.compute({n: envs.meta(n).get("groups", []) for n in envs.names()},
                               members, prefix)
    if envs.root.is_dir():
        visibility.write(envs.root, index)
        # Also run by `teamhub up`: an install from before the locks were root-only
        # has them made so before any env command runs.
        envs.make_private(envs.root / CACHE)
    return index


def parse_groups(text: str | None) -> list[str]:
    """`ml, data` → ["data", "ml"]; empty parts are dropped ('' = everyone)."""
    return sorted({g.strip() for g in (text or "").split(",") if g.strip()})


def create(settings: Settings, name: str, packages: list[str], *, python: str | None = None,
           groups: list[str] | None = None, echo: Echo = print) -> dict[str, Any]:
    """`teamhub env create`: build NAME from PACKAGES, then publish who may see it."""
    check_groups(settings, groups or [])
    meta = shared_envs(settings).create(name, packages, python=python, groups=groups,
                                        echo=echo)
    refresh_visibility(settings)
    return meta


def install(settings: Settings, name: str, packages: list[str],
            echo: Echo = print) -> dict[str, Any]:
    """`teamhub env install`: a new revision of NAME with PACKAGES added."""
    envs = shared_envs(settings)
    spec = merge_packages(envs.current_spec(envs.meta(name)), packages)
    return envs.change(name, spec, "install " + " ".join(packages), echo=echo)


def uninstall(settings: Settings, name: str, packages: list[str],
              echo: Echo = print) -> dict[str, Any]:
    """`teamhub env uninstall`: a new revision of NAME built without PACKAGES."""
    envs = shared_envs(settings)
    spec = remove_packages(envs.current_spec(envs.meta(name)), packages)
    return envs.change(name, spec, "uninstall " + " ".join(packages), echo=echo)


def set_access(settings: Settings, name: str, groups: list[str]) -> str:
    """`teamhub env access`: only members of GROUPS see NAME ([] = everyone)."""
    check_groups(settings, groups)
    shared_envs(settings).set_groups(name, groups)
    refresh_visibility(settings)
    return access_text(name, groups)


def access_text(name: str, groups: list[str]) -> str:
    return f"environment {name}: visible to {', '.join(groups) or 'everyone'}"


def rows(envs: SharedEnvs) -> list[dict[str, Any]]:
    """`teamhub env list`: each env's current revision, packages asked for, groups."""
    out = []
    for name in envs.names():
        meta = envs.meta(name)
        out.append({"name": name, "revision": meta["current"],
                    "packages": envs.current_spec(meta), "groups": meta["groups"],
                    "kernel": f"Python ({name})"})
    return out
