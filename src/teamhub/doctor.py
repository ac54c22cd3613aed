"""`teamhub doctor`: a registry of small checks, each passing or failing with a fix hint.

Each check is a function taking a Probe (settings, paths, and what several
checks share, fetched once) and returning a Result. Checks look at the real
thing: they talk to the running hub and proxy, open the databases, and start
kernels as an unprivileged user.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import hubaccounts, images, preflight
from .accounts.store import SCHEMA_VERSION, AccountStore
from .db.url import mask
from .envs.store import META
from .errors import (
    AccountError,
    DockerError,
    ForkServerUnavailable,
    HubError,
    TeamhubError,
    TlsError,
)
from .gpu_report import gpus_status
from .hubclient import HubClient
from .hubconfig import HUB_CONFIG_FILE
from .labext import LabExtensions, default_url_server
from .limits import limits_status
from .paths import Paths
from .proxy import read_record
from .settings import Settings
from .spawners import forkserver
from .system import hub_account, listen, users
from .system.containers import LABEL_USER
from .system.docker import Engine
from .system.processes import process_uids
from .tls import EXPIRY_WARNING_DAYS, covers, inspect

NOBODY = "nobody"
MIN_FREE_BYTES = 1 << 30  # 1 GiB
MIN_FREE_FRACTION = 0.02


@dataclass
class Result:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    # A passing check that still wants the admin's attention (printed as "warn").
    warning: bool = False


@dataclass
class Probe:
    """What the checks look at; hub answers are fetched once and shared."""

    settings: Settings
    paths: Paths
    _cache: dict[str, Any] = field(default_factory=dict)

    def hub_api(self, path: str) -> tuple[int, Any]:
        """(status, JSON) of the running hub's REST API with the CLI's token; 0 = no
        answer (`hub_problem` says why)."""
        key = "api:" + path
        if key not in self._cache:
            try:
                self._cache[key] = HubClient.for_cli(self.paths).call("GET", path)
            except TeamhubError as exc:  # not running, not answering, or an impostor
                self._cache[key] = (0, None)
                self._cache["hub_problem"] = exc
        return self._cache[key]

    @property
    def hub_problem(self) -> TeamhubError | None:
        return self._cache.get("hub_problem")

    def public_url(self) -> str:
        scheme = "https" if self.settings["tls.cert"] else "http"
        ip = self.settings["hub.ip"]
        host = "127.0.0.1" if listen.all_addresses(ip) else (f"[{ip}]" if ":" in ip else ip)
        return f"{scheme}://{host}:{self.settings['hub.port']}"


def _get_json(base_url: str, path: str) -> tuple[int, Any]:
    """(status, JSON) of GET BASE_URL + PATH, no credentials sent; 0 = no answer."""
    try:
        return HubClient(base_url).call("GET", path)
    except TeamhubError:
        return 0, None


CHECKS: list[tuple[str, Callable[[Probe], Result]]] = []


def check(name: str) -> Callable[[Callable[[Probe], Result]], Callable[[Probe], Result]]:
    def register(fn: Callable[[Probe], Result]) -> Callable[[Probe], Result]:
        CHECKS.append((name, fn))
        return fn
    return register


START_HINT = "start it with `teamhub up` (or `systemctl start teamhub` where installed)"


@check("hub reachable")
def hub_reachable(p: Probe) -> Result:
    status, body = p.hub_api("/")
    if status != 200:
        problem = p.hub_problem
        if isinstance(problem, HubError):  # its hint (if any) says what to do
            return Result("hub reachable", False, problem.message, problem.hint)
        if problem is not None:
            return Result("hub reachable", False, problem.message, problem.hint or START_HINT)
        return Result("hub reachable", False, f"the hub's API answered HTTP {status}",
                      START_HINT)
    version = body.get("version", "?") if isinstance(body, dict) else "?"
    where = HubClient.for_cli(p.paths).endpoint
    return Result("hub reachable", True, f"JupyterHub {version} on {where}")


@check("proxy reachable")
def proxy_reachable(p: Probe) -> Result:
    url = p.public_url()
    status, _ = _get_json(url, "/hub/api/")
    if status == 200:
        return Result("proxy reachable", True, f"{url} answers (proxy → hub)")
    if status:
        return Result("proxy reachable", False, f"{url}/hub/api/ answered HTTP {status}",
                      "restart the hub; see its log for proxy errors")
    return Result("proxy reachable", False, f"nothing answers at {url}",
                  "the hub starts the proxy: " + START_HINT + "; if the hub runs, restart it")


@check("proxy routes")
def proxy_routes(p: Probe) -> Result:
    status, users = p.hub_api("/users?state=active")
    rstatus, routes = p.hub_api("/proxy")
    if status != 200 or rstatus != 200 or not isinstance(routes, dict):
        return Result("proxy routes", False, "cannot compare: the hub's API did not answer "
                      f"(users HTTP {status}, proxy HTTP {rstatus})",
                      START_HINT + "; a hub started before this teamhub version needs a "
                      "restart to grant the CLI the `proxy` scope")
    want = {}
    for user in users or []:
        for server in (user.get("servers") or {}).values():
            if server.get("ready"):
                want[server["url"]] = user["name"]
    # A routespec is [host]/path; with host routing the host comes first.
    have_paths = {spec[spec.index("/"):] for spec in routes if "/user/" in spec}
    missing = sorted(url for url in want if url not in have_paths)
    stale = sorted(spec for spec in have_paths if spec not in want)
    if missing or stale:
        parts = []
        if missing:
            parts.append("running servers without a route: " + ", ".join(missing))
        if stale:
            parts.append("routes to servers that are not running: " + ", ".join(stale))
        return Result("proxy routes", False, "; ".join(parts),
                      "restart the hub (servers keep running; it re-adds every route at start), "
                      "or wait: it re-checks the routes every 5 minutes")
    return Result("proxy routes", True, f"{len(want)} running server(s), each routed")


@check("hub database")
def hub_database(p: Probe) -> Result:
    db: Path | str = p.paths.hub_db
    if p.paths.db_url:
        db = mask(p.paths.db_url)
    elif not p.paths.hub_db.exists():
        return Result("hub database", False, f"{db} does not exist",
                      "it is made at the first start: " + START_HINT)
    try:
        from jupyterhub import orm
        from sqlalchemy import create_engine

        engine = create_engine(p.paths.hub_db_url)
        try:
            orm.check_db_revision(engine)
            with engine.connect() as conn:
                rev = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Result("hub database", False, f"{db}: {first}",
                      "back it up, then run `jupyterhub upgrade-db` with this config "
                      "(or restore from `teamhub backup`)")
    return Result("hub database", True, f"{db} at revision {rev}")


@check("account store")
def account_store(p: Probe) -> Result:
    if p.paths.db_url:
        return _server_store(p)
    db = p.paths.accounts_db
    if not db.exists():
        return Result("account store", False, f"{db} does not exist",
                      "add the first admin: `teamhub up --admin NAME` or `teamhub user add`")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            version = (conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
                       if "alembic_version" in tables else "pre-alembic")
            count = conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Result("account store", False, f"{db} cannot be read ({exc})",
                      "restore it with `teamhub restore BACKUP --force`")
    if version != SCHEMA_VERSION:
        return Result("account store", False, f"{db} has schema version {version}, this "
                      f"teamhub uses {SCHEMA_VERSION}",
                      "run any `teamhub user list` to migrate it, or upgrade teamhub")
    return Result("account store", True, f"{count} account(s), schema version {version}")


def _server_store(p: Probe) -> Result:
    where = mask(p.paths.db_url)
    try:
        # Opening it also applies pending migrations, as any CLI command would.
        count = AccountStore(p.paths.accounts_db, p.paths.db_url).count()
    except AccountError as exc:
        return Result("account store", False, exc.message, exc.hint)
    return Result("account store", True,
                  f"{count} account(s) in {where}, schema revision {SCHEMA_VERSION}")


USERS_PAGE = 200  # JupyterHub's largest page of GET /users


def _hub_user_names(p: Probe) -> set[str] | None:
    """Every user the running hub has (page by page); None if it did not answer."""
    names: set[str] = set()
    offset = 0
    while True:
        status, body = p.hub_api(f"/users?offset={offset}&limit={USERS_PAGE}")
        if status != 200 or not isinstance(body, list):
            return None
        if not body:
            return names
        names |= {u["name"] for u in body if isinstance(u, dict) and "name" in u}
        offset += len(body)


def _users_out_of_step(p: Probe) -> tuple[list[str], list[str]] | None:
    """(hub-only users, active accounts the hub does not list); None without an answer."""
    hub = _hub_user_names(p)
    if hub is None:
        return None
    store = AccountStore(p.paths.accounts_db, p.paths.db_url) if p.paths.store_exists else None
    accounts = {a.name for a in store.list() if not a.pending} if store else set()
    return sorted(hub - accounts), sorted(accounts - hub)


@check("hub users")
def hub_users(p: Probe) -> Result:
    name = "hub users"
    if p.settings["auth.mode"] != "builtin":
        return Result(name, True, "not compared: with auth.mode = pam the hub's users are "
                      "Linux accounts")
    found = _users_out_of_step(p)
    if found is None:
        return Result(name, False, "cannot compare: the hub's API did not answer", START_HINT)
    hub_only, unlisted = found
    if hub_only:
        return Result(name, False, "hub users that are no teamhub account (made on the admin "
                      "page or through the API before teamhub refused that, or removed from "
                      f"the account store behind the hub's back): {', '.join(hub_only)}",
                      "`teamhub doctor --fix` removes them from the hub (they cannot log in "
                      "anyway; their servers are stopped); to keep one as a user, `teamhub "
                      "user add NAME` instead")
    if unlisted:
        return Result(name, True, "accounts the hub does not list yet: " + ", ".join(unlisted),
                      "`teamhub doctor --fix` lists them now (the hub also does at its next "
                      "start)", warning=True)
    return Result(name, True, "the hub's users are exactly teamhub's active accounts")


def fix_hub_users(p: Probe) -> str:
    """Remove hub-only users from the running hub and list the missing accounts."""
    found = _users_out_of_step(p)
    if found is None:
        raise TeamhubError("the hub's API did not answer; nothing was changed")
    hub_only, unlisted = found
    for user in hub_only:
        hubaccounts.delete_user(p.paths, user)
    for user in unlisted:
        hubaccounts.add_user(p.paths, user, admin=False)
    done = [f"removed {len(hub_only)} hub-only user(s) from the hub"
            + (f" ({', '.join(hub_only)})" if hub_only else "")]
    if unlisted:
        done.append(f"listed {len(unlisted)} account(s) in the hub ({', '.join(unlisted)})")
    return "; ".join(done)


# What `teamhub doctor --fix` may repair: check name → repair, run only when that check
# failed or warned. Each says what it did.
FIXES: dict[str, Callable[[Probe], str]] = {"hub users": fix_hub_users}


def _root_only(path: Path, mode: int, owner: int = 0) -> str | None:
    """Whether PATH is OWNER's alone (root; or with hub.unprivileged, the hub's account)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    problems = []
    if info.st_uid != owner:
        problems.append(f"owned by uid {info.st_uid}")
    if stat.S_IMODE(info.st_mode) & ~mode:
        problems.append(f"mode {stat.S_IMODE(info.st_mode):04o}")
    return f"{path} is {' and '.join(problems)}" if problems else None


