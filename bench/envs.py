"""Benchmark: building a shared environment with uv versus venv + pip.

    <runtime>/bin/python bench/envs.py [--runtime /opt/teamhub/runtime] [--dir /var/tmp/x]

Builds numpy, pandas, matplotlib and scikit-learn
  1. with uv and an empty cache (cold),
  2. with uv again into a second env, same cache (warm),
  3. as `teamhub env create` does it (warm cache, plus ipykernel and the import check),
  4. with `python -m venv` + `pip install` and an empty pip cache,
and reports seconds for each plus the disk the second uv env adds: uv hard-links
package files from its cache, so `du` over both envs (which counts a hard-linked
file once) minus `du` of the first is what an additional env really costs.
Needs network access to the package index; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from teamhub.envs.store import SharedEnvs  # noqa: E402
from teamhub.system.uv import Uv  # noqa: E402

PACKAGES = ["numpy", "pandas", "matplotlib", "scikit-learn"]


def du_kib(*paths: Path) -> int:
    out = subprocess.run(["du", "-sk", "-c", *map(str, paths)], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return round(time.perf_counter() - t, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", default=str(Path(sys.executable).parents[1]))
    ap.add_argument("--dir", default=None, help="work folder (default: a temp dir in /var/tmp)")
    args = ap.parse_args()
    runtime = Path(args.runtime)
    work = Path(args.dir or tempfile.mkdtemp(prefix="teamhub-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # the env check runs as `nobody`, like users
    python = str(runtime / "bin" / "python")
    uv = Uv(runtime / "bin" / "uv", work / ".cache")
    quiet = {"echo": lambda _line: None}
    res: dict[str, object] = {"packages": PACKAGES}
    try:
        a, b = work / "uv-a", work / "uv-b"

        def build(target: Path) -> None:
            uv.venv(target, python, **quiet)
            uv.install(target / "bin" / "python", PACKAGES, **quiet)

        res["uv_cold_s"] = timed(lambda: build(a))
        res["uv_warm_s"] = timed(lambda: build(b))
        envs = SharedEnvs(work / "envs", uv, python)
        res["teamhub_env_create_warm_s"] = timed(
            lambda: envs.create("bench", PACKAGES, echo=lambda _line: None))
        res["env_a_kib"] = du_kib(a)
        res["env_b_alone_kib"] = du_kib(b)
        res["env_b_additional_kib"] = du_kib(a, b) - du_kib(a)
        p = work / "pip"

        def pip_build() -> None:
            subprocess.run([python, "-m", "venv", str(p)], check=True)
            subprocess.run([str(p / "bin" / "pip"), "install", "-q", "--cache-dir",
                            str(work / "pipcache"), *PACKAGES], check=True)

        res["pip_cold_s"] = timed(pip_build)
        res["pip_env_kib"] = du_kib(p)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
