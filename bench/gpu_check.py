"""GPU check on a real GPU machine: discovery, assignment and enforcement, end to end.

Run by bench/gpu_check.sh as root from the repository root, with only the machine's
python3 (teamhub's GPU modules use the standard library; pynvml is used when installed,
nvidia-smi otherwise) and no network. What it does:

1. Saves the driver's own answers (nvidia-smi CSV and -L, /proc/devices, the driver's
   /proc entries) to OUT, so they can become recorded test fixtures, and runs teamhub's
   discovery (NVML, and the nvidia-smi parser on the saved output: both must agree).
2. Two throw-away Linux users ask for one exclusive GPU each at the same moment through
   teamhub's allocation record (two threads on the real lock). With two or more GPUs both
   get one, never the same; with one GPU one gets it and the other is refused (GpusBusy)
   and starts with none.
3. Each user's "server" is started through teamhub's sandbox launcher with the placement
   teamhub computes (CUDA_VISIBLE_DEVICES, other nodes covered, other GPUs' /proc entries
   masked); both run at once. Inside, as that user: which nodes open, what CUDA (libcuda
   through ctypes) sees with the variable as given and with it removed, a 256 MiB
   allocation on each visible device, and `nvidia-smi -L`.
4. While both hold their memory, the holdings and NVML's per-device usage are printed as
   `teamhub gpu status` shows them; then the first user's devices are released and the
   other user can take one.

Prints PASS/FAIL lines and writes OUT/report.json; exits 1 if any check failed.
GPU_CHECK_FAKE=1 runs the same flow on fake device nodes (no GPU, CUDA parts skipped):
how it was tried on a machine without a GPU.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from teamhub import gpus
from teamhub.errors import GpusBusy
from teamhub.gpu_allocations import Allocations
from teamhub.system import gpus as discovery
from teamhub.system.namespaces import ensure_cover
from teamhub.system.sandbox import LaunchSpec, current_rlimits

PROBE = r'''
import ctypes, errno, json, os, subprocess, sys, time
out, nodes, marker = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
r = {"uid": os.getuid(), "env": os.environ.get("CUDA_VISIBLE_DEVICES"), "open": {}}
for node in nodes:
    try:
        os.close(os.open(node, os.O_RDWR))
        r["open"][node] = "opened"
    except OSError as exc:
        r["open"][node] = errno.errorcode.get(exc.errno, str(exc.errno))

def cuda(alloc):
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return {"error": f"no libcuda: {exc}"}
    rc = cu.cuInit(0)
    if rc:
        return {"init": rc}
    n = ctypes.c_int()
    cu.cuDeviceGetCount(ctypes.byref(n))
    seen = []
    for i in range(n.value):
        dev, raw = ctypes.c_int(), (ctypes.c_ubyte * 16)()
        cu.cuDeviceGet(ctypes.byref(dev), i)
        cu.cuDeviceGetUuid(raw, dev)
        h = bytes(raw).hex()
        d = {"uuid": f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"}
        if alloc:
            ctx, ptr = ctypes.c_void_p(), ctypes.c_uint64()
            d["ctx"] = cu.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev)
            d["alloc_256MiB"] = cu.cuMemAlloc_v2(ctypes.byref(ptr), 256 << 20)
        seen.append(d)
    return {"init": 0, "devices": seen}

if os.environ.get("GPU_CHECK_FAKE") != "1":
    r["cuda"] = cuda(alloc=True)
    # What a kernel that resets the variable reaches: a child without it.
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    count = ("import ctypes, json; cu = ctypes.CDLL('libcuda.so.1'); rc = cu.cuInit(0); "
             "n = ctypes.c_int(); cu.cuDeviceGetCount(ctypes.byref(n)); "
             "print(json.dumps({'init': rc, 'count': n.value}))")
    child = subprocess.run([sys.executable, "-c", count], env=env, capture_output=True,
                           text=True, timeout=120)
    r["cuda_without_variable"] = child.stdout.strip() or child.stderr.strip()[-300:]
    smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=120)
    r["nvidia_smi_L"] = (smi.stdout + smi.stderr).strip()
with open(out, "w") as f:
    json.dump(r, f)
open(out + ".ready", "w").close()
deadline = time.time() + 120
while not os.path.exists(marker) and time.time() < deadline:
    time.sleep(0.2)
'''

RESULTS: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> None:
    RESULTS.append((ok, what))
    print(("PASS " if ok else "FAIL ") + what, flush=True)


def save_driver_answers(out: Path) -> None:
    for name, cmd in (("nvidia-smi-query.csv", ["nvidia-smi", f"--query-gpu={discovery.SMI_QUERY}",
                                                "--format=csv,noheader,nounits"]),
                      ("nvidia-smi-L.txt", ["nvidia-smi", "-L"])):
        if shutil.which(cmd[0]):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            (out / name).write_text(proc.stdout + proc.stderr)
    for src, name in (("/proc/devices", "proc-devices.txt"),
                      ("/proc/driver/nvidia-caps/mig-minors", "mig-minors.txt")):
        if os.path.exists(src):
            shutil.copy(src, out / name)
    for info in Path("/proc/driver/nvidia/gpus").glob("*/information"):
        shutil.copy(info, out / f"information-{info.parent.name}.txt")


def fake_inventory(root: Path) -> discovery.Inventory:
    """Two fake GPUs (NVIDIA-major nodes under ROOT), for trying the flow without a GPU."""
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)):
        os.mknod(root / name, 0o666 | stat.S_IFCHR, os.makedev(discovery.NVIDIA_MAJOR, minor))
        os.chmod(root / name, 0o666)
    (root / "gpus").mkdir()
    devices = []
    for i in range(2):
        bus = f"0000:{0x18 + i:02x}:00.0"
        (root / "gpus" / bus).mkdir()
        devices.append(discovery.Device(str(i), f"GPU-{i:08d}-0000-0000-0000-000000000000",
                                        "fake", 1 << 30, (f"{root}/nvidia{i}",), pci_bus_id=bus))
    os.chmod(root / "gpus", 0o755)
    return discovery.Inventory(tuple(devices), "fake", dev=str(root), proc_gpus=str(root / "gpus"))


def make_users() -> list[pwd.struct_passwd]:
    names = [f"gpuchk{os.getpid() % 10000}{c}" for c in "ab"]
    for name in names:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/false", name],
                       check=True)
    return [pwd.getpwnam(n) for n in names]


def launch(account: pwd.struct_passwd, place: gpus.Placement, inv: discovery.Inventory,
           work: Path, fake: bool) -> tuple[subprocess.Popen, Path]:
    out = work / f"{account.pw_name}.json"
    nodes = ",".join(inv.all_nodes() + inv.shared_nodes())
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **place.env()}
    if fake:
        env["GPU_CHECK_FAKE"] = "1"
    spec = LaunchSpec(argv=[sys.executable, "-c", PROBE, str(out), nodes, str(work / "release")],
                      env=env, cwd="/", username=account.pw_name, uid=account.pw_uid,
                      gid=account.pw_gid, rlimits=current_rlimits(),
                      devices=place.mounts_spec(ensure_cover(str(work / "cover"))))
    launcher = subprocess.Popen([sys.executable, "-m", "teamhub.system.sandbox"],
                                stdin=subprocess.PIPE, env={"PATH": env["PATH"],
                                                            "PYTHONPATH": os.environ["PYTHONPATH"]})
    assert launcher.stdin is not None
    launcher.stdin.write(spec.to_json())
    launcher.stdin.close()
    return launcher, out


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-check-out")
    out.mkdir(parents=True, exist_ok=True)
    fake = os.environ.get("GPU_CHECK_FAKE") == "1"
    if os.geteuid() != 0:
        print("FAIL the check makes users and mount namespaces: run it as root")
        return 1
    work = Path(tempfile.mkdtemp(prefix="teamhub-gpu-check-"))
    os.chmod(work, 0o1777)
    report: dict = {}
    users: list[pwd.struct_passwd] = []
    try:
        if fake:
            inv = fake_inventory(work)
        else:
            save_driver_answers(out)
            inv = discovery.discover()
            print(f"discovery ({inv.source}): {inv.problem}")
            if inv.source == "nvml" and (out / "nvidia-smi-query.csv").exists():
                parsed = discovery.inventory_from_smi((out / "nvidia-smi-query.csv").read_text(),
                                                      (out / "nvidia-smi-L.txt").read_text())
                check([d.uuid for d in parsed.devices] == [d.uuid for d in inv.devices],
                      "the nvidia-smi parser finds the same devices as NVML")
            discovery.ensure_nodes(inv)
        for d in inv.devices:
            print(f"  {d.index} {d.uuid} {d.name} {d.memory_total >> 20} MiB nodes={d.nodes}")
        report["devices"] = [d.as_dict() for d in inv.devices]
        check(bool(inv.devices), f"discovery found {len(inv.devices)} device(s)")
        if not inv.devices:
            return 1
        users = make_users()
        record = Allocations(work / "state" / "gpu-allocations.json")
        taken: dict[str, list] = {}
        gate = threading.Barrier(2)

        def take(name: str) -> None:
            gate.wait()
            try:
                taken[name] = record.take(name, "", gpus.parse("1"), inv.devices, os.getpid())
            except GpusBusy as exc:
                print(f"  {name}: refused: {exc}")
                taken[name] = []

        threads = [threading.Thread(target=take, args=(u.pw_name,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = [d.uuid for u in users for d in taken[u.pw_name]]
        expect = min(2, len(inv.devices))
        check(len(got) == expect and len(set(got)) == len(got),
              f"two simultaneous starts: {expect} exclusive device(s) handed out, none twice "
              f"({got})")
        procs = []
        for u in users:
            place = gpus.placement(inv, taken[u.pw_name])
            procs.append((u, *launch(u, place, inv, work, fake)))
        deadline = time.time() + 180
        while time.time() < deadline and not all(Path(f"{o}.ready").exists() for _, _, o in procs):
            time.sleep(0.2)
        usage = discovery.usage() if not fake else {}
        report["status"] = [{"uuid": d.uuid, "holders": [h.holder for h in record.holdings()
                                                         if h.uuid == d.uuid],
                             **usage.get(d.uuid, {})} for d in inv.devices]
        print("gpu status while both run:", json.dumps(report["status"], indent=1))
        (work / "release").touch()
        for u, launcher, o in procs:
            launcher.wait(timeout=180)
            seen = json.loads(o.read_text()) if o.exists() else {}
            report[u.pw_name] = seen
            mine = {d.uuid for d in taken[u.pw_name]}
            own_nodes = {n for d in taken[u.pw_name] for n in d.nodes}
            others = [n for n in inv.all_nodes() if n not in own_nodes]
            check(all(seen.get("open", {}).get(n) == "EACCES" for n in others),
                  f"{u.pw_name}: cannot open the other devices' nodes {others}")
            if fake:
                continue
            cuda = seen.get("cuda", {})
            uuids = {d["uuid"] for d in cuda.get("devices", [])}
            check(uuids == mine, f"{u.pw_name}: CUDA sees exactly its own {sorted(mine)} "
                                 f"(saw {sorted(uuids)}, init {cuda.get('init')})")
            check(all(d.get("alloc_256MiB") == 0 for d in cuda.get("devices", [])),
                  f"{u.pw_name}: 256 MiB allocated on its device(s)")
            without = seen.get("cuda_without_variable", "")
            try:
                count = json.loads(without).get("count")
            except ValueError:
                count = None
            check(count == len(mine), f"{u.pw_name}: without CUDA_VISIBLE_DEVICES still "
                                      f"{len(mine)} device(s) ({without})")
            print(f"  {u.pw_name} nvidia-smi -L: {seen.get('nvidia_smi_L')}")
        first, second = users
        released = record.release(first.pw_name)
        again = record.take(second.pw_name, "", gpus.parse("1"), inv.devices, os.getpid())
        check(bool(released) and bool(again),
              f"after {first.pw_name}'s release, {second.pw_name} can take a device "
              f"({[d.uuid for d in again]})")
    finally:
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
        for u in users:
            subprocess.run(["userdel", u.pw_name], check=False)
        shutil.rmtree(work, ignore_errors=True)
    failed = [w for ok, w in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
