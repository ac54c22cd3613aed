"""Root takes over a tree an unprivileged builder made (teamhub.system.takeover), against
real files: whatever the builder left, root follows no link of it, keeps no setuid bit and
takes no file that is not the builder's own."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from teamhub.errors import TakeoverError
from teamhub.system.takeover import take_over, write_new

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="chowns files to other accounts: needs root"),
]

BUILDER = 65534  # nobody: stands for the hub's account


def _tree(tmp_path: Path) -> Path:
    """A venv-like tree, every entry the builder's."""
    top = tmp_path / "rev"
    (top / "lib" / "site-packages" / "pkg").mkdir(parents=True)
    (top / "bin").mkdir()
    (top / "lib" / "site-packages" / "pkg" / "__init__.py").write_text("x = 1\n")
    (top / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(top / "bin" / "tool", 0o6777)  # setuid, setgid, world-writable
    os.chmod(top / "lib", 0o1777)
    os.symlink("lib", top / "lib64")
    os.symlink("/etc/shadow", top / "bin" / "shadow")
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files, "."]:
            os.chown(os.path.join(folder, name), BUILDER, BUILDER, follow_symlinks=False)
    return top


def test_a_clean_tree_becomes_roots_with_no_setuid_nor_group_or_other_write(
        tmp_path: Path) -> None:
    top = _tree(tmp_path)
    shadow = os.stat("/etc/shadow")
    assert take_over(top, BUILDER) == 9
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files, "."]:
            st = os.lstat(os.path.join(folder, name))
            assert (st.st_uid, st.st_gid) == (0, 0), os.path.join(folder, name)
            if not stat.S_ISLNK(st.st_mode):
                assert stat.S_IMODE(st.st_mode) & 0o7022 == 0, os.path.join(folder, name)
    assert stat.S_IMODE(os.stat(top / "bin" / "tool").st_mode) == 0o755
    after = os.stat("/etc/shadow")  # the link was chowned, never followed
    assert (after.st_uid, after.st_gid, after.st_mode) == (shadow.st_uid, shadow.st_gid,
                                                            shadow.st_mode)
    assert os.readlink(top / "bin" / "shadow") == "/etc/shadow"


@pytest.mark.parametrize("plant, reason", [
    (lambda top: os.mkfifo(top / "bin" / "fifo"), "neither a directory"),
    (lambda top: os.link("/etc/shadow", top / "bin" / "hard"), "owned by uid 0"),
    (lambda top: (top / "root-file").write_text("x"), "owned by uid 0"),
    (lambda top: os.symlink("/etc", top / "root-link"), "owned by uid 0"),
    (lambda top: os.mkdir(top / "root-dir"), "owned by uid 0"),
    (lambda top: os.link(top / "bin" / "tool", top.parent / "outside"), "2 hard links"),
])
def test_what_root_must_not_take_is_refused(tmp_path: Path, plant, reason: str) -> None:
    top = _tree(tmp_path)
    shadow = os.stat("/etc/shadow")
    plant(top)
    with pytest.raises(TakeoverError, match=reason):
        take_over(top, BUILDER)
    after = os.stat("/etc/shadow")
    assert (after.st_uid, after.st_gid, after.st_mode) == (shadow.st_uid, shadow.st_gid,
                                                            shadow.st_mode)


def test_a_top_that_is_a_link_is_refused(tmp_path: Path) -> None:
    real = _tree(tmp_path)
    link = tmp_path / "link"
    os.symlink(real, link)
    with pytest.raises(TakeoverError):
        take_over(link, BUILDER)
    assert os.stat(real).st_uid == BUILDER


def test_write_new_follows_no_link_and_overwrites_nothing(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    take_over(top, BUILDER)
    assert write_new(top, "lib/site-packages/guard.py", "g = 1\n")
    made = top / "lib" / "site-packages" / "guard.py"
    assert made.read_text() == "g = 1\n" and stat.S_IMODE(made.stat().st_mode) == 0o644
    assert not write_new(top, "lib/site-packages/guard.py", "other")
    assert made.read_text() == "g = 1\n"
    # A dangling link where the new file goes: nothing is made at its target.
    os.symlink(tmp_path / "target", top / "bin" / "pip")
    assert not write_new(top, "bin/pip", "stub")
    assert not (tmp_path / "target").exists()
    # A link as a folder on the way: refused, not followed.
    with pytest.raises(OSError):
        write_new(top, "lib64/site-packages/x.py", "x")
    assert not (top / "lib" / "site-packages" / "x.py").exists()
