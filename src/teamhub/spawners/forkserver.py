"""A fork server: start users' servers in ~0.1 s by forking a warm, secret-free parent.

A fresh single-user server spends over a second importing jupyter_server,
jupyterlab and their dependencies. The fork server is a separate, single-threaded
root process (started by `teamhub up` as a fresh program with a minimal
environment, so it never holds the hub's secrets) that has imported all of that
once. For each request it forks a child; the child, not the parent, then reads
its launch spec (which carries the user's API token) from the hub, runs
`sandbox.become` and the server in-process. The parent's memory therefore never
holds any user's secret, and every later child is a copy of a parent that holds
none.

Protocol and who may use it: teamhub.spawners.rootdoor (the spec of the helper's door).
How a granted `spawn` is carried out: the server answers `{"pid": N}` (the child) and
closes; the child reads the spec (then end of data), has it checked (for the hub's
account), and answers `{"pid": N}` once it is accepted (for a spec with `container` set,
the docker backend's fast start: the server's host pid once it runs inside that
container, teamhub.system.nsenter) or `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_runtime_dir

from ..envs import warm_kernels, warm_parent
from ..errors import (
    ContainerEnterError,
    ForkServerUnavailable,
    HelperRefused,
    ImageError,
    SandboxError,
    TeamhubError,
)
from ..proxy import start_time
from ..system import nsenter, systemd
from ..system.sandbox import LaunchSpec, become, show_as_exec
from . import event_schemas, helper_container, helper_spec, identity, page_templates, rootdoor
from .rootdoor import Peer, Policy

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
MAX_SPEC = 1 << 20
# Heavy modules every server imports; whatever is not installed is skipped.
PRELOAD = (
    "jupyter_server.serverapp", "jupyterhub.singleuser", "jupyterhub.singleuser.extension",
    "jupyterlab", "jupyterlab.labapp", "jupyterlab_server", "jupyter_lsp",
    "jupyter_server_terminals", "notebook_shim", "jupyter_events", "rfc3987_syntax",
    "jupyter_client.ioloop", "teamhub.envs.kernels",
    # Imported only while a server starts (extension linking and loading), not at import:
    "IPython", "notebook_shim.nbserver", "jupyterlab.extensions.pypi",
    "jupyterlab.extensions.readonly", "httpx", "jupyter_lsp.serverextension",
    "jupyter_lsp.specs", "jupyter_server.services.contents.largefilemanager",
    "jupyter_server.services.kernels.kernelmanager", "jupyter_server.gateway.managers",
    "terminado", "jupyter_server_terminals.app", "ipykernel.kernelspec",
    # The runtime's other server extensions (Notebook 7, the status bar's memory use).
    "notebook.app", "jupyter_resource_usage",
    # What every server still imported after the fork (`bench/server_memory.py --probe`):
    # imported here they are shared pages, not each server's own.
    "jupyter_server.services.api.handlers", "jupyter_server.services.config.handlers",
    "jupyter_server.services.contents.handlers", "jupyter_server.services.events.handlers",
    "jupyter_server.services.kernels.handlers", "jupyter_server.services.kernelspecs.handlers",
    "jupyter_server.services.nbconvert.handlers", "jupyter_server.services.security.handlers",
    "jupyter_server.services.sessions.handlers", "jupyter_server.services.shutdown",
    "jupyter_server.kernelspecs.handlers", "jupyter_server.nbconvert.handlers",
    "jupyter_server.view.handlers", "jupyter_lsp.virtual_documents_shadow", "jupyter_core.migrate",
    "jinja2.ext", "tornado.platform.asyncio", "runpy", "teamhub.serverext",
)
# Settings that jupyterhub.singleuser reads once at import: a spec that sets them
# gets a freshly exec'd server instead of the preloaded one.
IMPORT_TIME_ENV = ("JUPYTERHUB_SINGLEUSER_APP", "JUPYTERHUB_SINGLEUSER_EXTENSION")



# ---------------------------------------------------------------- server side


def _log(msg: str) -> None:
    print(f"teamhub-forkserver[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def preload() -> list[str]:
    loaded = []
    for name in PRELOAD:
        try:
            __import__(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - an optional extension may be broken
            _log(f"not preloading {name}: {exc}")
    return loaded


PRELOAD_KERNELS_ENV = "TEAMHUB_FORKSERVER_KERNELS"  # see start(); read once, then removed
PARENT_ENV = "TEAMHUB_FORKSERVER_PARENT"  # see start() and main(); read once, then removed
# What the default kernel's warm parent needs (see _fork_warm_parent): the variables its
# imports set, and warm_kernels.fingerprint() of this python when they were imported.
_kernel_imports: tuple[dict[str, str], tuple[Any, ...]] | None = None


def preload_kernels() -> None:
    """Import what every kernel imports (teamhub.envs.warm_parent.PRELOAD), shared with
    each default kernel's warm parent; this process's environment stays as it was."""
    global _kernel_imports  # noqa: PLW0603 - once, before serving
    before = dict(os.environ)
    try:
        set_at_import = warm_parent.preload()
    except Exception as exc:  # noqa: BLE001 - servers then start their parents themselves
        _log(f"not preloading the kernels' modules: {exc}")
        return
    finally:
        os.environ.clear()
        os.environ.update(before)
    _kernel_imports = (set_at_import, warm_kernels.fingerprint(sys.executable, {}))


def _fork_warm_parent() -> None:
    """Fork the default kernel's warm parent off this process, which is the user's now
    (scope, limits, private /tmp) and is about to run the server (`envs.warm_kernels =
    prewarm`). It shares the kernels' modules with the fork server instead of importing
    them itself: a few hundred kB of its own instead of ~35 MB, ready at once. The server
    takes it (warm_kernels.prewarm_default) when its default kernel is what a fresh
    interpreter would give the same modules, and stops it otherwise."""
    if _kernel_imports is None:
        return
    set_at_import, stamp = _kernel_imports
    runtime = jupyter_runtime_dir()
    path = os.path.join(runtime, f"warm-forked-{os.getpid()}.sock")
    try:
        os.makedirs(runtime, mode=0o700, exist_ok=True)
    except OSError as exc:
        print(f"teamhub: no warm kernel parent forked: {exc}", file=sys.stderr, flush=True)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()  # as its server would start it (start_new_session)
            if not getattr(sys.flags, "safe_path", False):
                del sys.path[0]  # the fork server's start folder
            # sys.flags and sys.path now as `python -P warm_parent.py` has them.
            show_as_exec([sys.executable, "-P", warm_kernels.PARENT_SCRIPT, path],
                         dict(os.environ))
            warm_parent.serve_forked(path, set_at_import)
            code = 0
        except BaseException:  # noqa: BLE001 - never return into the server's start
            traceback.print_exc()
        finally:
            os._exit(code)
    warm_kernels.adopt_forked(path, pid, stamp)


def _self_test() -> None:
    """Refuse to serve where a child could not be made to look exec'd."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            show_as_exec(["probe"], {"A": "1"})
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("teamhub-forkserver: this kernel does not allow PR_SET_MM_MAP; "
                         "servers will be started the normal way")


