"""The root helper's container verbs (docker backend with hub.unprivileged): what the hub's
account may ask of Docker, checked; the helper holds the Docker socket, the hub never does.

`container_start` takes from the hub only: the launch spec (checked exactly as `spawn`
checks it, teamhub.spawners.helper_spec.check_spec), the image name (one of the
configured `docker.image`/`docker.images`), the server's cgroup limits (numbers), the
GPUs by UUID (each one the allocation record says this server holds) and whether to
start fast. The helper computes the rest itself with the backend's one builder
(teamhub.spawners.container_launch): name, labels, mounts from its own policy and the
store's grants, user and groups, hardening. The other verbs act on one container only:
`teamhub-<user>[-<server>]`, and only when its labels say it is that user's server.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HelperRefused
from ..system import gpus as discovery
from ..system import private_dirs
from ..system.containers import LABEL_SERVER, LABEL_USER, CgroupLimits
from ..system.docker import Engine
from ..system.sandbox import LaunchSpec
from . import container_launch, helper_spec
from .rootdoor import Policy, account_of, hub_user, scope_unit

START_FIELDS = frozenset({"spec", "user", "server", "image", "limits", "gpus", "fast"})
LIMIT_FIELDS = frozenset({"memory", "cpu", "tasks"})
MAX_STOP_TIMEOUT = 300
MAX_LOG_LINES = 200
_UUID_CHARS = frozenset("0123456789abcdefABCDEF-GPUMIpumi/")


@dataclass(frozen=True)
class ContainerStart:
    """A checked `container_start`: the spec as the helper runs it and what it chose."""

    spec: LaunchSpec
    user: str
    server: str
    port: int
    image: str
    limits: CgroupLimits
    gpus: tuple[str, ...]
    fast: bool


def site(policy: Policy) -> container_launch.Site:
    """The container settings the helper builds from: its own policy, never the hub's."""
    return container_launch.Site(
        home_mode=policy.docker_home, runtime_dir=policy.runtime_dir,
        envs_root=policy.envs_root, hub_socket_dir=policy.hub_socket_dir,
        projects_root=policy.projects_root, accounts_db=policy.accounts_db,
        db_url=policy.db_url, prefix=policy.prefix, registry=policy.registry)


