"""Who is at the other end of a local connection: TCP via /proc/net, unix sockets via SO_PEERCRED.

The CLI uses this before it sends a secret to a listener on this machine: any
user can listen on a free unprivileged port, so a port number alone says
nothing about who answers.

For TCP on this machine both ends of a connection are in /proc/net/tcp{,6}.
The server's end carries the uid of whoever created the listening socket
(the kernel copies it into every connection the listener takes, accepted or
still in the queue), so it tells who took the connection even if the listener
is swapped afterwards. Which processes hold a listener comes from the
`socket:[inode]` links in /proc/<pid>/fd (readable for every process by root,
for one's own processes otherwise).
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .processes import process_uids

TCP_LISTEN = 0x0A
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TcpSocket:
    """One row of /proc/net/tcp{,6}."""

    local: tuple[IPAddress, int]
    remote: tuple[IPAddress, int]
    state: int
    uid: int
    inode: int  # 0 for a connection still waiting in its listener's queue


def _address(field: str) -> tuple[IPAddress, int]:
    hex_ip, hex_port = field.split(":")
    raw = bytes.fromhex(hex_ip)
    # The kernel prints the address as 32-bit words in host byte order.
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    packed = b"".join(struct.pack("!I", w) for w in words)
    ip = ipaddress.ip_address(packed)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, int(hex_port, 16)


def tcp_sockets() -> Iterator[TcpSocket]:
    """Every TCP socket of this network namespace (both ends of local connections)."""
    for table in _TABLES:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 on this machine
        for line in lines:
            f = line.split()
            yield TcpSocket(_address(f[1]), _address(f[2]), int(f[3], 16), int(f[7]), int(f[9]))


def _peer(sock: socket.socket) -> tuple[tuple[IPAddress, int], tuple[IPAddress, int]]:
    """(our end, their end) of connected TCP socket SOCK, IPv4-mapped forms unwrapped."""
    ours, theirs = sock.getsockname(), sock.getpeername()
    return _address_of(ours), _address_of(theirs)


def _address_of(sockaddr: tuple) -> tuple[IPAddress, int]:
    ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, int(sockaddr[1])


def server_end(sock: socket.socket) -> TcpSocket | None:
    """The other end of SOCK, a TCP connection to a listener on this machine; None if
    it is not on this machine (or already gone)."""
    ours, theirs = _peer(sock)
    for entry in tcp_sockets():
        if entry.local == theirs and entry.remote == ours and entry.state != TCP_LISTEN:
            return entry
    return None


def listeners_for(sock: socket.socket) -> list[TcpSocket]:
    """The listening sockets that could have taken connection SOCK: bound to its peer's
    address and port, else (none such) to the wildcard address of that port."""
    _, (ip, port) = _peer(sock)
    wildcards = {ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")}
    on_port = [e for e in tcp_sockets() if e.state == TCP_LISTEN and e.local[1] == port]
    exact = [e for e in on_port if e.local[0] == ip]
    return exact or [e for e in on_port if e.local[0] in wildcards]


def holds(pid: int, inode: int) -> bool:
    """Whether process PID has socket INODE open."""
    return inode > 0 and _holds(pid, f"socket:[{inode}]")


def holders(inode: int) -> list[int]:
    """Every pid with socket INODE open (a scan of /proc: for messages, not hot paths)."""
    if not inode:
        return []
    target = f"socket:[{inode}]"
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _holds(int(e), target)]


def _holds(pid: int, target: str) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"{fd_dir}/{name}") == target:
                return True
        except OSError:
            continue
    return False


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The process, user and group that made the other end of unix socket SOCK
    (the kernel's record of who called listen() or connect(), not a claim)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCredentials(pid, uid, gid)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def describe_process(pid: int) -> str:
    """'pid 123 (python3) of user nobody', for messages."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        comm = "?"
    return f"pid {pid} ({comm}) of user {_effective_user(pid)}"


def _effective_user(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return user_name(int(line.split()[2]))  # real, effective, saved, fs
    except OSError:
        pass
    return "?"


def read_pid_file(path: Path) -> int | None:
    """The pid in PATH, or None if it is missing or holds no pid."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def alive_as(pid: int, uid: int) -> bool:
    """Whether PID is a live process (not a zombie) running as UID."""
    return uid in process_uids(pid)


def started_at(pid: int) -> float | None:
    """When process PID started (epoch seconds, to about a second), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    # Field 22 (starttime, clock ticks after boot); the name in field 2 may hold spaces.
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def pid_file_process(path: Path, uid: int) -> int | None:
    """The live process of UID that wrote pid file PATH, or None.

    A pid file left behind (a crash, a reboot) may name a pid that some other
    process has since: that one started after the file was written.
    """
    pid = read_pid_file(path)
    if pid is None or not alive_as(pid, uid):
        return None
    started = started_at(pid)
    try:
        written = path.stat().st_mtime
    except OSError:
        return None
    return pid if started is not None and started <= written + 2 else None
