"""GPUs for a user's server: take them at start, keep the server to them, give them back.

A mixin of LocalSpawner (and so of DockerSpawner). At start, the user's value from
`[gpus]` is resolved with their groups, and devices are taken from the free pool
(teamhub.gpu_allocations: atomic, all or nothing). The server then sees only those:
`CUDA_VISIBLE_DEVICES` by UUID, and — the part a kernel cannot undo — the other
devices' nodes covered in its mount namespace and, under systemd, its scope's device
cgroup allowing only its own nodes (local backend), or only its devices passed to its
container (docker backend). Holdings are given back when the server's state is cleared
(stop, cull, a crash the hub notices) and are kept in the spawner's state, so a hub
restart re-adopts them with the server.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SpawnException
from traitlets import Dict, HasTraits, Unicode

from .. import gpus as gpu_model
from ..errors import GpusBusy, LockError
from ..gpu_allocations import Allocations
from ..system import gpus as discovery
from ..system import systemd

# Discovery asks the driver (tens of ms, more for nvidia-smi): once per hub process.
_INVENTORY: list[discovery.Inventory] = []


def inventory() -> discovery.Inventory:
    if not _INVENTORY:
        found = discovery.discover()
        if found.devices and os.geteuid() == 0:
            discovery.ensure_nodes(found)
        _INVENTORY.append(found)
    return _INVENTORY[0]


class GpuSupport(HasTraits):
    """What a spawner needs for `[gpus]` (mixed in before JupyterHub's spawner class; a
    HasTraits so that its traits are set up and configurable as the spawner's own)."""

    # The spawner's own, seen here through the class this is mixed into.
    user: Any
    name: str | None
    log: Any

    gpus = Dict(
        help="""The `gpus.*` settings (default, groups, users); each server's share is
        resolved from them and the user's groups at every start (see teamhub.gpus).""",
    ).tag(config=True)

    gpu_allocations = Unicode(
        "", help="""Record of who holds which GPU (state folder); empty: no GPUs."""
    ).tag(config=True)

    gpu_cover = Unicode(
        "/run/teamhub/no-device",
        help="""Root-owned empty file of mode 0000 bound over the device nodes a server
        must not open, in its mount namespace.""",
    ).tag(config=True)

    _gpu_devices: tuple[discovery.Device, ...] = ()
    _gpu_placement: gpu_model.Placement | None = None
    _gpu_since = 0.0
    _gpu_shared = False
    _gpu_witness = 0

    # ------------------------------------------------------------ hooks for the backends

    def gpu_env(self) -> dict[str, str]:
        """What the server's environment gets (empty when GPUs are not in play)."""
        return self._gpu_placement.env() if self._gpu_placement else {}

    def gpu_launch_extras(self) -> dict[str, Any]:
        """The local backend's device policy: `devices` for the sandbox's mount namespace,
        `DeviceAllow` for the systemd scope (both empty when unrestricted)."""
        place = self._gpu_placement
        if place is None or not place.restricted:
            return {"devices": None, "scope_properties": {}}
        props = {}
        if systemd.booted():
            props = {"DeviceAllow": discovery.device_allow(place.allow)}
        return {"devices": place.mounts_spec(self.gpu_cover), "scope_properties": props}

    def gpu_container_devices(self) -> dict[str, Any]:
        """The docker backend's device settings for HostConfig (empty: no GPU)."""
        if not self._gpu_devices:
            return {}
        return discovery.container_devices(inventory(), self._gpu_devices)

    # ------------------------------------------------------------ taking and giving back

    async def take_gpus(self) -> None:
        """Take this server's devices before it is launched; SpawnException if too few
        are free (nothing is then held)."""
        self._gpu_placement = None
        self._gpu_devices = ()
        if not self.gpu_allocations:
            return
        inv = await asyncio.to_thread(inventory)
        if not inv.devices:
            return
        request = gpu_model.NONE
        if gpu_model.configured(self.gpus or {}):
            request = gpu_model.resolve(self.gpus, self.user.name,
                                        [g.name for g in self.user.groups], len(inv.devices))
        if request.kind == "none":
            # Still none for this one on a GPU machine: every device node is covered.
            self._gpu_placement = gpu_model.placement(inv, ())
            return
        since = time.time()
        allocations = Allocations(Path(self.gpu_allocations))
        try:
            taken = await asyncio.to_thread(allocations.take, self.user.name, self.name or "",
                                            request, inv.devices, os.getpid(), since)
        except GpusBusy as exc:
            raise self._busy(exc, request) from None
        except (LockError, StopIteration, ValueError, OSError) as exc:
            self.log.error("Cannot take GPUs for %s: %s", self.user.name, exc)
            raise SpawnException(f"Your server's GPUs could not be assigned: {exc}",
                                 reason="gpus") from None
        self._gpu_devices = tuple(taken)
        self._gpu_since = since
        self._gpu_shared = request.shared or request.kind == "all"
        self._gpu_placement = gpu_model.placement(inv, taken)
        self.log.info("GPUs for %s: %s", self.user.name,
                      ", ".join(d.uuid for d in taken) or "none free to share")

    def _busy(self, exc: GpusBusy, request: gpu_model.Request) -> SpawnException:
        who = "; held by: " + "; ".join(
            f"{uuid}: {', '.join(names)}" for uuid, names in exc.holders.items())
        counts = (f"Your server needs {exc.needed} GPU(s) ({request.describe()}) and only "
                  f"{exc.free} of the ones it may use are free right now")
        message = counts + (who if self.user.admin else
                            f" ({len(exc.holders)} held by other users' servers)") + \
            "; try again when a server stops, or ask your admin"
        return SpawnException(message, reason="gpus", log_message=f"{self.user.name}: {exc}",
                              status_code=503)

    async def attach_gpus(self, pid: int | None) -> None:
        """Once the server runs: its process (PID) witnesses its holdings, not the hub."""
        if self._gpu_devices and pid:
            self._gpu_witness = pid
            await asyncio.to_thread(Allocations(Path(self.gpu_allocations)).attach,
                                    self.user.name, self.name or "", pid)

    def release_gpus(self) -> None:
        """Give back what this server's last start took (never a later start's)."""
        if not (self._gpu_devices and self.gpu_allocations):
            return
        allocations = Allocations(Path(self.gpu_allocations))
        args = (self.user.name, self.name or "", self._gpu_since)
        self._gpu_devices = ()
        self._gpu_placement = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            allocations.release(*args)
            return
        loop.run_in_executor(None, allocations.release, *args)

    # ------------------------------------------------------------ spawner state

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self.release_gpus()

    def get_state(self) -> dict:
        state = super().get_state()  # type: ignore[misc]
        if self._gpu_devices:
            state["gpus"] = {"uuids": [d.uuid for d in self._gpu_devices],
                             "since": self._gpu_since, "shared": self._gpu_shared,
                             "witness": self._gpu_witness}
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)  # type: ignore[misc]
        held = state.get("gpus")
        if not held or not self.gpu_allocations:
            return
        inv = inventory()
        self._gpu_devices = tuple(d for d in inv.devices if d.uuid in held["uuids"])
        self._gpu_since = float(held.get("since") or time.time())
        self._gpu_shared = bool(held.get("shared"))
        self._gpu_witness = int(held.get("witness") or 0)
        # A hub restart: the record may have lost this running server's devices (it was
        # reset, or the hub that took them was the witness); record them again. This runs
        # on the event loop (load_state is synchronous), once per spawner at hub start:
        # discovery is cached and the lock is held for one small file's read and write.
        if self._gpu_witness:
            Allocations(Path(self.gpu_allocations)).adopt(
                self.user.name, self.name or "", held["uuids"], self._gpu_shared,
                self._gpu_witness, self._gpu_since)
