"""Settings → JupyterHub configuration.

Each update_* function sets one concern's traitlets on a traitlets Config, from
validated settings; `configure` applies them all. The file JupyterHub loads
(`teamhub/jupyterhub_config.py`) calls `configure` and then loads the admin's
`jupyterhub_config.d/*.py`, so raw JupyterHub config always has the last word.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyterhub import __version__ as jupyterhub_version
from traitlets.config import Config, PyFileConfigLoader

from . import __version__
from . import gpus as gpu_model
from .accounts.groups import GroupStore
from .accounts.store import AccountStore
from .browser_isolation import ISOLATION_HEADERS
from .hubdb_connection import TunedConnection
from .limits import from_settings, parse_shm_size
from .paths import Paths
from .proxy import chp_library
from .settings import Settings, load
from .system import systemd
from .system.listen import listen_address

ENV_TRIAL = "TEAMHUB_SINGLE_USER_TRIAL"
CLI_SERVICE = "teamhub-cli"
# Set by root `teamhub up` (hub.unprivileged): {admin's TLS file: its copy the hub's account
# reads}, for a pair root copied into the state folder (unprivileged.copy_tls).
ENV_TLS_COPIES = "TEAMHUB_COPIED_TLS_FILES"  # not TEAMHUB_TLS_*: a section's prefix


def unix_url(socket_path: Path) -> str:
    """JupyterHub's URL of a unix socket: `http+unix://<percent-encoded path>`."""
    return "http+unix://" + quote(str(socket_path), safe="")


def update_network(c: Config, s: Settings, paths: Paths) -> None:
    c.JupyterHub.ip = listen_address(s["hub.ip"])
    c.JupyterHub.port = s["hub.port"]
    # The hub's own API is a unix socket in a folder only root can create files in: no
    # user can listen there in the hub's place, even while the hub restarts. Users'
    # servers reach it (socket mode 0666), as they reached the old loopback port.
    c.JupyterHub.hub_bind_url = unix_url(paths.hub_socket)
    c.JupyterHub.hub_connect_url = unix_url(paths.hub_socket)
    c.JupyterHub.hub_socket_mode = 0o666


def proxy_command(s: Settings, paths: Paths) -> str:
    """The configurable-http-proxy to run: setting, else install.sh's copy, else PATH."""
    if s["proxy.command"]:
        return s["proxy.command"]
    bundled = paths.runtime_dir.parent / "proxy/node_modules/.bin/configurable-http-proxy"
    if bundled.exists():
        return str(bundled)
    return shutil.which("configurable-http-proxy") or "configurable-http-proxy"


def update_proxy(c: Config, s: Settings, paths: Paths) -> None:
    """configurable-http-proxy's library behind teamhub's launcher (teamhub.proxy), kept
    running across hub restarts so that its public port never falls free."""
    c.JupyterHub.proxy_class = "teamhub.proxy.chp.TeamhubProxy"
    c.JupyterHub.cleanup_proxy = False
    c.TeamhubProxy.api_url = unix_url(paths.proxy_api_socket)
    c.TeamhubProxy.node = shutil.which("node") or "node"
    c.TeamhubProxy.chp_library = str(chp_library(proxy_command(s, paths)) or "")
    c.TeamhubProxy.pid_file = str(paths.state_dir / "proxy.pid")
    c.TeamhubProxy.record_file = str(paths.proxy_record)
    c.TeamhubProxy.token_file = str(paths.proxy_token)
    # Under systemd the proxy gets a scope of its own, outside teamhub.service's cgroup.
    c.TeamhubProxy.systemd_slice = "teamhub.slice" if systemd.booted() else ""
    # An unprivileged hub has the root helper start it (low ports; the scope).
    c.TeamhubProxy.helper_socket = str(paths.fork_server_socket) if s["hub.unprivileged"] \
        else ""


def update_state(c: Config, paths: Paths) -> None:
    c.JupyterHub.db_url = paths.hub_db_url
    if paths.db_url:
        # A database server restarted under a running hub costs a reconnect, not an error page.
        c.JupyterHub.db_kwargs = {"pool_pre_ping": True}
    else:
        # WAL, synchronous=NORMAL: a commit no longer waits for the disk (hubdb_connection).
        c.JupyterHub.db_kwargs = {"connect_args": {"check_same_thread": False,
                                                   "factory": TunedConnection}}
    c.JupyterHub.cookie_secret_file = str(paths.cookie_secret)
    c.JupyterHub.pid_file = str(paths.hub_pid_file)


