"""GPUs: the `[gpus]` values, who gets what, discovery parsing and the enforcement plan.

This machine has no GPU and no NVIDIA driver, so the devices come from fixtures: an
Inventory built in the test, and nvidia-smi output written in the format nvidia-smi
prints (documented CSV with `--format=csv,noheader,nounits`, and `nvidia-smi -L`). They
were not recorded on this machine (it has no GPU); bench/gpu_check.sh saves the real
output on a GPU machine so it can replace them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from teamhub import gpus, hubconfig
from teamhub.errors import SettingsError
from teamhub.paths import Paths
from teamhub.settings import load
from teamhub.system import gpus as discovery
from teamhub.system.systemd import _busctl_args

GIB = 1024**3
UUIDS = ["GPU-11111111-aaaa-bbbb-cccc-000000000000", "GPU-22222222-aaaa-bbbb-cccc-000000000000",
         "GPU-33333333-aaaa-bbbb-cccc-000000000000"]
MIG = "MIG-44444444-aaaa-bbbb-cccc-000000000000"

# `nvidia-smi --query-gpu=index,uuid,name,memory.total,pci.bus_id,mig.mode.current
#  --format=csv,noheader,nounits` on a machine with three GPUs, the last in MIG mode.
SMI_CSV = f"""0, {UUIDS[0]}, NVIDIA H200, 143771, 00000000:18:00.0, Disabled
1, {UUIDS[1]}, NVIDIA H200, 143771, 00000000:2A:00.0, Disabled
2, {UUIDS[2]}, NVIDIA A100-SXM4-40GB, 40960, 00000000:3B:00.0, Enabled
"""
SMI_LIST = f"""GPU 0: NVIDIA H200 (UUID: {UUIDS[0]})
GPU 1: NVIDIA H200 (UUID: {UUIDS[1]})
GPU 2: NVIDIA A100-SXM4-40GB (UUID: {UUIDS[2]})
  MIG 3g.20gb     Device  0: (UUID: {MIG})
