"""spawner.backend = "docker": each user's server in its own container on a real Docker
engine, as their own Linux account, hardened, with the same limits, surviving hub restarts.

The module's hub runs unprivileged (hub.unprivileged, its own random account): every
container is made, watched and removed by the root helper's container verbs, and a
compromised hub (its account) can neither use the Docker socket nor get the helper to run
anything but a checked server. The second hub (`volume_hub`) runs as root: the spawner's
own Docker calls, the fast start through the root-only fork server, and the slow fallback.

The engine is the machine's own, started here without any bridge network if it is not
running (tests/support/docker_engine.py). The image is built once with the real
`teamhub image build` and kept between sessions (cached by its recipe hash, like the
systemd test image); everything else made here (containers, a per-run image tag, Linux
users, folders) is removed at the end.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubProcess, runtime_dir, unique, world_dir
from support.unprivileged import as_hub_account, remove_account

from teamhub.spawners.docker import KEEPALIVE
from teamhub.system import nsenter
from teamhub.system.containers import LABEL_USER
from teamhub.system.docker import Engine, socket_path

pytestmark = [pytest.mark.hub, pytest.mark.system, pytest.mark.docker]

TEST_IMAGE = "teamhub-test"
MEMORY = 1024**3
TASKS = 512


def teamhub_cli(*args: str, timeout: float = 120,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TEAMHUB_")}
    return subprocess.run([str(runtime_dir() / "bin" / "teamhub"), *args], capture_output=True,
                          text=True, timeout=timeout, env={**base, **(env or {})})


@pytest.fixture(scope="module")
def image(engine: Engine) -> str:
    """The test image, built once by `teamhub image build` (minutes) and then reused."""
    started = time.monotonic()
    done = teamhub_cli("image", "build", TEST_IMAGE, timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith(f"teamhub/{TEST_IMAGE}:")
    print(f"image {TEST_IMAGE}: {time.monotonic() - started:.1f}s")
    again = teamhub_cli("image", "build", TEST_IMAGE, timeout=120)
    assert again.returncode == 0 and "up to date" in again.stderr, again.stderr
    return TEST_IMAGE


@pytest.fixture(scope="module")
def hub(engine: Engine, image: str) -> Iterator[HubProcess]:
    # Per-run names for the same image: the default (the missing-image test takes it away),
    # one more everyone may choose, and one for the members of a group only.
    run_image, other_image, group_image = unique("thd"), unique("thdo"), unique("thdg")
    for tag in (run_image, other_image, group_image):
        engine.tag(f"teamhub/{image}:latest", f"teamhub/{tag}", "latest")
    group = unique("ml")
    projects = world_dir("teamhub-projroot-")
    envs = world_dir("teamhub-envs-")
    # Not pytest's tmp_path: the hub's account must reach its state folder (root-only 0700).
    root = world_dir("teamhub-dockhub-")
    h = HubProcess(root, extra_toml=f"""
[spawner]
backend = "docker"

[docker]
image = "{run_image}"

[docker.images.{other_image}]
display = "Second image"

[docker.images.{group_image}]
display = "Group image"
groups = ["{group}"]

[projects]
root = "{projects}"

