"""Shared environments built with the real uv: revisions, failed builds, rollback, export."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from support.hub import runtime_dir, world_dir

from teamhub.envs.store import Builder, SharedEnvs
from teamhub.errors import EnvError
from teamhub.system.uv import Uv

pytestmark = pytest.mark.system

BAD = "teamhub-no-such-package-xyz"


@pytest.fixture(scope="module")
def envs():
    root = world_dir("teamhub-envs-")
    uv = Uv(runtime_dir() / "bin" / "uv", root / ".cache")
    try:
        yield SharedEnvs(root, uv, str(runtime_dir() / "bin" / "python"), keep=2)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _imports(envs: SharedEnvs, name: str, module: str) -> bool:
    proc = subprocess.run([str(envs.current_python(name)), "-c", f"import {module}"],
                          capture_output=True)
    return proc.returncode == 0


def test_create_builds_a_world_readable_revision_with_ipykernel(envs: SharedEnvs) -> None:
    lines: list[str] = []
    meta = envs.create("sx", ["six"], echo=lines.append)
    assert meta["current"] == 1
    assert os.readlink(envs.root / "sx" / "current") == "revs/1"
    assert any("installing six" in line for line in lines)  # progress is streamed
    assert (envs.root / "sx" / "logs" / "1.log").read_text().count("six") >= 1
    assert _imports(envs, "sx", "six") and _imports(envs, "sx", "ipykernel")
    installed = envs.uv.packages(envs.current_python("sx"))
    assert "six" in installed and "ipykernel" in installed
    pyc = list((envs.root / "sx" / "revs" / "1").rglob("six*.pyc"))
    assert pyc, "bytecode is compiled at install"
    # Readable by ordinary users, writable by nobody but root.
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           str(envs.current_python("sx")), "-c",
                           "import six, os, sys; print(os.access(sys.prefix, os.W_OK))"],
                          capture_output=True, text=True, cwd="/")
    assert proc.stdout.strip() == "False", proc.stderr


def test_failed_build_leaves_current_untouched(envs: SharedEnvs) -> None:
    with pytest.raises(EnvError) as info:
        envs.change("sx", ["six", BAD], f"install {BAD}", echo=lambda _: None)
    assert BAD in str(info.value) and "unchanged" in str(info.value)
    assert os.readlink(envs.root / "sx" / "current") == "revs/1"
    assert sorted(p.name for p in (envs.root / "sx" / "revs").iterdir()) == ["1"]
    assert _imports(envs, "sx", "six")
    assert [r["rev"] for r in envs.meta("sx")["revisions"]] == [1]


def test_install_rollback_and_pruning(envs: SharedEnvs) -> None:
    envs.change("sx", ["six", "idna"], "install idna", echo=lambda _: None)
    assert _imports(envs, "sx", "idna")
    cur = envs.meta("sx")["current"]
    assert envs.rollback("sx") == 1
    assert not _imports(envs, "sx", "idna") and _imports(envs, "sx", "six")
    assert envs.rollback("sx", cur) == cur
    assert _imports(envs, "sx", "idna")
    envs.change("sx", ["idna"], "uninstall six", echo=lambda _: None)
    revs = [r["rev"] for r in envs.meta("sx")["revisions"]]
    assert len(revs) == 2 and 1 not in revs  # keep=2: the oldest is gone
    assert not (envs.root / "sx" / "revs" / "1").exists()
    assert not _imports(envs, "sx", "six")


def test_export_pins_with_hashes(envs: SharedEnvs) -> None:
    python = envs.current_python("sx")
    text = envs.uv.lock_with_hashes(python, envs.uv.freeze(python))
    assert "idna==" in text and "--hash=sha256:" in text


def test_missing_python_version_is_refused(envs: SharedEnvs) -> None:
    with pytest.raises(EnvError, match="3.2"):
        envs.create("old", ["six"], python="3.2", echo=lambda _: None)
    assert not (envs.root / "old").exists()


def test_delete_removes_everything(envs: SharedEnvs) -> None:
    envs.create("tmp", [], echo=lambda _: None)
    envs.delete("tmp")
    assert "tmp" not in envs.names() and not (envs.root / "tmp").exists()


def test_interrupted_build_remains_are_cleaned(envs: SharedEnvs) -> None:
    junk = envs.root / "sx" / "revs" / "99"
    junk.mkdir()
    envs.change("sx", ["idna", "packaging"], "install packaging", echo=lambda _: None)
    assert not junk.exists()
    assert Path(os.path.realpath(envs.root / "sx" / "current")).name == "100"


# As `nobody`: open each file read-only (all flock needs) and try to lock it.
TRY_LOCK = """import fcntl, os, sys
for path in sys.argv[1:]:
    try:
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("LOCKED", path)
    except OSError as exc:
        print("refused", path, exc.strerror)
