"""A warm kernel parent: one environment's interpreter with ipykernel already imported,
forking a kernel per request (run by teamhub.envs.warm_kernels inside the user's server).

A kernel started the normal way spends ~0.4 s importing ipykernel, IPython, zmq and
tornado before it can answer. This process, started by the user's own server with
exactly the environment its kernels would get, pays that once; each kernel is then a
fork of it that runs teamhub's kernel launcher in-process (see kernel_launcher.py:
working folder off sys.path while starting, appended at the end afterwards).

It runs under the environment's interpreter, not teamhub's, so, like the launcher, it
imports only the standard library and ipykernel. It is started as
`PYTHON [-P] warm_parent.py SOCKET` and listens on SOCKET (in the server's private
runtime folder, 0700, so only the user's own processes can connect).

Protocol, one request per connection: the server sends one JSON line
`{"argv": [...], "env": {...}, "cwd": "..."}` with four descriptors (the kernel's
stdin, stdout, stderr, and the write end of a pipe the kernel closes once it listens)
attached; this process answers `{"pid": N}` with the kernel's pidfd attached, and, when
the kernel ends, `{"exit": CODE}` on the same connection. `{"op": "retire"}` stops it
from taking requests: it exits once its kernels have.

The kernel writes one byte to that pipe and closes it once it has initialized (its
sockets bound, its shell made), and the server's provisioner returns only then: the
server connects its own sockets (the activity watcher, the websocket's) right after,
and ZeroMQ retries a connection to a socket that is not bound yet only 100 ms later,
long enough for the server to miss the kernel's first status messages and wait for
the next ones (half a second, jupyter_server's nudge). (A request with three
descriptors, from a server of an older teamhub, is served without the pipe.)

The kernel process is a session leader with the requested environment, working
folder and standard streams and no other descriptor, exactly as jupyter_client's
launch_kernel makes one; its /proc cmdline and environ are pointed at what an exec'd
kernel would show. A kernel dies with this parent (PR_SET_PDEATHSIG), and this parent
with the server that started it, as a normal kernel notices its server's end.
"""

from __future__ import annotations

import array
import ctypes
import json
import os
import selectors
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
PR_SET_MM = 35
PR_SET_MM_MAP = 14
MAX_REQUEST = 1 << 20
# What every kernel imports while it initializes, beyond ipykernel.kernelapp (the
# debugger's debugpy alone is ~130 modules); none of it starts a thread at import.
PRELOAD = ("ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
           "IPython.core.history", "IPython.core.completerlib", "IPython.core.debugger",
           "IPython.core.logger", "IPython.core.oinspect", "IPython.extensions.storemagic",
           "IPython.utils.wildcard", "jupyter_client.localinterfaces", "psutil", "pdb",
           "sqlite3", "faulthandler", "tornado.platform.asyncio")
# IPKernelApp traits whose defaults are read from these variables at import.
ENV_DEFAULTS = {"parent_handle": "JPY_PARENT_PID", "interrupt": "JPY_INTERRUPT_EVENT"}
_kept_buffers: list[ctypes.Array[ctypes.c_char]] = []


