"""The root helper's door against a real running helper: a compromised hub, simulated.

Code runs as a throwaway unprivileged system account that the helper takes for the hub's
account (as the hub would be after a remote code execution) and talks to the helper's
socket directly, with no teamhub code in between. Every request outside what the hub may
ask is refused, logged with the peer's pid, and the helper goes on serving.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from teamhub.spawners import forkserver, lsp
from teamhub.spawners.rootdoor import Policy
from teamhub.system import users
from teamhub.system.sandbox import LaunchSpec, current_rlimits

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates real Linux accounts: needs root"),
]

PREFIX = "jupyter-"
# The "compromised hub": raw JSON lines on the socket, as any code could send them.
CLIENT = r"""
import json, os, socket, sys
path, requests = sys.argv[1], json.loads(sys.argv[2])
answers = []
for req in requests:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as exc:
        answers.append({"connect": exc.errno})
        continue
    f = s.makefile("rb")
    try:
        s.sendall(req["line"].encode())
    except OSError:
        pass  # refused before it read the request: its answer is waiting all the same
    if "spec" in req:
        first = f.readline()
        s.sendall(req["spec"].encode())
        s.shutdown(socket.SHUT_WR)
        answer = f.readline()
        answers.append({"first": json.loads(first or b"null"),
                        "answer": json.loads(answer or b"null")})
    elif req.get("stream"):  # {"line"} objects, then the answer
        lines, answer = [], None
        for raw in f:
            answer = json.loads(raw)
            if set(answer) != {"line"}:
                break
            lines.append(answer["line"])
            answer = None
        answers.append({"lines": lines, "answer": answer})
    else:
        answers.append({"answer": json.loads(f.readline() or b"null")})
    s.close()
print(json.dumps({"pid": os.getpid(), "answers": answers}))
"""


def _name(prefix: str) -> str:
    return prefix + secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))


def _userdel(name: str) -> None:
    if users.lookup(name) is not None:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        subprocess.run(["groupdel", name], capture_output=True, check=False)


@dataclass
class Helper:
    socket: Path
    log: Path
    policy: Policy
    hub: pwd.struct_passwd
    user: str  # a hub user whose Linux account teamhub created
    account: users.SystemUser
    foreign: str  # a hub user whose would-be account exists but teamhub did not create
    proc: subprocess.Popen[bytes]

    def ask_as(self, uid: int, requests: list[dict[str, str]]) -> tuple[int, list[Any]]:
        """Send REQUESTS as UID, each on its own connection: (client pid, answers)."""
        gid = pwd.getpwuid(uid).pw_gid
        out = subprocess.run([sys.executable, "-I", "-c", CLIENT, str(self.socket),
                              json.dumps(requests)], user=uid, group=gid, extra_groups=[],
                             cwd="/", capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode(errors="replace")
        result = json.loads(out.stdout)
        return result["pid"], result["answers"]

    def ask(self, *requests: dict[str, Any]) -> tuple[int, list[Any]]:
        return self.ask_as(self.hub.pw_uid, [_line(r) for r in requests])

    def spawn(self, spec: LaunchSpec | dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = spec.to_json().decode() if isinstance(spec, LaunchSpec) else json.dumps(spec)
        pid, answers = self.ask_as(self.hub.pw_uid, [{"line": '{"op": "spawn"}\n',
                                                      "spec": body}])
        return pid, answers[0]

    def logged(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [x for x in self.log.read_text(errors="replace").splitlines() if text in x]
            if lines:
                return lines[-1]
            time.sleep(0.1)
        raise AssertionError(f"not in the helper's log: {text!r}\n{self.log.read_text()[-3000:]}")

    def good_spec(self) -> LaunchSpec:
        """What the hub's spawner sends for self.user: the helper accepts it."""
        a, user = self.account, self.user
        env = {"JUPYTERHUB_USER": user, "JUPYTERHUB_SERVER_NAME": "",
               "JUPYTERHUB_SERVICE_PREFIX": f"/user/{user}/",
               "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{_free_port()}/user/{user}/",
               "JUPYTERHUB_API_TOKEN": secrets.token_hex(16),
               "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
               "USER": a.name, "LOGNAME": a.name, "HOME": a.home, "SHELL": a.shell,
               "PATH": "/usr/bin:/bin",
               "JUPYTER_RUNTIME_DIR": f"{self.policy.private_runtime_root}/{a.uid}"}
        return LaunchSpec(argv=[self.policy.program, *self.policy.args,
                                *lsp.server_args(a.home)],
                          env=env, cwd=a.home, username=a.name, uid=a.uid, gid=a.gid,
                          umask=0o077, log_path=f"{self.policy.server_log_dir}/{user}.log",
                          rlimits=current_rlimits())