"""


def test_users_cannot_take_the_env_locks(envs: SharedEnvs) -> None:
    if "sx" not in envs.names():
        envs.create("sx", ["six"], echo=lambda _: None)
    found = [p for p in envs.root.rglob("*") if p.name.endswith(".lock") and p.is_file()]
    cache = [p for p in found if ".cache" in p.relative_to(envs.root).parts]
    ours = [p for p in found if p not in cache]
    assert cache and ours, found  # uv's cache locks and teamhub's own
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "/usr/bin/python3", "-c", TRY_LOCK, *map(str, found)],
                          capture_output=True, text=True, cwd="/", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "LOCKED" not in proc.stdout, proc.stdout
    # Envs still work for users: their files are hard links into the now private cache.
    linked = next((envs.root / "sx" / "current").glob(
        "lib/python3*/site-packages/ipykernel/__init__.py"))
    assert linked.stat().st_nlink >= 2
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           str(envs.current_python("sx")), "-c", "import ipykernel"],
                          capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr


def test_env_command_gives_up_on_a_held_lock_and_names_the_holder(
        envs: SharedEnvs, tmp_path: Path) -> None:
    if "sx" not in envs.names():
        envs.create("sx", ["six"], echo=lambda _: None)
    before = (envs.meta("sx"), sorted(os.listdir(envs.root / "sx" / "revs")))
    config = tmp_path / "teamhub.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'runtime_dir = "{runtime_dir()}"\n'
                      f'[envs]\nroot = "{envs.root}"\nlock_timeout = 2\n')
    holder = subprocess.Popen(
        ["/usr/bin/python3", "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)\n",
         str(envs.lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = time.monotonic()
        proc = subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "--config", str(config),
                               "env", "install", "sx", "idna"],
                              capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode != 0
    message = proc.stderr.strip().splitlines()[-1]
    assert f"pid {holder.pid}" in message and "time.sleep" in message, proc.stderr
    assert "Nothing was changed" in message and "envs.lock_timeout" in message
    assert 2 <= took < 30
    assert (envs.meta("sx"), sorted(os.listdir(envs.root / "sx" / "revs"))) == before


def test_new_revision_has_a_compiled_guard_and_nothing_users_can_write(
        envs: SharedEnvs) -> None:
    if "sx" not in envs.names():
        envs.create("sx", ["six"], echo=lambda _: None)
    rev = Path(os.path.realpath(envs.root / "sx" / "current"))
    site = next(rev.glob("lib/python3*/site-packages"))
    assert list((site / "__pycache__").glob("teamhub_pip_guard.*.pyc"))
    assert (rev / "bin" / "pip").read_text().startswith("#!/bin/sh")
    writable = [p for p in [rev, *rev.rglob("*")]
                if not p.is_symlink() and p.lstat().st_mode & 0o022]
    unreadable = [p for p in [rev, *rev.rglob("*")] if not p.is_symlink()
                  and p.name != ".lock" and (p.lstat().st_mode & 0o444) != 0o444]
    assert not writable and not unreadable, (writable[:5], unreadable[:5])
    assert envs.meta("sx")["revisions"][-1]["python_version"].startswith("3.")


def _blocking_wheel(folder: Path) -> Path:
    """A wheel whose .pth makes `import ipykernel` fail: uv installs it, the check must not pass."""
    wheel = folder / "teamhub_test_blocker-1.0-py3-none-any.whl"
    info = "teamhub_test_blocker-1.0.dist-info"
    files = {"teamhub_test_blocker.pth": "import sys; sys.modules['ipykernel'] = None\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: teamhub-test-blocker\n"
                                 "Version: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: teamhub-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


def test_failed_import_check_leaves_current_untouched(envs: SharedEnvs, tmp_path: Path) -> None:
    if "sx" not in envs.names():
        envs.create("sx", ["six"], echo=lambda _: None)
    before = (envs.meta("sx"), sorted(os.listdir(envs.root / "sx" / "revs")),
              os.readlink(envs.root / "sx" / "current"))
    spec = envs.current_spec(envs.meta("sx"))
    with pytest.raises(EnvError) as info:
        envs.change("sx", [*spec, str(_blocking_wheel(tmp_path))], "install blocker",
                    echo=lambda _: None)
    assert "cannot import ipykernel" in str(info.value) and "unchanged" in str(info.value)
    assert (envs.meta("sx"), sorted(os.listdir(envs.root / "sx" / "revs")),
            os.readlink(envs.root / "sx" / "current")) == before
    assert _imports(envs, "sx", "ipykernel")


# Runs one change in its own process (and session), so that the test can kill it and uv.
BUILD = """import sys
from pathlib import Path
from teamhub.envs.store import Builder, SharedEnvs
from teamhub.system.uv import Uv
root, uv, python, how, name = sys.argv[1:6]
envs = SharedEnvs(Path(root), Uv(Path(uv), Path(root) / ".cache"), python)
if how == "create":
    envs.create(name, ["six", "idna", "packaging"], echo=print)
