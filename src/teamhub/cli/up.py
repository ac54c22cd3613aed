"""`teamhub up`: check everything, then run the hub in the foreground."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from .. import helper_policy, hubdb, preflight, rootfiles, unprivileged
from ..accounts.store import AccountStore
from ..envs.admin import refresh_visibility
from ..errors import PreflightError
from ..hubclient import HubIdentity
from ..hubconfig import (
    CLI_SERVICE,
    ENV_TRIAL,
    HUB_CONFIG_FILE,
    proxy_command,
    subdomain_host,
    unix_url,
)
from ..paths import Paths
from ..proxy import read_record
from ..settings import Settings, load
from ..spawners import forkserver
from ..system import hub_account, listen, login_profile
from .base import Context, cli, pass_ctx


def _write_secret(path: Path, text: str) -> None:
    """Write TEXT to PATH, 0600 from the first byte, replacing any old file at once:
    a reader sees the old secret or the new one, never a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rotate_api_token(paths: Paths) -> str:
    """A new token for the CLI's service at every start; the old ones stop working.

    JupyterHub keeps the tokens of configured services in its database across
    restarts, so the previous start's token is deleted there too: called before
    the hub starts (preflight found its ports free), never under a running hub.
    """
    pid = HubIdentity.of(paths).live_pid()
    if pid is not None:
        raise PreflightError(f"a hub already runs (pid {pid}, from {paths.hub_pid_file})",
                             "stop "
                             "it first (if that is not a hub, remove the stale pid file)")
    token = secrets.token_hex(32)
    _write_secret(paths.api_token, token + "\n")
    hubdb.revoke_service_tokens(paths.hub_db, CLI_SERVICE)
    return token


def ensure_admin(paths: Paths, name: str) -> str | None:
    """Make NAME an admin; a new account gets a generated password, which is returned."""
    store = AccountStore(paths.accounts_db, paths.db_url)
    account = store.get(name)
    if account is not None:
        store.set_admin(account.name, True)
        return None
    password = secrets.token_urlsafe(15)
    account = store.add(name, password, admin=True)
    _write_secret(paths.initial_password, f"{account.name} {password}\n")
    return password


def _trial_defaults(ctx: Context) -> None:
    """Without root, keep state in the invoking user's home and run servers from this Python."""
    probe = load(ctx.config_option)
    if probe.origins["paths.state_dir"] == "default":
        os.environ["TEAMHUB_PATHS_STATE_DIR"] = str(Path.home() / ".local/share/teamhub")
    if probe.origins["paths.runtime_dir"] == "default":
        os.environ["TEAMHUB_PATHS_RUNTIME_DIR"] = sys.prefix
    if probe.origins["hub.unprivileged"] == "default":
        # The trial runs everything as the invoking user already: the default (on) does not
        # apply; an explicit `true` is still refused (preflight.check_unprivileged).
        os.environ["TEAMHUB_HUB_UNPRIVILEGED"] = "false"


def public_base_url(settings: Settings) -> str:
    """The address people reach this hub at: `hub.domain` when set, else its IP, or this
    machine's name on all addresses."""
    if settings["hub.domain"]:
        return subdomain_host(settings)
    host = settings["hub.ip"]
    if listen.all_addresses(host):
        host = socket.getfqdn()
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings["tls.cert"] else "http"
    return f"{scheme}://{host}:{settings['hub.port']}"


RETIRED = {"hub.internal_port": "the hub's API is the unix socket {hub}",
           "proxy.api_port": "the proxy's API is the unix socket {proxy}"}


def write_login_profile(settings: Settings, paths: Paths) -> None:
    """Users' login shells (ssh, `su -`, Lab's terminal) get their server's PATH and
    spawner.environment (/etc/profile.d/teamhub.sh)."""
    # Deferred: the spawner module imports JupyterHub's, which every other command can skip.
    from ..spawners.local import SYSTEM_PATH, merge_path

    environment = dict(settings["spawner.environment"])
    server_path = merge_path(f"{paths.runtime_dir / 'bin'}:{SYSTEM_PATH}",
                             environment.get("PATH"))
    pam = settings["auth.mode"] == "pam"
    text = login_profile.render(server_path=server_path, environment=environment,
                                prefix=None if pam else settings["users.system_prefix"],
                                min_uid=settings["auth.pam_min_uid"])
    try:
        login_profile.install(text, paths.login_profile)
    except OSError as exc:
        click.echo(f"WARNING: could not write {paths.login_profile} ({exc}): users' ssh and "
                   "terminal shells will lack teamhub-env and spawner.environment", err=True)


