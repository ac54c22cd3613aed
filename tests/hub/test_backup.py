"""Backup and restore with a real hub: back up while running, refuse to clobber, reject
bad archives with nothing changed, wipe the state, restore, and log in with the old
password with groups, grants and project ACLs back."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique, world_dir

from teamhub.db.upgrade import HEAD

pytestmark = [pytest.mark.hub, pytest.mark.system]



@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    root = world_dir("teamhub-projroot-")
    h = hub_factory(extra_toml=f'[projects]\nroot = "{root}"\n')
    h.scratch.append(root)
    h.projects_root = root
    h.ada, h.bob = unique("ada"), unique("bob")
    h.add_user(h.ada, PASSWORD)
    h.add_user(h.bob, PASSWORD + "2", "--admin")
    h.teamhub("group", "create", "crew")
    h.teamhub("group", "add", "crew", h.bob)
    h.teamhub("project", "create", "survey", "--writers", h.ada, "--readers", "@crew")
    h.start()
    b = Browser(h.url)
    assert b.login(h.ada, PASSWORD).status_code == 302
    b.start_server(h.ada)  # gives ada a Linux account and the project ACL
    return h


def _snapshot(hub: HubProcess) -> dict[str, bytes]:
    """What a restore would replace (the hub's own DB changes by itself while it runs)."""
    names = ("accounts.sqlite",)
    registry = hub.paths.system_users
    return {str(p): p.read_bytes() for p in sorted(hub.state.glob("*")) if p.name in names} | {
        str(registry): registry.read_bytes() if registry.exists() else b"",
        "config": hub.config.read_bytes(),
        "state files": " ".join(sorted(p.name for p in hub.state.iterdir())).encode()}


def _acl(path: Path) -> str:
    return subprocess.run(["getfacl", "-cp", str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_backup_while_running_and_restore_refused_over_live_install(hub: HubProcess,
                                                                   tmp_path: Path) -> None:
    out = hub.teamhub("backup", str(tmp_path / "b.tar.gz"), "--json").stdout
    manifest = json.loads(out)
    assert {"settings/teamhub.toml", "state/accounts.sqlite"} <= set(manifest["files"])
    assert manifest["accounts_schema"] == HEAD and manifest["teamhub_version"]
    assert oct((tmp_path / "b.tar.gz").stat().st_mode & 0o777) == "0o600"
    before = _snapshot(hub)
    proc = hub.teamhub("restore", str(tmp_path / "b.tar.gz"), check=False)
    assert proc.returncode != 0
    assert "refusing to restore over a live install: a hub is running" in proc.stderr
    assert "--force" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert _snapshot(hub) == before


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_corrupt_and_foreign_archives_rejected_nothing_changed(hub: HubProcess,
                                                               tmp_path: Path) -> None:
    good = tmp_path / "good.tar.gz"
    hub.teamhub("backup", str(good))
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.tar.gz"
    _tar(foreign, {"etc/passwd": b"root:x:0:0::/root:/bin/sh\n"})
    no_manifest = tmp_path / "nomanifest.tar.gz"
    _tar(no_manifest, {"state/accounts.sqlite": b"x"})
    # Right shape, but one file altered after the manifest was written.
    with tarfile.open(good) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    members["settings/teamhub.toml"] += b"\n# edited\n"
    tampered = tmp_path / "tampered.tar.gz"
    _tar(tampered, members)
    text = tmp_path / "text.tar.gz"
    text.write_text("hello")
    before = _snapshot(hub)
    expect = {truncated: "cannot read it as a tar.gz archive",
              foreign: "unexpected entry 'etc/passwd'",
              no_manifest: "no readable manifest.json",
              tampered: "settings/teamhub.toml does not match its checksum",
              text: "is not a teamhub backup",
              tmp_path / "missing.tar.gz": "does not exist"}
    for archive, words in expect.items():
        proc = hub.teamhub("restore", str(archive), "--force", check=False)
        assert proc.returncode != 0, archive
        assert words in proc.stderr, proc.stderr
        assert proc.stderr.startswith("teamhub: error:")
        assert len(proc.stderr.strip().splitlines()) == 1
    assert _snapshot(hub) == before


def test_wipe_then_restore_brings_accounts_groups_grants_back(hub: HubProcess,
                                                              tmp_path: Path) -> None:
    archive = tmp_path / "full.tar.gz"
    hub.teamhub("backup", str(archive))
    project = hub.projects_root / "survey"
    acl_before = _acl(project)
    assert f"user:{hub.system_user(hub.ada)}:rwx" in acl_before
    registry_path = hub.paths.system_users
    registry = registry_path.read_bytes()
    config = hub.config.read_bytes()

    hub.stop()
    hub._kill_pidfile("proxy.pid")
    shutil.rmtree(hub.state)
    shutil.rmtree(registry_path.parent)  # root's folder beside it (Paths.root_dir)
    shutil.rmtree(project)
    hub.config.unlink()
    # A restore onto this (now empty) place needs no --force.
    proc = hub.teamhub("restore", str(archive))
    assert "project folders repaired: survey" in proc.stdout
    assert hub.config.read_bytes() == config
    assert registry_path.read_bytes() == registry
    assert oct(hub.state.stat().st_mode & 0o777) == "0o700"
    assert oct((hub.state / "accounts.sqlite").stat().st_mode & 0o777) == "0o600"
    assert _acl(project) == acl_before

    groups = json.loads(hub.teamhub("group", "list", "--json").stdout)
    assert groups == {"crew": [hub.bob]}
    show = json.loads(hub.teamhub("project", "show", "survey", "--json").stdout)
    assert show["writers"] == [hub.ada] and show["readers"] == ["@crew"]
    users = json.loads(hub.teamhub("user", "list", "--json").stdout)
    admins = {u["name"]: u["admin"] for u in users}
    assert admins == {hub.ada: False, hub.bob: True}

    hub.start()
    b = Browser(hub.url)
    assert b.login(hub.ada, "wrong password!").status_code != 302
    assert b.login(hub.ada, PASSWORD).status_code == 302
    assert b.logged_in()
    b.start_server(hub.ada)  # the same Linux account and home, recognised as teamhub's

    # With the restored install live again, a second restore is refused once more.
    proc = hub.teamhub("restore", str(archive), check=False)
    assert proc.returncode != 0 and "a hub is running" in proc.stderr
