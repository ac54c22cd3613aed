"""A fresh Debian 12 machine with systemd as init, as a container on a local Docker engine.

The image comes from tests/support/systemd-image.sh (debootstrap from Debian's packages)
and is tagged with a hash of that recipe, so it is built once and reused until the recipe
changes. The container shares this machine's network (`--network host`, never a bridge)
and cgroups (`--cgroupns=host`, /sys/fs/cgroup mounted read-write) so that systemd inside
can make the scopes that enforce per-user limits; `--privileged` is not needed.

Use one `SystemdMachine` per test module or session: starting one takes seconds, but
installing teamhub into it takes minutes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import time
from pathlib import Path

from support.docker_engine import EngineError

REPO = Path(__file__).resolve().parents[2]
RECIPE = Path(__file__).with_name("systemd-image.sh")
IMAGE = "teamhub-systemd-test"


class MachineError(EngineError):
    pass


def image_tag() -> str:
    return f"{IMAGE}:{hashlib.sha256(RECIPE.read_bytes()).hexdigest()[:12]}"


def _docker(*args: str, timeout: float = 120, input: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise MachineError(f"docker {' '.join(args[:3])} failed: "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def ensure_image() -> tuple[str, float]:
    """The image tag, and seconds spent building it (0 when it was already there)."""
    tag = image_tag()
    if _docker("image", "inspect", tag, check=False).returncode == 0:
        return tag, 0.0
    start = time.monotonic()
    proc = subprocess.run([str(RECIPE), tag], capture_output=True, text=True, timeout=1500)
    if proc.returncode != 0:
        raise MachineError(f"building {tag} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return tag, time.monotonic() - start


def checkout_files() -> list[str]:
    """The working tree as git sees it: tracked files and untracked, not ignored ones."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                         capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and (REPO / f).is_file()]


class SystemdMachine:
    """One running systemd container from TAG; `exec` runs commands inside as root."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.name = f"teamhub-systemd-{secrets.token_hex(4)}"
        self.started = False

    def start(self, timeout: float = 120, extra: tuple[str, ...] = ()) -> None:
        """Boot it; EXTRA are more `docker run` options (e.g. a device cgroup rule)."""
        # SYS_PTRACE: a real machine's root sees every process's sockets (`ss -p`, which
        # the doctor and `teamhub up` use to tell teamhub's proxy from a stranger on its
        # port); Docker's default capabilities leave it out, so root in the container could
        # not see those of a proxy that runs as the hub's account.
        _docker("run", "-d", "--name", self.name, *extra,
                "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE",
                "--security-opt", "seccomp=unconfined",
                "--tmpfs", "/run", "--tmpfs", "/run/lock", "--cgroupns=host",
                "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--network", "host",
                "-e", "container=docker", "--stop-signal", "SIGRTMIN+3",
                self.tag, "/sbin/init")
        self.started = True
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = self.exec("systemctl is-system-running", check=False, timeout=30)
            state = proc.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise MachineError(f"systemd in {self.name} did not finish booting ({state!r}):\n"
                           + self.exec("systemctl --failed --no-pager", check=False).stdout)

    def exec(self, script: str, *, check: bool = True, timeout: float = 120,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run SCRIPT with bash inside, as root, in a login-like environment."""
        cmd = ["docker", "exec", "-i", "-e", "LANG=C.UTF-8", self.name, "bash", "-c", script]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise MachineError(f"in {self.name}: {script!r} exited {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def copy_checkout(self, dest: str = "/root/teamhub") -> None:
        """Copy this checkout's working tree (as git sees it) to DEST inside."""
        files = "\0".join(checkout_files()).encode()
        tar = subprocess.run(["tar", "-C", str(REPO), "--null", "-T", "-", "-c", "-f", "-"],
                             input=files, capture_output=True, check=True).stdout
        self.exec(f"mkdir -p {dest}")
        _docker("exec", "-i", self.name, "tar", "-C", dest, "-x", "-f", "-", input=tar)

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.exec(f"mkdir -p \"$(dirname {path})\" && cat > {path} && chmod {mode} {path}",
                  input=text)

    def remove(self) -> None:
        if self.started:
            _docker("rm", "-f", "-v", self.name, check=False, timeout=120)
            self.started = False


def readme_first_command(readme: Path = REPO / "README.md") -> str:
    """The first command of the README's Quick start, verbatim."""
    text = readme.read_text()
    quick = text.split("## Quick start", 1)[1]
    block = quick.split("```sh", 1)[1].split("```", 1)[0]
    lines = [line for line in block.strip().splitlines() if line.strip()]
    return lines[0].strip()


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def env_without_teamhub() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
