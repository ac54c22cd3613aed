"""The usage sampler: every `console.sample_seconds`, what each user's running servers use
(CPU, memory; teamhub.system.usage) and the machine's totals, the last hour kept in the
hub's memory; every ten minutes, each user's home disk use.

One per hub process, made and started with the console's handlers (when the hub starts:
JupyterHub asks its authenticator for handlers while it initialises, on its event loop).
Reading /proc, cgroups, the Docker engine and walking homes happen on threads of their own,
never on the event loop; pages read only what is already here.

Per user a ring of (time, CPUs in use, memory bytes): at 30 s, 120 points an hour.
"""

from __future__ import annotations

import asyncio
import pwd
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from jupyterhub import orm
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from .. import limits as limits_model
from ..errors import DockerError
from ..system import usage
from ..system.containers import LABEL_USER, home_volume
from ..system.docker import Engine
from ..system.names import system_name

KEEP_SECONDS = 3600


def target_of(spawner: Any) -> usage.Target | None:
    """Where SPAWNER's server runs, as teamhub.system.usage reads it."""
    if getattr(spawner, "single_user_trial", False):
        account = None  # every server runs as the hub's own account: count its tree only
    else:
        account = getattr(spawner, "system_user_name", None)
    container = getattr(spawner, "container_id", "")
    if container:
        return usage.Target(container=container, marker=container, account=account)
    pid = getattr(spawner, "pid", 0)
    if not pid:
        return None
    return usage.Target(pid=pid, marker=getattr(spawner, "scope_unit", ""), account=account)


@dataclass(frozen=True)
class SpawnerSettings:
    """What the hub's spawner configuration says about every user (read from the hub's
    config, not from spawner objects: asking JupyterHub for a user's spawner creates one,
    and its database row, for users who never started a server)."""

    limits: dict[str, Any]  # the `limits.*` settings, as LocalSpawner.limits
    prefix: str = "jupyter-"
    existing_accounts: bool = False  # PAM mode: the hub name is the Linux name
    trial: bool = False
    home_volumes: bool = False  # docker backend with docker.home = "volume"

    @classmethod
    def of(cls, config: Any) -> SpawnerSettings:
        local, docker = config.LocalSpawner, config.DockerSpawner
        docker_backend = str(config.JupyterHub.get("spawner_class", "")).endswith(
            "DockerSpawner")
        return cls(limits=dict(local.get("limits") or {"enabled": False}),
                   prefix=str(local.get("system_prefix", "jupyter-")),
                   existing_accounts=bool(local.get("existing_accounts", False)),
                   trial=bool(local.get("single_user_trial", False)),
                   home_volumes=docker_backend and docker.get("home_mode") == "volume")

    def home_place(self, name: str) -> tuple[str, str] | None:
        """("volume", NAME) or ("account", LINUX NAME) holding hub user NAME's home; None
        in the single-user trial (no homes of their own)."""
        if self.trial:
            return None
        if self.home_volumes:
            return ("volume", home_volume(name))
        return ("account", name if self.existing_accounts else system_name(name, self.prefix))

    def limits_of(self, user: Any) -> limits_model.Limits | None:
        """USER's limits as their spawner resolves them (its own `resolved_limits` when
        it is loaded; the same `limits.resolve` over the same settings otherwise)."""
        spawner = dict.get(user.spawners, "")  # a loaded one only: never make one
        if spawner is not None and hasattr(spawner, "resolved_limits"):
            return spawner.resolved_limits()
        return limits_model.resolve(self.limits, [g.name for g in user.groups])


def _read_all(targets: dict[str, list[usage.Target]], memory: usage.MemoryCache
              ) -> tuple[dict[str, usage.Reading], usage.Machine]:
    readings = {}
    by_uid = usage.processes_by_uid() if targets else {}
    for name, mine in targets.items():
        total = usage.Reading()
        for target in mine:
            total.add(usage.read_target(target, by_uid, memory))
        readings[name] = total
    memory.forget_unseen()
    return readings, usage.machine_reading()


def _home_sizes(places: dict[str, tuple[str, str]]) -> dict[str, int]:
    volumes: dict[str, str] = {}
    if any(kind == "volume" for kind, _ in places.values()):
        try:
            volumes = {v["Name"]: v.get("Mountpoint", "")
                       for v in Engine(timeout=30).volumes(label=LABEL_USER)}
        except DockerError:
            pass
    sizes = {}
    for name, (kind, what) in places.items():
        if kind == "volume":
            path = volumes.get(what)
        else:
            try:
                path = pwd.getpwnam(what).pw_dir
            except KeyError:
                path = None
        if path:
            sizes[name] = usage.disk_use(path)
    return sizes


