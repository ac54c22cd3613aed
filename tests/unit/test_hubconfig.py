"""Each settings → JupyterHub mapping, checked on a bare traitlets Config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from traitlets.config import Config

from teamhub import hubconfig
from teamhub.accounts.store import AccountStore
from teamhub.paths import Paths
from teamhub.settings import Settings


def test_network_defaults_listen_on_both_families_and_put_hub_api_on_a_unix_socket(tmp_path,
                                                                                  settings):
    c = Config()
    s = settings(f'[paths]\nstate_dir = "{tmp_path}/st"\n')
    hubconfig.update_network(c, s, Paths.from_settings(s))
    # This machine has IPv6 (on loopback at least): `auto` is `::`, dual-stack.
    assert (c.JupyterHub.ip, c.JupyterHub.port) == ("::", 8000)
    sock = Paths.from_settings(s).hub_socket
    assert str(sock).startswith("/run/teamhub/hub-")
    url = "http+unix://" + str(sock).replace("/", "%2F")
    assert (c.JupyterHub.hub_bind_url, c.JupyterHub.hub_connect_url) == (url, url)
    assert c.JupyterHub.hub_socket_mode == 0o666


def test_network_keeps_an_explicit_address_and_follows_env_override(settings):
    c = Config()
    s = settings('[hub]\nport = 9000\nip = "127.0.0.1"\n', TEAMHUB_HUB_PORT="9100")
    hubconfig.update_network(c, s, Paths.from_settings(s))
    assert (c.JupyterHub.ip, c.JupyterHub.port) == ("127.0.0.1", 9100)


def test_state_lives_in_state_dir(tmp_path, settings):
    s = settings(f'[paths]\nstate_dir = "{tmp_path}/st"\n')
    c = Config()
    hubconfig.update_state(c, Paths.from_settings(s))
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path}/st/jupyterhub.sqlite"
    # sqlite: WAL and synchronous=NORMAL through the tuned connection (hubdb_connection).
    assert c.JupyterHub.db_kwargs["connect_args"]["factory"].__name__ == "TunedConnection"
    assert c.JupyterHub.cookie_secret_file == f"{tmp_path}/st/jupyterhub_cookie_secret"


def test_db_url_moves_hub_and_store_to_postgresql(settings):
    url = "postgresql://hub:s3cret@127.0.0.1:5432/team"
    s = settings(f'[db]\nurl = "{url}"\n')
    c = Config()
    paths = Paths.from_settings(s)
    hubconfig.update_state(c, paths)
    hubconfig.update_auth(c, paths)
    hubconfig.update_projects(c, s, paths)
    assert c.JupyterHub.db_url == url
    assert c.JupyterHub.db_kwargs == {"pool_pre_ping": True}
    assert c.GuardedAuthenticator.db_url == url and c.LocalSpawner.db_url == url


def test_servers_survive_hub_shutdown_by_default(settings):
    c = Config()
    hubconfig.update_lifecycle(c, settings())
    assert c.JupyterHub.cleanup_servers is False
    c = Config()
    hubconfig.update_lifecycle(c, settings("[hub]\nstop_servers_on_shutdown = true\n"))
    assert c.JupyterHub.cleanup_servers is True


def test_spawner_runs_runtime_singleuser_with_clean_environment(settings):
    s = settings('[paths]\nruntime_dir = "/rt"\n[users]\nsystem_prefix = "j-"\n')
    c = Config()
    hubconfig.update_spawner(c, s, Paths.from_settings(s))
    assert c.JupyterHub.spawner_class == "teamhub.spawners.local.LocalSpawner"
    assert c.Spawner.cmd == ["/rt/bin/jupyterhub-singleuser"]
    assert c.Spawner.default_url == "/lab"
    assert "PATH" not in c.Spawner.env_keep
    assert "--KernelManager.transport=ipc" in c.Spawner.args
    assert c.LocalSpawner.system_prefix == "j-"
    assert c.LocalSpawner.single_user_trial is False


def test_auth_uses_account_store(tmp_path, settings):
    s = settings(f'[paths]\nstate_dir = "{tmp_path}"\n')
    c = Config()
    hubconfig.update_auth(c, Paths.from_settings(s))
    assert c.JupyterHub.authenticator_class.endswith("TeamhubAuthenticator")
    assert c.GuardedAuthenticator.store_path == f"{tmp_path}/accounts.sqlite"
    assert c.GuardedAuthenticator.db_url == ""


def test_proxy_command_prefers_setting_then_bundled(tmp_path, settings):
    s = settings('[proxy]\ncommand = "/x/chp"\n')
    assert hubconfig.proxy_command(s, Paths.from_settings(s)) == "/x/chp"
    bundled = tmp_path / "proxy/node_modules/.bin/configurable-http-proxy"
    bundled.parent.mkdir(parents=True)
    bundled.touch()
    s = settings(f'[paths]\nruntime_dir = "{tmp_path}/runtime"\n')
    assert hubconfig.proxy_command(s, Paths.from_settings(s)) == str(bundled)
    c = Config()
    hubconfig.update_proxy(c, s, Paths.from_settings(s))
    assert c.JupyterHub.proxy_class == "teamhub.proxy.chp.TeamhubProxy"
    # The proxy outlives the hub (so its port never falls free); its API is root's socket.
    assert c.JupyterHub.cleanup_proxy is False
    sock = str(Paths.from_settings(s).proxy_api_socket)
    assert c.TeamhubProxy.api_url == "http+unix://" + sock.replace("/", "%2F")
    assert c.TeamhubProxy.token_file == f"{Paths.from_settings(s).state_dir}/proxy_auth_token"


def test_cli_service_gets_only_user_server_group_and_token_admin_scopes(settings):
    c = Config()
    s = settings("[culling]\nenabled = false\n")
    hubconfig.update_services(c, s, Paths.from_settings(s), "tok")
    assert c.JupyterHub.services == [{"name": "teamhub-cli", "api_token": "tok", "admin": True}]
    (role,) = c.JupyterHub.load_roles
    assert set(role["scopes"]) == {"admin:users", "admin:servers", "list:users", "read:users",
                                   "admin:groups", "tokens", "proxy"}


def test_configure_loads_config_d_last(tmp_path, settings):
    s = settings()
    d = tmp_path / "jupyterhub_config.d"
    d.mkdir()
    (d / "20-b.py").write_text("")
    (d / "10-a.py").write_text("")
    assert [p.name for p in hubconfig.config_d_files(s)] == ["10-a.py", "20-b.py"]


def test_groups_are_loaded_from_the_store_at_start() -> None:
    c = Config()
    hubconfig.update_groups(c, {"b-team": ["cy"], "a-team": ["ada", "bob"], "empty": []})
    assert c.JupyterHub.load_groups == {"a-team": {"users": ["ada", "bob"]},
                                        "b-team": {"users": ["cy"]}, "empty": {"users": []}}


def test_users_are_loaded_from_the_store_at_start() -> None:
    c = Config()
    hubconfig.update_users(c, ["bob", "ada"])
    assert c.Authenticator.allowed_users == {"ada", "bob"}


def test_configure_makes_active_accounts_hub_users_in_builtin_mode_only(
        settings, tmp_path: Path) -> None:
    s = settings(f'[paths]\nstate_dir = "{tmp_path}/st"\n')
    store = AccountStore(Paths.from_settings(s).accounts_db)
    store.add("ada", "a long passphrase here")
    store.add("bob", "a long passphrase here", pending=True)
    assert hubconfig.configure(Config(), s).Authenticator.allowed_users == {"ada"}
    pam = settings(f'[paths]\nstate_dir = "{tmp_path}/st"\n[auth]\nmode = "pam"\n')
    assert "allowed_users" not in hubconfig.configure(Config(), pam).Authenticator


def test_spawner_knows_where_projects_and_grants_are(settings) -> None:
    s = settings()
    c = Config()
    hubconfig.update_projects(c, s, Paths.from_settings(s))
    assert c.LocalSpawner.projects_root == "/srv/teamhub/projects"
    assert c.LocalSpawner.accounts_db == "/var/lib/teamhub/accounts.sqlite"


def test_servers_list_environments_as_kernels(settings):
    args = hubconfig.server_args(settings('[envs]\nroot = "/srv/envs"\n'))
    assert "--ServerApp.kernel_spec_manager_class=" + hubconfig.KERNEL_SPEC_MANAGER in args
    assert "--TeamhubKernelSpecManager.envs_root=/srv/envs" in args


def test_kernels_start_warm_unless_turned_off(settings):
    flag = "--KernelProvisionerFactory.default_provisioner_name=teamhub-warm"
    prewarm = "--TeamhubWarmKernels.prewarm=True"
    args = hubconfig.server_args(settings())
    assert flag in args and prewarm not in args
    args = hubconfig.server_args(settings(TEAMHUB_ENVS_WARM_KERNELS="prewarm"))
    assert flag in args and prewarm in args
    args = hubconfig.server_args(settings(TEAMHUB_ENVS_WARM_KERNELS="off"))
    assert flag not in args and prewarm not in args
    assert not any(a.startswith("--TeamhubWarmKernels.") for a in args)


def test_unused_warm_parents_exit_after_envs_warm_idle(settings):
    assert "--TeamhubWarmKernels.idle_exit=600" in hubconfig.server_args(settings())
    args = hubconfig.server_args(settings(TEAMHUB_ENVS_WARM_IDLE="45"))
    assert "--TeamhubWarmKernels.idle_exit=45" in args


def test_fork_server_on_by_default_with_a_root_only_socket_in_the_state_dir(settings):
    s = settings()
    c = Config()
    hubconfig.update_fork_server(c, s, Paths.from_settings(s))
    assert c.LocalSpawner.fork_server is True
    state = Paths.from_settings(s).state_dir
    assert c.LocalSpawner.fork_server_socket == str(state / "forkserver.sock")
    # The helper's log is root's, beside the state folder (Paths.root_dir), not in it.
    assert c.LocalSpawner.fork_server_log == str(state.with_name(state.name + "-root") /
                                                  "forkserver.log")


def test_fork_server_off_by_setting_and_always_in_the_trial(settings):
    s = settings(TEAMHUB_SPAWNER_FORK_SERVER="false")
    c = Config()
    hubconfig.update_fork_server(c, s, Paths.from_settings(s))
    assert c.LocalSpawner.fork_server is False
    s = settings()
    c = Config()
    hubconfig.update_fork_server(c, s, Paths.from_settings(s), trial=True)
    assert c.LocalSpawner.fork_server is False


def test_servers_start_with_the_read_only_extension_manager(settings):
    assert "--LabApp.extension_manager=readonly" in hubconfig.server_args(settings())


def test_servers_do_not_refresh_prometheus_gauges_every_second(settings):
    assert "--ResourceUseDisplay.enable_prometheus_metrics=False" in hubconfig.server_args(
        settings())

def test_update_accounts(settings) -> None:
    from teamhub.accounts.pages import TEMPLATES
    from teamhub.console.base import TEMPLATES as CONSOLE_TEMPLATES

    c = Config()
    hubconfig.update_accounts(c, settings("[auth]\nsignup = true\n",
                                          TEAMHUB_AUTH_MIN_PASSWORD_LENGTH="14"))
    assert c.TeamhubAuthenticator.signup_enabled is True
    assert c.TeamhubAuthenticator.open_signup is False
    assert c.TeamhubAuthenticator.min_password_length == 14
    assert c.TeamhubAuthenticator.system_prefix == "jupyter-"
    # Set, not prepended: they extend JupyterHub's own (an admin's config.d comes after).
    assert c.JupyterHub.template_paths == [str(TEMPLATES), str(CONSOLE_TEMPLATES)]
    assert (TEMPLATES / "page.html").is_file() and (TEMPLATES / "login.html").is_file()
    assert (CONSOLE_TEMPLATES / "console" / "frame.html").is_file()


def test_signup_is_off_by_default(settings) -> None:
    c = Config()
    hubconfig.update_accounts(c, settings())
    assert c.TeamhubAuthenticator.signup_enabled is False
    assert c.TeamhubAuthenticator.open_signup is False
    assert c.TeamhubAuthenticator.min_password_length == 10


WHOLE = '''
[paths]
state_dir = "{state}"
runtime_dir = "/rt"
[envs]
root = "/srv/envs"
[spawner]
environment = {{ A = "1" }}
env_keep = ["HTTPS_PROXY"]
[tls]
cert = "/c.pem"
key = "/k.pem"
hsts_max_age = 600
[culling]
timeout = 30
every = 10
'''


def _whole(tmp_path: Path, settings: Callable[..., Settings]) -> Settings:
    state = tmp_path / "st"
    state.mkdir(exist_ok=True)
    s = settings(WHOLE.format(state=state))
    Paths.from_settings(s).api_token.write_text("tok\n")
    return s


def test_configure_as_a_whole_sets_the_final_args_environment_and_spawner(tmp_path, settings):
    from teamhub.accounts.pages import TEMPLATES
    from teamhub.browser_isolation import ISOLATION_HEADERS
    from teamhub.console.base import TEMPLATES as CONSOLE_TEMPLATES

    c = hubconfig.configure(Config(), _whole(tmp_path, settings))
    assert c.Spawner.args == [
        "--KernelManager.transport=ipc",
        "--HubOAuth.cache_max_age=10",
        "--ServerApp.kernel_spec_manager_class=teamhub.envs.kernels.TeamhubKernelSpecManager",
        "--TeamhubKernelSpecManager.envs_root=/srv/envs",
        "--KernelProvisionerFactory.default_provisioner_name=teamhub-warm",
        "--TeamhubWarmKernels.idle_exit=600",
        "--ServerApp.jpserver_extensions=teamhub.serverext=True",
        "--ServerApp.authorizer_class=teamhub.serverext.IsolationAuthorizer",
        "--LabApp.extension_manager=readonly",
        "--ResourceUseDisplay.enable_prometheus_metrics=False",
    ]
    assert c.Spawner.environment == {"A": "1", "JUPYTERHUB_ACTIVITY_INTERVAL": "5",
                                     "JUPYTER_TEAMHUB_BUSY_INTERVAL": "5",
                                     "JUPYTER_TEAMHUB_HSTS": "max-age=600"}
    assert c.Spawner.env_keep == ["LANG", "LC_ALL", "HTTPS_PROXY"]
    assert c.Spawner.cmd == ["/rt/bin/jupyterhub-singleuser"]
    assert c.Spawner.disable_user_config is True
    assert c.Spawner.poll_interval == 10
    assert c.JupyterHub.spawner_class == "teamhub.spawners.local.LocalSpawner"
    assert c.LocalSpawner.fork_server is True and c.LocalSpawner.single_user_trial is False
    tornado = c.JupyterHub.tornado_settings
    assert tornado["cookie_options"] == {"samesite": "Lax"}
    assert tornado["headers"] == {**ISOLATION_HEADERS, "Strict-Transport-Security": "max-age=600"}
    assert tornado["xsrf_cookie_kwargs"] == {"samesite": "Lax", "httponly": True}
    assert tornado["static_handler_class"].__name__ == "IsolatedStaticHandler"
    assert [svc["name"] for svc in c.JupyterHub.services] == ["teamhub-cli", "idle-culler"]
    assert [role["name"] for role in c.JupyterHub.load_roles] == ["teamhub-cli", "idle-culler"]
    assert c.JupyterHub.template_paths == [str(TEMPLATES), str(CONSOLE_TEMPLATES)]


def test_configure_sets_and_never_appends_so_applying_it_again_changes_nothing(tmp_path,
                                                                              settings):
    for trial in (False, True):
        s = _whole(tmp_path, settings)
        once = hubconfig.configure(Config(), s, trial=trial)
        twice = hubconfig.configure(hubconfig.configure(Config(), s, trial=trial), s,
                                    trial=trial)
        assert twice == once
    # The trial's servers run unprivileged: no ipc kernels (no private socket folder).
    assert "--KernelManager.transport=ipc" not in once.Spawner.args
    assert once.Spawner.args[0] == "--HubOAuth.cache_max_age=10"


def test_console_sampler_interval_comes_from_its_setting(settings):
    c = Config()
    hubconfig.update_console(c, settings("[console]\nsample_seconds = 5\n"))
    assert c.UsageSampler.sample_seconds == 5
    c = Config()
    hubconfig.update_console(c, settings())
    assert c.UsageSampler.sample_seconds == 30
