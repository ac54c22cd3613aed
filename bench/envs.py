"""Benchmark: `teamhub env create` against plain uv, cold and warm, in one run.

    <runtime>/bin/python bench/envs.py [--runtime /opt/teamhub/runtime] [--dir /var/tmp/x]
                                       [--attempts 3] [--pip]

Builds numpy, pandas, matplotlib and scikit-learn (and ipykernel, which every
shared env has) two ways, each with its own uv cache so neither warms the other:
  - uv:      `uv venv` + `uv pip install --compile-bytecode ipykernel PACKAGES`
             into a fresh venv;
  - teamhub: `SharedEnvs.create`, what `teamhub env create` runs (lock, venv,
             install, %pip guard, modes, the import check as `nobody`, switch).
The cold pair starts from two empty caches, the warm pair builds a second env
from the caches the cold pair filled. The 1-min load average is recorded before
each side; a pair whose two sides saw loads more than 1.0 apart is run again
(up to --attempts times; the figures are the last attempt's, every attempt is
listed). The teamhub side is also split into its phases (from its progress
lines), and the report gives the disk a second env adds when it shares the
cache with a first (uv hard-links package files; `du` counts each once).
--pip adds `python -m venv` + `pip install` with an empty pip cache.
Needs the package index; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from teamhub.envs.store import BASE_PACKAGES, SharedEnvs  # noqa: E402
from teamhub.system.uv import Uv  # noqa: E402

PACKAGES = ["numpy", "pandas", "matplotlib", "scikit-learn"]
LOAD_MOVED = 1.0

# teamhub's progress lines that open each phase, in order, and the phase each opens.
PHASES = [("creating venv", "venv_s"), ("installing", "install_s"),
          ("compiling bytecode", "compile_s"), ("checking that users can import", "check_s"),
          ("is now current", None)]


def du_kib(*paths: Path) -> int:
    out = subprocess.run(["du", "-sk", "-c", *map(str, paths)], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def load_1m() -> float:
    return round(os.getloadavg()[0], 2)


def load_moved(first: float, second: float, limit: float = LOAD_MOVED) -> bool:
    return abs(first - second) > limit


def ratio(teamhub_s: float, uv_s: float) -> float:
    return round(teamhub_s / uv_s, 2) if uv_s > 0 else float("inf")


def phase_times(start: float, stamps: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds of each phase of a build from its (time, progress line) stamps.

    `setup_s` is everything before the first phase (lock, folders); the last
    phase ends at END (the switch and the metadata write are in `check_s`).
    """
    opened: list[tuple[float, str | None]] = []
    for t, line in stamps:
        for marker, key in PHASES:
            if line.startswith("==> ") and marker in line:
                opened.append((t, key))
                break
    times = {"setup_s": round((opened[0][0] if opened else end) - start, 2)}
    bounds = [t for t, _ in opened] + [end]
    for i, (t, key) in enumerate(opened):
        if key is not None:
            times[key] = round(bounds[i + 1] - t, 2)
    return times


def build_uv(uv: Uv, python: str, target: Path) -> float:
    t = time.perf_counter()
    uv.venv(target, python, echo=lambda _line: None)
    uv.install(target / "bin" / "python", [*BASE_PACKAGES, *PACKAGES], echo=lambda _line: None)
    return round(time.perf_counter() - t, 2)


def build_teamhub(envs: SharedEnvs, name: str) -> tuple[float, dict[str, float]]:
    stamps: list[tuple[float, str]] = []
    t = time.perf_counter()
    envs.create(name, PACKAGES, echo=lambda line: stamps.append((time.perf_counter(), line)))
    end = time.perf_counter()
    return round(end - t, 2), phase_times(t, stamps, end)


def run_pair(label: str, sides: Callable[[int], tuple[Callable[[], float],
                                                     Callable[[], tuple[float, dict]]]],
             attempts: int, echo: Callable[[str], None]) -> dict[str, object]:
    """Run uv then teamhub (as SIDES(attempt) gives them) until their loads agree."""
    tries: list[dict[str, object]] = []
    for n in range(1, attempts + 1):
        uv_side, teamhub_side = sides(n)
        load_uv = load_1m()
        uv_s = uv_side()
        load_teamhub = load_1m()
        teamhub_s, phases = teamhub_side()
        tries.append({"uv_s": uv_s, "teamhub_s": teamhub_s, "ratio": ratio(teamhub_s, uv_s),
                      "load_1m_before_uv": load_uv, "load_1m_before_teamhub": load_teamhub,
                      "teamhub_phases": phases})
        echo(f"{label} #{n}: uv {uv_s} s (load {load_uv}), teamhub {teamhub_s} s "
             f"(load {load_teamhub}): ratio {ratio(teamhub_s, uv_s)}")
        if not load_moved(load_uv, load_teamhub):
            break
    return {**tries[-1], "attempts": tries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", default=str(Path(sys.executable).parents[1]))
    ap.add_argument("--dir", default=None, help="work folder (default: a temp dir in /var/tmp)")
    ap.add_argument("--attempts", type=int, default=3,
                    help="runs of a pair at most while its loads differ by more than 1.0")
    ap.add_argument("--pip", action="store_true", help="also time venv + pip, cold")
    args = ap.parse_args()
    runtime = Path(args.runtime)
    work = Path(args.dir or tempfile.mkdtemp(prefix="teamhub-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # the env check runs as `nobody`, like users
    python = str(runtime / "bin" / "python")
    binary = runtime / "bin" / "uv"

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    res: dict[str, object] = {"packages": [*BASE_PACKAGES, *PACKAGES],
                              "cpus": os.cpu_count()}
    try:
        caches: dict[str, tuple[Uv, SharedEnvs]] = {}

        def cold(n: int):
            # Fresh, empty caches for each attempt: both sides start cold.
            uv = Uv(binary, work / f"uv-cache-{n}")
            envs = SharedEnvs(work / f"envs-{n}", Uv(binary, work / f"envs-{n}" / ".cache"),
                              python)
            caches["last"] = (uv, envs)
            return (lambda: build_uv(uv, python, work / f"uv-cold-{n}"),
                    lambda: build_teamhub(envs, f"cold{n}"))

        def warm(n: int):
            uv, envs = caches["last"]
            return (lambda: build_uv(uv, python, work / f"uv-warm-{n}"),
                    lambda: build_teamhub(envs, f"warm{n}"))

        res["cold"] = run_pair("cold", cold, args.attempts, echo)
        res["warm"] = run_pair("warm", warm, args.attempts, echo)
        last_cold = len(res["cold"]["attempts"])  # type: ignore[index]
        a, b = work / f"uv-cold-{last_cold}", work / "uv-warm-1"
        res["env_kib"] = du_kib(a)
        res["second_env_additional_kib"] = du_kib(a, b) - du_kib(a)
        if args.pip:
            p = work / "pip"
            t = time.perf_counter()
            subprocess.run([python, "-m", "venv", str(p)], check=True)
            subprocess.run([str(p / "bin" / "pip"), "install", "-q", "--cache-dir",
                            str(work / "pipcache"), *BASE_PACKAGES, *PACKAGES], check=True)
            res["pip_cold_s"] = round(time.perf_counter() - t, 2)
            res["pip_env_kib"] = du_kib(p)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