def _run_server(spec: LaunchSpec) -> Any:
    """What `jupyterhub-singleuser ARGS` does, in this (already sandboxed) process."""
    import site
    import tempfile

    tempfile.tempdir = None
    sys.argv = list(spec.argv)
    # A script's folder is first on sys.path; the user's own site-packages follow
    # the rules of a fresh interpreter started by this user.
    script_dir = os.path.dirname(os.path.realpath(spec.argv[0]))
    if getattr(sys.flags, "safe_path", False):  # started with -P (see start): none to replace
        sys.path.insert(0, script_dir)
    else:
        sys.path[0] = script_dir
    old_site = site.USER_SITE
    if old_site in sys.path:
        sys.path.remove(old_site)
    site.USER_BASE = site.USER_SITE = None
    user_site = site.getusersitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(user_site):
        site.addsitedir(user_site)
    identity.recompute()
    from jupyterhub.singleuser import main

    return main()


def _enter_container(spec: LaunchSpec,
                     conn: socket.socket) -> tuple[LaunchSpec, int, list[bytes]]:
    """Move into SPEC's container; returns only in the server process forked there.

    That process gets the spec to become there (its output is the container's, `docker
    logs`; no scope or private mounts: the container has them), the keep-alive
    descriptor to hold for its life and the container's seccomp filters to take on last.
    This (intermediate) process answers the hub with the server's host pid, or what
    went wrong, and ends.
    """
    target = spec.container or {}
    try:
        keepalive = nsenter.hold_open(str(target["keepalive"]))
        filters = nsenter.seccomp_filters(int(target["pid"]))
        output = nsenter.enter(int(target["pid"]), str(target["id"]))
        pid = os.fork()  # the pid namespace applies to children only
    except (ContainerEnterError, OSError, KeyError, ValueError) as exc:
        conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
        os._exit(1)
    if pid:
        conn.sendall(json.dumps({"pid": pid, "id": str(target["id"])}).encode() + b"\n")
        os._exit(0)
    conn.close()
    nsenter.harden()
    inside = dataclasses.replace(spec, log_path=None, log_fd=output, scope=None,
                                 private_tmp=None, shm_size=None, container=None)
    return inside, keepalive, filters


