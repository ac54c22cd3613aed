"""NVIDIA GPU discovery: which devices this machine has, their device nodes, who uses them.

Through NVML (the `nvidia-ml-py` binding, module `pynvml`, over the driver's own
libnvidia-ml) when both are present, else by parsing `nvidia-smi`'s CSV output. Plain OS
plumbing: nothing here imports JupyterHub or knows about users' settings.

The schedulable units are whole GPUs without MIG mode, and each MIG instance of a GPU in
MIG mode (the GPU itself is then not handed out whole). Each unit knows the device nodes
a process needs to use it: `/dev/nvidia<minor>` of the (parent) GPU, and for a MIG
instance the `/dev/nvidia-caps/nvidia-cap<N>` nodes of its GPU and compute instance.
`/dev/nvidiactl` and the UVM nodes are needed by every CUDA process and are shared.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024**2
# Needed by every CUDA process whatever its device: never hidden, always allowed.
SHARED_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")
SMI_QUERY = "index,uuid,name,memory.total,pci.bus_id,mig.mode.current"


@dataclass(frozen=True)
class Device:
    """One schedulable unit: a whole GPU, or one MIG instance of a GPU."""

    index: str  # "0" for a GPU; "0:1" for MIG instance 1 of GPU 0 (as `nvidia-smi -L`)
    uuid: str  # GPU-… or MIG-…: what CUDA_VISIBLE_DEVICES and Docker take
    name: str
    memory_total: int  # bytes
    nodes: tuple[str, ...]  # device nodes this unit needs, besides SHARED_NODES
    parent_uuid: str = ""  # a MIG instance's GPU
    pci_bus_id: str = ""  # of the (parent) GPU, as /proc/driver/nvidia/gpus names it

    @property
    def is_mig(self) -> bool:
        return bool(self.parent_uuid)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "memory_total": self.memory_total, "nodes": list(self.nodes),
                "mig": self.is_mig, "parent_uuid": self.parent_uuid or None}


@dataclass(frozen=True)
class Inventory:
    """What discovery found. No driver: `devices` is empty and `problem` says why."""

    devices: tuple[Device, ...] = ()
    source: str = "none"  # "nvml", "nvidia-smi" or "none"
    problem: str = ""
    dev: str = "/dev"
    proc_gpus: str = "/proc/driver/nvidia/gpus"
    mig_parents: tuple[str, ...] = field(default=())  # pci bus ids of GPUs in MIG mode

    def find(self, ident: str) -> Device | None:
        """The unit named by a UUID or an index (`0`, `0:1`)."""
        for device in self.devices:
            if ident in (device.uuid, device.index):
                return device
        return None

    def shared_nodes(self) -> list[str]:
        return [str(Path(self.dev) / n) for n in SHARED_NODES if (Path(self.dev) / n).exists()]

    def all_nodes(self) -> list[str]:
        """Every per-device NVIDIA node under /dev: what a restricted server may lose."""
        dev = Path(self.dev)
        found = [p for p in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
        found += list((dev / "nvidia-caps").glob("nvidia-cap*"))
        return sorted(str(p) for p in found)

    def bus_ids(self) -> set[str]:
        return {d.pci_bus_id for d in self.devices if d.pci_bus_id} | set(self.mig_parents)


def proc_bus_id(smi_bus_id: str) -> str:
    """`00000000:18:00.0` (nvidia-smi, NVML) → `0000:18:00.0` (/proc/driver/nvidia/gpus)."""
    text = smi_bus_id.strip().lower()
    return text[-12:] if len(text) >= 12 else text


def device_minor(bus_id: str, proc_gpus: str, fallback: int) -> int:
    """The GPU's /dev/nvidia<minor>, from the driver's information file; FALLBACK (its
    index) when that cannot be read."""
    try:
        text = (Path(proc_gpus) / bus_id / "information").read_text()
    except OSError:
        return fallback
    m = re.search(r"^Device Minor:\s*(\d+)", text, re.M)
    return int(m.group(1)) if m else fallback


def mig_cap_minors(path: str = "/proc/driver/nvidia-caps/mig-minors") -> dict[str, int]:
    """`gpu0/gi1/access` → its nvidia-cap minor, from the driver's table."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def mig_nodes(dev: str, minor: int, gi: int | None, ci: int | None,
              caps: dict[str, int]) -> tuple[str, ...]:
    """The parent GPU's node and the caps nodes of MIG instance GI/CI (all caps nodes when
    the instance ids are unknown: then the GPU's other instances are not kept apart)."""
    gpu = f"{dev}/nvidia{minor}"
    if gi is None or ci is None:
        return (gpu, *sorted(str(p) for p in Path(dev, "nvidia-caps").glob("nvidia-cap*")))
    keys = (f"gpu{minor}/gi{gi}/access", f"gpu{minor}/gi{gi}/ci{ci}/access")
    return (gpu, *(f"{dev}/nvidia-caps/nvidia-cap{caps[k]}" for k in keys if k in caps))


