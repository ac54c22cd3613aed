"""Warm parents ahead of the notebook and gone when unused (teamhub.envs.warm_ahead,
teamhub.envs.recent_kernels, WarmParents.expire); the whole path through a real hub is in
tests/hub/test_warm_kernels.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpec, NoSuchKernel

from teamhub.envs import recent_kernels, warm_ahead, warm_kernels
from teamhub.envs.kernels import LAUNCHER
from teamhub.envs.warm_ahead import HINTED, WarmAhead, cpu_times, spare_cores
from teamhub.envs.warm_kernels import (
    HINTED_IDLE_EXIT,
    ForkedChild,
    WarmParent,
    WarmParents,
)


def test_the_last_started_kernel_comes_first(tmp_path: Path) -> None:
    path = tmp_path / "teamhub" / "recent-kernels.json"
    assert recent_kernels.recent(path) == []
    for name in ("python3", "env-a", "env-b", "env-a"):
        assert recent_kernels.remember(name, path)
    assert recent_kernels.recent(path) == ["env-a", "env-b", "python3"]
    assert json.loads(path.read_text()) == ["env-a", "env-b", "python3"]
    assert [p.name for p in path.parent.iterdir()] == ["recent-kernels.json"]  # no temp left


def test_only_the_last_few_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "recent.json"
    for i in range(recent_kernels.KEPT + 3):
        recent_kernels.remember(f"env-{i}", path)
    names = recent_kernels.recent(path)
    assert len(names) == recent_kernels.KEPT
    assert names[0] == f"env-{recent_kernels.KEPT + 2}"


@pytest.mark.parametrize("text", ["{not json", '{"a": 1}', '[1, "", "env-a"]', ""])
def test_a_damaged_file_is_no_history(tmp_path: Path, text: str) -> None:
    path = tmp_path / "recent.json"
    path.write_text(text)
    assert recent_kernels.recent(path) in ([], ["env-a"])
    assert recent_kernels.remember("python3", path)
    assert recent_kernels.recent(path)[0] == "python3"


def test_an_unwritable_folder_is_not_an_error(tmp_path: Path) -> None:
    # A file where the folder should be: fails for root too.
    (tmp_path / "teamhub").write_text("")
    assert recent_kernels.remember("python3", tmp_path / "teamhub" / "r.json") is False


def test_idle_cpu_is_read_from_the_machines_counters(tmp_path: Path) -> None:
    real = cpu_times()
    assert real is not None and 0 <= real[0] <= real[1]
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert cpu_times(str(stat)) == (840, 1000)
    assert cpu_times(str(tmp_path / "missing")) is None
    stat.write_text("intr 1 2 3\n")
    assert cpu_times(str(stat)) is None


def test_spare_cores_between_two_samples() -> None:
    assert spare_cores((800, 1000), (1100, 1400), 4) == pytest.approx(3.0)
    assert spare_cores((800, 1000), (800, 1400), 2) == 0.0  # all busy
    assert spare_cores(None, (1, 2), 2) == 0.0
    assert spare_cores((5, 10), (5, 10), 2) == 0.0  # no time passed: unknown


def _parent(tmp_path: Path, **kw: object) -> WarmParent:
    """A stand-in parent: a real child of this process, so that stopping it can be seen."""
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    return WarmParent(f"k{pid}", str(tmp_path / "none.sock"), (), ForkedChild(pid), **kw)


def _ended(proc: ForkedChild) -> int | None:
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.returncode


def test_a_parent_unused_for_idle_seconds_is_stopped(tmp_path: Path) -> None:
    parents = WarmParents(str(tmp_path))
    idle, fresh, kept = (_parent(tmp_path), _parent(tmp_path), _parent(tmp_path, keep=True))
    idle.last_used = kept.last_used = time.monotonic() - 100
    for p in (idle, fresh, kept):
        parents.parents[p.key] = p
    try:
        assert parents.expire(60) == [idle.key]
        assert _ended(idle.proc) == -signal.SIGTERM  # it had no socket yet: terminated
        assert set(parents.parents) == {fresh.key, kept.key}
        assert fresh.alive() and kept.alive()
        # A front end listing the kernels counts as use.
        fresh.last_used = time.monotonic() - 100
        parents.touch()
        assert parents.expire(60) == []
    finally:
        for p in (fresh, kept):
            p.proc.terminate()
            _ended(p.proc)


def test_a_parent_with_a_running_kernel_stays(tmp_path: Path) -> None:
    parents = WarmParents(str(tmp_path))
    parent = _parent(tmp_path)
    parent.last_used = time.monotonic() - 100
    parents.parents[parent.key] = parent
    # Its kernel: what the parent uses of one is poll() (a real process here).
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    parent.kernels.append(kernel)  # type: ignore[arg-type]
    try:
        assert parents.expire(60) == []
        assert parent.last_used > time.monotonic() - 5  # in use until now
        kernel.terminate()
        kernel.wait()
        parent.last_used = time.monotonic() - 100
        assert parents.expire(60) == [parent.key]
        assert parent.kernels == []
    finally:
        kernel.kill()
        kernel.wait()
        parent.proc.terminate()
        assert _ended(parent.proc) == -signal.SIGTERM


def test_a_hinted_parent_is_not_kept_by_listings_and_goes_sooner(tmp_path: Path) -> None:
    parents = WarmParents(str(tmp_path))
    hinted, listed = _parent(tmp_path, hinted=True), _parent(tmp_path)
    for p in (hinted, listed):
        p.last_used = time.monotonic() - HINTED_IDLE_EXIT - 1
        parents.parents[p.key] = p
    try:
        assert parents.hinted() == 1
        parents.touch()  # an open JupyterLab keeps its recent kernels' parents, not this
        assert parents.expire(600) == [hinted.key]
        assert _ended(hinted.proc) == -signal.SIGTERM
        assert listed.alive() and parents.hinted() == 0
    finally:
        listed.proc.terminate()
        _ended(listed.proc)


class _Specs:
    """The kernel spec manager's one call used here, on KernelSpecs made in the test."""

    def __init__(self, specs: dict[str, KernelSpec]) -> None:
        self.specs = specs

    def get_kernel_spec(self, name: str) -> KernelSpec:
        if name not in self.specs:
            raise NoSuchKernel(name)
        return self.specs[name]