@check("secrets and state permissions")
def secrets_permissions(p: Probe) -> Result:
    name = "secrets and state permissions"
    state = p.paths.state_dir
    if not state.is_dir():
        return Result(name, False, f"state folder {state} does not exist", START_HINT)
    files = [p.paths.cookie_secret, p.paths.hub_db, p.paths.accounts_db, p.paths.api_token,
             p.paths.proxy_token]
    # With hub.unprivileged the state folder is the hub's account's (once it has one).
    account = users.lookup(p.settings["hub.account"])
    owner = account.uid if p.settings["hub.unprivileged"] and account else 0
    who = p.settings["hub.account"] if owner else "root"
    problems = [x for x in [_root_only(state, 0o700, owner),
                            *(_root_only(f, 0o600, owner) for f in files),
                            # The first admin's password is root's alone in either case.
                            _root_only(p.paths.initial_password, 0o600)] if x]
    if p.settings["tls.key"]:
        # The key in the state folder (`teamhub tls self-signed`) is the hub's account's too.
        key = Path(p.settings["tls.key"])
        mine = key.resolve().is_relative_to(state.resolve())
        problems += [x for x in [_root_only(key, 0o600, owner if mine else 0)] if x]
    if problems:
        return Result(name, False, "; ".join(problems),
                      f"chown {who}: and chmod 0700 {state}, chmod 0600 the files in it "
                      "(and tls.key, root's), then rotate the cookie secret if others could "
                      f"read it (delete {p.paths.cookie_secret} and restart: everyone logs in "
                      "again)")
    return Result(name, True, f"{state} is 0700 {who}; secrets are 0600 {who}")


