"""teamhub.system.usage against the real kernel files: /proc, cgroups, the disk."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from teamhub.system import usage

BURN = "import time\nx = bytearray(32 << 20)\nwhile True: pass\n"


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    """A child process that burns CPU (and holds 32 MiB)."""
    proc = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def rising(read, key_of, deadline_s: float = 60) -> tuple[float, float]:  # noqa: ANN001
    """Two values of KEY_OF(READ()) a while apart, the second larger (waits for it)."""
    first = key_of(read())
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        time.sleep(0.2)
        later = key_of(read())
        if later > first:
            return first, later
    raise AssertionError(f"{first} did not rise in {deadline_s}s")


def test_a_busy_process_tree_shows_rising_cpu_time_and_its_memory(burner) -> None:  # noqa: ANN001
    target = usage.Target(pid=burner.pid)
    reading = usage.read_target(target)
    assert reading.source == usage.PROCESSES
    assert [k for k in reading.counters if k.startswith(f"pid:{burner.pid}:")]
    rising(lambda: usage.read_target(target), lambda r: sum(r.counters.values()))
    # PSS of the touched 32 MiB buffer (it is zero-filled, so touched) and the interpreter.
    end = time.monotonic() + 30
    while usage.read_target(target).memory < 32 << 20 and time.monotonic() < end:
        time.sleep(0.1)
    assert usage.read_target(target).memory >= 32 << 20


def test_the_cpu_meter_turns_counters_into_cpus_in_use(burner) -> None:  # noqa: ANN001
    meter = usage.CpuMeter()
    target = usage.Target(pid=burner.pid)
    assert meter.update(usage.read_target(target).counters) is None  # nothing to compare yet
    end = time.monotonic() + 60
    cpus = 0.0
    while not cpus and time.monotonic() < end:
        time.sleep(0.5)
        cpus = meter.update(usage.read_target(target).counters) or 0.0
    assert 0 < cpus <= (os.cpu_count() or 1) + 0.5
    # A source that went away does not count; one that appeared counts from zero.
    assert meter.update({"new": 1.0}, now=time.monotonic() + 1) == pytest.approx(1.0, rel=0.1)


def test_an_accounts_processes_are_counted_when_there_is_no_cgroup_of_its_own() -> None:
    # `nobody` runs a burner; the target names a scope that does not exist here.
    proc = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             sys.executable, "-c", BURN])
    try:
        target = usage.Target(pid=proc.pid, marker="teamhub-user-nosuch.scope",
                              account="nobody")
        end = time.monotonic() + 30
        while not usage.account_pids(65534) and time.monotonic() < end:
            time.sleep(0.05)
        reading = usage.read_target(target)
        assert reading.source == usage.PROCESSES
        mine = lambda r: next((v for k, v in r.counters.items()  # noqa: E731
                               if k.startswith(f"pid:{proc.pid}:")), 0.0)
        rising(lambda: usage.read_target(target), mine)
        # The same from one table of every account's processes (the sampler's way).
        assert mine(usage.read_target(target, usage.processes_by_uid())) > 0
    finally:
        proc.kill()
        proc.wait()


def _make_cgroup(name: str) -> list[Path]:
    """A fresh cgroup NAME in each hierarchy that counts CPU time or memory (v1: cpuacct
    and memory; v2: the unified one); [] where this machine will not let us."""
    root = Path("/sys/fs/cgroup")
    candidates = ([root] if (root / "cgroup.controllers").exists()
                  else [root / "cpuacct", root / "memory"])
    made = []
    for parent in candidates:
        try:
            (parent / name).mkdir()
        except OSError:
            continue
        made.append(parent / name)
    return made


def test_a_processes_own_cgroup_is_read_from_the_kernels_counters(burner) -> None:  # noqa: ANN001
    name = f"teamhub-user-t{secrets.token_hex(3)}.scope"
    folders = _make_cgroup(name)
    if not folders:
        pytest.skip("this machine lets no one make cgroups (read-only cgroup mounts)")
    try:
        for folder in folders:
            (folder / "cgroup.procs").write_text(str(burner.pid))
        assert usage.own_cgroup(burner.pid, name)
        target = usage.Target(pid=burner.pid, marker=name)
        reading = usage.read_target(target)
        assert reading.source == usage.CGROUP
        assert len(reading.counters) == 1 and next(iter(reading.counters)).startswith("cgroup:")
        first, later = rising(lambda: usage.read_target(target),
                              lambda r: sum(r.counters.values()))
        assert later > first >= 0
        # Memory is charged from the move on, so it shows what the burner touches next.
        assert reading.memory >= 0
        # Another marker is not this cgroup: the process tree is counted instead.
        assert usage.read_target(usage.Target(pid=burner.pid, marker="other")).source \
            == usage.PROCESSES
    finally:
        burner.kill()
        burner.wait()
        for folder in folders:
            end = time.monotonic() + 10
            while time.monotonic() < end:
                try:
                    folder.rmdir()
                    break
                except OSError:  # the killed process leaves it a moment later
                    time.sleep(0.05)


def test_the_machine_reading_sees_busy_cpus_and_memory(burner) -> None:  # noqa: ANN001
    first = usage.machine_reading()
    assert 0 < first.memory_used < first.memory_total
    assert first.cpus == os.cpu_count()
    end = time.monotonic() + 60
    cpus = None
    while not cpus and time.monotonic() < end:
        time.sleep(0.5)
        cpus = usage.machine_cpus(first, usage.machine_reading())
    assert cpus is not None and 0 < cpus <= first.cpus


def test_disk_use_counts_blocks_once_per_file_and_never_follows_links(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    data = tmp_path / "sub" / "data"
    data.write_bytes(os.urandom(1 << 20))
    os.link(data, tmp_path / "again")
    (tmp_path / "link").symlink_to("/usr")
    total = usage.disk_use(tmp_path)
    assert 1 << 20 <= total < (1 << 20) + 64 * 1024
    assert usage.disk_use(tmp_path / "missing") == 0


GROW = "import sys, time\nsys.stdin.readline()\nx = bytearray(64 << 20)\nprint(1, flush=True)\n" \
       "time.sleep(600)\n"
SPIN = "import sys, time\nsys.stdin.readline()\nx = bytearray(64 << 20)\nprint(1, flush=True)\n" \
       "end = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n" \
       "print(2, flush=True)\ntime.sleep(600)\n"


@contextlib.contextmanager
def _grow(program: str) -> Iterator[tuple[subprocess.Popen[bytes], Callable[[], bytes]]]:
    proc = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def go() -> bytes:
        stdin.write(b"\n")
        stdin.flush()
        return stdout.readline()

    try:
        yield proc, go
    finally:
        proc.kill()
        proc.wait()


def test_an_idle_processs_memory_is_kept_until_it_is_old() -> None:
    with _grow(GROW) as (proc, go):
        kept, fresh = usage.MemoryCache(max_age=3600), usage.MemoryCache(max_age=0)
        before = usage.processes_reading([proc.pid], kept).memory
        go()  # the 64 MiB are touched now, with little CPU
        assert usage.processes_reading([proc.pid], fresh).memory >= before + (60 << 20)
        assert usage.processes_reading([proc.pid], kept).memory == before
        kept.forget_unseen()  # it was asked about since: still kept
        assert usage.processes_reading([proc.pid], kept).memory == before
        kept.forget_unseen()
        kept.forget_unseen()  # not asked about in between: forgotten, so read anew
        assert usage.processes_reading([proc.pid], kept).memory >= before + (60 << 20)


def test_a_process_that_ran_since_is_read_again() -> None:
    with _grow(SPIN) as (proc, go):
        kept = usage.MemoryCache(max_age=3600, cpu_step=0.1)
        before = usage.processes_reading([proc.pid], kept).memory
        go()
        assert proc.stdout is not None and proc.stdout.readline() == b"2\n"  # 0.5 s of CPU
        assert usage.processes_reading([proc.pid], kept).memory >= before + (60 << 20)
