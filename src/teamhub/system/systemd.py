"""systemd plumbing: is it running, which cgroup controllers exist, transient scopes, units.

Plain OS code (systemctl, busctl, /sys/fs/cgroup); nothing from JupyterHub. Scopes are
made through systemd's D-Bus API with `busctl`, which ships with systemd itself, so no
D-Bus library is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SystemdError

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIT_DIR = Path("/etc/systemd/system")

# D-Bus signature of each scope property teamhub sets.
_SIGNATURES: dict[str, str] = {
    "Description": "s",
    "Slice": "s",
    "CollectMode": "s",
    "MemoryMax": "t",
    "MemorySwapMax": "t",
    "MemoryLimit": "t",
    "CPUQuotaPerSecUSec": "t",
    "TasksMax": "t",
    "MemoryAccounting": "b",
    "TasksAccounting": "b",
    "CPUAccounting": "b",
    "DevicePolicy": "s",
    "DeviceAllow": "a(ss)",
}



def booted(root: Path = Path("/")) -> bool:
    """True when systemd is this machine's (or container's) init, as sd_booted() decides."""
    return (root / "run/systemd/system").is_dir()


def cgroup_version(root: Path = CGROUP_ROOT) -> int:
    """2 for the unified hierarchy, 1 for legacy or hybrid (controllers on v1)."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def controllers(root: Path = CGROUP_ROOT) -> set[str]:
    """The cgroup controllers this machine offers, named as on cgroup v2 (memory, cpu, pids)."""
    if cgroup_version(root) == 2:
        try:
            return set((root / "cgroup.controllers").read_text().split())
        except OSError:
            return set()
    found: set[str] = set()
    for name in ("memory", "cpu", "pids"):
        if (root / name).is_dir() and any((root / name).iterdir()):
            found.add(name)
    return found


def _run(cmd: list[str], what: str, timeout: float = 60) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SystemdError(f"{cmd[0]} is not installed", f"{what} needs systemd") from None
    except subprocess.TimeoutExpired:
        raise SystemdError(f"{' '.join(cmd)} did not finish within {timeout:.0f}s") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise SystemdError(f"{what} failed: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc.stdout


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run systemctl ARGS; SystemdError (with its message) if CHECK and it fails."""
    cmd = ["systemctl", *args]
    if check:
        out = _run(cmd, "systemctl " + " ".join(args))
        return subprocess.CompletedProcess(cmd, 0, out, "")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def unit_active(unit: str) -> str:
    """`active`, `inactive`, `failed`, ... as `systemctl is-active` says ("" without systemd)."""
    if shutil.which("systemctl") is None or not booted():
        return ""
    return systemctl("is-active", unit, check=False).stdout.strip()


def _busctl_args(properties: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in properties.items():
        sig = _SIGNATURES.get(name)
        if sig is None:
            raise SystemdError(f"teamhub does not know the scope property {name!r}")
        if sig == "b":
            value = "true" if value else "false"
        if sig == "a(ss)":
            # [(path or char-NAME, "rw"), ...]: a count, then the pairs flat.
            args += [name, sig, str(len(value)), *(str(x) for pair in value for x in pair)]
            continue
        args += [name, sig, str(value)]
    return args


def place_in_scope(pid: int, unit: str, properties: Mapping[str, Any]) -> None:
    """Move running process PID (and nothing else) into a new transient scope UNIT.

    Its children forked afterwards are born in the scope, so limits on the scope cover
    the process and everything it starts. Raises SystemdError with a fix hint if systemd
    is not running or refuses (for example, an unknown property or a unit of that name
    that is still running).
    """
    if not unit.endswith(".scope"):
        raise SystemdError(f"scope unit names end in .scope, not {unit!r}")
    if not booted():
        raise SystemdError(
            "systemd is not running as init here, so per-user limits cannot be enforced",
            "run teamhub on a systemd machine, or set `teamhub config set limits.enabled "
            "false` to run servers without limits"
        )
    props = {"PIDs": None, **properties}
    args = ["PIDs", "au", "1", str(pid), *_busctl_args(properties)]
    cmd = ["busctl", "call", "--quiet", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
           "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))",
           unit, "fail", str(len(props)), *args, "0"]
    _run(cmd, f"putting process {pid} into systemd scope {unit}")
    # The job is asynchronous. On a cgroup v1 machine systemd moves the process into
    # the unit's cgroup one hierarchy at a time, name=systemd first: /proc shows the unit
    # there while the process is still in its old `devices` and `memory` groups, where
    # DeviceAllow= and MemoryMax= do not hold yet (a process opened a GPU node the scope
    # denies, 1 ms after /proc named the scope). The scope is active only once every move
    # is done.
    deadline = time.monotonic() + 10
    state = ""
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return  # it already exited; the caller sees that on its own
        if in_unit(pid, unit):
            state = unit_active(unit)
            if state == "active":
                return
            if state == "failed":
                raise SystemdError(f"systemd scope {unit} failed while process {pid} "
                                   "was moved into it", f"see `journalctl -u {unit}`")
        time.sleep(0.01)
    raise SystemdError(f"systemd accepted scope {unit} but process {pid} is not running in it "
                       f"after 10s ({state or 'not moved yet'})", f"see `journalctl -u {unit}`")


def enter_scope(unit: str, properties: Mapping[str, Any]) -> None:
    """Move the calling process into a new transient scope UNIT with PROPERTIES.

    Meant for a freshly forked server process, still root, before it drops privileges
    and execs: everything it starts afterwards (kernels, terminals) inherits the scope.
    """
    place_in_scope(os.getpid(), unit, properties)


def in_unit(pid: int, unit: str) -> bool:
    """Whether PID's cgroup (any hierarchy) is UNIT's."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return any(line.rsplit("/", 1)[-1] == unit for line in text.splitlines())


STOP_WAIT = 60  # seconds a stop may take before what is left of UNIT is killed


def stop_unit(unit: str) -> None:
    """Stop UNIT (ends every process in a scope or slice); nothing happens if it does not
    exist. A process that ignores SIGTERM would hold the stop for systemd's own timeout
    (90 s by default) and more: after STOP_WAIT seconds what is left gets SIGKILL."""
    if not (booted() and shutil.which("systemctl")):
        return
    try:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, text=True,
                       timeout=STOP_WAIT)
        return
    except subprocess.TimeoutExpired:
        pass  # the stop job goes on in systemd; make it quick
    subprocess.run(["systemctl", "kill", "--signal=SIGKILL", unit], capture_output=True,
                   text=True, timeout=STOP_WAIT)
    try:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, text=True,
                       timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        pass  # nothing of it can run any more: only the unit's bookkeeping is left


def write_unit(name: str, text: str, unit_dir: Path = UNIT_DIR) -> bool:
    """Write unit file NAME atomically; True if its content changed."""
    path = unit_dir / name
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    unit_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def remove_unit(name: str, unit_dir: Path = UNIT_DIR) -> bool:
    try:
        (unit_dir / name).unlink()
    except FileNotFoundError:
        return False
    return True


def journal(unit: str, lines: int = 50) -> str:
    """The last LINES of UNIT's journal, or "" if journalctl cannot say."""
    try:
        proc = subprocess.run(["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-q"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout
