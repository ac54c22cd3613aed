"""The teamhub.toml schema: every setting, its type, default and documentation.

Settings come from three layers, later ones winning: the defaults below, the
TOML file (default /etc/teamhub/teamhub.toml, or --config / TEAMHUB_CONFIG),
and TEAMHUB_<SECTION>_<KEY> environment variables. Everything is validated
once, when loaded; a bad key or value raises SettingsError naming it.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from . import gpus as gpu_model
from . import image_choice
from .db import url as db_url
from .errors import SettingsError
from .limits import check_groups, check_value, parse_shm_size
from .system.names import LINUX_NAME_RE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG_FILE = "/etc/teamhub/teamhub.toml"
ENV_CONFIG_FILE = "TEAMHUB_CONFIG"
ENV_PREFIX = "TEAMHUB_"


@dataclass(frozen=True)
class Setting:
    """One documented, typed setting."""

    key: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    check: Callable[[Any], str | None] | None = None
    # A table of tables (e.g. `[limits.groups.NAME]`) whose values are strings or integers.
    nested: bool = False
    # A string setting (or table of strings) that also takes a TOML integer, kept as its
    # text: `gpus.default = 1` means the same as `gpus.default = "1"`.
    int_as_text: bool = False
    # A URL that may hold a password: shown (config show/get/set, errors) masked.
    secret_url: bool = False

    def shown(self, value: Any) -> Any:
        """VALUE as teamhub prints it: a secret URL's password replaced by ***."""
        return db_url.mask(value) if self.secret_url and isinstance(value, str) else value

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]

    @property
    def applies(self) -> Applies:
        """When a change takes effect (KeyError for a setting missing from APPLIES)."""
        return APPLIES[self.key]

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").upper()

    def type_name(self) -> str:
        if self.nested:
            return "table of tables"
        return {str: "string", int: "integer", bool: "boolean", list: "list of strings",
                dict: "table of strings"}[self.type]

    def a_type_name(self) -> str:
        name = self.type_name()
        return ("an " if name[0] in "aeiou" else "a ") + name


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "a port number from 1 to 65535"


def _positive(value: int) -> str | None:
    return None if value > 0 else "a whole number greater than 0"


def _port_or_zero(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "0 (off) or a port number from 1 to 65535"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "a whole number, 0 or more"


def _abs_path_or_empty(value: str) -> str | None:
    return None if value == "" or os.path.isabs(value) else "empty, or an absolute path"


def _min_password(value: int) -> str | None:
    return None if 8 <= value <= 1024 else "a whole number from 8 to 1024"


def _shm_size(value: str) -> str | None:
    try:
        parse_shm_size(value)
    except ValueError as exc:
        return str(exc)
    return None


def _ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "an IP address such as 0.0.0.0 (all addresses) or 127.0.0.1"
    return None


def _listen_ip(value: str) -> str | None:
    if value == "auto":
        return None
    return (None if _ip(value) is None else
            "`auto` (every address, IPv4 and IPv6) or an IP address such as 127.0.0.1")


def _ip_list(value: list[str]) -> str | None:
    bad = [v for v in value if _ip(v)]
    return f"a list of IP addresses (not {bad[0]!r})" if bad else None


def _domain(value: str) -> str | None:
    import re

    label = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
    ok = value == "" or (re.fullmatch(rf"{label}(\.{label})+", value) is not None
                         and len(value) <= 200)
    return None if ok else ("empty, or a lower-case DNS name with a dot and no port, "
                            "e.g. hub.example.org")


def _db_url(value: str) -> str | None:
    return db_url.problem(value)


def _abs_path(value: str) -> str | None:
    return None if os.path.isabs(value) else "an absolute path"


def _url_path(value: str) -> str | None:
    ok = value.startswith("/") and not value.startswith("//") and " " not in value
    return None if ok else "a path inside the server that starts with a single '/', e.g. /lab"


def _prefix(value: str) -> str | None:
    import re

    ok = re.fullmatch(r"[a-z][a-z0-9-]{0,7}", value) is not None or value == ""
    return None if ok else "empty, or up to 8 of a-z, 0-9, '-' starting with a letter"


def _env_name_ok(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None


def _environment(value: dict[str, str]) -> str | None:
    bad = [k for k in value if not _env_name_ok(k)]
    if bad:
        return f"a table whose keys are environment variable names (not {bad[0]!r})"
    if any("\0" in v for v in value.values()):
        return "a table of strings without NUL characters"
    return None


def _env_names(value: list[str]) -> str | None:
    bad = [k for k in value if not _env_name_ok(k)]
    return f"a list of environment variable names (not {bad[0]!r})" if bad else None


def _limit(resource: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return check_value(resource, value)

    return check


def _limit_groups(value: dict[str, Any]) -> str | None:
    return check_groups(value)


def _gpus(value: str) -> str | None:
    return gpu_model.check_value(value)


def _gpus_table(value: dict[str, str]) -> str | None:
    return gpu_model.check_table(value)


def _sample_seconds(value: int) -> str | None:
    return None if 2 <= value <= 300 else "a whole number of seconds from 2 to 300"


def _linux_account(value: str) -> str | None:
    if LINUX_NAME_RE.fullmatch(value) and value != "root":
        return None
    return "must be a Linux account name (a-z, 0-9, '_', '-'), not root"


def _docker_images(value: dict[str, Any]) -> str | None:
    return image_choice.check_table(value)


SCHEMA: tuple[Setting, ...] = (
    Setting("hub.ip", str, "auto", "Address the public port listens on. `auto`: every address "
            "of both families (`::` dual-stack where the machine has IPv6, else `0.0.0.0`), so "
            "nobody else can listen on the port over the other family. `127.0.0.1` keeps "
            "teamhub reachable from this machine only; `0.0.0.0` is IPv4 only (`teamhub up` "
            "and `doctor` then fail when anything listens on the port over IPv6).",
            check=_listen_ip),
    Setting("hub.port", int, 8000, "The one public port: login page, hub and every user's "
            "JupyterLab are served here.", check=_port),
    Setting("hub.internal_port", int, 8081, "Retired: the hub's own API is now a unix socket "
            "(see README, \"Sockets and ports\"), not a loopback port. Accepted so that older "
            "settings files load; `teamhub up` says so when it is set.", check=_port),
    Setting("hub.domain", str, "", "A DNS name for the hub (e.g. `hub.example.org`) whose "
            "subdomains all point at this machine (wildcard DNS `*.hub.example.org`). Each "
            "user's server is then served from its own origin `NAME.hub.example.org`, so a "
            "page a user's server serves cannot act in other users' sessions; see the README, "
            "\"Browser isolation\". With TLS on, the certificate must cover the domain and "
            "`*.domain` (`teamhub tls self-signed` makes one). Empty: one origin for all.",
            check=_domain),
    Setting("hub.default_url", str, "/lab", "Where a user lands in their own server after "
            "logging in: `/lab` for JupyterLab, `/tree` for the classic file view.",
            check=_url_path),
    Setting("hub.log_level", str, "INFO", "How much the hub logs.",
            choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("hub.stop_servers_on_shutdown", bool, False, "Stop every user's server when the "
            "hub stops. Off by default so that restarting or upgrading teamhub does not "
            "interrupt anybody's running kernels."),
    Setting("hub.concurrent_spawn_limit", int, 100, "How many users' servers may be starting "
            "at once; a user who asks beyond it is told to try again shortly (HTTP 429). "
            "0: no limit.", check=_not_negative),
    Setting("hub.active_server_limit", int, 0, "How many users' servers may run at once; "
            "starting one more is refused until another stops. 0: no limit.",
            check=_not_negative),
    Setting("hub.account", str, "teamhub", "The unprivileged Linux system account the hub is "
            "meant to run as (README \"What runs as root\"). The root helper (the fork "
            "server) serves root and this account only, and its socket belongs to it once "
            "the account exists.", check=_linux_account),
    Setting("hub.unprivileged", bool, True, "Run the hub, its proxy and the idle culler as "
            "`hub.account` instead of root (on by default; false: the hub runs as root, as "
            "before): root `teamhub up` makes the account if missing, "
            "gives it the state folder (0700/0600), starts the root helper and then drops "
            "root for good (no capabilities at all). The running hub then does what needs "
            "root through the helper only (with `spawner.backend = \"docker\"` its "
            "containers too: the Docker socket stays root's); the helper starts the proxy as "
            "the account, with CAP_NET_BIND_SERVICE alone when `hub.port` (with TLS "
            "`tls.http_port`) is below 1024. Refused at start (not done yet) with "
            "`spawner.fork_server` off, or an explicit `true` in the single-user trial (the "
            "default does not apply there: the trial runs as you); "
            "a TLS pair outside the state folder is copied into it for the proxy (a renewed "
            "one takes a root restart); the console's user block/unblock/remove, project and "
            "environment actions go through the helper: environment builds run uv as the "
            "hub's account and root takes the built tree over, and \"My environments\" "
            "runs `teamhub-env` as the user (README \"What runs as root\")."),
    Setting("paths.state_dir", str, "/var/lib/teamhub", "Root-only (0700) folder for the hub "
            "database, cookie secret, proxy token and account store.", check=_abs_path),
    Setting("db.url", str, "", "Where the hub's database and the account store (accounts, "
            "groups, project grants, audit log, signups, lockouts) live. Empty: the embedded "
            "sqlite files in paths.state_dir (`jupyterhub.sqlite`, `accounts.sqlite`). "
            "`postgresql://USER:PASSWORD@HOST:5432/DATABASE`: both in that PostgreSQL "
            "database (teamhub's tables in its own schema `teamhub`), one database to back up "
            "and to share with a hub in a cluster; the user needs the right to create a "
            "schema there. Move an existing hub with `teamhub db migrate --to URL` rather than "
            "setting this by hand. teamhub never prints the password.", check=_db_url,
            secret_url=True),
    Setting("paths.runtime_dir", str, "/opt/teamhub/runtime", "The Python environment users' "
            "servers run from. It must be root-owned and readable by every user; "
            "`install.sh` builds it from the system's Python.", check=_abs_path),
    Setting("paths.home_root", str, "/home", "Folder under which teamhub creates the homes of "
            "the Linux accounts it makes for hub users.", check=_abs_path),
    Setting("users.system_prefix", str, "jupyter-", "Prefix of the Linux account made for each "
            "hub user (hub user `ada` runs as Linux user `jupyter-ada`). The prefix keeps hub "
            "users from ever being mapped onto an existing account. May be empty.",
            check=_prefix),
    Setting("users.shell", str, "/bin/bash", "Login shell of the Linux accounts teamhub "
            "creates; JupyterLab's terminal starts it.", check=_abs_path),
    Setting("spawner.start_timeout", int, 120, "Seconds a user's server may take to start "
            "before the hub gives up and tells the user.", check=_positive),
    Setting("spawner.http_timeout", int, 60, "Seconds the hub waits for a started server to "
            "answer HTTP.", check=_positive),
    Setting("spawner.fork_server", bool, True, "Start users' servers by forking a warm, "
            "secret-free fork server (~0.1 s) instead of starting a fresh interpreter "
            "(~1.5 s). Either way the server runs as the user with nothing of its parent; "
            "when the fork server is unavailable servers start the normal way. With the "
            "docker backend the fork server's child enters the user's container (its "
            "cgroups, namespaces, capabilities and seccomp filter) and runs the server there."),
    Setting("spawner.shm_size", str, "1G", "Size of each user server's own /dev/shm (a "
            "tmpfs in the server's mount namespace: POSIX shared memory and semaphores, as "
            "used by multiprocessing and PyTorch's DataLoader): `512M`, `2G`, or a share of this "
            "machine's memory (`10%`). Users cannot see or fill each other's, and it is gone "
            "when the server stops. Needs no systemd, so it holds with `limits.enabled = "
            "false` too. `shared`: the machine's /dev/shm, which every user sees and can fill.",
            check=_shm_size),
    Setting("spawner.environment", dict, {}, "Environment variables set in every user's "
            "server and so in every kernel, e.g. `{ LD_LIBRARY_PATH = \"/opt/cuda/lib64\" }`. "
            "A `PATH` value is put in front of teamhub's own PATH; write `$PATH` in it to place "
            "teamhub's PATH yourself. As an environment variable: a JSON object, or "
            "`K=V,K=V`.", check=_environment),
    Setting("spawner.env_keep", list, [], "Names of the hub's own environment variables passed "
            "through to users' servers and kernels (besides LANG and LC_ALL), e.g. "
            "`[\"HTTPS_PROXY\"]`. Never list secrets: every user can read them.",
            check=_env_names),
    Setting("spawner.backend", str, "local", "Where users' servers run. `local`: as their "
            "own Linux account on this machine. `docker`: the same, inside a container of "
            "their own on the local Docker engine (image `docker.image`; see \"Per-user "
            "containers\" in the README). Takes effect at the next `teamhub up`.",
            choices=("local", "docker")),
    Setting("docker.image", str, "base", "With `spawner.backend = \"docker\"`: the image "
            "users' servers run from, a name built with `teamhub image build NAME` or a full "
            "local image reference. Never pulled from a registry."),
    Setting("docker.images", dict, {}, "With the docker backend: more images users may "
            "choose from on the spawn page, besides `docker.image` (the default, offered to "
            "everyone), e.g. `[docker.images.ml]` `display = \"Python with PyTorch\"` "
            "`groups = [\"ml\"]`. Each key is a `teamhub image build` name or a full local "
            "image reference; `display` is what the page shows (default: the key); "
            "`groups`, when set, limits the image to members of those groups. Any other "
            "value sent by a form or the API is refused (HTTP 400). `teamhub up` refuses "
            "entries that are not local images. As an environment variable: a JSON object "
            "of objects.", check=_docker_images, nested=True),
    Setting("docker.home", str, "bind", "With the docker backend: `bind` mounts each user's "
            "home folder on this machine at the same path (the same files whichever backend "
            "runs); `volume` gives each user a named volume `teamhub-user-<name>` as their "
            "home instead (kept when the user is removed unless `teamhub user remove "
            "--purge`).", choices=("bind", "volume")),
    Setting("envs.root", str, "/opt/teamhub/envs", "Folder of the shared environments "
            "(`teamhub env ...`): root-owned, readable by every user. Their uv cache lives in "
            "`<root>/.cache` so that environments share package files as hard links.",
            check=_abs_path),
    Setting("envs.keep_revisions", int, 3, "How many builds (revisions) of each shared "
            "environment are kept for `teamhub env rollback`; older ones are deleted.",
            check=_positive),
    Setting("envs.warm_kernels", str, "on-demand", "How users' servers start kernels. "
            "`on-demand`: each server keeps a warm parent per environment it has started a "
            "kernel of (that env's interpreter with ipykernel imported, running as the user "
            "inside their server's limits) and forks later kernels from it, ~0.1 s instead of "
            "~0.5 s; when the user's JupyterLab opens, the parents of their recent kernels "
            "start ahead (see envs.warm_idle); otherwise the first kernel of an env waits for "
            "its parent. `prewarm`: also starts "
            "the default kernel's parent with the server, so the first notebook is fast too; "
            "with the fork server it is forked along with the server (~3 MB more idle "
            "memory per server), otherwise started (~35 MB). `off`: every kernel is a fresh "
            "interpreter. A parent is replaced when its environment changes (a new revision, "
            "a `pip install`); any failure falls back to the normal start.",
            choices=("on-demand", "prewarm", "off")),
    Setting("envs.warm_idle", int, 600, "Seconds a warm kernel parent that has no running "
            "kernel is kept while none of its user's JupyterLab pages is open (visible); then "
            "it exits, so an idle server holds no parent (`prewarm`'s default-kernel parent "
            "excepted). An open JupyterLab starts the parents of the user's recent kernels "
            "again when the machine has CPU to spare.", check=_positive),
    Setting("envs.lock_timeout", int, 600, "Seconds a `teamhub env` command waits for another "
            "one (which holds the root-only lock `<root>/.locks/envs.lock`) to finish before "
            "it gives up, changing nothing, and names the process holding it. 0: do not wait.",
            check=_not_negative),
    Setting("proxy.api_port", int, 8001, "Retired: the proxy takes route changes on a "
            "root-only unix socket now, not a loopback port. Accepted so that older settings "
            "files load; `teamhub up` says so when it is set.", check=_port),
    Setting("proxy.command", str, "", "The configurable-http-proxy program. Empty: the one "
            "`install.sh` put beside the runtime (`<runtime>/../proxy`), else the one on PATH."),
    Setting("projects.root", str, "/srv/teamhub/projects", "Folder holding the team project "
            "folders (`teamhub project ...`), one per project, shared through POSIX ACLs. Its "
            "filesystem must support ACLs; it must be traversable (mode 0755 or 0711) so that "
            "users can reach the projects they are granted.", check=_abs_path),
    Setting("tls.cert", str, "", "TLS certificate (PEM, full chain) for the public port. Empty: "
            "plain HTTP. Set together with `tls.key`, or make a self-signed pair with "
            "`teamhub tls self-signed`.", check=_abs_path_or_empty),
    Setting("tls.key", str, "", "Private key (PEM) of `tls.cert`; keep it readable by root only.",
            check=_abs_path_or_empty),
    Setting("tls.http_port", int, 80, "With TLS on, a plain-HTTP port that redirects every "
            "request to HTTPS on `hub.port` (it listens on every address). 0: no redirect.",
            check=_port_or_zero),
    Setting("tls.hsts_max_age", int, 31536000, "With TLS on, browsers are told (HSTS header, on "
            "the hub's and every user's server's responses) to use only HTTPS for this many "
            "seconds. 0: no HSTS header.", check=_not_negative),
    Setting("culling.enabled", bool, True, "Stop users' servers that have been idle for "
            "`culling.timeout` seconds (jupyterhub-idle-culler, run by the hub). A kernel that "
            "is busy computing counts as activity, even when it prints nothing."),
    Setting("culling.timeout", int, 3600, "Seconds without activity (browser traffic, kernel "
            "messages or a busy kernel) after which a server is stopped.", check=_positive),
    Setting("culling.every", int, 300, "How often, in seconds, idle servers are looked for; "
            "also the longest delay with which servers report their activity to the hub.",
            check=_positive),
    Setting("limits.enabled", bool, True, "Enforce per-user limits (memory, cpu, tasks, "
            "private /tmp) on every user's server and its kernels, through systemd scopes. "
            "When on but not enforceable here (no systemd as init, a missing cgroup "
            "controller), `teamhub up` refuses to start and says why; set it to false to "
            "run without limits knowingly."),
    Setting("limits.memory", str, "50%", "Memory one user's server and kernels may use "
            "together: a size (`512M`, `4G`), a share of this machine's memory (`50%`), or "
            "`none`. Past it, the kernel using the most is killed; other users are "
            "unaffected.", check=_limit("memory")),
    Setting("limits.cpu", str, "50%", "CPU time one user may use: a number of CPUs (`2`, "
            "`0.5`), a share of this machine's CPUs (`50%`), or `none`.",
            check=_limit("cpu")),
    Setting("limits.tasks", int, 2048, "How many processes and threads one user's server "
            "may run at once; this is what stops a fork bomb. 0: no limit.",
            check=_limit("tasks")),
    Setting("limits.private_tmp", bool, True, "Give each server its own /tmp (a fresh "
            "0700 folder under /var/tmp/teamhub), so users cannot see or plant each other's "
            "temporary files."),
    Setting("limits.groups", dict, {}, "Per-group overrides of memory, cpu and tasks, e.g. "
            "`[limits.groups.gpu-team]` `memory = \"32G\"`. A user in several listed groups "
            "gets, per resource, the most generous of their groups' values (`none` beats "
            "any number); unlisted resources and users in no listed group get the "
            "`[limits]` values. As an environment variable: a JSON object of objects.",
            check=_limit_groups, nested=True),
    Setting("gpus.default", str, "none", "GPUs each user's server gets: `none`, `all` "
            "(every GPU, shared with everyone), a number N (N GPUs held exclusively while the "
            "server runs, picked from free ones), a list of indices or UUIDs (`0,2`, `GPU-…`, "
            "`MIG-…`; held exclusively), or `shared:N` / `shared:0,2` (others may use them "
            "too). Enforced, not only advertised: a server sees and can open only its own "
            "devices. Anything but `none` needs the NVIDIA driver (`teamhub up` refuses "
            "otherwise). See README \"GPUs\".", check=_gpus, int_as_text=True),
    Setting("gpus.groups", dict, {}, "Per-group GPU values (same forms as `gpus.default`), "
            "e.g. `[gpus.groups]` `ml = 2`. A user in several listed groups gets the most "
            "generous (more devices first; for as many, exclusive beats shared). As an "
            "environment variable: a JSON object (`{\"ml\": \"0,2\"}`).", check=_gpus_table,
            int_as_text=True),
    Setting("gpus.users", dict, {}, "Per-user GPU values (same forms as `gpus.default`); a "
            "user's own value wins over their groups' and the default, and may also be "
            "`none`. As an environment variable: a JSON object.", check=_gpus_table,
            int_as_text=True),
    Setting("auth.mode", str, "builtin", "Where accounts live. `builtin`: teamhub's own "
            "account store, managed with `teamhub user ...`. `pam`: the machine's existing "
            "Linux accounts log in with their system password and their server runs as that "
            "account; teamhub creates no accounts (never root, system accounts below "
            "`auth.pam_min_uid`, or accounts outside `auth.allowed_groups`).",
            choices=("builtin", "pam")),
    Setting("auth.allowed_groups", list, [], "PAM mode: Linux groups whose members may log "
            "in. Empty: every account with a uid of at least `auth.pam_min_uid`."),
    Setting("auth.admin_groups", list, [], "PAM mode: Linux groups whose members are hub "
            "admins."),
    Setting("auth.pam_min_uid", int, 1000, "PAM mode: lowest uid that may log in and run a "
            "server; root and system accounts below it never can.", check=_positive),
    Setting("auth.pam_service", str, "login", "PAM mode: the PAM service (a file in "
            "/etc/pam.d) that checks passwords."),
    Setting("auth.lockout_failures", int, 5, "Failed logins for one name after which the "
            "name is locked (unknown names too, so a lock reveals nothing). Unlock early with "
            "`teamhub user unlock NAME`.", check=_positive),
    Setting("auth.lockout_base_seconds", int, 60, "Length of a name's first lock; each "
            "further lock doubles it, up to `auth.lockout_max_seconds`.", check=_positive),
    Setting("auth.lockout_max_seconds", int, 3600, "Longest lock of a name.",
            check=_positive),
    Setting("auth.client_max_failures", int, 30, "Failed logins (any names) from one client "
            "address within `auth.client_window_seconds` after which that address cannot log "
            "in until the window moves on. IPv6 clients count per /64 network.",
            check=_positive),
    Setting("auth.client_window_seconds", int, 900, "Window of `auth.client_max_failures`.",
            check=_positive),
    Setting("auth.trusted_proxies", list, [], "Addresses of reverse proxies you run in front "
            "of teamhub (e.g. nginx). Their X-Forwarded-For entries are believed when finding "
            "a login's client address; nothing else a client sends is.", check=_ip_list),
    Setting("auth.signup", bool, False, "Show a signup page (`/hub/signup`, linked from the "
            "login page) where people can ask for an account. New accounts wait for an admin's "
            "approval (`teamhub user pending`, `teamhub user approve NAME`, or the hub's "
            "Accounts page) unless `auth.open_signup` is on."),
    Setting("auth.open_signup", bool, False, "With `auth.signup` on, accounts made on the "
            "signup page can log in at once, without approval. Only for hubs reachable by "
            "trusted people alone."),
    Setting("auth.min_password_length", int, 10, "Shortest password accepted by `teamhub user "
            "add|passwd`, signup, the change-password page and reset links (at least 8). "
            "Common passwords and passwords containing the user name are always refused.",
            check=_min_password),
    Setting("console.sample_seconds", int, 30, "How often, in seconds, the hub samples each "
            "running server's CPU and memory use (from its cgroup, or its processes where it "
            "has none) for the console's System page and usage columns. The last hour is "
            "kept in the hub's memory. From 2 to 300.", check=_sample_seconds),
)

# When a changed setting takes effect. Read from the code that uses each one: almost
# everything becomes JupyterHub configuration, which the hub reads once, at start.
LIVE = "live"
SERVER_START = "next server start"
HUB_RESTART = "hub restart"
WHENS = (LIVE, SERVER_START, HUB_RESTART)


@dataclass(frozen=True)
class Applies:
    """When a change to one setting takes effect."""

    when: str  # LIVE, SERVER_START or HUB_RESTART
    # The value reaches users' servers as they start: a running server keeps the old
    # one until it is next started (after the hub restart, for HUB_RESTART).
    servers: bool = False

    def describe(self) -> str:
        """One sentence for `config set` and the reference."""
        if self.when == LIVE:
            return "at once: the next command, login or request uses it; no restart needed"
        later = "running servers keep the old value until they are next started"
        if self.when == SERVER_START:
            return f"at each user's next server start, without a hub restart; {later}"
        text = "after a hub restart (`teamhub restart`; users' servers keep running)"
        return f"{text}; {later}" if self.servers else text


_RESTART = Applies(HUB_RESTART)
_RESTART_SERVERS = Applies(HUB_RESTART, servers=True)

# One entry per setting (tests/unit/test_settings.py fails for a setting without one).
APPLIES: dict[str, Applies] = {
    "hub.ip": _RESTART,  # the proxy's options change: a new proxy is started
    "hub.port": _RESTART,
    "hub.account": _RESTART,  # the helper is started with it
    "hub.unprivileged": _RESTART,  # root `teamhub up` drops to hub.account at start
    "hub.internal_port": _RESTART,  # retired: only `teamhub up`'s note changes
    "hub.domain": _RESTART_SERVERS,
    "hub.default_url": _RESTART_SERVERS,
    "hub.log_level": _RESTART,
    "hub.stop_servers_on_shutdown": _RESTART,
    "hub.concurrent_spawn_limit": _RESTART,
    "hub.active_server_limit": _RESTART,
    "paths.state_dir": _RESTART,
    "db.url": _RESTART,
    "paths.runtime_dir": _RESTART_SERVERS,
    "paths.home_root": _RESTART,  # for Linux accounts made afterwards
    "users.system_prefix": _RESTART,
    "users.shell": _RESTART,  # for Linux accounts made afterwards
    "spawner.start_timeout": _RESTART,
    "spawner.http_timeout": _RESTART,
    "spawner.fork_server": _RESTART,
    "spawner.shm_size": _RESTART_SERVERS,
    "spawner.environment": _RESTART_SERVERS,
    "spawner.env_keep": _RESTART_SERVERS,
    "spawner.backend": _RESTART_SERVERS,
    "docker.image": _RESTART_SERVERS,
    "docker.home": _RESTART_SERVERS,
    "docker.images": _RESTART_SERVERS,  # running servers keep their image
    "gpus.default": _RESTART_SERVERS,  # running servers keep the GPUs they hold
    "gpus.groups": _RESTART_SERVERS,
    "gpus.users": _RESTART_SERVERS,
    "envs.root": _RESTART_SERVERS,  # `teamhub env` uses it at once, servers' kernels later
    "envs.keep_revisions": Applies(LIVE),  # read by each `teamhub env` command
    "envs.lock_timeout": Applies(LIVE),
    "envs.warm_kernels": _RESTART_SERVERS,
    "envs.warm_idle": _RESTART_SERVERS,
    "proxy.api_port": _RESTART,  # retired
    "proxy.command": _RESTART,
    "projects.root": _RESTART_SERVERS,  # `teamhub project` uses it at once
    "tls.cert": _RESTART,
    "tls.key": _RESTART,
    "tls.http_port": _RESTART,
    "tls.hsts_max_age": _RESTART_SERVERS,
    "culling.enabled": _RESTART,
    "culling.timeout": _RESTART_SERVERS,  # also sets how often servers report activity
    "culling.every": _RESTART_SERVERS,
    "limits.enabled": _RESTART_SERVERS,
    "limits.memory": _RESTART_SERVERS,
    "limits.cpu": _RESTART_SERVERS,
    "limits.tasks": _RESTART_SERVERS,
    "limits.private_tmp": _RESTART_SERVERS,
    "limits.groups": _RESTART_SERVERS,
    "auth.mode": _RESTART,
    "auth.allowed_groups": _RESTART,
    "auth.admin_groups": _RESTART,
    "auth.pam_min_uid": _RESTART,
    "auth.pam_service": _RESTART,
    "auth.lockout_failures": _RESTART,
    "auth.lockout_base_seconds": _RESTART,
    "auth.lockout_max_seconds": _RESTART,
    "auth.client_max_failures": _RESTART,
    "auth.client_window_seconds": _RESTART,
    "auth.trusted_proxies": _RESTART,
    "auth.signup": _RESTART,
    "auth.open_signup": _RESTART,
    "auth.min_password_length": _RESTART,  # `teamhub user add|passwd` use it at once
    "console.sample_seconds": _RESTART,
}

BY_KEY: dict[str, Setting] = {s.key: s for s in SCHEMA}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SCHEMA))


def lookup(key: str) -> Setting:
    """The Setting for KEY, or a SettingsError listing the keys that exist."""
    try:
        return BY_KEY[key]
    except KeyError:
        known = ", ".join(BY_KEY)
        raise SettingsError(
            f"unknown setting {key!r}",
            f"known settings: {known} "
            "(see `teamhub config show`)"
        ) from None


def _nested_value_ok(value: Any) -> bool:
    """A value inside a table of tables: a string, an integer or a list of strings."""
    if isinstance(value, list):
        return all(isinstance(v, str) for v in value)
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def coerce(setting: Setting, value: Any, origin: str) -> Any:
    """Check VALUE against SETTING's type and rules; return it in canonical form."""
    t = setting.type
    if setting.int_as_text:
        value = _int_as_text(value)
    ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
    if t is list and ok:
        ok = all(isinstance(v, str) for v in value)
    if t is dict and ok and setting.nested:
        ok = all(isinstance(v, dict) and all(_nested_value_ok(x) for x in v.values())
                 for v in value.values())
    elif t is dict and ok:
        ok = all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if not ok:
        raise SettingsError(
            f"{origin}: {setting.key} = {setting.shown(value)!r} is not {setting.a_type_name()}",
            f"expected e.g. {setting.key} = {toml_literal(setting.default)}"
        )
    if setting.choices and value not in setting.choices:
        allowed = ", ".join(repr(c) for c in setting.choices)
        raise SettingsError(
            f"{origin}: {setting.key} = {value!r} is not allowed", f"use one of {allowed}"
        )
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise SettingsError(
                f"{origin}: {setting.key} = {setting.shown(value)!r} is invalid",
                f"it must be {problem}"
            )
    return value


def _int_as_text(value: Any) -> Any:
    def text(v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    if isinstance(value, dict):
        return {k: text(v) for k, v in value.items()}
    return text(value)


def parse_text(setting: Setting, text: str, origin: str) -> Any:
    """Turn a command-line or environment string into a typed value, then validate it."""
    value: Any
    if setting.type is bool:
        low = text.strip().lower()
        if low in ("true", "yes", "on", "1"):
            value = True
        elif low in ("false", "no", "off", "0"):
            value = False
        else:
            raise SettingsError(
                f"{origin}: {setting.key} = {text!r} is not a boolean", "use true or false"
            )
    elif setting.type is int:
        try:
            value = int(text.strip())
        except ValueError:
            raise SettingsError(
                f"{origin}: {setting.key} = {text!r} is not an integer", f"e.g. {setting.default}"
            ) from None
    elif setting.type is list:
        value = [part.strip() for part in text.split(",") if part.strip()]
    elif setting.type is dict:
        value = _parse_table(setting, text, origin)
    else:
        value = text
    return coerce(setting, value, origin)


def _parse_table(setting: Setting, text: str, origin: str) -> Any:
    """A JSON object (`{"K": "V"}`), or `K=V,K=V` for simple values."""
    import json

    if text.strip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise SettingsError(
                f"{origin}: {setting.key} is not a valid JSON object ({exc})"
            ) from None
    table: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        if not sep:
            raise SettingsError(
                f"{origin}: {setting.key}: {part.strip()!r} is not K=V",
                'use K=V,K=V or a JSON object like {"K": "V"}'
            )
        table[key.strip()] = val
    return table


def toml_literal(value: Any) -> str:
    """VALUE as it would appear after `key = ` in TOML, always on one line."""
    # tomli_w spreads arrays over several lines; a one-line form keeps `config show`
    # and `config get` output (and error messages) one setting per line.
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        # Keys are environment variable names, so always valid bare TOML keys.
        inner = ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


@dataclass
class Settings:
    """Effective settings: a value and its origin (default, file or env) for each key."""

    config_file: Path
    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        lookup(key)
        return self.values[key]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        nested: dict[str, dict[str, Any]] = {}
        for key, value in self.values.items():
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = value
        return nested


def config_path(explicit: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> Path:
    """The settings file: --config, else $TEAMHUB_CONFIG, else /etc/teamhub/teamhub.toml."""
    environ = os.environ if environ is None else environ
    return Path(explicit or environ.get(ENV_CONFIG_FILE) or DEFAULT_CONFIG_FILE)


def read_file(path: Path, *, skip: str | None = None) -> dict[str, Any]:
    """The TOML file's table, checked for unknown keys and bad values ({} if it does not exist).

    SKIP names one key left unchecked, so that `config set`/`unset` can repair it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(
            f"settings file {path} is not valid TOML ({exc})",
            "fix the line it names, "
            "or move the file away to start from defaults"
        ) from None
    for section, table in data.items():
        if not isinstance(table, dict):
            raise SettingsError(
                f"{path}: {section!r} must be a [section] table", f"sections: {', '.join(SECTIONS)}"
            )
        for name, value in table.items():
            key = f"{section}.{name}"
            if key == skip:
                continue
            try:
                setting = lookup(key)
            except SettingsError as exc:
                raise SettingsError(f"{path}: {exc}") from None
            coerce(setting, value, str(path))
    return data


def load(config_file: str | os.PathLike[str] | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the file, then TEAMHUB_* variables; every value validated."""
    environ = os.environ if environ is None else environ
    path = config_path(config_file, environ)
    settings = Settings(config_file=path)
    for s in SCHEMA:
        settings.values[s.key] = s.default
        settings.origins[s.key] = "default"
    for section, table in read_file(path).items():
        for name, value in table.items():
            settings.values[f"{section}.{name}"] = value
            settings.origins[f"{section}.{name}"] = str(path)
    by_env = {s.env_var: s for s in SCHEMA}
    for var, text in environ.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG_FILE:
            continue
        setting = by_env.get(var)
        if setting is None:
            if var.startswith(tuple(f"{ENV_PREFIX}{sec.upper()}_" for sec in SECTIONS)):
                raise SettingsError(f"environment variable {var} names no setting",
                                    "known: " + ", ".join(by_env))
            continue
        settings.values[setting.key] = parse_text(setting, text, f"environment variable {var}")
        settings.origins[setting.key] = f"env {var}"
    return settings


def write_file(path: Path, data: dict[str, Any]) -> None:
    """Write DATA to PATH atomically: a full new file is renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".teamhub.", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def set_value(path: Path, key: str, text: str) -> Any:
    """Validate TEXT for KEY and store it in the file; return the typed value."""
    setting = lookup(key)
    value = parse_text(setting, text, "teamhub config set")
    data = read_file(path, skip=key)
    data.setdefault(setting.section, {})[setting.name] = value
    write_file(path, data)
    return value


def unset_value(path: Path, key: str) -> bool:
    """Remove KEY from the file (it falls back to its default); False if it was not set.

    A key the schema does not know may be removed too: that is how a typo is repaired.
    """
    data = read_file(path, skip=key)
    section, _, name = key.partition(".")
    table = data.get(section)
    if not isinstance(table, dict) or name not in table:
        lookup(key)  # unknown and absent: say which keys exist
        return False
    del table[name]
    if not table:
        del data[section]
    write_file(path, data)
    return True
