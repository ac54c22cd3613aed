"""Who is at the other end of a local connection: TCP via /proc/net, unix sockets via SO_PEERCRED.

The CLI uses this before it sends a secret to a listener on this machine: any
user can listen on a free unprivileged port, so a port number alone says
nothing about who answers.

For TCP on this machine both ends of a connection are in the kernel's socket tables
(asked through sock_diag, system/sockdiag.py; /proc/net/tcp{,6} where that is missing).
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
from dataclasses import dataclass
from pathlib import Path

from . import sockdiag
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


def _table(path: str, local_port: int) -> list[TcpSocket]:
    """The rows of table PATH bound to LOCAL_PORT (picked before parsing: reading and
    parsing a long table is what costs here)."""
    suffix = f":{local_port:04X}"
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return []  # no IPv6 on this machine
    rows = []
    for line in lines:
        f = line.split()
        if f[1].endswith(suffix):
            rows.append(TcpSocket(_address(f[1]), _address(f[2]), int(f[3], 16), int(f[7]),
                                  int(f[9])))
    return rows


def _address_of(sockaddr: tuple) -> tuple[IPAddress, int]:
    ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, int(sockaddr[1])


@dataclass(frozen=True)
class Connection:
    """The far end of a TCP connection to this machine, and who listened for it."""

    server_end: TcpSocket
    listeners: list[TcpSocket]  # the listening sockets that could have taken it


def connection(sock: socket.socket) -> Connection | None:
    """SOCK's far end and its candidate listeners (bound to the peer's address and port,
    else, none such, to the wildcard address of that port); None if the far end is not
    on this machine (or gone)."""
    ours, theirs = _address_of(sock.getsockname()), _address_of(sock.getpeername())
    try:
        return _diag_connection(sock.family, ours, theirs)
    except OSError:  # a kernel without sock_diag for TCP: the tables in /proc say the same
        return _proc_connection(sock.family, ours, theirs)


def _candidates(end: TcpSocket, listening: list[TcpSocket], ip: IPAddress) -> Connection:
    exact = [r for r in listening if r.local[0] == ip]
    wildcard = [r for r in listening if r.local[0].is_unspecified]
    return Connection(end, exact or wildcard)


def _proc_connection(family: int, ours: tuple[IPAddress, int], theirs: tuple[IPAddress, int]
                     ) -> Connection | None:
    # An IPv4 connection is in /proc/net/tcp, unless a dual-stack IPv6 listener took it.
    tables = _TABLES if family == socket.AF_INET else _TABLES[1:]
    for path in tables:
        rows = _table(path, theirs[1])
        end = next((r for r in rows if r.local == theirs and r.remote == ours
                    and r.state != TCP_LISTEN), None)
        if end is not None:
            return _candidates(end, [r for r in rows if r.state == TCP_LISTEN], theirs[0])
    return None


def _row(found: sockdiag.DiagSocket) -> TcpSocket:
    return TcpSocket(found.local, found.remote, found.state, found.uid, found.inode)


def _diag_connection(family: int, ours: tuple[IPAddress, int], theirs: tuple[IPAddress, int]
                     ) -> Connection | None:
    families = ((socket.AF_INET, socket.AF_INET6) if family == socket.AF_INET
                else (socket.AF_INET6,))
    for table in families:
        end = sockdiag.connection_end(theirs, ours, table)
        if end is not None:
            # The listener's table is the family of the socket it made (a dual-stack
            # IPv6 listener makes IPv6 sockets for IPv4 connections too).
            listening = [_row(s) for s in sockdiag.listeners(end.family, theirs[1])]
            return _candidates(_row(end), listening, theirs[0])
    return None


def holds(pid: int, inode: int) -> bool:
    """Whether process PID has socket INODE open."""
    return inode > 0 and _holds(pid, f"socket:[{inode}]")


def open_files_readable(pid: int) -> bool:
    """Whether this process may list PID's open files. Root may not without CAP_SYS_PTRACE
    for another account's process (e.g. in a container started with Docker's default
    capabilities); a process that is gone counts as readable (it holds nothing)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        # Listing may pass on DAC overrides alone; reading a link needs ptrace access.
        for name in os.listdir(fd_dir):
            os.readlink(f"{fd_dir}/{name}")
            return True
    except PermissionError:
        return False
    except OSError:
        return True
    return True


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
