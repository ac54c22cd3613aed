"""Each server's own /dev/shm, in both start paths (forked, and a fresh interpreter):
what one user puts there is invisible to others, filling it does not stop others'
multiprocessing, and nothing of it is left on the machine after the server stops."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.client import Browser
from support.hub import PASSWORD, HubProcess, unique

from teamhub.system.processes import processes_of

pytestmark = [pytest.mark.hub, pytest.mark.system]

SHM_MB = 32
PROBE = "teamhub-shm-probe"


def _uid(hub: HubProcess, name: str) -> int:
    return pwd.getpwnam(hub.system_user(name)).pw_uid


def _host_shm_of(uid: int) -> list[str]:
    out = []
    for entry in os.scandir("/dev/shm"):
        try:
            if entry.stat(follow_symlinks=False).st_uid == uid:
                out.append(entry.name)
        except FileNotFoundError:
            continue
    return out


@pytest.fixture(scope="module", params=[True, False], ids=["forked", "fresh"])
def hub(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    forked = request.param
    # spawner.fork_server = false: the server starts from the hub itself, which only a root
    # hub can do (an unprivileged hub refuses that setting).
    h = HubProcess(tmp_path_factory.mktemp("hub"), unprivileged=None if forked else False,
                   extra_toml=f'[spawner]\nfork_server = {str(forked).lower()}\n'
                              f'shm_size = "{SHM_MB}M"\n')
    h.forked = forked
    h.a, h.b = unique("sa"), unique("sb")
    uids: list[int] = []
    try:
        for name in (h.a, h.b):
            h.add_user(name, PASSWORD)
        h.start()
        h.browsers = {}
        for name in (h.a, h.b):
            br = Browser(h.url)
            assert br.login(name, PASSWORD).status_code == 302
            br.start_server(name)
            assert br.open_lab(name).status_code == 200
            uids.append(_uid(h, name))
            kernel = br.new_kernel(name)
            br.wait_kernel(name, kernel)
            h.browsers[name] = (br, kernel)
        yield h
    finally:
        h.cleanup()
        for uid in uids:  # on a machine without private /dev/shm, the probes are left there
            for name in _host_shm_of(uid):
                Path("/dev/shm", name).unlink(missing_ok=True)


def run(hub: HubProcess, name: str, code: str) -> dict[str, str]:
    br, kernel = hub.browsers[name]
    out = br.execute(name, kernel, code)
    assert not out["error"], out
    return out


def test_servers_start_the_way_asked_in_a_mount_namespace_of_their_own(
        hub: HubProcess) -> None:
    pids = [pid for pid in processes_of(_uid(hub, hub.a))
            if b"jupyterhub-singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(pids) == 1
    parent = Path(f"/proc/{pids[0]}/stat").read_text().rsplit(")", 1)[1].split()[1]
    by_fork_server = b"teamhub.spawners.forkserver" in Path(f"/proc/{parent}/cmdline").read_bytes()
    assert by_fork_server == hub.forked
    assert os.readlink(f"/proc/{pids[0]}/ns/mnt") != os.readlink("/proc/self/ns/mnt")


def test_a_users_shm_is_invisible_to_others_and_the_machine(hub: HubProcess) -> None:
    run(hub, hub.a, f"open('/dev/shm/{PROBE}', 'w').write('mine')")
    assert run(hub, hub.a, f"import os; print(os.path.exists('/dev/shm/{PROBE}'))"
               )["stdout"] == "True\n"
    assert run(hub, hub.b, f"import os; print(os.path.exists('/dev/shm/{PROBE}'))"
               )["stdout"] == "False\n"
    assert not os.path.exists(f"/dev/shm/{PROBE}")


def test_filling_ones_shm_does_not_stop_others_multiprocessing(hub: HubProcess) -> None:
    # Written in 1M pieces, at most twice the size it should have: never fills the machine.
    out = run(hub, hub.a,
              "written = 0\n"
              "try:\n"
              "    with open('/dev/shm/filler', 'wb') as f:\n"
              f"        for _ in range({2 * SHM_MB}):\n"
              "            f.write(bytes(1 << 20)); f.flush(); written += 1\n"
              "except OSError as exc:\n"
              "    print(exc.errno)\n"
              "print(written)\n")
    errno, written = out["stdout"].split()
    assert errno == "28" and int(written) <= SHM_MB  # ENOSPC at its own size
    out = run(hub, hub.b,
              "import multiprocessing\n"
              "from multiprocessing import shared_memory\n"
              "lock = multiprocessing.Lock()\n"
              f"shm = shared_memory.SharedMemory(create=True, size={SHM_MB // 2} << 20)\n"
              "shm.buf[:] = b'x' * shm.size\n"
              "print(bytes(shm.buf[-3:]).decode())\n"
              "shm.close(); shm.unlink()\n")
    assert out["stdout"] == "xxx\n"
    run(hub, hub.a, "import os; os.unlink('/dev/shm/filler')")


def test_nothing_of_a_stopped_server_remains_in_the_machines_shm(hub: HubProcess) -> None:
    run(hub, hub.a, f"open('/dev/shm/{PROBE}-left', 'w').write('left')")
    br, _ = hub.browsers[hub.a]
    resp = br.http.delete(f"{hub.url}/hub/api/users/{hub.a}/server",
                          headers={"X-XSRFToken": br._xsrf("/hub/")}, timeout=60)
    assert resp.status_code in (202, 204), resp.text
    deadline = time.monotonic() + 30
    while "" in br.get(f"/hub/api/users/{hub.a}").json().get("servers", {}):
        assert time.monotonic() < deadline, "server did not stop"
        time.sleep(0.2)
    assert _host_shm_of(_uid(hub, hub.a)) == []