def run_preflight(settings: Settings, paths: Paths, trial: bool,
                  hub_uid: int | None = None, previous_uid: int | None = None) -> None:
    preflight.ensure_state_dir(paths.state_dir)
    if previous_uid is None:
        # `teamhub install` of an unprivileged hub (or of one that was): the sockets'
        # folder is the hub's account's, taken over rather than refused.
        previous_uid = helper_policy.hub_uid(settings["hub.account"])
    preflight.ensure_socket_dir(paths.socket_dir, hub_uid, previous_uid)
    preflight.check_no_hub_answers(paths.hub_socket)
    ip, port = listen.listen_address(settings["hub.ip"]), settings["hub.port"]
    # The proxy the previous hub left running holds the ports; it is adopted, not a conflict.
    record = read_record(paths.proxy_record)
    ours = {int(record["pid"])} if record else set()
    # A hub that dropped root (`teamhub restart`) has the root helper start its proxy.
    helper_binds = settings["hub.unprivileged"] and os.geteuid() != 0
    preflight.check_port_free(ip, port, "public", "choose another with `teamhub up --port N`",
                              ours, helper_binds)
    if settings["tls.cert"] or settings["tls.key"]:
        preflight.check_tls(settings["tls.cert"], settings["tls.key"])
        if settings["tls.http_port"]:
            preflight.check_port_free(ip, settings["tls.http_port"], "HTTP redirect",
                                      "set another with `teamhub config set tls.http_port N` "
                                      "(0: no redirect)", ours, helper_binds)
    if not trial:
        preflight.check_runtime(paths.runtime_dir, paths.singleuser, paths.runtime_python)
    preflight.check_proxy(proxy_command(settings, paths))
    if not trial:
        preflight.check_limits(settings)
    preflight.check_gpus(settings, trial)
    preflight.check_docker(settings)


@cli.command()
@click.option("--ip", help="Address to listen on (overrides hub.ip; auto = every address, "
                            "IPv4 and IPv6).")
@click.option("--port", type=int, help="Public port (overrides hub.port).")
@click.option("--admin", "admin", metavar="NAME",
              help="Make NAME an admin. A new account gets a generated password, printed "
                   "once and saved root-only in the state folder.")
@click.option("--single-user-trial", is_flag=True,
              help="Run without root: every server runs as you, NOT isolated. For a try-out only.")
