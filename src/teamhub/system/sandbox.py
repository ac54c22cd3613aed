"""Turn a root process into one user's freshly started server process.

`become(spec)` is the single procedure both start paths run while still root:
the normal path (`python -m teamhub.system.sandbox`, which reads the spec from
its stdin and then execs the server) and the fork server's children (which run
the server in the same process). Everything a process could inherit from
whoever made it is reset here, so the two paths end up indistinguishable:
session, stdio, file descriptors, signal dispositions and mask, resource
limits, optional systemd scope and private /tmp and /dev/shm, groups/gid/uid,
umask, cwd, environment, and the random module's state.

Plain OS plumbing: nothing here imports JupyterHub.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import resource
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from ..errors import SandboxError
from .namespaces import private_mounts
from .systemd import enter_scope

PR_SET_DUMPABLE = 4
PR_SET_MM = 35
PR_SET_MM_MAP = 14

# Every limit a process has; the spec records the values a normally started server gets.
RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}



@dataclass
class LaunchSpec:
    """Everything a user's server process is made of, besides the program itself."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    username: str | None = None
    uid: int | None = None
    gid: int | None = None
    umask: int = 0o077
    log_path: str | None = None
    log_fd: int | None = None
    rlimits: dict[str, list[int]] = field(default_factory=dict)
    # Owned by the systemd helper: {"unit": str, "properties": {...}} and a /tmp source.
    scope: dict[str, Any] | None = None
    private_tmp: str | None = None
    # Bytes of the server's own /dev/shm (a tmpfs in its mount namespace); None: the host's.
    shm_size: int | None = None
    # GPU device nodes to cover and /proc/driver/nvidia/gpus entries to mask in its mount
    # namespace: {"hide": [...], "mask": [...], "cover": file}; None: nothing hidden.
    devices: dict[str, Any] | None = None
    # Docker backend's fast start: {"pid": the container's init (host pid), "id": its id,
    # "keepalive": its holder's FIFO}; the fork server's child enters it (system.nsenter).
    container: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LaunchSpec:
        raw = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("argv"), list) or not raw["argv"]:
            raise SandboxError("launch spec must be a JSON object with a non-empty argv")
        return cls(**raw)


def current_rlimits() -> dict[str, list[int]]:
    """This process's limits, to be given to a server started from elsewhere."""
    return {name: list(resource.getrlimit(res)) for name, res in RLIMITS.items()}


def _stdio(spec: LaunchSpec) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if spec.log_path:
        log = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    elif spec.log_fd is not None:
        log = spec.log_fd
    else:
        log = os.open(os.devnull, os.O_WRONLY)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if log > 2:
        os.close(log)