def _line(request: dict[str, Any]) -> dict[str, str]:
    return {"line": json.dumps(request) + "\n"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def helper() -> Iterator[Helper]:
    # Not under pytest's tmp folder (0700 root): the hub's account must reach the socket.
    root = Path(tempfile.mkdtemp(prefix="teamhub-helper-"))
    os.chmod(root, 0o711)
    hub_name, user, foreign = _name("thhub"), _name("u"), _name("f")
    made = [hub_name, PREFIX + user, PREFIX + foreign]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    hub_name], check=True, capture_output=True)
    # An ordinary account with the name teamhub would use, made by hand: not teamhub's.
    subprocess.run(["useradd", "--no-create-home", PREFIX + foreign], check=True,
                   capture_output=True)
    state = root / "state"
    state.mkdir(mode=0o700)
    (state / "logs").mkdir(mode=0o700)
    registry = state / "system_users.json"
    account = users.ensure_system_user(PREFIX + user, registry=registry,
                                       home_root=root / "home", shell="/bin/sh")
    policy = Policy(hub_uid=pwd.getpwnam(hub_name).pw_uid,
                    program=str(Path(sys.executable).parent / "jupyterhub-singleuser"),
                    args=["--KernelManager.transport=ipc"], registry=str(registry),
                    prefix=PREFIX, home_root=str(root / "home"), shell="/bin/sh",
                    private_runtime_root=str(root / "run"), private_tmp_root=str(root / "tmp"),
                    server_log_dir=str(state / "logs"),
                    user_envs_runtime=str(Path(sys.executable).parent.parent),
                    envs_root=str(root / "envs"), envs_uv=str(Path(sys.executable).parent / "uv"),
                    envs_python=sys.executable, hub_gid=pwd.getpwnam(hub_name).pw_gid)
    sock, log = root / "helper.sock", state / "helper.log"
    proc = forkserver.start(sock, sys.executable, log, policy)
    h = Helper(sock, log, policy, pwd.getpwnam(hub_name), user, account, foreign, proc)
    try:
        h.logged("ready on", timeout=180)
        yield h
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        for name in made:
            _userdel(name)
        shutil.rmtree(root, ignore_errors=True)


def _refused(helper: Helper, pid: int, answer: dict[str, Any], reason: str) -> None:
    assert "error" in answer, answer
    assert reason in answer["error"], answer
    line = helper.logged(f"refused pid {pid} uid {helper.hub.pw_uid}")
    assert reason in line, line


def _still_serving(helper: Helper) -> None:
    _, answers = helper.ask({"op": "status", "pid": 999999})
    assert answers[0]["answer"] == {"running": False, "known": False, "exit": None}


def test_socket_belongs_to_the_hub_account_only(helper: Helper) -> None:
    info = os.stat(helper.socket)
    assert info.st_uid == helper.hub.pw_uid
    assert stat.S_IMODE(info.st_mode) == 0o600
    nobody = pwd.getpwnam("nobody").pw_uid
    _, answers = helper.ask_as(nobody, [_line({"op": "status", "pid": 1})])
    assert answers == [{"connect": 13}]  # EACCES: cannot even connect