@check("root's files")
def roots_files(p: Probe) -> Result:
    """The account registry and the root helper's log: root's, in root's folder beside the
    state folder (Paths.root_dir), which the hub's account may reach but never change."""
    name = "root's files"
    folder = p.paths.root_dir
    problems = [x for x in [_root_only(folder, 0o710), _root_only(p.paths.system_users, 0o640),
                            _root_only(p.paths.fork_server_log, 0o600)] if x]
    if os.path.lexists(folder) and not stat.S_ISDIR(os.lstat(folder).st_mode):
        problems.append(f"{folder} is not a folder")
    if os.path.lexists(p.paths.old_system_users):
        problems.append(f"an account registry is still in the state folder "
                        f"({p.paths.old_system_users})")
    if problems:
        return Result(name, False, "; ".join(problems),
                      "start teamhub as root (`systemctl restart teamhub`, or `teamhub up`): it "
                      f"moves an old registry into {folder} and makes that folder root's; "
                      f"else `chown -R root: {folder}` and `chmod go-w` the files in it")
    return Result(name, True, f"{folder} (account registry, helper's log) is root's")


@check("runtime usable by users")
def runtime_usable(p: Probe) -> Result:
    try:
        preflight.check_runtime(p.paths.runtime_dir, p.paths.singleuser, p.paths.runtime_python)
    except TeamhubError as exc:
        return Result("runtime usable by users", False, exc.message,
                      "rebuild it with `install.sh` (from the system's /usr/bin/python3), "
                      "or make every folder on its path world-executable, or set "
                      "paths.runtime_dir")
    return Result("runtime usable by users", True,
                  f"{p.paths.singleuser} runs as {NOBODY}")


