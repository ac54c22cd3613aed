"""Where an idle forked server's memory goes: per kind of mapping, and what Python did after
the fork.

    <prefix>/runtime/bin/python -m bench.server_memory --prefix /opt/teamhub [--servers 5]
                                                       [--probe] [--json]

Run as root from the repository root. Starts a real `teamhub up` from that prefix
(bench/hubs.py), starts SERVERS users' servers one after the other (form login, spawn,
Lab page through the proxy, as bench/run's burst does), waits until they are idle and reads
/proc/PID/smaps of every process of each user:

- Rss, Pss, Private_Clean/Private_Dirty (a server's own pages, whatever the number of
  servers up) and Shared_Clean/Shared_Dirty (pages still shared with the fork server and
  the other servers), per kind of mapping: the brk heap, anonymous memory by size (1 MiB:
  Python's object arenas; 8 MiB + guard: a thread's stack; up to 64 MiB: a thread's malloc
  arena), the python binary, each .so, other files;
- the estimate of PSS with 100 servers up: private + shared × (servers + 1) / 101 (the
  fork server holds the shared pages too);
- threads (their names).

With --probe each server also loads a config file (bench/memprobe_config.py) that starts
tracemalloc and a profile hook while the server reads its configuration and, on SIGUSR2,
writes its private memory then and now, what was allocated since (by file and by line),
the code objects run since (per package: count and size), the modules imported, the
threads and
sys.getallocatedblocks() to ~/.memprobe.json; compared here with the fork server's modules
(teamhub.spawners.forkserver.preload in a fresh interpreter). The probe's own tracing
inflates memory: read sizes without --probe.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from .client import User
from .hubs import TeamhubHub

FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty")
PROBE = Path(__file__).with_name("memprobe_config.py")
MIB = 1024


def echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def thread_stack_pointers(pid: int) -> list[int]:
    """Each thread's stack pointer (the next-to-last field of /proc/PID/task/TID/syscall)."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
            found.append(int(fields[-2], 16))
        except (OSError, ValueError, IndexError):
            pass  # running (no syscall to show) or gone
    return found


ARENA_ALIGN = 64 << 20  # glibc's heaps of threads' malloc arenas (HEAP_MAX_SIZE)


def kind_of(name: str, start: int, end: int, perms: str, next_start: int, next_perms: str,
            stacks: list[int]) -> str:
    """What a mapping most likely is, from its name, place and neighbours."""
    if name == "[heap]":
        return "heap (brk: main malloc arena)"
    if name.startswith("["):
        return name
    if not name:
        if perms.startswith("---"):
            return "anon guard/reserve"
        if any(start <= sp < end for sp in stacks):
            return "anon: a thread's stack"
        if start % ARENA_ALIGN == 0 and next_start == end and next_perms.startswith("---"):
            return "anon: a thread's malloc arena"
        return "anon: Python arenas, large blocks"
    base = os.path.basename(name)
    if "/python3" in name and ".so" not in base:
        return "python binary"
    if ".so" in base:
        return f"lib {base.split('.so')[0]}.so"
    return "file " + base


def smaps(pid: int) -> dict[str, dict[str, int]]:
    """kind → field → KiB over the mappings of PID."""
    stacks = thread_stack_pointers(pid)
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            head = line.split(None, 5)
            start, end = (int(x, 16) for x in head[0].split("-"))
            maps.append((start, end, head[1], head[5].strip() if len(head) > 5 else ""))
    kinds = {}
    for i, (start, end, perms, name) in enumerate(maps):
        nxt = maps[i + 1] if i + 1 < len(maps) else (0, 0, "", "")
        kinds[start] = kind_of(name, start, end, perms, nxt[0], nxt[2], stacks)
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kind = "?"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if "-" in head[0] and not head[0].endswith(":"):
                kind = kinds.get(int(head[0].split("-")[0], 16), "?")
                continue
            key = head[0].rstrip(":")
            if key in FIELDS:
                out[kind][key] += int(head[1])
    return out


def processes(uid: int) -> list[int]:
    from teamhub.system.processes import processes_of

    return processes_of(uid)


def threads(pid: int) -> list[str]:
    names = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            names.append(Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip())
        except OSError:
            pass
    return names