@click.option("--check", is_flag=True, help="Run the start-up checks, then exit.")
@pass_ctx
def up(ctx: Context, ip: str | None, port: int | None, admin: str | None,
       single_user_trial: bool, check: bool) -> None:
    """Start teamhub in the foreground: login page, hub, proxy.

    Runs checks first (root, state folder, ports, a runtime every user can run,
    the proxy) and refuses to start, with a hint, when one fails. Servers keep
    running when the hub stops, and are picked up again at the next start.
    """
    # `teamhub restart` of a hub that dropped root re-executes this command as hub.account:
    # all it may then do is adopt the root helper that still runs (teamhub.unprivileged).
    resumed = unprivileged.resumed()
    if not resumed:
        preflight.check_root(single_user_trial)
    os.environ["TEAMHUB_CONFIG"] = str(ctx.config_file)
    if ip is not None:
        os.environ["TEAMHUB_HUB_IP"] = ip
    if port is not None:
        os.environ["TEAMHUB_HUB_PORT"] = str(port)
    if single_user_trial:
        os.environ[ENV_TRIAL] = "1"
        _trial_defaults(ctx)
    else:
        os.environ.pop(ENV_TRIAL, None)
    settings = load(ctx.config_option)
    paths = Paths.from_settings(settings)
    preflight.check_unprivileged(settings, single_user_trial)
    drop_root = settings["hub.unprivileged"] and not single_user_trial
    account = None
    previous = paths.state_dir.stat().st_uid if paths.state_dir.is_dir() else 0
    if resumed:
        unprivileged.check_resumed(settings)
    elif drop_root and not check:
        account = hub_account.ensure(settings["hub.account"], paths.state_dir)
    elif previous and not single_user_trial and not check:
        # hub.unprivileged turned off again: the state is root's again, as it was before
        # (root's own files moved out first: what the account wrote there is not believed).
        rootfiles.migrate(paths)
        unprivileged.take_back(paths)
    run_preflight(settings, paths, single_user_trial, account.uid if account else None,
                  previous or None)
    if check:
        click.echo("teamhub: all start-up checks passed")
        return
    if not resumed and not single_user_trial and os.geteuid() == 0:
        # Root's own files (account registry, helper's log) in root's folder beside the
        # state folder; an older install's moved there from the state folder.
        rootfiles.migrate(paths, account.gid if account else None)
    if not single_user_trial and not settings["limits.enabled"]:
        click.echo("WARNING: per-user limits are off (limits.enabled = false): one user can "
                   "take all memory, CPUs and processes of this machine.", err=True)
    if single_user_trial:
        click.echo("WARNING: single-user trial: every user's server runs as "
                   f"{os.environ.get('USER', 'you')}; users are NOT isolated from each other "
                   "and no per-user limits apply.",
                   err=True)
    for key, now in RETIRED.items():
        if settings.origins[key] != "default":
            click.echo(f"NOTE: {key} ({settings.origins[key]}) is no longer used: "
                       + now.format(hub=paths.hub_socket, proxy=paths.proxy_api_socket)
                       + f"; remove it with `teamhub config unset {key}`", err=True)
    rotate_api_token(paths)
    paths.hub_url_file.write_text(unix_url(paths.hub_socket) + "/hub/api\n")
    if admin:
        password = ensure_admin(paths, admin)
        if password:
            click.echo(f"Admin account {admin!r} created with password: {password}\n"
                       f"(also saved in {paths.initial_password}, readable by root only; "
                       "change it with `teamhub user passwd`)")
    if not resumed:
        # Group membership may have changed while the hub was down: re-derive who sees which
        # env (root's work: an unprivileged restart leaves it to the next root start).
        refresh_visibility(settings)
    host = "localhost" if listen.all_addresses(settings["hub.ip"]) else settings["hub.ip"]
    paths.public_url_file.write_text(public_base_url(settings) + "\n")
    click.echo(f"teamhub starting on http://{host}:{settings['hub.port']}/", err=True)
    sys.stdout.flush()
    # Everything the hub writes (database, cookie secret, logs) is for root's eyes only.
    started_umask = os.umask(0o077)
    if not single_user_trial and settings["spawner.backend"] == "local" and not resumed:
        write_login_profile(settings, paths)
    fork_server = None
    if resumed:
        unprivileged.adopt_helper(paths)
    elif settings["spawner.fork_server"] and not single_user_trial:
        if account is not None:
            # The proxy the helper starts reads the TLS pair as the hub's account.
            unprivileged.copy_tls(settings, paths)
            settings = load(ctx.config_option)
        # Started here, before the hub reads any secret, as a fresh program; it ends with us.
        # Its log is root's (rootfiles); the proxy's and servers' logs go to <state>/logs.
        paths.proxy_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fork_server = forkserver.start(paths.fork_server_socket, sys.executable,
                                       paths.fork_server_log,
                                       helper_policy.build(settings, paths),
                                       kernels=settings["envs.warm_kernels"] == "prewarm")
    if account is not None:
        unprivileged.hand_over(settings, paths, account)
    from jupyterhub.app import main as jupyterhub_main

    jupyterhub_main(argv=["-f", str(HUB_CONFIG_FILE)])
    if restart_requested(paths):
        os.umask(started_umask)  # as the first start had it
        start_again(fork_server)


def restart_requested(paths: Paths) -> bool:
    """Whether `teamhub restart` asked this process to start again; the request (in the
    root-only state folder) names the pid it is for, and is used up here."""
    try:
        text = paths.restart_request.read_text().strip()
    except OSError:
        return False
    paths.restart_request.unlink(missing_ok=True)
    return text == str(os.getpid())


def start_again(fork_server: subprocess.Popen[bytes] | None) -> None:
    """Replace this process by a fresh `teamhub up` with the same arguments: the same pid,
    terminal and log, and the settings read anew. The hub has stopped, leaving users'
    servers and the proxy running (unless hub.stop_servers_on_shutdown); the new hub
    adopts both."""
    if fork_server is not None and fork_server.poll() is None and os.geteuid() == 0:
        # The new process starts its own; servers it forked are not its children. A hub
        # that dropped root leaves it running: the new process adopts it.
        fork_server.terminate()
        fork_server.wait(timeout=30)
    click.echo("teamhub: restarting (`teamhub restart`)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)
