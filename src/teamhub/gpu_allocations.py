"""Who holds which GPU: a record in the state folder, changed only under a root-only lock.

Why a file and not the account store or the hub's database: holdings are facts about
running processes on this machine, not about accounts; `teamhub gpu status` must read
them with no hub running; and a flock is what makes two simultaneous starts (threads of
the hub, or the hub and `teamhub gpu release`) see each other: every change is
read-check-write under `locks.exclusive`, and the file is replaced atomically, so a
start takes all of its devices or none.

Each holding names a witness process (pid and its start time): the hub while the server
starts, then the server itself (the container's init with the docker backend). A holding
whose witness is gone is stale and dropped at the next read: that is the release after a
crash or a hub killed mid-start, and, with the hub re-adopting running servers (their
devices are in their spawner state), the rebuild after a hub restart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import GpusBusy
from .gpus import Request
from .system import locks
from .system.gpus import Device

LOCK_TIMEOUT_S = 30


def process_start(pid: int) -> int | None:
    """PID's start time (clock ticks since boot), None if it is not running: a pid alone
    could be reused by a stranger after the witness ended."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class Holding:
    uuid: str
    holder: str  # hub user name
    server: str  # named server ("" for the default one)
    since: float
    shared: bool
    pid: int
    pid_start: int

    @property
    def label(self) -> str:
        return self.holder + (f"/{self.server}" if self.server else "")

    def alive(self) -> bool:
        return process_start(self.pid) == self.pid_start


class Allocations:
    """The holdings in FILE (state folder), with its lock beside it in `locks/`."""

    def __init__(self, path: Path, lock_timeout: float = LOCK_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.lock_path = self.path.parent / "locks" / "gpus.lock"
        self.lock_timeout = lock_timeout

    def _read(self) -> list[Holding]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError:
            return []  # a torn file cannot happen (atomic replace); an edited one is reset
        return [Holding(**h) for h in raw.get("holdings", [])]

    def _write(self, holdings: list[Holding]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"holdings": [asdict(h) for h in holdings]}, indent=1))
        os.chmod(tmp, 0o600)
        # The root CLI writing in an unprivileged hub's state folder: the hub's file still.
        uid, gid = locks.owner(self.path.parent)
        if os.geteuid() == 0 and uid != 0:
            os.chown(tmp, uid, gid)
        os.replace(tmp, self.path)

    def holdings(self) -> list[Holding]:
        """The live holdings (stale ones are dropped from the file on the way)."""
        with locks.exclusive(self.lock_path, self.lock_timeout):
            found = self._read()
            live = [h for h in found if h.alive()]
            if len(live) != len(found):
                self._write(live)
            return live

    def take(self, holder: str, server: str, request: Request, devices: Iterable[Device],
             witness: int, since: float | None = None) -> list[Device]:
        """Devices for HOLDER's SERVER as REQUEST asks, from DEVICES (the machine's units),
        recorded with WITNESS (a running pid). All or nothing; GpusBusy if not enough are
        free. What this server held before is given up first (a restart)."""
        devices = list(devices)
        start = process_start(witness)
        if start is None:
            raise ValueError(f"witness process {witness} is not running")
        with locks.exclusive(self.lock_path, self.lock_timeout):
            others = [h for h in self._read() if h.alive()
                      and (h.holder, h.server) != (holder, server)]
            chosen = pick(request, devices, others)
            now = time.time() if since is None else since
            mine = [Holding(d.uuid, holder, server, now, request.shared or request.kind == "all",
                            witness, start) for d in chosen]
            self._write(others + mine)
            return chosen

    def attach(self, holder: str, server: str, pid: int) -> None:
        """Make the running server PID the witness of HOLDER's SERVER's holdings."""
        start = process_start(pid)
        if start is None:
            return  # it already ended: the holdings stay with the hub until released
        self._update(holder, server, lambda h: Holding(**{**asdict(h), "pid": pid,
                                                          "pid_start": start}))

    def adopt(self, holder: str, server: str, uuids: Iterable[str], shared: bool,
              pid: int, since: float) -> None:
        """Record again what a running server (re-adopted after a hub restart) holds,
        if the record lost it."""
        start = process_start(pid)
        if start is None:
            return
        uuids = list(uuids)
        with locks.exclusive(self.lock_path, self.lock_timeout):
            kept = [h for h in self._read() if h.alive()
                    and not ((h.holder, h.server) == (holder, server) and h.uuid in uuids)]
            kept += [Holding(u, holder, server, since, shared, pid, start) for u in uuids]
            self._write(kept)

    def release(self, holder: str, server: str | None = None, since: float | None = None
                ) -> list[str]:
        """Give back what HOLDER's SERVER (every server of HOLDER: None) holds, only what
        was taken at SINCE if given (a later start's holdings stay); the UUIDs."""
        with locks.exclusive(self.lock_path, self.lock_timeout):
            found = self._read()
            gone = [h for h in found if h.holder == holder
                    and (server is None or h.server == server)
                    and (since is None or h.since == since)]
            if gone:
                self._write([h for h in found if h not in gone])
            return [h.uuid for h in gone]

    def _update(self, holder: str, server: str, change: Any) -> None:
        with locks.exclusive(self.lock_path, self.lock_timeout):
            found = self._read()
            self._write([change(h) if (h.holder, h.server) == (holder, server) else h
                         for h in found])


def pick(request: Request, devices: list[Device], others: list[Holding]) -> list[Device]:
    """The devices REQUEST gets beside OTHERS' holdings; GpusBusy when it cannot."""
    exclusive = {h.uuid for h in others if not h.shared}
    held = {h.uuid for h in others}
    if request.kind == "none":
        return []
    if request.kind == "all":
        return [d for d in devices if d.uuid not in exclusive]
    if request.kind == "list":
        wanted = [next(d for d in devices if i in (d.uuid, d.index)) for i in request.ids]
        blocked = [d for d in wanted if d.uuid in (exclusive if request.shared else held)]
        if blocked:
            raise busy(len(wanted), len(wanted) - len(blocked), blocked, others)
        return wanted
    usable = [d for d in devices if d.uuid not in (exclusive if request.shared else held)]
    # Whole GPUs before MIG slices; shared requests go where fewest already are.
    load = {d.uuid: sum(h.uuid == d.uuid for h in others) for d in devices}
    usable.sort(key=lambda d: (d.is_mig, load[d.uuid] if request.shared else 0,
                               devices.index(d)))
    if len(usable) < request.count:
        taken = [d for d in devices if d not in usable]
        raise busy(request.count, len(usable), taken, others)
    return usable[:request.count]


def busy(needed: int, free: int, taken: list[Device], others: list[Holding]) -> GpusBusy:
    holders = {d.uuid: sorted({h.label for h in others if h.uuid == d.uuid}) for d in taken}
    named = "; ".join(f"GPU {d.index} ({d.uuid}): {', '.join(holders[d.uuid]) or '?'}"
                      for d in taken)
    return GpusBusy(f"{needed} GPU(s) needed, {free} free; held by: {named}",
                    needed=needed, free=free, holders=holders)