def fork_server_modules(python: Path) -> list[str]:
    code = ("import sys\nfrom teamhub.spawners.forkserver import preload\npreload()\n"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                         check=True, cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    return out.stdout.split()


def start_servers(hub: TeamhubHub, names: list[str]) -> list[User]:
    users = []
    for name in names:
        user = User(hub.url, name, hub.users[name])
        user.login()
        took = user.spawn(180)
        echo(f"{name}: ready and Lab open in {took:.2f}s")
        users.append(user)
    return users


def measure(hub: TeamhubHub, names: list[str], settle: float) -> dict:
    time.sleep(settle)
    per_server: list[dict[str, dict[str, int]]] = []
    thread_names: list[list[str]] = []
    procs = []
    for name in names:
        uid = pwd.getpwnam(hub.system_name(name)).pw_uid
        total: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        pids = processes(uid)
        procs.append(len(pids))
        for pid in pids:
            try:
                for kind, fields in smaps(pid).items():
                    for key, kib in fields.items():
                        total[kind][key] += kib
                thread_names.append(threads(pid))
            except OSError:
                continue  # ended meanwhile
        per_server.append(total)
    kinds = sorted({k for s in per_server for k in s})

    def mean(kind: str | None, key: str) -> float:
        values = [sum(s[k][key] for k in s) if kind is None else s[kind][key] if kind in s
                  else 0 for s in per_server]
        return statistics.fmean(values) / MIB

    totals = {key: round(mean(None, key), 2) for key in FIELDS}
    private = totals["Private_Clean"] + totals["Private_Dirty"]
    shared = totals["Pss"] - private
    n = len(names)
    by_kind = {}
    for kind in kinds:
        row = {key: round(mean(kind, key), 3) for key in FIELDS}
        if row["Rss"] >= 0.05:
            by_kind[kind] = row
    return {
        "servers": n,
        "processes_per_server": statistics.fmean(procs),
        "mb_per_server": totals,
        "private_mb": round(private, 2),
        "pss_mb": totals["Pss"],
        "pss_at_100_estimate_mb": round(private + shared * (n + 1) / 101, 2),
        "threads": sorted({tuple(t) for t in thread_names}),
        "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1]["Pss"])),
    }


def probe_results(hub: TeamhubHub, names: list[str], python: Path) -> dict:
    homes = []
    for name in names:
        account = pwd.getpwnam(hub.system_name(name))
        homes.append(Path(account.pw_dir))
        for pid in processes(account.pw_uid):
            if b"jupyterhub-singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGUSR2)
    found = []
    deadline = time.monotonic() + 60
    for home in homes:
        path = home / ".memprobe.json"
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        found.append(json.loads(path.read_text()))
    forked = set(fork_server_modules(python))
    first = found[0]
    return {
        "after_fork_modules": sorted(set(first["modules"]) - forked),
        "after_config_modules": first["new_modules"],
        "private_mb_at_config": statistics.fmean(p["private_kib_at_config"] for p in found) / MIB,
        "private_mb_idle": statistics.fmean(p["private_kib_idle"] for p in found) / MIB,
        "blocks_at_config": statistics.fmean(p["blocks_at_config"] for p in found),
        "blocks_idle": statistics.fmean(p["blocks_idle"] for p in found),
        "traced_mb": statistics.fmean(p["traced_kib"] for p in found) / MIB,
        "top_files": first["top_files"],
        "top_lines": first["top_lines"],
        "threads": first["threads"],
        "gc": first["gc"],
        "code_run": first["code_run"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path("/opt/teamhub"))
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="Seconds to wait after the last start before measuring.")
    parser.add_argument("--probe", action="store_true",
                        help="tracemalloc, imports and threads inside each server (sizes "
                             "are then inflated by the tracing)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--warm-kernels", choices=["on-demand", "prewarm", "off"],
                        help="teamhub's envs.warm_kernels (default: its default)")
    parser.add_argument("--logs", type=Path, help="Copy the servers' logs here before cleaning up.")
    args = parser.parse_args()
    if os.geteuid() != 0:
        echo("bench.server_memory: run as root")
        return 2
    prefix = args.prefix.resolve()
    proxy_cmd = prefix / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
    hub = TeamhubHub(prefix, proxy_cmd, echo, warm_kernels=args.warm_kernels)
    try:
        if args.probe:
            probe = hub.work / "memprobe_config.py"
            shutil.copy(PROBE, probe)
            probe.chmod(0o644)
            confd = hub.work / "jupyterhub_config.d"
            confd.mkdir()
            (confd / "memprobe.py").write_text(
                f"c.Spawner.args.append('--config={probe}')\n")
        hub.start()
        names = [f"m{i}" for i in range(args.servers)]
        hub.add_users(names)
        users = start_servers(hub, names)
        result = measure(hub, names, args.settle)
        if args.probe:
            result["probe"] = probe_results(hub, names, prefix / "runtime" / "bin" / "python")
        for user in users:
            user.close()
    finally:
        if args.logs and (hub.state / "logs").is_dir():
            shutil.copytree(hub.state / "logs", args.logs, dirs_exist_ok=True)
        hub.cleanup()
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
