"""Kernels that answer at once: forked from a warm parent per environment, inside the
user's own server (the `teamhub-warm` kernel provisioner).

A kernel started the normal way is a fresh interpreter that spends ~0.4 s importing
ipykernel before its first answer. Here the user's server keeps, per environment it
has started kernels of, one warm parent (warm_parent.py): that environment's own
interpreter, started by the server exactly as a kernel would be (same program, same
environment, as the user, inside the server's scope or container, so inside the
user's limits), with ipykernel imported. A new kernel is a fork of it that runs
teamhub's kernel launcher in-process: it listens after ~0.04 s of CPU (its own
IPKernelApp: config and arguments, sockets, shell) instead of ~0.4 s. The provisioner
returns only once it listens (see warm_parent.py for why that matters: it is what made
such a kernel answer its first websocket in ~0.1 s instead of ~0.6 s).

What makes it safe and indistinguishable from a normal start:
- Only this server's own processes can reach a warm parent: its socket is in the
  server's private runtime folder (0700, JUPYTER_RUNTIME_DIR, where the kernels' ipc
  sockets and connection files are too). It serves one user, one server.
- The kernel gets the exact argv, environment (JPY_PARENT_PID and JPY_SESSION_NAME
  included), working folder and standard streams launch_kernel would give it, as a
  session leader with no other descriptor; the connection file is written by the
  server, as always.
- A parent is used only while it is current: its environment must be the one the
  kernel asks for, and its interpreter, environment folder (a shared env's `current`
  resolves to a revision) and site-packages folders (`pip install` changes their
  modification times) must be what they were when it started. Otherwise it is
  retired (it takes no more requests and exits with its last kernel) and a fresh one
  is started for this kernel.
- Whenever the warm way fails (no pidfd support, a parent that died, anything
  unexpected) the kernel is started the normal way and the hub log says why; a
  kernel that is not teamhub's launcher (another language, a hand-written spec) is
  always started normally.

Kept as a difference: forked kernels share the parent's hash seed (PYTHONHASHSEED is
per interpreter start), and the first kernel of an environment waits for its parent.
A parent costs ~35 MB (PSS) while no kernel runs; kernels forked from it share its
pages, so with kernels running it costs little more than normal kernels do. By default
(`on-demand`) a parent starts with its env's first kernel, or before it when the user's
JupyterLab opens or points at the env's launcher card, and exits once unused
(teamhub.envs.warm_ahead); with `prewarm` the default kernel's parent starts with the
server (teamhub.serverext) and stays, so the user's first notebook is fast even without
JupyterLab, at that idle cost for every server.
"""

from __future__ import annotations

import array
import asyncio
import glob
import hashlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from jupyter_client.provisioning import LocalProvisioner
from jupyter_core.paths import jupyter_runtime_dir

from . import recent_kernels
from .kernels import LAUNCHER

WARM_PROVISIONER = "teamhub-warm"  # its entry point name (pyproject.toml)
WARM_CONFIG = "TeamhubWarmKernels"  # `--TeamhubWarmKernels.prewarm=True`: see prewarm_default
PREWARM_ARG = f"--{WARM_CONFIG}.prewarm=True"
# Seconds a parent with no running kernel lives while no front end lists the kernels
# (`--TeamhubWarmKernels.idle_exit`, the setting envs.warm_idle; teamhub.envs.warm_ahead).
DEFAULT_IDLE_EXIT = 600
# The same for a parent only a front end's hint started (the pointer rested on its
# launcher card) and no kernel came of: the user went for another one.
HINTED_IDLE_EXIT = 60
PARENT_SCRIPT = str(Path(__file__).with_name("warm_parent.py"))
# Variables launch_kernel's callers set per kernel: they never decide which parent.
PER_KERNEL_ENV = ("JPY_SESSION_NAME",)
# How long a kernel waits for its environment's parent to start before it is
# started the normal way (the parent keeps starting for the next kernel).
START_WAIT = 30.0
log = logging.getLogger("teamhub.warm_kernels")


def launcher_index(cmd: list[str]) -> int | None:
    """Where teamhub's launcher is in CMD (`PYTHON [-P] LAUNCHER ...`), else None."""
    for i in (1, 2):
        if len(cmd) > i and cmd[i] == LAUNCHER and (i == 1 or cmd[1] == "-P"):
            return i
    return None