else:
    envs.change(name, [*envs.current_spec(envs.meta(name)), "idna", "packaging"],
                "install idna packaging", echo=print)
"""


def _kill_while_installing(envs: SharedEnvs, how: str, name: str, rev: int) -> None:
    log = envs.root / name / "logs" / f"{rev}.log"
    log.unlink(missing_ok=True)  # a failed build's log: its number is used again
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(envs.root), str(envs.uv.binary),
                             envs.base_python, how, name],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (log.is_file() and "pip install" in log.read_text()):
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build never reached uv's install"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its uv, as a crash would
        proc.wait()


def test_killed_build_leaves_nothing_half_switched(envs: SharedEnvs) -> None:
    if "sx" not in envs.names():
        envs.create("sx", ["six"], echo=lambda _: None)
    meta = envs.meta("sx")
    current = os.readlink(envs.root / "sx" / "current")
    killed = max(int(p.name) for p in (envs.root / "sx" / "revs").iterdir()) + 1
    _kill_while_installing(envs, "change", "sx", killed)
    assert os.readlink(envs.root / "sx" / "current") == current
    assert envs.meta("sx") == meta and _imports(envs, "sx", "ipykernel")
    assert not (envs.root / "sx" / ".current.tmp").is_symlink()
    # The next change removes the remains and builds past them.
    envs.change("sx", envs.current_spec(meta), "rebuild", echo=lambda _: None)
    assert not (envs.root / "sx" / "revs" / str(killed)).exists()
    assert envs.meta("sx")["current"] == killed + 1


def test_killed_create_leaves_no_env_and_can_be_run_again(envs: SharedEnvs) -> None:
    _kill_while_installing(envs, "create", "half", 1)
    assert "half" not in envs.names()
    with pytest.raises(EnvError, match="does not exist"):
        envs.meta("half")
    envs.create("half", ["six"], echo=lambda _: None)
    assert envs.meta("half")["current"] == 1 and _imports(envs, "half", "six")
    envs.delete("half")


def test_a_second_env_reuses_the_first_s_bytecode_and_it_stays_valid(envs: SharedEnvs) -> None:
    if "sx" not in envs.names():
        envs.create("sx", ["six"], echo=lambda _: None)
    lines: list[str] = []
    envs.create("twin", ["six"], echo=lines.append)
    try:
        assert any("compiling bytecode" in line for line in lines)
        reused = next(int(line.split()[0]) for line in lines if "modules reused" in line)
        assert reused > 100  # ipykernel and its dependencies at least

        def kernelapp_pyc(name: str) -> os.stat_result:
            return next((envs.root / name / "current").glob(
                "lib/python3*/site-packages/ipykernel/__pycache__/kernelapp.*.pyc")).stat()

        assert kernelapp_pyc("twin").st_ino == kernelapp_pyc("sx").st_ino
        # Valid for the twin's source: importing as root would rewrite a stale one
        # (a new inode); the code names the twin's file, not the donor's.
        proc = subprocess.run([str(envs.current_python("twin")), "-c",
                               "import ipykernel.kernelapp as k; "
                               "print(k.IPKernelApp.init_sockets.__code__.co_filename)"],
                              capture_output=True, text=True, check=True, cwd="/")
        twin = os.path.realpath(envs.root / "twin" / "current")
        assert os.path.realpath(proc.stdout.strip()) == os.path.join(
            twin, str(next(Path(twin).glob("lib/python3*/site-packages/ipykernel/kernelapp.py"))
                      .relative_to(twin))), (proc.stdout, twin)
        assert kernelapp_pyc("twin").st_ino == kernelapp_pyc("sx").st_ino
    finally:
        envs.delete("twin")


def test_personal_env_reuses_the_user_s_other_env_bytecode(tmp_path: Path) -> None:
    home = world_dir("teamhub-home-")
    env = {**os.environ, "HOME": str(home)}
    env.pop("XDG_CACHE_HOME", None)
    env.pop("UV_CACHE_DIR", None)
    cli = str(runtime_dir() / "bin" / "teamhub-env")
    try:
        for name in ("first", "second"):
            proc = subprocess.run([cli, "create", name, "six"], env=env, capture_output=True,
                                  text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr + proc.stdout
        assert "reused from your other envs" in proc.stdout

        def pyc(name: str, module: str) -> os.stat_result:
            return next((home / ".venvs" / name).glob(
                f"lib/python3*/site-packages/**/__pycache__/{module}.*.pyc")).stat()

        assert pyc("second", "six").st_ino == pyc("first", "six").st_ino
        assert pyc("second", "kernelapp").st_ino == pyc("first", "kernelapp").st_ino
        python = home / ".venvs" / "second" / "bin" / "python"
        assert subprocess.run([str(python), "-c", "import six, ipykernel"],
                              env=env).returncode == 0
        assert pyc("second", "six").st_ino == pyc("first", "six").st_ino  # valid: kept
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_build_under_the_hubs_umask_is_usable_by_everyone(envs: SharedEnvs) -> None:
    """The hub runs with umask 077 (its secrets) and builds envs for the console: folders
    the store makes must not take their mode from the caller's umask."""
    old = os.umask(0o077)
    try:
        envs.create("um", [], echo=lambda _: None)
    finally:
        os.umask(old)
    for folder in (envs.root / "um", envs.root / "um" / "revs"):
        assert folder.stat().st_mode & 0o755 == 0o755, folder
    assert _imports(envs, "um", "ipykernel")
    envs.delete("um")