def update_lifecycle(c: Config, s: Settings) -> None:
    # Servers keep running across hub restarts and upgrades unless the admin asks otherwise.
    c.JupyterHub.cleanup_servers = s["hub.stop_servers_on_shutdown"]


def update_spawn_limits(c: Config, s: Settings) -> None:
    """How many servers may start, and run, at once (JupyterHub's own limits)."""
    c.JupyterHub.concurrent_spawn_limit = s["hub.concurrent_spawn_limit"]
    c.JupyterHub.active_server_limit = s["hub.active_server_limit"]


def update_logging(c: Config, s: Settings) -> None:
    c.Application.log_level = s["hub.log_level"]


def update_auth(c: Config, paths: Paths) -> None:
    c.JupyterHub.authenticator_class = "teamhub.accounts.authenticator.TeamhubAuthenticator"
    # On the shared base class: PAM mode's authenticator keeps its lockout there too.
    c.GuardedAuthenticator.store_path = str(paths.accounts_db)
    c.GuardedAuthenticator.db_url = paths.db_url
    # PAM mode's password check goes through the root helper when the hub is not root.
    c.TeamhubPAMAuthenticator.helper_socket = str(paths.fork_server_socket)


# How long a user's server trusts the hub's word on a token (JupyterHub: 300 s).
# Ending a session deletes its tokens; servers notice within this many seconds.
SERVER_TOKEN_CACHE_SECONDS = 10


def update_login_security(c: Config, s: Settings) -> None:
    """Lockout, client throttle, PAM mode and cookie flags (accounts/, README "Login security")."""
    auth = c.GuardedAuthenticator
    auth.lockout_failures = s["auth.lockout_failures"]
    auth.lockout_base_seconds = s["auth.lockout_base_seconds"]
    auth.lockout_max_seconds = max(s["auth.lockout_max_seconds"], s["auth.lockout_base_seconds"])
    auth.client_max_failures = s["auth.client_max_failures"]
    auth.client_window_seconds = s["auth.client_window_seconds"]
    auth.trusted_proxies = list(s["auth.trusted_proxies"])
    if s["auth.mode"] == "pam":
        c.JupyterHub.authenticator_class = "teamhub.accounts.pam.TeamhubPAMAuthenticator"
        c.TeamhubPAMAuthenticator.allowed_groups = set(s["auth.allowed_groups"])
        c.TeamhubPAMAuthenticator.admin_groups = set(s["auth.admin_groups"])
        c.TeamhubPAMAuthenticator.min_uid = s["auth.pam_min_uid"]
        c.TeamhubPAMAuthenticator.service = s["auth.pam_service"]
        c.TeamhubPAMAuthenticator.open_sessions = False
        c.TeamhubPAMAuthenticator.create_system_users = False
        # Servers run as the person's own Linux account, checked the same way.
        c.LocalSpawner.existing_accounts = True
        c.LocalSpawner.min_uid = s["auth.pam_min_uid"]
        c.LocalSpawner.allowed_groups = list(s["auth.allowed_groups"])


def update_accounts(c: Config, s: Settings) -> None:
    """Signup, password policy and the account pages (signup, change password, reset, admin)."""
    # Deferred: accounts.pages imports JupyterHub's handlers (seconds), which only the hub
    # process needs; the CLI imports this module too.
    from .accounts.pages import TEMPLATES

    # Deferred as well: the console's pages import JupyterHub's handlers too.
    from .console.base import TEMPLATES as CONSOLE_TEMPLATES

    c.TeamhubAuthenticator.signup_enabled = s["auth.signup"]
    c.TeamhubAuthenticator.open_signup = s["auth.open_signup"]
    c.TeamhubAuthenticator.min_password_length = s["auth.min_password_length"]
    c.TeamhubAuthenticator.system_prefix = s["users.system_prefix"]
    c.TeamhubAuthenticator.system_users_registry = str(Paths.from_settings(s).system_users)
    # page.html adds the nav links, login.html the signup link; both extend JupyterHub's
    # own templates (the admin's config.d may put more folders before ours). The console's
    # pages are console/*.html.
    c.JupyterHub.template_paths = [str(TEMPLATES), str(CONSOLE_TEMPLATES)]


def update_branding(c: Config) -> None:
    """Hub pages name teamhub and its version (title, footer) in JupyterHub's look."""
    c.JupyterHub.template_vars = {"teamhub_name": "teamhub", "teamhub_version": __version__,
                                  "jupyterhub_version": jupyterhub_version}


def update_spawner(c: Config, s: Settings, paths: Paths, trial: bool = False) -> None:
    c.JupyterHub.spawner_class = "teamhub.spawners.local.LocalSpawner"
    c.Spawner.cmd = [str(paths.singleuser)]
    c.Spawner.default_url = s["hub.default_url"]
    c.Spawner.start_timeout = s["spawner.start_timeout"]
    c.Spawner.http_timeout = s["spawner.http_timeout"]
    # Polling a local pid is cheap; a crashed server shows as stopped within seconds.
    c.Spawner.poll_interval = 10
    c.Spawner.args = server_args(s, trial)
    # Nothing of the hub's own environment (PATH into root's tools, secrets) reaches users.
    # The admin may pass more through (spawner.env_keep) or set values (spawner.environment).
    c.Spawner.env_keep = ["LANG", "LC_ALL", *s["spawner.env_keep"]]
    c.Spawner.environment = server_environment(s)
    c.LocalSpawner.system_prefix = s["users.system_prefix"]
    c.LocalSpawner.home_root = s["paths.home_root"]
    c.LocalSpawner.shell = s["users.shell"]
    c.LocalSpawner.registry_path = str(paths.system_users)
    c.LocalSpawner.server_log_dir = str(paths.state_dir / "logs")
    c.LocalSpawner.runtime_bin = str(paths.runtime_dir / "bin")
    c.LocalSpawner.private_runtime_root = str(paths.private_runtime)
    c.LocalSpawner.single_user_trial = trial
    update_shm(c, s, trial)
    update_fork_server(c, s, paths, trial)


def update_shm(c: Config, s: Settings, trial: bool = False) -> None:
    """Each server's own /dev/shm, mounted while it is still root: never in the trial."""
    size = None if trial else parse_shm_size(s["spawner.shm_size"])
    c.LocalSpawner.shm_size = size or 0


def update_fork_server(c: Config, s: Settings, paths: Paths, trial: bool = False) -> None:
    # The fork server runs as root and sets uids: never in the single-user trial.
    c.LocalSpawner.fork_server = bool(s["spawner.fork_server"]) and not trial
    c.LocalSpawner.fork_server_socket = str(paths.fork_server_socket)
    c.LocalSpawner.fork_server_log = str(paths.fork_server_log)


KERNEL_SPEC_MANAGER = "teamhub.envs.kernels.TeamhubKernelSpecManager"
WARM_PROVISIONER = "teamhub-warm"  # teamhub.envs.warm_kernels, an entry point
WARM_CONFIG = "TeamhubWarmKernels"  # its config section, read by teamhub.serverext
# Not TEAMHUB_*: nothing of the hub's own TEAMHUB_* settings reaches users' servers.
HSTS_ENV = "JUPYTER_TEAMHUB_HSTS"
BUSY_ENV = "JUPYTER_TEAMHUB_BUSY_INTERVAL"
SERVER_EXTENSION = "teamhub.serverext"
CULLER_SERVICE = "idle-culler"


