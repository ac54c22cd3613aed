"""Glue between settings, the account store and the shared envs: used by the CLI and `up`."""

from __future__ import annotations

from pathlib import Path

from ..accounts.groups import GroupStore
from ..accounts.store import AccountStore
from ..errors import EnvError
from ..paths import Paths
from ..settings import Settings
from ..system.uv import Uv
from . import visibility
from .store import SharedEnvs

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
    envs = SharedEnvs(Path(settings["envs.root"]), Uv(Path("uv")), "")
    index = visibility.compute({n: envs.meta(n).get("groups", []) for n in envs.names()},
                               group_members(settings), settings["users.system_prefix"])
    if envs.root.is_dir():
        visibility.write(envs.root, index)
        # Also run by `teamhub up`: an install from before the locks were root-only
        # has them made so before any env command runs.
        envs.make_private(envs.root / CACHE)
    return index
