"""The account store before and after its move to SQLAlchemy/alembic, side by side (sqlite).

    <runtime>/bin/python -m bench.store [--before REV] [--users N] [--json]

Run from the repository root. REV (default: the last commit with the raw-sqlite3
store) is unpacked to a temp folder with `git archive`; each version then runs the
same script in its own interpreter on its own fresh store file: a CLI-style open,
a login's store read (get) and full verify (argon2 included), `user list`, a
whole `python -c` process that opens the store and lists it, and the real
`teamhub user list` command (its process, imports included). Processes count
their CPU time (user + system), median of 10 runs; in-process steps their own
CPU time (process_time), the best of 5: on a shared machine wall clocks measure the others.
Prints a table of both and after/before ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE = "c4797ea"  # main before the store moved to SQLAlchemy

# Runs inside each version's interpreter; prints one JSON line of timings (seconds).
_PROBE = r"""
import json, sys, time
from pathlib import Path
from argon2 import PasswordHasher
import teamhub.accounts.store as store_mod
from teamhub.accounts.store import AccountStore

db, users = Path(sys.argv[1]), int(sys.argv[2])
fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
real = store_mod._hasher
store_mod._hasher = fast  # filling the store is not what is measured
store = AccountStore(db)
for i in range(users):
    store.add(f"user{i:04d}", "correct horse battery")
store_mod._hasher = real
store.add("ada", "correct horse battery")

def per_op(fn, n):
    best = float("inf")
    for _ in range(5):
        t = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t) / n)
    return best

out = {
    "open": per_op(lambda: AccountStore(db), 100),
    "get": per_op(lambda: store.get("user0042"), 1000),
    "verify": per_op(lambda: store.verify("ada", "correct horse battery"), 5),
    "list": per_op(lambda: store.list(), 50),
}
print(json.dumps(out))
"""

_PROCESS = ("import sys; from pathlib import Path; from teamhub.accounts.store import "
            "AccountStore; AccountStore(Path(sys.argv[1])).list()")
_CLI = "import sys; sys.argv = ['teamhub', 'user', 'list']; from teamhub.cli import main; main()"

LABELS = {"open": "open the store (each CLI command)", "get": "login: read the account",
          "verify": "login: verify (argon2 included)", "list": "user list (store part)",
          "process": "process CPU: open + list", "cli": "`teamhub user list` process CPU"}


def run_version(src: Path, users: int, work: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    db = work / "state" / "accounts.sqlite"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(db), str(users)], env=env,
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process"] = _process_cpu([sys.executable, "-c", _PROCESS, str(db)], env)
    (work / "teamhub.toml").write_text("")
    cli_env = dict(env, TEAMHUB_CONFIG=str(work / "teamhub.toml"),
                   TEAMHUB_PATHS_STATE_DIR=str(work / "state"))
    result["cli"] = _process_cpu([sys.executable, "-c", _CLI], cli_env)
    return result


def _process_cpu(argv: list[str], env: dict[str, str]) -> float:
    # CPU time (user + system) rather than wall clock: on a shared, loaded machine
    # the wall clock of a short process mostly measures the others.
    times = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the old store")
    parser.add_argument("--users", type=int, default=200, help="accounts in the store")
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="teamhub-bench-store-") as tmp:
        old = Path(tmp) / "before"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(repo), "archive", args.before, "src"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        results = {}
        for label, src in (("before", old / "src"), ("after", repo / "src")):
            work = Path(tmp) / f"work-{label}"
            work.mkdir()
            results[label] = run_version(src, args.users, work)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'sqlite store, ' + str(args.users) + ' accounts':40} {'before':>10} {'after':>10} "
          f"{'after/before':>13}")
    for key, label in LABELS.items():
        b, a = results["before"][key], results["after"][key]
        print(f"{label:40} {_fmt(b):>10} {_fmt(a):>10} {a / b:>13.2f}")


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} µs"


if __name__ == "__main__":
    main()