def site_dirs(python: str, env: dict[str, str]) -> list[str]:
    """The folders whose contents decide what the kernel can import, beyond its env vars:
    the environment's site-packages and the user's own (~/.local)."""
    prefix = os.path.realpath(Path(python).parent.parent)
    found = sorted(glob.glob(os.path.join(prefix, "lib", "python3*", "site-packages")))
    home = env.get("HOME")
    if home:
        found += sorted(glob.glob(os.path.join(home, ".local", "lib", "python3*",
                                               "site-packages")))
    return found


def fingerprint(python: str, env: dict[str, str]) -> tuple[Any, ...]:
    """What must not change while a parent is used: interpreter, environment folder (a
    revision, for a shared env's `current`), and each site-packages folder's mtime."""
    stamps: list[tuple[str, int | None]] = []
    for folder in site_dirs(python, env):
        try:
            stamps.append((folder, os.stat(folder).st_mtime_ns))
        except OSError:
            stamps.append((folder, None))
    return (os.path.realpath(python), os.path.realpath(Path(python).parent.parent),
            tuple(stamps))


def parent_key(cmd: list[str], index: int, env: dict[str, str]) -> str:
    """Which parent may fork a kernel of CMD with ENV: same program, same environment."""
    kept = {k: v for k, v in env.items() if k not in PER_KERNEL_ENV}
    blob = json.dumps([cmd[:index + 1], sorted(kept.items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class WarmProcess:
    """The part of Popen that LocalProvisioner uses, for a kernel forked by a parent:
    its end comes as a message from the parent, signals go through its pidfd."""

    def __init__(self, pid: int, pidfd: int, conn: socket.socket, stdin: Any,
                 listening: int | None = None) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = self.stderr = None
        self.returncode: int | None = None
        self._pidfd: int | None = pidfd
        self._conn: socket.socket | None = conn
        self._buffer = b""
        self._listening = listening  # the pipe the kernel closes once it listens

    async def listening(self, timeout: float) -> bool:
        """Wait until the kernel has initialized: its sockets are bound, so the server's
        connections to them succeed at once. False if it ended first or took too long."""
        fd, self._listening = self._listening, None
        if fd is None:
            return False
        loop = asyncio.get_running_loop()
        said: asyncio.Future[None] = loop.create_future()

        def heard() -> None:
            if not said.done():
                said.set_result(None)

        loop.add_reader(fd, heard)
        try:
            await asyncio.wait_for(said, timeout)
            return os.read(fd, 1) == b"1"  # nothing: it ended before it listened
        except asyncio.TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    def poll(self) -> int | None:
        if self.returncode is not None or self._conn is None:
            return self.returncode
        while select.select([self._conn], [], [], 0)[0]:
            try:
                chunk = self._conn.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:  # the parent is gone: so is its kernel (PR_SET_PDEATHSIG)
                if self._exited():
                    self._finish(-signal.SIGKILL)
                break
            self._buffer += chunk
            if b"\n" in self._buffer:
                line = self._buffer.split(b"\n", 1)[0]
                try:
                    code = int(json.loads(line)["exit"])
                except (ValueError, KeyError, TypeError):
                    code = 1
                self._finish(code)
                break
        return self.returncode

    def _exited(self) -> bool:
        return self._pidfd is None or bool(select.select([self._pidfd], [], [], 0)[0])

    def _finish(self, code: int) -> None:
        self.returncode = code
        if self._listening is not None:
            os.close(self._listening)
            self._listening = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self._pidfd is None:
            return
        signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkedChild:
    """The part of Popen that WarmParent uses, for a parent this process forked itself
    (teamhub.spawners.forkserver, before the server started)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -signal.SIGKILL  # reaped elsewhere: gone all the same
            else:
                if done:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)


@dataclass
class WarmParent:
    """One environment's warm parent process, as this server started it."""

    key: str
    socket_path: str
    stamp: tuple[Any, ...]
    proc: subprocess.Popen[bytes] | ForkedChild
    retired: bool = field(default=False)
    keep: bool = field(default=False)  # `prewarm`'s: lives as long as the server
    # Started because a front end said its kernel is about to be opened, and no kernel
    # of it yet: a listing does not keep it (WarmParents.touch), and it goes sooner.
    hinted: bool = field(default=False)
    kernels: list[WarmProcess] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)  # a kernel or a front end

    def alive(self) -> bool:
        return self.proc.poll() is None

    def busy(self) -> bool:
        """Whether a kernel it forked still runs."""
        self.kernels = [k for k in self.kernels if k.poll() is None]
        return bool(self.kernels)

    async def ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket_path):
            if not self.alive() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def fork_kernel(self, cmd: list[str], env: dict[str, str], cwd: str) -> WarmProcess:
        """Ask the parent for a kernel (a few milliseconds: local socket, one fork)."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        read_end, write_end = os.pipe()  # the kernel's stdin, as Popen(stdin=PIPE) makes
        heard, said = os.pipe()  # the kernel closes `said` once it listens
        try:
            conn.settimeout(10)
            conn.connect(self.socket_path)
            request = {"argv": cmd, "env": env, "cwd": cwd, "launcher": LAUNCHER}
            conn.sendmsg([json.dumps(request).encode() + b"\n"],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                            array.array("i", [read_end, 1, 2, said]))])
            fds = array.array("i")
            data, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
            if not data.endswith(b"\n") or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise OSError(f"the warm parent answered {data[:200]!r}")
            pid = int(json.loads(data)["pid"])
        except BaseException:
            conn.close()
            os.close(write_end)
            os.close(heard)
            raise
        finally:
            os.close(read_end)
            os.close(said)
        conn.setblocking(False)
        return WarmProcess(pid, fds[0], conn, os.fdopen(write_end, "wb", buffering=0), heard)

    def retire(self) -> None:
        """No more kernels from this parent; it exits once its running kernels have."""
        self.retired = True
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(5)
                conn.connect(self.socket_path)
                conn.sendall(b'{"op": "retire"}\n')
        except OSError:
            # Still starting (or already gone): it has no kernels to outlive.
            if self.alive():
                self.proc.terminate()


class WarmParents:
    """This server's warm parents, one per (program, environment)."""

    def __init__(self, runtime_dir: str | None = None) -> None:
        self.runtime_dir = runtime_dir or jupyter_runtime_dir()
        self.parents: dict[str, WarmParent] = {}
        self.log: Any = log  # the server's own log, once it is known
        self.broken: set[str] = set()  # keys whose parent failed: normal starts only

    def _start(self, key: str, cmd: list[str], index: int, env: dict[str, str],
               stamp: tuple[Any, ...], hinted: bool = False) -> WarmParent:
        path = os.path.join(self.runtime_dir, f"warm-{key}-{time.monotonic_ns() % 10**9}.sock")
        parent_env = {k: v for k, v in env.items() if k not in PER_KERNEL_ENV}
        # In the loop's thread: PR_SET_PDEATHSIG ties the parent to this thread's life.
        proc = subprocess.Popen([*cmd[:index], PARENT_SCRIPT, path], env=parent_env,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=env.get("HOME") or "/")
        parent = WarmParent(key, path, stamp, proc, hinted=hinted)
        self.parents[key] = parent
        self.log.info("teamhub: warm kernel parent %s started for %s (pid %d)", key, cmd[0],
                 proc.pid)
        return parent

    def _servable(self, cmd: list[str], env: dict[str, str]) -> tuple[str, int] | None:
        """(key, launcher index) of the parent that would serve CMD/ENV; None when none
        would (not teamhub's launcher, or its parent failed before)."""
        index = launcher_index(cmd)
        if index is None:
            return None
        key = parent_key(cmd, index, env)
        return None if key in self.broken else (key, index)

    def current(self, cmd: list[str], env: dict[str, str],
                hinted: bool = False) -> WarmParent | None:
        """The usable parent for CMD/ENV, retiring a stale one and starting a fresh one
        (HINTED: for a front end's hint, see WarmParent.hinted)."""
        servable = self._servable(cmd, env)
        if servable is None:
            return None
        key, index = servable
        stamp = fingerprint(cmd[0], env)
        parent = self.parents.get(key)
        if parent is not None and (parent.stamp != stamp or not parent.alive()):
            self.log.info("teamhub: warm kernel parent %s retired (%s)", key,
                     "its environment changed" if parent.alive() else "it ended")
            parent.retire()
            parent = None
        return parent or self._start(key, cmd, index, env, stamp, hinted)

    def running(self, cmd: list[str], env: dict[str, str]) -> bool | None:
        """Whether CMD/ENV's current parent runs (starts nothing); None: no parent would
        serve it."""
        servable = self._servable(cmd, env)
        if servable is None:
            return None
        parent = self.parents.get(servable[0])
        return parent is not None and parent.alive() and parent.stamp == fingerprint(cmd[0], env)

    async def launch(self, cmd: list[str], env: dict[str, str], cwd: str) -> WarmProcess | None:
        """A kernel forked from CMD's warm parent, or None: start it the normal way."""
        parent = self.current(cmd, env)
        if parent is None:
            return None
        if not await parent.ready(START_WAIT):
            if not parent.alive():
                self.broken.add(parent.key)
                self.log.warning("teamhub: warm kernel parent for %s exited (%s); its kernels "
                            "start the normal way", cmd[0], parent.proc.returncode)
            return None
        try:
            process = parent.fork_kernel(cmd, env, cwd)
        except (OSError, ValueError, KeyError) as exc:
            self.broken.add(parent.key)
            parent.retire()
            self.log.warning("teamhub: warm kernel start failed (%s); kernels of %s start the "
                        "normal way", exc, cmd[0])
            return None
        parent.kernels.append(process)
        parent.last_used = time.monotonic()
        parent.hinted = False
        return process

    def prewarm(self, cmd: list[str], env: dict[str, str], keep: bool = False,
                hinted: bool = False) -> bool:
        """Start CMD's parent now unless it runs, so that the first kernel does not wait
        for it; KEEP: it lives as long as the server; HINTED: only a front end's hint
        asks for it (see WarmParent.hinted). Whether a parent is (now) there."""
        parent = self.current(cmd, env, hinted)
        if parent is None:
            return False
        parent.keep = parent.keep or keep
        parent.hinted = parent.hinted and hinted  # wanted for more than a hint now
        parent.last_used = time.monotonic()
        return True

    def hinted(self) -> int:
        """How many parents run that only a front end's hint asked for."""
        return sum(1 for p in self.parents.values() if p.hinted and p.alive())

    def touch(self) -> None:
        """A front end is open: the parents count as used now (not the hinted ones)."""
        now = time.monotonic()
        for parent in self.parents.values():
            if not parent.hinted:
                parent.last_used = now

    def expire(self, idle: float, hinted_idle: float = HINTED_IDLE_EXIT) -> list[str]:
        """Stop the parents that forked no running kernel and were not used for IDLE
        seconds, HINTED_IDLE for those only a hint asked for (never `prewarm`'s); their
        keys."""
        now = time.monotonic()
        stopped = []
        for key, parent in list(self.parents.items()):
            if parent.keep or not parent.alive():
                continue
            limit = min(idle, hinted_idle) if parent.hinted else idle
            if parent.busy():
                parent.last_used = now
            elif now - parent.last_used >= limit:
                self.log.info("teamhub: warm kernel parent %s stopped: no kernel of it %s for "
                              "%ds", key, "since a front end's hint" if parent.hinted
                              else "and no open JupyterLab", limit)
                parent.retire()
                del self.parents[key]
                stopped.append(key)
        return stopped

    def adopt(self, cmd: list[str], env: dict[str, str], forked: Forked) -> str | None:
        """Take FORKED as the parent of CMD's kernels; None if taken, else why not (and
        it is stopped). It imported its modules in the fork server, as root, with the
        fork server's environment and sys.path: only a kernel that a fresh interpreter
        would give the very same modules may come from it."""
        index = launcher_index(cmd)
        why = None
        if index is None:
            why = "the default kernel is not teamhub's launcher"
        elif cmd[0] != sys.executable and os.path.realpath(Path(cmd[0]).parent.parent) \
                != os.path.realpath(Path(sys.executable).parent.parent):
            why = f"the default kernel runs {cmd[0]}, not the server's python"
        elif any(k.startswith(("LD_", "PYTHON")) for k in env):
            # The dynamic loader and the interpreter read these only when a process starts.
            why = "the kernel's environment sets " + ", ".join(
                sorted(k for k in env if k.startswith(("LD_", "PYTHON"))))
        elif fingerprint(cmd[0], env) != forked.stamp:
            why = ("the user's own site-packages (~/.local) or the runtime's changed since "
                   "the fork server started")
        if why is not None:
            forked.proc.terminate()
            return why
        assert index is not None
        key = parent_key(cmd, index, env)
        old = self.parents.get(key)
        if old is not None:
            old.retire()
        self.parents[key] = WarmParent(key, forked.socket_path, forked.stamp, forked.proc,
                                       keep=True)
        self.log.info("teamhub: warm kernel parent %s forked with the server (pid %d)", key,
                      forked.proc.pid)
        return None


@dataclass
class Forked:
    """The default kernel's warm parent the fork server made beside this server."""

    socket_path: str
    proc: ForkedChild
    stamp: tuple[Any, ...]  # fingerprint() of the fork server's python when it preloaded


_forked: Forked | None = None


def adopt_forked(socket_path: str, pid: int, stamp: tuple[Any, ...]) -> None:
    """Called in the server's process, before the server starts (teamhub.spawners.forkserver):
    PID, its child, is a warm parent listening (soon) on SOCKET_PATH."""
    global _forked  # noqa: PLW0603 - one per server process
    _forked = Forked(socket_path, ForkedChild(pid), stamp)


def take_forked() -> Forked | None:
    """The forked parent not yet used or stopped, once."""
    global _forked  # noqa: PLW0603 - one per server process
    forked, _forked = _forked, None
    return forked


def discard_forked() -> None:
    """Stop the forked parent: this server starts no warm parent with itself."""
    forked = take_forked()
    if forked is not None:
        forked.proc.terminate()


_parents: WarmParents | None = None


def parents() -> WarmParents:
    global _parents  # noqa: PLW0603 - one set of parents per server process
    if _parents is None:
        _parents = WarmParents()
    return _parents


class WarmProvisioner(LocalProvisioner):
    """LocalProvisioner whose kernels come from a warm parent whenever one can serve."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        extra = set(kwargs) - {"env", "cwd", "independent", "extra_arguments", "kernel_id"}
        # A missing folder: Popen's own error says so, where a forked kernel would just die.
        if extra or kwargs.get("independent") or not os.path.isdir(kwargs.get("cwd") or "."):
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())  # as launch_kernel sets it
        cwd = str(kwargs.get("cwd") or os.getcwd())
        cmd = [os.path.expanduser(part) for part in cmd]
        parents().log = self.log
        name = getattr(self.parent, "kernel_name", "")
        if name:  # off the loop: a file in the user's home
            asyncio.get_running_loop().run_in_executor(None, recent_kernels.remember, name)
        process = await parents().launch(cmd, env, cwd)
        if process is None:
            return await super().launch_kernel(cmd, **kwargs)
        self.process = process  # type: ignore[assignment] # what LocalProvisioner uses of Popen
        self.pid = process.pid
        self.pgid = process.pid  # a session leader: its own process group
        self.cwd = cwd
        # Returning before the kernel listens costs more than the wait: the server then
        # connects to sockets not yet bound (see warm_parent.py).
        await process.listening(START_WAIT)
        return self.connection_info


PYTHON_NAMES = ("python", f"python{sys.version_info[0]}",
                "python{}.{}".format(*sys.version_info[:2]))


def kernel_command(serverapp: Any, name: str) -> tuple[list[str], dict[str, str]]:
    """The program and environment jupyter_client will give a kernel of NAME in SERVERAPP
    (kernel.json's env applied as it applies it); the spec's errors as they are."""
    spec = serverapp.kernel_spec_manager.get_kernel_spec(name)
    cmd = list(spec.argv)
    if cmd and cmd[0] in PYTHON_NAMES:
        cmd[0] = sys.executable  # what KernelManager.format_kernel_cmd does
    env = dict(os.environ)
    env.update({k: Template(v).safe_substitute(env) for k, v in (spec.env or {}).items()})
    env.pop("PYTHONEXECUTABLE", None)
    env["JPY_PARENT_PID"] = str(os.getpid())
    return cmd, env


def prewarm_default(serverapp: Any) -> None:
    """Start the parent of the server's default kernel, to live as long as the server."""
    parents().log = serverapp.log
    try:
        cmd, env = kernel_command(serverapp, serverapp.kernel_manager.default_kernel_name)
    except Exception as exc:  # noqa: BLE001 - its first kernel then starts the parent
        serverapp.log.warning("teamhub: no warm parent for the default kernel yet: %s", exc)
        discard_forked()
        return
    forked = take_forked()
    if forked is not None:
        why = parents().adopt(cmd, env, forked)
        if why is None:
            return
        serverapp.log.info("teamhub: the warm parent forked with the server is not used (%s); "
                           "starting one", why)
    parents().prewarm(cmd, env, keep=True)