def test_a_peer_that_is_neither_root_nor_the_hub_is_refused(helper: Helper) -> None:
    os.chmod(helper.socket, 0o666)  # as if the socket's mode had been loosened
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
        pid, answers = helper.ask_as(nobody, [_line({"op": "status", "pid": 1})])
    finally:
        os.chmod(helper.socket, 0o600)
    assert "neither root nor the hub's account" in answers[0]["answer"]["error"]
    assert f"refused pid {pid} uid {nobody}" in helper.logged(f"refused pid {pid} ")
    _still_serving(helper)


@pytest.mark.parametrize("line, reason", [
    ('{"op": "format_disk"}\n', "unknown verb"),
    ('{"op": "status", \n', "not JSON"),
    ('["spawn"]\n', "not a JSON object"),
    ('{"op": "status", "pad": "' + "x" * 70000 + '"}\n', "over 65536 bytes"),
    ('{"op": "stop_scope", "user": "../../root"}\n', "bad user name"),
    ('{"op": "ensure_account", "user": "Root"}\n', "not in its canonical form"),
    ('{"op": "stop_scope", "user": "ok", "server": "../x"}\n', "bad server name"),
])
def test_bad_input_is_refused_and_logged(helper: Helper, line: str, reason: str) -> None:
    pid, answers = helper.ask_as(helper.hub.pw_uid, [{"line": line}])
    _refused(helper, pid, answers[0]["answer"], reason)
    _still_serving(helper)


def _spec_variants(h: Helper) -> dict[str, tuple[LaunchSpec, str]]:
    good = h.good_spec()
    root_env = {**good.env, "JUPYTERHUB_USER": "root", "JUPYTERHUB_SERVICE_PREFIX": "/user/root/",
                "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:9999/user/root/"}
    foreign_env = {**good.env, "JUPYTERHUB_USER": h.foreign,
                   "JUPYTERHUB_SERVICE_PREFIX": f"/user/{h.foreign}/"}
    foreign = pwd.getpwnam(PREFIX + h.foreign)
    return {
        "as root (uid in the spec)": (replace(good, username="root", uid=0, gid=0),
                                      "spec is for account"),
        "as root (user root)": (replace(good, env=root_env, username="root", uid=0, gid=0),
                                "does not exist"),
        "as a system account": (replace(good, username="daemon", uid=1, gid=1),
                                "spec is for account"),
        "as an account teamhub did not create": (
            replace(good, env=foreign_env, username=foreign.pw_name, uid=foreign.pw_uid,
                    gid=foreign.pw_gid, cwd="/"), "not created by teamhub"),
        "with its own argv": (replace(good, argv=["/bin/sh", "-c", "id > /tmp/owned"]),
                              "argv is not the server command"),
        "with extra arguments": (replace(good, argv=[*good.argv, "--ServerApp.ip=0.0.0.0"]),
                                 "argv is not the server command"),
        "with its own env": (replace(good, env={**good.env, "LD_PRELOAD": "/tmp/x.so"}),
                             "LD_PRELOAD"),
        "with another user's prefix": (
            replace(good, env={**good.env, "JUPYTERHUB_SERVICE_PREFIX": "/user/other/"}),
            "JUPYTERHUB_SERVICE_PREFIX"),
        "with a privileged port": (
            replace(good, env={**good.env, "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:80/"}),
            "JUPYTERHUB_SERVICE_URL"),
        "with its own cwd": (replace(good, cwd="/root"), "cwd"),
        "with root's log file": (replace(good, log_path="/etc/passwd"), "log file"),
        "with a scope outside teamhub's": (
            replace(good, scope={"unit": "ssh.service", "properties": {}}), "scope unit"),
        "into a container": (replace(good, container={"pid": 1, "id": "x", "keepalive": "/x"}),
                             "container starts are root's only"),
        "with a raised hard limit": (replace(good, rlimits={"RLIMIT_NOFILE": [10 ** 9, 10 ** 9]}),
                                     "rlimit"),
    }


