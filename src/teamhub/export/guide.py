"""MIGRATION.md and storage.yaml: the ordered steps that move a team onto the cluster.

Written for this team: the users' uids and volume names, the images' names, what the
settings lost on the way. The volumes (storage.yaml) are created before the data is
copied, with the names the hub image's spawn hook expects.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..settings import Settings
from .chart import CHART_VERSION
from .team import Team
from .values import ENVS_VOLUME, PROJECTS_VOLUME, STORE_PATH, home_volume

NOT_CARRIED = """\
- **systemd limits become pod limits.** Memory and CPU caps are the pods' limits, with
  requests (guarantees) of {share:g} × the limit so the scheduler can place pods; a pod over
  its memory limit is OOM-killed as a whole (on one machine only the biggest process
  was). `limits.tasks` has no per-pod equivalent (kubelet `podPidsLimit`, per node).
- **No fork server.** Every server is a fresh container: starts take seconds, plus the
  image pull on a new node.
- **Sessions and API tokens.** The hub's own database stays behind: everyone logs in
  again (same passwords), API tokens are made anew.
- **teamhub's CLI does not run in the cluster.** Accounts: signup, approval and the
  Accounts page work as before (they are the hub's); groups: JupyterHub's admin page.
  Project grants are read from the copied account store at each spawn, but the ACLs on
  the projects volume are as copied; shared environments are read-only copies, built
  on a teamhub machine.
- **New users need an entry.** A user's uid comes from `custom.teamhub.users` (and their
  passwd line from `singleuser.extraFiles`); one who signs up after the move cannot
  start a server until an admin adds both and runs `helm upgrade`.
- **The proxy is the chart's plain configurable-http-proxy**, without teamhub's launcher:
  a bad percent-encoding answers 500, and users' servers may send
  `Service-Worker-Allowed` (with `hub.domain` every server has its own origin anyway).
- **Kernels** talk over loopback TCP inside the pod (its own network namespace) instead
  of unix sockets; `/dev/shm` is a memory volume that counts against the pod's memory.
- **Login throttling** sees the address the proxy-public Service passes on: with
  `externalTrafficPolicy: Cluster` that is a node's, so many clients share one budget.
"""


def storage_manifests(settings: Settings, team: Team, capacity: str = "10Gi") -> str:
    """PersistentVolumeClaims for every home, the projects and the envs (storage.yaml)."""
    def pvc(name: str, modes: list[str], size: str, note: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "annotations": {"teamhub/holds": note}},
                "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}}}

    docs = [pvc(u["homeVolume"], ["ReadWriteOnce"], capacity,
                f"home of {name} (uid {u['uid']})")
            for name, u in _users(settings, team).items()]
    if team.projects:
        docs.append(pvc(PROJECTS_VOLUME, ["ReadWriteMany"], "100Gi",
                        f"{settings['projects.root']}: needs POSIX ACLs; size it"))
    if team.envs:
        docs.append(pvc(ENVS_VOLUME, ["ReadWriteMany"], "50Gi",
                        f"{settings['envs.root']}: size it"))
    return yaml.safe_dump_all(docs, sort_keys=False)


def _users(settings: Settings, team: Team) -> dict[str, dict[str, Any]]:
    return {n: {"uid": i.uid, "login": i.login, "homeVolume": home_volume(n),
                "allocated": i.allocated} for n, i in team.identities.items()}


def migration_md(settings: Settings, team: Team, values: dict[str, Any],
                 losses: list[str], notes: list[str], share: float) -> str:
    hub = values["hub"]["image"]
    su = values["singleuser"]["image"]
    home_root = settings["paths.home_root"]
    users = _users(settings, team)
    lines = []
    for name, u in users.items():
        source = ("new: no Linux account here yet" if u["allocated"]
                  else f"{home_root}/{u['login']}")
        lines.append(f"| {name} | {u['login']} | {u['uid']} | `{u['homeVolume']}` | {source} |")
    rows = "\n".join(lines)
    lost = "\n".join(f"- {line}" for line in losses) or "- nothing (no setting was dropped)"
    converted = "\n".join(f"- {line}" for line in notes) or "- nothing"
    envs = (f"\n- shared environments: `{settings['envs.root']}` → volume `{ENVS_VOLUME}` "
            f"(mounted read-only at the same path)" if team.envs else "")
    projects = (f"\n- projects: `{settings['projects.root']}` → volume `{PROJECTS_VOLUME}` "
                "(ReadWriteMany, **with POSIX ACL support**: project access is the folders' "
                "ACLs, kept by the copy)" if team.projects else "")
    domain = settings["hub.domain"]
    wildcard = f" (`{domain}` and `*.{domain}`)" if domain else ""
    tls = ("The TLS certificate is in values.yaml (proxy.https.manual)." if settings["tls.cert"]
           else "TLS was off here and is off there (proxy.https).")
    return f"""\