# ---------------------------------------------------------------- nvidia-smi


def parse_smi_csv(text: str) -> list[dict[str, str]]:
    """Rows of `nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader,nounits`."""
    keys = SMI_QUERY.split(",")
    rows = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if not row or not row[0].strip():
            continue
        if len(row) != len(keys):
            raise ValueError(f"nvidia-smi printed {len(row)} fields, expected {len(keys)}: "
                             f"{','.join(row)!r}")
        rows.append({k: v.strip() for k, v in zip(keys, row, strict=True)})
    return rows


_LIST_GPU = re.compile(r"^GPU (\d+): (.+?) \(UUID: (GPU-[0-9a-fA-F-]+)\)")
_LIST_MIG = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[0-9a-zA-Z/-]+)\)")


def parse_smi_list(text: str) -> dict[str, list[tuple[str, str, str]]]:
    """`nvidia-smi -L`: each GPU index → its MIG instances as (index, profile, uuid)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    current = None
    for line in text.splitlines():
        if m := _LIST_GPU.match(line):
            current = m.group(1)
            out[current] = []
        elif (m := _LIST_MIG.match(line)) and current is not None:
            out[current].append((f"{current}:{m.group(2)}", m.group(1), m.group(3)))
    return out


def inventory_from_smi(csv_text: str, list_text: str, dev: str = "/dev",
                       proc_gpus: str = "/proc/driver/nvidia/gpus") -> Inventory:
    """An Inventory from nvidia-smi's outputs (the instances' caps nodes are not known)."""
    migs = parse_smi_list(list_text)
    devices: list[Device] = []
    mig_parents: list[str] = []
    for row in parse_smi_csv(csv_text):
        bus = proc_bus_id(row["pci.bus_id"])
        minor = device_minor(bus, proc_gpus, int(row["index"]))
        memory = int(float(row["memory.total"]) * MIB) if row["memory.total"][:1].isdigit() else 0
        if row["mig.mode.current"].lower() == "enabled":
            mig_parents.append(bus)
            for index, profile, uuid in migs.get(row["index"], []):
                devices.append(Device(index, uuid, f"{row['name']} MIG {profile}", 0,
                                      mig_nodes(dev, minor, None, None, {}),
                                      parent_uuid=row["uuid"], pci_bus_id=bus))
            continue
        devices.append(Device(row["index"], row["uuid"], row["name"], memory,
                              (f"{dev}/nvidia{minor}",), pci_bus_id=bus))
    return Inventory(tuple(devices), "nvidia-smi", dev=dev, proc_gpus=proc_gpus,
                     mig_parents=tuple(mig_parents))


def _smi(*args: str) -> str:
    proc = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise OSError((proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"])
    return proc.stdout


# ---------------------------------------------------------------- NVML


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml() -> Any:
    """The pynvml module, initialised; ImportError or pynvml.NVMLError when unusable."""
    import pynvml  # deferred: optional, and it loads the driver's library

    pynvml.nvmlInit()
    return pynvml


def inventory_from_nvml(nv: Any, dev: str = "/dev") -> Inventory:
    devices: list[Device] = []
    mig_parents: list[str] = []
    caps = mig_cap_minors()
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        uuid, name = _text(nv.nvmlDeviceGetUUID(h)), _text(nv.nvmlDeviceGetName(h))
        bus = proc_bus_id(_text(nv.nvmlDeviceGetPciInfo(h).busId))
        minor = nv.nvmlDeviceGetMinorNumber(h)
        try:
            mig_on = nv.nvmlDeviceGetMigMode(h)[0] == nv.NVML_DEVICE_MIG_ENABLE
        except nv.NVMLError:
            mig_on = False  # a GPU without MIG support
        if not mig_on:
            devices.append(Device(str(i), uuid, name, int(nv.nvmlDeviceGetMemoryInfo(h).total),
                                  (f"{dev}/nvidia{minor}",), pci_bus_id=bus))
            continue
        mig_parents.append(bus)
        for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                m = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
            except nv.NVMLError:
                continue
            gi, ci = nv.nvmlDeviceGetGpuInstanceId(m), nv.nvmlDeviceGetComputeInstanceId(m)
            devices.append(Device(f"{i}:{j}", _text(nv.nvmlDeviceGetUUID(m)),
                                  f"{name} MIG {_text(nv.nvmlDeviceGetName(m))}",
                                  int(nv.nvmlDeviceGetMemoryInfo(m).total),
                                  mig_nodes(dev, minor, gi, ci, caps),
                                  parent_uuid=uuid, pci_bus_id=bus))
    return Inventory(tuple(devices), "nvml", dev=dev, mig_parents=tuple(mig_parents))


def discover() -> Inventory:
    """This machine's GPUs: NVML first, nvidia-smi second, else none and why."""
    why = []
    try:
        nv = _nvml()
        try:
            return inventory_from_nvml(nv)
        finally:
            nv.nvmlShutdown()
    except ImportError:
        why.append("the nvidia-ml-py package (pynvml) is not installed")
    except Exception as exc:  # noqa: BLE001 - pynvml.NVMLError: no driver, no library
        why.append(f"NVML: {exc}")
    if shutil.which("nvidia-smi") is None:
        why.append("nvidia-smi is not installed")
        return Inventory(problem="no NVIDIA driver found (" + "; ".join(why) + ")")
    try:
        return inventory_from_smi(_smi(f"--query-gpu={SMI_QUERY}",
                                       "--format=csv,noheader,nounits"), _smi("-L"))
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        why.append(f"nvidia-smi: {exc}")
        return Inventory(problem="no usable NVIDIA driver (" + "; ".join(why) + ")")


