"""`teamhub restart`'s hand-over to a foreground `teamhub up`, without a hub."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from teamhub.cli.restart import wait_for_new_hub
from teamhub.cli.up import restart_requested
from teamhub.errors import TeamhubError
from teamhub.paths import Paths


def paths(tmp_path: Path) -> Paths:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return Paths(config_file=tmp_path / "t.toml", state_dir=state, runtime_dir=tmp_path,
                 home_root=tmp_path)


def test_a_request_is_for_the_pid_it_names_and_is_used_up(tmp_path: Path) -> None:
    p = paths(tmp_path)
    assert not restart_requested(p)
    p.restart_request.write_text(f"{os.getpid() + 1}\n")
    assert not restart_requested(p)  # another process's request: not ours
    assert not p.restart_request.exists()
    p.restart_request.write_text(f"{os.getpid()}\n")
    assert restart_requested(p)
    assert not p.restart_request.exists()


def test_waiting_stops_at_once_when_the_foreground_hub_ended(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(TeamhubError, match=f"the hub \\(pid {gone.pid}\\) stopped but did not "
                                           "start again"):
        wait_for_new_hub(paths(tmp_path), "old", gone.pid, timeout=30)


def test_waiting_gives_up_after_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(TeamhubError, match="did not answer within 1 s"):
        wait_for_new_hub(paths(tmp_path), "old", None, timeout=1)