def server_args(s: Settings, trial: bool = False) -> list[str]:
    """Every option users' servers are started with, all built here: Spawner.args is set
    once from this list, never appended to, so no update_* function's order matters."""
    args = []
    if not trial:
        # Kernels talk over unix sockets in a folder private to the user (the spawner's
        # private_runtime_root) instead of loopback TCP ports any local user could reach.
        args.append("--KernelManager.transport=ipc")
    # Ending a session deletes its tokens; servers notice within this many seconds.
    args.append(f"--HubOAuth.cache_max_age={SERVER_TOKEN_CACHE_SECONDS}")
    # Every server lists shared and personal environments as kernels, found at each request.
    args += [f"--ServerApp.kernel_spec_manager_class={KERNEL_SPEC_MANAGER}",
             f"--TeamhubKernelSpecManager.envs_root={s['envs.root']}"]
    if s["envs.warm_kernels"] != "off":
        # Kernels forked from a warm parent per environment, inside the user's server.
        args.append(f"--KernelProvisionerFactory.default_provisioner_name={WARM_PROVISIONER}")
        args.append(f"--{WARM_CONFIG}.idle_exit={s['envs.warm_idle']}")
    if s["envs.warm_kernels"] == "prewarm":
        args.append(f"--{WARM_CONFIG}.prewarm=True")
    # teamhub's extension: busy kernels count as activity, HSTS, browser isolation with
    # its authorizer.
    args += [f"--ServerApp.jpserver_extensions={SERVER_EXTENSION}=True",
             f"--ServerApp.authorizer_class={SERVER_EXTENSION}.IsolationAuthorizer"]
    # JupyterLab's default PyPI extension manager builds an HTTPS client (~0.1 s per
    # start) to offer installs into the runtime, which users cannot write to anyway:
    # the read-only manager still lists the installed extensions.
    args.append("--LabApp.extension_manager=readonly")
    # jupyter-resource-usage's Prometheus gauges are refreshed every second by listing the
    # server's child processes, for which psutil reads the stat file of every process on
    # the machine: with 100 idle servers, 100 scans of ~1000 processes a second (~0.3 s CPU
    # a minute per server). Lab's status bar asks /api/metrics/v1, computed per request.
    args.append("--ResourceUseDisplay.enable_prometheus_metrics=False")
    return args


def server_environment(s: Settings) -> dict[str, str]:
    """The variables users' servers get on top of what the spawner passes (env_keep), all
    built here: the admin's `spawner.environment`, then teamhub's own."""
    env = dict(s["spawner.environment"])
    # Activity reports (and busy-kernel checks) the idle culler can trust.
    interval = str(activity_interval(s))
    env.update({"JUPYTERHUB_ACTIVITY_INTERVAL": interval, BUSY_ENV: interval})
    if hsts := hsts_header(s):
        # Users' servers answer through the same TLS proxy: teamhub.serverext sends it there.
        env[HSTS_ENV] = hsts
    return env


def update_services(c: Config, s: Settings, paths: Paths, api_token: str | None) -> None:
    """The hub-managed services and their roles, all set here: the CLI's own service
    account (so `teamhub user ...` can reach a running hub) and the idle culler."""
    services: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    if api_token:
        # admin: JupyterHub lets only admins grant or revoke the admin flag
        # (`teamhub user admin`), whatever the scopes; the token is root-only, and root
        # controls the hub anyway.
        services.append({"name": CLI_SERVICE, "api_token": api_token, "admin": True})
        roles.append({
            "name": CLI_SERVICE,
            # tokens: `user block` revokes the user's API tokens.
            "scopes": ["admin:users", "admin:servers", "list:users", "read:users",
                       "admin:groups", "tokens", "proxy"],
            "services": [CLI_SERVICE],
        })
    if s["culling.enabled"]:
        services.append({
            "name": CULLER_SERVICE,
            # Through teamhub.culler: the hub's API is a unix socket, which the culler's
            # HTTP client (tornado's) cannot reach by itself.
            "command": [sys.executable, "-m", "teamhub.culler", str(paths.hub_socket),
                        "--url=http://hub/hub/api",
                        f"--timeout={s['culling.timeout']}",
                        f"--cull-every={s['culling.every']}"],
        })
        roles.append({
            "name": CULLER_SERVICE,
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": [CULLER_SERVICE],
        })
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


def hsts_header(s: Settings) -> str:
    """Strict-Transport-Security of the hub and users' servers; empty: none (no TLS, or off)."""
    if not s["tls.cert"] or not s["tls.hsts_max_age"]:
        return ""
    return f"max-age={s['tls.hsts_max_age']}"


def update_tls(c: Config, s: Settings, paths: Paths) -> None:
    """TLS on the public port and an HTTP→HTTPS redirect port (HSTS: tornado_settings)."""
    if not s["tls.cert"]:
        return
    c.JupyterHub.ssl_cert = s["tls.cert"]
    c.JupyterHub.ssl_key = s["tls.key"]
    # The proxy's own redirect listener (0: none): 301 to https on the public port.
    c.TeamhubProxy.redirect_port = s["tls.http_port"]