VARIANTS = ["as root (uid in the spec)", "as root (user root)", "as a system account",
            "as an account teamhub did not create", "with its own argv", "with extra arguments",
            "with its own env", "with another user's prefix", "with a privileged port",
            "with its own cwd", "with root's log file", "with a scope outside teamhub's",
            "into a container", "with a raised hard limit"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_compromised_hub_cannot_start_another_server(helper: Helper, variant: str) -> None:
    spec, reason = _spec_variants(helper)[variant]
    pid, answer = helper.spawn(spec)
    child = answer["first"]["pid"]  # the helper forked a child to read the spec...
    _refused(helper, pid, answer["answer"], reason)  # ...which refused it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        time.sleep(0.1)  # reaped by the helper
    assert not os.path.exists(f"/proc/{child}") or "Z" in Path(
        f"/proc/{child}/stat").read_text().split()[2]
    assert not Path("/tmp/owned").exists()
    _still_serving(helper)


def test_a_spec_that_is_not_json_is_refused(helper: Helper) -> None:
    pid, answer = helper.spawn({"argv": "not a list"})
    _refused(helper, pid, answer["answer"], "non-empty argv")
    _still_serving(helper)


def test_the_hub_starts_and_signals_its_users_server(helper: Helper) -> None:
    """The rules let the spec the spawner builds through, and the hub may end that server."""
    pid, answer = helper.spawn(helper.good_spec())
    server = answer["answer"]["pid"]
    assert server == answer["first"]["pid"]
    assert users.lookup(helper.account.name) is not None
    status = Path(f"/proc/{server}/status").read_text()
    deadline = time.monotonic() + 60
    while "Uid:\t0" in status and time.monotonic() < deadline:  # until become() ran
        time.sleep(0.05)
        status = Path(f"/proc/{server}/status").read_text()
    assert f"Uid:\t{helper.account.uid}\t{helper.account.uid}" in status
    # What the hub's account could not make, the helper made: a fresh runtime folder
    # only the user can enter, and the server's log.
    runtime = os.stat(Path(helper.policy.private_runtime_root) / str(helper.account.uid))
    assert (runtime.st_uid, stat.S_IMODE(runtime.st_mode)) == (helper.account.uid, 0o700)
    assert (Path(helper.policy.server_log_dir) / f"{helper.user}.log").is_file()
    _, answers = helper.ask({"op": "signal", "user": helper.user, "pid": server,
                             "signal": int(signal.SIGKILL)})
    assert answers[0]["answer"] == {"ok": True}


def _descendants_running(root: int, marker: bytes) -> list[str]:
    """Command lines containing MARKER of processes below ROOT, now."""
    parents, lines = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
            lines[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry)] = int(stat_line.rsplit(")", 1)[1].split()[1])
    found = []
    for pid, cmdline in lines.items():
        if marker not in cmdline:
            continue
        up, seen = pid, set()
        while up in parents and up not in seen and up > 1:
            seen.add(up)
            up = parents[up]
            if up == root:
                found.append(cmdline.decode(errors="replace"))
                break
    return found


def test_a_spawns_checks_start_no_program(helper: Helper) -> None:
    """The checks of a spawn run in a fresh child of the helper: what they need of npm
    (the language servers' roots) the helper worked out before forking; asked in each
    child, every start of an unprivileged hub ran `npm prefix -g` (~0.14 s)."""
    if lsp.npm_global_prefix() is None:
        pytest.skip("no npm on this machine: nothing to ask it")
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.extend(_descendants_running(helper.proc.pid, b"npm"))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        _, answer = helper.spawn(helper.good_spec())
    finally:
        done.set()
        watcher.join()
    server = answer["answer"]["pid"]
    helper.ask({"op": "signal", "user": helper.user, "pid": server,
                "signal": int(signal.SIGKILL)})
    assert not seen, seen