class UsageSampler(LoggingConfigurable):
    """Samples in the background; `now`, `history` and `home` answer from memory."""

    sample_seconds = Integer(
        30, help="""Seconds between two samples (setting `console.sample_seconds`)."""
    ).tag(config=True)

    memory_seconds = Integer(
        600, help="""Where a server is counted by its processes (no cgroup of its own): a
        process's memory (PSS) is read again at a sample only when it used CPU since (0.1 s)
        or its last value is this many seconds old. Reading it costs the kernel a walk of the
        process's page tables; CPU time is read at every sample."""
    ).tag(config=True)

    home_seconds = Integer(
        600, help="""Seconds between two walks of every home (their disk use)."""
    ).tag(config=True)

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(parent=app, **kwargs)
        self.app = app
        self.spawners = SpawnerSettings.of(app.config)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="teamhub-usage")
        self._memory = usage.MemoryCache(self.memory_seconds)
        self._walker = ThreadPoolExecutor(1, thread_name_prefix="teamhub-du")
        self._tasks: list[asyncio.Task[None]] = []
        self._meters: dict[str, usage.CpuMeter] = {}
        self._last_machine: usage.Machine | None = None
        self.rings: dict[str, deque[tuple[float, float | None, int]]] = {}
        self.machine_ring: deque[tuple[float, float | None, int]] = deque(maxlen=self._size)
        self.current: dict[str, dict[str, Any]] = {}
        self.machine: usage.Machine | None = None
        self.homes: dict[str, int] = {}
        self.homes_at: float | None = None
        self._walking = False
        self._tried: set[str] = set()

    @property
    def _size(self) -> int:
        return KEEP_SECONDS // max(self.sample_seconds, 1) + 2

    def start(self) -> None:
        """Start sampling on the running event loop (once); without one, do nothing."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if not self._tasks:
            self._tasks = [loop.create_task(self._forever(self.sample_once, self.sample_seconds)),
                           loop.create_task(self._forever(self.refresh_homes, self.home_seconds))]

    async def _forever(self, step: Any, every: int) -> None:
        while True:
            try:
                await step()
            except Exception:  # a bad sample must not end sampling
                self.log.exception("teamhub usage sampler: %s failed", step.__name__)
            await asyncio.sleep(every)

    def _running(self) -> Iterable[tuple[str, Any]]:
        for user in list(self.app.users.values()):
            for spawner in list(user.spawners.values()):
                if spawner.ready:
                    yield user.name, spawner

    async def sample_once(self) -> None:
        targets: dict[str, list[usage.Target]] = {}
        for name, spawner in self._running():
            target = target_of(spawner)
            if target is not None:
                targets.setdefault(name, []).append(target)
        readings, machine = await asyncio.get_running_loop().run_in_executor(
            self._pool, _read_all, targets, self._memory)
        self.record(time.time(), time.monotonic(), readings, machine)
        unmeasured = set(targets) - set(self.homes) - self._tried
        if unmeasured and not self._walking:
            self._tried |= unmeasured  # once: a user without a home is not walked each time
            # A user's first server made their home since the last walk: measure it now,
            # not up to ten minutes later.
            self._tasks.append(asyncio.get_running_loop().create_task(
                self.refresh_homes(unmeasured)))

    def record(self, t: float, mono: float, readings: dict[str, usage.Reading],
               machine: usage.Machine) -> None:
        current = {}
        for name, reading in readings.items():
            cpu = self._meters.setdefault(name, usage.CpuMeter()).update(reading.counters, mono)
            cpu = None if cpu is None else round(cpu, 3)
            self.rings.setdefault(name, deque(maxlen=self._size)).append(
                (round(t, 1), cpu, reading.memory))
            current[name] = {"cpu": cpu, "memory": reading.memory, "source": reading.source}
        for gone in set(self._meters) - set(readings):
            del self._meters[gone]
        self.current = current
        cpus = usage.machine_cpus(self._last_machine, machine) if self._last_machine else None
        self._last_machine = self.machine = machine
        self.machine_ring.append((round(t, 1), None if cpus is None else round(cpus, 3),
                                  machine.memory_used))

    async def refresh_homes(self, names: set[str] | None = None) -> None:
        """Measure the homes of NAMES (default: every hub user's) on the walker thread."""
        self._walking = True
        try:
            places = {}
            query = self.app.db.query(orm.User)
            if names is not None:
                query = query.filter(orm.User.name.in_(sorted(names)))
            for (name,) in query.with_entities(orm.User.name):
                place = self.spawners.home_place(name)
                if place is not None:
                    places[name] = place
            sizes = await asyncio.get_running_loop().run_in_executor(
                self._walker, _home_sizes, places)
        finally:
            self._walking = False
        self.homes = sizes if names is None else {**self.homes, **sizes}
        if names is None:
            self.homes_at = time.time()
        self._tasks = [t for t in self._tasks if not t.done()]

    def history(self, now: float | None = None) -> dict[str, Any]:
        """The last hour: {"users": {name: [[t, cpu, memory], ...]}, "machine": [...], ...}."""
        since = (time.time() if now is None else now) - KEEP_SECONDS
        users = {name: [list(p) for p in ring if p[0] >= since]
                 for name, ring in sorted(self.rings.items())}
        m = self.machine
        return {
            "interval": self.sample_seconds,
            "cpus": m.cpus if m else None,
            "memory_total": m.memory_total if m else None,
            "machine": [list(p) for p in self.machine_ring if p[0] >= since],
            "users": {name: points for name, points in users.items() if points},
        }