# Moving this team to Kubernetes (Zero to JupyterHub {CHART_VERSION})

Written by `teamhub export z2jh`. Files here: `values.yaml` (the chart's values; it
holds the TLS key when TLS is on: keep it private), `storage.yaml` (the volumes),
`images/` (build contexts of the two images), `export.json` (what the export found).
Do the steps in order.

## 1. Build and push the images

No registry can be reached from the teamhub machine, so build and push them where one
can (with the docker backend, build the single-user image on the teamhub machine: its
base image exists only in that Docker engine, then `docker save`/`docker load` it):

```sh
cd images
docker build -f Dockerfile.hub -t {hub['name']}:{hub['tag']} .
docker build -f Dockerfile.singleuser -t {su['name']}:{su['tag']} .
docker push {hub['name']}:{hub['tag']}
docker push {su['name']}:{su['tag']}
```

If you push under other names, change `hub.image` and `singleuser.image` in
`values.yaml` (or export again with `--registry`).

## 2. Stop teamhub

Stop every user's server (hub admin page: *Stop All*), then `teamhub backup
/root/teamhub-move.tar.gz` and `systemctl stop teamhub`, so nothing changes while it
is copied.

## 3. Create the volumes

`kubectl apply -f storage.yaml` (set a `storageClassName` and sizes first). Each home
keeps its owner, the user's uid:

| hub user | Linux account | uid | home volume | copied from |
| --- | --- | --- | --- | --- |
{rows}

## 4. Copy the data, keeping numeric owners and ACLs

For each volume, start a helper pod (e.g. `debian:12` as root, `sleep infinity`, the
volume mounted at `/mnt`, with `apt-get install acl` in it), then from this machine copy
the files with their numeric owners, and the ACLs by number (the pod knows no names):

```sh
tar -C SOURCE --numeric-owner -cpf - . | \\
  kubectl exec -i HELPER -- tar -C /mnt --numeric-owner -xpf -
(cd SOURCE && getfacl -R -p -n .) | \\
  kubectl exec -i HELPER -- sh -c 'cd /mnt && setfacl --restore=-'
```

- homes: `{home_root}/<Linux account>` → its home volume (table above);{projects}{envs}

## 5. Install the chart and move the accounts

```sh
helm upgrade --install teamhub jupyterhub/jupyterhub --version {CHART_VERSION} -f values.yaml
tar -xzf /root/teamhub-move.tar.gz state/accounts.sqlite
HUB=$(kubectl get pod -l component=hub -o name)
kubectl exec $HUB -- mkdir -p {STORE_PATH.rsplit('/', 1)[0]}
kubectl cp state/accounts.sqlite ${{HUB#pod/}}:{STORE_PATH}
kubectl rollout restart deployment/hub
```

The account store carries accounts (password hashes, admin, blocked, pending), groups,
project grants, the audit log and lockouts: users log in with their passwords.

## 6. DNS and TLS

Point the hub's name{wildcard} at the `proxy-public` Service's address
(`kubectl get service proxy-public`). {tls}
Log in as a user and check `id` in a terminal: the same uid as on this machine.

## What does not carry over

{NOT_CARRIED.format(share=share)}
### Settings the chart cannot express (this export)

{lost}

### Values converted on the way

{converted}
"""
