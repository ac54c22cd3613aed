"""The measurements, each run against one started hub with its users added."""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from teamhub.system.processes import processes_of

from . import containers
from .client import StepFailed, User
from .hubs import Hub

Echo = Callable[[str], None]


@dataclass
class Sizes:
    users: int = 10           # sequential spawns
    burst: int = 20           # simultaneous logins + spawns; also the servers up for idle PSS
    kernels: int = 3          # users whose first kernel is timed
    requests: int = 200       # small requests through the proxy and directly, each
    routes: int = 100         # proxy route add/remove pairs
    spawn_timeout: float = 180
    idle_seconds: float = 60  # window of the idle hub + proxy CPU measurement


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def sequential(hub: Hub, names: list[str], sizes: Sizes, echo: Echo) -> tuple[dict, list[User]]:
    """Log in and spawn one user after the other; servers stay up for the next steps.
    A spawn that fails is a result (counted, the next user goes on), not an error."""
    logins, spawns, ready, lab, users, failures = [], [], [], [], [], 0
    for i, name in enumerate(names, 1):
        user = User(hub.url, name, hub.users[name])
        logins.append(user.login())
        try:
            spawns.append(user.spawn(sizes.spawn_timeout))
        except (StepFailed, requests.RequestException) as exc:
            failures += 1
            user.close()
            echo(f"{hub.label}: sequential {i}/{len(names)}: login {logins[-1]:.3f}s, "
                 f"spawn failed: {exc}")
            continue
        ready.append(user.last_ready_s)
        lab.append(spawns[-1] - ready[-1])
        users.append(user)
        echo(f"{hub.label}: sequential {i}/{len(names)}: login {logins[-1]:.3f}s, "
             f"spawn {spawns[-1]:.2f}s")
    result: dict = {"login_p50_s": round(percentile(logins, 0.5), 4),
                    "sequential_users": len(names), "spawn_failures": failures}
    if spawns:
        result |= {
            "spawn_p50_s": round(percentile(spawns, 0.5), 3),
            "spawn_p95_s": round(percentile(spawns, 0.95), 3),
            "spawn_max_s": round(max(spawns), 3),
            "spawn_ready_p50_s": round(percentile(ready, 0.5), 3),
            "lab_open_p50_s": round(percentile(lab, 0.5), 3),
        }
    return result, users


# A person opens a notebook in JupyterLab: the page has been open this long by then
# (a browser renders Lab in about a second; then the person finds and clicks the notebook).
LAB_OPEN_S = 3.0
# ... and clicks a launcher card this long after its pointer came to rest on it, which is
# when teamhub's Lab extension sends its hint (0.1 s of rest, REST_MS, plus this).
CLICK_AFTER_HINT_S = 0.3
# A link to a notebook: JupyterLab asks for the notebook's kernel this long after its
# page was served (its scripts load and start first: 4.2 s in the day-one Chromium test on
# the 2-core machine; a fast desktop browser with the scripts cached, about this).
LINK_LOAD_S = 1.5


