"""Project folders on a real filesystem with real Linux users and real setfacl.

Each test gets a teamhub config in world-traversable temp folders, hub users
with real Linux accounts, and runs the CLI in-process; access is then checked
by running ordinary programs (cat, ls, touch, rm) as those accounts.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from teamhub.accounts.store import AccountStore
from teamhub.cli import cli
from teamhub.system import acl, users

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates real Linux accounts: needs root"),
]

PREFIX = "thp-"
PW = "a fine password"


@dataclass
class Env:
    base: Path
    config: Path
    state: Path
    homes: Path
    root: Path
    made: list[str]

    @property
    def registry(self) -> Path:
        """Where teamhub keeps the account registry for this state folder (Paths.root_dir)."""
        return self.state.with_name(self.state.name + "-root") / "system_users.json"

    def teamhub(self, *args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(cli, ["--config", str(self.config), *args])
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def user(self) -> str:
        """A new hub user with its Linux account; returns the hub name."""
        name = "u" + secrets.token_hex(3)
        AccountStore(self.state / "accounts.sqlite").add(name, PW)
        self.made.append(PREFIX + name)
        users.ensure_system_user(PREFIX + name, registry=self.registry,
                                 home_root=self.homes, shell="/bin/sh")
        return name

    def run_as(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        pw = pwd.getpwnam(PREFIX + name)
        # umask 077 as in users' servers: default ACLs must make it irrelevant.
        return subprocess.run(argv, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                              umask=0o077, cwd="/", capture_output=True, text=True)

    def ok_as(self, name: str, *argv: str) -> bool:
        return self.run_as(name, *argv).returncode == 0

    def links(self, name: str) -> list[str]:
        folder = self.homes / (PREFIX + name) / "projects"
        return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.fixture
def env() -> Iterator[Env]:
    base = Path(subprocess.check_output(["mktemp", "-d", "/tmp/teamhub-projects-XXXXXX"],
                                        text=True).strip())
    base.chmod(0o755)
    e = Env(base, base / "teamhub.toml", base / "state", base / "homes", base / "projects", [])
    e.config.write_text(f'[paths]\nstate_dir = "{e.state}"\nhome_root = "{e.homes}"\n'
                        f'[users]\nsystem_prefix = "{PREFIX}"\n'
                        f'[projects]\nroot = "{e.root}"\n')
    try:
        yield e
    finally:
        for name in e.made:
            if users.lookup(name) is not None:
                subprocess.run(["pkill", "-KILL", "-u", name], check=False)
                subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_writers_share_files_readers_read_outsiders_see_nothing(env: Env) -> None:
    a, b, r, out = env.user(), env.user(), env.user(), env.user()
    env.teamhub("project", "create", "data", "--writers", f"{a},{b}", "--readers", r)
    folder = env.root / "data"
    st = folder.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, acl.FOLDER_MODE)
    f = folder / "a.txt"
    assert env.ok_as(a, "sh", "-c", f"echo one > {f} && mkdir {folder}/sub && "
                     f"echo deep > {folder}/sub/x.txt")
    assert env.ok_as(b, "sh", "-c", f"echo two >> {f} && echo more >> {folder}/sub/x.txt")
    assert env.run_as(r, "cat", str(f)).stdout == "one\ntwo\n"
    assert env.ok_as(r, "cp", str(f), "/tmp/" + r + ".copy")
    os.unlink("/tmp/" + r + ".copy")
    assert not env.ok_as(r, "sh", "-c", f"echo three >> {f}")
    assert not env.ok_as(r, "touch", str(folder / "new"))
    assert not env.ok_as(out, "ls", str(folder))
    assert not env.ok_as(out, "cat", str(f))
    # A writer may delete another writer's files and folders.
    assert env.ok_as(b, "rm", "-r", str(f), str(folder / "sub"))
    assert env.links(a) == env.links(r) == ["data"] and env.links(out) == []
    assert os.readlink(env.homes / (PREFIX + a) / "projects" / "data") == str(folder)


def test_revoke_is_recursive_and_immediate(env: Env) -> None:
    a, b = env.user(), env.user()
    env.teamhub("project", "create", "p", "--writers", f"{a},{b}")
    assert env.ok_as(a, "sh", "-c", f"mkdir {env.root}/p/d && echo s > {env.root}/p/d/f")
    # B's own file, hard-linked into B's home: ownership must not outlive the grant.
    planted = env.homes / (PREFIX + b) / "kept"
    assert env.ok_as(b, "sh", "-c", f"echo mine > {env.root}/p/d/g && ln {env.root}/p/d/g "
                     f"{planted}")
    env.teamhub("project", "revoke", "p", b)
    assert not env.ok_as(b, "cat", f"{env.root}/p/d/f")
    assert not env.ok_as(b, "cat", str(planted))
    assert (env.root / "p" / "d" / "g").stat().st_uid == 0
    assert env.run_as(a, "cat", f"{env.root}/p/d/g").stdout == "mine\n"
    for path in (env.root / "p", env.root / "p" / "d", env.root / "p" / "d" / "f"):
        assert PREFIX + b not in acl.named_users(path)
    assert PREFIX + b not in acl.named_users(env.root / "p" / "d", default=True)
    assert env.links(b) == [] and env.links(a) == ["p"]
    assert [r["action"] for r in json.loads(env.teamhub("project", "log", "p", "--json")
                                            .output)] == ["create", "revoke"]


def test_tampering_is_undone_by_repair_and_symlinks_are_not_followed(env: Env) -> None:
    a, out = env.user(), env.user()
    env.teamhub("project", "create", "p", "--writers", a)
    outside = env.base / "outside.txt"
    outside.write_text("secret")
    outside.chmod(0o600)
    assert env.ok_as(a, "sh", "-c", f"echo x > {env.root}/p/f && ln -s {outside} "
                     f"{env.root}/p/link")
    subprocess.run(["chmod", "-R", "777", str(env.root / "p")], check=True)
    assert env.ok_as(out, "cat", f"{env.root}/p/f")  # tampered: open to all
    env.teamhub("project", "repair")
    assert not env.ok_as(out, "cat", f"{env.root}/p/f")
    assert env.ok_as(a, "sh", "-c", f"echo y >> {env.root}/p/f")
    assert (env.root / "p").stat().st_mode & 0o7777 == acl.FOLDER_MODE
    assert acl.named_users(outside) == {} and outside.stat().st_mode & 0o777 == 0o600
    # A link the user removed comes back; a link of their own stays.
    (env.homes / (PREFIX + a) / "projects" / "p").unlink()
    os.symlink("/tmp", env.homes / (PREFIX + a) / "projects" / "mine")
    env.teamhub("project", "repair", "p")
    assert env.links(a) == ["mine", "p"]


def test_delete_refuses_when_not_empty_and_force_moves_to_trash(env: Env) -> None:
    a = env.user()
    env.teamhub("project", "create", "p", "--writers", a)
    assert env.ok_as(a, "sh", "-c", f"echo keep > {env.root}/p/f")
    result = env.teamhub("project", "delete", "p", ok=False)
    assert result.exit_code != 0 and "not empty" in result.output
    assert (env.root / "p" / "f").read_text() == "keep\n"
    env.teamhub("project", "delete", "p", "--force")
    assert not (env.root / "p").exists() and env.links(a) == []
    (trashed,) = (env.root / ".trash").iterdir()
    assert (trashed / "f").read_text() == "keep\n"
    assert (env.root / ".trash").stat().st_mode & 0o777 == 0o700
    env.teamhub("project", "create", "q")
    env.teamhub("project", "delete", "q")
    assert not (env.root / "q").exists()


def test_group_grants_follow_membership(env: Env) -> None:
    a, b = env.user(), env.user()
    env.teamhub("group", "create", "team")
    env.teamhub("project", "create", "p", "--readers", "@team")
    assert not env.ok_as(a, "ls", f"{env.root}/p")
    env.teamhub("group", "add", "team", a, b)
    assert env.ok_as(a, "ls", f"{env.root}/p") and env.links(b) == ["p"]
    env.teamhub("group", "remove", "team", b)
    assert not env.ok_as(b, "ls", f"{env.root}/p") and env.links(b) == []
    show = json.loads(env.teamhub("project", "show", "p", "--json").output)
    assert show["readers"] == ["@team"] and show["effective"] == {a: "read"}
    env.teamhub("group", "delete", "team")
    assert not env.ok_as(a, "ls", f"{env.root}/p") and env.links(a) == []


def test_archive_makes_everyone_read_only(env: Env) -> None:
    a = env.user()
    env.teamhub("project", "create", "p", "--writers", a)
    assert env.ok_as(a, "sh", "-c", f"echo x > {env.root}/p/f")
    env.teamhub("project", "archive", "p")
    assert env.run_as(a, "cat", f"{env.root}/p/f").stdout == "x\n"
    assert not env.ok_as(a, "sh", "-c", f"echo y >> {env.root}/p/f")
    assert not env.ok_as(a, "chmod", "666", f"{env.root}/p/f")  # no longer the owner
    assert not env.ok_as(a, "touch", f"{env.root}/p/g")


def test_account_created_later_gets_access_and_removed_user_leaves_no_entry(env: Env) -> None:
    a = env.user()
    late = "u" + secrets.token_hex(3)
    AccountStore(env.state / "accounts.sqlite").add(late, PW)
    env.teamhub("project", "create", "p", "--writers", f"{a},{late}")
    from teamhub.projects.apply import Layout, Projects

    env.made.append(PREFIX + late)
    users.ensure_system_user(PREFIX + late, registry=env.registry,
                             home_root=env.homes, shell="/bin/sh")
    layout = Layout(env.root, env.state / "accounts.sqlite", PREFIX, env.registry)
    Projects(layout).apply_for_user(late)  # what the spawner does after creating the account
    assert env.ok_as(late, "touch", f"{env.root}/p/f") and env.links(late) == ["p"]
    env.teamhub("user", "remove", a, "--yes")
    assert PREFIX + a not in acl.named_users(env.root / "p")
    assert json.loads(env.teamhub("project", "show", "p", "--json").output)["writers"] == [late]


@pytest.mark.parametrize("args, message", [
    (("project", "create", "Data"), "upper-case"),
    (("project", "create", "../x"), "invalid project name"),
    (("project", "create", "%2e%2e"), "invalid project name"),
    (("project", "create", "x" * 200), "too long"),
    (("project", "create", "p", "--writers", "nobody-here"), "does not exist"),
    (("project", "grant", "nope", "root", "--read"), "does not exist"),
    (("group", "add", "nope", "x"), "does not exist"),
    (("group", "create", "../g"), "invalid group name"),
])
def test_bad_input_is_one_line_and_changes_nothing(env: Env, args: tuple[str, ...],
                                                   message: str) -> None:
    result = env.teamhub(*args, ok=False)
    assert result.exit_code != 0
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not env.root.exists() or os.listdir(env.root) == []


def test_block_ends_processes_and_access_and_unblock_gives_access_back(env: Env) -> None:
    a, b = env.user(), env.user()
    env.teamhub("group", "create", "team")
    env.teamhub("group", "add", "team", b)
    env.teamhub("project", "create", "p", "--writers", a, "--readers", "@team")
    env.teamhub("project", "create", "q", "--readers", b)
    assert env.ok_as(a, "sh", "-c", f"echo s > {env.root}/p/f")
    pw = pwd.getpwnam(PREFIX + b)
    sleeper = subprocess.Popen(["sleep", "300"], user=pw.pw_uid, group=pw.pw_gid,
                               extra_groups=[])
    try:
        out = env.teamhub("user", "block", b).output
        assert sleeper.wait(timeout=20) is not None
    finally:
        sleeper.kill()
    assert "ended 1 process(es)" in out and "removed access to projects: p, q" in out
    assert not env.ok_as(b, "cat", f"{env.root}/p/f")
    for folder in ("p", "q"):
        assert PREFIX + b not in acl.named_users(env.root / folder)
    assert env.links(b) == [] and env.links(a) == ["p"]
    show = json.loads(env.teamhub("project", "show", "p", "--json").output)
    assert show["effective"] == {a: "write"} and show["readers"] == ["@team"]
    # A repair, a regrant or a group change must not hand the blocked user access back.
    env.teamhub("project", "repair")
    env.teamhub("project", "grant", "q", b, "--write")
    assert PREFIX + b not in acl.named_users(env.root / "q") and env.links(b) == []
    assert "already blocked" in env.teamhub("user", "block", b).output
    out = env.teamhub("user", "unblock", b).output
    assert "project access: p (read), q (write)" in out
    assert env.run_as(b, "cat", f"{env.root}/p/f").stdout == "s\n"
    assert env.ok_as(b, "touch", f"{env.root}/q/new")
    assert env.links(b) == ["p", "q"]
    actions = [r["action"] for r in json.loads(env.teamhub("project", "log", "p", "--json")
                                               .output)]
    assert actions == ["create", "block", "repair", "unblock"]


def _made_while_writer(env: Env, name: str) -> tuple[Path, Path]:
    """NAME (a writer of p) makes a file and a folder; returns both."""
    f, d = env.root / "p" / f"{name}.txt", env.root / "p" / f"{name}-dir"
    assert env.ok_as(name, "sh", "-c", f"echo mine > {f} && mkdir {d} && echo in > {d}/x")
    return f, d


def _assert_read_only(env: Env, name: str, f: Path, d: Path) -> None:
    """NAME can read F and D but not change them: neither content nor modes nor ACLs."""
    assert env.run_as(name, "cat", str(f)).stdout == "mine\n"
    assert env.run_as(name, "cat", str(d / "x")).stdout == "in\n"
    assert env.ok_as(name, "ls", str(d))
    assert not env.ok_as(name, "sh", "-c", f"echo more >> {f}")
    assert not env.ok_as(name, "touch", str(d / "new"))
    assert not env.ok_as(name, "mkdir", str(d / "sub"))
    for path in (f, d):
        assert not env.ok_as(name, "chmod", "777", str(path)), path
        # Re-sharing: the owner of a file may set any ACL on it.
        assert not env.ok_as(name, "setfacl", "-m", "o::rwx", str(path)), path
        assert path.stat().st_uid == 0
    assert f.read_text() == "mine\n" and sorted(os.listdir(d)) == ["x"]


def test_downgrade_to_read_takes_write_away_from_own_files(env: Env) -> None:
    a, b = env.user(), env.user()
    env.teamhub("project", "create", "p", "--writers", f"{a},{b}")
    f, d = _made_while_writer(env, a)
    env.teamhub("project", "grant", "p", a, "--read")
    _assert_read_only(env, a, f, d)
    # The other writer keeps full use of what A made.
    assert env.ok_as(b, "sh", "-c", f"echo b >> {f} && touch {d}/b")


def test_group_downgrade_takes_write_away_from_own_files(env: Env) -> None:
    a = env.user()
    env.teamhub("group", "create", "team")
    env.teamhub("group", "add", "team", a)
    env.teamhub("project", "create", "p", "--writers", "@team")
    f, d = _made_while_writer(env, a)
    env.teamhub("project", "grant", "p", "@team", "--read")
    _assert_read_only(env, a, f, d)


def test_leaving_writer_group_with_reader_grant_left_is_read_only(env: Env) -> None:
    a = env.user()
    env.teamhub("group", "create", "team")
    env.teamhub("group", "add", "team", a)
    env.teamhub("project", "create", "p", "--writers", "@team", "--readers", a)
    f, d = _made_while_writer(env, a)
    env.teamhub("group", "remove", "team", a)
    _assert_read_only(env, a, f, d)


def test_repair_and_server_start_disown_readers(env: Env) -> None:
    """Ownership drift (a reader owning files) is undone by repair and by apply_for_user."""
    from teamhub.projects.apply import Layout, Projects

    a = env.user()
    env.teamhub("project", "create", "p", "--readers", a)
    for how in ("repair", "server start"):
        f, d = env.root / "p" / "f.txt", env.root / "p" / "f-dir"
        shutil.rmtree(d, ignore_errors=True)
        f.write_text("mine\n")
        d.mkdir()
        (d / "x").write_text("in\n")
        uid = pwd.getpwnam(PREFIX + a).pw_uid
        for path in (f, d, d / "x"):
            os.chown(path, uid, uid)
        if how == "repair":
            env.teamhub("project", "repair", "p")
        else:
            Projects(Layout(env.root, env.state / "accounts.sqlite", PREFIX,
                            env.registry)).apply_for_user(a)
        _assert_read_only(env, a, f, d)
