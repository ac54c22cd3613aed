"""Where every teamhub setting goes in a Zero to JupyterHub deployment, or why nowhere.

One entry per setting, kept here (not in settings.py) so that a new setting is one new
line: `to` names the values (or image) it becomes, `reason` says why it is not
exportable. `loss` reports, for the install's actual value, what the chart cannot
express; each such line makes the export fail unless `--allow-loss`. The test
tests/unit/test_export_mapping.py fails for a setting without an entry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .gpus import plan as gpu_plan

Values = dict[str, Any]  # settings.values: key -> effective value


@dataclass(frozen=True)
class Rule:
    to: str = ""  # where it goes
    reason: str = ""  # why it is not exportable
    loss: Callable[[Values], list[str]] | None = None


def _warm_kernels(v: Values) -> list[str]:
    if v["envs.warm_kernels"] == "on-demand":
        return []
    return [f"envs.warm_kernels = {v['envs.warm_kernels']}: the pods' servers start kernels "
            "from warm parents on demand (the default) instead"]


def _warm_idle(v: Values) -> list[str]:
    if v["envs.warm_idle"] == 600:
        return []
    return [f"envs.warm_idle = {v['envs.warm_idle']}: the pods' servers stop unused warm "
            "kernel parents after 600 s instead"]


def _image_choice(v: Values) -> list[str]:
    if not v["docker.images"]:
        return []
    return [f"docker.images offers {', '.join(sorted(v['docker.images']))}: the export builds "
            "only docker.image's single-user image; give the others as singleuser.profileList "
            "entries (one kubespawner_override.image each, built and pushed by you)"]


def _loopback_ip(v: Values) -> list[str]:
    ip = v["hub.ip"]
    if ip != "auto" and ipaddress.ip_address(ip).is_loopback:
        return [f"hub.ip = {ip} keeps teamhub on this machine only; the chart's proxy-public "
                "Service is reachable from the network (set proxy.service.type: ClusterIP "
                "to keep it inside the cluster)"]
    return []


def _env_keep(v: Values) -> list[str]:
    if v["spawner.env_keep"]:
        return [f"spawner.env_keep = {v['spawner.env_keep']}: the hub's own environment is "
                "not there in the cluster; put the values in spawner.environment"]
    return []


def _tasks(v: Values) -> list[str]:
    if not v["limits.enabled"]:
        return []
    found = []
    if v["limits.tasks"]:
        found.append(f"limits.tasks = {v['limits.tasks']}: Kubernetes limits processes per "
                     "node (the kubelet's podPidsLimit), not per pod; set it there")
    for group, table in sorted((v["limits.groups"] or {}).items()):
        if "tasks" in table:
            found.append(f"limits.groups.{group}.tasks = {table['tasks']}: no per-pod "
                         "process limit in Kubernetes (kubelet podPidsLimit is per node)")
    return found


def _pam(v: Values) -> list[str]:
    if v["auth.mode"] == "pam":
        return ["auth.mode = pam: pods have no PAM and none of this machine's Linux accounts; "
                "move the accounts into teamhub's store (auth.mode = builtin) first"]
    return []


def _gpus(v: Values) -> list[str]:
    return gpu_plan(v).losses


_N = "not a setting of the cluster: "
_PAM = Rule(reason="PAM mode only, which does not carry over (see auth.mode)")
_RETIRED = Rule(reason="retired; accepted only so that older settings files load")

MAPPING: dict[str, Rule] = {
    "hub.ip": Rule(reason=_N + "the chart's proxy-public Service decides where the hub is "
                   "reachable", loss=_loopback_ip),
    "hub.port": Rule(reason=_N + "the proxy-public Service listens on 80 and 443"),
    "hub.internal_port": _RETIRED,
    "hub.account": Rule(reason=_N + "the chart's hub pod runs unprivileged already and has "
                        "no root helper"),
    "hub.unprivileged": Rule(reason=_N + "the chart's hub pod runs unprivileged already"),
    "hub.domain": Rule(to="hub.config.JupyterHub.subdomain_host, proxy.https.hosts"),
    "hub.default_url": Rule(to="singleuser.defaultUrl"),
    "hub.log_level": Rule(to="hub.config.JupyterHub.log_level (DEBUG: debug.enabled)"),
    "hub.stop_servers_on_shutdown": Rule(to="hub.config.JupyterHub.cleanup_servers"),
    "hub.concurrent_spawn_limit": Rule(to="hub.concurrentSpawnLimit"),
    "hub.active_server_limit": Rule(to="hub.activeServerLimit"),
    "paths.state_dir": Rule(reason=_N + "the hub's state is its volume (hub.db); the "
                            "account store is copied there (MIGRATION.md)"),
    "db.url": Rule(to="hub.db (type postgres, url without the password, hub.db.password; "
                   "the account store in the same database), else sqlite-pvc"),
    "paths.runtime_dir": Rule(to="the single-user image (runtime at the same path), "
                              "singleuser.cmd"),
    "paths.home_root": Rule(to="singleuser.storage.homeMountPath"),
    "users.system_prefix": Rule(to="singleuser.storage.homeMountPath, custom.teamhub.users "
                                "(Linux names in the pods' passwd)"),
    "users.shell": Rule(to="singleuser.extraFiles teamhub-passwd (login shell)"),
    "spawner.start_timeout": Rule(to="singleuser.startTimeout"),
    "spawner.http_timeout": Rule(to="hub.config.KubeSpawner.http_timeout"),
    "spawner.fork_server": Rule(reason=_N + "every server is a fresh container, so there is "
                                "nothing to fork"),
    "spawner.shm_size": Rule(to="singleuser.storage.extraVolumes/extraVolumeMounts dev-shm "
                             "(a memory emptyDir at /dev/shm)"),
    "spawner.environment": Rule(to="singleuser.extraEnv"),
    "spawner.env_keep": Rule(reason="the hub's own environment stays on this machine",
                             loss=_env_keep),
    "spawner.backend": Rule(to="the single-user image's base (docker: docker.image)"),
    "docker.image": Rule(to="the single-user image's base (with spawner.backend = docker)"),
    "docker.images": Rule(reason="the chart's image choice is singleuser.profileList; not "
                          "written", loss=_image_choice),
    "docker.home": Rule(reason=_N + "homes become one volume per user either way "
                        "(singleuser.storage dynamic)"),
    "envs.root": Rule(to="singleuser.storage.extraVolumes/extraVolumeMounts teamhub-envs "
                      "(read-only at the same path), custom.teamhub.envsRoot"),
    "envs.keep_revisions": Rule(reason="environments are built here; their folder is copied "
                                "as it is"),
    "envs.lock_timeout": Rule(reason="environments are built here, not in the cluster"),
    "envs.warm_kernels": Rule(reason="pods' servers get the same server options as here, with "
                              "this setting's default (on-demand)", loss=_warm_kernels),
    "envs.warm_idle": Rule(reason="pods' servers get the same server options as here, with "
                           "this setting's default (600)", loss=_warm_idle),
    "proxy.api_port": _RETIRED,
    "proxy.command": Rule(reason=_N + "the chart runs its own configurable-http-proxy pod "
                          "(proxy.chp)"),
    "projects.root": Rule(to="singleuser.storage.extraVolumes teamhub-projects (one "
                          "ReadWriteMany volume), custom.teamhub.projectsRoot (mounted per "
                          "grant)"),
    "tls.cert": Rule(to="proxy.https.manual.cert"),
    "tls.key": Rule(to="proxy.https.manual.key"),
    "tls.http_port": Rule(to="proxy.service.disableHttpPort (0); the chart redirects port 80"),
    "tls.hsts_max_age": Rule(to="custom.teamhub.hsts (hub and servers' headers)"),
    "culling.enabled": Rule(to="cull.enabled"),
    "culling.timeout": Rule(to="cull.timeout"),
    "culling.every": Rule(to="cull.every, custom.teamhub.activityInterval"),
    "limits.enabled": Rule(to="singleuser.cpu, singleuser.memory (off: no limits)"),
    "limits.memory": Rule(to="singleuser.memory.limit and .guarantee"),
    "limits.cpu": Rule(to="singleuser.cpu.limit and .guarantee"),
    "limits.tasks": Rule(reason="no per-pod process limit in Kubernetes", loss=_tasks),
    "limits.private_tmp": Rule(reason=_N + "every pod has its own /tmp"),
    "limits.groups": Rule(to="custom.teamhub.limits.groups (memory, cpu; applied per user "
                          "at spawn)"),
    "auth.mode": Rule(to="hub.config.JupyterHub.authenticator_class", loss=_pam),
    "auth.allowed_groups": _PAM,
    "auth.admin_groups": _PAM,
    "auth.pam_min_uid": _PAM,
    "auth.pam_service": _PAM,
    "auth.lockout_failures": Rule(to="hub.config.GuardedAuthenticator.lockout_failures"),
    "auth.lockout_base_seconds": Rule(to="hub.config.GuardedAuthenticator."
                                      "lockout_base_seconds"),
    "auth.lockout_max_seconds": Rule(to="hub.config.GuardedAuthenticator.lockout_max_seconds"),
    "auth.client_max_failures": Rule(to="hub.config.GuardedAuthenticator.client_max_failures"),
    "auth.client_window_seconds": Rule(to="hub.config.GuardedAuthenticator."
                                       "client_window_seconds"),
    "auth.trusted_proxies": Rule(to="hub.config.GuardedAuthenticator.trusted_proxies"),
    "auth.signup": Rule(to="hub.config.TeamhubAuthenticator.signup_enabled"),
    "auth.open_signup": Rule(to="hub.config.TeamhubAuthenticator.open_signup"),
    "auth.min_password_length": Rule(to="hub.config.TeamhubAuthenticator.min_password_length"),
    # Settings of issue 12 (GPUs), read from settings.values when present.
    "gpus.default": Rule(to="custom.teamhub.gpus.default (nvidia.com/gpu per pod)",
                         loss=_gpus),
    "gpus.groups": Rule(to="custom.teamhub.gpus.groups"),
    "gpus.users": Rule(to="custom.teamhub.gpus.users"),
    "console.sample_seconds": Rule(reason="the console's usage sampler reads this machine's "
                                   "cgroups and /proc; in the cluster, use its metrics "
                                   "(e.g. the kubelet's, with Prometheus)"),
}


def losses(values: Values) -> list[str]:
    """What the chart cannot express of these settings' values: one line each."""
    found: list[str] = []
    for rule in MAPPING.values():
        if rule.loss is not None:
            found.extend(rule.loss(values))
    return found