def kernels(hub: Hub, users: list[User], echo: Echo, spawn_timeout: float = 180) -> dict:
    """New kernel → first execute_reply, opened from a JupyterLab page open LAB_OPEN_S:
    each user's first and second default kernel. Where the hub has more shared
    environments: one's first kernel opened from its launcher card (the user points at
    the card, and clicks CLICK_AFTER_HINT_S after the Lab extension's hint), another's
    from a link to a notebook of it (JupyterLab asks for its kernel LINK_LOAD_S after its
    page was served), then the first and second kernel of the shared environment, and
    its first kernel in the user's next server: a returning user, whose JupyterLab starts
    the parents of their recent kernels when it opens (the env used last is one)."""
    took: dict[tuple[str, int], list[float]] = {}

    def measure(user: User, name: str, nth: int, how: str) -> None:
        took.setdefault((name, nth), []).append(user.kernel_first_exec(kernel=name))
        echo(f"{hub.label}: kernel {name} {how} for {user.name}: "
             f"{took[(name, nth)][-1]:.2f}s")

    for user in users:
        user.lab_open_for(LAB_OPEN_S)
        measure(user, "python3", 1, "#1 start + first 5 * 4")
        measure(user, "python3", 2, "#2 start + first 5 * 4")
        if hub.pointed_env_kernel:
            user.point_at(hub.pointed_env_kernel)
            time.sleep(CLICK_AFTER_HINT_S)
            measure(user, hub.pointed_env_kernel, 1,
                    f"first, clicked {CLICK_AFTER_HINT_S}s after pointing at its card,")
        if hub.linked_env_kernel:
            user.follow_link("bench-linked.ipynb", hub.linked_env_kernel)
            time.sleep(LINK_LOAD_S)
            measure(user, hub.linked_env_kernel, 1,
                    f"first, {LINK_LOAD_S}s after its notebook's page,")
        if hub.shared_env_kernel:
            name = hub.shared_env_kernel
            measure(user, name, 1, "#1 start + first 5 * 4")
            measure(user, name, 2, "#2 start + first 5 * 4")
            user.stop()
            _wait_stopped(hub, user)
            user.spawn(spawn_timeout)
            user.lab_open_for(LAB_OPEN_S)
            measure(user, name, 0, "first in the user's next server,")
    result = {"kernel_first_exec_s": round(percentile(took[("python3", 1)], 0.5), 3),
              "kernel_next_exec_s": round(percentile(took[("python3", 2)], 0.5), 3)}
    if hub.shared_env_kernel:
        result |= {
            "env_kernel_first_exec_s":
                round(percentile(took[(hub.shared_env_kernel, 1)], 0.5), 3),
            "env_kernel_next_exec_s":
                round(percentile(took[(hub.shared_env_kernel, 2)], 0.5), 3),
            "env_kernel_returning_exec_s":
                round(percentile(took[(hub.shared_env_kernel, 0)], 0.5), 3)}
    if hub.pointed_env_kernel:
        result["env_kernel_pointed_exec_s"] = round(
            percentile(took[(hub.pointed_env_kernel, 1)], 0.5), 3)
    if hub.linked_env_kernel:
        result["env_kernel_linked_exec_s"] = round(
            percentile(took[(hub.linked_env_kernel, 1)], 0.5), 3)
    return result


def _wait_stopped(hub: Hub, user: User, timeout: float = 60) -> None:
    """Until the hub lists no server for USER (a stop answered 202 is still under way)."""
    deadline = time.monotonic() + timeout
    while hub.api("GET", f"/users/{user.name}").json().get("servers", {}).get("") is not None:
        if time.monotonic() > deadline:
            raise StepFailed(f"{user.name}: stop: the server still runs after {timeout}s")
        time.sleep(0.1)


def _route_of(hub: Hub, name: str) -> str:
    routes = hub.session().get(f"{hub.proxy_api}/api/routes", timeout=30,
                               headers={"Authorization": f"token {hub.proxy_token}"}).json()
    for spec, route in routes.items():
        if spec.rstrip("/").endswith(f"/user/{name}"):
            return route["target"]
    raise RuntimeError(f"{hub.label}: the proxy has no route for {name}: {sorted(routes)}")


def proxy(hub: Hub, name: str, sizes: Sizes, echo: Echo) -> dict:
    """p50 of `GET /user/NAME/api` (tiny, unauthenticated) through the proxy and straight
    to the server's own port, interleaved so that load from others hits both alike."""
    target = _route_of(hub, name)
    via, direct = requests.Session(), requests.Session()
    through_ms, direct_ms = [], []
    for _ in range(sizes.requests):
        for session, base, out in ((via, hub.url, through_ms), (direct, target, direct_ms)):
            t0 = time.perf_counter()
            resp = session.get(f"{base}/user/{name}/api", timeout=30)
            out.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"{hub.label}: GET {base}/user/{name}/api: "
                                   f"HTTP {resp.status_code}")
    p_via, p_direct = percentile(through_ms, 0.5), percentile(direct_ms, 0.5)
    echo(f"{hub.label}: request p50 through proxy {p_via:.2f} ms, direct {p_direct:.2f} ms")
    return {"proxy_p50_ms": round(p_via, 3), "direct_p50_ms": round(p_direct, 3),
            "proxy_overhead_ms": round(p_via - p_direct, 3)}