def test_compromised_hub_cannot_signal_outside_a_users_scope(helper: Helper) -> None:
    victim = subprocess.Popen(["sleep", "300"])  # root's
    foreign = subprocess.Popen(["sleep", "300"], user=PREFIX + helper.foreign)
    try:
        for target, user, reason in [
            (1, helper.user, "bad pid"),
            (victim.pid, helper.user, "is not a process of"),
            (helper.proc.pid, helper.user, "is not a process of"),
            (foreign.pid, helper.user, "is not a process of"),
            (foreign.pid, helper.foreign, "not created by teamhub"),
        ]:
            pid, answers = helper.ask({"op": "signal", "user": user, "pid": target,
                                       "signal": int(signal.SIGKILL)})
            _refused(helper, pid, answers[0]["answer"], reason)
        pid, answers = helper.ask({"op": "signal", "user": helper.user, "pid": victim.pid,
                                   "signal": 31})
        _refused(helper, pid, answers[0]["answer"], "signal '31' is not one of")
        assert victim.poll() is None and foreign.poll() is None
    finally:
        for proc in (victim, foreign):
            proc.kill()
            proc.wait()
    _still_serving(helper)


def test_the_hub_makes_a_users_account_through_the_helper(helper: Helper) -> None:
    user = _name("n")
    try:
        _, answers = helper.ask({"op": "ensure_account", "user": user})
        made = users.lookup(PREFIX + user)
        assert made is not None, answers
        assert answers[0]["answer"] == {"uid": made.uid, "home": made.home}
        assert users.is_managed(PREFIX + user, registry=Path(helper.policy.registry))
    finally:
        _userdel(PREFIX + user)


def test_passwords_only_in_pam_mode(helper: Helper) -> None:
    pid, answers = helper.ask({"op": "check_password", "user": helper.user, "password": "x"})
    _refused(helper, pid, answers[0]["answer"], "PAM mode only")


def test_no_proxy_from_a_helper_root_started_without_one(helper: Helper) -> None:
    """A helper started without hub.unprivileged has no proxy in its policy: `start_proxy`
    is refused, for root (a root hub starts its own) and for the hub's account alike."""
    request = {"op": "start_proxy", "token": "ab" * 32}
    pid, answers = helper.ask(request)
    _refused(helper, pid, answers[0]["answer"], "no proxy to start")
    _, answers = helper.ask_as(0, [_line(request)])
    assert "root starts its own" in answers[0]["answer"]["error"]
    _still_serving(helper)


def test_policy_round_trips() -> None:
    policy = Policy(hub_uid=5, args=["--a=1"], allowed_groups=["g"])
    assert Policy.from_json(policy.to_json()) == policy
    assert json.loads(policy.to_json()) == asdict(policy)