def _hub_config(p: Probe) -> Any:
    """The JupyterHub config `teamhub up` would start with (teamhub.toml + config.d)."""
    if "config" not in p._cache:
        from traitlets.config.loader import PyFileConfigLoader

        saved = os.environ.get("TEAMHUB_CONFIG")
        os.environ["TEAMHUB_CONFIG"] = str(p.settings.config_file)
        try:
            loader = PyFileConfigLoader(HUB_CONFIG_FILE.name, path=str(HUB_CONFIG_FILE.parent))
            p._cache["config"] = loader.load_config()
        finally:
            if saved is None:
                os.environ.pop("TEAMHUB_CONFIG", None)
            else:
                os.environ["TEAMHUB_CONFIG"] = saved
    return p._cache["config"]


def server_environment(p: Probe) -> dict[str, str]:
    """The variables a user's server (and so its kernels) gets, as the spawner builds them."""
    # Deferred: spawners.local imports JupyterHub's spawner (seconds), which the CLI, where
    # this module is imported, otherwise never needs.
    from .spawners.local import SYSTEM_PATH, merge_path

    c = _hub_config(p)
    configured = dict(c.Spawner.environment) if "environment" in c.Spawner else {}
    env = {"LANG": "C.UTF-8", "HOME": "/nonexistent", "USER": NOBODY}
    env.update({k: v for k, v in configured.items() if isinstance(v, str)})
    env["PATH"] = merge_path(f"{p.paths.runtime_dir / 'bin'}:{SYSTEM_PATH}",
                             configured.get("PATH"))
    return env


KERNEL_PROBE = r"""
import json, os, sys
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager
spec, keys = json.loads(sys.argv[1]), json.loads(sys.argv[2])
km = KernelManager()
km._kernel_spec = KernelSpec(**spec)
km.start_kernel(env={**os.environ, **spec.get("env", {})})
kc = km.client()
kc.start_channels()
out = []
try:
    kc.wait_for_ready(timeout=60)
    code = "import json, os; print(json.dumps({k: os.environ.get(k) for k in %r}))" % (keys,)
    reply = kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(
        m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
    print(json.dumps({"status": reply["content"]["status"], "env": "".join(out).strip()}))
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
"""


def _kernel_specs(p: Probe) -> dict[str, dict[str, Any]]:
    """python3 (the runtime's) and every shared env's current revision, started the way
    users' servers start them (teamhub's safe launcher, not `-m ipykernel_launcher`)."""
    # Deferred: envs.kernels imports jupyter_client and jupyter_server, which only this
    # check needs.
    from .envs.kernels import SHARED_PREFIX, safe_argv

    python = str(p.paths.runtime_python)
    specs: dict[str, dict[str, Any]] = {
        "python3": {"argv": safe_argv([python, "-m", "ipykernel_launcher", "-f",
                                       "{connection_file}"]), "display_name": "python3",
                    "language": "python"}}
    root = Path(p.settings["envs.root"])
    if root.is_dir():
        for envdir in sorted(root.iterdir()):
            if not (envdir / META).is_file():
                continue
            bindir = envdir / "current" / "bin"
            specs[SHARED_PREFIX + envdir.name] = {
                "argv": safe_argv([str(bindir / "python"), "-m", "ipykernel_launcher", "-f",
                                   "{connection_file}"]),
                "display_name": envdir.name, "language": "python",
                "env": {"VIRTUAL_ENV": str(envdir / "current")}}
    return specs