class _MmMap(ctypes.Structure):
    """struct prctl_mm_map from <linux/prctl.h> (as teamhub.system.sandbox has it)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
        "start_stack", "arg_start", "arg_end", "env_start", "env_end")] + [
        ("auxv", ctypes.c_void_p), ("auxv_size", ctypes.c_uint32),
        ("exe_fd", ctypes.c_uint32)]  # type: ignore[assignment]


_libc = ctypes.CDLL(None, use_errno=True)


def _show_as_exec(argv, env):
    """Point /proc/self/cmdline and environ at ARGV and ENV (PR_SET_MM_MAP, the
    checkpoint/restore form, needs no privilege); best effort."""
    args = b"".join(os.fsencode(a) + b"\0" for a in argv)
    envs = b"".join(os.fsencode(f"{k}={v}") + b"\0" for k, v in env.items())
    buf = ctypes.create_string_buffer(args + envs)
    _kept_buffers.append(buf)
    base = ctypes.addressof(buf)
    with open("/proc/self/stat", "rb") as f:
        fields = [0, 0, 0, 0, *(int(x) for x in f.read().rsplit(b")", 1)[1].split()[1:])]
    _libc.sbrk.restype = ctypes.c_void_p
    mm = _MmMap(start_code=fields[26], end_code=fields[27], start_data=fields[45],
                end_data=fields[46], start_brk=fields[47], brk=_libc.sbrk(0),
                start_stack=fields[28], arg_start=base, arg_end=base + len(args),
                env_start=base + len(args), env_end=base + len(args) + len(envs),
                auxv=None, auxv_size=0, exe_fd=0xFFFFFFFF)
    _libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.c_void_p(ctypes.addressof(mm)),
                ctypes.c_ulong(ctypes.sizeof(mm)), ctypes.c_ulong(0))


def _env_defaults(app_class):
    """Trait defaults ipykernel takes from the environment when it is imported (whether its
    server is watched: JPY_PARENT_PID), from this kernel's own environment: the parent may
    have imported it with another one (the fork server's, teamhub.spawners.forkserver)."""
    for name, variable in ENV_DEFAULTS.items():
        trait = app_class.class_traits().get(name)
        if trait is None:
            continue
        try:
            value = int(os.environ.get(variable) or 0)
        except ValueError:
            continue  # as ipykernel's own import would fail: left as it is
        trait.default_value = value
        cached = getattr(app_class, "_static_immutable_initial_values", None)
        if isinstance(cached, dict) and name in cached:  # traitlets 5.10+
            cached[name] = value


def _set_aside(fd):
    """FD moved to a high number, not inherited: the kernel's own descriptors get the
    numbers they get in a kernel started the normal way."""
    high = min(os.sysconf("SC_OPEN_MAX"), 1024) - 1
    os.dup2(fd, high, inheritable=False)
    return high


def _kernel(request, fds, keep_open, set_at_import):
    """In the forked child: become the kernel REQUEST describes; never returns."""
    code = 1
    try:
        for closable in keep_open:
            closable.close()
        os.setsid()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        listening = _set_aside(fds[3]) if len(fds) > 3 else None
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)  # dup2 makes 0-2 inheritable, as Popen leaves them
        if listening is None:
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        else:
            os.closerange(3, listening)
            os.closerange(listening + 1, os.sysconf("SC_OPEN_MAX"))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update(set_at_import)
        argv = request["argv"]
        _show_as_exec(argv, request["env"])
        # What `python [-P] kernel_launcher.py ARGS` runs (kept in step with that file).
        sys.argv = list(argv[argv.index(request["launcher"]):])
        from ipykernel.kernelapp import IPKernelApp

        _env_defaults(IPKernelApp)
        app = IPKernelApp.instance()
        app.initialize([*sys.argv[1:], "--IPKernelApp.ignore_cwd=True"])
        if listening is not None:
            os.write(listening, b"1")
            os.close(listening)
        sys.path.append("")
        app.start()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:  # noqa: BLE001 - a kernel's death is reported, not raised here
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _receive(conn):
    """One request line and its descriptors."""
    data = b""
    fds: list[int] = []
    while not data.endswith(b"\n"):
        fdarray = array.array("i")
        msg, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(4 * fdarray.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fdarray.frombytes(payload[:len(payload) - len(payload) % fdarray.itemsize])
                fds.extend(fdarray)
        if not msg:
            break
        data += msg
        if len(data) > MAX_REQUEST:
            break
    return json.loads(data) if data.endswith(b"\n") else None, fds


def preload():
    """Import what every kernel imports; the variables those imports set (the debugger's
    PYDEVD_USE_FRAME_EVAL): each kernel sets them while importing the same modules, so
    each forked kernel gets them too."""
    before = dict(os.environ)
    import ipykernel.kernelapp  # noqa: F401 - the point of this process

    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001,S112 - an older ipykernel: the kernel imports it
            continue
    return {k: v for k, v in os.environ.items() if before.get(k) != v}


def _tie_to_server():
    """Die with the server that started this process; False if it is gone already."""
    server = os.getppid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == server


def main(path):
    # The server that started this process: if it is gone already, so is the reason to be.
    if not hasattr(os, "pidfd_open"):  # Python < 3.9: the server starts kernels itself
        return
    if not _tie_to_server():
        return
    serve(path, preload())


def serve_forked(path, set_at_import):
    """Be the warm parent in a child the fork server's server process forked off before it
    started its server (teamhub.spawners.forkserver): PRELOAD is imported there already."""
    if _tie_to_server():
        serve(path, set_at_import)


def serve(path, set_at_import):
    """Fork a kernel per request on PATH until retired and the last kernel has ended."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    listener.bind(tmp)
    listener.listen(16)
    os.rename(tmp, path)  # appears only once it accepts
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "listen")
    # pidfd → (pid, the connection its end is reported on)
    kernels: dict[int, tuple[int, socket.socket]] = {}
    listening = True
    while listening or kernels:
        for key, _ in sel.select():
            if key.data == "listen":
                conn, _ = listener.accept()
                conn.settimeout(10)  # a client that says nothing does not stall the rest
                try:
                    request, fds = _receive(conn)
                except (OSError, ValueError):
                    conn.close()
                    continue
                if request is None or request.get("op") == "retire" or len(fds) not in (3, 4):
                    for fd in fds:
                        os.close(fd)
                    if request is not None and request.get("op") == "retire":
                        listening = False
                        sel.unregister(listener)
                        listener.close()
                        if os.path.exists(path):
                            os.unlink(path)
                    conn.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                open_now = [sel, conn, *(k for k in (listener,) if listening)]
                pid = os.fork()
                if pid == 0:
                    for pidfd in kernels:
                        os.close(pidfd)
                    _kernel(request, fds, open_now, set_at_import)
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                try:
                    conn.sendmsg([json.dumps({"pid": pid}).encode() + b"\n"],
                               [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 array.array("i", [pidfd]))])
                except OSError:
                    pass
                kernels[pidfd] = (pid, conn)
                sel.register(pidfd, selectors.EVENT_READ, "kernel")
            else:
                pidfd = key.fd
                pid, conn = kernels.pop(pidfd)
                sel.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                try:
                    conn.sendall(json.dumps(
                        {"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()


if __name__ == "__main__":
    if not getattr(sys.flags, "safe_path", False):
        del sys.path[0]  # this file's folder, put there by `python FILE`
    main(sys.argv[1])
