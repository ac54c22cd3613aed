"""Benchmark teamhub against vanilla JupyterHub on this machine, one after the other.

    <prefix>/runtime/bin/python -m bench [--prefix /opt/teamhub] [--quick] [--json]
                                         [--backend local|docker]

Run as root from the repository root (or use bench/run). Prints progress on
stderr, then a table (teamhub, vanilla, teamhub/vanilla); with --json the last
line is {"teamhub": {...}, "vanilla": {...}}. With --backend docker, teamhub runs
its docker backend and vanilla is JupyterHub + DockerSpawner + NativeAuthenticator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from . import docker_images, metrics
from .client import StepFailed
from .hubs import Hub, TeamhubHub
from .vanilla import CACHE_DIR, VanillaHub, ensure_vanilla_venv, runtime_versions
from .vanilla_docker import SPAWNER_PACKAGES, VanillaDockerHub, ensure_vanilla_docker_venv

# (key, label, unit); lower is better for all of them.
ROWS = [
    ("spawn_p50_s", "spawn, sequential, p50", "s"),
    ("spawn_p95_s", "spawn, sequential, p95", "s"),
    ("spawn_failures", "spawn, sequential: failures", ""),
    ("spawn_ready_p50_s", "  of which: hub says ready", "s"),
    ("lab_open_p50_s", "  of which: Lab page, OAuth", "s"),
    ("login_p50_s", "login form POST, p50", "s"),
    ("stop_all_s", "stop all sequential servers", "s"),
    ("burst_all_ready_s", "burst: all ready", "s"),
    ("burst_p50_s", "burst: per-user p50", "s"),
    ("burst_failures", "burst: failures", ""),
    ("idle_cpu_pct", "idle hub + proxy CPU (% of a core)", "%"),
    ("kernel_first_exec_s", "kernel start + first 5 * 4", "s"),
    ("kernel_next_exec_s", "  the same, second kernel", "s"),
    ("env_kernel_first_exec_s", "  shared env's first kernel", "s"),
    ("env_kernel_next_exec_s", "  shared env's second kernel", "s"),
    ("env_kernel_returning_exec_s", "  shared env's first, user's next server", "s"),
    ("env_kernel_pointed_exec_s", "  another env's first, from its launcher card", "s"),
    ("env_kernel_linked_exec_s", "  a third env's first, from a link to a notebook", "s"),
    ("idle_pss_mb", "idle PSS per server", "MB"),
    ("lab_open_pss_mb", "  the same, JupyterLab open", "MB"),
    ("proxy_p50_ms", "request via proxy, p50", "ms"),
    ("direct_p50_ms", "request direct, p50", "ms"),
    ("proxy_overhead_ms", "proxy overhead, p50", "ms"),
    ("route_add_ms", "proxy route add, p50", "ms"),
    ("route_remove_ms", "proxy route remove, p50", "ms"),
]
# With --backend docker: idle memory as the container's cgroup counts it, and where
# a sequential spawn's time goes (p50 of each segment; bench/containers.py).
DOCKER_ROWS = [
    ("idle_cgroup_mb", "idle cgroup memory per server", "MB"),
    ("spawn_before_create_p50_s", "spawn: request → created", "s"),
    ("spawn_container_start_p50_s", "spawn: created → started", "s"),
    ("spawn_server_start_p50_s", "spawn: started → listening", "s"),
    ("spawn_hub_readiness_p50_s", "spawn: listening → hub ready", "s"),
    ("spawn_route_ready_p50_s", "spawn: route add + event", "s"),
    ("spawn_lab_open_p50_s", "spawn: Lab page, OAuth", "s"),
]

QUICK = metrics.Sizes(users=5, burst=10, kernels=1, requests=50, routes=30, spawn_timeout=120,
                      idle_seconds=20)
# The pair (teamhub, vanilla) is measured again when the 1-minute load average before one
# side differs from the other's by more than this: one noisy minute must not decide a ratio.
LOAD_MOVED = 1.0


def echo(line: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def default_prefix() -> Path:
    # The runtime running this is <prefix>/runtime.
    return Path(sys.prefix).parent


def measure(hub: Hub, sizes: metrics.Sizes, add_first: bool,
            logs: Path | None = None) -> dict:
    """Start HUB, run every measurement, and always clean up after it."""
    short = [f"{hub.name_tag}u{i}" for i in range(1, max(sizes.users, sizes.burst) + 1)]
    try:
        load = os.getloadavg()[0]
        echo(f"{hub.label}: starting (work folder {hub.work}); load average {load:.2f}")
        if add_first:  # vanilla: PAM's allowed_users are in the config it starts with
            hub.add_users(short)
            hub.start()
        else:
            hub.start()
            hub.add_users(short)
        names = list(hub.users)
        echo(f"{hub.label}: up on {hub.url} with {len(names)} users ({hub.footprint()})")
        result, users = metrics.sequential(hub, names[:sizes.users], sizes, echo)
        in_containers = hub.container_name(names[0]) is not None
        if in_containers and users:
            result |= metrics.spawn_timeline(hub, users, echo)
        # Other work on the machine skews everything: say how busy it was.
        result["load_1m_at_start"] = round(load, 2)
        if users:  # these need a running server
            result |= metrics.kernels(hub, users[:sizes.kernels], echo, sizes.spawn_timeout)
            result |= metrics.proxy(hub, users[0].name, sizes, echo)
        result |= metrics.routes(hub, sizes, echo)
        if in_containers and users:
            # The sequential servers, idle by now: a burst may leave none up to measure.
            result |= metrics.idle_containers(hub, [u.name for u in users], echo)
        for user in users:
            user.close()
        echo(f"{hub.label}: stopping the servers before the burst")
        t0 = time.perf_counter()
        hub.stop_servers()
        result["stop_all_s"] = round(time.perf_counter() - t0, 2)
        echo(f"{hub.label}: {len(users)} servers stopped in {result['stop_all_s']}s")
        burst, up = metrics.burst(hub, names[:sizes.burst], sizes, echo)
        result |= burst
        if not in_containers:
            result |= metrics.idle_pss(hub, [u.name for u in up], echo) if up else {
                "idle_pss_mb": None, "idle_servers": 0}
        if up:  # the hub's own cost of idle servers: polls, activity reports, culler
            result |= metrics.idle_cpu(hub, echo, sizes.idle_seconds)
        if up and not in_containers and hub.warm_kernels != "off":
            result |= metrics.lab_open_pss(hub, up, echo)
        for user in up:
            user.close()
        return result
    finally:
        if logs is not None and hub.log.exists():
            logs.mkdir(parents=True, exist_ok=True)
            shutil.copy(hub.log, logs / f"{hub.label}-hub.log")
        echo(f"{hub.label}: cleaning up (servers, proxy, Linux accounts, folders)")
        # A second Ctrl-C must not cut the cleanup short and leave accounts behind.
        previous = {sig: signal.signal(sig, signal.SIG_IGN)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            hub.cleanup()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(results: dict[str, dict]) -> str:
    t, v = results["teamhub"], results["vanilla"]
    docker = "docker" in (t.get("backend"), v.get("backend"))
    lines = [f"{'metric':<36} {'teamhub':>10} {'vanilla':>10} {'ratio':>8}", "-" * 67]
    for key, label, unit in ROWS + (DOCKER_ROWS if docker else []):
        a, b = t.get(key), v.get(key)
        ratio = f"{a / b:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) \
            and b else "-"
        lines.append(f"{label + (f' ({unit})' if unit else ''):<36} {_fmt(a):>10} "
                     f"{_fmt(b):>10} {ratio:>8}")
    lines.append(f"sequential users {t.get('sequential_users')}, burst {t.get('burst_size')}, "
                 f"idle servers {t.get('idle_servers')} / {v.get('idle_servers')}, "
                 f"1-min load average at start {t.get('load_1m_at_start')} / "
                 f"{v.get('load_1m_at_start')} ({os.cpu_count()} CPUs), pairs measured "
                 f"{t.get('pairs_measured', 1)}; ratio = teamhub / vanilla, lower is better")
    if docker:
        lines.append("teamhub: spawner.backend = docker; vanilla: JupyterHub + DockerSpawner "
                     "+ NativeAuthenticator on the host network; idle PSS summed over each "
                     "container's processes")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", type=Path, default=None,
                    help="teamhub install to measure (holds runtime/ and proxy/); default: "
                         "the one whose runtime runs this")
    ap.add_argument("--quick", action="store_true",
                    help=f"under 5 minutes: {QUICK.users} sequential users, burst of "
                         f"{QUICK.burst} (so idle PSS over {QUICK.burst} servers), "
                         f"{QUICK.kernels} kernel, {QUICK.requests} proxy requests, "
                         f"{QUICK.routes} route changes")
    ap.add_argument("--users", type=int, help="sequential spawns (default 10)")
    ap.add_argument("--burst", type=int, help="simultaneous logins+spawns (default 20)")
    ap.add_argument("--kernels", type=int, help="kernel first-execution samples (default 3)")
    ap.add_argument("--requests", type=int, help="proxy/direct requests each (default 200)")
    ap.add_argument("--routes", type=int, help="proxy route add/remove pairs (default 100)")
    ap.add_argument("--spawn-timeout", type=float, help="seconds before a spawn counts "
                                                        "as failed (default 180)")
    ap.add_argument("--idle-seconds", type=float, help="window over which the idle hub's "
                                                       "and proxy's CPU is measured, the "
                                                       "burst's servers up (default 60)")
    ap.add_argument("--pairs", type=int, default=3, metavar="N",
                    help=f"measure teamhub and vanilla again, up to N pairs in all, while "
                         f"the 1-minute load average before the two sides differs by more "
                         f"than {LOAD_MOVED}; the pair with the smallest difference is "
                         f"reported (default 3)")
    ap.add_argument("--cache-dir", type=Path, default=CACHE_DIR,
                    help="where the vanilla venv is cached")
    ap.add_argument("--logs", type=Path, metavar="DIR",
                    help="keep each hub's log there (teamhub-hub.log, vanilla-hub.log)")
    ap.add_argument("--backend", choices=["local", "docker"], default="local",
                    help="docker: teamhub with spawner.backend = docker against JupyterHub + "
                         "DockerSpawner + NativeAuthenticator (images built here, never "
                         "pulled; needs a running Docker engine)")
    ap.add_argument("--image", default="bench", metavar="NAME",
                    help="with --backend docker: the `teamhub image build` name teamhub's "
                         "servers run from (built or found by its recipe hash; default "
                         "bench); the vanilla single-user image is built from it")
    ap.add_argument("--unprivileged", action="store_true",
                    help="teamhub with hub.unprivileged (its hub, proxy and culler as an "
                         "account of their own, everything root's through the helper; the "
                         "default of an install); without it teamhub's hub runs as root "
                         "(hub.unprivileged = false)")
    ap.add_argument("--warm-kernels", choices=["on-demand", "prewarm", "off"],
                    help="teamhub's envs.warm_kernels for this run (default: its default)")
    ap.add_argument("--only", choices=["teamhub", "vanilla"],
                    help="measure one hub only (the other's object in the JSON is empty)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON "
                                                        "object on the last line")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else metrics.Sizes()
    for field in ("users", "burst", "kernels", "requests", "routes", "spawn_timeout",
                  "idle_seconds"):
        value = getattr(args, field)
        if value is not None:
            if value < 1:
                ap.error(f"--{field.replace('_', '-')} must be at least 1, not {value}")
            sizes = metrics.Sizes(**{**sizes.__dict__, field: value})
    if args.pairs < 1:
        ap.error(f"--pairs must be at least 1, not {args.pairs}")
    if sizes.kernels > sizes.users:
        sizes = metrics.Sizes(**{**sizes.__dict__, "kernels": sizes.users})
    args.sizes = sizes
    return args


def measure_docker(args: argparse.Namespace, prefix: Path, proxy_cmd: Path,
                   versions: dict[str, str]) -> dict[str, dict]:
    """teamhub's docker backend against DockerSpawner, each from an image built here."""
    if shutil.which("docker") is None or subprocess.run(
            ["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        raise RuntimeError("--backend docker needs a running Docker engine (`docker info` "
                           "failed); start dockerd, or measure the local backend")
    # Images and venv first (cached), so that a failing build stops before any hub runs.
    base = docker_images.teamhub_image(prefix / "runtime", args.image, echo)
    venv = image = None
    if args.only != "teamhub":
        image = docker_images.vanilla_singleuser(base, versions, echo, args.cache_dir)
        venv = ensure_vanilla_docker_venv(versions["jupyterhub"], echo, args.cache_dir)
    teamhub = (lambda: measure(TeamhubHub(prefix, proxy_cmd, echo, image=args.image),
                               args.sizes, add_first=False, logs=args.logs)) \
        if args.only != "vanilla" else None
    vanilla = (lambda: measure(VanillaDockerHub(venv, image, proxy_cmd, echo),
                               args.sizes, add_first=False, logs=args.logs)) \
        if venv is not None and image is not None else None
    results = paired(teamhub, vanilla, args.pairs)
    if results["teamhub"]:
        results["teamhub"] |= {"backend": "docker", "image": base}
    if venv is not None and results["vanilla"]:
        spawner_versions = runtime_versions(venv / "bin" / "python",
                                            ("jupyterhub", *SPAWNER_PACKAGES, "docker"))
        results["vanilla"] |= {"backend": "docker", "image": image,
                               "versions": spawner_versions}
    return results


def paired(teamhub: Callable[[], dict] | None, vanilla: Callable[[], dict] | None,
           pairs: int) -> dict[str, dict]:
    """Measure both sides, one after the other, again while the load average before them
    differs by more than LOAD_MOVED (up to PAIRS pairs); the closest pair is reported."""
    measured: list[tuple[float, dict, dict]] = []
    for attempt in range(1, pairs + 1):
        t = teamhub() if teamhub else {}
        v = vanilla() if vanilla else {}
        if not (t and v):
            return {"teamhub": t, "vanilla": v}
        moved = abs(t["load_1m_at_start"] - v["load_1m_at_start"])
        measured.append((moved, t, v))
        if moved <= LOAD_MOVED:
            break
        echo(f"load average before the sides differs by {moved:.2f} (> {LOAD_MOVED}): "
             + ("measuring the pair again" if attempt < pairs else
                f"keeping the closest of {pairs} pairs"))
    moved, t, v = min(measured, key=lambda m: m[0])
    for side in (t, v):
        side |= {"pairs_measured": len(measured), "load_moved": round(moved, 2),
                 "load_1m_by_pair": [[m[1]["load_1m_at_start"], m[2]["load_1m_at_start"]]
                                     for m in measured]}
    return {"teamhub": t, "vanilla": v}


def _terminate(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so that every hub's cleanup runs


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("bench: error: run as root: it creates Linux users and runs two hubs",
              file=sys.stderr)
        return 2
    prefix = (args.prefix or default_prefix()).resolve()
    runtime_python = prefix / "runtime" / "bin" / "python"
    proxy_cmd = prefix / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
    if not proxy_cmd.exists():
        found = shutil.which("configurable-http-proxy")
        proxy_cmd = Path(found) if found else proxy_cmd
    for need in (runtime_python, proxy_cmd):
        if not need.exists():
            print(f"bench: error: {need} not found; install teamhub there (./install.sh "
                  f"--prefix {prefix} --no-start) or pass --prefix", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _terminate)
    t0 = time.monotonic()
    versions = runtime_versions(runtime_python)
    echo(f"teamhub runtime {prefix / 'runtime'}: " + ", ".join(
        f"{k} {v}" for k, v in versions.items()) + f"; sizes {args.sizes}")
    results: dict[str, dict] = {"teamhub": {}, "vanilla": {}}
    try:
        if args.backend == "docker":
            results = measure_docker(args, prefix, proxy_cmd, versions)
        else:
            # Built (or found in the cache) before anything runs, so a failing pip stops early.
            venv = ensure_vanilla_venv(versions, echo, args.cache_dir) \
                if args.only != "teamhub" else None
            teamhub = (lambda: measure(TeamhubHub(prefix, proxy_cmd, echo,
                                                  unprivileged=args.unprivileged,
                                                  warm_kernels=args.warm_kernels), args.sizes,
                                       add_first=False, logs=args.logs)) \
                if args.only != "vanilla" else None
            vanilla = (lambda: measure(VanillaHub(venv, proxy_cmd, echo), args.sizes,
                                       add_first=True, logs=args.logs)) \
                if venv is not None else None
            results = paired(teamhub, vanilla, args.pairs)
    except (RuntimeError, StepFailed, OSError, requests.RequestException) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything it had set up was removed", file=sys.stderr)
        return 130
    echo(f"done in {time.monotonic() - t0:.0f}s")
    print(table(results))
    if args.json:
        print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
