"""A populated teamhub for the export tests, and the chart's own mapping of values to
KubeSpawner configuration (only the keys teamhub's export sets), written from reading the
chart's jupyterhub_config.py: no Kubernetes cluster or helm binary can run here, so the
tests build pod manifests with kubespawner's own code from what the chart would configure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomli_w
from traitlets.config import Config

from teamhub import settings as settings_mod
from teamhub import tls
from teamhub.accounts.groups import GroupStore
from teamhub.accounts.store import AccountStore
from teamhub.export import chart
from teamhub.projects.model import Principal, ProjectStore

PW = "export-test-horse-battery"


def populated(tmp: Path, **overrides: Any) -> settings_mod.Settings:
    """Settings of an install with users, groups, projects (readers and writers), two shared
    envs, limits with a group override, TLS and GPUs for a group. OVERRIDES: extra
    settings as {section: {key: value}}."""
    state, envs = tmp / "state", tmp / "envs"
    cert, key = tmp / "tls" / "hub.crt", tmp / "tls" / "hub.key"
    cert.parent.mkdir(parents=True)
    tls.self_signed(cert, key, ["hub.example.org", "*.hub.example.org"], 30)
    data: dict[str, Any] = {
        "paths": {"state_dir": str(state)},
        "envs": {"root": str(envs)},
        "hub": {"domain": "hub.example.org", "log_level": "INFO"},
        "tls": {"cert": str(cert), "key": str(key)},
        "limits": {"memory": "4G", "cpu": "2", "tasks": 0,
                   "groups": {"data": {"memory": "16G", "cpu": "4"}}},
        "spawner": {"shm_size": "2G", "environment": {"PATH": "/opt/tools/bin"}},
        "auth": {"signup": True, "lockout_failures": 7, "min_password_length": 12},
        "culling": {"timeout": 7200},
    }
    for section, table in overrides.items():
        data.setdefault(section, {}).update(table)
    config = tmp / "teamhub.toml"
    config.write_text(tomli_w.dumps(data))
    settings = settings_mod.load(config, environ={})
    # The [gpus] settings arrive with issue 12 on another branch; the export reads them
    # from settings.values, where they are put here in their documented shape.
    settings.values.update({"gpus.default": "none", "gpus.groups": {"ml": "2"},
                            "gpus.users": {}})
    store = AccountStore(state / "accounts.sqlite")
    store.add("ada", PW, admin=True)
    for name in ("bob", "cy", "eve"):
        store.add(name, PW)
    store.add("dee", PW, pending=True)
    store.set_blocked("eve", True)
    groups = GroupStore(store)
    for group, members in (("data", ["ada", "bob"]), ("ml", ["bob"])):
        groups.create(group)
        groups.add_members(group, members)
    projects = ProjectStore(store)
    projects.create("survey", "", {Principal("user", "ada"): "write",
                                   Principal("group", "data"): "read",
                                   Principal("user", "cy"): "read"}, "test")
    projects.create("atlas", "", {Principal("group", "ml"): "write"}, "test")
    for env, env_groups in (("ml", ["ml"]), ("stats", [])):
        (envs / env).mkdir(parents=True)
        (envs / env / "teamhub-env.json").write_text(json.dumps(
            {"name": env, "groups": env_groups, "current": 1, "revisions": []}))
    return settings


def _get(tree: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def chart_config(values: dict[str, Any], store_path: Path) -> Config:
    """What the chart's hub makes of VALUES (merged over its defaults): the KubeSpawner
    keys the export sets, hub.config passed through, then hub.extraConfig run with `c` and
    `get_config`, as the chart's jupyterhub_config.py does. STORE_PATH replaces the hub
    volume's path of the account store, which the migration copies there."""
    merged = chart.helm_merge(chart.defaults(), values)
    merged["custom"]["teamhub"]["storePath"] = str(store_path)
    su = merged["singleuser"]
    c = Config()
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    for trait, key in (("uid", "uid"), ("fs_gid", "fsGid"), ("mem_limit", "memory.limit"),
                       ("mem_guarantee", "memory.guarantee"), ("cpu_limit", "cpu.limit"),
                       ("cpu_guarantee", "cpu.guarantee"),
                       ("extra_resource_limits", "extraResource.limits"),
                       ("environment", "extraEnv"), ("start_timeout", "startTimeout")):
        value = _get(su, key)
        if value is not None:
            c.KubeSpawner[trait] = value
    c.KubeSpawner.image = f"{su['image']['name']}:{su['image']['tag']}"
    c.Spawner.cmd = su["cmd"]
    c.Spawner.default_url = su["defaultUrl"]
    storage = su["storage"]
    volumes = {"volume-{user_server}": {"name": "volume-{user_server}",
                                        "persistentVolumeClaim": {"claimName": "{pvc_name}"}}}
    mounts = {"volume-{user_server}": {"name": "volume-{user_server}",
                                       "mountPath": storage["homeMountPath"]}}
    if su.get("extraFiles"):
        volumes["files"] = {"name": "files", "secret": {"secretName": "singleuser", "items": [
            {"key": k, "path": k, "mode": f["mode"]} for k, f in su["extraFiles"].items()]}}
        for i, (k, f) in enumerate(su["extraFiles"].items()):
            mounts[f"{i}-files"] = {"mountPath": f["mountPath"], "subPath": k, "name": "files"}
    volumes.update(storage.get("extraVolumes") or {})
    mounts.update(storage.get("extraVolumeMounts") or {})
    c.KubeSpawner.volumes = volumes
    c.KubeSpawner.volume_mounts = mounts
    for section, table in merged["hub"]["config"].items():
        c[section].update(table)
    for _name, source in sorted(merged["hub"]["extraConfig"].items()):
        exec(source, {"c": c, "get_config": lambda key, default=None: _get(merged, key,
                                                                             default)})
    return c