def routes(hub: Hub, sizes: Sizes, echo: Echo) -> dict:
    """Time adding and removing a route through the proxy's REST API, as the hub does
    at every server start and stop."""
    api = hub.session()
    api.headers["Authorization"] = f"token {hub.proxy_token}"
    add_ms, remove_ms = [], []
    for i in range(sizes.routes):
        path = f"{hub.proxy_api}/api/routes/bench-route-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        resp = api.post(path, json={"target": "http://127.0.0.1:9"}, timeout=30)
        add_ms.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 201:
            raise RuntimeError(f"{hub.label}: proxy route add: HTTP {resp.status_code}")
        t0 = time.perf_counter()
        resp = api.delete(path, timeout=30)
        remove_ms.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 204:
            raise RuntimeError(f"{hub.label}: proxy route remove: HTTP {resp.status_code}")
    echo(f"{hub.label}: route add p50 {percentile(add_ms, 0.5):.2f} ms")
    return {"route_add_ms": round(percentile(add_ms, 0.5), 3),
            "route_remove_ms": round(percentile(remove_ms, 0.5), 3)}


def burst(hub: Hub, names: list[str], sizes: Sizes, echo: Echo) -> tuple[dict, list[User]]:
    """All NAMES log in and spawn at the same moment, each in its own thread."""
    start = threading.Barrier(len(names) + 1)
    done: dict[str, float] = {}
    failed: dict[str, str] = {}
    users = [User(hub.url, name, hub.users[name]) for name in names]

    def one(user: User) -> None:
        start.wait()
        t0 = time.perf_counter()
        try:
            user.login()
            user.spawn(sizes.spawn_timeout)
            done[user.name] = time.perf_counter() - t0
        except (StepFailed, requests.RequestException) as exc:
            failed[user.name] = str(exc)

    threads = [threading.Thread(target=one, args=(u,), daemon=True) for u in users]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    all_done = time.perf_counter() - t0
    for why in failed.values():
        echo(f"{hub.label}: burst failure: {why}")
    echo(f"{hub.label}: burst of {len(names)}: {len(done)} ready, {len(failed)} failed, "
         f"{all_done:.1f}s until all finished")
    result = {"burst_size": len(names), "burst_all_ready_s": round(all_done, 2),
              "burst_failures": len(failed)}
    if done:
        result["burst_p50_s"] = round(statistics.median(done.values()), 2)
    return result, [u for u in users if u.name in done]


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass  # exited meanwhile
    return 0


def idle_pss(hub: Hub, names: list[str], echo: Echo, settle: float = 3.0) -> dict:
    """Mean PSS of each user's running server: every process running as that user's
    uid (the server's whole process tree; no kernels are running by now)."""
    time.sleep(settle)  # let start-up garbage be collected and caches settle
    per_user = []
    for name in names:
        per_user.append(sum(_pss_kib(pid) for pid in processes_of(hub.uid(name))) / 1024)
    mean = statistics.fmean(per_user)
    echo(f"{hub.label}: idle PSS per server {mean:.1f} MB over {len(per_user)} servers")
    return {"idle_pss_mb": round(mean, 1), "idle_servers": len(per_user)}


