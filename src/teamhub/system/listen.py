"""Listening sockets: which address "every address" means here, and who listens on a port.

Plain OS code (`ss`, /proc, bind); nothing from JupyterHub.
"""

from __future__ import annotations

import errno
import pwd
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"


def has_ipv6() -> bool:
    """Whether this machine can listen on IPv6 at all (a kernel without it, or with
    ipv6.disable=1, cannot create the socket or bind ::)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def listen_address(ip: str) -> str:
    """The address to listen on for the setting IP: `auto` is every address of both
    families (`::` dual-stack where the machine has IPv6, else 0.0.0.0)."""
    if ip != AUTO:
        return ip
    return "::" if has_ipv6() else "0.0.0.0"


def all_addresses(ip: str) -> bool:
    return ip in ("", "0.0.0.0", "::", AUTO)


@dataclass(frozen=True)
class Listener:
    address: str  # as ss prints it: 0.0.0.0:8000, [::]:8000, 127.0.0.1:8000
    pid: int | None
    program: str
    user: str

    def describe(self) -> str:
        if self.pid is None:
            return f"{self.address} (program unknown)"
        return f"{self.address} by {self.program} (pid {self.pid}, user {self.user})"


def _user_of(pid: int) -> str:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                try:
                    return pwd.getpwuid(uid).pw_name
                except KeyError:
                    return str(uid)
    except OSError:
        pass
    return "?"


_PROCESS = re.compile(r'\("([^"]*)",pid=(\d+),')


def listeners(port: int) -> list[Listener] | None:
    """Every TCP socket listening on PORT, in both families and on any address, with the
    processes holding it (one entry per process); None if `ss` is not installed."""
    ss = shutil.which("ss")
    if not ss:
        return None
    out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=30)
    found = []
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address = fields[3]
        procs = _PROCESS.findall(line)
        if not procs:
            found.append(Listener(address, None, "?", "?"))
        for program, pid in dict.fromkeys(procs):
            found.append(Listener(address, int(pid), program, _user_of(int(pid))))
    return found


def can_bind(ip: str, port: int) -> OSError | None:
    """None if a TCP socket could listen on IP:PORT now (`::` dual-stack, as the proxy
    listens), else the error."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            return exc
    return None


def socket_answers(path: Path, timeout: float = 2) -> bool:
    """Whether something accepts connections on the unix socket PATH now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            return False  # no such socket, or nobody listens on it any more
    return True


def in_use(error: OSError | None) -> bool:
    return error is not None and error.errno == errno.EADDRINUSE

