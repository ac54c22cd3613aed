"""Limits plumbing on this machine: private /tmp through a real mount namespace, and the
refusal to start when limits are on but cannot be enforced (no systemd as init here).

The limits themselves are tested on a real systemd machine in test_systemd_machine.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support.hub import HubProcess, runtime_dir

from teamhub.errors import SystemdError
from teamhub.system import systemd

pytestmark = pytest.mark.system

no_systemd = pytest.mark.skipif(systemd.booted(), reason="systemd is init here")


def test_private_tmp_gives_a_process_its_own_tmp(tmp_path: Path) -> None:
    private = Path(tempfile.mkdtemp(prefix="teamhub-ptmp-", dir="/var/tmp"))
    name = f"teamhub-ptmp-probe-{os.getpid()}"
    code = ("import os, sys; from teamhub.system.namespaces import private_tmp; "
            f"private_tmp({str(private)!r}); open('/tmp/{name}', 'w').write('x'); "
            "print(sorted(os.listdir('/tmp')))")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"['{name}']"  # nothing of the real /tmp visible
        assert (private / name).read_text() == "x"
        assert not Path(f"/tmp/{name}").exists()
    finally:
        subprocess.run(["rm", "-rf", str(private)], check=False)


def test_private_shm_is_a_sized_tmpfs_of_its_own() -> None:
    name = f"teamhub-pshm-probe-{os.getpid()}"
    size = 4 * 1024**2
    code = ("import os; from teamhub.system.namespaces import private_mounts; "
            f"private_mounts(shm_size={size}); open('/dev/shm/{name}', 'w').write('x'); "
            "print(sorted(os.listdir('/dev/shm'))); st = os.statvfs('/dev/shm'); "
            "print(st.f_blocks * st.f_frsize)\n"
            "try:\n"
            f"    open('/dev/shm/{name}.big', 'wb').write(bytes({2 * size}))\n"
            "except OSError as exc:\n"
            "    print(exc.errno)\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        listing, total, errno = proc.stdout.split("\n")[:3]
        assert listing == f"['{name}']"  # nothing of the machine's /dev/shm visible
        assert int(total) == size and errno == "28"  # ENOSPC: full at its own size
        assert not Path(f"/dev/shm/{name}").exists()
        assert not Path(f"/dev/shm/{name}.big").exists()
    finally:
        for leftover in (f"/dev/shm/{name}", f"/dev/shm/{name}.big"):
            Path(leftover).unlink(missing_ok=True)


def test_probe_says_whether_servers_can_get_private_mounts() -> None:
    from teamhub.system import namespaces

    before = os.readlink("/proc/self/ns/mnt")
    assert namespaces.probe() is None  # root here may make mount namespaces
    assert os.readlink("/proc/self/ns/mnt") == before  # only the child moved
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           sys.executable, "-c", "from teamhub.system import namespaces; "
                           "print(namespaces.probe())"],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert "unshare" in proc.stdout and "spawner.shm_size shared" in proc.stdout, proc


def test_private_tmp_on_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    code = ("from teamhub.system.namespaces import private_tmp; "
            f"private_tmp({str(tmp_path / 'nope')!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "nope" in proc.stderr


@no_systemd
def test_placing_in_a_scope_without_systemd_says_how_to_fix() -> None:
    with pytest.raises(SystemdError, match="limits.enabled false"):
        systemd.place_in_scope(os.getpid(), "teamhub-test.scope", {"TasksMax": 100})


@no_systemd
def test_up_refuses_limits_it_cannot_enforce(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path)
    try:
        # HubProcess turns limits off; the admin who leaves them on gets a refusal.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
        env["TEAMHUB_LIMITS_ENABLED"] = "true"
        proc = subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "--config",
                               str(hub.config), "up", "--check"], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode != 0
        line = proc.stderr.strip()
        assert line.startswith("teamhub: error: ") and len(line.splitlines()) == 1
        assert "systemd is not running" in line and "limits.enabled false" in line
        env["TEAMHUB_LIMITS_ENABLED"] = "false"
        proc = subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "--config",
                               str(hub.config), "up", "--check"], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
    finally:
        hub.cleanup()


@no_systemd
def test_install_without_systemd_points_to_install_sh(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
    try:
        proc = subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "--config",
                               str(hub.config), "install"], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode != 0
        assert "needs systemd" in proc.stderr and "install.sh" in proc.stderr
    finally:
        hub.cleanup()