def _read_body(conn: socket.socket) -> bytes:
    """What the hub sends after the verb's first answer, up to its end of data."""
    chunks, size = [], 0
    while chunk := conn.recv(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_SPEC:
            raise ValueError("launch spec too large")
    return b"".join(chunks)


def _child(conn: socket.socket, listener: socket.socket, peer: Peer, trusted: bool,
           policy: Policy) -> None:
    """In the forked child: read our own spec, have it checked unless the peer is root,
    become the user, run the server. Never returns."""
    try:
        listener.close()
        conn.settimeout(30)
        data = _read_body(conn)
        try:
            spec = LaunchSpec.from_json(data)
            if not trusted:
                spec = helper_spec.check_spec(spec, policy)
        except (HelperRefused, SandboxError, TypeError, ValueError) as exc:
            _refuse(conn, peer, f"spawn: {exc}")
            os._exit(1)
        if not trusted:
            try:
                spec = helper_spec.place(spec, policy)
            except (TeamhubError, OSError) as exc:
                _log(f"could not prepare {spec.username}'s server for {peer}: {exc}")
                conn.sendall(json.dumps({"error": f"spawn: {exc}"}).encode() + b"\n")
                os._exit(1)
    except BaseException:  # noqa: BLE001 - whatever happens, never return into the parent's loop
        traceback.print_exc()
        os._exit(1)
    _serve_as_user(spec, conn)


def _container_child(conn: socket.socket, listener: socket.socket, peer: Peer,
                     policy: Policy) -> None:
    """In the forked child of a `container_start`: read the request's body, have it checked
    (teamhub.spawners.helper_container), create and start the container, then (fast start)
    enter the server into it; answers `{"id", "pid"}` (pid 0: the server is the container's
    command) or `{"error"}`. Never returns."""
    try:
        listener.close()
        conn.settimeout(30)
        try:
            request = helper_container.check_start(json.loads(_read_body(conn)), policy)
        except (HelperRefused, SandboxError, TypeError, ValueError) as exc:
            _refuse(conn, peer, f"container_start: {exc}")
            os._exit(1)
        conn.settimeout(120)
        try:
            ident, target = helper_container.start(request, policy)
        except (TeamhubError, OSError, ValueError) as exc:
            _log(f"could not start {request.user}'s container for {peer}: {exc}")
            reply = {"error": f"container_start: {exc}"}
            if isinstance(exc, ImageError):
                reply["image_missing"] = exc.message
            conn.sendall(json.dumps(reply).encode() + b"\n")
            os._exit(1)
        _log(f"{peer}: started container {ident[:12]} of {request.user}")
        if target is None:
            conn.sendall(json.dumps({"id": ident, "pid": 0}).encode() + b"\n")
            os._exit(0)
    except BaseException:  # noqa: BLE001 - whatever happens, never return into the parent's loop
        traceback.print_exc()
        os._exit(1)
    _serve_as_user(dataclasses.replace(request.spec, container=target), conn)


def _serve_as_user(spec: LaunchSpec, conn: socket.socket) -> None:
    """Answer the hub, become SPEC's user (inside its container when it has one), run the
    server. Never returns."""
    code: Any = 1
    try:
        keep: tuple[int, ...] = ()
        filters: list[bytes] = []
        if spec.container:
            spec, keepalive, filters = _enter_container(spec, conn)
            keep = (keepalive,)
        else:
            conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
            conn.close()
        if any(k in spec.env for k in IMPORT_TIME_ENV):
            become(spec, keep_fds=keep)
            for fd in keep:
                os.set_inheritable(fd, True)  # the exec'd server holds the container open
            nsenter.apply_seccomp(filters)
            os.execve(spec.argv[0], spec.argv, spec.env)
        become(spec, in_process=True, keep_fds=keep)
        nsenter.apply_seccomp(filters)
        if not spec.container and warm_kernels.PREWARM_ARG in spec.argv:
            _fork_warm_parent()
        code = _run_server(spec)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - whatever happens, never return into the parent's loop
        traceback.print_exc()
        code = 1
    try:
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)  # as the interpreter does with SystemExit("...")
            code = 1
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code or 0)


