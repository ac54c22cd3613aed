"""`share_read_only`: the same modes as `chmod -R u+rwX,go+rX,go-w`, rewriting only wrong ones."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

from teamhub.system.modes import MODE, share_read_only

# name → mode before; folders end in "/".
TREE = {"d/": 0o700, "d/a.py": 0o600, "d/w.py": 0o666, "d/gw.py": 0o664, "d/x": 0o744,
        "d/ok.py": 0o644, "okdir/": 0o755, "okdir/run": 0o755, "odd/": 0o311,
        "odd/f": 0o400, "g/": 0o775, "g/s": 0o4755}


def _make(top: Path) -> None:
    for name in TREE:
        path = top / name
        if name.endswith("/"):
            path.mkdir()
        else:
            path.write_text("x")
    (top / "d" / "link").symlink_to("a.py")
    for name, mode in sorted(TREE.items(), key=lambda kv: -len(kv[0])):  # files before folders
        os.chmod(top / name, mode)


def _modes(top: Path) -> dict[str, int]:
    return {str(p.relative_to(top)): stat.S_IMODE(p.lstat().st_mode)
            for p in sorted(top.rglob("*")) if not p.is_symlink()}


def test_result_equals_chmod_r(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for top in (ours, theirs):
        top.mkdir(mode=0o700)
        _make(top)
    share_read_only(ours)
    subprocess.run(["chmod", "-R", MODE, str(theirs)], check=True)
    assert _modes(ours) == _modes(theirs)
    assert stat.S_IMODE(ours.stat().st_mode) == 0o755
    assert _modes(ours)["d/w.py"] == 0o644 and _modes(ours)["d/x"] == 0o755
    assert all(not mode & 0o022 for mode in _modes(ours).values())
    assert os.readlink(ours / "d" / "link") == "a.py"


def test_entries_already_right_are_not_rewritten(tmp_path: Path) -> None:
    top = tmp_path / "t"
    top.mkdir(mode=0o755)
    right, wrong = top / "right.py", top / "wrong.py"
    for path, mode in ((right, 0o644), (wrong, 0o666)):
        path.write_text("x")
        path.chmod(mode)
    before = {p: p.stat().st_ctime_ns for p in (right, wrong)}
    # A chmod would set the ctime to now: let the (coarse) clock move past it first.
    while time.time_ns() < max(before.values()) + 50_000_000:
        time.sleep(0.01)
    share_read_only(top)
    assert right.stat().st_ctime_ns == before[right]  # not rewritten
    assert wrong.stat().st_ctime_ns > before[wrong]
    assert stat.S_IMODE(wrong.stat().st_mode) == 0o644