def test_pam_mode_checks_passwords_and_refuses_system_accounts(helper: Helper) -> None:
    """PAM mode: the helper checks a password for the hub (which cannot read /etc/shadow),
    and serves only eligible accounts: never root, never one below UID_MIN."""
    root = Path(tempfile.mkdtemp(prefix="teamhub-pam-helper-"))
    os.chmod(root, 0o711)
    person, password = _name("p"), "a fine pam password"
    subprocess.run(["useradd", "--no-create-home", person], check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{person}:{password}\n", text=True, check=True)
    policy = replace(helper.policy, existing_accounts=True, min_uid=1000)
    pam = Helper(root / "helper.sock", root / "helper.log", policy, helper.hub, person,
                 users.lookup(person), "", forkserver.start(root / "helper.sock",
                                                            sys.executable,
                                                            root / "helper.log", policy))
    try:
        pam.logged("ready on", timeout=180)
        _, answers = pam.ask({"op": "check_password", "user": person, "password": password},
                             {"op": "check_password", "user": person, "password": "wrong"})
        assert [a["answer"] for a in answers] == [{"ok": True}, {"ok": False}]
        for user, reason in [("root", "may not run a server"), ("daemon", "system account")]:
            pid, answers = pam.ask({"op": "check_password", "user": user, "password": "x"})
            _refused(pam, pid, answers[0]["answer"], reason)
            pid, answers = pam.ask({"op": "ensure_account", "user": user})
            _refused(pam, pid, answers[0]["answer"], reason)
        good = pam.good_spec()
        spec = replace(good, env={**good.env, "JUPYTERHUB_USER": "daemon",
                                  "JUPYTERHUB_SERVICE_PREFIX": "/user/daemon/"},
                       username="daemon", uid=1, gid=1)
        pid, answer = pam.spawn(spec)
        _refused(pam, pid, answer["answer"], "system account")
    finally:
        pam.proc.terminate()
        pam.proc.wait(timeout=60)
        _userdel(person)
        shutil.rmtree(root, ignore_errors=True)


def test_the_helper_never_writes_a_server_log_through_a_link(helper: Helper) -> None:
    """Once the hub's account owns the logs folder it could put a link where a user's log
    goes: the helper, which opens that log as root, refuses instead of following it."""
    log = Path(helper.policy.server_log_dir) / f"{helper.user}.log"
    target = Path(tempfile.mkdtemp(prefix="teamhub-victim-")) / "shadow"
    target.write_text("precious\n")
    log.unlink(missing_ok=True)
    log.symlink_to(target)
    try:
        _, answer = helper.spawn(helper.good_spec())
        assert "not a plain file" in answer["answer"]["error"] or \
            "Too many levels of symbolic links" in answer["answer"]["error"], answer
        assert target.read_text() == "precious\n"
        helper.logged(f"could not prepare {helper.account.name}'s server")
        _still_serving(helper)
    finally:
        log.unlink()
        shutil.rmtree(target.parent)


# A "hub" that starts the helper, drops root (as hub.unprivileged does: the kernel then
# sends the helper no parent-death signal) and fails a second later, while the helper
# still preloads.
_FAILING_HUB = r"""
import os, subprocess, sys, time
log = open(sys.argv[2], "wb")
helper = subprocess.Popen([sys.executable, "-m", "teamhub.spawners.forkserver", sys.argv[1]],
                          stdin=subprocess.DEVNULL, stdout=log, stderr=log)
print(helper.pid, flush=True)
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
time.sleep(1)
os._exit(1)
"""


def test_a_helper_whose_hub_ended_while_it_loaded_stops(tmp_path: Path) -> None:
    """The hub can fail at start (e.g. at its proxy) while the helper still preloads: the
    helper must notice, once loaded, that its hub is gone and end, not serve on."""
    log = tmp_path / "log"
    proc = subprocess.run([sys.executable, "-c", _FAILING_HUB, str(tmp_path / "helper.sock"),
                           str(log)], capture_output=True, text=True, timeout=60)
    pid = int(proc.stdout.split()[0])
    try:
        deadline = time.monotonic() + 120
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}").exists(), log.read_text()
        assert "has ended: stopping" in log.read_text(), log.read_text()
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


# --- My environments: `teamhub-env` as a user (user_env) -------------------------------


def _user_env(helper: Helper, user: str, args: Any, **extra: Any) -> tuple[int, dict[str, Any]]:
    request = {"op": "user_env", "user": user, "args": args, **extra}
    pid, answers = helper.ask_as(helper.hub.pw_uid, [{**_line(request), "stream": "1"}])
    return pid, answers[0]


def test_the_hub_runs_teamhub_env_as_the_user_through_the_helper(helper: Helper) -> None:
    """Lines stream before the answer; the command ran as the user's account, in its home."""
    _, got = _user_env(helper, helper.user, ["list", "--json"])
    assert got["answer"] == {"exit": 0}, got
    assert json.loads("\n".join(got["lines"])) == [], got
    # A failing command: its error line streamed, its exit code the answer.
    _, got = _user_env(helper, helper.user, ["delete", "nothere"])
    assert got["answer"]["exit"] != 0, got
    assert any("nothere" in line for line in got["lines"]), got
    # As the account: a venv it makes is its own.
    venv = Path(helper.account.home) / ".venvs" / "solo"
    _, got = _user_env(helper, helper.user, ["create", "solo", "--"])
    assert got["answer"] == {"exit": 0}, got
    assert len(got["lines"]) > 1, got
    assert venv.stat().st_uid == helper.account.uid, got
    assert (venv / "bin" / "python").lstat().st_uid == helper.account.uid
    _, got = _user_env(helper, helper.user, ["delete", "solo"])
    assert got["answer"] == {"exit": 0} and not venv.exists(), got
    _still_serving(helper)