def launch_kernels(p: Probe) -> dict[str, tuple[bool, str, dict[str, Any]]]:
    """Start each kernel as `nobody` with the servers' environment; (ok, detail, env seen)."""
    if "kernels" in p._cache:
        return p._cache["kernels"]
    env = server_environment(p)
    keys = sorted(env)
    results: dict[str, tuple[bool, str, dict[str, Any]]] = {}
    runtime = Path(tempfile.mkdtemp(prefix="teamhub-doctor-"))
    try:
        import pwd

        nobody = pwd.getpwnam(NOBODY)
        os.chown(runtime, nobody.pw_uid, nobody.pw_gid)
        for name, spec in _kernel_specs(p).items():
            spec_env = dict(spec.get("env", {}))
            if "env" in spec:
                spec_env["PATH"] = str(Path(spec["argv"][0]).parent) + ":" + env["PATH"]
            spec = {**spec, "env": spec_env}
            try:
                proc = subprocess.run(
                    [str(p.paths.runtime_python), "-c", KERNEL_PROBE, json.dumps(spec),
                     json.dumps(keys)],
                    capture_output=True, text=True, timeout=120, user=NOBODY, group="nogroup",
                    extra_groups=[], cwd="/",
                    env={**env, "JUPYTER_RUNTIME_DIR": str(runtime),
                         "JUPYTER_DATA_DIR": str(runtime), "IPYTHONDIR": str(runtime)})
            except (OSError, subprocess.SubprocessError) as exc:
                results[name] = (False, str(exc), {})
                continue
            try:
                answer = json.loads(proc.stdout.strip().splitlines()[-1])
                seen = json.loads(answer["env"])
            except (ValueError, IndexError, KeyError, TypeError):
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                results[name] = (False, f"failed as {NOBODY}: {last[:300]}", {})
                continue
            results[name] = (True, "ran code", seen)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    p._cache["kernels"] = results
    return results


@check("kernels launchable")
def kernels_launchable(p: Probe) -> Result:
    name = "kernels launchable"
    try:
        results = launch_kernels(p)
    except TeamhubError as exc:
        return Result(name, False, f"cannot try kernels: {exc.message}", exc.hint)
    except KeyError as exc:
        return Result(name, False, f"cannot try kernels: {exc}", "")
    bad = {k: d for k, (ok, d, _) in results.items() if not ok}
    if bad:
        return Result(name, False, "; ".join(f"{k}: {d}" for k, d in bad.items()),
                      "rebuild a broken shared env with `teamhub env install NAME PKG` or "
                      "`teamhub env rollback NAME`; fix the runtime with `install.sh`")
    return Result(name, True, f"{', '.join(results)} started as {NOBODY} and ran code")


@check("environment reaches kernels")
def environment_reaches(p: Probe) -> Result:
    name = "environment reaches kernels"
    wanted = dict(p.settings["spawner.environment"])
    if not wanted:
        return Result(name, True, "no spawner.environment configured")
    results = launch_kernels(p)
    problems = []
    for kernel, (ok, _, seen) in results.items():
        if not ok:
            problems.append(f"{kernel}: kernel did not start")
            continue
        for key, value in wanted.items():
            got = seen.get(key)
            if key == "PATH":
                missing = [d for d in value.replace("$PATH", "").split(":")
                           if d and d not in (got or "").split(":")]
                if missing:
                    problems.append(f"{kernel}: PATH lacks {':'.join(missing)}")
            elif got != value:
                problems.append(f"{kernel}: {key}={got!r}, configured {value!r}")
    if problems:
        return Result(name, False, "; ".join(problems),
                      "a file in " + str(p.paths.config_d) + " probably replaces "
                      "c.Spawner.environment: update it instead of assigning it, or set the "
                      "variables there; then restart the hub")
    return Result(name, True, f"{', '.join(sorted(wanted))} set in "
                  f"{len(results)} kernel(s)")


@check("default URL served")
def default_url_served(p: Probe) -> Result:
    url = p.settings["hub.default_url"]
    ok, detail = default_url_server(p.paths.runtime_dir, url)
    if ok is None:
        return Result("default URL served", True, detail, warning=True)
    return Result("default URL served", ok, f"{url} is served by {detail}" if ok else detail,
                  "" if ok else "re-run install.sh (the runtime ships JupyterLab and Notebook 7),"
                  " or `teamhub config set hub.default_url /lab`")


@check("lab extensions")
def lab_extensions_installed(p: Probe) -> Result:
    try:
        found = LabExtensions(p.paths.runtime_dir, p.paths.state_dir).listing()
    except TeamhubError as exc:
        return Result("lab extensions", False, str(exc), "`teamhub lab sync`")
    if not found:
        return Result("lab extensions", True, "none added (`teamhub lab install PACKAGE`)")
    missing = [e["name"] for e in found if not e["ok"]]
    listed = ", ".join(f"{e['name']} {e['version'] or '(missing)'}" for e in found)
    return Result("lab extensions", not missing, listed,
                  f"install them again: `teamhub lab sync` (missing: {', '.join(missing)})"
                  if missing else "")


