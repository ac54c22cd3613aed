"""The hub's own account (install.sh and root `teamhub up` make it) and root handing itself
over to it: real useradd, real credentials and capability sets of a real process."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.hub import unique

from teamhub.errors import SystemUserError
from teamhub.system import hub_account, users

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates real Linux accounts: needs root"),
]


@pytest.fixture
def name() -> Iterator[str]:
    made = unique("thub")
    yield made
    subprocess.run(["userdel", made], capture_output=True)
    subprocess.run(["groupdel", made], capture_output=True)


def test_install_makes_a_system_account_homed_in_the_state_folder(name: str,
                                                                   tmp_path: Path) -> None:
    state = tmp_path / "state"
    # What install.sh runs.
    proc = subprocess.run([sys.executable, "-m", "teamhub.system.hub_account", name, str(state)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    pw = pwd.getpwnam(name)
    assert 0 < pw.pw_uid < 1000 and pw.pw_dir == str(state)
    assert pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin")
    assert grp.getgrgid(pw.pw_gid).gr_name == name
    assert os.getgrouplist(name, pw.pw_gid) == [pw.pw_gid]
    assert not state.exists() and not Path("/home", name).exists()
    # Again (an upgrade, or `teamhub up` after install.sh): the same account.
    assert hub_account.ensure(name, state).uid == pw.pw_uid


def test_a_persons_account_is_never_taken_over(name: str) -> None:
    subprocess.run(["useradd", "--no-create-home", name], check=True, capture_output=True)
    with pytest.raises(SystemUserError, match="not a system account"):
        hub_account.ensure(name, Path("/nonexistent"))


def test_give_tree_owns_modes_and_keeps_roots_files(tmp_path: Path) -> None:
    root = tmp_path / "state"
    (root / "logs").mkdir(parents=True)
    (root / "db").write_text("x")
    (root / "logs" / "a.log").write_text("x")
    (root / "keep").write_text("x")
    os.chmod(root / "db", 0o644)
    os.symlink("/etc/passwd", root / "link")
    hub_account.give_tree(root, 65534, 65534, keep=[root / "keep"])
    for path, mode in ((root, 0o700), (root / "logs", 0o700), (root / "db", 0o600),
                       (root / "logs" / "a.log", 0o600)):
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (65534, mode), path
    assert (root / "keep").stat().st_uid == 0
    assert os.lstat(root / "link").st_uid == 0 and Path("/etc/passwd").stat().st_uid == 0


def test_drop_to_leaves_no_capability_and_no_way_back() -> None:
    account = users.SystemUser("nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            hub_account.drop_to(account)
            caps = hub_account.capabilities()
            status = Path("/proc/self/status").read_text()
            back = subprocess.run(["setpriv", "--reuid=0", "true"], capture_output=True)
            report = json.dumps({"caps": caps, "nnp": "NoNewPrivs:\t1" in status,
                                 "groups": os.getgroups(), "back": back.returncode})
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            report = json.dumps({"error": repr(exc)})
        os.write(write, report.encode())
        os._exit(0)
    os.close(write)
    report = os.read(read, 4096).decode()
    os.waitpid(pid, 0)
    result = json.loads(report)
    assert "error" not in result, result
    assert set(result["caps"].values()) == {0}, result
    assert result["nnp"] and result["groups"] == [65534] and result["back"] != 0, result
