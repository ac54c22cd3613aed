"""Turn a user's launch description (LaunchSpec) into a Docker container description.

The local backend hands a LaunchSpec to the sandbox launcher, which becomes the user and
execs the server; the docker backend hands the same spec to `container_config`, which asks
Docker for the same things: the user's uid, gid and supplementary groups, argv, env, cwd,
umask and open-file limit, plus what only a container needs (image, mounts, cgroup
limits, the hardening every container gets). Nothing here decides what a user's server
is made of; that is the spec's job, so both backends run the same server.

Every container: host network (the server listens on 127.0.0.1:<port>, no port bindings,
no Docker network), an init process, all capabilities dropped, no-new-privileges, never
root. Bind mounts never create a missing source (Docker would make it root-owned).

Plain OS plumbing: nothing here imports JupyterHub.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .sandbox import LaunchSpec

LABEL_USER = "org.teamhub.user"
LABEL_SERVER = "org.teamhub.server"
LABEL_PORT = "org.teamhub.port"
# Name resolution for the user's own account inside (id, whoami, the shell prompt):
# the host's passwd and group, read-only; never shadow.
IDENTITY_FILES = ("/etc/passwd", "/etc/group")


# What Docker accepts as a container name.
CONTAINER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,200}")


def container_name_problem(name: str) -> str | None:
    """None if Docker can name a container NAME, else why not (for the user's message)."""
    if CONTAINER_NAME_RE.fullmatch(name):
        return None
    return (f"Docker cannot name a container {name[:60]!r} (only letters, digits, '_', '.' "
            "and '-'), so this user's server cannot run with spawner.backend = docker; "
            "give the account a name of lower-case letters, digits, '_' or '-'")


@dataclass(frozen=True)
class Mount:
    """A host folder (`bind`) or a named Docker volume (`volume`) at TARGET."""

    source: str
    target: str
    read_only: bool = True
    kind: str = "bind"

    def as_api(self) -> dict[str, Any]:
        mount = {"Type": self.kind, "Source": self.source, "Target": self.target,
                 "ReadOnly": self.read_only}
        if self.kind == "volume":
            # Nothing of the image is copied into it: it holds the user's files only.
            mount["VolumeOptions"] = {"NoCopy": True}
        return mount


def home_volume(hub_name: str) -> str:
    """The named volume that is HUB_NAME's home with `docker.home = "volume"`."""
    return f"teamhub-user-{hub_name}"


def ensure_home_volume(engine: Any, hub_name: str, uid: int, gid: int) -> str:
    """HUB_NAME's home volume, made if missing, its top folder the user's own and 0700.

    Docker would leave a new volume's top folder root-owned; the engine is local, so its
    mount point is a folder on this machine that root can hand over."""
    name = home_volume(hub_name)
    volume = engine.create_volume(name, {LABEL_USER: hub_name})
    top = volume.get("Mountpoint") or ""
    if not top or not os.path.isdir(top):
        raise ValueError(f"volume {name} has no local mount point ({top!r}); docker.home = "
                         "\"volume\" needs the local volume driver")
    os.chown(top, uid, gid)
    os.chmod(top, 0o700)
    return name


@dataclass(frozen=True)
class CgroupLimits:
    """What Docker's cgroups enforce; None: no limit (the `limits.*` settings resolved)."""

    memory: int | None = None
    cpu: float | None = None
    tasks: int | None = None


def supplementary_groups(username: str, gid: int) -> list[int]:
    """USERNAME's groups as the local backend's initgroups() gives them, primary first."""
    groups = os.getgrouplist(username, gid)
    return [gid, *sorted(set(groups) - {gid})]


def holder_command(keepalive: str) -> list[str]:
    """A container command that only holds the container open until KEEPALIVE (a FIFO the
    server keeps open for writing, teamhub.system.nsenter) reaches end of file."""
    return ["/bin/sh", "-c", 'read -r _ < "$0"', keepalive]


def container_config(spec: LaunchSpec, *, image: str, mounts: list[Mount],
                     limits: CgroupLimits, labels: dict[str, str],
                     holder: str | None = None) -> dict[str, Any]:
    """The Engine API body of `POST /containers/create` for SPEC.

    With HOLDER (a keep-alive FIFO's path) the container runs only `holder_command`: the
    server is started into it afterwards (teamhub.system.nsenter), so neither its
    command line nor its environment (the user's token) is given to Docker."""
    if spec.uid is None or spec.gid is None or not spec.username:
        raise ValueError("a container server needs the user's account (uid, gid, username)")
    if spec.uid == 0:
        raise ValueError("a user's server never runs as root")
    host: dict[str, Any] = {
        "NetworkMode": "host",
        "Init": True,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "GroupAdd": [str(g) for g in supplementary_groups(spec.username, spec.gid)[1:]],
        "Mounts": [m.as_api() for m in mounts]
        + [Mount(f, f).as_api() for f in IDENTITY_FILES if os.path.exists(f)],
        "IpcMode": "private",
        "RestartPolicy": {"Name": "no"},
        # Containers go on `stop()`, not on exit: a failed start keeps its logs until then.
        "AutoRemove": False,
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}},
    }
    nofile = spec.rlimits.get("RLIMIT_NOFILE")
    if nofile:
        host["Ulimits"] = [{"Name": "nofile", "Soft": int(nofile[0]), "Hard": int(nofile[1])}]
    if limits.memory is not None:
        host["Memory"] = limits.memory
        host["MemorySwap"] = limits.memory  # the cap, not the cap plus as much swap
    if limits.cpu is not None:
        host["NanoCpus"] = max(int(limits.cpu * 1e9), 10_000_000)
    if limits.tasks is not None:
        host["PidsLimit"] = limits.tasks
    if spec.shm_size is not None:
        # The container's /dev/shm is its own already (private IPC); this sizes it as
        # spawner.shm_size sizes a local server's.
        host["ShmSize"] = spec.shm_size
    if holder is not None:
        command = {"Entrypoint": holder_command(holder), "Cmd": [], "Env": []}
    else:
        command = {
            # The sandbox launcher sets the umask for local servers; Docker has no such option.
            "Entrypoint": ["/bin/sh", "-c", f"umask {spec.umask:04o} && exec \"$@\"",
                           "teamhub-server"],
            "Cmd": list(spec.argv),
            "Env": [f"{k}={v}" for k, v in spec.env.items()],
        }
    return {
        "Image": image,
        **command,
        "User": f"{spec.uid}:{spec.gid}",
        "WorkingDir": spec.cwd,
        "Labels": dict(labels),
        "HostConfig": host,
    }


def remove_user_containers(engine: Any, hub_name: str) -> list[str]:
    """Remove every container of hub user HUB_NAME (running or not); their names.

    ENGINE is a teamhub.system.docker.Engine. For `teamhub user remove` while the hub is
    down: with the hub up, stopping the user's server has already removed them.
    """
    names = []
    for container in engine.containers(label=f"{LABEL_USER}={hub_name}"):
        engine.remove(container["Id"])
        names.append(container["Names"][0].lstrip("/"))
    return sorted(names)


def remove_user_volume(engine: Any, hub_name: str) -> bool:
    """Remove HUB_NAME's home volume (`docker.home = "volume"`); False if there was none."""
    return engine.remove_volume(home_volume(hub_name))


def running_users(engine: Any, hub_names: Iterable[str]) -> list[str]:
    """Those of HUB_NAMES whose server runs in a container now (sorted)."""
    wanted = set(hub_names)
    if not wanted:
        return []
    running = {(c.get("Labels") or {}).get(LABEL_USER)
               for c in engine.containers(label=LABEL_USER) if c.get("State") == "running"}
    return sorted(wanted & running)