@check("limits enforceable")
def limits_enforceable(p: Probe) -> Result:
    ok, detail = limits_status(p.settings)
    return Result("limits enforceable", ok, detail,
                  "" if ok else "run teamhub as a systemd service (`teamhub install`) on a "
                  "machine with the memory, cpu and pids cgroup controllers, or turn the "
                  "limits off: `teamhub config set limits.enabled false`")


@check("gpus")
def gpus_check(p: Probe) -> Result:
    ok, detail = gpus_status(p.settings)
    return Result("gpus", ok, detail,
                  "" if ok else "fix the [gpus] value it names (`teamhub config set "
                  "gpus.default none` turns GPUs off); README \"GPUs\" has examples")


@check("tls certificate")
def tls_certificate(p: Probe) -> Result:
    name = "tls certificate"
    cert, key = p.settings["tls.cert"], p.settings["tls.key"]
    if not cert and not key:
        return Result(name, True, "TLS is off (plain HTTP); "
                      "turn it on with `teamhub tls self-signed` or tls.cert/tls.key")
    if not cert or not key:
        return Result(name, False, "only one of tls.cert and tls.key is set",
                      "set both (`teamhub config set tls.cert PATH`, tls.key PATH)")
    try:
        info = inspect(Path(cert), Path(key))
    except TlsError as exc:
        return Result(name, False, exc.message, exc.hint)
    when = f"{info.not_after:%Y-%m-%d}"
    renew = ("renew it and restart the hub, or make a new one with "
             "`teamhub tls self-signed`")
    if info.days_left <= 0:
        return Result(name, False, f"{cert} expired on {when}", renew)
    if info.days_left < EXPIRY_WARNING_DAYS:
        return Result(name, False, f"{cert} expires on {when}, in {int(info.days_left)} "
                      "day(s)", renew)
    return Result(name, True, f"{cert} for {', '.join(info.names) or info.subject}, valid "
                  f"until {when}; key matches")


NO_DOMAIN_NOTE = (
    "no hub.domain: the hub and every user's server share one browser origin, so a page "
    "that a user's server serves runs with the rights of whoever opens it. teamhub refuses "
    "the known ways for such a page to act as the visitor (README \"Browser isolation\"), "
    "but that relies on browsers' Fetch Metadata and Cross-Origin-Opener-Policy, which "
    "they only use over https or to localhost")
PLAIN_HTTP_NOTE = (
    "; this hub serves plain http, so anyone who gets a colleague to open a link to a page "
    "of their server can take over the colleague's account")


@check("browser isolation")
def browser_isolation(p: Probe) -> Result:
    import socket

    name = "browser isolation"
    domain, cert = p.settings["hub.domain"], p.settings["tls.cert"]
    if not domain:
        return Result(name, True, NO_DOMAIN_NOTE + ("" if cert else PLAIN_HTTP_NOTE),
                      "give the hub a DNS name with wildcard DNS and set hub.domain "
                      "(`teamhub config set hub.domain hub.example.org`): each user's server "
                      "then gets its own origin" + ("" if cert else
                                                    "; at least turn on TLS "
                                                    "(`teamhub tls self-signed`)"),
                      warning=True)
    probe = f"teamhub-check.{domain}"
    unresolved = []
    for host in (domain, probe):
        try:
            socket.getaddrinfo(host, None)
        except OSError:
            unresolved.append(host)
    if unresolved:
        return Result(name, False, f"{' and '.join(unresolved)} do(es) not resolve, so users' "
                      f"servers at NAME.{domain} cannot be reached",
                      f"add DNS records for {domain} and *.{domain} (wildcard) pointing at "
                      "this machine, or unset hub.domain")
    if cert:
        try:
            names = inspect(Path(cert), Path(p.settings["tls.key"])).names
        except TlsError as exc:
            return Result(name, False, f"cannot read the certificate: {exc.message}",
                          exc.hint or "see the tls certificate check")
        missing = [host for host in (domain, probe) if not covers(names, host)]
        if missing:
            return Result(name, False, f"the certificate {cert} does not cover "
                          f"{' and '.join(missing)} (it names {', '.join(names) or 'nothing'})",
                          f"use a certificate for {domain} and *.{domain}: "
                          "`teamhub tls self-signed` makes one, or get a wildcard certificate")
    return Result(name, True, f"each user's server has its own origin NAME.{domain}; "
                  f"{domain} and *.{domain} resolve" +
                  ("; the certificate covers both" if cert else
                   "; plain http: cookies are not host-locked, turn on TLS for that"))


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@check("free disk")
def free_disk(p: Probe) -> Result:
    roots = {"state": p.paths.state_dir, "homes": p.paths.home_root,
             "projects": p.paths.projects_root}
    low, seen = [], []
    for what, path in roots.items():
        usage = shutil.disk_usage(_existing(path))
        free_gib = usage.free / (1 << 30)
        seen.append(f"{what} {free_gib:.1f} GiB")
        if usage.free < MIN_FREE_BYTES or usage.free < usage.total * MIN_FREE_FRACTION:
            low.append(f"{what} ({path}) has {free_gib:.2f} GiB free of "
                       f"{usage.total / (1 << 30):.1f}")
    if low:
        return Result("free disk", False, "; ".join(low),
                      "free space (old env revisions: lower envs.keep_revisions; "
                      "users' files: `du -sh` the homes) or grow the filesystem")
    return Result("free disk", True, "free: " + ", ".join(seen))


