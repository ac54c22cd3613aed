"""How much CPU and memory a user's server uses, the machine's totals, and disk use.

Where a server's processes are counted:
- **Its own cgroup**, when it has one: the systemd scope `teamhub-user-NAME.scope`
  (local backend on a systemd machine) or its container's (docker backend). The kernel
  keeps the totals there: CPU time of every process that ever ran in it, and memory
  charged to it (less inactive file cache, as `docker stats` counts it). cgroup v1
  (`cpuacct`, `memory`) and v2 (`cpu.stat`, `memory.current`) alike.
- **Its processes**, otherwise: without systemd as init (containers, this kind of
  test machine) a forked server stays in the fork server's cgroup, which it shares with
  everything else. Then the user's processes (all of their Linux account's, or the
  server's process tree when it has no account of its own) are summed from `/proc`:
  CPU time from `/proc/PID/stat`, memory as PSS from `/proc/PID/smaps_rollup` (so pages
  forked servers share are split between them, not counted once per server). CPU time of
  a process that exits between two samples is lost for that interval.

`Reading.counters` holds the cumulative CPU seconds per source (a cgroup, or one process
by pid and start time); `CpuMeter` turns two readings into CPUs in use.

Plain OS code: nothing here imports JupyterHub.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DockerError
from .docker import Engine
from .nsenter import cgroup_folders

CGROUP = "cgroup"
PROCESSES = "processes"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    """Where one server runs. PID: its main process (host pid); MARKER: what names its own
    cgroup (a scope unit name or a container id), if it may have one; ACCOUNT: its Linux
    account (whose processes are counted when it has no cgroup of its own; None: count
    PID's process tree); CONTAINER: a container id whose init stands in for PID."""

    pid: int | None = None
    marker: str = ""
    account: str | None = None
    container: str = ""


@dataclass
class Reading:
    """One look at a server (or the sum of a user's servers)."""

    memory: int = 0  # bytes
    counters: dict[str, float] = field(default_factory=dict)  # source -> CPU seconds
    source: str = PROCESSES

    def add(self, other: Reading) -> None:
        self.memory += other.memory
        self.counters.update(other.counters)
        if other.source == CGROUP:
            self.source = CGROUP


def _read(path: str | Path) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(text: str) -> dict[str, int]:
    fields = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            fields[parts[0]] = int(parts[1])
    return fields


def cgroup_reading(folders: Iterable[str]) -> Reading | None:
    """CPU time and memory of the cgroup in FOLDERS (its folder in each hierarchy), or None
    when neither can be read there."""
    cpu: float | None = None
    memory: int | None = None
    where = ""
    for folder in folders:
        if cpu is None and (text := _read(os.path.join(folder, "cpuacct.usage"))):
            cpu, where = int(text) / 1e9, folder
        elif cpu is None and (text := _read(os.path.join(folder, "cpu.stat"))):
            usage = _stat_fields(text).get("usage_usec")  # v1's cpu.stat has none
            if usage is not None:
                cpu, where = usage / 1e6, folder
        if memory is None and (text := _read(os.path.join(folder, "memory.usage_in_bytes"))):
            stat = _stat_fields(_read(os.path.join(folder, "memory.stat")) or "")
            memory = max(int(text) - stat.get("total_inactive_file", 0), 0)
        elif memory is None and (text := _read(os.path.join(folder, "memory.current"))):
            stat = _stat_fields(_read(os.path.join(folder, "memory.stat")) or "")
            memory = max(int(text) - stat.get("inactive_file", 0), 0)
    if cpu is None and memory is None:
        return None
    return Reading(memory=memory or 0, counters={f"cgroup:{where}": cpu or 0.0}, source=CGROUP)


def own_cgroup(pid: int, marker: str) -> list[str]:
    """PID's cgroup folders whose name contains MARKER (its scope's or container's own);
    [] when it has none such (it shares a cgroup with other processes)."""
    if not marker:
        return []
    try:
        folders = cgroup_folders(pid)
    except OSError:
        return []
    return [f for f in folders if marker in os.path.basename(f.rstrip("/"))]


def _proc_stat(pid: int) -> tuple[int, int, float] | None:
    """(ppid, start time in ticks, CPU seconds) of PID, or None if it is gone."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # After the name: state ppid ... utime(12) stime(13) ... starttime(20), 0-based here.
    return int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / TICKS


def _proc_memory(pid: int) -> int:
    """PSS of PID in bytes (RSS where smaps_rollup cannot be read)."""
    text = _read(f"/proc/{pid}/smaps_rollup")
    if text:
        for line in text.splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    statm = _read(f"/proc/{pid}/statm")
    return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE") if statm else 0


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _real_uid(pid: int) -> int | None:
    text = _read(f"/proc/{pid}/status")
    for line in (text or "").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def account_pids(uid: int) -> list[int]:
    """Every running process whose real uid is UID."""
    return [pid for pid in _pids() if _real_uid(pid) == uid]


def processes_by_uid() -> dict[int, list[int]]:
    """Real uid -> its running processes, in one pass over /proc (for many accounts at once)."""
    table: dict[int, list[int]] = {}
    for pid in _pids():
        uid = _real_uid(pid)
        if uid is not None:
            table.setdefault(uid, []).append(pid)
    return table


def tree_pids(root: int) -> list[int]:
    """ROOT and every process descended from it."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat is not None:
            children.setdefault(stat[0], []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


class MemoryCache:
    """PSS per process, read from /proc again only when the process has run since (used
    CPU_STEP seconds of CPU) or its value is MAX_AGE seconds old.

    Reading smaps_rollup makes the kernel walk the process's page tables: 1–6 ms of CPU
    per server process here, so with 100 idle servers sampled every 10 s it was most of an
    idle hub's CPU. An idle process's memory barely changes; one that runs is read at every
    sample. CPU time (/proc/PID/stat) is cheap and always read. A process is known by pid
    and start time, so a reused pid is read anew.
    """

    def __init__(self, max_age: float, cpu_step: float = 0.1) -> None:
        self.max_age = max_age
        self.cpu_step = cpu_step
        self._known: dict[tuple[int, int], tuple[float, float, int]] = {}
        self._seen: set[tuple[int, int]] = set()

    def pss(self, pid: int, started: int, cpu_seconds: float) -> int:
        key, now = (pid, started), time.monotonic()
        self._seen.add(key)
        known = self._known.get(key)
        if (known is not None and now - known[0] < self.max_age
                and cpu_seconds - known[1] < self.cpu_step):
            return known[2]
        value = _proc_memory(pid)
        self._known[key] = (now, cpu_seconds, value)
        return value

    def forget_unseen(self) -> None:
        """Drop the processes not asked about since the last call (they ended)."""
        self._known = {k: v for k, v in self._known.items() if k in self._seen}
        self._seen = set()


def processes_reading(pids: Iterable[int], memory: MemoryCache | None = None) -> Reading:
    """The sum over PIDS: PSS (through MEMORY when given), and each process's CPU time as
    its own counter."""
    reading = Reading(source=PROCESSES)
    for pid in pids:
        stat = _proc_stat(pid)
        if stat is None:
            continue
        reading.counters[f"pid:{pid}:{stat[1]}"] = stat[2]
        reading.memory += memory.pss(pid, stat[1], stat[2]) if memory else _proc_memory(pid)
    return reading


def _container_pid(container: str) -> int | None:
    try:
        info = Engine(timeout=10).container(container) or {}
    except DockerError:
        return None
    return (info.get("State") or {}).get("Pid") or None


def read_target(target: Target, by_uid: Mapping[int, list[int]] | None = None,
                memory: MemoryCache | None = None) -> Reading:
    """(Blocking: /proc, cgroup files, maybe the Docker engine.) What TARGET uses now.
    BY_UID: `processes_by_uid()` taken once for many targets (else /proc is scanned);
    MEMORY: where processes' PSS is kept between samples (else read now)."""
    pid = _container_pid(target.container) if target.container else target.pid
    if pid:
        folders = own_cgroup(pid, target.marker)
        reading = cgroup_reading(folders) if folders else None
        if reading is not None:
            return reading
    if target.account:
        try:
            uid = pwd.getpwnam(target.account).pw_uid
        except KeyError:
            return Reading()
        if uid != 0:
            pids = by_uid.get(uid, []) if by_uid is not None else account_pids(uid)
            return processes_reading(pids, memory)
    return processes_reading(tree_pids(pid), memory) if pid else Reading()


class CpuMeter:
    """CPUs in use between two readings: each source's CPU time gained, over the time passed.
    A source first seen after the meter started is counted from zero (it began in between);
    the very first reading gives None."""

    def __init__(self) -> None:
        self._last: tuple[float, Mapping[str, float]] | None = None

    def update(self, counters: Mapping[str, float], now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        last, self._last = self._last, (now, dict(counters))
        if last is None or now <= last[0]:
            return None
        gained = sum(max(value - last[1].get(key, 0.0), 0.0) for key, value in counters.items())
        return gained / (now - last[0])


@dataclass(frozen=True)
class Machine:
    """This machine as a whole: CPU time busy and in all (seconds, every CPU), memory."""

    busy: float
    total: float
    memory_used: int
    memory_total: int
    cpus: int


def machine_reading() -> Machine:
    """(Blocking.) /proc/stat's first line and /proc/meminfo."""
    cpu = (_read("/proc/stat") or "cpu 0 0 0 0").splitlines()[0].split()[1:]
    ticks = [int(x) for x in cpu[:8]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    mem = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            mem[key] = int(rest.split()[0]) * 1024
    total = mem.get("MemTotal", 0)
    used = total - mem.get("MemAvailable", mem.get("MemFree", 0))
    return Machine(busy=(sum(ticks) - idle) / TICKS, total=sum(ticks) / TICKS,
                   memory_used=used, memory_total=total, cpus=os.cpu_count() or 1)


def machine_cpus(last: Machine, now: Machine) -> float | None:
    """CPUs busy between two machine readings (0 .. number of CPUs)."""
    if now.total <= last.total:
        return None
    share = (now.busy - last.busy) / (now.total - last.total)
    return min(max(share, 0.0), 1.0) * now.cpus  # tick sums can round past the edges


def disk_use(root: str | Path) -> int:
    """(Blocking, possibly slow.) Bytes of disk the files under ROOT take, as `du -sx`
    counts them: allocated blocks, hard links once, symlinks not followed, other
    filesystems not entered. 0 when ROOT does not exist."""
    try:
        top = os.lstat(root)
    except OSError:
        return 0
    seen: set[tuple[int, int]] = set()
    total = top.st_blocks * 512
    todo = [str(root)]
    while todo:
        folder = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_dev != top.st_dev:
                continue
            if info.st_nlink > 1:
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                todo.append(entry.path)
    return total
