"""`/hub/teamhub/console/envs`: the Environments page (admins), and `.../envs/build`, which
streams a build's output into it.

The list shows each shared environment's revision, size, groups and history; rollback,
visibility groups, export and delete are forms; create, install and uninstall stream the
build's lines live (console/stream.py) from the same functions as `teamhub env ...`
(envs.admin). A failed build leaves `current` as it was (envs.store guarantees it).

An unprivileged hub (hub.unprivileged) has the root helper do rollback, access, delete
and builds (`/opt/teamhub/envs` is root's): the helper's `env_build` runs uv and the new
revision's python as this hub's account and takes the finished tree over as root (a
package's build code never runs as root), streaming the build's lines here."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from tornado import web

from ..envs import admin
from ..envs.store import check_name
from ..errors import EnvError, TeamhubError
from ..spawners import roothelper
from .base import PREFIX, ConsolePage
from .stream import Echo, StreamingData

# Bytes of each built revision, by (env, revision): a revision never changes once built.
_sizes: dict[tuple[str, int], int] = {}


def tree_size(path: str) -> int:
    """Bytes of the files under PATH (links not followed, each inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def packages_of(text: Any) -> list[str]:
    """Package requirements from a form field: separated by spaces, commas or lines."""
    if not isinstance(text, str):
        raise EnvError("packages must be text", "e.g. `six idna>=3`")
    pkgs = [p for p in re.split(r"[\s,]+", text) if p]
    for pkg in pkgs:
        if pkg.startswith("-"):
            raise EnvError(f"{pkg!r} is not a package requirement",
                           "give package names only, e.g. `six idna>=3`")
    return pkgs


class EnvsPage(ConsolePage):
    tab = "envs"
    scripts = ("build.js",)

    def _listing(self) -> list[dict[str, Any]]:
        settings, _paths = self.teamhub_settings()
        envs = admin.shared_envs(settings)
        rows = admin.rows(envs)
        for row in rows:
            meta = envs.meta(row["name"])
            row["history"] = list(reversed(meta["revisions"]))
            key = (row["name"], row["revision"])
            if key not in _sizes:
                _sizes[key] = tree_size(str(envs.root / row["name"] / "revs"
                                            / str(row["revision"])))
            row["size"] = _sizes[key]
        return rows

    async def _show(self, status: int = 200, **ns: Any) -> None:
        try:
            envs = await self.blocking(self._listing)
        except TeamhubError as exc:
            envs, ns["error"] = [], str(exc)
        await self.render_console("envs.html", status=status, envs=envs,
                                  build_url=f"{self.hub.base_url}{PREFIX}/envs/build", **ns)

    async def get(self) -> None:
        await self._show()

    async def post(self) -> None:
        action, name = self.field("action"), self.field("name").strip()
        ns: dict[str, Any] = {}
        try:
            if action == "rollback":
                rev = self.field("rev")
                target = await self.blocking(self._rollback, name, int(rev) if rev.isdigit()
                                             else None)
                ns["message"] = (f"environment {name}: revision {target} is now current "
                                 "(new kernels use it; running ones keep theirs until "
                                 "restarted)")
            elif action == "access":
                ns["message"] = await self.blocking(self._access, name, self.field("groups"))
            elif action == "export":
                ns["export"] = (name, await self.blocking(self._export, name))
                ns["message"] = f"requirements of {name}, with hashes"
            elif action == "delete":
                await self.blocking(self._delete, name)
                ns["message"] = (f"deleted environment {name} (running kernels of it keep "
                                 "running until stopped)")
            else:
                raise web.HTTPError(400, f"unknown action {action[:40]!r}")
        except TeamhubError as exc:
            await self._show(400, error=str(exc))
            return
        await self._show(**ns)

    # The same calls as `teamhub env rollback / access / export / delete`; through the
    # helper when this hub is not root.
    def _rollback(self, name: str, rev: int | None) -> int:
        settings, paths = self.teamhub_settings()
        if not roothelper.direct():
            return roothelper.helper_work(paths).env_rollback(name, rev)
        return admin.shared_envs(settings).rollback(name, rev)

    def _access(self, name: str, groups: str) -> str:
        settings, paths = self.teamhub_settings()
        wanted = admin.parse_groups(groups)
        if not roothelper.direct():
            admin.check_groups(settings, wanted)  # the helper checks too; this says it better
            roothelper.helper_work(paths).env_access(name, wanted)
            return admin.access_text(name, wanted)
        return admin.set_access(settings, name, wanted)

    def _export(self, name: str) -> str:
        envs = admin.shared_envs(self.teamhub_settings()[0])
        envs.meta(name)
        python = envs.current_python(name)
        if roothelper.direct():
            return envs.uv.lock_with_hashes(python, envs.uv.freeze(python))
        # uv's cache under envs.root is root's only: this hub's account uses its own,
        # for this export only.
        with tempfile.TemporaryDirectory(prefix="teamhub-export-") as cache:
            uv = dataclasses.replace(envs.uv, cache_dir=Path(cache))
            return uv.lock_with_hashes(python, uv.freeze(python))

    def _delete(self, name: str) -> None:
        settings, paths = self.teamhub_settings()
        if not roothelper.direct():
            roothelper.helper_work(paths).env_delete(name)
            return
        envs = admin.shared_envs(settings)
        envs.meta(name)
        envs.delete(name)
        admin.refresh_visibility(settings)


class EnvBuild(StreamingData):
    """POST {"action": "create"|"install"|"uninstall", "name", "packages", "groups"}:
    the build's output, line by line, then how it ended."""

    async def post(self) -> None:
        body = self.body_json()
        action, name = body.get("action"), str(body.get("name", "")).strip()
        if action not in ("create", "install", "uninstall"):
            raise web.HTTPError(400, f"unknown action {str(action)[:40]!r}")

        def build(echo: Echo) -> str:
            settings, paths = self.teamhub_settings()
            packages = packages_of(body.get("packages", ""))
            groups = admin.parse_groups(str(body.get("groups", "")))
            if action != "create" and not packages:
                raise EnvError(f"say which packages to {action}", "e.g. `six idna`")
            if not roothelper.direct():
                # The helper builds as this hub's account and takes the tree over as root.
                check_name(name)
                if action == "create":
                    admin.check_groups(settings, groups)  # the helper checks too
                rev = roothelper.helper_work(paths).env_build(action, name, packages, groups,
                                                              echo)
            elif action == "create":
                rev = admin.create(settings, name, packages, groups=groups,
                                   echo=echo)["current"]
            else:
                fn = admin.install if action == "install" else admin.uninstall
                rev = fn(settings, name, packages, echo=echo)["current"]
            if action == "create":
                return (f"created environment {name} (revision {rev}): the kernel "
                        f"\"Python ({name})\" appears in launchers")
            return f"environment {name}: revision {rev} is now current"

        await self.stream(build)


def handlers() -> list[tuple[str, Any]]:
    return [(rf"/{PREFIX}/envs", EnvsPage), (rf"/{PREFIX}/envs/build", EnvBuild)]
