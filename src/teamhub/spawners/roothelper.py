"""How the hub gets done what needs root: itself while it is root, else through the root
helper's verbs (teamhub.spawners.rootdoor). The one place that decides (`direct`); the
spawner, the PAM authenticator and the console (`work`: root's part of the user and
project actions, teamhub.rootwork) ask here.

An unprivileged hub (`hub.unprivileged`) cannot restart a helper that is gone: a spawn
then fails with a message for the user, and the hub log says to start teamhub again as
root.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import (
    ContainerEnterError,
    EnvError,
    ForkServerUnavailable,
    HelperRefused,
    ImageError,
)
from ..paths import Paths
from ..projects.apply import Projects
from ..rootwork import Direct, RootWork
from ..system.containers import CgroupLimits
from ..system.sandbox import LaunchSpec
from . import forkserver
from .forkserver import STARTUP_WAIT_SECONDS, RootHelper, _recv_line

STREAM_SILENCE = 3600.0  # s: the longest a streaming verb may stay silent
MAX_STREAM_LINE = 1 << 20
HELPER_GONE = ("the hub runs unprivileged (hub.unprivileged) and its root helper does not "
               "answer; it cannot be restarted without root: start teamhub again as root "
               "(`systemctl restart teamhub`, or `teamhub up`)")


def direct() -> bool:
    """Whether this process does root's work itself (it is root) rather than ask the helper."""
    return os.geteuid() == 0


class HelperClient(RootHelper):
    """The helper's verbs for the hub (async), and the password check for the
    authenticator, which JupyterHub calls from a worker thread (blocking)."""

    def check_password_blocking(self, user: str, password: str, timeout: float = 60) -> bool:
        """Whether PASSWORD is USER's through PAM (helper's verdict); a refusal (e.g. an
        account that may not use teamhub) is a no. ForkServerUnavailable when no helper
        answers properly."""
        request = {"op": "check_password", "user": user, "password": password}
        try:
            with self._connected(timeout) as conn:
                conn.sendall(json.dumps(request).encode() + b"\n")
                answer = json.loads(_recv_line(conn))
        except (OSError, ValueError, HelperRefused) as exc:
            raise ForkServerUnavailable(f"{HELPER_GONE} ({exc})") from None
        # A refusal ({"error": ...}: an account that may not use teamhub) is a no.
        return answer.get("ok") is True

    # The docker backend's verbs (teamhub.spawners.helper_container).

    async def container_start(self, spec: LaunchSpec, *, user: str, server: str, image: str,
                              limits: CgroupLimits, gpus: list[str], fast: bool
                              ) -> tuple[str, int]:
        """USER's container started by the helper: (its id, the server's host pid; 0 when
        the server is the container's command). ContainerEnterError when the container ran
        but the server could not be entered into it (it is left for container_stop),
        ImageError when the image is not on the engine, ForkServerUnavailable otherwise."""
        body = {"spec": asdict(spec), "user": user, "server": server, "image": image,
                "limits": asdict(limits), "gpus": gpus, "fast": fast}
        answer = await forkserver.send(self.socket_path, "container_start",
                                       json.dumps(body).encode(), timeout=120)
        if "image_missing" in answer:
            raise ImageError(str(answer["image_missing"]))
        if "pid" in answer and "id" in answer:
            return str(answer["id"]), int(answer["pid"])
        error = str(answer.get("error"))
        if fast and not error.startswith("container_start:"):
            raise ContainerEnterError(error)
        raise ForkServerUnavailable(f"the root helper refused: {error}")

    async def container_state(self, user: str, server: str) -> dict[str, Any]:
        """`{"exists": false}` or `{"exists", "id", "running", "exit_code", "pid"}`."""
        return await forkserver.ask(self.socket_path, {"op": "container_state", "user": user,
                                                       "server": server}, timeout=60)

    async def container_stop(self, user: str, server: str, timeout: int) -> None:
        await forkserver.ask(self.socket_path, {"op": "container_stop", "user": user,
                                                "server": server, "timeout": timeout},
                             timeout=timeout + 60)

    async def container_logs(self, user: str, server: str, lines: int) -> str:
        answer = await forkserver.ask(self.socket_path, {"op": "container_logs", "user": user,
                                                         "server": server, "lines": lines},
                                      timeout=60)
        return str(answer.get("text", ""))

    def _connected(self, timeout: float) -> socket.socket:
        """A connection to the helper; one that `teamhub up` has just started binds its
        socket only once its imports are done, so a missing socket is waited for (as the
        spawner's requests wait, forkserver.STARTUP_WAIT_SECONDS)."""
        deadline = time.monotonic() + STARTUP_WAIT_SECONDS
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(timeout)
            try:
                conn.connect(str(self.socket_path))
                return conn
            except (FileNotFoundError, ConnectionRefusedError):
                conn.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            except OSError:
                conn.close()
                raise


def client(socket_path: str | Path) -> HelperClient:
    return HelperClient(Path(socket_path))