"""


def settings(tmp_path: Path, text: str = "", **env: str):
    cfg = tmp_path / "teamhub.toml"
    cfg.write_text(text)
    return load(cfg, environ=env)


def fixture_inventory(dev: Path, n: int = 2) -> discovery.Inventory:
    return discovery.Inventory(tuple(
        discovery.Device(str(i), UUIDS[i], "NVIDIA H200", 141 * GIB, (f"{dev}/nvidia{i}",),
                         pci_bus_id=f"0000:{0x18 + i:02x}:00.0") for i in range(n)),
        source="fixture", dev=str(dev), proc_gpus=str(dev / "proc-gpus"))


# ---------------------------------------------------------------- values and settings


@pytest.mark.parametrize(("text", "expected"), [
    ("none", gpus.Request()), ("0", gpus.Request()),
    ("all", gpus.Request("all", shared=True)),
    ("1", gpus.Request("count", count=1)), (2, gpus.Request("count", count=2)),
    ("shared:1", gpus.Request("count", count=1, shared=True)),
    ("0,2", gpus.Request("list", ids=("0", "2"))),
    ("2,", gpus.Request("list", ids=("2",))),
    (f"shared:{UUIDS[0]}", gpus.Request("list", ids=(UUIDS[0],), shared=True)),
    (f"{MIG},1", gpus.Request("list", ids=(MIG, "1"))),
])
def test_values(text, expected) -> None:
    assert gpus.parse(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "-1", "1.5", "0,0", "GPU0", "shared:", "0;2"])
def test_bad_values_say_the_forms(bad) -> None:
    with pytest.raises(ValueError, match="shared:N"):
        gpus.parse(bad)


def test_settings_file_env_and_tables(tmp_path: Path) -> None:
    s = settings(tmp_path, '[gpus]\ndefault = 1\n[gpus.groups]\nml = 2\nvision = "shared:1"\n'
                 '[gpus.users]\nada = "0,1"\n')
    assert gpus.from_settings(s) == {"default": 1, "groups": {"ml": 2, "vision": "shared:1"},
                                     "users": {"ada": "0,1"}}
    s = settings(tmp_path, "", TEAMHUB_GPUS_DEFAULT="1",
                 TEAMHUB_GPUS_GROUPS='{"ml": "0,2"}')
    assert s["gpus.default"] == "1" and s["gpus.groups"] == {"ml": "0,2"}
    assert settings(tmp_path)["gpus.default"] == "none"


@pytest.mark.parametrize(("text", "named"), [
    ('[gpus]\ndefault = "lots"\n', "gpus.default = 'lots'"),
    ("[gpus]\ndefault = true\n", "gpus.default = True"),
    ('[gpus.groups]\nml = "x,y"\n', "ml = 'x,y'"),
])
def test_bad_settings_name_the_value(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        settings(tmp_path, text)


def test_update_gpus_on_bare_config(tmp_path: Path) -> None:
    s = settings(tmp_path, f'[paths]\nstate_dir = "{tmp_path}/state"\n[gpus]\ndefault = 1\n')
    c = Config()
    hubconfig.update_gpus(c, s, Paths.from_settings(s))
    assert c.LocalSpawner.gpus == {"default": 1, "groups": {}, "users": {}}
    assert c.LocalSpawner.gpu_allocations == f"{tmp_path}/state/gpu-allocations.json"
    hubconfig.update_gpus(c, s, Paths.from_settings(s), trial=True)
    assert c.LocalSpawner.gpu_allocations == ""


# ---------------------------------------------------------------- who gets what


def test_user_value_wins_then_most_generous_group_then_default() -> None:
    config = {"default": "none", "groups": {"ml": "2", "vision": "shared:3", "small": "1"},
              "users": {"bob": "none"}}
    assert gpus.resolve(config, "ada", ["ml", "small"], 4) == gpus.parse("2")
    # More devices beats exclusive; for as many, exclusive beats shared.
    assert gpus.resolve(config, "ada", ["ml", "vision"], 4) == gpus.parse("shared:3")
    assert gpus.resolve({**config, "groups": {"a": "shared:2", "b": "2"}}, "x", ["a", "b"],
                        4) == gpus.parse("2")
    assert gpus.resolve({**config, "groups": {"a": "all", "b": "2"}}, "x", ["a", "b"],
                        4) == gpus.parse("all")
    assert gpus.resolve(config, "bob", ["ml"], 4) == gpus.NONE
    assert gpus.resolve(config, "cy", ["other"], 4) == gpus.NONE
    assert gpus.resolve({"default": "1"}, "cy", [], 4) == gpus.parse("1")


def test_problems_name_value_and_fix(tmp_path: Path) -> None:
    inv = fixture_inventory(tmp_path)
    ok = {"default": "1", "groups": {"ml": "2"}, "users": {"ada": f"{UUIDS[1]}"}}
    assert gpus.problems(ok, inv, ["ml"], ["ada"]) == []
    found = gpus.problems({"default": "3", "groups": {"ghosts": "1"},
                           "users": {"ada": "0,7", "nobody-here": "1"}}, inv, [], ["ada"])
    assert found[0].startswith("gpus.default = '3' asks for 3 GPUs but this machine has 2")
    assert "there is no GPU '7' here" in found[1]
    assert "there is no hub group 'ghosts'; create it (`teamhub group create ghosts`)" \
        in found[2]
    assert "there is no user 'nobody-here'" in found[3]
    none = gpus.problems({"default": "1"}, discovery.Inventory(problem="no NVIDIA driver"),
                         [], [])
    assert none == ["gpus.default asks for GPUs but no NVIDIA driver; install the NVIDIA "
                    "driver, or set every [gpus] value to none (`teamhub config set "
                    "gpus.default none`)"]
    assert gpus.problems({"default": "none"}, discovery.Inventory(), [], []) == []


# ---------------------------------------------------------------- discovery parsing


def test_nvidia_smi_output(tmp_path: Path) -> None:
    # The driver numbers /dev/nvidia<minor> by its own order, not nvidia-smi's index.
    info = tmp_path / "proc-gpus" / "0000:2a:00.0"
    info.mkdir(parents=True)
    (info / "information").write_text("Model: \t NVIDIA H200\nDevice Minor: \t 5\n")
    inv = discovery.inventory_from_smi(SMI_CSV, SMI_LIST, dev="/dev",
                                       proc_gpus=str(tmp_path / "proc-gpus"))
    assert [(d.index, d.uuid, d.nodes[0]) for d in inv.devices] == [
        ("0", UUIDS[0], "/dev/nvidia0"), ("1", UUIDS[1], "/dev/nvidia5"),
        ("2:0", MIG, "/dev/nvidia2")]
    assert inv.devices[0].memory_total == 143771 * 1024**2
    assert inv.devices[2].is_mig and inv.devices[2].parent_uuid == UUIDS[2]
    assert inv.devices[2].name == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    assert inv.mig_parents == ("0000:3b:00.0",)
    assert inv.find("1") is inv.devices[1] and inv.find(MIG) is inv.devices[2]
    with pytest.raises(ValueError, match="expected 6"):
        discovery.parse_smi_csv("0, GPU-1, H200\n")


def test_mig_nodes_from_the_driver_table(tmp_path: Path) -> None:
    table = tmp_path / "mig-minors"
    table.write_text("config 1\nmonitor 2\ngpu2/gi1/access 12\ngpu2/gi1/ci0/access 13\n"
                     "gpu2/gi2/access 21\n")
    caps = discovery.mig_cap_minors(str(table))
    assert discovery.mig_nodes("/dev", 2, 1, 0, caps) == (
        "/dev/nvidia2", "/dev/nvidia-caps/nvidia-cap12", "/dev/nvidia-caps/nvidia-cap13")


def test_usage_from_nvidia_smi() -> None:
    used = discovery.parse_smi_usage(f"{UUIDS[0]}, 1024\n{UUIDS[1]}, 0\n",
                                     f"{UUIDS[0]}, 4242, 1000\n")
    assert used[UUIDS[0]] == {"memory_used": 1024 * 1024**2,
                              "processes": [{"pid": 4242, "memory": 1000 * 1024**2}]}
    assert used[UUIDS[1]]["processes"] == []


class FakeNvml:
    """Stands in for pynvml only because this machine has no driver for it to load; it
    answers the calls inventory_from_nvml makes, as NVML documents them."""

    NVML_DEVICE_MIG_ENABLE = 1

    class NVMLError(Exception):
        pass

    class _Info:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetUUID(self, h):
        return UUIDS[h[1]] if h[0] == "gpu" else MIG.encode()

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA A100" if h[0] == "gpu" else "1g.10gb"

    def nvmlDeviceGetPciInfo(self, h):
        return self._Info(busId=f"00000000:{0x18 + h[1]:02X}:00.0".encode())

    def nvmlDeviceGetMinorNumber(self, h):
        return 3 - h[1]

    def nvmlDeviceGetMigMode(self, h):
        if h[1] == 0:
            raise self.NVMLError("Not Supported")
        return (1, 1)

    def nvmlDeviceGetMemoryInfo(self, h):
        return self._Info(total=10 * GIB if h[0] == "mig" else 40 * GIB, used=0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 2

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, j):
        if j:
            raise self.NVMLError("Not Found")
        return ("mig", h[1])

    def nvmlDeviceGetGpuInstanceId(self, h):
        return 1

    def nvmlDeviceGetComputeInstanceId(self, h):
        return 0


def test_nvml_inventory() -> None:
    inv = discovery.inventory_from_nvml(FakeNvml())
    assert [(d.index, d.uuid, d.nodes[0], d.memory_total) for d in inv.devices] == [
        ("0", UUIDS[0], "/dev/nvidia3", 40 * GIB), ("1:0", MIG, "/dev/nvidia2", 10 * GIB)]
    assert inv.devices[1].name == "NVIDIA A100 MIG 1g.10gb"
    assert inv.mig_parents == ("0000:19:00.0",)


# ---------------------------------------------------------------- enforcement plan


def test_placement_covers_the_others(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    (tmp_path / "nvidia-caps").mkdir()
    (tmp_path / "nvidia-caps" / "nvidia-cap1").touch()
    inv = fixture_inventory(tmp_path)
    place = gpus.placement(inv, [inv.devices[0]])
    assert place.env() == {"CUDA_VISIBLE_DEVICES": UUIDS[0], "NVIDIA_VISIBLE_DEVICES": UUIDS[0]}
    assert place.hide == (f"{tmp_path}/nvidia-caps/nvidia-cap1", f"{tmp_path}/nvidia1")
    assert place.mask == (f"{tmp_path}/proc-gpus/0000:19:00.0",)
    assert place.allow == (f"{tmp_path}/nvidia0", f"{tmp_path}/nvidiactl",
                           f"{tmp_path}/nvidia-uvm")
    assert place.mounts_spec("/c") == {"hide": list(place.hide), "mask": list(place.mask),
                                       "cover": "/c"}
    nothing = gpus.placement(inv, [])
    assert nothing.env()["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert len(nothing.hide) == 3
    # Every device: only the caps node no MIG instance of its own needs stays covered.
    assert gpus.placement(inv, inv.devices).hide == (f"{tmp_path}/nvidia-caps/nvidia-cap1",)
    (tmp_path / "nvidia-caps" / "nvidia-cap1").unlink()
    assert not gpus.placement(inv, inv.devices).restricted


def test_device_allow_keeps_other_devices(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.write_text("Character devices:\n  1 mem\n  4 /dev/vc/0\n  5 /dev/tty\n 10 misc\n"
                       "195 nvidia-frontend\n226 drm\n235 nvidia-uvm\n236 nvidia-caps\n\n"
                       "Block devices:\n  8 sd\n")
    allow = discovery.device_allow(["/dev/nvidia1", "/dev/nvidiactl"], str(devices))
    assert allow == [("block-*", "rwm"), ("char-mem", "rwm"), ("char-misc", "rwm"),
                     ("char-drm", "rwm"), ("/dev/nvidia1", "rw"), ("/dev/nvidiactl", "rw")]
    assert _busctl_args({"DeviceAllow": allow[-2:]}) == [
        "DeviceAllow", "a(ss)", "2", "/dev/nvidia1", "rw", "/dev/nvidiactl", "rw"]


def test_container_devices(tmp_path: Path) -> None:
    (tmp_path / "nvidiactl").touch()
    inv = fixture_inventory(tmp_path)
    with_toolkit = discovery.container_devices(inv, [inv.devices[1]], toolkit=True)
    assert with_toolkit["DeviceRequests"][0]["DeviceIDs"] == [UUIDS[1]]
    plain = discovery.container_devices(inv, [inv.devices[1]], toolkit=False)
    assert [d["PathOnHost"] for d in plain["Devices"]] == [f"{tmp_path}/nvidia1",
                                                          f"{tmp_path}/nvidiactl"]


def test_driver_files_from_ldconfig(tmp_path: Path) -> None:
    lib = tmp_path / "libcuda.so.1"
    lib.touch()
    out = (f"\tlibcuda.so.1 (libc6,x86-64) => {lib}\n"
           f"\tlibcuda.so.1 (libc6) => {tmp_path}/i386/libcuda.so.1\n"
           f"\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n")
    assert str(lib) in discovery.driver_files(out)
    assert not any("i386" in f or "libc.so" in f for f in discovery.driver_files(out))
