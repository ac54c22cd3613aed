"""Where a teamhub spawn's time goes: fork server on versus off, on the real hub.

    <runtime>/bin/python bench/spawn_breakdown.py [--users 10] [--burst 20] [--json]

For each mode starts a real `teamhub up` (tests/support's HubProcess: real Linux
users, configurable-http-proxy) and measures
  - sequential spawns: from POST /hub/api/users/<u>/server until /user/<u>/lab
    answers 200 through the proxy (OAuth redirects included), p50/p95, and how much
    of it the POST itself took (start + hub readiness check + route add);
  - the hub's own readiness poll after start() returns (from its DEBUG log);
  - a burst of N users logging in and spawning at once: time until all are ready;
  - idle PSS of each server process with the burst's servers up;
and, outside the hub, the import cost of jupyter_server with and without
rfc3987_syntax and the start-up cost of a bare interpreter. Run as root.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from support.client import Browser  # noqa: E402
from support.hub import HubProcess, runtime_dir  # noqa: E402

from teamhub.system.processes import processes_of  # noqa: E402

PASSWORD = "bench password 123"


def wait_lab(b: Browser, name: str, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = b.get(f"/user/{name}/lab", timeout=30)
            if r.status_code == 200 and r.url.endswith(f"/user/{name}/lab"):
                return True
        except Exception:  # noqa: BLE001 - keep polling through transient errors
            pass
        time.sleep(0.02)
    return False


def spawn(hub: HubProcess, b: Browser, name: str) -> tuple[float, float, bool]:
    t0 = time.monotonic()
    resp = b.http.post(f"{hub.url}/hub/api/users/{name}/server",
                       headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=120)
    posted = time.monotonic() - t0
    ok = resp.status_code in (201, 202) and wait_lab(b, name)
    return time.monotonic() - t0, posted, ok


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def server_pids(hub: HubProcess, names: list[str]) -> list[int]:
    import pwd

    out = []
    for name in names:
        uid = pwd.getpwnam(hub.system_user(name)).pw_uid
        for pid in processes_of(uid):
            if b"jupyterhub-singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_mode(fork: bool, users: int, burst: int, extra_config: str = "") -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="teamhub-bench-"))
    prefix = "tbf-" if fork else "tbn-"
    hub = HubProcess(root, system_prefix=prefix,
                     extra_toml=f"\n[spawner]\nfork_server = {'true' if fork else 'false'}\n")
    if extra_config:
        (root / "jupyterhub_config.d").mkdir()
        (root / "jupyterhub_config.d" / "bench.py").write_text(extra_config + "\n")
    seq = [f"s{i}" for i in range(users)]
    many = [f"b{i}" for i in range(burst)]
    try:
        for name in seq + many:
            hub.add_user(name, PASSWORD)
        hub.start()
        if fork:
            deadline = time.monotonic() + 60
            while not (hub.state / "forkserver.sock").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
        totals, posts, fails = [], [], 0
        for name in seq:
            b = Browser(hub.url)
            b.login(name, PASSWORD)
            total, posted, ok = spawn(hub, b, name)
            fails += not ok
            totals.append(total)
            posts.append(posted)
        log = hub.log.read_text(errors="replace")
        polls = [float(x) for x in re.findall(r"Server at http://127\.0\.0\.1:\d+/user/\S+ "
                                              r"responded in ([\d.]+)s", log)]
        ready_at: list[float] = []
        failures = [0]
        lock = threading.Lock()

        def one(name: str, t0: float) -> None:
            b = Browser(hub.url)
            ok = b.login(name, PASSWORD).status_code == 302
            ok = ok and spawn(hub, b, name)[2]
            with lock:
                if ok:
                    ready_at.append(time.monotonic() - t0)
                else:
                    failures[0] += 1

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(n, t0)) for n in many]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(3)
        pids = server_pids(hub, many)
        pss = [pss_kb(p) / 1024 for p in pids]
        return {
            "spawn_p50_s": round(statistics.median(totals), 3),
            "spawn_p95_s": round(pct(totals, 0.95), 3),
            "spawn_post_p50_s": round(statistics.median(posts), 3),
            "spawn_failures": fails,
            "hub_readiness_poll_p50_s": round(statistics.median(polls), 3) if polls else None,
            "burst_all_ready_s": round(max(ready_at), 2) if ready_at else None,
            "burst_failures": failures[0],
            "idle_pss_mb": round(statistics.mean(pss), 1) if pss else None,
        }
    finally:
        hub.cleanup()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def import_costs() -> dict[str, float]:
    python = str(runtime_dir() / "bin" / "python")

    def timed(code: str, n: int = 3) -> float:
        best = 1e9
        for _ in range(n):
            t0 = time.monotonic()
            subprocess.run([python, "-c", code], check=True)
            best = min(best, time.monotonic() - t0)
        return round(best, 3)

    block = ("import sys\nclass B:\n def find_spec(self, n, *a):\n"
             "  if n.startswith('rfc3987_syntax'): raise ImportError(n)\n"
             "sys.meta_path.insert(0, B())\n")
    return {
        "python_start_s": timed("pass"),
        "import_jupyter_server_s": timed("import jupyter_server.serverapp"),
        "import_jupyter_server_without_rfc3987_syntax_s":
            timed(block + "import jupyter_server.serverapp"),
        "import_singleuser_and_lab_s": timed("import jupyterhub.singleuser, jupyterlab.labapp"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=["fork", "normal"], help="Measure one mode only.")
    parser.add_argument("--extra-config", default="", metavar="PYTHON",
                        help="Raw JupyterHub config for both hubs, e.g. "
                             "\"c.Spawner.args.append('--X=y')\" (to measure one change).")
    args = parser.parse_args()
    result: dict[str, dict[str, object]] = {"imports": {} if args.only else import_costs()}
    for mode in ("fork", "normal"):
        if args.only in (None, mode):
            result[mode] = run_mode(mode == "fork", args.users, args.burst, args.extra_config)
        else:
            result[mode] = {}
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result["imports"].items():
        print(f"{key:48} {value}")
    print(f"{'':28}{'fork':>12}{'normal':>12}")
    for key in result["fork"] or result["normal"]:
        print(f"{key:28}{result['fork'].get(key)!s:>12}{result['normal'].get(key)!s:>12}")


if __name__ == "__main__":
    main()
