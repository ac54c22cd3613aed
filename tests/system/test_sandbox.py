"""sandbox.become against the real kernel: both start paths (exec'd launcher, in-process
after fork) leave nothing of a messy root parent, and end up the same."""

from __future__ import annotations

import json
import os
import pwd
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from teamhub.errors import SandboxError
from teamhub.system.sandbox import LaunchSpec, become, current_rlimits

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="changes uids: needs root"),
]

REPORT = r'''
import json, os, random, resource, signal, sys

def report(path):
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    try:
        os.setuid(0)
        regained = True
    except PermissionError:
        regained = False
    data = {
        "ids": [os.getresuid(), os.getresgid(), sorted(os.getgroups())],
        "status": {k: status[k].strip() for k in ("Umask", "SigBlk", "SigIgn", "CapEff",
                                                   "CapPrm", "NoNewPrivs")},
        "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "proc_environ": open("/proc/self/environ", "rb").read().decode(),
        "session_leader": os.getsid(0) == os.getpid() == os.getpgrp(),
        "limits": {n: list(resource.getrlimit(getattr(resource, n)))
                   for n in ("RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_NPROC")},
        "usr1": str(signal.getsignal(signal.SIGUSR1)),
        "regained_root": regained,
        "random": random.random(),
    }
    with open(path, "w") as f:
        json.dump(data, f)

if __name__ == "__main__":
    report(sys.argv[1])
'''

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def folder():
    path = Path(tempfile.mkdtemp(prefix="teamhub-sandbox-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    for f in path.iterdir():
        f.unlink()
    path.rmdir()


def messy_parent() -> list[int]:
    """What a careless root parent leaves behind: open fds, a blocked and an ignored signal."""
    fds = [os.open("/etc/hostname", os.O_RDONLY) for _ in range(3)]
    for fd in fds:
        os.set_inheritable(fd, True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    return fds


def spec_for(folder: Path, out: str, rlimits: dict[str, list[int]]) -> LaunchSpec:
    script = folder / "report.py"
    script.write_text(REPORT)
    script.chmod(0o644)
    return LaunchSpec(
        argv=[sys.executable, str(script), str(folder / out)],
        env={"HOME": "/", "PATH": "/usr/bin:/bin", "ONLY": "this"},
        cwd=str(folder), username="nobody", uid=NOBODY.pw_uid, gid=NOBODY.pw_gid,
        umask=0o077, log_path=str(folder / f"{out}.log"), rlimits=rlimits,
    )


def run_forked(spec: LaunchSpec) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            messy_parent()
            become(spec, in_process=True)
            sys.argv = spec.argv[1:]
            ns: dict[str, Any] = {"__name__": "report"}
            exec(compile(Path(spec.argv[1]).read_text(), spec.argv[1], "exec"), ns)
            ns["report"](spec.argv[2])
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def run_launcher(spec: LaunchSpec) -> int:
    def preexec() -> None:
        messy_parent()

    proc = subprocess.run([sys.executable, "-I", "-m", "teamhub.system.sandbox"],
                          input=spec.to_json(), preexec_fn=preexec, close_fds=False,
                          timeout=60)
    return proc.returncode


def test_both_paths_reset_everything_and_agree(folder: Path) -> None:
    limits = current_rlimits()
    limits["RLIMIT_CORE"] = [0, limits["RLIMIT_CORE"][1]]
    assert run_launcher(spec_for(folder, "exec.json", limits)) == 0
    assert run_forked(spec_for(folder, "fork.json", limits)) == 0
    exec_report = json.loads((folder / "exec.json").read_text())
    fork_report = json.loads((folder / "fork.json").read_text())
    for report in (exec_report, fork_report):
        uid, gid = NOBODY.pw_uid, NOBODY.pw_gid
        assert report["ids"][:2] == [[uid] * 3, [gid] * 3]
        assert not report["regained_root"]
        assert report["status"]["Umask"] == "0077"
        assert report["status"]["SigBlk"] == "0000000000000000"
        assert report["status"]["CapEff"] == report["status"]["CapPrm"] == "0000000000000000"
        assert report["usr1"] == str(signal.SIG_DFL)
        assert report["fds"] == [0, 1, 2, 3]  # 3: the report's own /proc/self/fd listing
        assert report["cwd"] == str(folder)
        # A fresh Python coerces the C locale (PEP 538); the in-process path does the same.
        assert report["env"] == {"HOME": "/", "PATH": "/usr/bin:/bin", "ONLY": "this",
                                 "LC_CTYPE": "C.UTF-8"}
        assert report["proc_environ"] == "HOME=/\0PATH=/usr/bin:/bin\0ONLY=this\0"
        assert report["session_leader"]
        assert report["limits"]["RLIMIT_CORE"][0] == 0
    different = {k for k in exec_report if exec_report[k] != fork_report[k]}
    assert different == {"random"}


def test_forked_children_get_their_own_random_state(folder: Path) -> None:
    limits = current_rlimits()
    assert run_forked(spec_for(folder, "a.json", limits)) == 0
    assert run_forked(spec_for(folder, "b.json", limits)) == 0
    a = json.loads((folder / "a.json").read_text())["random"]
    b = json.loads((folder / "b.json").read_text())["random"]
    assert a != b


def test_launcher_refuses_a_bad_spec_with_a_message(folder: Path) -> None:
    proc = subprocess.run([sys.executable, "-I", "-m", "teamhub.system.sandbox"],
                          input=b'{"argv": []}', capture_output=True, timeout=60)
    assert proc.returncode == 127
    assert b"non-empty argv" in proc.stderr


def test_spec_with_uid_needs_user_name() -> None:
    with pytest.raises(SandboxError):
        from teamhub.system import sandbox

        sandbox._drop_to(LaunchSpec(argv=["x"], env={}, cwd="/", uid=NOBODY.pw_uid))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)  # this process was left alone
    assert os.geteuid() == 0