def _recv_line(conn: socket.socket) -> bytes:
    # Not conn.makefile(): its reference would keep the descriptor open past close().
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise HelperRefused("incomplete request")
        data += chunk
        if len(data) > rootdoor.MAX_REQUEST:
            raise HelperRefused(f"request over {rootdoor.MAX_REQUEST} bytes")
    return data


def _refuse(conn: socket.socket, peer: Peer, reason: str) -> None:
    _log(f"refused {peer}: {reason}")
    try:
        conn.sendall(json.dumps({"error": reason}).encode() + b"\n")
    except OSError:
        pass


def _answer_in_child(conn: socket.socket, listener: socket.socket, peer: Peer, work: Any) -> int:
    """Run WORK (slow: useradd, systemctl, PAM) in a child that answers CONN, so that the
    helper keeps serving meanwhile; the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        listener.close()
        conn.settimeout(120)
        answer = work()
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except HelperRefused as exc:
        _refuse(conn, peer, str(exc))
        code = 1
    except TeamhubError as exc:  # e.g. Docker refused: not the peer's fault, still its answer
        _log(f"could not serve {peer}: {exc}")
        conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
        code = 1
    except BaseException:  # noqa: BLE001 - never return into the parent's loop
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def _stream_in_child(conn: socket.socket, listener: socket.socket, peer: Peer,
                     work: Callable[[Callable[[str], None]], dict[str, Any]]) -> int:
    """`_answer_in_child` for a verb that streams its progress: WORK gets an echo that
    sends each line as `{"line": ...}` before the final answer (roothelper's
    HelperWork._stream reads them). A peer gone meanwhile does not stop WORK: its lines
    are dropped, so a build is never left half-done by a closed page."""
    gone = False

    def echo(line: str) -> None:
        nonlocal gone
        if gone:
            return
        try:
            conn.sendall(json.dumps({"line": line}).encode() + b"\n")
        except OSError:
            gone = True

    def run() -> dict[str, Any]:
        conn.settimeout(None)  # a build's lines may be far apart
        return work(echo)

    return _answer_in_child(conn, listener, peer, run)


def _open_as(path: str, uid: int, gid: int) -> int:
    """PATH opened for appending as UID:GID (in a folder that account owns, so never as
    root: a link or a swapped folder there gets no more than that account could write)."""
    os.setgroups([])
    os.setegid(gid)
    os.seteuid(uid)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    finally:
        os.seteuid(0)
        os.setegid(0)


def start_proxy(policy: Policy, token: str) -> dict[str, Any]:
    """`start_proxy` (in a child of the helper): start the policy's proxy as the hub's
    account (rootdoor.proxy_command), move it into a scope of its own under systemd; its
    pid, start time and argv. It outlives this child: the helper (subreaper) reaps it."""
    argv, env = rootdoor.proxy_command(policy), rootdoor.proxy_env(token)
    assert policy.hub_uid is not None and policy.hub_gid is not None  # proxy_token checked
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            # Never the helper's own log (root's) in the account's hands.
            out = null
            if policy.proxy_log:
                try:
                    out = _open_as(policy.proxy_log, policy.hub_uid, policy.hub_gid)
                except OSError as exc:
                    _log(f"the proxy's output is lost: cannot open {policy.proxy_log} as "
                         f"the hub's account ({exc})")
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.umask(0o077)
            os.chdir("/")
            os.execve(argv[0], argv, env)
        except BaseException:  # noqa: BLE001 - never return into the helper's code
            traceback.print_exc()
        os._exit(127)
    started = start_time(pid) or ""
    answer: dict[str, Any] = {"pid": pid, "started": started, "argv": policy.proxy_argv}
    caps = "CAP_NET_BIND_SERVICE" if rootdoor.proxy_needs_low_port(policy) else "no capability"
    _log(f"started the proxy (pid {pid}, {caps})")
    if policy.proxy_slice and systemd.booted():
        unit = f"teamhub-proxy-{pid}.scope"
        try:
            systemd.place_in_scope(pid, unit, {"Description": "teamhub proxy",
                                               "Slice": policy.proxy_slice,
                                               "CollectMode": "inactive-or-failed"})
        except TeamhubError as exc:
            _log(f"the proxy (pid {pid}) stays in the helper's cgroup: {exc}")
            answer["warning"] = f"the proxy stays in the helper's cgroup: {exc}"
    return answer


class ForkServer:
    def __init__(self, socket_path: Path, policy: Policy | None = None,
                 parent: int | None = None) -> None:
        self.socket_path = socket_path
        self.policy = policy or Policy()
        # pid → exit code of children that ended; bounded, newest kept.
        self.exits: OrderedDict[int, int] = OrderedDict()
        self.children: set[int] = set()
        # The hub (or root `teamhub up`) that started us: PARENT, as main saw it before the
        # preload (a hub that failed at start meanwhile must not leave us serving init).
        self.parent = os.getppid() if parent is None else parent

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.exits[pid] = os.waitstatus_to_exitcode(status)
            while len(self.exits) > 1000:
                self.exits.popitem(last=False)

    def _reply(self, conn: socket.socket, obj: dict[str, Any]) -> None:
        conn.sendall(json.dumps(obj).encode() + b"\n")

    def handle(self, conn: socket.socket, listener: socket.socket) -> None:
        peer = rootdoor.peer_of(conn)
        try:
            trusted = rootdoor.admit(peer, self.policy)
            conn.settimeout(5)
            request = rootdoor.parse_request(_recv_line(conn))
            self._dispatch(request, conn, listener, peer, trusted)
        except HelperRefused as exc:
            _refuse(conn, peer, str(exc))

    def _fork(self, conn: socket.socket, child: Callable[[], object]) -> None:
        """Run CHILD (it never returns: it ends the process) in a fresh child of this
        single-threaded helper, and answer with the child's pid."""
        if _threads() != 1:
            raise HelperRefused("fork server is not single-threaded")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child()
        self.children.add(pid)
        self._reply(conn, {"pid": pid})

    def _dispatch(self, request: dict[str, Any], conn: socket.socket, listener: socket.socket,
                  peer: Peer, trusted: bool) -> None:
        op, policy = request["op"], self.policy
        if op == "status":
            pid = request.get("pid")
            if not isinstance(pid, int) or isinstance(pid, bool):
                raise HelperRefused("status: pid is not a number")
            self.reap()
            known = pid in self.children or pid in self.exits
            self._reply(conn, {"running": pid in self.children, "known": known,
                               "exit": self.exits.get(pid)})
        elif op == "spawn":
            self._fork(conn, lambda: _child(conn, listener, peer, trusted, policy))
        elif op == "container_start":
            self._fork(conn, lambda: _container_child(conn, listener, peer, policy))
        elif op == "container_state":
            _answer_in_child(conn, listener, peer, lambda: helper_container.state(request))
        elif op == "container_stop":
            _answer_in_child(conn, listener, peer,
                             lambda: helper_container.stop(request, policy))
        elif op == "container_logs":
            _answer_in_child(conn, listener, peer, lambda: helper_container.logs(request))
        elif op == "signal":
            pid, sig = rootdoor.signal_process(request, policy)
            _log(f"{peer}: signal {sig} to pid {pid} of {request['user']}")
            self._reply(conn, {"ok": True})
        elif op == "stop_scope":
            user = rootdoor.hub_user(request.get("user"))
            unit = rootdoor.scope_unit(user, request.get("server", ""))

            def stop() -> dict[str, Any]:
                systemd.stop_unit(unit)
                rootdoor.remove_server_folders(user, policy)
                return {"ok": True}

            _answer_in_child(conn, listener, peer, stop)
        elif op == "ensure_account":
            user = rootdoor.hub_user(request.get("user"))

            def ensure() -> dict[str, Any]:
                account = rootdoor.ensure_account(user, policy)
                answer: dict[str, Any] = {"uid": account.uid, "home": account.home}
                try:
                    rootdoor.apply_projects(user, policy)
                except (TeamhubError, OSError) as exc:
                    # Not worth refusing a server over; `teamhub project repair` fixes it.
                    _log(f"could not apply {user}'s project folders: {exc}")
                    answer["warning"] = f"project folders not applied: {exc}"
                return answer

            _answer_in_child(conn, listener, peer, ensure)
        elif op in rootdoor.MACHINE_VERBS:
            about, work = rootdoor.machine_work(request, policy)
            _log(f"{peer}: {op} {about}")
            _answer_in_child(conn, listener, peer, work)
        elif op == "check_password":
            user = rootdoor.hub_user(request.get("user"))
            password = request.get("password")
            _answer_in_child(conn, listener, peer, lambda: {
                "ok": rootdoor.check_password(user, password, policy)})
        elif op == "user_env":
            account, args = rootdoor.user_env(request, policy)
            _log(f"{peer}: teamhub-env {args[0]} as {account.name}")
            _stream_in_child(conn, listener, peer,
                             lambda echo: rootdoor.run_user_env(account, args, policy, echo))
        elif op == "env_build":
            about, build = rootdoor.env_build(request, policy)
            _log(f"{peer}: env_build {about}")
            _stream_in_child(conn, listener, peer, build)
        elif op == "start_proxy":
            token = rootdoor.proxy_token(request, trusted, policy)
            _answer_in_child(conn, listener, peer, lambda: start_proxy(policy, token))

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket_path.unlink(missing_ok=True)
        old = os.umask(0o177)  # 0600 from the start
        listener.bind(str(self.socket_path))
        os.umask(old)
        # Only root and the hub's account can connect at all; the peer check is per request.
        # Never through a link: the folder may be the hub's account's (hub.unprivileged).
        os.chown(self.socket_path, rootdoor.socket_owner(self.policy), 0,
                 follow_symlinks=False)
        listener.listen(64)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # Each spawn's checks run in a fresh child: what they look up the same for every
        # server is worked out once here, or every child would run npm again (~0.14 s).
        helper_spec.warm()
        gc.collect()
        gc.freeze()  # keep the preloaded objects' pages shared with every child
        _log(f"ready on {self.socket_path} ({_threads()} thread)")
        while True:
            readable, _, _ = select.select([listener.fileno(), wake_r], [], [], 1)
            if os.getppid() != self.parent:
                # The parent-death signal does not come when the hub dropped root
                # (hub.unprivileged) before it ended: the kernel skips it across a change
                # of uid. Running servers are not ours to end; they keep running.
                _log("the hub that started this helper has ended: stopping")
                return
            if wake_r in readable:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            self.reap()
            if listener.fileno() in readable:
                conn, _ = listener.accept()
                try:
                    self.handle(conn, listener)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    _log(f"bad request: {exc}")
                finally:
                    conn.close()


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python -m teamhub.spawners.forkserver SOCKET [POLICY_JSON]")
    if os.geteuid() != 0:
        raise SystemExit("teamhub-forkserver: must run as root")
    # Die with whoever started us (the hub); running servers are not our children's
    # children, they are reparented and keep running.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # Servers started inside containers are orphaned at once (their parent only enters
    # the container): adopt and reap them rather than leave zombies to an init that may
    # not reap.
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Who started us, as they said (start()): by the time this runs (its imports take a
    # second or more on a busy machine) they may be gone, and getppid() names the reaper.
    parent = int(os.environ.pop(PARENT_ENV, "") or os.getppid())
    if os.getppid() != parent or parent == 1:
        _log("the hub that started this helper has ended: stopping")
        raise SystemExit(0)
    os.chdir("/")
    started = time.monotonic()
    loaded = preload()
    # What each server would build the same way at its start, built once for all of them.
    schemas = event_schemas.prebuild(event_schemas.server_schema_paths())
    templates = page_templates.precompile(page_templates.runtime_templates(sys.prefix))
    if os.environ.pop(PRELOAD_KERNELS_ENV, "") == "1":
        preload_kernels()
    _self_test()
    _log(f"preloaded {len(loaded)} modules, {len(schemas)} event schemas and {templates}"
         f" page templates in {time.monotonic() - started:.2f}s")
    policy = Policy.from_json(sys.argv[2]) if len(sys.argv) == 3 else None
    ForkServer(Path(sys.argv[1]), policy, parent).serve()


# ---------------------------------------------------------------- hub side

_started: dict[str, subprocess.Popen[bytes]] = {}


def start(socket_path: Path, python: str, log_path: Path, policy: Policy | None = None,
          kernels: bool = False) -> subprocess.Popen[bytes]:
    """Run a fork server as a fresh program with a minimal environment (never the hub's).
    Without POLICY it serves root alone. With KERNELS (`envs.warm_kernels = prewarm`) it
    also imports what kernels import, for the default kernel's warm parent it forks along
    with each server (otherwise it would only make every server's memory larger).

    Call from the main thread: it dies with the thread that started it.
    """
    old = _started.get(str(socket_path))
    if old is not None and old.poll() is None:
        return old
    # Root's tools (useradd, setfacl) for the verbs it runs itself; servers get their own.
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": os.environ.get("LANG", "C.UTF-8"), "HOME": "/nonexistent",
           PARENT_ENV: str(os.getpid())}
    if kernels:
        env[PRELOAD_KERNELS_ENV] = "1"
    # A socket an earlier helper left (root's, or another account's) would answer a hub that
    # connects before this one is ready with EACCES, not "not there yet".
    socket_path.unlink(missing_ok=True)
    # No link followed: with hub.unprivileged the folder is the hub's account's.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        proc = subprocess.Popen(
            # -P (Python 3.11+): no start folder on sys.path, as the kernels' warm parents
            # forked from it run (`python -P`); servers get their script's folder back.
            [python, *(["-P"] if sys.version_info >= (3, 11) else []), "-m",
             "teamhub.spawners.forkserver", str(socket_path),
             *([policy.to_json()] if policy is not None else [])],
            env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            close_fds=True, start_new_session=True,
        )
    finally:
        os.close(fd)
    _started[str(socket_path)] = proc
    return proc