def usage() -> dict[str, dict[str, Any]]:
    """Per device UUID: memory used (bytes) and compute processes [{pid, memory}], from
    NVML, else nvidia-smi; {} when neither answers."""
    try:
        nv = _nvml()
    except Exception:  # noqa: BLE001 - ImportError or NVMLError: try nvidia-smi
        return _usage_from_smi()
    try:
        out = {}
        for d in inventory_from_nvml(nv).devices:
            h = nv.nvmlDeviceGetHandleByUUID(d.uuid)
            procs = [{"pid": p.pid, "memory": p.usedGpuMemory}
                     for p in nv.nvmlDeviceGetComputeRunningProcesses(h)]
            out[d.uuid] = {"memory_used": int(nv.nvmlDeviceGetMemoryInfo(h).used),
                           "processes": procs}
        return out
    except nv.NVMLError:
        return {}
    finally:
        nv.nvmlShutdown()


def _usage_from_smi() -> dict[str, dict[str, Any]]:
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        gpus = _smi("--query-gpu=uuid,memory.used", "--format=csv,noheader,nounits")
        apps = _smi("--query-compute-apps=gpu_uuid,pid,used_memory",
                    "--format=csv,noheader,nounits")
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_smi_usage(gpus, apps)


def parse_smi_usage(gpus: str, apps: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in csv.reader(io.StringIO(gpus), skipinitialspace=True):
        if len(row) == 2 and row[1].strip().isdigit():
            out[row[0].strip()] = {"memory_used": int(row[1]) * MIB, "processes": []}
    for row in csv.reader(io.StringIO(apps), skipinitialspace=True):
        if len(row) == 3 and row[0].strip() in out and row[1].strip().isdigit():
            memory = int(row[2]) * MIB if row[2].strip().isdigit() else None
            out[row[0].strip()]["processes"].append({"pid": int(row[1]), "memory": memory})
    return out


# ---------------------------------------------------------------- enforcement plumbing


def device_allow(allowed: list[str] | tuple[str, ...], proc_devices: str = "/proc/devices"
                 ) -> list[tuple[str, str]]:
    """systemd `DeviceAllow=` entries that keep a scope off every NVIDIA node but ALLOWED.

    Any DeviceAllow= turns the scope's device policy to `closed` (only /dev/null, zero,
    full, random, urandom, tty, ptmx, pts and what is listed). So every character device
    major the kernel has registered that is not NVIDIA's is listed again by name (a
    user's fuse, kvm or sound devices keep working as before), every block device too,
    and of NVIDIA's only the ALLOWED nodes, read-write without mknod.
    """
    entries = [("block-*", "rwm")]
    try:
        lines = Path(proc_devices).read_text().splitlines()
    except OSError:
        lines = []
    section = ""
    for line in lines:
        if line.endswith(":"):
            section = line[:-1].strip().lower()
            continue
        parts = line.split(None, 1)
        if section.startswith("character") and len(parts) == 2:
            name = parts[1].strip()
            # Names with "/" (/dev/tty, /dev/ptmx, ...) are in `closed` already.
            if not name.lower().startswith("nvidia") and "/" not in name and " " not in name:
                entries.append((f"char-{name}", "rwm"))
    entries += [(node, "rw") for node in allowed]
    return list(dict.fromkeys(entries))


# Host libraries a CUDA program loads from the driver (the NVIDIA container toolkit's
# "compute" and "utility" sets), mounted into a container when no toolkit is installed.
DRIVER_LIBRARIES = ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so",
                    "libnvidia-nvvm.so", "libcudadebugger.so", "libnvidia-gpucomp.so")
