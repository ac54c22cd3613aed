"""The docker backend's pieces that need no engine: settings, container description, names."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from traitlets.config import Config

from teamhub import hubconfig, image_build, images
from teamhub.errors import DockerError, ImageError, SettingsError
from teamhub.paths import Paths
from teamhub.settings import load
from teamhub.spawners.docker import unix_socket_path
from teamhub.system.containers import CgroupLimits, Mount, container_config
from teamhub.system.docker import Engine
from teamhub.system.sandbox import LaunchSpec


def settings(tmp_path: Path, text: str = "", **env: str):
    cfg = tmp_path / "teamhub.toml"
    cfg.write_text(text)
    return load(cfg, environ=env)


def test_backend_is_local_by_default_and_docker_leaves_the_config_alone(tmp_path):
    c = Config()
    s = settings(tmp_path)
    hubconfig.update_docker(c, s, Paths.from_settings(s))
    assert s["spawner.backend"] == "local"
    assert "spawner_class" not in c.JupyterHub


def test_backend_docker_from_the_environment_picks_the_docker_spawner(tmp_path):
    c = Config()
    s = settings(tmp_path, '[docker]\nimage = "lab"\n[envs]\nroot = "/opt/e"\n',
                 TEAMHUB_SPAWNER_BACKEND="docker")
    paths = Paths.from_settings(s)
    hubconfig.update_docker(c, s, paths)
    assert c.JupyterHub.spawner_class == "teamhub.spawners.docker.DockerSpawner"
    assert c.DockerSpawner.image == "lab"
    assert c.DockerSpawner.runtime_dir == str(paths.runtime_dir)
    assert c.DockerSpawner.envs_root == "/opt/e"
    # The fork server starts docker servers too (entering their containers).
    assert "fork_server" not in c.DockerSpawner


def test_unknown_backend_is_refused_naming_the_choices(tmp_path):
    with pytest.raises(SettingsError, match="local.*docker"):
        settings(tmp_path, '[spawner]\nbackend = "podman"\n')


def _spec(uid: int = 1234, **over) -> LaunchSpec:
    base = dict(argv=["/opt/rt/bin/jupyterhub-singleuser", "--debug"],
                env={"HOME": "/home/jupyter-ada", "PATH": "/opt/rt/bin:/usr/bin"},
                cwd="/home/jupyter-ada", username="root", uid=uid, gid=1234,
                rlimits={"RLIMIT_NOFILE": [1024, 4096]})
    base.update(over)
    return LaunchSpec(**base)


def test_container_runs_the_spec_as_the_user_hardened_on_the_host_network():
    config = container_config(
        _spec(), image="teamhub/base:latest",
        mounts=[Mount("/home/jupyter-ada", "/home/jupyter-ada", read_only=False),
                Mount("/opt/rt", "/opt/rt")],
        limits=CgroupLimits(memory=2**30, cpu=0.5, tasks=512), labels={"a": "b"})
    host = config["HostConfig"]
    assert config["User"] == "1234:1234"
    assert config["Cmd"] == ["/opt/rt/bin/jupyterhub-singleuser", "--debug"]
    assert "umask 0077" in config["Entrypoint"][2]
    assert "HOME=/home/jupyter-ada" in config["Env"]
    assert config["WorkingDir"] == "/home/jupyter-ada"
    assert host["NetworkMode"] == "host" and "PortBindings" not in host
    assert "ExposedPorts" not in config
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Init"] is True
    assert (host["Memory"], host["MemorySwap"]) == (2**30, 2**30)
    assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 512
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 4096}]
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/opt/rt"]["ReadOnly"] and not mounts["/home/jupyter-ada"]["ReadOnly"]
    assert mounts["/etc/passwd"]["ReadOnly"]
    assert not any("docker.sock" in m["Source"] for m in host["Mounts"])
    # root's own supplementary groups, as initgroups() would give them.
    expected = set(os.getgrouplist("root", 1234)) - {1234}
    assert set(map(int, host["GroupAdd"])) == expected


def test_container_without_limits_sets_no_cgroup_values():
    host = container_config(_spec(), image="i", mounts=[], limits=CgroupLimits(),
                            labels={})["HostConfig"]
    assert not {"Memory", "NanoCpus", "PidsLimit", "ShmSize"} & set(host)


def test_container_shm_is_sized_like_a_local_servers():
    host = container_config(_spec(shm_size=2**29), image="i", mounts=[], limits=CgroupLimits(),
                            labels={})["HostConfig"]
    assert host["ShmSize"] == 2**29 and host["IpcMode"] == "private"


def test_containers_reach_the_hubs_unix_socket_by_its_folder():
    assert unix_socket_path("http+unix://%2Frun%2Fteamhub%2Fhub-1%2Fhub.sock/hub/api") == \
        "/run/teamhub/hub-1/hub.sock"
    assert unix_socket_path("http://127.0.0.1:8081/hub/api") is None


def test_a_container_never_runs_as_root_or_without_an_account():
    with pytest.raises(ValueError, match="root"):
        container_config(_spec(uid=0), image="i", mounts=[], limits=CgroupLimits(), labels={})
    with pytest.raises(ValueError, match="account"):
        container_config(_spec(uid=None), image="i", mounts=[], limits=CgroupLimits(),
                         labels={})


def test_image_references_and_names():
    assert images.reference("base") == "teamhub/base:latest"
    assert images.reference("myorg/lab:3") == "myorg/lab:3"
    with pytest.raises(ImageError, match="not valid"):
        images.check_name("Bad Name")
    assert "teamhub image build base" in images.missing_message("base")
    assert "never pulls" in images.missing_message("other:1")


def test_recipe_hash_is_stable_and_changes_with_the_packages():
    if not Path("/etc/os-release").exists() or not Path("/usr/bin/python3").exists():
        pytest.skip("needs a Debian/Ubuntu machine")
    a = image_build.Recipe.for_this_machine("base", [])
    assert a.inputs_hash() == image_build.Recipe.for_this_machine("base", []).inputs_hash()
    b = image_build.Recipe.for_this_machine("base", ["git"])
    assert a.inputs_hash() != b.inputs_hash()
    assert "python3" in a.packages
    with pytest.raises(ImageError, match="package name"):
        image_build.Recipe.for_this_machine("base", ["git; rm -rf /"])
    # --pip packages and the --from image's id are inputs too; without them the hash is
    # what it always was (images built before --pip/--from stay current).
    with_pip = image_build.Recipe.for_this_machine("base", [], ["six"])
    assert with_pip.inputs_hash() not in (a.inputs_hash(), image_build.Recipe.for_this_machine(
        "base", [], ["six==1.16.0"]).inputs_hash())
    based = image_build.Recipe.for_this_machine("base", [], base="x", base_id="sha256:1")
    assert based.inputs_hash() != a.inputs_hash()
    assert based.inputs_hash() != image_build.Recipe.for_this_machine(
        "base", [], base="x", base_id="sha256:2").inputs_hash()


@pytest.mark.parametrize("req", ["six", "numpy==2.1.3", "torch[cpu]>=2,<3", "a.b-c_d~=1.0"])
def test_pip_requirements_names_and_versions_are_accepted(req):
    assert image_build.PIP_RE.fullmatch(req)


@pytest.mark.parametrize("req", ["-e .", "--index-url=http://x", "../pkg", "/tmp/x.whl",
                                 "git+https://example.org/x.git", "six; rm -rf /", ""])
def test_pip_paths_urls_and_options_are_refused(req):
    with pytest.raises(ImageError, match="not a Python package name"):
        image_build.Recipe.for_this_machine("base", [], [req], base="x")


def test_engine_not_running_is_one_clear_line(tmp_path):
    engine = Engine(str(tmp_path / "docker.sock"))
    with pytest.raises(DockerError, match="not running.*start the Docker engine"):
        engine.ping()


def test_engine_error_carries_the_engines_message(tmp_path):
    """A tiny fake engine on a unix socket: a 404 body's message reaches the error."""
    path = str(tmp_path / "e.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        body = b'{"message":"No such container: x"}'
        conn.sendall(b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        with pytest.raises(DockerError, match="No such container: x.*409"):
            Engine(path).start("x")
    finally:
        thread.join(5)
        server.close()



def test_limits_docker_cannot_enforce_are_refused_naming_them(monkeypatch):
    """The engine's answer is faked: an engine without the memory controller cannot be
    made on this machine, whose kernel has it."""
    from teamhub.limits import docker_limits_status

    monkeypatch.setattr(Engine, "info", lambda self: {"MemoryLimit": False, "PidsLimit": True,
                                                      "CpuCfsQuota": True})
    ok, why = docker_limits_status({"enabled": True, "memory": "1G", "tasks": 100})
    assert not ok and "memory" in why and "limits.enabled false" in why
    ok, why = docker_limits_status({"enabled": True, "memory": "none", "tasks": 100})
    assert ok and "Docker's cgroups" in why


def test_limits_without_an_engine_say_so(monkeypatch, tmp_path):
    from teamhub.limits import docker_limits_status

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    ok, why = docker_limits_status({"enabled": True, "memory": "1G"})
    assert not ok and "not running" in why


def test_spawn_limits_are_jupyterhubs_own(tmp_path):
    c = Config()
    hubconfig.update_spawn_limits(c, settings(tmp_path))
    assert (c.JupyterHub.concurrent_spawn_limit, c.JupyterHub.active_server_limit) == (100, 0)
    c = Config()
    hubconfig.update_spawn_limits(c, settings(tmp_path, "[hub]\nconcurrent_spawn_limit = 5\n",
                                              TEAMHUB_HUB_ACTIVE_SERVER_LIMIT="20"))
    assert (c.JupyterHub.concurrent_spawn_limit, c.JupyterHub.active_server_limit) == (5, 20)
    with pytest.raises(SettingsError, match="concurrent_spawn_limit"):
        settings(tmp_path, "[hub]\nconcurrent_spawn_limit = -1\n")


def test_a_home_volume_mount_copies_nothing_from_the_image():
    mount = Mount("teamhub-user-ada", "/home/jupyter-ada", read_only=False, kind="volume")
    assert mount.as_api() == {"Type": "volume", "Source": "teamhub-user-ada",
                              "Target": "/home/jupyter-ada", "ReadOnly": False,
                              "VolumeOptions": {"NoCopy": True}}


def test_docker_home_is_bind_or_volume(tmp_path):
    c = Config()
    s = settings(tmp_path, '[spawner]\nbackend = "docker"\n[docker]\nhome = "volume"\n')
    hubconfig.update_docker(c, s, Paths.from_settings(s))
    assert c.DockerSpawner.home_mode == "volume"
    with pytest.raises(SettingsError, match="bind.*volume"):
        settings(tmp_path, '[docker]\nhome = "nfs"\n')
