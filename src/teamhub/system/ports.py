"""TCP ports for servers that start at the same moment: never one port twice, never one the
kernel may hand to an outgoing connection meanwhile.

Asking the kernel for a free port (bind to port 0, read it, close) gives a port that is
free *now*: with many servers starting at once, two of them can be told the same port
(the first closes its probe before the second asks), and a port from the ephemeral range
can become the source port of some outgoing connection before the server binds it. The
server that loses exits (`address already in use`), while whoever connects to the port
finds the winner's server and takes it for the loser's.

A `PortPool` hands out ports outside the ephemeral range
(`/proc/sys/net/ipv4/ip_local_port_range`), each checked free by binding it, and never
the same port twice while the start that took it is in progress. Plain OS code; nothing
from JupyterHub.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

from ..errors import NoFreePort

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below this: well-known and commonly configured service ports (8000, 8080, 8888...).
LOWEST = 10000
HIGHEST = 65535


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def candidate_ranges(ephemeral: tuple[int, int]) -> list[range]:
    """Port ranges for servers: LOWEST..HIGHEST without the ephemeral range (all of it if the
    ephemeral range leaves nothing out)."""
    low, high = ephemeral
    ranges = [r for r in (range(LOWEST, min(low, HIGHEST + 1)),
                          range(max(high + 1, LOWEST), HIGHEST + 1)) if len(r)]
    return ranges or [range(LOWEST, HIGHEST + 1)]


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind HOST:PORT now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortPool:
    """Ports handed to starts in progress; thread-safe (starts prepare on executor threads)."""

    def __init__(self, ranges: list[range] | None = None, host: str = "127.0.0.1") -> None:
        self.ranges = ranges if ranges is not None else candidate_ranges(ephemeral_range())
        self.host = host
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def take(self, preferred: int = 0, tries: int = 200) -> int:
        """A free port no other start holds: PREFERRED if it is, else a random one from the
        ranges. Give it back with `release` once the server listens (or failed)."""
        with self._lock:
            if preferred and preferred not in self._held and is_free(preferred, self.host):
                self._held.add(preferred)
                return preferred
            weights = [len(r) for r in self.ranges]
            for _ in range(tries):
                chosen = random.choices(self.ranges, weights)[0]
                port = random.choice(chosen)
                if port not in self._held and is_free(port, self.host):
                    self._held.add(port)
                    return port
        raise NoFreePort(f"no free TCP port on {self.host} after {tries} tries in "
                         + ", ".join(f"{r.start}-{r.stop - 1}" for r in self.ranges),
                         "stop servers or programs that hold many ports, or widen the "
                         "range by narrowing net.ipv4.ip_local_port_range")

    def release(self, port: int) -> None:
        with self._lock:
            self._held.discard(port)

    def held(self) -> set[int]:
        with self._lock:
            return set(self._held)