def _uids_with_warm_parents() -> set[int]:
    """One pass over /proc (a pass per user would keep a core of this small machine busy)."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                if b"warm_parent.py" in f.read():
                    found.add(entry.stat().st_uid)
        except OSError:
            pass
    return found


def lab_open_pss(hub: Hub, users: list[User], echo: Echo, wait: float = 180) -> dict:
    """Mean PSS of each server while its user's JupyterLab is open (the kernel list asked
    for every 2 s, as teamhub's Lab extension does): teamhub's servers then start the warm
    kernel parents of their users' recent kernels (here: the default kernel's), so this
    is idle_pss plus what an open Lab costs. No kernels run."""
    deadline = time.monotonic() + wait
    while True:
        for user in users:
            user.list_kernels()
        warm = _uids_with_warm_parents()
        without = sum(hub.uid(u.name) not in warm for u in users)
        if not without or time.monotonic() > deadline:
            break
        time.sleep(2)
    measured = idle_pss(hub, [u.name for u in users], lambda _: None)
    echo(f"{hub.label}: PSS per server with JupyterLab open {measured['idle_pss_mb']} MB "
         f"({len(users) - without} of {len(users)} with a warm kernel parent)")
    return {"lab_open_pss_mb": measured["idle_pss_mb"], "lab_open_warm_parents":
            len(users) - without}


def idle_containers(hub: Hub, names: list[str], echo: Echo, settle: float = 3.0) -> dict:
    """Mean idle memory of each user's server container: PSS summed over the container's
    processes, and its cgroup's usage as `docker stats` shows it (no kernels run)."""
    time.sleep(settle)
    found = [m for m in (containers.idle_memory_mb(hub.container_name(n) or "") for n in names)
             if m is not None]
    if not found:
        return {"idle_pss_mb": None, "idle_cgroup_mb": None, "idle_servers": 0}
    pss = statistics.fmean(m[0] for m in found)
    usage = statistics.fmean(m[1] for m in found)
    echo(f"{hub.label}: idle per container: PSS {pss:.1f} MB, cgroup {usage:.1f} MB "
         f"over {len(found)} containers")
    return {"idle_pss_mb": round(pss, 1), "idle_cgroup_mb": round(usage, 1),
            "idle_servers": len(found)}


def spawn_timeline(hub: Hub, users: list[User], echo: Echo) -> dict:
    """Where the sequential spawns' time went (p50 of each segment), from timestamps of
    the client, the engine, the server's output and the hub's log."""
    log = hub.log.read_text(errors="replace") if hub.log.exists() else ""
    per_segment: dict[str, list[float]] = {}
    for user in users:
        marks = containers.container_marks(hub.container_name(user.name) or "")
        marks["request"] = user.last_request_at
        marks["ready"] = user.last_request_at + user.last_ready_s
        marks["lab"] = user.last_request_at + user.last_spawn_s
        took = [t for t in containers.hub_log_times(
            log, rf"^User {re.escape(user.name)} took [\d.]+ seconds to start")
            if t >= user.last_request_at - 1]
        marks["hub_ready"] = took[0] if took else None
        for key, value in containers.segments(marks).items():
            per_segment.setdefault(key, []).append(value)
    result = {f"spawn_{key.removesuffix('_s')}_p50_s": round(percentile(values, 0.5), 3)
              for key, values in per_segment.items()}
    echo(f"{hub.label}: where a spawn's time goes (p50): " + ", ".join(
        f"{k} {v}" for k, v in result.items()))
    return result


def _cpu_ticks(pid: int) -> int:
    """CPU time of PID and of its children it has waited for, in clock ticks (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # utime, stime, cutime, cstime: fields 14-17 (1-based), 11-14 after the name.
    return sum(int(x) for x in fields[11:15])


def idle_cpu(hub: Hub, echo: Echo, seconds: float = 60.0) -> dict:
    """Share of one core the hub and its proxy (and their helpers running as root: fork
    server, culler) used over SECONDS while the users' servers sit idle."""
    before = {pid: _cpu_ticks(pid) for pid in hub.service_pids()}
    time.sleep(seconds)
    after = {pid: _cpu_ticks(pid) for pid in hub.service_pids()}
    # A process gone meanwhile is lost (its parent's cutime has it once reaped); a new one
    # counts from zero.
    ticks = sum(max(after[p] - before.get(p, 0), 0) for p in after)
    used = ticks / os.sysconf("SC_CLK_TCK")
    share = 100 * used / seconds
    echo(f"{hub.label}: idle hub + proxy CPU {used:.2f}s over {seconds:.0f}s "
         f"({share:.2f}% of one core, {len(after)} processes)")
    return {"idle_cpu_pct": round(share, 2), "idle_cpu_window_s": seconds}
