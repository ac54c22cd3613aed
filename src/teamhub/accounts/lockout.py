"""Brute-force protection for the login form.

Two independent brakes:

- per name (`Lockout`): after N failed logins a name is locked for an interval
  that doubles with each lock, up to a maximum. Kept in the account store, so a
  hub restart does not reset it. Unknown names are counted exactly like real
  ones, so a lock reveals nothing about which names exist.
- per client address (`ClientThrottle`): at most N failures per window from one
  address, whatever names it tries. Kept in the hub's memory: it is meant to
  slow down a running attack, and an attacker cannot restart the hub.

The client address behind configurable-http-proxy comes from `client_address`:
only the X-Forwarded-For entry the proxy itself appended is believed.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .store import AccountStore

# A failure older than this no longer counts towards a lock (unless locked).
_FORGET_AFTER = 24 * 3600


@dataclass(frozen=True)
class LockoutPolicy:
    """Lock a name after MAX_FAILURES, for BASE seconds, doubling up to MAX seconds."""

    max_failures: int = 5
    base_seconds: int = 60
    max_seconds: int = 3600

    def interval(self, earlier_locks: int) -> float:
        return float(min(self.base_seconds * 2 ** min(earlier_locks, 40), self.max_seconds))


@dataclass
class LockState:
    name: str
    failures: int
    lockouts: int
    locked_until: float

    def locked(self, now: float) -> bool:
        return self.locked_until > now


class Lockout:
    """Per-name failure counts and locks in the account store's `login_failures` table."""

    def __init__(self, store: AccountStore, policy: LockoutPolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.policy = policy or LockoutPolicy()
        self.clock = clock

    def state(self, name: str) -> LockState:
        with self.store._connect(write=False) as conn:
            row = conn.execute("SELECT * FROM login_failures WHERE name = ?",
                               (name,)).fetchone()
        if row is None:
            return LockState(name, 0, 0, 0.0)
        return LockState(name, row["failures"], row["lockouts"], row["locked_until"])

    def locked_until(self, name: str) -> float:
        """When NAME's lock ends (epoch seconds), or 0 if it is not locked now."""
        state = self.state(name)
        return state.locked_until if state.locked(self.clock()) else 0.0

    def record_failure(self, name: str) -> float:
        """Count a failed login for NAME; returns when its lock ends (0: not locked).

        Attempts while locked are not counted (they are refused anyway), so an
        attacker hammering a locked name does not stretch the lock further than
        the doubling at each new lock; the row is still written, so that every
        failure costs the same time.
        """
        now = self.clock()
        with self.store._connect() as conn:
            row = conn.execute("SELECT * FROM login_failures WHERE name = ?",
                               (name,)).fetchone()
            failures, lockouts, until, last = (
                (row["failures"], row["lockouts"], row["locked_until"], row["last_failure"])
                if row else (0, 0, 0.0, 0.0))
            if until > now:
                pass
            else:
                if now - last > self.policy.max_seconds:
                    failures = 0  # an old run of typos does not count towards a new lock
                if now - last > _FORGET_AFTER:
                    lockouts = 0
                failures += 1
                if failures >= self.policy.max_failures:
                    until = now + self.policy.interval(lockouts)
                    lockouts += 1
                    failures = 0
            conn.execute(
                "INSERT INTO login_failures (name, failures, lockouts, locked_until, last_failure)"
                " VALUES (?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET failures = excluded.failures,"
                " lockouts = excluded.lockouts, locked_until = excluded.locked_until,"
                " last_failure = excluded.last_failure", (name, failures, lockouts, until, now))
            # Keep the table small: names nobody tried for a day are forgotten.
            conn.execute("DELETE FROM login_failures WHERE locked_until < ? AND last_failure < ?",
                         (now, now - _FORGET_AFTER))
        return until if until > now else 0.0

    def record_success(self, name: str) -> None:
        with self.store._connect() as conn:
            conn.execute("DELETE FROM login_failures WHERE name = ?", (name,))

    def unlock(self, name: str) -> bool:
        """Forget NAME's failures and lock; returns whether it was locked."""
        now = self.clock()
        with self.store._connect() as conn:
            row = conn.execute("SELECT locked_until FROM login_failures WHERE name = ?",
                               (name,)).fetchone()
            conn.execute("DELETE FROM login_failures WHERE name = ?", (name,))
        return row is not None and row["locked_until"] > now

    def locked_names(self) -> dict[str, float]:
        """{name: lock end} of every name locked now."""
        with self.store._connect(write=False) as conn:
            rows = conn.execute("SELECT name, locked_until FROM login_failures "
                                "WHERE locked_until > ? ORDER BY name", (self.clock(),))
            return {r["name"]: r["locked_until"] for r in rows}


class ClientThrottle:
    """At most MAX_FAILURES failed logins per WINDOW seconds from one client address."""

    def __init__(self, max_failures: int = 30, window: float = 900,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, self.clock())) >= self.max_failures

    def record_failure(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            times = self._recent(client, now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            times.append(now)
            while len(times) > self.max_failures:
                times.popleft()
            # Bounded memory: the clients seen longest ago are dropped first.
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)


def _bucket(text: str) -> str | None:
    """The throttle key of an address: itself for IPv4, its /64 for IPv6 (one site)."""
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_address(request: Any, trusted_proxies: Iterable[str] = ()) -> str:
    """The address a login came from, as far as it can be trusted.

    tornado's `request.remote_ip` is not used: with xheaders on (JupyterHub turns
    them on) it is taken from X-Real-Ip or X-Forwarded-For, which any client can
    send and configurable-http-proxy passes on. Instead: when the TCP peer is on
    loopback (the proxy), the client is the right-most X-Forwarded-For entry,
    which the proxy appended itself; entries of TRUSTED_PROXIES (further reverse
    proxies of the admin, in front of teamhub) are skipped from the right first.
    Everything to the left of that was written by the client and is ignored.
    """
    context = getattr(getattr(request, "connection", None), "context", None)
    address = getattr(context, "address", None)
    peer = address[0] if isinstance(address, tuple) and address else ""
    peer_key = _bucket(str(peer)) or "unknown"
    try:
        loopback = ipaddress.ip_address(str(peer)).is_loopback
    except ValueError:
        # The hub listens on a unix socket: its peer is the proxy (or, as over loopback
        # before, a local program talking to the hub directly).
        loopback = getattr(context, "address_family", None) == socket.AF_UNIX
    if not loopback:
        return peer_key
    header = request.headers.get("X-Forwarded-For", "")
    entries = [e.strip() for e in header.split(",") if e.strip()]
    trusted = {_bucket(t) for t in trusted_proxies}
    for entry in reversed(entries):
        key = _bucket(entry)
        if key is None:
            return "invalid"  # the proxy never writes garbage: someone is playing
        if key not in trusted:
            return key
    return peer_key