# --- builds by an unprivileged builder (the root helper's, for an unprivileged hub) ------

BUILDER = 65534  # nobody / nogroup: stands for the hub's account


def _owners_and_modes(top: Path) -> list[str]:
    """Entries of TOP that are not root's, or that group/other may write, or setuid."""
    bad = []
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(folder, name))
            if st.st_uid != 0 or st.st_gid != 0:
                bad.append(f"{folder}/{name} uid {st.st_uid}")
            elif not os.path.islink(os.path.join(folder, name)) and st.st_mode & 0o7022:
                bad.append(f"{folder}/{name} mode {oct(st.st_mode)}")
    return bad


@pytest.fixture(scope="module")
def built(envs: SharedEnvs):
    return SharedEnvs(envs.root, envs.uv, envs.base_python, keep=2,
                      builder=Builder(BUILDER, BUILDER))


def _trap_package(folder: Path, target: Path) -> Path:
    """A local package whose build code, run by the builder, plants a fifo, a link to
    /etc/shadow and a setuid file in TARGET (the revision being built)."""
    pkg = folder / "trappkg"
    pkg.mkdir(parents=True)
    (pkg / "setup.py").write_text(
        "import os\nfrom setuptools import setup\n"
        f"t = {str(target)!r}\n"
        "if os.path.isdir(t) and not os.path.lexists(t + '/fifo'):\n"
        "    os.symlink('/etc/shadow', t + '/shadow')\n"
        "    open(t + '/suid', 'w').close(); os.chmod(t + '/suid', 0o6777)\n"
        "    os.mkfifo(t + '/fifo')\n"
        "setup(name='trappkg', version='1.0', py_modules=[])\n")
    for path in (folder, pkg):
        path.chmod(0o777)
    return pkg


