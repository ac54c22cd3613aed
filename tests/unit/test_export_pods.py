"""The exported values, configured the way the chart configures its hub, make KubeSpawner
build each user's pod as theirs: own uid/gid, project mounts per grant (read-only for
readers), their groups' limits, GPUs for the GPU group.

No Kubernetes cluster can run here, so the pods are not started: KubeSpawner (the chart's
spawner, from PyPI) builds the manifest it would send (`get_pod_manifest`, which makes no
API call), for minimal stand-ins of JupyterHub's user and hub objects. KubeSpawner loads
a client configuration when constructed; a kubeconfig naming an unused loopback port
satisfies it and is never contacted.

"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

kubespawner = pytest.importorskip("kubespawner")

from kubernetes_asyncio.client import ApiClient  # noqa: E402
from kubernetes_asyncio.config import kube_config  # noqa: E402
from support.z2jh import chart_config, populated  # noqa: E402

from teamhub.export.bundle import export_z2jh  # noqa: E402
from teamhub.export.values import Options  # noqa: E402
from teamhub.spawners.local import SpawnFailed  # noqa: E402

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: unused}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""
GIB = 1024**3


async def _pod(config, name: str, groups: list[str]) -> dict:
    user = SimpleNamespace(name=name, id=1, url=f"/user/{name}/", escaped_name=name,
                           groups=[SimpleNamespace(name=g) for g in groups])
    hub = SimpleNamespace(public_host="", url="http://hub:8081/hub/", base_url="/",
                          api_url="http://hub:8081/hub/api")
    spawner = kubespawner.KubeSpawner(config=config, user=user, hub=hub, _mock=True)
    await spawner.pre_spawn_hook(spawner)
    manifest = await spawner.get_pod_manifest()
    async with ApiClient() as client:
        return client.sanitize_for_serialization(manifest)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """The chart's hub configuration from one export, and the export's users."""
    tmp = tmp_path_factory.mktemp("z2jh")
    settings = populated(tmp / "install")
    export_z2jh(settings, tmp / "out", Options(guarantee=0.5))
    values = yaml.safe_load((tmp / "out" / "values.yaml").read_text())
    config = chart_config(values, Path(settings["paths.state_dir"]) / "accounts.sqlite")
    (tmp / "kubeconfig").write_text(KUBECONFIG)
    with pytest.MonkeyPatch.context() as patch:
        # kubernetes_asyncio reads $KUBECONFIG once, at import: its default location it is.
        patch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp / "kubeconfig"))
        yield config, values["custom"]["teamhub"]["users"]


@pytest.fixture(scope="module")
def pods(exported) -> tuple[dict, dict]:
    config, users = exported

    async def three() -> dict:
        # The groups are what JupyterHub loaded from the account store at start.
        return {"ada": await _pod(config, "ada", ["data"]),
                "bob": await _pod(config, "bob", ["data", "ml"]),
                "cy": await _pod(config, "cy", [])}

    return asyncio.run(three()), users


def _mounts(pod: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}


def test_each_pod_runs_as_its_users_own_ids(pods) -> None:
    found, users = pods
    for name, pod in found.items():
        container = pod["spec"]["containers"][0]
        assert container["securityContext"]["runAsUser"] == users[name]["uid"]
        assert container["securityContext"]["runAsGroup"] == users[name]["gid"]
        assert pod["spec"]["securityContext"]["fsGroup"] == users[name]["gid"]
        assert container["workingDir"] == f"/home/jupyter-{name}"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HOME"] == f"/home/jupyter-{name}" and env["USER"] == f"jupyter-{name}"
        home = _mounts(pod)[f"/home/jupyter-{name}"]
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
                  for v in pod["spec"]["volumes"]}
        assert claims[home["name"]] == f"home-{name}"
        assert container["args"][0] == "/opt/teamhub/runtime/bin/jupyterhub-singleuser"
        assert "--ServerApp.jpserver_extensions=teamhub.serverext=True" in container["args"]


def test_projects_are_mounted_per_grant(pods) -> None:
    found, _ = pods
    root = "/srv/teamhub/projects"
    expected = {"ada": {"survey": False},  # writer (also reader through @data)
                "bob": {"survey": True, "atlas": False},  # @data reads, @ml writes
                "cy": {"survey": True}}
    for name, pod in found.items():
        mounts = _mounts(pod)
        projects = {p[len(root) + 1:]: m for p, m in mounts.items() if p.startswith(root)}
        assert {p: m.get("readOnly", False) for p, m in projects.items()} == expected[name]
        assert all(m["name"] == "teamhub-projects" and m["subPath"] == p
                   for p, m in projects.items())
        assert mounts["/dev/shm"]["name"] == "dev-shm"
        envs = [m for p, m in mounts.items() if p.endswith("/install/envs")]
        assert [m["readOnly"] for m in envs] == [True]  # the shared envs, at their own path


def test_limits_follow_the_most_generous_group(pods) -> None:
    found, _ = pods
    resources = {n: p["spec"]["containers"][0]["resources"] for n, p in found.items()}
    # ada and bob are in `data` (16G, 4 CPUs); cy gets the [limits] values (4G, 2 CPUs).
    for name, (mem, cpu) in {"ada": (16, 4), "bob": (16, 4), "cy": (4, 2)}.items():
        assert int(resources[name]["limits"]["memory"]) == mem * GIB
        assert float(resources[name]["limits"]["cpu"]) == cpu
        assert int(resources[name]["requests"]["memory"]) == mem * GIB // 2
        assert float(resources[name]["requests"]["cpu"]) == cpu / 2


def test_gpus_only_for_the_gpu_group(pods) -> None:
    found, _ = pods
    limits = {n: p["spec"]["containers"][0]["resources"]["limits"] for n, p in found.items()}
    assert limits["bob"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in limits["ada"] and "nvidia.com/gpu" not in limits["cy"]


def test_a_user_without_uid_cannot_start(exported) -> None:
    config, _ = exported
    with pytest.raises(SpawnFailed, match="has no Linux uid on this cluster"):
        asyncio.run(_pod(config, "newbie", []))


def test_the_hub_logs_in_with_teamhubs_store_and_groups(exported) -> None:
    config, _ = exported
    assert config.JupyterHub.authenticator_class.endswith("TeamhubAuthenticator")
    assert config.JupyterHub.load_groups == {"data": {"users": ["ada", "bob"]},
                                             "ml": {"users": ["bob"]}}
    assert config.TeamhubAuthenticator.signup_enabled is True
    assert config.GuardedAuthenticator.lockout_failures == 7
    headers = config.JupyterHub.tornado_settings["headers"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert config.JupyterHub.tornado_settings["cookie_options"]["samesite"] == "Lax"
    assert config.Spawner.disable_user_config is True
