"""system/sockets.py against real sockets: root's, and those of a process run as nobody."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from teamhub.system import sockets

pytestmark = pytest.mark.system

NOBODY = 65534

LISTENER = """
import socket, sys, time
family, address = sys.argv[1], sys.argv[2]
if family == "unix":
    s = socket.socket(socket.AF_UNIX)
    s.bind(address)
else:
    s = socket.socket(socket.AF_INET6 if family == "6" else socket.AF_INET)
    if family == "6":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((address, int(sys.argv[3])))
s.listen()
print("listening", flush=True)
time.sleep(60)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def as_nobody(tmp_path: Path):
    """Start LISTENER as user nobody; yields a function (args) -> its pid."""
    folder = Path(f"/tmp/teamhub-sockets-{os.getpid()}")
    folder.mkdir(mode=0o755)
    script = folder / "listen.py"
    script.write_text(LISTENER)
    script.chmod(0o644)
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> int:
        proc = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup",
                                 "--clear-groups", "/usr/bin/python3", str(script), *args],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "listening"
        return proc.pid

    start.folder = folder  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", str(folder)], check=True)


def test_far_end_and_listener_of_a_root_socket() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            conn = sockets.connection(client)
            assert conn is not None and conn.server_end.uid == 0
            (listener,) = conn.listeners
            assert listener.inode == os.fstat(server.fileno()).st_ino
            assert sockets.holds(os.getpid(), listener.inode)
            assert sockets.holders(listener.inode) == [os.getpid()]


def test_a_squatter_is_seen_as_itself(as_nobody) -> None:
    port = free_port()
    pid = as_nobody("4", "127.0.0.1", str(port))
    with socket.create_connection(("127.0.0.1", port)) as client:
        conn = sockets.connection(client)
        # Not yet accepted (inode 0), still the listener's owner.
        assert conn is not None and conn.server_end.uid == NOBODY and conn.server_end.inode == 0
        (listener,) = conn.listeners
        assert listener.uid == NOBODY
        assert sockets.holders(listener.inode) == [pid]
        assert not sockets.holds(os.getpid(), listener.inode)
    assert sockets.describe_process(pid) == f"pid {pid} (python3) of user nobody"


def test_the_listener_that_takes_the_connection_is_the_one_looked_at(as_nobody) -> None:
    """Root on 127.0.0.1:P, nobody on [::]:P (IPv6 only): a connection to 127.0.0.1:P
    is root's, and only root's listener is a candidate."""
    if not Path("/proc/net/tcp6").exists():
        pytest.skip("no IPv6 on this machine")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        as_nobody("6", "::", str(port))
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn = sockets.connection(client)
            (listener,) = conn.listeners
            assert listener.uid == 0 and str(listener.local[0]) == "127.0.0.1"
            assert conn.server_end.uid == 0
        with socket.create_connection(("::1", port)) as client:
            conn = sockets.connection(client)
            (listener,) = conn.listeners
            assert listener.uid == NOBODY and str(listener.local[0]) == "::"
            assert conn.server_end.uid == NOBODY


def test_dual_stack_listener_takes_ipv4_connections() -> None:
    if not socket.has_ipv6 or not Path("/proc/net/tcp6").exists():
        pytest.skip("no IPv6 on this machine")
    with socket.socket(socket.AF_INET6) as server:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(("::", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            conn = sockets.connection(client)
            assert conn is not None and conn.server_end.uid == 0
            (listener,) = conn.listeners
            assert str(listener.local[0]) == "::"
            assert sockets.holds(os.getpid(), listener.inode)


def test_peer_credentials_of_a_unix_socket(as_nobody) -> None:
    path = as_nobody.folder / "s.sock"
    as_nobody.folder.chmod(0o777)  # nobody must be able to create the socket
    pid = as_nobody("unix", str(path))
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
        peer = sockets.peer_credentials(client)
    assert (peer.pid, peer.uid) == (pid, NOBODY)
    a, b = socket.socketpair()
    with a, b:
        mine = sockets.peer_credentials(a)
    assert (mine.pid, mine.uid, mine.gid) == (os.getpid(), os.getuid(), os.getgid())


def test_pid_files_and_live_processes(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    assert sockets.read_pid_file(pid_file) is None
    pid_file.write_text("garbage\n")
    assert sockets.read_pid_file(pid_file) is None
    pid_file.write_text(f"{os.getpid()}\n")
    assert sockets.read_pid_file(pid_file) == os.getpid()
    assert sockets.alive_as(os.getpid(), 0) and not sockets.alive_as(os.getpid(), NOBODY)
    dead = subprocess.Popen(["true"])
    dead.wait()
    time.sleep(0.05)
    assert not sockets.alive_as(dead.pid, 0)


def test_a_pid_file_names_its_writer_not_a_later_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "hub.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert sockets.pid_file_process(pid_file, os.getuid()) == os.getpid()
    assert sockets.pid_file_process(pid_file, NOBODY) is None
    started = sockets.started_at(os.getpid())
    assert started is not None and abs(started - time.time()) < 24 * 3600
    # Written long before this process started (a reboot since): not ours.
    os.utime(pid_file, (started - 3600, started - 3600))
    assert sockets.pid_file_process(pid_file, os.getuid()) is None
    assert sockets.pid_file_process(tmp_path / "missing.pid", os.getuid()) is None



def test_root_without_ptrace_cannot_list_another_accounts_open_files() -> None:
    """In a container with Docker's default capabilities root lacks CAP_SYS_PTRACE: it may
    not list another account's open files, and the spawner must know (it then checks the
    listener's owner instead: a server counted as never listening hung every spawn)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    other = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "sleep", "60"])
    try:
        probe = ("import sys; from teamhub.system import sockets; "
                 f"print(sockets.open_files_readable({other.pid}))")
        env = {**os.environ, "PYTHONPATH": str(Path(sockets.__file__).parents[2])}
        with_caps = subprocess.run([sys.executable, "-c", probe], env=env,
                                   capture_output=True, text=True, check=True)
        without = subprocess.run(["setpriv", "--inh-caps=-sys_ptrace",
                                  "--bounding-set=-sys_ptrace", sys.executable, "-c", probe],
                                 env=env, capture_output=True, text=True, check=True)
        assert (with_caps.stdout.strip(), without.stdout.strip()) == ("True", "False")
        assert sockets.open_files_readable(2**22 + 1)  # no such process: holds nothing
    finally:
        other.kill()
        other.wait()


def _families() -> list[object]:
    found = [pytest.param(socket.AF_INET, "127.0.0.1", id="ipv4")]
    if socket.has_ipv6 and Path("/proc/net/tcp6").exists():
        found.append(pytest.param(socket.AF_INET6, "::1", id="ipv6"))
    return found


@pytest.mark.parametrize("family,address", _families())
def test_sock_diag_and_the_proc_tables_agree(as_nobody, family, address) -> None:  # noqa: ANN001
    """The kernel's sock_diag answer (what connection() uses) is the /proc tables' answer,
    for a connection taken by root's listener and one queued at nobody's."""
    port = free_port()
    as_nobody("6" if family == socket.AF_INET6 else "4", address, str(port))
    with socket.socket(family) as server:
        server.bind((address, 0))
        server.listen()
        for where in (server.getsockname()[:2], (address, port)):
            with socket.create_connection(where) as client:
                ours = sockets._address_of(client.getsockname())
                theirs = sockets._address_of(client.getpeername())
                diag = sockets._diag_connection(family, ours, theirs)
                assert diag is not None and diag.listeners
                assert diag == sockets._proc_connection(family, ours, theirs)
