"""TLS end to end: `teamhub tls self-signed`, a real hub serving HTTPS verified against the
generated certificate, HTTP redirected to HTTPS, HSTS on hub and user-server responses;
bad certificate settings stop `teamhub up` at its start-up checks."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests
import tomli_w
import tomllib
from support.client import Browser
from support.hub import PASSWORD, HubProcess, free_port, runtime_dir, unique

from teamhub.paths import Paths
from teamhub.settings import load

pytestmark = [pytest.mark.hub, pytest.mark.system]



class TlsHub(HubProcess):
    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    http_port = free_port()
    h = TlsHub(tmp_path_factory.mktemp("hub"),
               extra_toml=f"\n[tls]\nhttp_port = {http_port}\nhsts_max_age = 600\n")
    h.http_port = http_port
    h.user = unique("tls")
    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    try:
        out = h.teamhub("tls", "self-signed", "--hostname", "localhost", "--days", "90").stdout
        assert "restart the hub" in out
        h.cert = h.state / "tls" / "cert.pem"
        # HubProcess.start polls the login page with requests: trust our certificate.
        os.environ["REQUESTS_CA_BUNDLE"] = str(h.cert)
        h.add_user(h.user, PASSWORD)
        h.start()
        yield h
    finally:
        if saved is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved
        h.cleanup()


def test_self_signed_key_is_root_only_and_settings_point_at_it(hub: TlsHub) -> None:
    key = hub.state / "tls" / "key.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert hub.teamhub("config", "get", "tls.cert").stdout.strip() == str(hub.cert)
    assert hub.teamhub("config", "get", "tls.key").stdout.strip() == str(key)


def test_https_verified_with_generated_cert_and_hsts_on_hub(hub: TlsHub) -> None:
    resp = requests.get(f"{hub.url}/hub/login", verify=str(hub.cert), timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Strict-Transport-Security"] == "max-age=600"
    with pytest.raises(requests.exceptions.SSLError):
        # The system's CAs alone do not trust a self-signed certificate: TLS really is checked.
        requests.get(f"{hub.url}/hub/login", verify="/etc/ssl/certs/ca-certificates.crt",
                     timeout=30)


def test_plain_http_redirects_to_https(hub: TlsHub) -> None:
    resp = requests.get(f"http://localhost:{hub.http_port}/hub/login?next=%2Fhub%2F",
                        allow_redirects=False, timeout=30)
    assert resp.status_code == 301
    assert resp.headers["Location"] == f"https://localhost:{hub.port}/hub/login?next=%2Fhub%2F"
    # Plain HTTP on the TLS port itself is not served.
    with pytest.raises(requests.RequestException):
        requests.get(f"http://localhost:{hub.port}/hub/login", timeout=10)


def test_hsts_on_users_server_responses(hub: TlsHub) -> None:
    b = Browser(hub.url)
    b.http.verify = str(hub.cert)
    assert b.login(hub.user, PASSWORD).status_code == 302
    b.start_server(hub.user)
    assert b.open_lab(hub.user).status_code == 200
    resp = b.get(f"/user/{hub.user}/api/status")
    assert resp.status_code == 200
    assert resp.headers["Strict-Transport-Security"] == "max-age=600"


def test_doctor_reports_the_certificate(hub: TlsHub) -> None:
    proc = hub.teamhub("doctor", "--check", "tls certificate", "--check", "proxy reachable")
    assert "ok   tls certificate" in proc.stdout and "localhost" in proc.stdout


def _up_check(hub: TlsHub, **tls: str) -> subprocess.CompletedProcess[str]:
    data = tomllib.loads(hub.config.read_text())
    # Fresh ports and state (so its own sockets): the running hub holds its own, and the
    # port and running-hub checks come first.
    data["hub"]["port"], data["tls"]["http_port"] = free_port(), free_port()
    data["paths"]["state_dir"] = str(hub.root / "bad-tls-state")
    data["tls"].pop("cert"), data["tls"].pop("key")
    data["tls"].update(tls)
    config = hub.root / "bad-tls.toml"
    config.write_text(tomli_w.dumps(data))
    try:
        return hub.teamhub("--config", str(config), "up", "--check", check=False)
    finally:
        # `up --check` made the (empty) sockets' folder of that state.
        shutil.rmtree(Paths.from_settings(load(config, environ={})).socket_dir,
                      ignore_errors=True)


def test_bad_cert_settings_stop_up_with_a_hint(hub: TlsHub) -> None:
    proc = _up_check(hub, cert="/nonexistent/cert.pem", key="/nonexistent/key.pem")
    assert proc.returncode != 0
    assert proc.stderr.startswith("teamhub: error: TLS certificate /nonexistent/cert.pem does "
                                  "not exist")
    assert len(proc.stderr.strip().splitlines()) == 1
    other = hub.root / "other"
    other.mkdir(exist_ok=True)
    subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "--config",
                    str(other / "t.toml"), "tls", "self-signed", "--days", "5"],
                   check=True, capture_output=True,
                   env={"PATH": os.environ["PATH"], "TEAMHUB_PATHS_STATE_DIR": str(other)})
    proc = _up_check(hub, cert=str(hub.cert), key=f"{other}/tls/key.pem")
    assert proc.returncode != 0 and "does not belong to certificate" in proc.stderr
    proc = _up_check(hub, cert=str(hub.cert))
    assert proc.returncode != 0 and "TLS needs both tls.cert and tls.key" in proc.stderr
    shutil.rmtree(other, ignore_errors=True)


def test_self_signed_bad_input_changes_nothing(hub: TlsHub) -> None:
    before = hub.config.read_text()
    cert = hub.cert.read_bytes()
    for args in (["--days", "0"], ["--hostname", "bad name"], ["--days", "x"]):
        proc = hub.teamhub("tls", "self-signed", *args, check=False)
        assert proc.returncode != 0 and "error" in proc.stderr.lower()
    assert hub.config.read_text() == before
    assert hub.cert.read_bytes() == cert