def test_a_system_account_in_a_forged_registry_gets_no_user_env(helper: Helper) -> None:
    name = _name("s")
    sysname = PREFIX + name
    home = Path(helper.policy.home_root) / sysname
    registry = Path(helper.policy.registry)
    before = registry.read_text()
    subprocess.run(["useradd", "--system", "--create-home", "--home-dir", str(home),
                    "--shell", "/bin/sh", sysname], check=True, capture_output=True)
    try:
        entries = json.loads(before)
        entries[sysname] = {"uid": pwd.getpwnam(sysname).pw_uid, "home": str(home)}
        registry.write_text(json.dumps(entries))
        pid, got = _user_env(helper, name, ["list", "--json"])
        assert got["lines"] == [], got
        _refused(helper, pid, got["answer"], "is root or a system account")
    finally:
        registry.write_text(before)
        _userdel(sysname)
    _still_serving(helper)


@pytest.mark.parametrize("who, args, extra, reason", [
    ("root", ["list", "--json"], {}, "root"),
    ("foreign", ["list", "--json"], {}, "not created by teamhub"),
    ("nobody", ["list", "--json"], {}, "nobody"),
    ("user", ["create", "../x", "--", "six"], {}, "invalid environment name"),
    ("user", ["create", "ok", "--", "--index-url=http://evil"], {}, "not a package name"),
    ("user", ["create", "ok", "--", "six", "-e/tmp"], {}, "not a package name"),
    ("user", ["run", "x"], {}, "is not what this page runs"),
    ("user", ["list", "--json", "--path=/"], {}, "is not what this page runs"),
    ("user", "list --json", {}, "must be a list"),
    ("user", ["list", "--json"], {"env": {"UV_INDEX_URL": "http://evil"}}, "unexpected field"),
    ("Root", ["list", "--json"], {}, "canonical form"),
])
def test_compromised_hub_cannot_run_other_commands_as_a_user(
        helper: Helper, who: str, args: Any, extra: dict[str, Any], reason: str) -> None:
    user = {"user": helper.user, "foreign": helper.foreign}.get(who, who)
    pid, got = _user_env(helper, user, args, **extra)
    assert got["lines"] == [], got
    _refused(helper, pid, got["answer"], reason)
    assert not (Path(helper.account.home) / ".venvs" / "ok").exists()
    _still_serving(helper)


# --- shared environment builds (env_build) ----------------------------------------------


@pytest.mark.parametrize("request_, reason", [
    ({"action": "create", "env": "../etc", "packages": []}, "bad environment name"),
    ({"action": "create", "env": "Upper", "packages": []}, "bad environment name"),
    ({"action": "build", "env": "ok", "packages": []}, "unknown action"),
    ({"action": "create", "env": "ok", "packages": ["--index-url=http://evil"]},
     "not a package name"),
    ({"action": "create", "env": "ok", "packages": ["six", "-e/tmp/x"]}, "not a package name"),
    ({"action": "create", "env": "ok", "packages": ["six idna"]}, "not a package name"),
    ({"action": "create", "env": "ok", "packages": "six"}, "must be a list"),
    ({"action": "create", "env": "ok", "packages": [], "groups": ["Not A Group"]},
     "bad group name"),
    ({"action": "install", "env": "ok", "packages": ["six"], "groups": []}, "takes no groups"),
    ({"action": "install", "env": "ok", "packages": []}, "needs packages"),
    ({"action": "create", "env": "ok", "packages": [], "python": "/tmp/evil"},
     "unexpected field"),
])
def test_compromised_hub_cannot_build_outside_the_rules(
        helper: Helper, request_: dict[str, Any], reason: str) -> None:
    request = {"op": "env_build", **request_}
    pid, answers = helper.ask_as(helper.hub.pw_uid, [{**_line(request), "stream": "1"}])
    assert answers[0]["lines"] == [], answers
    _refused(helper, pid, answers[0]["answer"], reason)
    assert not (Path(helper.policy.envs_root) / "ok").exists()
    _still_serving(helper)
