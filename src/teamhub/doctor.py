"""`teamhub doctor`: a registry of small checks, each passing or failing with a fix hint.

Each check is a function taking a Probe (settings, paths, and what several
checks share, fetched once) and returning a Result. Checks look at the real
thing: they talk to the running hub and proxy, open the databases, and start
kernels as an unprivileged user.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import ssl
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import TeamhubError
from .paths import Paths
from .settings import Settings

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
        """(status, JSON) of the running hub's REST API with the CLI's token; 0 = no answer."""
        key = "api:" + path
        if key not in self._cache:
            url = f"http://127.0.0.1:{self.settings['hub.internal_port']}/hub/api{path}"
            headers = {}
            try:
                headers["Authorization"] = "token " + self.paths.api_token.read_text().strip()
            except OSError:
                pass
            self._cache[key] = _get_json(url, headers)
        return self._cache[key]

    def public_url(self) -> str:
        scheme = "https" if self.settings["tls.cert"] else "http"
        ip = self.settings["hub.ip"]
        host = "127.0.0.1" if ip in ("0.0.0.0", "") else ("[::1]" if ip == "::" else ip)
        return f"{scheme}://{host}:{self.settings['hub.port']}"


def _get_json(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    context = ssl.create_default_context()
    # Reachability, not trust: the certificate itself is the "tls" check's business.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


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
    port = p.settings["hub.internal_port"]
    if status != 200:
        return Result("hub reachable", False, f"no hub answers on 127.0.0.1:{port}", START_HINT)
    version = body.get("version", "?") if isinstance(body, dict) else "?"
    return Result("hub reachable", True, f"JupyterHub {version} on 127.0.0.1:{port}")


@check("proxy reachable")
def proxy_reachable(p: Probe) -> Result:
    url = p.public_url()
    status, _ = _get_json(url + "/hub/api/", {})
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
    db = p.paths.hub_db
    if not db.exists():
        return Result("hub database", False, f"{db} does not exist",
                      "it is made at the first start: " + START_HINT)
    try:
        from jupyterhub import orm
        from sqlalchemy import create_engine

        engine = create_engine(f"sqlite:///{db}")
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
    from .accounts.store import SCHEMA_VERSION

    db = p.paths.accounts_db
    if not db.exists():
        return Result("account store", False, f"{db} does not exist",
                      "add the first admin: `teamhub up --admin NAME` or `teamhub user add`")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
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


def _root_only(path: Path, mode: int) -> str | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    problems = []
    if info.st_uid != 0:
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
             p.paths.proxy_token, p.paths.initial_password]
    if p.settings["tls.key"]:
        files.append(Path(p.settings["tls.key"]))
    problems = [x for x in [_root_only(state, 0o700), *(_root_only(f, 0o600) for f in files)]
                if x]
    if problems:
        return Result(name, False, "; ".join(problems),
                      f"chown root:root and chmod 0700 {state}, chmod 0600 the files in it "
                      "(and tls.key), then rotate the cookie secret if others could read it "
                      f"(delete {p.paths.cookie_secret} and restart: everyone logs in again)")
    return Result(name, True, f"{state} is 0700 root; secrets are 0600 root")


@check("runtime usable by users")
def runtime_usable(p: Probe) -> Result:
    from . import preflight

    try:
        preflight.check_runtime(p.paths.runtime_dir, p.paths.singleuser, p.paths.runtime_python)
    except TeamhubError as exc:
        return Result("runtime usable by users", False, str(exc).split("; rebuild")[0],
                      "rebuild it with `install.sh` (from the system's /usr/bin/python3), "
                      "or make every folder on its path world-executable, or set "
                      "paths.runtime_dir")
    return Result("runtime usable by users", True,
                  f"{p.paths.singleuser} runs as {NOBODY}")


def _hub_config(p: Probe) -> Any:
    """The JupyterHub config `teamhub up` would start with (teamhub.toml + config.d)."""
    if "config" not in p._cache:
        from traitlets.config.loader import PyFileConfigLoader

        from .hubconfig import HUB_CONFIG_FILE

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
    """python3 (the runtime's) and every shared env's current revision."""
    from .envs.kernels import SHARED_PREFIX
    from .envs.store import META

    python = str(p.paths.runtime_python)
    specs = {"python3": {"argv": [python, "-m", "ipykernel_launcher", "-f",
                                  "{connection_file}"], "display_name": "python3",
                         "language": "python"}}
    root = Path(p.settings["envs.root"])
    if root.is_dir():
        for envdir in sorted(root.iterdir()):
            if not (envdir / META).is_file():
                continue
            bindir = envdir / "current" / "bin"
            specs[SHARED_PREFIX + envdir.name] = {
                "argv": [str(bindir / "python"), "-m", "ipykernel_launcher", "-f",
                         "{connection_file}"],
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
    except (TeamhubError, KeyError) as exc:
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


@check("limits enforceable")
def limits_enforceable(p: Probe) -> Result:
    from .limits import limits_status

    ok, detail = limits_status(p.settings)
    return Result("limits enforceable", ok, detail,
                  "" if ok else "run teamhub as a systemd service (`teamhub install`) on a "
                  "machine with the memory, cpu and pids cgroup controllers, or turn the "
                  "limits off: `teamhub config set limits.enabled false`")


@check("tls certificate")
def tls_certificate(p: Probe) -> Result:
    from .tls import EXPIRY_WARNING_DAYS, TlsError, inspect

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
        return Result(name, False, str(exc).split(";")[0], str(exc).split(";", 1)[-1].strip())
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

    from .tls import TlsError, covers, inspect

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
            return Result(name, False, f"cannot read the certificate: {exc}",
                          "see the tls certificate check")
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


def listeners(port: int) -> list[str]:
    """Programs listening on TCP PORT (names from `ss`), or ['?'] if unknown."""
    ss = shutil.which("ss")
    if not ss:
        return []
    out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    names = []
    for line in out.stdout.splitlines():
        if "users:((" in line:
            names.append(line.split("users:((", 1)[1].split(",")[0].strip('"'))
        elif line.strip():
            names.append("?")
    return sorted(set(names))


@check("port conflicts")
def port_conflicts(p: Probe) -> Result:
    s = p.settings
    hub_up = p.hub_api("/")[0] == 200
    ports = {"public": (s["hub.port"], {"node", "configurable-ht"}),
             "hub API": (s["hub.internal_port"], {"python", "python3", "teamhub", "jupyterhub"}),
             "proxy API": (s["proxy.api_port"], {"node", "configurable-ht"})}
    if s["tls.cert"] and s["tls.http_port"]:
        ports["HTTP redirect"] = (s["tls.http_port"], {"node", "configurable-ht"})
    problems, seen = [], []
    for what, (port, ours) in ports.items():
        found = listeners(port)
        seen.append(f"{what} {port}: {', '.join(found) or 'free'}")
        strangers = [n for n in found if n not in ours and n != "?"]
        if strangers or (found and not hub_up):
            problems.append(f"{what} port {port} is taken by {', '.join(found)}")
    if problems:
        return Result("port conflicts", False, "; ".join(problems),
                      "stop that program, or move teamhub: `teamhub config set hub.port N` "
                      "(hub.internal_port, proxy.api_port, tls.http_port likewise)")
    return Result("port conflicts", True, "; ".join(seen))


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


def as_json(results: list[Result]) -> dict[str, Any]:
    return {"ok": all(r.ok for r in results), "checks": [asdict(r) for r in results]}