[envs]
root = "{envs}"
""")
    h.account = unique("thub")
    text = h.config.read_text()
    h.config.write_text(text.replace(
        "[hub]\n", f'[hub]\naccount = "{h.account}"\nunprivileged = true\n', 1))
    h.image, h.other_image, h.group_image, h.group = run_image, other_image, group_image, group
    h.projects_root = projects
    # A server dying at start is made here by the user's own ~/.jupyter config, which
    # teamhub ignores by default (README "Browser isolation"): read it in this hub.
    confd = h.config.parent / "jupyterhub_config.d"
    confd.mkdir()
    (confd / "60-user-config.py").write_text("c.Spawner.disable_user_config = False\n")
    h.envs_root = envs
    h.ada, h.bob = unique("ada"), unique("bob")
    h.users = [h.ada, h.bob]
    try:
        for key, value in (("limits.enabled", "true"), ("limits.memory", "1G"),
                           ("limits.cpu", "1"), ("limits.tasks", str(TASKS))):
            h.teamhub("config", "set", key, value)
        h.add_user(h.ada, PASSWORD)
        h.add_user(h.bob, PASSWORD)
        h.teamhub("project", "create", "shared", "--writers", h.ada, "--readers", h.bob)
        h.teamhub("env", "create", "shared", "six")
        h.teamhub("group", "create", group)
        h.start()
        yield h
    finally:
        h.stop()
        for name in h.users:
            engine.remove(f"teamhub-{name}")
        try:
            h.cleanup()
        finally:
            remove_account(h, h.account, "userdel")
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(projects, ignore_errors=True)
            shutil.rmtree(envs, ignore_errors=True)
            for tag in (run_image, other_image, group_image):
                engine.remove_image(f"teamhub/{tag}:latest")


def login(hub: HubProcess, name: str) -> Browser:
    b = Browser(hub.url)
    assert b.login(name, PASSWORD).status_code == 302
    return b


@pytest.fixture(scope="module")
def ada(hub: HubProcess) -> Browser:
    b = login(hub, hub.ada)
    started = time.monotonic()
    b.start_server(hub.ada)
    assert b.open_lab(hub.ada).status_code == 200
    print(f"single spawn, request to Lab 200 through the proxy: {time.monotonic() - started:.2f}s")
    return b


@pytest.fixture(scope="module")
def bob(hub: HubProcess) -> Browser:
    b = login(hub, hub.bob)
    b.start_server(hub.bob)
    assert b.open_lab(hub.bob).status_code == 200
    return b


@pytest.fixture(scope="module")
def ada_kernel(hub: HubProcess, ada: Browser) -> str:
    kernel = ada.new_kernel(hub.ada)
    ada.wait_kernel(hub.ada, kernel)
    return kernel


@pytest.fixture(scope="module")
def bob_kernel(hub: HubProcess, bob: Browser) -> str:
    kernel = bob.new_kernel(hub.bob)
    bob.wait_kernel(hub.bob, kernel)
    return kernel


def run(b: Browser, name: str, kernel: str, code: str) -> str:
    out = b.execute(name, kernel, code)
    assert not out["error"], out
    return out["result"] or out["stdout"]


def test_each_user_runs_code_in_their_own_container(hub: HubProcess, engine: Engine,
                                                     ada: Browser, bob: Browser,
                                                     ada_kernel: str, bob_kernel: str) -> None:
    assert run(ada, hub.ada, ada_kernel, "5 * 4") == "20"
    assert run(bob, hub.bob, bob_kernel, "5 * 4") == "20"
    for name in hub.users:
        info = engine.container(f"teamhub-{name}")
        assert info is not None and info["State"]["Running"]
        assert info["Config"]["Labels"][LABEL_USER] == name
        assert info["Config"]["Image"] == f"teamhub/{hub.image}:latest"
        host = info["HostConfig"]
        assert host["NetworkMode"] == "host" and not host.get("PortBindings")
        account = pwd.getpwnam(hub.system_user(name))
        assert info["Config"]["User"] == f"{account.pw_uid}:{account.pw_gid}"
    # The kernel really is inside: its cgroup is the container's.
    cgroup = run(ada, hub.ada, ada_kernel, "print(open('/proc/self/cgroup').read())")
    ident = engine.container(f"teamhub-{hub.ada}")["Id"]
    assert ident in cgroup


def test_status_shows_each_servers_container(hub: HubProcess, engine: Engine, ada: Browser,
                                             bob: Browser) -> None:
    servers = json.loads(hub.teamhub("status", "--json").stdout)["servers"]
    shown = {s["user"]: s["container"] for s in servers}
    for name in (hub.ada, hub.bob):
        assert shown[name] == engine.container(f"teamhub-{name}")["Id"][:12]
    assert f"container {shown[hub.ada]}" in hub.teamhub("status").stdout


def test_id_inside_is_the_users_own_uid_and_groups(hub: HubProcess, ada: Browser,
                                                   ada_kernel: str) -> None:
    account = pwd.getpwnam(hub.system_user(hub.ada))
    out = run(ada, hub.ada, ada_kernel,
              "import subprocess; print(subprocess.run(['id'], capture_output=True, "
              "text=True).stdout)")
    assert f"uid={account.pw_uid}({account.pw_name})" in out
    assert f"gid={account.pw_gid}" in out
    groups = os.getgrouplist(account.pw_name, account.pw_gid)
    inside = json.loads(run(ada, hub.ada, ada_kernel,
                            "import os, json; print(json.dumps(sorted(os.getgroups())))"))
    assert inside == sorted(set(groups))


def test_supplementary_groups_reach_the_container(hub: HubProcess) -> None:
    """A Linux group the account is in shows inside (Docker's `User` alone would lose it)."""
    name = unique("gus")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    b.start_server(name)  # makes the Linux account
    group = unique("thdg")
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["usermod", "-aG", group, hub.system_user(name)], check=True)
        gid = int(subprocess.run(["getent", "group", group], capture_output=True, text=True,
                                 check=True).stdout.split(":")[2])
        stop = b.http.delete(f"{hub.url}/hub/api/users/{name}/server",
                             headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
        assert stop.status_code in (202, 204)
        for _ in range(100):
            if "" not in b.get(f"/hub/api/users/{name}").json().get("servers", {}):
                break
            time.sleep(0.2)
        b.start_server(name)
        b.open_lab(name)
        kernel = b.new_kernel(name)
        b.wait_kernel(name, kernel)
        inside = json.loads(run(b, name, kernel,
                                "import os, json; print(json.dumps(os.getgroups()))"))
        assert gid in inside
    finally:
        subprocess.run(["groupdel", group], check=False)


def test_neither_user_can_read_the_others_home(hub: HubProcess, ada: Browser, bob: Browser,
                                               ada_kernel: str, bob_kernel: str) -> None:
    ada_home = pwd.getpwnam(hub.system_user(hub.ada)).pw_dir
    bob_home = pwd.getpwnam(hub.system_user(hub.bob)).pw_dir
    run(ada, hub.ada, ada_kernel, "open('secret.txt', 'w').write('ada only')")
    probe = ("import os\ntry:\n    print(os.listdir({!r}))\nexcept OSError as e:\n"
             "    print(type(e).__name__)")
    assert run(bob, hub.bob, bob_kernel, probe.format(ada_home)).strip() in (
        "PermissionError", "FileNotFoundError")
    assert run(ada, hub.ada, ada_kernel, probe.format(bob_home)).strip() in (
        "PermissionError", "FileNotFoundError")
    # The file is in ada's real home on the host: same files whichever backend runs.
    with open(os.path.join(ada_home, "secret.txt")) as f:
        assert f.read() == "ada only"


def test_no_capabilities_no_new_privileges_no_secrets(hub: HubProcess, ada: Browser,
                                                      ada_kernel: str) -> None:
    status = run(ada, hub.ada, ada_kernel, "print(open('/proc/self/status').read())")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
    assert int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    # Docker's seccomp profile, also for a server entered into its container.
    assert fields["Seccomp"].strip() == "2" and int(fields["Seccomp_filters"]) >= 1
    state = str(hub.state)
    probe = ("import os, json; print(json.dumps({'sock': os.path.exists('/var/run/docker.sock')"
             " or os.path.exists('/run/docker.sock'), 'state': os.path.exists(" + repr(state)
             + "), 'env': sorted(os.environ)}))")
    seen = json.loads(run(ada, hub.ada, ada_kernel, probe))
    assert not seen["sock"] and not seen["state"]
    assert not {"JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN"} & set(seen["env"])
    assert not [k for k in seen["env"] if k.startswith("TEAMHUB_")]


def test_limits_are_dockers_cgroups(hub: HubProcess, engine: Engine, ada: Browser,
                                    ada_kernel: str) -> None:
    host = engine.container(f"teamhub-{hub.ada}")["HostConfig"]
    assert host["Memory"] == MEMORY and host["MemorySwap"] == MEMORY
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == TASKS
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["Init"] is True
    # What the kernel itself sees (cgroup v1 or v2).
    pids_max = run(ada, hub.ada, ada_kernel,
                   "import os\nfor p in ('/sys/fs/cgroup/pids.max', "
                   "'/sys/fs/cgroup/pids/pids.max'):\n"
                   "    if os.path.exists(p): print(open(p).read().strip())")
    assert pids_max.strip() == str(TASKS)


def test_shared_env_is_a_kernel_inside_running_with_its_prefix(hub: HubProcess, ada: Browser
                                                              ) -> None:
    specs = ada.kernelspecs(hub.ada)
    assert {"python3", "env-shared"} <= set(specs)
    kernel = ada.new_kernel(hub.ada, "env-shared")
    ada.wait_kernel(hub.ada, kernel)
    prefix = run(ada, hub.ada, kernel, "import sys, six; print(sys.prefix)").strip()
    current = hub.envs_root / "shared" / "current"
    assert prefix in (str(current), os.path.realpath(current))
    # Mounted read-only: not even root's ACLs could let a user change it from inside.
    probe = (f"import errno\ntry:\n    open({str(current) + '/x'!r}, 'w')\n"
             "except OSError as e:\n    print(errno.errorcode[e.errno])")
    assert run(ada, hub.ada, kernel, probe).strip() in ("EROFS", "EACCES")


def test_kernels_are_forked_warm_inside_the_container(hub: HubProcess, ada: Browser) -> None:
    """envs.warm_kernels: the server starts the warm parent inside its container, so a
    forked kernel is there like a normal one (same cgroup, same uid as the server)."""
    probe = ("import json, os\n"
             "def see(pid):\n"
             "    cmd = open(f'/proc/{pid}/cmdline', 'rb').read().decode().split(chr(0))\n"
             "    st = open(f'/proc/{pid}/status').read().split('Uid:')[1].split()[0]\n"
             "    return [cmd, open(f'/proc/{pid}/cgroup').read(), st]\n"
             "print(json.dumps([see('self'), see(os.getppid()),"
             " see(os.environ['JPY_PARENT_PID'])]))")
    for name in ("python3", "env-shared"):
        ada.new_kernel(hub.ada, name)  # an env's first kernel may wait for its parent
        kernel = ada.new_kernel(hub.ada, name)
        ada.wait_kernel(hub.ada, kernel)
        me, parent, server = json.loads(run(ada, hub.ada, kernel, probe))
        assert any(part.endswith("warm_parent.py") for part in parent[0]), parent[0]
        assert any(part.endswith("kernel_launcher.py") for part in me[0]), me[0]
        assert me[1] == parent[1] == server[1]
        assert me[2] == parent[2] == server[2]
    # The server in the container remembers the user's recent kernels in their own home
    # (bind-mounted), for the parents an open JupyterLab starts (teamhub.envs.warm_ahead).
    account = pwd.getpwnam(hub.system_user(hub.ada))
    recent = os.path.join(account.pw_dir, ".local/share/jupyter/teamhub/recent-kernels.json")
    with open(recent) as f:
        assert json.load(f)[:2] == ["env-shared", "python3"]
    assert os.stat(recent).st_uid == account.pw_uid


def test_personal_env_made_inside_is_a_kernel_for_its_owner_only(hub: HubProcess,
                                                                 ada: Browser, ada_kernel: str,
                                                                 bob: Browser) -> None:
    out = ada.execute(hub.ada, ada_kernel,
                      "import subprocess; p = subprocess.run(['teamhub-env', 'create', "
                      "'mine', 'six'], capture_output=True, text=True); "
                      "print(p.returncode); print(p.stderr[-600:])", timeout=240)
    assert out["stdout"].startswith("0"), out
    deadline = time.monotonic() + 10
    while "personal-mine" not in ada.kernelspecs(hub.ada):
        assert time.monotonic() < deadline, "personal env did not show up"
        time.sleep(0.5)
    assert "personal-mine" not in bob.kernelspecs(hub.bob)
    mine = ada.new_kernel(hub.ada, "personal-mine")
    ada.wait_kernel(hub.ada, mine)
    home = pwd.getpwnam(hub.system_user(hub.ada)).pw_dir
    assert run(ada, hub.ada, mine, "import sys, six; print(sys.prefix)").strip() == \
        f"{home}/.venvs/mine"


def test_project_writer_writes_reader_reads_read_only_outsider_sees_nothing(
        hub: HubProcess, ada: Browser, ada_kernel: str, bob: Browser, bob_kernel: str) -> None:
    folder = str(hub.projects_root / "shared")
    path = folder + "/notes.txt"
    run(ada, hub.ada, ada_kernel, f"open({path!r}, 'w').write('from ada')")
    # Through the ~/projects link, as the file browser sees it.
    assert run(bob, hub.bob, bob_kernel,
               "print(open('projects/shared/notes.txt').read())").strip() == "from ada"
    # The reader's mount is read-only: the kernel gets EROFS, not just an ACL refusal.
    probe = (f"import errno\ntry:\n    open({folder + '/bob.txt'!r}, 'w')\n"
             "except OSError as e:\n    print(errno.errorcode[e.errno])")
    assert run(bob, hub.bob, bob_kernel, probe).strip() == "EROFS"
    outsider = unique("out")
    hub.users.append(outsider)
    hub.add_user(outsider, PASSWORD)
    o = login(hub, outsider)
    o.start_server(outsider)
    o.open_lab(outsider)
    kernel = o.new_kernel(outsider)
    o.wait_kernel(outsider, kernel)
    listing = ("import os\ntry:\n    print(os.listdir(" + repr(folder) + "))\n"
               "except OSError as e:\n    print(type(e).__name__)")
    assert run(o, outsider, kernel, listing).strip() in ("FileNotFoundError", "PermissionError")


def test_revoke_bites_in_the_running_container(hub: HubProcess, bob: Browser,
                                               bob_kernel: str) -> None:
    path = str(hub.projects_root / "shared" / "notes.txt")
    assert run(bob, hub.bob, bob_kernel, f"print(open({path!r}).read())").strip() == "from ada"
    hub.teamhub("project", "revoke", "shared", hub.bob)
    out = bob.execute(hub.bob, bob_kernel, f"open({path!r}).read()")
    assert out["error"].startswith("PermissionError"), out


def test_grant_says_which_running_containers_get_it_at_their_next_start(
        hub: HubProcess, bob: Browser) -> None:
    """A running container's mounts are fixed at its start: a new grant (or read → write)
    waits for the next one, and the CLI names who that concerns. Revokes bite at once."""
    idle = unique("idl")
    hub.users.append(idle)
    hub.add_user(idle, PASSWORD)
    # Bob without access, as the revoke test leaves it (revoked here when run alone).
    hub.teamhub("project", "revoke", "shared", hub.bob, check=False)
    done = hub.teamhub("project", "grant", "shared", hub.bob, "--read")
    assert f"note: {hub.bob} run(s) a server in a container" in done.stdout, done.stdout
    assert "next start" in done.stdout
    done = hub.teamhub("project", "grant", "shared", idle, "--write")
    assert "note:" not in done.stdout, done.stdout  # no server running: nothing to wait for


def test_memory_hog_is_killed_and_nobody_else_notices(hub: HubProcess, engine: Engine,
                                                      ada: Browser, ada_kernel: str,
                                                      bob: Browser, bob_kernel: str) -> None:
    run(bob, hub.bob, bob_kernel, "y = 7")
    run(ada, hub.ada, ada_kernel, "z = 5")
    # Written, not just reserved: 1.5 GiB against the 1 GiB cap, in a child of the kernel
    # (the biggest process in the container, so the one the OOM killer picks).
    code = run(ada, hub.ada, ada_kernel,
               "import subprocess, sys; print(subprocess.run([sys.executable, '-c', "
               "\"b = b'x' * (3 * 512 * 1024**2)\"]).returncode)")
    assert code.strip() == "-9"
    assert engine.container(f"teamhub-{hub.ada}")["State"]["Running"]
    assert run(ada, hub.ada, ada_kernel, "z * 4") == "20"
    assert run(bob, hub.bob, bob_kernel, "y * 3") == "21"


def test_hub_restart_readopts_running_containers(hub: HubProcess, engine: Engine,
                                                 ada: Browser, ada_kernel: str,
                                                 bob: Browser, bob_kernel: str) -> None:
    run(ada, hub.ada, ada_kernel, "x = 41")
    before = {n: engine.container(f"teamhub-{n}")["Id"] for n in (hub.ada, hub.bob)}
    hub.stop()
    for name, ident in before.items():
        assert engine.container(ident)["State"]["Running"], name
    hub.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ada.get(f"/user/{hub.ada}/api/kernels").status_code == 200:
            break
        time.sleep(0.3)
    assert ada_kernel in [k["id"] for k in ada.get(f"/user/{hub.ada}/api/kernels").json()]
    assert run(ada, hub.ada, ada_kernel, "x + 1") == "42"
    assert run(bob, hub.bob, bob_kernel, "5 * 4") == "20"
    after = {n: engine.container(f"teamhub-{n}")["Id"] for n in (hub.ada, hub.bob)}
    assert after == before


def test_doctor_checks_the_engine_and_names_orphan_containers(hub: HubProcess, engine: Engine,
                                                             ada: Browser) -> None:
    def docker_check() -> dict:
        done = hub.teamhub("doctor", "--json", "--check", "docker engine", check=False)
        return {c["name"]: c for c in json.loads(done.stdout)["checks"]}["docker engine"]

    result = docker_check()
    assert result["ok"], result
    assert f"teamhub/{hub.image}:latest present" in result["detail"]
    # A container labelled for a user teamhub does not have: an orphan, named.
    ghost = unique("ghost")
    config = {"Image": f"teamhub/{hub.image}:latest", "Cmd": ["true"],
              "Labels": {LABEL_USER: ghost}, "HostConfig": {"NetworkMode": "none"}}
    engine.create(f"teamhub-{ghost}", config)
    try:
        result = docker_check()
        assert not result["ok"] and f"teamhub-{ghost}" in result["detail"], result
    finally:
        engine.remove(f"teamhub-{ghost}")


# A compromised hub: its account, talking to the root helper's socket directly.
HELPER_CLIENT = r"""
import json, socket, sys
path, op, body = sys.argv[1], sys.argv[2], sys.stdin.read()
s = socket.socket(socket.AF_UNIX)
s.connect(path)
f = s.makefile("rb")
if op == "container_start":
    s.sendall(b'{"op": "container_start"}\n')
    first = f.readline()
    if b'"pid"' in first:
        s.sendall(body.encode())
        s.shutdown(socket.SHUT_WR)
        first = f.readline()
    print(first.decode().strip())
else:
    s.sendall(json.dumps(dict(json.loads(body), op=op)).encode() + b"\n")
    print(f.readline().decode().strip())
"""


def ask_helper_as_hub(hub: HubProcess, op: str, body: dict) -> dict:
    done = as_hub_account(hub.account, "/usr/bin/python3", "-c", HELPER_CLIENT,
                          str(hub.paths.fork_server_socket), op, input=json.dumps(body))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_hub_cannot_use_the_docker_socket(hub: HubProcess, ada: Browser) -> None:
    sock = socket_path()
    assert os.path.exists(sock)
    probe = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect(" + repr(sock) + ")")
    done = as_hub_account(hub.account, "/usr/bin/python3", "-c", probe)
    assert done.returncode != 0 and "PermissionError" in done.stderr, done.stderr
    # The hub itself runs as that account, and its servers still run (through the helper).
    hub_pid = int(hub.paths.hub_pid_file.read_text().strip())
    assert os.stat(f"/proc/{hub_pid}").st_uid == pwd.getpwnam(hub.account).pw_uid
    assert ada.open_lab(hub.ada).status_code == 200


def start_body(hub: HubProcess, user: str, **changes: object) -> dict:
    """A container_start as a compromised hub might send it for USER (CHANGES: its fields
    replaced or added)."""
    account = pwd.getpwnam(hub.system_user(user)) if user in hub.users else None
    spec = {"argv": [str(runtime_dir() / "bin" / "jupyterhub-singleuser")],
            "cwd": account.pw_dir if account else "/root",
            "username": account.pw_name if account else user,
            "uid": account.pw_uid if account else 0, "gid": account.pw_gid if account else 0,
            "env": {"JUPYTERHUB_USER": user, "JUPYTERHUB_SERVER_NAME": ""}}
    body = {"spec": spec, "user": user, "server": "", "image": hub.image, "limits": None,
            "gpus": [], "fast": True}
    body.update(changes)
    return body


def test_the_helper_refuses_a_compromised_hubs_container_starts(hub: HubProcess,
                                                                engine: Engine,
                                                                ada: Browser) -> None:
    hub_uid = pwd.getpwnam(hub.account).pw_uid
    bob_volume = f"teamhub-user-{hub.bob}"
    refused = [
        (start_body(hub, hub.ada, image="alpine"), "not one of the configured images"),
        (start_body(hub, hub.ada, image=f"teamhub/{hub.image}:latest"), "configured images"),
        (start_body(hub, hub.ada, mounts=[{"Type": "bind", "Source": "/", "Target": "/h"}]),
         "takes no 'mounts'"),
        (start_body(hub, hub.ada, privileged=True), "takes no 'privileged'"),
        (start_body(hub, hub.ada, binds=["/etc:/host-etc"]), "takes no 'binds'"),
        (start_body(hub, hub.ada, cap_add=["SYS_ADMIN"]), "takes no 'cap_add'"),
        (start_body(hub, hub.ada, devices=["/dev/sda"]), "takes no 'devices'"),
        (start_body(hub, hub.ada, volume=bob_volume), "takes no 'volume'"),
        (start_body(hub, hub.ada, gpus=["GPU-00000000-0000-0000-0000-000000000000"]),
         "allocation record"),
        # The right fields, but a server teamhub would not run: a shell, as ada.
        (start_body(hub, hub.ada, spec={**start_body(hub, hub.ada)["spec"],
                                        "argv": ["/bin/sh", "-c", "id"]}), "argv is not"),
        (start_body(hub, "root"), "tht-root"),
        (start_body(hub, "nobodymade"), "tht-nobodymade"),
        ({**start_body(hub, hub.ada), "user": hub.bob}, "not the request's user"),
    ]
    for body, reason in refused:
        answer = ask_helper_as_hub(hub, "container_start", body)
        assert reason in answer.get("error", ""), (reason, answer)
    log = hub.paths.fork_server_log.read_text(errors="replace")
    lines = [ln for ln in log.splitlines() if f"uid {hub_uid}: container_start:" in ln
             and "refused pid" in ln]
    assert len(lines) >= len(refused), log[-3000:]
    for name in ("root", "nobodymade"):
        assert engine.container(f"teamhub-{name}") is None
    # The helper keeps serving: the hub's own requests, and ada's server runs on.
    assert "known" in ask_helper_as_hub(hub, "status", {"pid": 0})
    assert ask_helper_as_hub(hub, "container_state", {"user": hub.ada})["running"] is True
    assert ada.open_lab(hub.ada).status_code == 200


def test_the_helper_stops_and_tells_only_that_users_teamhub_container(hub: HubProcess,
                                                                      engine: Engine,
                                                                      ada: Browser) -> None:
    hub_uid = pwd.getpwnam(hub.account).pw_uid
    ghost = unique("gst")
    # Named like a teamhub container, but labelled for another user (or not at all).
    for name, labels in ((ghost, {LABEL_USER: hub.ada}), (f"{hub.bob}-x", {})):
        engine.create(f"teamhub-{name}", {"Image": f"teamhub/{hub.image}:latest",
                                          "Cmd": ["true"], "Labels": labels,
                                          "HostConfig": {"NetworkMode": "none"}})
    try:
        for op, body in (("container_stop", {"user": ghost}),
                         ("container_state", {"user": ghost}),
                         ("container_logs", {"user": ghost}),
                         ("container_stop", {"user": hub.bob, "server": "x"})):
            answer = ask_helper_as_hub(hub, op, body)
            assert "is not teamhub's container" in answer.get("error", ""), (op, answer)
        assert engine.container(f"teamhub-{ghost}") is not None
        assert engine.container(f"teamhub-{hub.bob}-x") is not None
        for body in ({"user": "root"}, {"user": "../x"}, {"user": hub.ada, "timeout": 10**6}):
            assert "error" in ask_helper_as_hub(hub, "container_stop", body), body
        log = hub.paths.fork_server_log.read_text(errors="replace")
        assert "refused pid" in log and f"uid {hub_uid}: container 'teamhub-{ghost}'" in log
        # Ada's own container is the hub's to ask about.
        state = ask_helper_as_hub(hub, "container_state", {"user": hub.ada})
        assert state["id"] == engine.container(f"teamhub-{hub.ada}")["Id"]
        assert ada.open_lab(hub.ada).status_code == 200
    finally:
        engine.remove(f"teamhub-{ghost}")
        engine.remove(f"teamhub-{hub.bob}-x")


def stop_server(hub: HubProcess, engine: Engine, b: Browser, name: str) -> None:
    stop = b.http.delete(f"{hub.url}/hub/api/users/{name}/server",
                         headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    assert stop.status_code in (202, 204)
    deadline = time.monotonic() + 30
    while engine.container(f"teamhub-{name}") is not None and time.monotonic() < deadline:
        time.sleep(0.2)


def test_spawn_page_offers_each_user_their_images_and_runs_the_chosen_one(
        hub: HubProcess, engine: Engine) -> None:
    member, other = unique("chm"), unique("cho")
    for name in (member, other):
        hub.users.append(name)
        hub.add_user(name, PASSWORD)
    hub.teamhub("group", "add", hub.group, member)
    page = login(hub, member).get(f"/hub/spawn/{member}").text
    assert 'name="image"' in page
    assert "Second image" in page and "Group image" in page, page
    b = login(hub, other)
    page = b.get(f"/hub/spawn/{other}").text
    assert "Second image" in page and "Group image" not in page, page
    resp = b.http.post(f"{hub.url}/hub/spawn/{other}", data={"image": hub.other_image},
                       headers={"X-XSRFToken": b._xsrf("/hub/")}, allow_redirects=False,
                       timeout=60)
    assert resp.status_code == 302, resp.text[-2000:]
    b.start_server(other)  # waits until ready
    info = engine.container(f"teamhub-{other}")
    assert info["Config"]["Image"] == f"teamhub/{hub.other_image}:latest"
    stop_server(hub, engine, b, other)


@pytest.mark.parametrize("how", ["form", "api"])
def test_an_image_not_allowed_is_refused_with_400_logged_and_not_kept(
        hub: HubProcess, engine: Engine, how: str) -> None:
    """The group's image is on this machine, but this user is not in the group."""
    name = unique("tam")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    xsrf = {"X-XSRFToken": b._xsrf("/hub/")}
    if how == "form":
        resp = b.http.post(f"{hub.url}/hub/spawn/{name}", data={"image": hub.group_image},
                           headers=xsrf, allow_redirects=False, timeout=60)
    else:
        resp = b.http.post(f"{hub.url}/hub/api/users/{name}/server",
                           json={"image": hub.group_image}, headers=xsrf, timeout=60)
    assert resp.status_code == 400, resp.text[-2000:]
    assert f"choose one of: {hub.image}, {hub.other_image}" in resp.text, resp.text[-2000:]
    assert engine.container(f"teamhub-{name}") is None
    assert f"Refused a server start for {name}" in hub.log.read_text(errors="replace")
    if how == "api":
        # The refused choice is not kept: a start without options runs the default.
        b.start_server(name)
        info = engine.container(f"teamhub-{name}")
        assert info["Config"]["Image"] == f"teamhub/{hub.image}:latest"
        stop_server(hub, engine, b, name)


def test_missing_image_is_a_clear_spawn_error_and_leaves_nothing(hub: HubProcess,
                                                                 engine: Engine) -> None:
    name = unique("mia")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    ref = f"teamhub/{hub.image}:latest"
    image_id = engine.image(ref)["Id"]
    engine.remove_image(ref)
    try:
        resp = b.http.post(f"{hub.url}/hub/api/users/{name}/server",
                           headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
        message = resp.text
        deadline = time.monotonic() + 20
        while "teamhub image build" not in message and time.monotonic() < deadline:
            message = b.get(f"/hub/api/users/{name}/server/progress", timeout=10).text
            time.sleep(0.2)
        assert ref in message and f"teamhub image build {hub.image}" in message, message
        assert engine.container(f"teamhub-{name}") is None
    finally:
        engine.tag(image_id, f"teamhub/{hub.image}", "latest")


def test_a_server_dying_while_starting_is_reported_and_its_container_removed(
        hub: HubProcess, engine: Engine) -> None:
    name = unique("die")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    hub.make_server_die_at_start(b, name)
    resp = b.http.post(f"{hub.url}/hub/api/users/{name}/server",
                       headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    message = resp.text
    deadline = time.monotonic() + 60
    while "config-says-no-thanks" not in message and time.monotonic() < deadline:
        message = b.get(f"/hub/api/users/{name}/server/progress", timeout=10).text
        time.sleep(0.2)
    assert "stopped while starting" in message and "config-says-no-thanks" in message
    assert engine.container(f"teamhub-{name}") is None


def test_stopping_a_server_removes_its_container(hub: HubProcess, engine: Engine) -> None:
    name = unique("sam")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    b.start_server(name)
    assert engine.container(f"teamhub-{name}") is not None
    stop = b.http.delete(f"{hub.url}/hub/api/users/{name}/server",
                         headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    assert stop.status_code in (202, 204)
    deadline = time.monotonic() + 30
    while engine.container(f"teamhub-{name}") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine.container(f"teamhub-{name}") is None


def container_processes(engine: Engine, name: str) -> dict[int, str]:
    """Host pid → command line of every process in NAME's container (from its cgroup)."""
    init = engine.container(f"teamhub-{name}")["State"]["Pid"]
    folder = nsenter.cgroup_folders(init)[0]
    found = {}
    with open(os.path.join(folder, "cgroup.procs")) as f:
        for pid in f.read().split():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as c:
                    found[int(pid)] = c.read().replace(b"\0", b" ").decode(errors="replace")
            except FileNotFoundError:
                pass
    return found


def gone(pid: int) -> bool:
    """No such process, or only its zombie (exited, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_server_entered_into_its_container_dies_with_it(hub: HubProcess,
                                                          engine: Engine) -> None:
    """The fast start: the container's own command only holds it open (the user's token
    never goes to Docker) and the server is entered into it; `docker kill` ends it."""
    name = unique("kil")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    config = engine.container(f"teamhub-{name}")["Config"]
    assert config["Entrypoint"][:2] == ["/bin/sh", "-c"]
    assert config["Entrypoint"][-1].endswith(KEEPALIVE)
    assert not any(e.startswith("JUPYTERHUB_API_TOKEN=") for e in config["Env"] or [])
    processes = container_processes(engine, name)
    assert [p for p, cmd in processes.items() if "jupyterhub-singleuser" in cmd], processes
    subprocess.run(["docker", "kill", f"teamhub-{name}"], capture_output=True, check=True,
                   timeout=60)
    deadline = time.monotonic() + 30
    while not all(gone(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(gone(p) for p in processes), {p: processes[p] for p in processes if not gone(p)}


def test_burst_of_five_all_ready(hub: HubProcess, engine: Engine) -> None:
    names = [unique("bu") for _ in range(5)]
    hub.users.extend(names)
    for name in names:
        hub.add_user(name, PASSWORD)
    browsers = [login(hub, name) for name in names]

    def spawn(pair: tuple[str, Browser]) -> float:
        name, b = pair
        began = time.monotonic()
        b.start_server(name, timeout=120)
        assert b.open_lab(name).status_code == 200
        return time.monotonic() - began

    began = time.monotonic()
    with ThreadPoolExecutor(len(names)) as pool:
        times = list(pool.map(spawn, zip(names, browsers, strict=True)))
    print(f"burst of 5: all ready in {time.monotonic() - began:.2f}s "
          f"(each {', '.join(f'{t:.1f}' for t in sorted(times))}s)")
    for name in names:
        assert engine.container(f"teamhub-{name}")["State"]["Running"]


def test_blocking_a_user_stops_and_removes_their_container(hub: HubProcess,
                                                           engine: Engine) -> None:
    name = unique("blk")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    b.start_server(name)
    assert engine.container(f"teamhub-{name}") is not None
    hub.teamhub("user", "block", name)
    deadline = time.monotonic() + 30
    while engine.container(f"teamhub-{name}") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine.container(f"teamhub-{name}") is None


def test_user_remove_while_the_hub_is_down_removes_the_container(hub: HubProcess,
                                                                  engine: Engine) -> None:
    """Last hub test: the hub stays down. The container outlived the hub; removing the user
    removes it too, and no teamhub container of the user is left."""
    name = unique("rem")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    b.start_server(name)
    hub.stop()
    assert engine.container(f"teamhub-{name}")["State"]["Running"]
    done = hub.teamhub("user", "remove", name, "--yes")
    assert f"removed container teamhub-{name}" in done.stdout
    assert engine.container(f"teamhub-{name}") is None
    assert not engine.containers(label=f"{LABEL_USER}={name}")


@pytest.fixture(scope="module")
def volume_hub(tmp_path_factory: pytest.TempPathFactory, engine: Engine,
               image: str) -> Iterator[HubProcess]:
    # The root path of the docker backend (the hub talks to Docker itself): a root hub.
    h = HubProcess(tmp_path_factory.mktemp("vhub"), unprivileged=False, extra_toml=f"""
[spawner]
backend = "docker"

[docker]
image = "{image}"
home = "volume"
""")
    h.users = []
    try:
        h.start()
        yield h
    finally:
        h.stop()
        for name in h.users:
            engine.remove(f"teamhub-{name}")
            engine.remove_volume(f"teamhub-user-{name}")
        h.cleanup()


def test_volume_home_is_the_users_own_and_outlives_the_container(volume_hub: HubProcess,
                                                                 engine: Engine) -> None:
    hub = volume_hub
    name = unique("vol")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    b.start_server(name)
    b.open_lab(name)
    # A root hub's fast start: the fork server entered the server into its container.
    assert engine.container(f"teamhub-{name}")["Config"]["Entrypoint"][-1].endswith(KEEPALIVE)
    kernel = b.new_kernel(name)
    b.wait_kernel(name, kernel)
    run(b, name, kernel, "open('kept.txt', 'w').write('in the volume')")
    account = pwd.getpwnam(hub.system_user(name))
    assert not os.path.exists(os.path.join(account.pw_dir, "kept.txt"))
    volume = next(v for v in engine.volumes() if v["Name"] == f"teamhub-user-{name}")
    top = os.stat(volume["Mountpoint"])
    assert (top.st_uid, top.st_gid, top.st_mode & 0o777) == (account.pw_uid, account.pw_gid,
                                                             0o700)
    stop = b.http.delete(f"{hub.url}/hub/api/users/{name}/server",
                         headers={"X-XSRFToken": b._xsrf("/hub/")}, timeout=60)
    assert stop.status_code in (202, 204)
    for _ in range(150):
        if engine.container(f"teamhub-{name}") is None:
            break
        time.sleep(0.2)
    assert engine.container(f"teamhub-{name}") is None
    b.start_server(name)
    b.open_lab(name)
    kernel = b.new_kernel(name)
    b.wait_kernel(name, kernel)
    assert run(b, name, kernel, "print(open('kept.txt').read())").strip() == "in the volume"


def test_user_remove_keeps_the_volume_unless_purged_and_doctor_names_it(
        volume_hub: HubProcess, engine: Engine) -> None:
    hub = volume_hub
    kept, purged = unique("kep"), unique("pur")
    hub.users.extend([kept, purged])
    for name in (kept, purged):
        hub.add_user(name, PASSWORD)
        # As a spawn leaves it: a labelled home volume.
        engine.create_volume(f"teamhub-user-{name}", {LABEL_USER: name})
    done = hub.teamhub("user", "remove", kept, "--yes")
    assert f"kept volume teamhub-user-{kept}" in done.stdout
    done = hub.teamhub("user", "remove", purged, "--yes", "--purge")
    assert f"removed volume teamhub-user-{purged}" in done.stdout
    names = {v["Name"] for v in engine.volumes()}
    assert f"teamhub-user-{kept}" in names and f"teamhub-user-{purged}" not in names
    done = hub.teamhub("doctor", "--json", "--check", "docker engine", check=False)
    result = json.loads(done.stdout)["checks"][0]
    assert not result["ok"] and f"teamhub-user-{kept}" in result["detail"], result


def test_without_the_fork_server_the_server_is_its_containers_command(volume_hub: HubProcess,
                                                                     engine: Engine) -> None:
    """The fallback (root hub): when the server cannot be entered into its container (here:
    no fork server), it starts as the container's own command, and the hub log says why."""
    hub = volume_hub
    sock = str(hub.paths.fork_server_socket)
    servers = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if entry.isdigit() and f"teamhub.spawners.forkserver\0{sock}" in f.read().decode():
                    servers.append(int(entry))
        except OSError:
            pass
    assert len(servers) == 1, servers  # the fork server this test's hub started
    os.kill(servers[0], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while not gone(servers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    name = unique("slo")
    hub.users.append(name)
    hub.add_user(name, PASSWORD)
    b = login(hub, name)
    b.start_server(name)
    assert b.open_lab(name).status_code == 200
    config = engine.container(f"teamhub-{name}")["Config"]
    assert config["Entrypoint"][-1] == "teamhub-server"
    assert "as its container's command (slow)" in hub.log.read_text(errors="replace")


@pytest.mark.parametrize(("images", "engine_socket", "says"), [
    ('image = "no-such-image"', "", ["teamhub/no-such-image:latest",
                                     "teamhub image build no-such-image"]),
    ('image = "{image}"\n[docker.images.no-such-choice]', "",
     ["docker.images", "teamhub/no-such-choice:latest", "teamhub image build no-such-choice"]),
    ('image = "{image}"', "no-engine.sock", ["Docker engine is not running"]),
])
def test_up_refuses_a_missing_image_or_engine_in_one_line(tmp_path, engine: Engine, image: str,
                                                          images: str, engine_socket: str,
                                                          says: list[str]) -> None:
    other = HubProcess(tmp_path, extra_toml='[spawner]\nbackend = "docker"\n[docker]\n'
                       + images.format(image=image) + "\n")
    env = {"DOCKER_HOST": f"unix://{tmp_path}/{engine_socket}"} if engine_socket else None
    try:
        done = teamhub_cli("--config", str(other.config), "up", env=env)
        assert done.returncode != 0
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("teamhub: error")]
        assert len(lines) == 1, done.stderr
        for text in says:
            assert text in lines[0], lines[0]
    finally:
        other.cleanup()  # its home folder, and the sockets' folder the refused `up` made


def test_image_list_and_remove(engine: Engine, image: str) -> None:
    listed = json.loads(teamhub_cli("image", "list", "--json").stdout)
    assert any(e["name"] == image and e["current"] for e in listed)
    name = unique("thdx")
    engine.tag(f"teamhub/{image}:latest", f"teamhub/{name}", "latest")
    try:
        done = teamhub_cli("image", "remove", name)
        assert done.returncode == 0, done.stderr
        assert engine.image(f"teamhub/{name}:latest") is None
        assert engine.image(f"teamhub/{image}:latest") is not None
        done = teamhub_cli("image", "remove", name)
        assert done.returncode != 0 and "no teamhub image" in done.stderr
    finally:
        engine.remove_image(f"teamhub/{name}:latest")


PIP_IMAGE = "teamhub-test-pip"


def test_image_build_from_a_local_image_with_pip(engine: Engine, image: str) -> None:
    """--from the test image (no debootstrap) and one small package from the registry.

    The build reaches PyPI only through this machine's CA trust and /etc/pip.conf, copied
    into the image; the package lands in the image's own env, which is a kernel there.
    Like the test image, the result is kept as a cache (its recipe hash covers the base
    image's id, the package and the CA certificates): a few minutes once per machine."""
    base = unique("thdb")
    # Our own tag of the test image: nobody else's test can move it under the build.
    engine.tag(f"teamhub/{image}:latest", f"teamhub/{base}", "latest")
    ref = f"teamhub/{PIP_IMAGE}:latest"
    try:
        began = time.monotonic()
        done = teamhub_cli("image", "build", PIP_IMAGE, "--from", base, "--pip", "six",
                           timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]
        print(f"image --from {base} --pip six: {time.monotonic() - began:.1f}s")
        assert done.stdout.strip().startswith(f"teamhub/{PIP_IMAGE}:")
        if "up to date" not in done.stderr:
            assert f"starting from the local image teamhub/{base}:latest" in done.stderr
            assert "installing six with pip into /opt/teamhub-image" in done.stderr
        runtime = str(runtime_dir())
        probe = ("/opt/teamhub-image/bin/python -c 'import six; print(six.__file__)' && "
                 f"{runtime}/bin/jupyter kernelspec list --json && cat /etc/pip.conf")
        inside = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--user", "65534:65534",
             "--env", "HOME=/tmp", "-v", f"{runtime}:{runtime}:ro", ref, "sh", "-c", probe],
            capture_output=True, text=True, timeout=300)
        assert inside.returncode == 0, inside.stderr
        lines = inside.stdout.splitlines()
        assert lines[0].startswith("/opt/teamhub-image/lib/python3")
        specs = json.loads(inside.stdout[inside.stdout.index("{"):inside.stdout.rindex("}") + 1])
        spec = specs["kernelspecs"][f"image-{PIP_IMAGE}"]["spec"]
        assert spec["display_name"] == f"Python (image {PIP_IMAGE})"
        assert spec["argv"][0] == "/opt/teamhub-image/bin/python"
        if os.path.exists("/etc/pip.conf"):
            with open("/etc/pip.conf") as f:
                assert f.read().strip() in inside.stdout
        # Same inputs: reused; the base's id and the pip packages are part of the hash.
        again = teamhub_cli("image", "build", PIP_IMAGE, "--from", base, "--pip", "six",
                            timeout=300)
        assert again.returncode == 0 and "up to date" in again.stderr, again.stderr
    finally:
        engine.remove_image(f"teamhub/{base}:latest")


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "no-such-base"], "no such image on this machine"),
    (["--pip", "-e ."], "not a Python package name"),
    (["--pip", "git+https://example.org/x.git"], "not a Python package name"),
])
def test_image_build_bad_input_is_one_line_and_builds_nothing(engine: Engine, args: list[str],
                                                               says: str) -> None:
    name = unique("thdn")
    done = teamhub_cli("image", "build", name, *[a.format(name=name) for a in args])
    assert done.returncode != 0
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("teamhub: error")]
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "never pulls" in lines[0] or "--pip" in args
    assert engine.image(f"teamhub/{name}:latest") is None