def _socket_problems(paths: Paths) -> list[str]:
    """The sockets' folder must be the hub's account's alone (root, or hub.account with
    hub.unprivileged: the state folder's owner), the proxy's API socket its only."""
    problems = []
    folder = paths.socket_dir
    try:
        info = os.lstat(folder)
        owner = paths.state_dir.stat().st_uid
    except FileNotFoundError:
        return []  # made at the first start
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_mode & 0o022:
        problems.append(f"{folder} is not a folder only the hub's account (uid {owner}) can "
                        f"write (mode {stat.S_IMODE(info.st_mode):04o}, uid {info.st_uid})")
    for sock, mode in ((paths.hub_socket, 0o666), (paths.proxy_api_socket, 0o600)):
        try:
            info = os.lstat(sock)
        except FileNotFoundError:
            continue
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != owner or \
                stat.S_IMODE(info.st_mode) & ~mode:
            problems.append(f"{sock} is not a socket of the hub's account (uid {owner}) of "
                            f"mode {mode:04o} or less")
    return problems


@check("port conflicts")
def port_conflicts(p: Probe) -> Result:
    """Only teamhub's proxy may listen on its ports, in either family and on any address."""
    s = p.settings
    record = read_record(p.paths.proxy_record)
    ours = {int(record["pid"])} if record else set()
    ports = {"public": s["hub.port"]}
    if s["tls.cert"] and s["tls.http_port"]:
        ports["HTTP redirect"] = s["tls.http_port"]
    problems, seen = [], []
    for what, port in ports.items():
        found = listen.listeners(port)
        if found is None:
            return Result("port conflicts", False, "cannot tell who listens: `ss` is missing",
                          "install iproute2 (`apt-get install iproute2`)")
        strangers = [x for x in found if x.pid not in ours]
        if strangers:
            problems.append(f"{what} port {port} is taken: "
                            + "; ".join(x.describe() for x in strangers))
        addresses = ", ".join(sorted({x.address for x in found if x.pid in ours}))
        seen.append(f"{what} {port}: " + (f"teamhub's proxy on {addresses}" if addresses
                                          else "free"))
    problems += _socket_problems(p.paths)
    if problems:
        return Result("port conflicts", False, "; ".join(problems),
                      "stop that program (whoever holds teamhub's port sees the logins sent "
                      "to it), or move teamhub: `teamhub config set hub.port N` (tls.http_port "
                      "likewise); for the sockets' folder: remove it and restart the hub")
    return Result("port conflicts", True, "; ".join(seen) + f"; sockets in {p.paths.socket_dir}")