class HelperWork:
    """RootWork (teamhub.rootwork) through the helper, for an unprivileged hub's console
    (blocking: the console runs it off the event loop). A refusal is HelperRefused with
    the helper's reason; nothing of the request was done."""

    def __init__(self, helper: HelperClient) -> None:
        self.helper = helper

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            with self.helper._connected(120) as conn:
                conn.sendall(json.dumps(request).encode() + b"\n")
                answer = json.loads(_recv_line(conn))
        except (OSError, ValueError, HelperRefused) as exc:
            raise HelperRefused(f"{HELPER_GONE} ({exc})") from None
        return self._final(answer)

    def _stream(self, request: dict[str, Any], echo: Callable[[str], None],
                timeout: float = STREAM_SILENCE) -> dict[str, Any]:
        """A streaming verb (forkserver._stream_in_child): each `{"line": ...}` the helper
        sends to ECHO as it comes, then its final answer, as `_ask` returns it. TIMEOUT:
        the longest silence waited for (a build may wait for the envs lock)."""
        try:
            with self.helper._connected(120) as conn:
                conn.sendall(json.dumps(request).encode() + b"\n")
                conn.settimeout(timeout)
                pending = b""
                while True:
                    while b"\n" not in pending:
                        chunk = conn.recv(65536)
                        if not chunk:
                            raise HelperRefused("the helper ended without an answer")
                        pending += chunk
                        if len(pending) > MAX_STREAM_LINE:
                            raise HelperRefused(f"a line over {MAX_STREAM_LINE} bytes")
                    raw, pending = pending.split(b"\n", 1)
                    answer = json.loads(raw)
                    if isinstance(answer, dict) and set(answer) == {"line"}:
                        echo(str(answer["line"]))
                        continue
                    break
        except (OSError, ValueError, HelperRefused) as exc:
            raise HelperRefused(f"{HELPER_GONE} ({exc})") from None
        return self._final(answer)

    def _final(self, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise HelperRefused(f"{HELPER_GONE} (it answered {str(answer)[:80]})")
        if "error" in answer:
            raise HelperRefused(f"the root helper refused: {answer['error']}",
                                "nothing else was changed on the machine; see the helper's "
                                "log, logs/forkserver.log")
        return answer

    def cut_off(self, user: str) -> tuple[int | None, list[str]]:
        answer = self._ask({"op": "block_user", "user": user})
        ended = answer.get("ended")
        return (int(ended) if ended is not None else None,
                [str(x) for x in answer.get("projects", [])])

    def restore(self, user: str) -> None:
        self._ask({"op": "unblock_user", "user": user})

    def remove_account(self, user: str, keep_home: bool) -> None:
        if keep_home:
            raise HelperRefused("the root helper removes a Linux account with its home only",
                                f"run `teamhub user remove {user} --keep-home` as root")
        self._ask({"op": "remove_user", "user": user})

    def apply_project(self, name: str, users: Iterable[str]) -> None:
        self._ask({"op": "apply_project", "project": name, "users": sorted(set(users))})

    def sync_links(self, users: Iterable[str]) -> None:
        self._ask({"op": "sync_links", "users": sorted(set(users))})

    def remove_folder(self, name: str, force: bool) -> str:
        return str(self._ask({"op": "delete_project", "project": name, "force": force})
                   .get("trash") or "")

    # Shared environments: what builds nothing (a build is never the helper's).
    def env_rollback(self, name: str, rev: int | None) -> int:
        return int(self._ask({"op": "env_rollback", "env": name, "rev": rev})["rev"])

    def env_access(self, name: str, groups: list[str]) -> None:
        self._ask({"op": "env_access", "env": name, "groups": groups})

    def env_delete(self, name: str) -> None:
        self._ask({"op": "env_delete", "env": name})

    def env_build(self, action: str, name: str, packages: list[str], groups: list[str],
                  echo: Callable[[str], None]) -> int:
        """Build a new revision of shared environment NAME (create with GROUPS, install,
        uninstall PACKAGES) by the helper, its lines to ECHO; the new current revision.
        EnvError (the build's own message) when the build failed: `current` unchanged."""
        request: dict[str, Any] = {"op": "env_build", "action": action, "env": name,
                                   "packages": packages}
        if action == "create":
            request["groups"] = groups
        answer = self._stream(request, echo)
        if "failed" in answer:
            raise EnvError(str(answer["failed"]))
        return int(answer["rev"])

    # My environments (teamhub.envs.mine): `teamhub-env ARGS` as the user, by the helper.
    def user_env(self, user: str, args: list[str], echo: Callable[[str], None]) -> int:
        """Run `teamhub-env ARGS` as hub user USER's account; each of its output lines to
        ECHO; its exit code (a mine.Runner)."""
        return int(self._stream({"op": "user_env", "user": user, "args": args}, echo)["exit"])


def helper_work(paths: Paths) -> HelperWork:
    return HelperWork(client(paths.fork_server_socket))


def work(p: Projects, paths: Paths) -> RootWork:
    """Root's part of the user and project actions: done here by a root process, through
    the helper by an unprivileged hub."""
    if direct():
        return Direct(p, paths.private_runtime)
    return helper_work(paths)