def subdomain_host(s: Settings) -> str:
    """JupyterHub's subdomain_host for `hub.domain`: scheme, domain, and the public port
    unless it is the scheme's default."""
    scheme, default_port = ("https", 443) if s["tls.cert"] else ("http", 80)
    port = "" if s["hub.port"] == default_port else f":{s['hub.port']}"
    return f"{scheme}://{s['hub.domain']}{port}"


def update_tornado_settings(c: Config, s: Settings) -> None:
    """The hub's cookies, headers and static files, all set here (README "Login security",
    "Browser isolation"; the policy is teamhub.browser_isolation)."""
    # Deferred: hubguard imports JupyterHub's handlers, which only the hub process needs.
    from .hubguard import IsolatedStaticHandler

    # HttpOnly is JupyterHub's default; Secure is added whenever the request
    # came over https (TLS at the proxy); SameSite=Lax keeps cookies off
    # cross-site subrequests. Servers get the same options from the hub.
    cookie_options = {"samesite": "Lax"}
    # Content-Security-Policy stays JupyterHub's default: frame-ancestors 'none'.
    headers = dict(ISOLATION_HEADERS)
    if hsts := hsts_header(s):
        headers["Strict-Transport-Security"] = hsts
    # The hub's pages carry the XSRF token in the page (jhdata, forms) and nothing
    # reads the cookie: HttpOnly keeps it from any script in the shared origin.
    # JupyterHub uses these instead of cookie_options when set, so SameSite is repeated.
    xsrf_cookie = {**cookie_options, "httponly": True}
    c.JupyterHub.tornado_settings = {"cookie_options": cookie_options, "headers": headers,
                                     "xsrf_cookie_kwargs": xsrf_cookie,
                                     "static_handler_class": IsolatedStaticHandler}


def update_browser_isolation(c: Config, s: Settings) -> None:
    """What keeps a page served by one user's server from acting as another user
    (README "Browser isolation"; its headers and cookies are in update_tornado_settings)."""
    # Users' own ~/.jupyter, ~/.local/share/jupyter config cannot add pages or change
    # their server's headers; kernels from personal envs come from teamhub's
    # KernelSpecManager, which is not user config.
    c.Spawner.disable_user_config = True
    if s["hub.domain"]:
        c.JupyterHub.subdomain_host = subdomain_host(s)
        # __Host- cookies need https; they stop a user's subdomain from setting the
        # hub's cookies (cookie tossing).
        c.JupyterHub.cookie_host_prefix_enabled = bool(s["tls.cert"])


