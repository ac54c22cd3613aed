"""TLS, culling and server-extension mappings on a bare Config; the extension's busy check."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from traitlets.config import Config

from teamhub import hubconfig, serverext
from teamhub.paths import Paths


def test_tls_off_by_default_sets_nothing(settings):
    c = Config()
    s = settings()
    hubconfig.update_tls(c, s, Paths.from_settings(s))
    assert "ssl_cert" not in c.JupyterHub and "tornado_settings" not in c.JupyterHub


def test_tls_sets_cert_redirect_port_and_hsts_on_hub_and_servers(settings):
    s = settings('[hub]\nport = 8443\n[tls]\ncert = "/c.pem"\nkey = "/k.pem"\n'
                 "http_port = 8080\nhsts_max_age = 600\n")
    c = Config()
    hubconfig.update_proxy(c, s, Paths.from_settings(s))
    hubconfig.update_tls(c, s, Paths.from_settings(s))
    assert (c.JupyterHub.ssl_cert, c.JupyterHub.ssl_key) == ("/c.pem", "/k.pem")
    assert c.TeamhubProxy.redirect_port == 8080
    hubconfig.update_tornado_settings(c, s)
    assert c.JupyterHub.tornado_settings["headers"]["Strict-Transport-Security"] == "max-age=600"
    assert hubconfig.server_environment(s)["JUPYTER_TEAMHUB_HSTS"] == "max-age=600"


def test_tls_redirect_and_hsts_can_be_off(settings):
    s = settings('[tls]\ncert = "/c.pem"\nkey = "/k.pem"\nhttp_port = 0\n'
                 "hsts_max_age = 0\n")
    c = Config()
    hubconfig.update_tls(c, s, Paths.from_settings(s))
    assert c.JupyterHub.ssl_cert == "/c.pem"
    assert c.TeamhubProxy.redirect_port == 0 and "tornado_settings" not in c.JupyterHub
    assert hubconfig.hsts_header(s) == ""
    assert "JUPYTER_TEAMHUB_HSTS" not in hubconfig.server_environment(s)


def test_culling_on_by_default_as_a_service_with_least_scopes(settings):
    c = Config()
    s = settings()
    hubconfig.update_services(c, s, Paths.from_settings(s), "tok")
    names = [svc["name"] for svc in c.JupyterHub.services]
    assert names == ["teamhub-cli", "idle-culler"]
    culler = c.JupyterHub.services[1]
    # Through teamhub.culler, which takes the culler to the hub's unix socket.
    assert culler["command"] == [sys.executable, "-m", "teamhub.culler",
                                 str(Paths.from_settings(s).hub_socket), "--url=http://hub/hub/api",
                                 "--timeout=3600", "--cull-every=300"]
    role = c.JupyterHub.load_roles[-1]
    assert role["services"] == ["idle-culler"]
    assert set(role["scopes"]) == {"list:users", "read:users:activity", "read:servers",
                                   "delete:servers"}
    assert hubconfig.server_environment(s)["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"


def test_culling_off_and_short_timeouts_report_activity_often(settings):
    c = Config()
    s = settings("[culling]\nenabled = false\n")
    hubconfig.update_services(c, s, Paths.from_settings(s), None)
    assert c.JupyterHub.services == [] and c.JupyterHub.load_roles == []
    s = settings("[culling]\ntimeout = 30\nevery = 10\n")
    env = hubconfig.server_environment(s)
    assert env["JUPYTERHUB_ACTIVITY_INTERVAL"] == "5"
    assert env["JUPYTER_TEAMHUB_BUSY_INTERVAL"] == "5"


def test_servers_load_the_server_extension(settings):
    args = hubconfig.server_args(settings())
    assert "--ServerApp.jpserver_extensions=teamhub.serverext=True" in args


def test_busy_kernel_marks_activity_idle_does_not():
    kernels = {"a": SimpleNamespace(execution_state="idle"),
               "b": SimpleNamespace(execution_state="busy")}
    app = SimpleNamespace(kernel_manager=SimpleNamespace(_kernels=kernels),
                          web_app=SimpleNamespace(settings={}))
    assert serverext.busy_kernels(app.kernel_manager) == ["b"]
    assert serverext.mark_if_busy(app) and serverext.ACTIVITY_KEY in app.web_app.settings
    kernels["b"].execution_state = "idle"
    app.web_app.settings.clear()
    assert not serverext.mark_if_busy(app) and app.web_app.settings == {}
