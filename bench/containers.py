"""What the docker bench reads from containers: where a spawn's time went, idle memory.

Both hubs' servers are containers on the local engine, read the same way with the
`docker` CLI (inspect, logs with timestamps) and the kernel's cgroup and /proc files:

- a spawn's timeline from timestamps: the client's request, the container's
  `Created` and `State.StartedAt` (the engine's clock), the server's "is running at"
  log line (the engine's timestamp on the container's output), the hub's "User X
  took N seconds to start" log line (logged when the hub's own readiness check
  passed, just before it adds the route), the client seeing the ready event (route
  added) and the Lab page answering 200;
- idle memory of a container: PSS summed over the processes in its cgroup, and the
  cgroup's memory usage as `docker stats` shows it (usage minus inactive page cache).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

Echo = Callable[[str], None]

# The timeline's marks, in order, and the segment that ends at each one.
SEGMENTS = [
    ("created", "before_create_s"),      # hub: spawn request handling, image check, create call
    ("started", "container_start_s"),    # the engine starting the container
    ("listening", "server_start_s"),     # the server's own start inside the container
    ("hub_ready", "hub_readiness_s"),    # the hub noticing (its readiness check)
    ("ready", "route_ready_s"),          # route add, then the ready event reaching the user
    ("lab", "lab_open_s"),               # Lab page through the proxy, OAuth included
]
_HUB_LOG_LINE = re.compile(r"\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) [^\]]*\]\S*\s(.*)")


def docker_time(value: str) -> float:
    """Seconds since the epoch of an engine timestamp (RFC 3339, nanoseconds, UTC)."""
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)",
                         value.strip())
    if not found:
        raise ValueError(f"not a Docker timestamp: {value!r}")
    whole, fraction, zone = found.groups()
    zone = "+00:00" if zone == "Z" else zone
    base = datetime.fromisoformat(whole + zone).timestamp()
    return base + (float("0." + fraction) if fraction else 0.0)


def hub_log_times(text: str, pattern: str) -> list[float]:
    """Times (local clock, as the hub logs them) of the hub log lines matching PATTERN."""
    times = []
    for line in text.splitlines():
        found = _HUB_LOG_LINE.search(line)
        if found and re.search(pattern, found.group(3)):
            stamp = time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S"))
            times.append(stamp + int(found.group(2)) / 1000)
    return times


def first_output_time(log: str, pattern: str) -> float | None:
    """Time of the first line of `docker logs --timestamps` output matching PATTERN."""
    for line in log.splitlines():
        stamp, _, rest = line.partition(" ")
        if re.search(pattern, rest):
            try:
                return docker_time(stamp)
            except ValueError:
                continue
    return None


def segments(marks: dict[str, float | None]) -> dict[str, float]:
    """Seconds between consecutive known marks, starting at marks["request"]; a segment
    whose end mark is unknown is left out (its time goes to the next known one)."""
    out: dict[str, float] = {}
    last = marks.get("request")
    if last is None:
        return out
    for mark, key in SEGMENTS:
        at = marks.get(mark)
        if at is None:
            continue
        out[key] = round(at - last, 3)
        last = at
    return out


def inspect(name: str) -> dict | None:
    proc = subprocess.run(["docker", "inspect", "--type", "container", name],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    found = json.loads(proc.stdout)
    return found[0] if found else None


def output(name: str) -> str:
    """The container's output so far, each line with the engine's timestamp."""
    proc = subprocess.run(["docker", "logs", "--timestamps", name], capture_output=True,
                          text=True, timeout=60)
    return proc.stdout + proc.stderr


def container_marks(name: str) -> dict[str, float | None]:
    info = inspect(name)
    if info is None:
        return {}
    state = info.get("State") or {}
    return {"created": docker_time(info["Created"]),
            "started": docker_time(state["StartedAt"]) if state.get("StartedAt") else None,
            "listening": first_output_time(output(name), r"is running at")}


def _memory_cgroup(pid: int) -> Path | None:
    """The memory cgroup folder of PID (cgroup v1's memory controller, or v2's)."""
    v2 = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        if controllers == "":
            v2 = Path("/sys/fs/cgroup") / path.lstrip("/")
    return v2


def _stat(folder: Path) -> dict[str, int]:
    values = {}
    for line in (folder / "memory.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        values[key] = int(value)
    return values


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass  # exited meanwhile
    return 0


def idle_memory_mb(name: str) -> tuple[float, float] | None:
    """(PSS over the container's processes, cgroup usage as `docker stats` shows it) in
    MB; None when the container is not running."""
    info = inspect(name)
    pid = (info or {}).get("State", {}).get("Pid") or 0
    if not pid:
        return None
    folder = _memory_cgroup(pid)
    if folder is None:
        return None
    pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    pss = sum(_pss_kib(p) for p in pids) / 1024
    if (folder / "memory.current").exists():  # cgroup v2
        usage = int((folder / "memory.current").read_text()) - _stat(folder).get(
            "inactive_file", 0)
    else:
        usage = int((folder / "memory.usage_in_bytes").read_text()) - _stat(folder).get(
            "total_inactive_file", 0)
    return pss, usage / 2**20


def remove_tagged(container_prefix: str, volume_prefix: str | None, echo: Echo) -> None:
    """Remove the containers (and volumes) whose names start with the prefixes."""
    def names(*args: str) -> list[str]:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
        return [n for n in proc.stdout.split() if n]

    left = [n for n in names("ps", "-a", "--format", "{{.Names}}")
            if n.startswith(container_prefix)]
    if left:
        echo(f"removing left-over containers {', '.join(left)}")
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=120)
    if volume_prefix:
        volumes = [n for n in names("volume", "ls", "--format", "{{.Name}}")
                   if n.startswith(volume_prefix)]
        if volumes:
            subprocess.run(["docker", "volume", "rm", "-f", *volumes], capture_output=True,
                           timeout=120)