DRIVER_PROGRAMS = ("nvidia-smi",)


def driver_files(ldconfig_output: str | None = None) -> list[str]:
    """The driver's user-space files on this machine (the libraries' real files and their
    soname links), from `ldconfig -p`, plus nvidia-smi."""
    if ldconfig_output is None:
        try:
            ldconfig_output = subprocess.run(["ldconfig", "-p"], capture_output=True,
                                             text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            ldconfig_output = ""
    found: list[str] = []
    for line in ldconfig_output.splitlines():
        name, _, path = line.strip().partition(" => ")
        # 64-bit only: the "(libc6)" entries on x86-64 are the 32-bit compatibility copies.
        if path and name.startswith(DRIVER_LIBRARIES) and ("x86-64" in name or
                                                           "AArch64" in name):
            found.append(path.strip())
    found += [p for p in (shutil.which(x) for x in DRIVER_PROGRAMS) if p]
    real = [str(Path(p).resolve()) for p in found]
    return sorted({p for p in found + real if Path(p).exists()})


def toolkit_present() -> bool:
    """Whether Docker can hand out GPUs itself (the NVIDIA container toolkit's hook)."""
    return shutil.which("nvidia-container-runtime-hook") is not None


def container_devices(inventory: Inventory, devices: tuple[Device, ...] | list[Device],
                      toolkit: bool | None = None) -> dict[str, Any]:
    """HostConfig entries (and bind mounts, `binds`) giving a container DEVICES only.

    With the toolkit: a device request by UUID, so the toolkit mounts the driver and
    exactly those nodes. Without: the nodes themselves (Docker then allows just those in
    the container's device cgroup) and the driver's files, read-only at their own paths.
    """
    uuids = [d.uuid for d in devices]
    if toolkit is None:
        toolkit = toolkit_present()
    if toolkit:
        return {"DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": uuids,
                                    "Capabilities": [["gpu", "compute", "utility"]]}],
                "binds": []}
    nodes = list(dict.fromkeys([n for d in devices for n in d.nodes]
                               + inventory.shared_nodes()))
    return {"Devices": [{"PathOnHost": n, "PathInContainer": n, "CgroupPermissions": "rw"}
                        for n in nodes],
            "binds": driver_files()}


NVIDIA_MAJOR = 195


def ensure_nodes(inventory: Inventory) -> list[str]:
    """Make each GPU's missing /dev/nvidia<minor> (0666, as nvidia-modprobe makes it); the
    nodes made. The driver makes them lazily at the first CUDA use, and a node that appears
    after a server started would not be covered in its mount namespace."""
    made = []
    for device in inventory.devices:
        node = device.nodes[0]
        m = re.fullmatch(r".*/nvidia(\d+)", node)
        if m and not os.path.lexists(node):
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, int(m.group(1))))
            os.chmod(node, 0o666)
            made.append(node)
    return made
