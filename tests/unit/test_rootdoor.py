"""The root helper's rules that need no running helper (a real one:
tests/system/test_root_helper.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from traitlets.config import Config

from teamhub import helper_policy, hubconfig, unprivileged
from teamhub.errors import HelperRefused
from teamhub.paths import Paths
from teamhub.proxy import LAUNCHER
from teamhub.settings import Settings
from teamhub.spawners import rootdoor
from teamhub.spawners.rootdoor import Peer, Policy


def test_only_root_and_the_hubs_account_are_admitted() -> None:
    policy = Policy(hub_uid=990)
    assert rootdoor.admit(Peer(10, 0, 0), policy) is True
    assert rootdoor.admit(Peer(10, 990, 990), policy) is False
    with pytest.raises(HelperRefused, match="uid 1000 is neither root"):
        rootdoor.admit(Peer(10, 1000, 1000), policy)
    with pytest.raises(HelperRefused):  # no hub account yet: root alone
        rootdoor.admit(Peer(10, 990, 990), Policy())


@pytest.mark.parametrize("line, reason", [
    (b'{"op": "shell"}', "unknown verb"),
    (b"{", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"op": "status", "x": "' + b"y" * rootdoor.MAX_REQUEST + b'"}', "over"),
])
def test_bad_requests(line: bytes, reason: str) -> None:
    with pytest.raises(HelperRefused, match=reason):
        rootdoor.parse_request(line)


def test_names_and_scopes() -> None:
    assert rootdoor.hub_user("ada") == "ada"
    for bad in ("Ada", "../x", "a" * 80, 5, None):
        with pytest.raises(HelperRefused):
            rootdoor.hub_user(bad)
    assert rootdoor.scope_unit("ada", "") == "teamhub-user-ada.scope"
    assert rootdoor.scope_unit("ada", "gpu1") == "teamhub-user-ada-gpu1.scope"
    with pytest.raises(HelperRefused, match="bad server name"):
        rootdoor.scope_unit("ada", "x/../y")


def test_policy_is_built_from_the_hubs_own_settings(settings: Callable[..., Settings],
                                                    ) -> None:
    s = settings('[hub]\naccount = "nosuchaccountxyz"\n[spawner.environment]\nFOO = "1"\n')
    paths = Paths.from_settings(s)
    policy = helper_policy.build(s, paths)
    c = Config()
    hubconfig.update_spawner(c, s, paths)
    hubconfig.update_limits(c, s, paths)
    assert policy.hub_uid is None  # no such account: the helper serves root alone
    # The helper expects exactly what the hub's spawner is configured with.
    assert [policy.program, *policy.args] == [*c.Spawner.cmd, *c.Spawner.args]
    assert policy.registry == c.LocalSpawner.registry_path
    assert policy.prefix == c.LocalSpawner.system_prefix
    assert policy.home_root == c.LocalSpawner.home_root
    assert policy.server_log_dir == c.LocalSpawner.server_log_dir
    assert policy.private_runtime_root == c.LocalSpawner.private_runtime_root
    assert policy.private_tmp_root == c.LocalSpawner.private_tmp_root
    assert set(c.Spawner.environment) <= set(policy.extra_env_keys)
    assert "FOO" in policy.extra_env_keys
    assert (policy.envs_root, policy.envs_lock_timeout) == (s["envs.root"],
                                                            s["envs.lock_timeout"])
    assert Policy.from_json(policy.to_json()) == policy


def test_hub_account_setting_refuses_root(settings: Callable[..., Settings]) -> None:
    with pytest.raises(Exception, match="not root"):
        settings('[hub]\naccount = "root"\n')


# --- the console's actions that change the machine (rootdoor.MACHINE_VERBS) -------------


@pytest.mark.parametrize("op", sorted(rootdoor.FIELDS))
def test_every_verb_refuses_a_field_it_does_not_take(op: str) -> None:
    fields = {f: None for f in rootdoor.FIELDS[op]}

    assert rootdoor.parse_request(json.dumps({"op": op, **fields}).encode())["op"] == op
    for extra in ("path", "argv", "keep_home"):
        with pytest.raises(HelperRefused, match=f"unexpected field.*{extra}"):
            rootdoor.parse_request(json.dumps({"op": op, **fields, extra: "/"}).encode())


@pytest.mark.parametrize("bad", ["/srv/teamhub/projects/p1", "../p1", "p1/../../etc", ".trash",
                                 "P1", "", 5, None, ["p1"]])
def test_a_project_is_a_name_never_a_path(bad: object) -> None:
    with pytest.raises(HelperRefused, match="bad project name"):
        rootdoor.project_name(bad)
    for op in ("apply_project", "delete_project"):
        with pytest.raises(HelperRefused, match="bad project name"):
            rootdoor.machine_work({"op": op, "project": bad}, Policy())
    assert rootdoor.project_name("p1") == "p1"


@pytest.mark.parametrize("request_, reason", [
    ({"op": "block_user", "user": "../root"}, "bad user name"),
    ({"op": "remove_user", "user": "Ada"}, "canonical"),
    ({"op": "unblock_user"}, "bad user name"),
    ({"op": "sync_links", "users": "ada"}, "must be a list"),
    ({"op": "sync_links", "users": ["ada"] * (rootdoor.MAX_USERS + 1)}, "must be a list"),
    ({"op": "apply_project", "project": "p1", "users": ["ada", "x y"]}, "bad user name"),
    ({"op": "delete_project", "project": "p1", "force": "yes"}, "force must be"),
])
def test_machine_verbs_check_their_arguments_before_any_work(request_: dict[str, object],
                                                              reason: str) -> None:
    # Policy() has no account store: a request that got past the checks would fail there.
    with pytest.raises(HelperRefused, match=reason):
        rootdoor.machine_work(request_, Policy())


def test_user_verbs_refuse_root_system_foreign_accounts_and_pam_mode(tmp_path) -> None:
    registry = tmp_path / "system_users.json"
    policy = Policy(prefix="", registry=str(registry))
    for system in ("root", "daemon"):
        with pytest.raises(HelperRefused, match="root or a system account"):
            rootdoor.teamhub_account(system, policy)
    with pytest.raises(HelperRefused, match="not created by teamhub"):
        rootdoor.teamhub_account("nobody", policy)  # uid 65534: a person's range, not ours
    assert rootdoor.teamhub_account("nosuchaccountxyz", policy) is None
    with pytest.raises(HelperRefused, match="PAM mode"):
        rootdoor.teamhub_account("nosuchaccountxyz", Policy(existing_accounts=True))
    # The refusal comes from the work, before the store is read (there is none here).
    with pytest.raises(HelperRefused, match="root or a system account"):
        rootdoor.machine_work({"op": "remove_user", "user": "root"}, policy)[1]()


def test_block_needs_the_store_to_say_blocked_and_remove_a_stored_user(tmp_path) -> None:
    from teamhub.accounts.store import AccountStore

    db = tmp_path / "accounts.sqlite"
    store = AccountStore(db)
    store.add("ada", "a long enough password")
    policy = Policy(prefix="thtestx-", registry=str(tmp_path / "system_users.json"),
                    accounts_db=str(db), projects_root=str(tmp_path / "projects"))
    with pytest.raises(HelperRefused, match="'ada' is not blocked"):
        rootdoor.machine_work({"op": "block_user", "user": "ada"}, policy)[1]()
    with pytest.raises(HelperRefused, match="'bob' is not in the account store"):
        rootdoor.machine_work({"op": "remove_user", "user": "bob"}, policy)[1]()
    with pytest.raises(HelperRefused, match="was not created by teamhub"):
        rootdoor.machine_work({"op": "remove_user", "user": "ada"}, policy)[1]()
    store.set_blocked("ada", True)
    # Blocked, no Linux account: nothing to end, no project to take away.
    assert rootdoor.machine_work({"op": "block_user", "user": "ada"}, policy)[1]() == {
        "ended": None, "projects": []}
    with pytest.raises(HelperRefused, match="project 'p1' does not exist|no project"):
        rootdoor.machine_work({"op": "apply_project", "project": "p1", "users": []}, policy)[1]()
    with pytest.raises(HelperRefused, match="no account store"):
        rootdoor.machine_work({"op": "sync_links", "users": ["ada"]},
                              Policy(accounts_db=str(tmp_path / "none.sqlite")))[1]()


@pytest.mark.parametrize("request_, reason", [
    ({"op": "env_delete", "env": "../opt"}, "bad environment name"),
    ({"op": "env_delete", "env": None}, "bad environment name"),
    ({"op": "env_rollback", "env": "e1", "rev": "1"}, "bad revision"),
    ({"op": "env_rollback", "env": "e1", "rev": True}, "bad revision"),
    ({"op": "env_access", "env": "e1", "groups": "ml"}, "list of group names"),
    ({"op": "env_access", "env": "e1", "groups": ["../ml"]}, "bad group name"),
    ({"op": "env_access", "env": "e1", "groups": ["ML"]}, "canonical form"),
])
def test_env_verbs_check_their_arguments_before_any_work(request_: dict[str, object],
                                                         reason: str) -> None:
    with pytest.raises(HelperRefused, match=reason):
        rootdoor.machine_work(request_, Policy(envs_root="/nonexistent-envs"))


def test_env_verbs_need_envs_root_and_builds_only_through_env_build() -> None:
    with pytest.raises(HelperRefused, match="no envs.root"):
        rootdoor.machine_work({"op": "env_delete", "env": "e1"}, Policy())
    assert not {"env_create", "env_install", "env_uninstall"} & set(rootdoor.VERBS)
    with pytest.raises(HelperRefused, match="no envs.root"):
        rootdoor.env_build({"op": "env_build", "action": "create", "env": "e1",
                            "packages": []}, Policy())
    # A builder is needed: a helper that serves root alone (no hub account) builds nothing.
    with pytest.raises(HelperRefused, match="no builder"):
        rootdoor.env_build({"op": "env_build", "action": "create", "env": "e1",
                            "packages": []}, Policy(envs_root="/tmp/x", envs_uv="/uv"))
    about, work = rootdoor.env_build({"op": "env_build", "action": "install", "env": "e1",
                                      "packages": ["six"]},
                                     Policy(envs_root="/tmp/x", envs_uv="/uv", hub_uid=990,
                                            hub_gid=991))
    assert about == "install e1" and callable(work)


TOKEN = "0123456789abcdef" * 4


def _proxy_policy(ports: list[int]) -> Policy:
    return Policy(hub_uid=990, hub_gid=991, setpriv="/usr/bin/setpriv",
                  proxy_argv=["/usr/bin/node", "launch.mjs", "--port", str(ports[0])],
                  proxy_ports=ports)


def test_start_proxy_takes_a_well_formed_token_and_nothing_else() -> None:
    policy = _proxy_policy([8000])
    assert rootdoor.parse_request(
        b'{"op": "start_proxy", "token": "' + TOKEN.encode() + b'"}')["op"] == "start_proxy"
    assert rootdoor.proxy_token({"op": "start_proxy", "token": TOKEN}, False, policy) == TOKEN
    for bad in (TOKEN[:-1], TOKEN + "0", TOKEN.upper(), "g" * 64, 5, None, [TOKEN],
                TOKEN[:-1] + "\n"):
        with pytest.raises(HelperRefused, match="not one the hub makes"):
            rootdoor.proxy_token({"op": "start_proxy", "token": bad}, False, policy)
    for extra in ({"argv": ["/bin/sh"]}, {"env": {"LD_PRELOAD": "x"}}, {"port": 22}):
        line = json.dumps({"op": "start_proxy", "token": TOKEN, **extra}).encode()
        with pytest.raises(HelperRefused, match="unexpected field"):
            rootdoor.parse_request(line)
    with pytest.raises(HelperRefused, match="root starts its own"):
        rootdoor.proxy_token({"op": "start_proxy", "token": TOKEN}, True, policy)
    # A helper root started without hub.unprivileged has no proxy to start.
    with pytest.raises(HelperRefused, match="no proxy to start"):
        rootdoor.proxy_token({"op": "start_proxy", "token": TOKEN}, False, Policy(hub_uid=990))


def test_the_proxy_gets_net_bind_service_only_for_a_low_port() -> None:
    low = rootdoor.proxy_command(_proxy_policy([8443, 80]))
    assert low[:4] == ["/usr/bin/setpriv", "--reuid=990", "--regid=991", "--groups=991"]
    assert "--ambient-caps=+net_bind_service" in low
    assert "--bounding-set=-all,+net_bind_service" in low
    assert low[low.index("--") - 1] == "--no-new-privs"
    assert low[low.index("--") + 1:] == ["/usr/bin/node", "launch.mjs", "--port", "8443"]
    high = rootdoor.proxy_command(_proxy_policy([8443, 8080]))
    assert not any("net_bind_service" in arg for arg in high)
    assert "--bounding-set=-all" in high and "--inh-caps=-all" in high
    assert "--no-new-privs" in high
    env = rootdoor.proxy_env(TOKEN)
    assert env["CONFIGPROXY_AUTH_TOKEN"] == TOKEN and set(env) == {
        "PATH", "LANG", "CONFIGPROXY_AUTH_TOKEN"}


def test_the_helpers_proxy_is_the_one_the_hub_would_start(settings: Callable[..., Settings],
                                                          tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    s = settings(f'[hub]\nunprivileged = true\nport = 443\nip = "127.0.0.1"\n'
                 f'[tls]\ncert = "{cert}"\nkey = "{key}"\nhttp_port = 80\n')
    paths = Paths.from_settings(s)
    policy = helper_policy.build(s, paths)
    assert policy.proxy_ports == [443, 80]
    argv = policy.proxy_argv
    assert argv[1] == str(LAUNCHER)
    for flag, value in (("--ip", "127.0.0.1"), ("--port", "443"), ("--redirect-port", "80"),
                        ("--redirect-to", "443"), ("--ssl-cert", str(cert)),
                        ("--ssl-key", str(key)), ("--api-socket", str(paths.proxy_api_socket)),
                        ("--log-level", "info")):
        assert argv[argv.index(flag) + 1] == value, flag
    c = Config()
    hubconfig.update_proxy(c, s, paths)
    assert argv[0] == c.TeamhubProxy.node and argv[argv.index("--chp") + 1] == \
        c.TeamhubProxy.chp_library
    assert c.TeamhubProxy.helper_socket == str(paths.fork_server_socket)
    assert policy.proxy_log == str(paths.proxy_log)
    # Without hub.unprivileged the root hub starts its own proxy: none in the policy.
    off = helper_policy.build(settings("[hub]\nport = 80\nunprivileged = false\n"), paths)
    assert off.proxy_argv == [] and off.proxy_ports == []
    c = Config()
    hubconfig.update_proxy(c, settings("[hub]\nport = 80\nunprivileged = false\n"), paths)
    assert c.TeamhubProxy.helper_socket == ""



def test_a_pair_given_in_jupyterhub_config_d_reaches_the_helpers_proxy(
        settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TLS pair (and port) set only in jupyterhub_config.d, as a root hub honoured it: root
    copies the pair for the hub's account and the helper's proxy serves it, on that port."""
    monkeypatch.setenv(hubconfig.ENV_TLS_COPIES, "")  # copy_tls sets it; restored after
    admin = tmp_path / "letsencrypt"
    admin.mkdir()
    cert, key = admin / "cert.pem", admin / "key.pem"
    cert.write_text("CERT\n")
    key.write_text("KEY\n")
    confd = tmp_path / "jupyterhub_config.d"
    confd.mkdir()
    (confd / "50-tls.py").write_text(f"c.JupyterHub.ssl_cert = {str(cert)!r}\n"
                                     f"c.JupyterHub.ssl_key = {str(key)!r}\n"
                                     "c.JupyterHub.port = 8443\n")
    s = settings(f'[hub]\nunprivileged = true\nport = 8000\nip = "127.0.0.1"\n'
                 f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    paths = Paths.from_settings(s)
    paths.state_dir.mkdir()
    # Without the config.d files the policy would have no TLS at all, on port 8000.
    assert "--ssl-cert" not in helper_policy.proxy_argv(
        s, paths, helper_policy.public_proxy(hubconfig.configure(Config(), s)))
    unprivileged.copy_tls(s, paths)
    copy_cert = paths.state_dir / "tls" / "unprivileged-cert.pem"
    copy_key = paths.state_dir / "tls" / "unprivileged-key.pem"
    assert copy_cert.read_text() == "CERT\n" and copy_key.read_text() == "KEY\n"
    assert copy_key.stat().st_mode & 0o777 == 0o600
    policy = helper_policy.build(s, paths)
    argv = policy.proxy_argv
    for flag, value in (("--ip", "127.0.0.1"), ("--port", "8443"),
                        ("--ssl-cert", str(copy_cert)), ("--ssl-key", str(copy_key))):
        assert argv[argv.index(flag) + 1] == value, flag
    # A root hub had no redirect listener for such a pair (tls.http_port goes with tls.*).
    assert "--redirect-port" not in argv and policy.proxy_ports == [8443]
    # The hub's own view (jupyterhub_config.py: configure, config.d, the copies) agrees.
    hub = hubconfig.hub_config(s)
    assert (hub.JupyterHub.ssl_cert, hub.JupyterHub.ssl_key) == (str(copy_cert), str(copy_key))
    assert cert.read_text() == "CERT\n"  # the admin's files stay as they are


def test_working_out_the_public_proxy_logs_no_secret_of_the_hubs_config(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Root works out the proxy from the hub's whole config, which holds secrets (db.url's
    password); JupyterHub's application logs the config it is given ("Config changed", at
    debug level, to stderr: the hub's log): only the public traits may reach it."""
    # Deferred as in helper_policy: JupyterHub's application is heavy.
    from jupyterhub.app import JupyterHub

    secret = "pw-" + "x7Kq2" * 4
    hub = Config()
    hub.JupyterHub.db_url = f"postgresql://teamhub:{secret}@127.0.0.1:5432/teamhub"
    hub.JupyterHub.port = 8443
    hub.JupyterHub.ip = "127.0.0.1"
    hub.JupyterHub.log_level = "DEBUG"  # the tests' hubs log at debug level
    JupyterHub(config=hub)  # what the whole config logs (its handler is made per application)
    assert secret in capsys.readouterr().err
    public = helper_policy.public_proxy(hub)
    assert (public["ip"], public["port"]) == ("127.0.0.1", 8443)
    assert secret not in "".join(capsys.readouterr())
