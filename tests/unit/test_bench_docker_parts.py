"""Pure parts of `bench/run --backend docker`: the vanilla DockerSpawner config, image
hashes, timestamps and the spawn timeline, the table's docker rows."""

from __future__ import annotations

import asyncio
import sys
import time
import types

import pytest
from traitlets.config import Config

from bench import __main__ as bench_main
from bench import containers, docker_images
from bench.vanilla_docker import vanilla_docker_config, vanilla_docker_env
from teamhub import images


class FakeDockerSpawner:
    """Stands in for dockerspawner.DockerSpawner (not installed in teamhub's runtime)."""

    host_ip = "127.0.0.1"
    port = 8888

    async def start(self):
        return ("container-ip", self.port)


class FakeNativeLoginHandler:
    """nativeauthenticator.handlers.LoginHandler on JupyterHub 6: no statsd."""


def load_config(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Config:
    fake_spawner = types.ModuleType("dockerspawner")
    fake_spawner.DockerSpawner = FakeDockerSpawner
    fake_native = types.ModuleType("nativeauthenticator")
    fake_native.__file__ = "/venv/lib/nativeauthenticator/__init__.py"
    fake_handlers = types.ModuleType("nativeauthenticator.handlers")
    fake_handlers.LoginHandler = FakeNativeLoginHandler
    monkeypatch.delattr(FakeNativeLoginHandler, "statsd", raising=False)
    monkeypatch.setitem(sys.modules, "dockerspawner", fake_spawner)
    monkeypatch.setitem(sys.modules, "nativeauthenticator", fake_native)
    monkeypatch.setitem(sys.modules, "nativeauthenticator.handlers", fake_handlers)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    c = Config()
    source = vanilla_docker_config(8000, 8081, 8001, "/opt/chp/configurable-http-proxy")
    exec(compile(source, "jupyterhub_config.py", "exec"), {"get_config": lambda: c})
    return c


def test_vanilla_config_is_dockerspawner_on_the_host_network_from_env(
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = vanilla_docker_env("teamhub-bench/singleuser:abc", "vadmin", "tok")
    c = load_config(monkeypatch, env)
    ds = c.DockerSpawner
    assert ds.image == "teamhub-bench/singleuser:abc"
    assert ds.network_name == "host" and ds.use_internal_ip is True
    assert ds.remove is True and ds.pull_policy == "never"
    assert ds.volumes == {"jupyterhub-user-{username}": "/home/jovyan/work"}
    # Default timeouts, concurrency and no limits: none of them is set.
    for trait in ("start_timeout", "http_timeout", "mem_limit", "cpu_limit"):
        assert trait not in ds and trait not in c.Spawner, trait
    assert "concurrent_spawn_limit" not in c.JupyterHub
    assert c.JupyterHub.authenticator_class == "native"
    assert c.Authenticator.admin_users == {"vadmin"} and c.Authenticator.allow_all is True
    assert c.JupyterHub.template_paths == ["/venv/lib/nativeauthenticator/templates"]
    assert c.JupyterHub.port == 8000 and c.JupyterHub.hub_port == 8081
    assert c.ConfigurableHTTPProxy.command == ["/opt/chp/configurable-http-proxy"]


def test_vanilla_spawner_takes_a_free_port_and_reports_the_host_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = load_config(monkeypatch, vanilla_docker_env("img", "a", "t"))
    spawner = c.JupyterHub.spawner_class()
    assert issubclass(c.JupyterHub.spawner_class, FakeDockerSpawner)
    asyncio.run(spawner.start())
    assert spawner.port != 8888
    assert asyncio.run(spawner.get_ip_and_port()) == ("127.0.0.1", spawner.port)


def test_native_login_handler_gets_a_timer_that_does_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    load_config(monkeypatch, vanilla_docker_env("img", "a", "t"))
    timer = FakeNativeLoginHandler.statsd.timer("login.authenticate").start()
    timer.stop(send=False)


def test_env_style_limits_are_read_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    c = load_config(monkeypatch, {**vanilla_docker_env("img", "a", "t"),
                                  "SPAWNER_MEM_LIMIT": "2G", "SPAWNER_CPU_LIMIT": "1.5",
                                  "HUB_CONCURRENT_SPAWN_LIMIT": "4", "SPAWNER_REMOVE": "false"})
    assert c.DockerSpawner.mem_limit == "2G" and c.DockerSpawner.cpu_limit == 1.5
    assert c.JupyterHub.concurrent_spawn_limit == 4 and c.DockerSpawner.remove is False


def test_singleuser_image_hash_covers_base_and_versions() -> None:
    versions = {"jupyterhub": "6.1.1", "jupyterlab": "4.6.6"}
    first = docker_images.singleuser_hash("sha256:aaa", versions)
    assert first == docker_images.singleuser_hash("sha256:aaa", dict(reversed(versions.items())))
    assert first != docker_images.singleuser_hash("sha256:bbb", versions)
    assert first != docker_images.singleuser_hash("sha256:aaa", {**versions, "jupyterlab": "4.7"})
    assert docker_images.singleuser_pins(versions) == "jupyterhub==6.1.1 jupyterlab==4.6.6"


def test_singleuser_image_does_not_pass_for_a_teamhub_image() -> None:
    """It is committed from a teamhub image, whose recipe label `teamhub image build`
    looks images up by: the commit must blank it, or that image would be reused."""
    assert f'LABEL {images.LABEL}="" {images.HASH_LABEL}=""' in docker_images.SINGLEUSER_CHANGES


def test_docker_timestamps_keep_sub_millisecond_precision() -> None:
    base = containers.docker_time("2026-12-02T01:24:33Z")
    assert base == pytest.approx(1796174673.0)
    assert containers.docker_time("2026-12-02T01:24:33.123456789Z") - base == \
        pytest.approx(0.123456789, abs=1e-6)
    assert containers.docker_time("2026-12-02T02:24:33.5+01:00") == pytest.approx(base + 0.5)
    with pytest.raises(ValueError):
        containers.docker_time("0001-01-01")


def test_hub_log_and_container_output_times() -> None:
    log = ("[I 2026-12-02 01:24:33.120 JupyterHub base:1193] User ann took 1.250 seconds "
           "to start\n"
           "\x1b[32m[I 2026-12-02 01:24:34.500 JupyterHub base:1193]\x1b[0m User ann took "
           "0.5 seconds to start\n"
           "[I 2026-12-02 01:24:35.000 JupyterHub proxy:336] Adding user ann to proxy\n")
    times = containers.hub_log_times(log, r"^User ann took")
    local = time.mktime(time.strptime("2026-12-02 01:24:33", "%Y-%m-%d %H:%M:%S"))
    assert times == [pytest.approx(local + 0.12), pytest.approx(local + 1.5)]
    out = ("2026-12-02T01:24:33.100000000Z [I ServerApp] starting\n"
           "2026-12-02T01:24:33.900000000Z [I ServerApp] Jupyter Server 2.1 is running at:\n")
    assert containers.first_output_time(out, "is running at") == \
        pytest.approx(containers.docker_time("2026-12-02T01:24:33.9Z"))
    assert containers.first_output_time(out, "never said") is None


def test_segments_skip_unknown_marks_into_the_next() -> None:
    marks = {"request": 10.0, "created": 10.2, "started": 10.5, "listening": None,
             "hub_ready": 12.0, "ready": 12.1, "lab": 12.4}
    assert containers.segments(marks) == {
        "before_create_s": 0.2, "container_start_s": 0.3, "hub_readiness_s": 1.5,
        "route_ready_s": 0.1, "lab_open_s": 0.3}
    assert containers.segments({"created": 1.0}) == {}


def test_docker_options_and_table_rows() -> None:
    args = bench_main.parse(["--backend", "docker", "--quick", "--image", "mine"])
    assert (args.backend, args.image) == ("docker", "mine")
    assert bench_main.parse([]).backend == "local"
    text = bench_main.table({
        "teamhub": {"backend": "docker", "spawn_p50_s": 1.0, "idle_cgroup_mb": 50.0,
                    "spawn_server_start_p50_s": 0.8},
        "vanilla": {"backend": "docker", "spawn_p50_s": 4.0, "idle_cgroup_mb": 100.0}})
    row = next(line for line in text.splitlines() if line.startswith("idle cgroup memory"))
    assert row.split()[-3:] == ["50", "100", "0.50"]
    assert "DockerSpawner" in text and "spawn: started → listening" in text
    assert "idle cgroup" not in bench_main.table({"teamhub": {}, "vanilla": {}})
