"""Root's own files beside the state folder (Paths.root_dir, teamhub.rootfiles); the hub that
moves an older install's registry and the hub's account's attempts on it:
tests/hub/test_unprivileged_hub.py."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from teamhub import rootfiles
from teamhub.errors import RootFilesError
from teamhub.paths import Paths
from teamhub.settings import Settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root's files: needs root")


def _paths(settings: Callable[..., Settings], state: Path) -> Paths:
    return Paths.from_settings(settings(f'[paths]\nstate_dir = "{state}"\n'))


def test_roots_files_sit_beside_the_state_folder(settings: Callable[..., Settings]) -> None:
    paths = Paths.from_settings(settings())
    assert paths.state_dir == Path("/var/lib/teamhub")
    assert paths.root_dir == Path("/var/lib/teamhub-root")
    assert paths.system_users == Path("/var/lib/teamhub-root/system_users.json")
    assert paths.fork_server_log == Path("/var/lib/teamhub-root/forkserver.log")
    assert paths.old_system_users == Path("/var/lib/teamhub/system_users.json")
    assert paths.old_fork_server_log == Path("/var/lib/teamhub/logs/forkserver.log")
    # Each state folder its own (tests' temporary ones too), never inside it.
    other = Paths.from_settings(settings('[paths]\nstate_dir = "/srv/x/state"\n'))
    assert other.root_dir == Path("/srv/x/state-root")
    assert not other.system_users.is_relative_to(other.state_dir)


def test_an_old_registry_and_log_are_moved_nothing_lost(settings: Callable[..., Settings],
                                                        tmp_path: Path) -> None:
    paths = _paths(settings, tmp_path / "state")
    (paths.state_dir / "logs").mkdir(parents=True)
    old = {"thu-ada": {"uid": 40001, "home": "/home/thu-ada"},
           "thu-bob": {"uid": 40002, "home": "/home/thu-bob"}}
    paths.old_system_users.write_text(json.dumps(old))
    paths.old_system_users.chmod(0o600)
    paths.old_system_users.with_name("system_users.json.lock").write_text("")
    paths.old_fork_server_log.write_text("old helper lines\n")
    # One already in the new place (made by the new CLI before the first root start):
    # it keeps its own entries, the old one's others are added.
    paths.root_dir.mkdir(mode=0o700)
    new = {"thu-bob": {"uid": 40002, "home": "/home/thu-bob", "x": 1},
           "thu-cy": {"uid": 40003, "home": "/home/thu-cy"}}
    paths.system_users.write_text(json.dumps(new))
    paths.system_users.chmod(0o600)
    done = rootfiles.migrate(paths)
    assert len(done) == 2, done
    assert json.loads(paths.system_users.read_text()) == {**old, **new}
    assert paths.fork_server_log.read_text() == "old helper lines\n"
    for gone in (paths.old_system_users, paths.old_fork_server_log,
                 paths.old_system_users.with_name("system_users.json.lock")):
        assert not gone.exists(), gone
    info = paths.root_dir.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o700)
    assert rootfiles.migrate(paths) == []  # once only


def test_a_planted_old_registry_is_set_aside_unread(settings: Callable[..., Settings],
                                                    tmp_path: Path) -> None:
    """A link (to a root-owned JSON file) or a file another account wrote at the old place is
    never believed: set aside, the new registry left as it is."""
    paths = _paths(settings, tmp_path / "state")
    paths.state_dir.mkdir()
    target = tmp_path / "roots.json"
    target.write_text(json.dumps({"root": {"uid": 0}}))
    target.chmod(0o600)
    paths.old_system_users.symlink_to(target)
    paths.old_fork_server_log.parent.mkdir()
    paths.old_fork_server_log.write_text("planted\n")
    os.chown(paths.old_fork_server_log, 65534, 65534)
    assert rootfiles.migrate(paths) == []
    assert not paths.system_users.exists() and not paths.fork_server_log.exists()
    aside = paths.old_system_users.with_name("system_users.json.untrusted")
    assert aside.is_symlink() and not paths.old_system_users.exists()
    assert paths.old_fork_server_log.with_name("forkserver.log.untrusted").exists()
    assert target.read_text() == json.dumps({"root": {"uid": 0}})


def test_root_dir_shared_with_the_hubs_group_and_never_in_others_hands(
        settings: Callable[..., Settings], tmp_path: Path) -> None:
    paths = _paths(settings, tmp_path / "state")
    rootfiles.ensure_root_dir(paths, 4242)
    info = paths.root_dir.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 4242, 0o710)
    rootfiles.ensure_root_dir(paths)  # hub.unprivileged off again: root's alone
    info = paths.root_dir.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o700)
    os.chown(paths.root_dir, 65534, 65534)
    with pytest.raises(RootFilesError, match="is not root's"):
        rootfiles.ensure_root_dir(paths)
    # A parent others may write (not sticky): they could rename root's folder.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RootFilesError, match="can be changed by others"):
        rootfiles.ensure_root_dir(_paths(settings, shared / "state"))
    shared.chmod(0o1777)
    rootfiles.ensure_root_dir(_paths(settings, shared / "state"))
