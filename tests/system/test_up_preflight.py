"""`teamhub up` refuses to start on bad input: one clear line, non-zero exit, nothing changed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from support.hub import HubProcess, free_port, runtime_dir

pytestmark = pytest.mark.system

TEAMHUB = str(runtime_dir() / "bin" / "teamhub")


def run(*args: str, user: str | None = None, env: dict[str, str] | None = None,
        cwd: str = "/") -> subprocess.CompletedProcess[str]:
    cmd = [TEAMHUB, *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *cmd]
    base = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
    return subprocess.run(cmd, capture_output=True, text=True, env={**base, **(env or {})},
                          cwd=cwd, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("teamhub: error: ")
    return lines[0]


@pytest.fixture
def hub(tmp_path: Path):
    h = HubProcess(tmp_path)
    yield h
    h.cleanup()


def test_good_config_passes_all_checks(hub: HubProcess) -> None:
    proc = run("--config", str(hub.config), "up", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "all start-up checks passed" in proc.stdout
    assert (hub.state.stat().st_mode & 0o777) == 0o700


def test_non_root_is_refused_with_the_trial_hint() -> None:
    line = one_error_line(run("up", "--check", user="nobody"))
    assert "must run as root" in line and "--single-user-trial" in line


def test_port_in_use_is_named(hub: HubProcess) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", hub.port))
        busy.listen()
        line = one_error_line(run("--config", str(hub.config), "up", "--check"))
    assert f"port {hub.port}" in line and "already in use" in line and "--port" in line


def test_port_option_overrides_setting(hub: HubProcess) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", hub.port))
        busy.listen()
        proc = run("--config", str(hub.config), "up", "--check", "--port", str(free_port()))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("[hub\nport = 1\n", "not valid TOML"),
        ("[hub]\nnope = 1\n", "unknown setting 'hub.nope'"),
        ('[hub]\nport = "eighty"\n', "hub.port = 'eighty' is not an integer"),
        ("[hub]\nport = 70000\n", "port number from 1 to 65535"),
        ('[hub]\nlog_level = "LOUD"\n', "use one of"),
    ],
)
def test_bad_settings_file_is_refused_and_left_alone(tmp_path: Path, text: str,
                                                     expect: str) -> None:
    cfg = tmp_path / "teamhub.toml"
    cfg.write_text(text)
    line = one_error_line(run("--config", str(cfg), "up", "--check"))
    assert expect in line
    assert str(cfg) in line or "hub." in line
    assert cfg.read_text() == text


def test_bad_environment_override_is_named(hub: HubProcess) -> None:
    line = one_error_line(run("--config", str(hub.config), "up", "--check",
                              env={"TEAMHUB_HUB_PORT": "x"}))
    assert "TEAMHUB_HUB_PORT" in line


def test_state_dir_that_is_a_file_is_refused(hub: HubProcess, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("keep me")
    line = one_error_line(run("--config", str(hub.config), "up", "--check",
                              env={"TEAMHUB_PATHS_STATE_DIR": str(blocker)}))
    assert str(blocker) in line and "paths.state_dir" in line
    assert blocker.read_text() == "keep me"


def test_unwritable_state_dir_is_refused(hub: HubProcess) -> None:
    line = one_error_line(run("--config", str(hub.config), "up", "--check",
                              env={"TEAMHUB_PATHS_STATE_DIR": "/proc/1/teamhub-state"}))
    assert "/proc/1/teamhub-state" in line and "not writable" in line


def test_runtime_inside_a_private_folder_is_refused(hub: HubProcess) -> None:
    private = Path(tempfile.mkdtemp(prefix="teamhub-private-"))  # 0700, like an admin's home
    try:
        rt = private / "runtime"
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(rt)], check=True)
        (rt / "bin" / "jupyterhub-singleuser").write_text("#!/bin/sh\n")
        (rt / "bin" / "jupyterhub-singleuser").chmod(0o755)
        line = one_error_line(run("--config", str(hub.config), "up", "--check",
                                  env={"TEAMHUB_PATHS_RUNTIME_DIR": str(rt)}))
        assert str(private) in line and "only its owner may enter" in line
        assert "install.sh" in line
    finally:
        shutil.rmtree(private)


@pytest.mark.skipif(not Path("/root/.pyenv").is_dir(), reason="no pyenv Python under /root here")
def test_runtime_built_from_interpreter_in_admins_home_is_refused(hub: HubProcess) -> None:
    pythons = sorted(Path("/root/.pyenv/versions").glob("*/bin/python3"))
    if not pythons:
        pytest.skip("no pyenv interpreter")
    world = Path(tempfile.mkdtemp(prefix="teamhub-rt-", dir="/tmp"))
    world.chmod(0o755)
    try:
        rt = world / "runtime"
        subprocess.run([str(pythons[0]), "-m", "venv", "--without-pip", str(rt)], check=True)
        (rt / "bin" / "jupyterhub-singleuser").write_text("#!/bin/sh\n")
        (rt / "bin" / "jupyterhub-singleuser").chmod(0o755)
        line = one_error_line(run("--config", str(hub.config), "up", "--check",
                                  env={"TEAMHUB_PATHS_RUNTIME_DIR": str(rt)}))
        assert "/root" in line and "admin's home" in line
    finally:
        shutil.rmtree(world)


def test_missing_runtime_is_refused(hub: HubProcess) -> None:
    line = one_error_line(run("--config", str(hub.config), "up", "--check",
                              env={"TEAMHUB_PATHS_RUNTIME_DIR": "/nonexistent/rt"}))
    assert "/nonexistent/rt" in line and "install.sh" in line


def test_single_user_trial_runs_without_root(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="teamhub-trial-", dir="/tmp"))
    try:
        shutil.chown(home, "nobody", "nogroup")
        cfg = home / "teamhub.toml"
        cfg.write_text(f"[hub]\nport = {free_port()}\ninternal_port = {free_port()}\n"
                       f"[proxy]\napi_port = {free_port()}\n")
        shutil.chown(cfg, "nobody", "nogroup")
        proc = run("--config", str(cfg), "up", "--single-user-trial", "--check", user="nobody",
                   env={"HOME": str(home), "USER": "nobody"})
        assert proc.returncode == 0, proc.stderr
        assert (home / ".local/share/teamhub").is_dir()
    finally:
        shutil.rmtree(home)


def test_the_trial_refuses_an_explicit_unprivileged_hub() -> None:
    """hub.unprivileged is on by default and the trial (it runs as you) leaves the default
    off (above); a `true` an admin wrote is refused, not silently ignored."""
    home = Path(tempfile.mkdtemp(prefix="teamhub-trial-", dir="/tmp"))
    try:
        shutil.chown(home, "nobody", "nogroup")
        cfg = home / "teamhub.toml"
        cfg.write_text(f"[hub]\nport = {free_port()}\nunprivileged = true\n")
        shutil.chown(cfg, "nobody", "nogroup")
        line = one_error_line(run("--config", str(cfg), "up", "--single-user-trial",
                                  "--check", user="nobody",
                                  env={"HOME": str(home), "USER": "nobody"}))
        assert "hub.unprivileged is on but the single-user trial" in line
        assert "(the default)" not in line
    finally:
        shutil.rmtree(home)


def test_no_fork_server_with_the_default_names_both_settings(hub: HubProcess) -> None:
    hub.config.write_text(hub.config.read_text() + "\n[spawner]\nfork_server = false\n")
    line = one_error_line(run("--config", str(hub.config), "up", "--check"))
    assert "hub.unprivileged is on (the default) but spawner.fork_server is off" in line
    assert "teamhub config set hub.unprivileged false" in line
    assert "teamhub config unset spawner.fork_server" in line
    hub.config.write_text(hub.config.read_text().replace("[hub]\n", "[hub]\nunprivileged = "
                                                         "false\n", 1))
    proc = run("--config", str(hub.config), "up", "--check")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("how", ["file", "env"])
def test_gpus_without_a_driver_are_refused(hub: HubProcess, how: str) -> None:
    """This machine has no NVIDIA driver: asking for GPUs must stop `up`, not run unkept."""
    env = {}
    if how == "file":
        hub.config.write_text(hub.config.read_text() + "\n[gpus]\ndefault = 1\n")
    else:
        env = {"TEAMHUB_GPUS_DEFAULT": "1"}
    line = one_error_line(run("--config", str(hub.config), "up", "--check", env=env))
    assert "gpus.default asks for GPUs but no NVIDIA driver found" in line
    assert "`teamhub config set gpus.default none`" in line


def test_gpu_commands_without_gpus(hub: HubProcess) -> None:
    proc = run("--config", str(hub.config), "gpu", "status", "--json")
    assert proc.returncode == 0 and proc.stdout.strip() == '{\n  "devices": []\n}'
    line = one_error_line(run("--config", str(hub.config), "gpu", "release", "ada"))
    assert "'ada' holds no GPU" in line
