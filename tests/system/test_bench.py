"""The benchmark runs end to end with tiny sizes: JSON shape, every metric measured for both
hubs, and nothing left behind, also when it is interrupted."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from teamhub.system.login_profile import DEFAULT_PATH as LOGIN_PROFILE

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates real Linux accounts: needs root"),
]

REPO = Path(__file__).resolve().parents[2]
REQUIRED = ["spawn_p50_s", "spawn_p95_s", "burst_all_ready_s", "idle_pss_mb",
            "proxy_overhead_ms", "route_add_ms", "kernel_first_exec_s", "login_p50_s", "stop_all_s",
            "spawn_ready_p50_s", "lab_open_p50_s"]
TINY = ["--users", "2", "--burst", "2", "--kernels", "1", "--requests", "20", "--routes", "10",
        "--idle-seconds", "5", "--pairs", "1"]


def bench_cmd(*args: str) -> list[str]:
    runtime = Path(os.environ.get("TEAMHUB_TEST_RUNTIME") or sys.prefix)
    return [str(runtime / "bin" / "python"), "-m", "bench", "--prefix", str(runtime.parent),
            *args]


def leftovers(stderr: str) -> list[str]:
    """Work folders, Linux accounts and hub processes of the run that still exist."""
    folders = re.findall(r"work folder (\S+)\)", stderr)
    assert folders, stderr
    left = [f for f in folders if Path(f).exists()]
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        # Both hubs are started with their config file inside their work folder.
        left += [f"process {proc.name}: {cmdline}" for f in folders if f in cmdline]
    prefixes = re.findall(r"Linux accounts (\S+)\*", stderr)
    assert prefixes, stderr
    for account in pwd.getpwall():
        if account.pw_name.startswith(tuple(prefixes)):
            left.append(f"account {account.pw_name}")
    return left


def test_bench_tiny_run_measures_everything_for_both(tmp_path: Path) -> None:
    # A machine without teamhub's login profile has none after the bench either (its
    # `teamhub up` writes one); the suite's own hubs wrote one before: kept aside here.
    profile = LOGIN_PROFILE.read_bytes() if LOGIN_PROFILE.exists() else None
    LOGIN_PROFILE.unlink(missing_ok=True)
    try:
        proc = subprocess.run(bench_cmd(*TINY, "--json", "--logs", str(tmp_path)), cwd=REPO,
                              capture_output=True, text=True, timeout=900)
        left_profile = LOGIN_PROFILE.exists()
    finally:
        if profile is not None:
            LOGIN_PROFILE.write_bytes(profile)
    assert not left_profile, "the bench left /etc/profile.d/teamhub.sh behind"
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    results = json.loads(last)
    assert set(results) == {"teamhub", "vanilla"}
    for hub, values in results.items():
        for key in REQUIRED:
            value = values.get(key)
            assert isinstance(value, int | float) and value > 0, (hub, key, value)
        assert values["burst_failures"] == 0, (hub, proc.stderr[-3000:])
        assert values["burst_size"] == 2 and values["idle_servers"] == 2
        # Idle servers cost the hub little, but never nothing it could not measure.
        assert isinstance(values["idle_cpu_pct"], int | float) and values["idle_cpu_pct"] >= 0
        assert values["pairs_measured"] == 1 and values["load_moved"] >= 0
        # Proxy overhead is a difference of p50s: sanity, not speed, is checked here.
        assert values["proxy_p50_ms"] > values["direct_p50_ms"] > 0
    teamhub = results["teamhub"]
    # The returning user's shared env (its parent started when their JupyterLab opened);
    # an open JupyterLab's cost: each server's default-kernel warm parent.
    assert teamhub["env_kernel_returning_exec_s"] > 0
    # A never-used env's first kernel, opened from its launcher card (the Lab extension's
    # hint); vanilla has no second env and no hint.
    assert teamhub["env_kernel_pointed_exec_s"] > 0
    assert "env_kernel_pointed_exec_s" not in results["vanilla"]
    # And one opened from a link to a notebook of it (the server reads the notebook).
    assert teamhub["env_kernel_linked_exec_s"] > 0
    assert "env_kernel_linked_exec_s" not in results["vanilla"]
    assert teamhub["lab_open_warm_parents"] == 2
    assert teamhub["lab_open_pss_mb"] > teamhub["idle_pss_mb"]
    assert "lab_open_pss_mb" not in results["vanilla"]
    assert "spawn, sequential, p50" in proc.stdout  # the readable table
    assert re.search(r"\[bench [\d:]+\] teamhub: sequential 1/2", proc.stderr)
    assert leftovers(proc.stderr) == []
    for hub in ("teamhub", "vanilla"):
        assert "JupyterHub" in (tmp_path / f"{hub}-hub.log").read_text(), hub


def test_bench_interrupted_removes_accounts_processes_and_folders() -> None:
    proc = subprocess.Popen(bench_cmd(*TINY, "--only", "vanilla"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = ""
    try:
        deadline = time.monotonic() + 600
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            err += line
            if "sequential 1/2" in line:  # accounts made, hub and a server running
                proc.send_signal(signal.SIGTERM)
                break
        out, rest = proc.communicate(timeout=180)
        err += rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "sequential 1/2" in err, err[-3000:]
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err
    uids = []
    for prefix in re.findall(r"Linux accounts (\S+)\*", err):
        uids += [a.pw_uid for a in pwd.getpwall() if a.pw_name.startswith(prefix)]
    assert leftovers(err) == []
    assert not uids


def _vanilla_image_or_skip() -> None:
    """The docker smoke needs the engine and the vanilla single-user image, which is
    built (cached) with pip from the package index: without either it cannot run."""
    from support.docker_engine import DockerEngine

    from bench.docker_images import ImageError, vanilla_singleuser
    from bench.vanilla import CACHE_DIR, runtime_versions

    if not DockerEngine().running():
        pytest.skip("no Docker engine running here (the docker bench never starts one)")
    runtime = Path(os.environ.get("TEAMHUB_TEST_RUNTIME") or sys.prefix)
    versions = runtime_versions(runtime / "bin" / "python")
    try:
        vanilla_singleuser(f"teamhub/{DOCKER_IMAGE}:latest", versions, print, CACHE_DIR)
    except ImageError as exc:
        pytest.skip(f"the vanilla single-user image cannot be built here: {exc}")


# The image tests/hub/test_docker_backend.py builds (and keeps) for the docker backend.
DOCKER_IMAGE = "teamhub-test"


def test_bench_docker_tiny_run_measures_both_and_leaves_nothing(tmp_path: Path) -> None:
    _vanilla_image_or_skip()
    proc = subprocess.run(bench_cmd("--backend", "docker", "--image", DOCKER_IMAGE,
                                    "--users", "1", "--burst", "2", "--kernels", "1",
                                    "--requests", "10", "--routes", "5", "--json",
                                    "--logs", str(tmp_path)),
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for hub, values in results.items():
        assert values["backend"] == "docker", hub
        for key in ("spawn_p50_s", "burst_all_ready_s", "kernel_first_exec_s",
                    "proxy_overhead_ms", "spawn_server_start_p50_s", "spawn_lab_open_p50_s"):
            value = values.get(key)
            assert isinstance(value, int | float) and value > 0, (hub, key, value)
        # Failures are a result, not an error: counted, whatever they are.
        assert isinstance(values["burst_failures"], int), hub
        if values["idle_servers"]:
            assert values["idle_pss_mb"] > 0 and values["idle_cgroup_mb"] > 0, hub
    assert results["teamhub"]["burst_failures"] == 0, proc.stderr[-3000:]
    assert "dockerspawner" in results["vanilla"]["versions"]
    # The vanilla image is committed from teamhub's: it must not pass for it.
    vanilla_image = results["vanilla"]["image"]
    ids = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}",
                          results["teamhub"]["image"], vanilla_image],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(set(ids)) == 2, ids
    assert "spawn: started → listening" in proc.stdout
    left = leftovers(proc.stderr)
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                           text=True, check=True).stdout.split()
    volumes = subprocess.run(["docker", "volume", "ls", "--format", "{{.Name}}"],
                             capture_output=True, text=True, check=True).stdout.split()
    for prefix in re.findall(r"containers (\S+)\*", proc.stderr):
        left += [f"container {n}" for n in names if n.startswith(prefix)]
    for prefix in re.findall(r"volumes (\S+)\*", proc.stderr):
        left += [f"volume {v}" for v in volumes if v.startswith(prefix)]
    assert left == []