@check("docker engine")
def docker_engine(p: Probe) -> Result:
    """With the docker backend: the engine answers, the image is here, no orphan containers."""
    name = "docker engine"
    if p.settings["spawner.backend"] != "docker":
        return Result(name, True, "not used (spawner.backend = local)")
    image = p.settings["docker.image"]
    try:
        engine = Engine()
        info = engine.info()
        if not images.present(image, engine):
            return Result(name, False, images.missing_problem(image, "docker.image"),
                          images.build_hint(image))
        missing = images.missing_allowed(p.settings["docker.images"], engine)
        if missing:
            return Result(name, False, missing, "build them, or remove them from docker.images")
        containers = engine.containers(label=LABEL_USER)
        volumes = engine.volumes(label=LABEL_USER)
    except DockerError as exc:
        return Result(name, False, exc.message,
                      exc.hint or "start the Docker engine, then `teamhub up`")
    known = {a.name for a in AccountStore(p.paths.accounts_db, p.paths.db_url).list()} \
        if p.paths.store_exists else set()
    orphans = sorted(c["Names"][0].lstrip("/") for c in containers
                     if (c.get("Labels") or {}).get(LABEL_USER) not in known)
    kept = sorted(v["Name"] for v in volumes
                  if (v.get("Labels") or {}).get(LABEL_USER) not in known)
    problems, fixes = [], []
    if orphans:
        problems.append(f"containers of users teamhub no longer has: {', '.join(orphans)}")
        fixes.append("remove them with `docker rm -f NAME` (their homes are untouched)")
    if kept:
        problems.append(f"home volumes of users teamhub no longer has: {', '.join(kept)}")
        fixes.append("keep what you need from those volumes, then `docker volume rm NAME`")
    if problems:
        return Result(name, False, "; ".join(problems), "; ".join(fixes))
    running = sum(1 for c in containers if c.get("State") == "running")
    choice = p.settings["docker.images"]
    extra = f" (and docker.images: {', '.join(choice)})" if choice else ""
    return Result(name, True, f"Docker {info.get('ServerVersion', '?')} answers "
                  f"(cgroup driver {info.get('CgroupDriver', '?')}, "
                  f"v{info.get('CgroupVersion', '?')}); image {images.reference(image)} "
                  f"present{extra}; {running} user container(s) running")


def _process_account(pid_file: Path) -> str | None:
    """'NAME (uid N, CapEff X)' of the process whose pid PID_FILE holds, None if none runs."""
    try:
        pid = int(pid_file.read_text().strip())
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (OSError, ValueError):
        return None
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    uid = int(fields["Uid"].split()[1])
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return f"{name} (uid {uid}, CapEff {fields['CapEff'].strip()})"


@check("root helper")
def root_helper(p: Probe) -> Result:
    """The fork server, the one root process the hub talks to, answers; who the hub runs as."""
    name = "root helper"
    if not p.settings["spawner.fork_server"]:
        return Result(name, True, "not used (spawner.fork_server = false)")
    try:
        forkserver.ping(p.paths.fork_server_socket)
    except ForkServerUnavailable as exc:
        return Result(name, False, str(exc), START_HINT)
    hub = _process_account(p.paths.hub_pid_file)
    runs = f"; the hub runs as {hub}" if hub else ""
    return Result(name, True, f"answers at {p.paths.fork_server_socket}{runs}")


@check("unprivileged hub")
def unprivileged_hub(p: Probe) -> Result:
    """With hub.unprivileged on, the running hub is not root and holds no capabilities."""
    name = "unprivileged hub"
    if not p.settings["hub.unprivileged"]:
        return Result(name, True, "off (hub.unprivileged = false): the hub runs as root")
    try:
        pid = int(p.paths.hub_pid_file.read_text().strip())
        caps = hub_account.capabilities(pid)
        uids = process_uids(pid)
    except (OSError, ValueError):
        return Result(name, True, "no hub runs now; `teamhub up` as root drops to "
                      f"{p.settings['hub.account']!r}")
    if not uids or 0 in uids or caps.get("CapEff") or caps.get("CapPrm"):
        return Result(name, False, f"hub.unprivileged is on but the hub (pid {pid}) runs with "
                      f"uids {sorted(uids)}, CapEff {caps.get('CapEff', 0):x}",
                      "restart it (`teamhub restart`) so that it drops root")
    return Result(name, True, f"the hub (pid {pid}) runs as "
                  f"{_process_account(p.paths.hub_pid_file)}, no capabilities")


def run_checks(settings: Settings, only: list[str] | None = None) -> list[Result]:
    probe = Probe(settings, Paths.from_settings(settings))
    results = []
    for name, fn in CHECKS:
        if only and name not in only:
            continue
        try:
            results.append(fn(probe))
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            results.append(Result(name, False, f"the check itself failed: {exc!r}",
                                  "report this as a teamhub bug"))
    return results


def repair(settings: Settings, results: list[Result]) -> list[tuple[str, str]]:
    """Run the repair of every failed or warning check that has one: (check, what it did
    or why it could not)."""
    probe = Probe(settings, Paths.from_settings(settings))
    done = []
    for r in results:
        fix = FIXES.get(r.name)
        if fix is None or (r.ok and not r.warning):
            continue
        try:
            done.append((r.name, fix(probe)))
        except TeamhubError as exc:
            done.append((r.name, f"could not repair: {exc}"))
    return done


def as_json(results: list[Result]) -> dict[str, Any]:
    return {"ok": all(r.ok for r in results), "checks": [asdict(r) for r in results]}