class _Server:
    def __init__(self, specs: dict[str, KernelSpec], default: str) -> None:
        self.kernel_spec_manager = _Specs(specs)
        self.kernel_manager = type("KM", (), {"default_kernel_name": default})()
        self.log = warm_kernels.log


def _launcher_spec(name: str) -> KernelSpec:
    # The env variable makes each kernel's parent its own (parent_key).
    return KernelSpec(argv=[sys.executable, LAUNCHER, "-f", "{connection_file}"],
                      display_name=name, language="python", env={"TEAMHUB_TEST_ENV": name})


@pytest.fixture
def own_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """This process's parents() in TMP_PATH, each started one stopped afterwards."""
    parents = WarmParents(str(tmp_path))
    monkeypatch.setattr(warm_kernels, "_parents", parents)
    yield parents
    for parent in parents.parents.values():
        parent.proc.terminate()
        parent.proc.wait(10)


def test_a_hint_starts_the_kernels_parent_at_most_hinted_at_once(
        own_parents: WarmParents) -> None:
    names = [f"env-{i}" for i in range(HINTED + 1)]
    server = _Server({n: _launcher_spec(n) for n in names}, names[0])
    ahead = WarmAhead(server, 600)
    for name in names[:HINTED]:
        assert ahead.intended(name) is True
        assert ahead.intended(name) is True  # running: nothing more starts
    assert own_parents.hinted() == HINTED and len(own_parents.parents) == HINTED
    assert ahead.intended(names[HINTED]) is False  # the user has not used those yet
    assert len(own_parents.parents) == HINTED
    # Once a hinted parent has forked a kernel, it no longer counts against the cap.
    next(iter(own_parents.parents.values())).hinted = False
    assert ahead.intended(names[HINTED]) is True
    assert len(own_parents.parents) == HINTED + 1
    # Real parents (warm_parent.py under this interpreter): each one comes up.
    for parent in own_parents.parents.values():
        assert asyncio.run(parent.ready(60)), parent.key
    with pytest.raises(KeyError):
        ahead.intended("no-such-kernel")
    # Wanted after all (the user's recent kernels, as a listing finds them): a listing
    # keeps it from then on.
    last = warm_kernels.kernel_command(server, names[HINTED])
    assert own_parents.parents[warm_kernels.parent_key(last[0], 1, last[1])].hinted
    assert own_parents.prewarm(*last)
    assert own_parents.hinted() == HINTED - 1


def test_kernels_without_a_parent_take_no_place_ahead(
        own_parents: WarmParents, monkeypatch: pytest.MonkeyPatch) -> None:
    other = KernelSpec(argv=["/usr/bin/env", "bash-kernel", "{connection_file}"],
                       display_name="Bash", language="bash")
    server = _Server({"bash": other, "env-a": _launcher_spec("env-a"),
                      "python3": _launcher_spec("python3")}, "python3")
    monkeypatch.setattr(recent_kernels, "recent", lambda: ["bash", "gone", "env-a"])
    wanted = WarmAhead(server, 600).wanted()
    # bash has no parent and the removed env has no spec: both places go to the next.
    assert [env["TEAMHUB_TEST_ENV"] for _, env in wanted] == ["env-a", "python3"]
    assert warm_ahead.AHEAD == 2