# The fork server binds its socket only once its imports are done (a few seconds, more on
# a busy machine); a hub started beside it can get a first spawn before that.
STARTUP_WAIT_SECONDS = 60.0


async def _connect(socket_path: Path, timeout: float
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect; while the fork server this process started is still loading (no socket
    yet), wait for it rather than start the server the slow way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_WAIT_SECONDS
    while True:
        try:
            return await asyncio.wait_for(
                asyncio.open_unix_connection(str(socket_path)), timeout)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError):
            # PermissionError: bound, not yet the hub's account's (hub.unprivileged).
            loading = _started.get(str(socket_path))
            if loading is None or loading.poll() is not None or loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _request(socket_path: Path, request: dict[str, Any], timeout: float = 5
                   ) -> tuple[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        reader, writer = await _connect(socket_path, timeout)
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise ForkServerUnavailable(f"no fork server at {socket_path} ({exc!r})") from None
    if not line:
        writer.close()
        raise ForkServerUnavailable("fork server closed the connection without an answer")
    answer = json.loads(line)
    if "error" in answer:
        writer.close()
        raise ForkServerUnavailable(f"fork server refused: {answer['error']}")
    return answer, reader, writer


async def send(socket_path: Path, op: str, data: bytes, timeout: float = 30
               ) -> dict[str, Any]:
    """A verb whose child reads DATA after the first answer (`spawn`, `container_start`):
    the child's answer (`{"error": ...}` included). ForkServerUnavailable when no helper
    answers or the helper itself refused the verb."""
    answer, reader, writer = await _request(socket_path, {"op": op})
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        line = await asyncio.wait_for(reader.readline(), timeout)
        return json.loads(line) if line.strip() else {"error": "the child ended silently"}
    except (OSError, asyncio.TimeoutError, ValueError) as exc:
        raise ForkServerUnavailable(f"could not hand {op}'s request to the child: "
                                    f"{exc!r}") from None
    finally:
        writer.close()


async def spawn(socket_path: Path, spec: LaunchSpec, timeout: float = 30) -> int:
    """Start SPEC in a child of the fork server; its pid.

    A spec with `container` set: the server's host pid once it runs inside the container;
    ContainerEnterError (with the child's reason) when it could not get in."""
    answer = await send(socket_path, "spawn", spec.to_json(), timeout)
    if "pid" not in answer and spec.container:
        raise ContainerEnterError(str(answer.get("error")))
    if "pid" not in answer:
        raise ForkServerUnavailable(f"fork server refused the spec: {answer.get('error')}")
    return int(answer["pid"])


async def ask(socket_path: Path, request: dict[str, Any], timeout: float = 120
              ) -> dict[str, Any]:
    """One request of the helper's other verbs (teamhub.spawners.rootdoor); its answer.
    ForkServerUnavailable with the helper's reason when it refused."""
    answer, _, writer = await _request(socket_path, request, timeout)
    writer.close()
    return answer


async def status(socket_path: Path, pid: int) -> tuple[bool, int | None]:
    """Whether PID (a fork server child) runs, and its exit code if it ended."""
    answer, _, writer = await _request(socket_path, {"op": "status", "pid": pid})
    writer.close()
    if not answer.get("known"):
        # Forked by an earlier fork server (restarted meanwhile): not ours to tell.
        raise ForkServerUnavailable(f"fork server does not know pid {pid}")
    return bool(answer["running"]), answer["exit"]


def ping(socket_path: Path, timeout: float = 10) -> None:
    """Whether the helper at SOCKET_PATH answers (blocking: for the CLI, never the hub);
    ForkServerUnavailable with the reason otherwise."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(socket_path))
            conn.sendall(json.dumps({"op": "status", "pid": 0}).encode() + b"\n")
            answer = json.loads(_recv_line(conn))
    except (OSError, ValueError, HelperRefused) as exc:
        raise ForkServerUnavailable(f"no root helper answers at {socket_path} ({exc})") from None
    if "known" not in answer:
        raise ForkServerUnavailable(f"the root helper at {socket_path} answered {answer}")


class RootHelper:
    """The hub's side of the helper's door: one method per verb (teamhub.spawners.rootdoor).
    Every refusal arrives as ForkServerUnavailable carrying the helper's reason."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    async def spawn(self, spec: LaunchSpec) -> int:
        return await spawn(self.socket_path, spec)

    async def status(self, pid: int) -> tuple[bool, int | None]:
        return await status(self.socket_path, pid)

    async def signal(self, user: str, pid: int, sig: int) -> None:
        await ask(self.socket_path, {"op": "signal", "user": user, "pid": pid, "signal": sig})

    async def stop_scope(self, user: str, server: str = "") -> None:
        await ask(self.socket_path, {"op": "stop_scope", "user": user, "server": server})

    async def ensure_account(self, user: str) -> tuple[int, str, str | None]:
        """USER's Linux account (made on first need) with its project folders applied:
        (uid, home, why the project folders could not be applied or None)."""
        answer = await ask(self.socket_path, {"op": "ensure_account", "user": user})
        return int(answer["uid"]), str(answer["home"]), answer.get("warning")

    async def check_password(self, user: str, password: str) -> bool:
        answer = await ask(self.socket_path,
                           {"op": "check_password", "user": user, "password": password})
        return bool(answer.get("ok"))

    async def start_proxy(self, token: str) -> dict[str, Any]:
        """Have the helper start the public proxy (hub.unprivileged): `pid`, `started`
        (its start time), `argv` (the policy's command line) and maybe `warning`."""
        return await ask(self.socket_path, {"op": "start_proxy", "token": token}, timeout=30)


if __name__ == "__main__":
    main()
