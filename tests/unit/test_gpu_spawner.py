"""The spawner's GPU steps (teamhub.spawners.gpu) on real LocalSpawner objects: take at
start, what the server's environment and launch get, the spawn page's message when too
few are free (names for admins, counts for users), release, and state across a restart.

This machine has no GPU: discovery's answer is replaced by a fixture inventory (the
module's cache), and the user objects are plain stand-ins for hub users. The record and
its lock are real.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import SpawnException
from traitlets.config import Config

from teamhub.gpu_allocations import Allocations
from teamhub.spawners import gpu as gpu_spawner
from teamhub.spawners.local import LocalSpawner
from teamhub.system import gpus as discovery

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the record's lock is root-only")

UUIDS = [f"GPU-{i:08d}-0000-0000-0000-000000000000" for i in range(2)]


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> discovery.Inventory:
    for i in range(2):
        (tmp_path / f"nvidia{i}").touch()
    inv = discovery.Inventory(tuple(
        discovery.Device(str(i), UUIDS[i], "H200", 1 << 30, (f"{tmp_path}/nvidia{i}",),
                         pci_bus_id=f"0000:{i:02x}:00.0") for i in range(2)),
        "fixture", dev=str(tmp_path), proc_gpus=str(tmp_path / "proc"))
    monkeypatch.setattr(gpu_spawner, "_INVENTORY", [inv])
    return inv


def spawner(tmp_path: Path, name: str, gpus: dict, admin: bool = False,
            groups: tuple[str, ...] = ()) -> LocalSpawner:
    c = Config()
    c.LocalSpawner.gpus = gpus
    c.LocalSpawner.gpu_allocations = str(tmp_path / "state" / "gpu-allocations.json")
    user = SimpleNamespace(name=name, admin=admin, url=f"/user/{name}/", escaped_name=name,
                           groups=[SimpleNamespace(name=g) for g in groups])
    return LocalSpawner(config=c, user=user)


def test_take_place_release(tmp_path: Path, inventory) -> None:
    ada = spawner(tmp_path, "ada", {"default": "1"})
    asyncio.run(ada.take_gpus())
    assert ada.gpu_env() == {"CUDA_VISIBLE_DEVICES": UUIDS[0],
                             "NVIDIA_VISIBLE_DEVICES": UUIDS[0]}
    extras = ada.gpu_launch_extras()
    assert extras["devices"]["hide"] == [f"{tmp_path}/nvidia1"]
    state = ada.get_state()
    assert state["gpus"]["uuids"] == [UUIDS[0]]
    ada.clear_state()  # stop, cull, or a crash the hub noticed
    assert Allocations(Path(ada.gpu_allocations)).holdings() == []
    assert ada.gpu_env() == {}


def test_too_few_free_names_holders_for_admins_only(tmp_path: Path, inventory) -> None:
    config = {"default": "1", "groups": {"ml": "2"}}
    ml = spawner(tmp_path, "ml-user", config, groups=("ml",))
    asyncio.run(ml.take_gpus())
    assert ml.gpu_env()["CUDA_VISIBLE_DEVICES"] == ",".join(UUIDS)
    with pytest.raises(SpawnException) as user_view:
        asyncio.run(spawner(tmp_path, "bob", config).take_gpus())
    assert "needs 1 GPU(s) (1) and only 0 of the ones it may use are free" in \
        user_view.value.message
    assert "ml-user" not in user_view.value.message
    assert "(2 held by other users' servers)" in user_view.value.message
    with pytest.raises(SpawnException) as admin_view:
        asyncio.run(spawner(tmp_path, "root-ish", config, admin=True).take_gpus())
    assert f"{UUIDS[0]}: ml-user" in admin_view.value.message
    assert admin_view.value.status_code == 503


def test_none_on_a_gpu_machine_covers_every_node(tmp_path: Path, inventory) -> None:
    cy = spawner(tmp_path, "cy", {"default": "none"})
    asyncio.run(cy.take_gpus())
    assert cy.gpu_env()["CUDA_VISIBLE_DEVICES"] == ""
    assert cy.gpu_launch_extras()["devices"]["hide"] == [f"{tmp_path}/nvidia{i}"
                                                         for i in range(2)]
    assert Allocations(Path(cy.gpu_allocations)).holdings() == []


def test_hub_restart_adopts_a_running_servers_devices(tmp_path: Path, inventory) -> None:
    ada = spawner(tmp_path, "ada", {"default": "1"})
    asyncio.run(ada.take_gpus())
    asyncio.run(ada.attach_gpus(os.getpid()))  # this process stands in for the server
    state = ada.get_state()
    record = Allocations(Path(ada.gpu_allocations))
    record.path.unlink()  # the record was lost while the hub was down
    again = spawner(tmp_path, "ada", {"default": "1"})
    again.load_state(state)
    assert [(h.uuid, h.pid) for h in record.holdings()] == [(UUIDS[0], os.getpid())]