def activity_interval(s: Settings) -> int:
    """Seconds between a server's activity reports (and busy-kernel checks): well inside
    the culling timeout, so a busy server is never seen idle for lack of a report."""
    return max(1, min(s["culling.every"], s["culling.timeout"] // 6, 300))


def update_groups(c: Config, groups: dict[str, list[str]]) -> None:
    """The store's groups, loaded into JupyterHub at start (the CLI syncs while it runs)."""
    c.JupyterHub.load_groups = {name: {"users": list(members)}
                                for name, members in sorted(groups.items())}


def update_users(c: Config, names: list[str]) -> None:
    """The store's active accounts, made hub users at start, so that the hub's admin page
    lists everyone before their first login (the CLI adds them while it runs). Who may log
    in is still the store's word alone (TeamhubAuthenticator.check_allowed)."""
    c.Authenticator.allowed_users = set(names)


def update_projects(c: Config, s: Settings, paths: Paths) -> None:
    """What the spawner needs to give a starting user their project folders."""
    c.LocalSpawner.projects_root = s["projects.root"]
    c.LocalSpawner.accounts_db = str(paths.accounts_db)
    c.LocalSpawner.db_url = paths.db_url


def update_docker(c: Config, s: Settings, paths: Paths) -> None:
    """With `spawner.backend = "docker"`: every server in its own container (same launch)."""
    if s["spawner.backend"] != "docker":
        return
    c.JupyterHub.spawner_class = "teamhub.spawners.docker.DockerSpawner"
    c.DockerSpawner.image = s["docker.image"]
    # The others users may choose on the spawn page (teamhub.image_choice).
    c.DockerSpawner.allowed_images = {name: dict(entry)
                                      for name, entry in s["docker.images"].items()}
    c.DockerSpawner.home_mode = s["docker.home"]
    c.DockerSpawner.runtime_dir = str(paths.runtime_dir)
    c.DockerSpawner.envs_root = s["envs.root"]


def update_limits(c: Config, s: Settings, paths: Paths) -> None:
    """Per-user limits: the spawner resolves each user's share from these at every start."""
    c.LocalSpawner.limits = from_settings(s)
    c.LocalSpawner.private_tmp_root = str(paths.private_tmp_root)


def update_gpus(c: Config, s: Settings, paths: Paths, trial: bool = False) -> None:
    """GPUs: the spawner resolves each user's share from these and takes it at every start
    (never in the single-user trial, which cannot cover device nodes)."""
    c.LocalSpawner.gpus = gpu_model.from_settings(s)
    c.LocalSpawner.gpu_allocations = "" if trial else str(paths.gpu_allocations)
    c.LocalSpawner.gpu_cover = str(paths.private_runtime / "no-device")


def update_console(c: Config, s: Settings) -> None:
    """The console's usage sampler (teamhub.console.sampler), in the hub process."""
    c.UsageSampler.sample_seconds = s["console.sample_seconds"]


def configure(c: Config, settings: Settings, trial: bool = False) -> Config:
    """Apply every teamhub setting to C (a JupyterHub config object)."""
    paths = Paths.from_settings(settings)
    update_network(c, settings, paths)
    update_proxy(c, settings, paths)
    update_state(c, paths)
    update_lifecycle(c, settings)
    update_spawn_limits(c, settings)
    update_logging(c, settings)
    update_auth(c, paths)
    update_accounts(c, settings)
    update_branding(c)
    update_spawner(c, settings, paths, trial)
    update_login_security(c, settings)
    update_projects(c, settings, paths)
    update_limits(c, settings, paths)
    update_gpus(c, settings, paths, trial)
    update_docker(c, settings, paths)
    update_console(c, settings)
    if paths.store_exists:
        store = AccountStore(paths.accounts_db, paths.db_url)
        update_groups(c, GroupStore(store).list())
        if settings["auth.mode"] == "builtin":
            update_users(c, [a.name for a in store.list() if not a.pending])
    update_tls(c, settings, paths)
    update_tornado_settings(c, settings)
    update_browser_isolation(c, settings)
    api_token = paths.api_token.read_text().strip() if paths.api_token.exists() else None
    update_services(c, settings, paths, api_token)
    return c


def config_d_files(settings: Settings) -> list[Path]:
    """The admin's raw JupyterHub config files, in the order they are loaded."""
    return sorted(Paths.from_settings(settings).config_d.glob("*.py"))


def hub_config(settings: Settings) -> Config:
    """The configuration the hub ends up with (for root, before it starts the hub's proxy):
    `configure`, then each jupyterhub_config.d file read by traitlets' own loader into a
    fresh config merged over it in order, which is what jupyterhub_config.py's
    load_subconfig does in the hub; then the TLS copies (use_tls_copies)."""
    c = configure(Config(), settings)
    for path in config_d_files(settings):
        c.merge(PyFileConfigLoader(path.name, path=str(path.parent)).load_config())
    use_tls_copies(c)
    return c


def use_tls_copies(c: Config) -> None:
    """A TLS file of the admin's that root copied for the hub's account (ENV_TLS_COPIES,
    unprivileged.copy_tls) is read from its copy: the hub's proxy view (TeamhubProxy) and
    the proxy the root helper starts then agree, after jupyterhub_config.d too."""
    copies = json.loads(os.environ.get(ENV_TLS_COPIES) or "{}")
    for trait in ("ssl_cert", "ssl_key"):
        value = c.JupyterHub.get(trait)
        if isinstance(value, str) and value in copies:
            c.JupyterHub[trait] = copies[value]


def from_environment(c: Config) -> list[Path]:
    """What jupyterhub_config.py runs: load settings named by TEAMHUB_CONFIG, apply them."""
    settings = load()
    configure(c, settings, trial=os.environ.get(ENV_TRIAL) == "1")
    return config_d_files(settings)


HUB_CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")
