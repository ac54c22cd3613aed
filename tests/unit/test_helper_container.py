"""The root helper's container verbs' rules that need no engine or account (the real thing,
with a compromised hub: tests/hub/test_docker_backend.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from teamhub import helper_policy, hubconfig
from teamhub.errors import HelperRefused
from teamhub.paths import Paths
from teamhub.settings import Settings
from teamhub.spawners import container_launch, helper_container
from teamhub.spawners.rootdoor import Policy
from teamhub.system.containers import LABEL_SERVER, LABEL_USER, CgroupLimits

POLICY = Policy(hub_uid=990, docker_images=["base", "ml"], program="/x/jupyterhub-singleuser")


def body(**changes: Any) -> dict[str, Any]:
    spec = {"argv": ["/x/jupyterhub-singleuser"], "cwd": "/home/jupyter-ada",
            "env": {"JUPYTERHUB_USER": "ada", "JUPYTERHUB_SERVER_NAME": ""}}
    request = {"spec": spec, "user": "ada", "server": "", "image": "base",
               "limits": {"memory": 1 << 30, "cpu": 1.5, "tasks": 512}, "gpus": [],
               "fast": True}
    request.update(changes)
    return request


@pytest.mark.parametrize("changes, reason", [
    ({"mounts": [{"Source": "/", "Target": "/host"}]}, "takes no 'mounts'"),
    ({"privileged": True}, "takes no 'privileged'"),
    ({"binds": ["/etc:/etc"]}, "takes no 'binds'"),
    ({"cap_add": ["SYS_ADMIN"]}, "takes no 'cap_add'"),
    ({"devices": ["/dev/sda"]}, "takes no 'devices'"),
    ({"volume": "teamhub-user-bob"}, "takes no 'volume'"),
    ({"image": "alpine"}, "not one of the configured images"),
    ({"image": "teamhub/base:latest"}, "not one of the configured images"),
    ({"user": "Ada"}, "user name"),
    ({"user": "../ada"}, "user name"),
    ({"server": "x/../y"}, "bad server name"),
    ({"spec": ["/bin/sh"]}, "not a launch spec"),
    ({"spec": {"argv": ["/bin/sh"], "cwd": "/", "env": {}, "privileged": True}}, "spec:"),
    ({"user": "bob"}, "JUPYTERHUB_USER is not the request's user"),
    ({"server": "gpu"}, "SERVER_NAME is not the request's server"),
])
def test_container_start_takes_nothing_but_its_fields(changes: dict, reason: str) -> None:
    with pytest.raises(HelperRefused, match=reason):
        helper_container.check_start(body(**changes), POLICY)


def test_no_container_verbs_without_the_docker_backend() -> None:
    with pytest.raises(HelperRefused, match="docker backend is not configured"):
        helper_container.check_start(body(), Policy(hub_uid=990))


@pytest.mark.parametrize("field", ["scope", "private_tmp", "devices"])
def test_a_containers_placement_is_dockers(field: str) -> None:
    request = body()
    request["spec"][field] = {"unit": "x"} if field != "private_tmp" else "/tmp"
    with pytest.raises(HelperRefused, match="placement is Docker's"):
        helper_container.check_start(request, POLICY)


def test_limits_are_positive_numbers_of_three_kinds() -> None:
    assert helper_container.check_limits(None) == CgroupLimits()
    assert helper_container.check_limits({"memory": 5, "cpu": 0.5, "tasks": None}) == \
        CgroupLimits(memory=5, cpu=0.5)
    for bad in ({"memory": -1}, {"memory": 1.5}, {"cpu": float("inf")}, {"tasks": True},
                {"tasks": "9"}, {"swap": 1}, [1]):
        with pytest.raises(HelperRefused):
            helper_container.check_limits(bad)


def _record(path: Path, *holdings: tuple[str, str, str]) -> None:
    path.write_text(json.dumps({"holdings": [
        {"uuid": u, "holder": h, "server": s, "since": 1.0, "shared": False, "pid": 1,
         "pid_start": 1} for u, h, s in holdings]}))


def test_gpus_only_those_the_record_gives_that_server(tmp_path: Path) -> None:
    record = tmp_path / "gpus.json"
    _record(record, ("GPU-a", "ada", ""), ("GPU-b", "bob", ""), ("GPU-c", "ada", "big"))
    policy = Policy(gpu_allocations=str(record))
    assert helper_container.check_gpus(["GPU-a"], policy, "ada", "") == ("GPU-a",)
    assert helper_container.check_gpus([], policy, "ada", "") == ()
    for wanted, server in ((["GPU-b"], ""), (["GPU-c"], ""), (["GPU-a"], "big")):
        with pytest.raises(HelperRefused, match="allocation record"):
            helper_container.check_gpus(wanted, policy, "ada", server)
    with pytest.raises(HelperRefused, match="GPU UUIDs"):
        helper_container.check_gpus(["/dev/sda"], policy, "ada", "")
    with pytest.raises(HelperRefused, match="allocation record"):
        helper_container.check_gpus(["GPU-a"], Policy(), "ada", "")
    # Never through a link (the record is the hub's file).
    link = tmp_path / "link.json"
    link.symlink_to(record)
    with pytest.raises(HelperRefused, match="cannot read"):
        helper_container.check_gpus(["GPU-a"], Policy(gpu_allocations=str(link)), "ada", "")


class FakeEngine:
    def __init__(self, containers: dict[str, dict]) -> None:
        self.found = containers

    def container(self, ident: str) -> dict | None:
        return self.found.get(ident)


def test_only_that_users_teamhub_container_is_touched() -> None:
    own = {"Id": "1", "Config": {"Labels": {LABEL_USER: "ada", LABEL_SERVER: ""}}}
    engine: Any = FakeEngine({
        "teamhub-ada": own,
        "teamhub-ada-gpu": {"Id": "2", "Config": {"Labels": {LABEL_USER: "ada",
                                                             LABEL_SERVER: "other"}}},
        "teamhub-bob": {"Id": "3", "Config": {"Labels": {}}},
        "teamhub-eve": {"Id": "4", "Config": {"Labels": {LABEL_USER: "ada"}}},
    })
    assert helper_container.users_container({"user": "ada"}, engine) == ("ada", "", own)
    assert helper_container.users_container({"user": "cy", "server": ""}, engine)[2] is None
    for request in ({"user": "ada", "server": "gpu"}, {"user": "bob"}, {"user": "eve"}):
        with pytest.raises(HelperRefused, match="is not teamhub's container"):
            helper_container.users_container(request, engine)
    with pytest.raises(HelperRefused):
        helper_container.users_container({"user": "root/../x"}, engine)


@pytest.mark.parametrize("verb, request_", [
    ("stop", {"user": "ada", "timeout": -1}),
    ("stop", {"user": "ada", "timeout": 100000}),
    ("stop", {"user": "ada", "timeout": "5"}),
    ("logs", {"user": "ada", "lines": 0}),
    ("logs", {"user": "ada", "lines": 10**6}),
])
def test_stop_and_logs_take_bounded_numbers(verb: str, request_: dict) -> None:
    with pytest.raises(HelperRefused, match="timeout is not|lines is not"):
        if verb == "stop":
            helper_container.stop(request_, POLICY)
        else:
            helper_container.logs(request_)


def test_policy_builds_containers_as_the_root_hubs_spawner(
        settings: Callable[..., Settings]) -> None:
    s = settings('[spawner]\nbackend = "docker"\n[docker]\nimage = "base"\nhome = "volume"\n'
                 '[docker.images.ml]\ndisplay = "ML"\n')
    paths = Paths.from_settings(s)
    policy = helper_policy.build(s, paths)
    c = Config()
    hubconfig.update_docker(c, s, paths)
    assert policy.docker_images == sorted({c.DockerSpawner.image, *c.DockerSpawner.allowed_images})
    site = helper_container.site(policy)
    assert site.home_mode == c.DockerSpawner.home_mode == "volume"
    assert site.runtime_dir == c.DockerSpawner.runtime_dir
    assert site.envs_root == c.DockerSpawner.envs_root
    assert Path(hubconfig.unix_url(paths.hub_socket).split("//")[1].replace("%2F", "/")).parent \
        == Path(site.hub_socket_dir)
    assert Policy.from_json(policy.to_json()) == policy
    # No docker backend: no container verbs.
    assert helper_policy.build(settings(""), paths).docker_images == []
    assert container_launch.container_name("ada", "gpu") == "teamhub-ada-gpu"