def _close_other_fds(keep: tuple[int, ...] = ()) -> None:
    if keep:
        for low, high in zip((2, *sorted(keep)), (*sorted(keep), 65536), strict=True):
            os.closerange(low + 1, high)
    else:
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
    # closerange stops at the current soft limit; a descriptor above it (opened before the
    # limit was lowered) would survive, so list what is really open.
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _reset_signals() -> None:
    if hasattr(signal, "set_wakeup_fd"):
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:
            pass
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # real-time signals reserved by the C library
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def python_signal_defaults() -> None:
    """What a freshly started Python sets up before running any code (for in-process servers)."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _coerce_c_locale() -> None:
    """PEP 538, as a freshly started Python does it to its own environment."""
    env = os.environ
    if env.get("LC_ALL") or env.get("PYTHONCOERCECLOCALE") == "0":
        return
    if (env.get("LC_CTYPE") or env.get("LANG") or "C") in ("C", "POSIX"):
        env["LC_CTYPE"] = "C.UTF-8"


def _set_rlimits(limits: dict[str, list[int]]) -> None:
    for name, (soft, hard) in limits.items():
        res = RLIMITS.get(name)
        if res is None:
            continue
        try:
            resource.setrlimit(res, (soft, hard))
        except (OSError, ValueError) as exc:
            raise SandboxError(f"cannot set {name} to {soft}/{hard}: {exc}") from None


def _drop_to(spec: LaunchSpec) -> None:
    if spec.uid is None:
        return
    if spec.gid is None or not spec.username:
        raise SandboxError("a spec with a uid needs gid and username too")
    os.initgroups(spec.username, spec.gid)
    os.setgid(spec.gid)
    os.setuid(spec.uid)
    if os.getresuid() != (spec.uid,) * 3 or os.getresgid() != (spec.gid,) * 3:
        raise SandboxError("uid/gid did not change completely")
    if spec.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise SandboxError("root could be regained after dropping privileges")


class _MmMap(ctypes.Structure):
    """struct prctl_mm_map from <linux/prctl.h>."""

    _fields_: ClassVar[Sequence[tuple[str, Any]]] = [(name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
        "start_stack", "arg_start", "arg_end", "env_start", "env_end")] + [
        ("auxv", ctypes.c_void_p), ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(*args: int) -> None:
    if _libc().prctl(*[ctypes.c_ulong(a) for a in args]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# Kept alive for the life of the process: /proc/<pid>/cmdline and environ point into it.
_proc_strings: list[Any] = []


def show_as_exec(cmdline: list[str], env: dict[str, str]) -> None:
    """Point /proc/self/cmdline and /proc/self/environ at CMDLINE and ENV.

    A forked process would otherwise show its parent's start-up arguments and
    environment there, unlike a server that was exec'd. Needs CAP_SYS_RESOURCE
    (run while still root).
    """
    args = b"".join(a.encode() + b"\0" for a in cmdline)
    envs = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
    buf = ctypes.create_string_buffer(args + envs)
    _proc_strings.append(buf)
    base = ctypes.addressof(buf)
    with open("/proc/self/stat", "rb") as f:
        fields = [0, 0, 0, 0, *(int(x) for x in f.read().rsplit(b")", 1)[1].split()[1:])]
    # fields[n] is field n of proc(5)'s /proc/pid/stat.
    libc = _libc()
    libc.sbrk.restype = ctypes.c_void_p
    mm = _MmMap(
        start_code=fields[26], end_code=fields[27], start_data=fields[45],
        end_data=fields[46], start_brk=fields[47], brk=libc.sbrk(0), start_stack=fields[28],
        arg_start=base, arg_end=base + len(args),
        env_start=base + len(args), env_end=base + len(args) + len(envs),
        auxv=None, auxv_size=0, exe_fd=0xFFFFFFFF,
    )
    # PR_SET_MM_MAP needs no CAP_SYS_RESOURCE (made for checkpoint/restore), unlike the
    # single-field forms.
    if libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.c_void_p(ctypes.addressof(mm)),
                  ctypes.c_ulong(ctypes.sizeof(mm)), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"cannot set /proc/self/cmdline and environ: {os.strerror(err)}")


def exec_cmdline(argv: list[str]) -> list[str]:
    """The command line the kernel shows for exec'ing ARGV (a script shows its interpreter)."""
    try:
        with open(argv[0], "rb") as f:
            first = f.readline(256)
    except OSError:
        return argv
    if not first.startswith(b"#!"):
        return argv
    return [*first[2:].decode(errors="replace").split(maxsplit=1), *argv]


def become(spec: LaunchSpec, *, in_process: bool = False, keep_fds: tuple[int, ...] = ()) -> None:
    """Make this (root) process the user's server process described by SPEC.

    With IN_PROCESS the caller goes on to run the server in this very process
    (the fork server's children): Python's own start-up signal settings are
    restored, the environment shown in /proc is replaced, and the process is
    made dumpable again as an exec would. KEEP_FDS stay open (close-on-exec ones still
    close at the server's first exec).
    """
    os.setsid()
    _stdio(spec)
    _close_other_fds(keep_fds)
    _reset_signals()
    _set_rlimits(spec.rlimits)
    if spec.scope is not None:
        enter_scope(spec.scope["unit"], spec.scope["properties"])
    if spec.private_tmp is not None or spec.shm_size is not None or spec.devices:
        private_mounts(tmp=spec.private_tmp, shm_size=spec.shm_size, devices=spec.devices)
    if in_process:
        show_as_exec(exec_cmdline(spec.argv), spec.env)
    _drop_to(spec)
    os.umask(spec.umask)
    os.chdir(spec.cwd)
    os.environ.clear()
    os.environ.update(spec.env)
    random.seed()
    if in_process:
        _coerce_c_locale()
        # Changing uid made the process undumpable (its /proc files root's); an exec
        # would make it dumpable again, and its memory is only its own from here.
        _prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        python_signal_defaults()


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def main() -> None:
    """Launcher: read a spec from stdin, become its user, exec its program."""
    try:
        spec = LaunchSpec.from_json(_read_all(0))
        become(spec)
        os.execve(spec.argv[0], spec.argv, spec.env)
    except (OSError, SandboxError, ValueError, TypeError) as exc:
        print(f"teamhub sandbox: cannot start server: {exc}", file=sys.stderr, flush=True)
        os._exit(127)


if __name__ == "__main__":
    main()
