"""Move the calling root process into a running container, the way `docker exec` does.

The docker backend's fast start: the container is created and started with only a
holder process in it; a child of the (warm, already-imported) fork server then joins
the container's cgroups and namespaces and becomes the user's server there, instead
of a fresh interpreter importing everything again inside the container.

What `enter` does, in runc's order: pin the container's init process (a pidfd, so a
recycled pid can never be entered by mistake) and check it belongs to the container;
join every cgroup hierarchy it is in (so memory, CPU and pids limits and the OOM
killer count the server), then setns into each namespace that differs from ours
(cgroup, ipc, uts, net, pid, mount last). A different user namespace (userns-remap)
is refused: root here would not be root there. The pid namespace applies to children
only: the caller forks once more. `harden` then gives up what Docker takes from a
container's processes (bounding and ambient capabilities, new privileges); the uid
drop itself is sandbox.become's. `seccomp_filters` copies the container's own seccomp
filter (Docker's profile, as compiled for it) from its init process, and
`apply_seccomp` installs it as the very last step before the server runs.

`hold_open` opens the holder's keep-alive FIFO: the container's holder reads it and
exits at end of file, i.e. when the server (the only writer) is gone, so the container
ends with its server as it does when the server is the container's own command.

Plain OS code through libc (Python 3.11 has no os.setns). Nothing here imports
JupyterHub.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import stat
import time

from ..errors import ContainerEnterError

CLONE_FLAGS = {"cgroup": 0x02000000, "ipc": 0x08000000, "uts": 0x04000000,
               "net": 0x40000000, "pid": 0x20000000, "mnt": 0x00020000}
# runc's order; the mount namespace last, since it takes this process's view of /proc.
ORDER = ("cgroup", "ipc", "uts", "net", "pid", "mnt")
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000


class _SockFilter(ctypes.Structure):
    """struct sock_filter from <linux/filter.h>: one classic BPF instruction."""

    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: a BPF program as seccomp takes it."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise ContainerEnterError(f"{what}: {os.strerror(err)}")


def _cgroup_mounts() -> dict[str, tuple[str, str]]:
    """Hierarchy key (`memory`, `cpu,cpuacct`, `name=systemd`, `` for v2) → (mount root,
    mount point), from this process's mountinfo."""
    mounts: dict[str, tuple[str, str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            root, point = fields[3], fields[4].replace("\\040", " ")
            if tail[0] == "cgroup2":
                mounts.setdefault("", (root, point))
                continue
            options = tail[2].split(",")
            keys = [o for o in options if o.startswith("name=") or "=" not in o]
            for key in keys:
                mounts.setdefault(key, (root, point))
    return mounts


def cgroup_folders(pid: int) -> list[str]:
    """The cgroup folders (on this machine's cgroup mounts) process PID is in."""
    mounts = _cgroup_mounts()
    folders = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            mount = None
            for key in controllers.split(",") if controllers else [""]:
                mount = mounts.get(key)
                if mount:
                    break
            if mount is None:
                continue  # a hierarchy not mounted here: nothing to join
            root, point = mount
            if root != "/" and path.startswith(root):
                path = path[len(root):]
            folder = os.path.join(point, path.lstrip("/"))
            if os.path.isfile(os.path.join(folder, "cgroup.procs")) and folder not in folders:
                folders.append(folder)
    return folders


def _alive(pidfd: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    return True


def differing_namespaces(pid: int) -> list[str]:
    """Names of PID's namespaces that are not ours, in the order they are entered."""
    return [name for name in ORDER
            if os.stat(f"/proc/{pid}/ns/{name}").st_ino != os.stat(f"/proc/self/ns/{name}").st_ino]


def enter(pid: int, container_id: str) -> int:
    """Join the cgroups and namespaces of PID, the init process of container CONTAINER_ID.

    Call as root, single-threaded, in a process that is about to become the server;
    fork once more afterwards for the pid namespace to apply. Returns a write descriptor
    on the container's own output (what `docker logs` shows), opened before the mount
    namespace changes.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        raise ContainerEnterError(f"container process {pid} is gone ({exc.strerror})") from None
    fds: list[int] = []
    try:
        folders = cgroup_folders(pid)
        with open(f"/proc/{pid}/cgroup") as f:
            if container_id not in f.read():
                raise ContainerEnterError(f"process {pid} is not in container {container_id[:12]}")
        if not folders:
            raise ContainerEnterError(f"no cgroup of container {container_id[:12]} found here")
        if os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
            raise ContainerEnterError("the container has a user namespace of its own "
                                      "(userns-remap): root here is not root there")
        names = differing_namespaces(pid)
        for name in names:
            fds.append(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
        output = os.open(f"/proc/{pid}/fd/1", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        fds.append(output)
        if not stat.S_ISFIFO(os.fstat(output).st_mode):
            # Docker's log pipe; reopening anything else through /proc as root could hand
            # the server a file it may not write.
            raise ContainerEnterError(f"container {container_id[:12]}'s output is not a pipe")
        # Everything above named the process behind the pidfd only if it still lives.
        if not _alive(pidfd):
            raise ContainerEnterError(f"container {container_id[:12]} stopped while entering")
        for folder in folders:
            with open(os.path.join(folder, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        libc = _libc()
        for name, fd in zip(names, fds, strict=False):
            _call(libc.setns(fd, CLONE_FLAGS[name]), f"entering the container's {name} namespace")
        fds.remove(output)
        return output
    except OSError as exc:
        raise ContainerEnterError(f"cannot enter container {container_id[:12]}: {exc}") from None
    finally:
        for fd in fds:
            os.close(fd)
        os.close(pidfd)


def harden() -> None:
    """Take what Docker takes from every process of a container: all capabilities from the
    bounding and ambient sets, and new privileges (setuid files, file capabilities)."""
    libc = _libc()
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        _call(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    _call(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
          "clearing ambient capabilities")
    _call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")


def seccomp_filters(pid: int) -> list[bytes]:
    """The seccomp filters process PID runs under (Docker's profile, as the engine compiled
    it for this container), newest first, as raw BPF programs; [] when it has none.

    Read with PTRACE_SECCOMP_GET_FILTER (root, CONFIG_CHECKPOINT_RESTORE): the process is
    stopped for the moment of the read and goes on as before."""
    with open(f"/proc/{pid}/status") as f:
        mode = next((line.split()[1] for line in f if line.startswith("Seccomp:")), "0")
    if mode == "0":
        return []
    if mode != "2":
        raise ContainerEnterError(f"process {pid} is in strict seccomp mode")
    libc = _libc()
    ptrace = libc.ptrace
    ptrace.restype = ctypes.c_long
    ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if ptrace(PTRACE_SEIZE, pid, None, None) != 0:
        err = ctypes.get_errno()
        raise ContainerEnterError(f"cannot read the container's seccomp filter (ptrace: "
                                  f"{os.strerror(err)})")
    programs: list[bytes] = []
    try:
        _call(ptrace(PTRACE_INTERRUPT, pid, None, None), "stopping the container's init")
        os.waitpid(pid, WALL)
        while True:
            count = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, len(programs), None)
            if count < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:
                    break
                raise ContainerEnterError(f"cannot read the container's seccomp filter: "
                                          f"{os.strerror(err)}")
            program = (_SockFilter * count)()
            if ptrace(PTRACE_SECCOMP_GET_FILTER, pid, len(programs), program) != count:
                raise ContainerEnterError("the container's seccomp filter changed while read")
            programs.append(bytes(program))
    finally:
        ptrace(PTRACE_DETACH, pid, None, None)
    return programs


def apply_seccomp(programs: list[bytes]) -> None:
    """Put this process under PROGRAMS (from `seccomp_filters`), oldest first as they were
    installed. Needs no_new_privs (`harden`); the last step before the server runs."""
    libc = _libc()
    for raw in reversed(programs):
        program = (_SockFilter * (len(raw) // ctypes.sizeof(_SockFilter))).from_buffer_copy(raw)
        fprog = _SockFprog(len(program), ctypes.cast(program, ctypes.POINTER(_SockFilter)))
        _call(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
              "installing the container's seccomp filter")


def make_keepalive(path: str, uid: int, gid: int) -> None:
    """A fresh FIFO at PATH that only the user (the container's holder) can open."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    os.chown(path, uid, gid)


def hold_open(path: str, timeout: float = 10) -> int:
    """A write descriptor on the holder's keep-alive FIFO, once the holder reads it.

    The FIFO's folder is the user's: root opens nothing but a FIFO there (no symlink,
    checked on the open descriptor), so the server is never handed another file."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            # Non-blocking: ENXIO until a reader has it open, instead of waiting forever.
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                waited = f" within {timeout:.0f}s" if exc.errno == errno.ENXIO else ""
                raise ContainerEnterError(f"cannot open the container's keep-alive {path}"
                                          f"{waited} ({exc.strerror})") from None
            time.sleep(0.005)
            continue
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            raise ContainerEnterError(f"{path} is not the container's keep-alive FIFO")
        return fd