def _number(value: Any, name: str, *, integer: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise HelperRefused(f"limit {name} is not a positive number")
    return value


def check_limits(limits: Any) -> CgroupLimits:
    if limits is None:
        return CgroupLimits()
    if not isinstance(limits, dict) or set(limits) - LIMIT_FIELDS:
        raise HelperRefused(f"limits are not an object of {sorted(LIMIT_FIELDS)}")
    memory = _number(limits.get("memory"), "memory", integer=True)
    cpu = _number(limits.get("cpu"), "cpu", integer=False)
    tasks = _number(limits.get("tasks"), "tasks", integer=True)
    return CgroupLimits(memory=int(memory) if memory is not None else None,
                        cpu=float(cpu) if cpu is not None else None,
                        tasks=int(tasks) if tasks is not None else None)


def held_gpus(policy: Policy, user: str, server: str) -> set[str]:
    """The UUIDs the allocation record says USER's server SERVER holds now (read only: the
    record is the hub's file, never written nor followed through a link here)."""
    if not policy.gpu_allocations:
        return set()
    try:
        fd = os.open(policy.gpu_allocations, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise HelperRefused(f"cannot read the GPU allocation record: {exc}") from None
    with os.fdopen(fd) as f:
        try:
            raw = json.loads(f.read(1 << 20))
        except ValueError:
            return set()
    held = set()
    for h in raw.get("holdings", []) if isinstance(raw, dict) else []:
        if isinstance(h, dict) and h.get("holder") == user and h.get("server") == server \
                and isinstance(h.get("uuid"), str):
            held.add(h["uuid"])
    return held


def check_gpus(gpus: Any, policy: Policy, user: str, server: str) -> tuple[str, ...]:
    if gpus is None or gpus == []:
        return ()
    if not isinstance(gpus, list) or not all(
            isinstance(g, str) and 0 < len(g) <= 100 and set(g) <= _UUID_CHARS for g in gpus):
        raise HelperRefused("gpus is not a list of GPU UUIDs")
    held = held_gpus(policy, user, server)
    for uuid in gpus:
        if uuid not in held:
            raise HelperRefused(f"GPU {uuid[:60]!r} is not one the allocation record gives "
                                f"{user!r}'s server")
    return tuple(gpus)


def check_start(body: Any, policy: Policy) -> ContainerStart:
    """A `container_start` request's body as the helper may carry it out; HelperRefused
    otherwise (anything but the fields above, an image not configured, a spec `spawn`
    would refuse, a user or server not the spec's)."""
    if not policy.docker_images:
        raise HelperRefused("the docker backend is not configured (spawner.backend)")
    if not isinstance(body, dict):
        raise HelperRefused("container_start body is not a JSON object")
    extra = set(body) - START_FIELDS
    if extra:
        raise HelperRefused(f"container_start takes no {sorted(extra)[0][:40]!r}")
    user = hub_user(body.get("user"))
    server = body.get("server", "")
    scope_unit(user, server)  # the server name rule
    image = body.get("image")
    if not isinstance(image, str) or image not in policy.docker_images:
        raise HelperRefused(f"image {str(image)[:60]!r} is not one of the configured "
                            f"images {policy.docker_images}")
    limits = check_limits(body.get("limits"))
    gpus = check_gpus(body.get("gpus"), policy, user, server)
    fast = body.get("fast", True)
    if not isinstance(fast, bool):
        raise HelperRefused("fast is not true or false")
    raw = body.get("spec")
    if not isinstance(raw, dict) or not isinstance(raw.get("argv"), list):
        raise HelperRefused("spec is not a launch spec")
    try:
        spec = LaunchSpec(**raw)
    except TypeError as exc:
        raise HelperRefused(f"spec: {exc}") from None
    if not isinstance(spec.env, dict) or spec.env.get("JUPYTERHUB_USER") != user:
        raise HelperRefused("the spec's JUPYTERHUB_USER is not the request's user")
    if (spec.env.get("JUPYTERHUB_SERVER_NAME") or "") != server:
        raise HelperRefused("the spec's JUPYTERHUB_SERVER_NAME is not the request's server")
    if spec.scope is not None or spec.private_tmp is not None or spec.devices is not None:
        raise HelperRefused("a container's placement is Docker's (no scope, /tmp or devices)")
    spec = helper_spec.check_spec(spec, policy)
    port = int(spec.env["JUPYTERHUB_SERVICE_URL"].split(":")[2].split("/")[0])  # checked
    return ContainerStart(spec=spec, user=user, server=server, port=port, image=image,
                          limits=limits, gpus=gpus, fast=fast)


def start(request: ContainerStart, policy: Policy) -> tuple[str, dict[str, Any] | None]:
    """Create and start REQUEST's container (its fresh runtime folder first): its id and,
    for a fast start, the target to enter (`{pid, id, keepalive}`, forkserver)."""
    spec = request.spec
    assert spec.uid is not None and spec.gid is not None  # check_spec set them
    runtime_root = Path(policy.private_runtime_root)
    private_dirs.root_only_folder(runtime_root)
    os.chmod(runtime_root, 0o755)  # users pass through to their own folder
    runtime = runtime_root / str(spec.uid)
    private_dirs.fresh_folder(runtime, spec.uid, spec.gid)
    gpu: dict[str, Any] = {}
    if request.gpus:
        inventory = discovery.discover()
        devices = [d for d in inventory.devices if d.uuid in request.gpus]
        if len(devices) != len(request.gpus):
            raise HelperRefused("a GPU of the request is not on this machine")
        gpu = discovery.container_devices(inventory, devices)
    engine = Engine()
    holder = str(runtime / container_launch.KEEPALIVE) if request.fast else None
    ident = container_launch.create_and_start(
        engine, spec, user=request.user, server=request.server, port=request.port,
        image=request.image, site=site(policy), limits=request.limits, gpu=gpu, holder=holder)
    if holder is None:
        return ident, None
    info = engine.container(ident) or {}
    pid = int((info.get("State") or {}).get("Pid") or 0)
    return ident, {"pid": pid, "id": ident, "keepalive": holder}


def users_container(request: dict[str, Any], engine: Engine
                    ) -> tuple[str, str, dict[str, Any] | None]:
    """(user, server, the container's inspect data or None when there is none) for a
    request naming a user and server; HelperRefused when that name is a container teamhub
    did not make for that user's server."""
    user = hub_user(request.get("user"))
    server = request.get("server", "") or ""
    scope_unit(user, server)  # the server name rule
    info = engine.container(container_launch.container_name(user, server))
    if info is None:
        return user, server, None
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_USER) != user or (labels.get(LABEL_SERVER) or "") != server:
        raise HelperRefused(f"container {container_launch.container_name(user, server)!r} "
                            f"is not teamhub's container of {user!r}'s server")
    return user, server, info


def state(request: dict[str, Any]) -> dict[str, Any]:
    """`container_state`: whether the user's container exists, runs, its exit code, host
    pid and id."""
    _, _, info = users_container(request, Engine())
    if info is None:
        return {"exists": False}
    st = info.get("State") or {}
    return {"exists": True, "id": info.get("Id", ""), "running": bool(st.get("Running")),
            "exit_code": int(st.get("ExitCode") or 0), "pid": int(st.get("Pid") or 0)}


def stop(request: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """`container_stop`: stop and remove the user's container, empty its runtime folder."""
    timeout = request.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int) \
            or not 0 <= timeout <= MAX_STOP_TIMEOUT:
        raise HelperRefused(f"timeout is not 0-{MAX_STOP_TIMEOUT} seconds")
    engine = Engine()
    user, _, info = users_container(request, engine)
    if info is not None:
        engine.stop(info["Id"], timeout)
        engine.remove(info["Id"])
    # Kernels are gone with the server: their sockets and keys go too.
    account = account_of(user, policy)
    shutil.rmtree(Path(policy.private_runtime_root) / str(account.uid), ignore_errors=True)
    return {"ok": True, "removed": info is not None}


def logs(request: dict[str, Any]) -> dict[str, Any]:
    """`container_logs`: the last lines of the user's container's output."""
    lines = request.get("lines", 8)
    if isinstance(lines, bool) or not isinstance(lines, int) or not 0 < lines <= MAX_LOG_LINES:
        raise HelperRefused(f"lines is not 1-{MAX_LOG_LINES}")
    engine = Engine()
    _, _, info = users_container(request, engine)
    if info is None:
        return {"text": ""}
    return {"text": engine.logs(info["Id"], lines)}
