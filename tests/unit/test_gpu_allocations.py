"""Who holds which GPU: exclusive vs shared, all-or-nothing, concurrent starts on the real
lock (threads and processes), release, crash and rebuild.

The devices are a fixture list: this machine has no GPU. Everything else is real: the
record file, its flock, and live or ended processes as witnesses.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from teamhub import gpus
from teamhub.errors import GpusBusy
from teamhub.gpu_allocations import Allocations, process_start
from teamhub.system.gpus import Device

GIB = 1024**3
DEVICES = [Device(str(i), f"GPU-{i:08d}-0000-0000-0000-000000000000", "NVIDIA H200", 141 * GIB,
                  (f"/dev/nvidia{i}",)) for i in range(4)]
MIG = Device("4:0", "MIG-00000000-0000-0000-0000-000000000004", "A100 MIG 1g.10gb", 10 * GIB,
             ("/dev/nvidia4",), parent_uuid="GPU-4")
ME = os.getpid()

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the record's lock is root-only")


@pytest.fixture
def record(tmp_path: Path) -> Allocations:
    return Allocations(tmp_path / "state" / "gpu-allocations.json", lock_timeout=60)


def take(record: Allocations, holder: str, value: str, devices=DEVICES, server: str = "",
         witness: int = ME) -> list[str]:
    return [d.uuid for d in record.take(holder, server, gpus.parse(value), devices, witness)]


def test_exclusive_devices_go_to_one_holder(record: Allocations) -> None:
    ada = take(record, "ada", "1")
    bob = take(record, "bob", "2")
    assert len(ada) == 1 and len(bob) == 2 and not set(ada) & set(bob)
    with pytest.raises(GpusBusy) as err:
        take(record, "cy", "2")
    assert (err.value.needed, err.value.free) == (2, 1)
    assert sorted(n for names in err.value.holders.values() for n in names) == \
        ["ada", "bob", "bob"]
    # Nothing half-held: cy has nothing, and the free device is still free.
    assert {h.holder for h in record.holdings()} == {"ada", "bob"}
    assert take(record, "cy", "1") == [DEVICES[3].uuid]


def test_shared_and_all_never_touch_exclusive_devices(record: Allocations) -> None:
    ada = take(record, "ada", "1")
    everyone = take(record, "bob", "all")
    assert everyone == [d.uuid for d in DEVICES if d.uuid not in ada]
    # Shared requests spread over the least shared devices.
    assert take(record, "cy", "shared:1") == [DEVICES[1].uuid]
    assert take(record, "dee", "shared:2") == [DEVICES[2].uuid, DEVICES[3].uuid]
    # An exclusive request needs a device nobody uses, shared or not.
    with pytest.raises(GpusBusy):
        take(record, "eve", "1")


def test_lists_by_index_or_uuid(record: Allocations) -> None:
    assert take(record, "ada", f"0,{DEVICES[2].uuid}") == [DEVICES[0].uuid, DEVICES[2].uuid]
    with pytest.raises(GpusBusy, match=r"GPU 2 \(GPU-00000002.*\): ada"):
        take(record, "bob", "2,3")
    assert take(record, "bob", "shared:3,") == [DEVICES[3].uuid]
    assert take(record, "cy", "shared:3,") == [DEVICES[3].uuid]


def test_whole_gpus_before_mig_slices(record: Allocations) -> None:
    devices = [MIG, *DEVICES[:1]]
    assert take(record, "ada", "1", devices) == [DEVICES[0].uuid]
    assert take(record, "bob", "1", devices) == [MIG.uuid]


def test_restart_replaces_and_release_gives_back(record: Allocations) -> None:
    first = take(record, "ada", "2")
    again = take(record, "ada", "2")  # the same server started again: not four devices
    assert len(record.holdings()) == 2 and set(first) == set(again)
    take(record, "ada", "1", server="big")
    assert record.release("ada", "") == again
    assert [h.server for h in record.holdings()] == ["big"]
    assert len(record.release("ada")) == 1
    assert record.holdings() == []


def test_release_of_an_old_start_keeps_a_new_one(record: Allocations) -> None:
    old = record.take("ada", "", gpus.parse("1"), DEVICES, ME, since=1.0)
    record.take("ada", "", gpus.parse("1"), DEVICES, ME, since=2.0)
    assert record.release("ada", "", since=1.0) == []
    assert [h.uuid for h in record.holdings()] == [old[0].uuid]


def test_crash_releases_and_restart_rebuilds(record: Allocations) -> None:
    server = subprocess.Popen(["sleep", "300"])
    try:
        uuids = take(record, "ada", "2")
        record.attach("ada", "", server.pid)
        assert {h.pid for h in record.holdings()} == {server.pid}
        # The hub restarts and the record is lost: re-adopting the running server (its
        # devices are in its spawner state) records them again.
        record.path.unlink()
        record.adopt("ada", "", uuids, False, server.pid, 5.0)
        assert sorted(h.uuid for h in record.holdings()) == sorted(uuids)
        with pytest.raises(GpusBusy):
            take(record, "bob", "3")
    finally:
        server.kill()
        server.wait()
    # The server died and nobody told: its devices are free again.
    assert record.holdings() == []
    assert len(take(record, "bob", "4")) == 4


def test_a_stale_witness_is_not_a_holder(record: Allocations) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert process_start(dead.pid) is None
    with pytest.raises(ValueError, match="not running"):
        take(record, "ada", "1", witness=dead.pid)


def test_concurrent_starts_in_threads_get_different_devices(record: Allocations) -> None:
    got: dict[str, list[str]] = {}
    errors: list[Exception] = []
    start = threading.Barrier(6)

    def one(name: str) -> None:
        start.wait()
        try:
            got[name] = take(record, name, "1")
        except GpusBusy as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(f"user{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and len(errors) == 2
    assert len({u for uuids in got.values() for u in uuids}) == 4


def _take_in_process(path: str, name: str, witness: int, out) -> None:
    record = Allocations(Path(path), lock_timeout=60)
    try:
        out.put((name, take(record, name, "2", witness=witness)))
    except GpusBusy:
        out.put((name, None))


def test_concurrent_starts_in_processes_get_different_devices(record: Allocations) -> None:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_take_in_process, args=(str(record.path), f"u{i}", ME, out))
             for i in range(4)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join()
    winners = {name: uuids for name, uuids in results.items() if uuids}
    assert len(winners) == 2
    assert len({u for uuids in winners.values() for u in uuids}) == 4
    assert {h.holder for h in record.holdings()} == set(winners)


def test_status_report_names_holders(tmp_path: Path) -> None:
    from teamhub.gpu_report import holdings_report
    from teamhub.paths import Paths
    from teamhub.system.gpus import Inventory

    paths = Paths(config_file=tmp_path / "t.toml", state_dir=tmp_path / "state",
                  runtime_dir=tmp_path / "rt", home_root=tmp_path / "home")
    paths.state_dir.mkdir()
    record = Allocations(paths.gpu_allocations)
    take(record, "ada", "1")
    take(record, "bob", "shared:1")
    report = holdings_report(paths, Inventory(tuple(DEVICES[:2]), "fixture"), with_usage=False)
    assert [[(h["user"], h["shared"]) for h in d["holders"]] for d in report] == [
        [("ada", False)], [("bob", True)]]
    assert report[0]["uuid"] == DEVICES[0].uuid and report[0]["holders"][0]["since"]


def test_an_unprivileged_hubs_record_stays_its_own() -> None:
    """In the state folder of an unprivileged hub (hub.unprivileged), the hub's account's:
    the hub takes and reads the record as that account, and root (the CLI, e.g. `teamhub
    gpu status`) writing it leaves record, lock and lock folder that account's."""
    root = Path(tempfile.mkdtemp(prefix="teamhub-gpurec-", dir="/tmp"))
    try:
        root.chmod(0o755)  # the account must reach its state folder
        state = root / "state"
        state.mkdir(mode=0o700)
        nobody = 65534
        os.chown(state, nobody, nobody)
        record = Allocations(state / "gpu_allocations.json")
        take(record, "ann", "1")  # as root: the CLI
        owned = [state / "gpu_allocations.json", state / "locks", state / "locks" / "gpus.lock"]
        assert [(p.stat().st_uid, p.stat().st_mode & 0o777) for p in owned] == [
            (nobody, 0o600), (nobody, 0o700), (nobody, 0o600)]
        # The hub's account itself (a child that drops to it) reads, takes and releases.
        script = (f"import os; os.setgroups([]); os.setgid({nobody}); os.setuid({nobody}); "
                  "from pathlib import Path; from teamhub.gpu_allocations import Allocations; "
                  f"r = Allocations(Path({str(state / 'gpu_allocations.json')!r})); "
                  "print(sorted(h.holder for h in r.holdings())); r.release('ann')")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                              cwd="/")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['ann']"
        assert record.holdings() == []
    finally:
        shutil.rmtree(root)