def test_a_builders_build_is_roots_with_nothing_the_builder_kept(built: SharedEnvs) -> None:
    lines: list[str] = []
    meta = built.create("bx", ["six"], echo=lines.append)
    rev = built.root / "bx" / "revs" / str(meta["current"])
    assert any("taking over the built tree" in line for line in lines), lines
    assert _owners_and_modes(rev) == []
    assert os.stat(rev).st_uid == 0 and os.stat(rev).st_mode & 0o777 == 0o755
    # uv ran as the builder: its cache is the builder's, and what uv put there too.
    cache = built.root / ".cache-build"
    assert os.stat(cache).st_uid == BUILDER and os.stat(cache).st_mode & 0o777 == 0o700
    assert {p.stat().st_uid for p in cache.rglob("*") if not p.is_symlink()} == {BUILDER}
    assert _imports(built, "bx", "six") and _imports(built, "bx", "ipykernel")
    assert list(rev.rglob("six*.pyc")), "uv compiled the bytecode as the builder"
    # The %pip guard is there (written by root after the takeover) and the pip stubs.
    assert list(rev.glob("lib/python3.*/site-packages/teamhub_pip_guard.py"))
    assert "read-only" in (rev / "bin" / "pip").read_text()
    # Install, as the builder too; a failed one leaves current.
    built.change("bx", ["six", "idna"], "install idna", echo=lines.append)
    assert os.readlink(built.root / "bx" / "current") == "revs/2"
    assert _owners_and_modes(built.root / "bx" / "revs" / "2") == []
    with pytest.raises(EnvError, match="unchanged"):
        built.change("bx", ["six", BAD], f"install {BAD}", echo=lines.append)
    assert os.readlink(built.root / "bx" / "current") == "revs/2"


def test_a_build_whose_code_plants_a_fifo_fails_and_leaves_nothing(
        built: SharedEnvs, tmp_path: Path) -> None:
    built.create("by", [], echo=lambda _: None)
    shadow = os.stat("/etc/shadow")
    target = built.root / "by" / "revs" / "2"
    pkg = _trap_package(Path(world_dir("teamhub-trap-")) / "src", target)
    try:
        with pytest.raises(EnvError, match="fifo|neither a directory"):
            built.change("by", [str(pkg)], "install trap", echo=lambda _: None)
    finally:
        shutil.rmtree(pkg.parent.parent, ignore_errors=True)
    assert not target.exists()
    assert os.readlink(built.root / "by" / "current") == "revs/1"
    after = os.stat("/etc/shadow")
    assert (after.st_uid, after.st_gid, after.st_mode) == (shadow.st_uid, shadow.st_gid,
                                                            shadow.st_mode)
