"""`teamhub doctor` against a real running hub: healthy, then one thing broken at a time.

Each broken thing is real (a mode changed on disk, a route deleted from the
live proxy, a runtime behind a closed folder, an expired certificate, a config
file that drops the environment) and is put back after its test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import unixsocket
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, runtime_dir, unique, world_dir

pytestmark = [pytest.mark.hub, pytest.mark.system]



@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory) -> HubProcess:
    h = hub_factory(extra_toml='\n[spawner.environment]\nTEAMHUB_DOCTOR_PROBE = "it-arrives"\n')
    h.user = unique("doc")
    h.add_user(h.user, PASSWORD)
    h.start()
    b = Browser(h.url)
    assert b.login(h.user, PASSWORD).status_code == 302
    b.start_server(h.user)
    return h


def doctor(hub: HubProcess, *checks: str, config: Path | None = None) -> tuple[int, dict]:
    args = [a for c in checks for a in ("--check", c)]
    cmd = ["doctor", "--json", *args]
    if config is not None:
        proc = hub.teamhub("--config", str(config), *cmd, check=False)
    else:
        proc = hub.teamhub(*cmd, check=False)
    data = json.loads(proc.stdout)
    return proc.returncode, {c["name"]: c for c in data["checks"]}


def test_healthy_hub_passes_every_check(hub: HubProcess) -> None:
    code, checks = doctor(hub)
    assert code == 0, json.dumps(checks, indent=1)
    assert "1 running server(s)" in checks["proxy routes"]["detail"]
    assert "python3" in checks["kernels launchable"]["detail"]
    assert "TEAMHUB_DOCTOR_PROBE" in checks["environment reaches kernels"]["detail"]
    human = hub.teamhub("doctor")
    assert "0 failed" in human.stdout


def test_root_helper_answers_and_the_hubs_account_is_named(hub: HubProcess) -> None:
    code, checks = doctor(hub, "root helper")
    result = checks["root helper"]
    assert code == 0 and result["ok"], result
    assert f"answers at {hub.state / 'forkserver.sock'}" in result["detail"]
    # hub.unprivileged is on by default: the hub runs as its account, with no capability.
    account = pwd.getpwnam("teamhub")
    assert (f"the hub runs as teamhub (uid {account.pw_uid}, CapEff 0000000000000000)"
            in result["detail"])


def test_a_root_helper_that_does_not_answer_fails(hub: HubProcess) -> None:
    sock = hub.state / "forkserver.sock"
    aside = hub.state / "forkserver.sock.aside"
    sock.rename(aside)  # as if the helper had ended: nothing listens at its path
    try:
        code, checks = doctor(hub, "root helper")
    finally:
        aside.rename(sock)
    result = checks["root helper"]
    assert code == 1 and not result["ok"]
    assert f"no root helper answers at {sock}" in result["detail"]
    assert doctor(hub, "root helper")[0] == 0


def test_state_dir_0755_fails_permissions(hub: HubProcess) -> None:
    hub.state.chmod(0o755)
    try:
        code, checks = doctor(hub, "secrets and state permissions")
    finally:
        hub.state.chmod(0o700)
    result = checks["secrets and state permissions"]
    assert code == 1 and not result["ok"]
    assert f"{hub.state} is mode 0755" in result["detail"]
    assert "chmod 0700" in result["fix"]
    assert doctor(hub, "secrets and state permissions")[0] == 0


def test_cookie_secret_0644_fails_permissions(hub: HubProcess) -> None:
    secret = hub.state / "jupyterhub_cookie_secret"
    secret.chmod(0o644)
    try:
        code, checks = doctor(hub, "secrets and state permissions")
    finally:
        secret.chmod(0o600)
    result = checks["secrets and state permissions"]
    assert code == 1 and f"{secret} is mode 0644" in result["detail"]
    assert "rotate the cookie secret" in result["fix"]


def _proxy(hub: HubProcess) -> tuple[str, dict[str, str]]:
    """The live proxy's API URL (its root-only unix socket) and token."""
    pid = int((hub.state / "proxy.pid").read_text())
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    token = next(e.split(b"=", 1)[1].decode() for e in environ
                 if e.startswith(b"CONFIGPROXY_AUTH_TOKEN="))
    assert (hub.state / "proxy_auth_token").read_text().strip() == token
    sock = str(hub.paths.proxy_api_socket).replace("/", "%2F")
    return f"http+unix://{sock}/api/routes", {"Authorization": f"token {token}"}


def test_missing_route_fails_routes_check(hub: HubProcess) -> None:
    url, headers = _proxy(hub)
    route = f"/user/{hub.user}"
    assert unixsocket.session().delete(url + route, headers=headers, timeout=10).status_code \
        == 204
    try:
        code, checks = doctor(hub, "proxy routes")
    finally:
        # Ask the hub to re-sync its routes (what it does by itself every 5 minutes).
        token = (hub.state / "cli_api_token").read_text().strip()
        api = (hub.state / "hub_api_url").read_text().strip()
        unixsocket.session().post(f"{api}/proxy", headers={"Authorization": f"token {token}"},
                                  timeout=30)
    result = checks["proxy routes"]
    assert code == 1 and f"without a route: /user/{hub.user}/" in result["detail"]
    assert "restart the hub" in result["fix"]
    assert doctor(hub, "proxy routes")[0] == 0


def _variant(hub: HubProcess, name: str, replace: dict[str, str], extra: str = "") -> Path:
    text = hub.config.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = hub.root / name
    path.write_text(text + extra)
    return path


def test_runtime_users_cannot_enter_fails_runtime_check(hub: HubProcess) -> None:
    closed = world_dir("teamhub-closed-")
    try:
        (closed / "runtime/bin").mkdir(parents=True)
        for prog in ("jupyterhub-singleuser", "python"):
            shutil.copy2(runtime_dir() / "bin" / prog, closed / "runtime/bin" / prog)
        closed.chmod(0o700)
        config = _variant(hub, "closed.toml",
                          {f'runtime_dir = "{runtime_dir()}"':
                           f'runtime_dir = "{closed}/runtime"'})
        code, checks = doctor(hub, "runtime usable by users", config=config)
    finally:
        shutil.rmtree(closed, ignore_errors=True)
    result = checks["runtime usable by users"]
    assert code == 1 and f"it lies inside {closed}" in result["detail"]
    assert "install.sh" in result["fix"]


def _cert(folder: Path, days_from_now: int) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=days_from_now))
            .sign(key, hashes.SHA256()))
    cpath, kpath = folder / f"cert{days_from_now}.pem", folder / f"key{days_from_now}.pem"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    os.chmod(kpath, 0o600)
    return cpath, kpath


@pytest.mark.parametrize("days, words", [(-3, "expired on"), (10, "expires on")])
def test_expired_or_expiring_cert_fails_tls_check(hub: HubProcess, days: int,
                                                  words: str) -> None:
    cert, key = _cert(hub.root, days)
    config = _variant(hub, "tls.toml", {}, f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    code, checks = doctor(hub, "tls certificate", config=config)
    result = checks["tls certificate"]
    assert code == 1 and words in result["detail"]
    assert "teamhub tls self-signed" in result["fix"]
    good_cert, good_key = _cert(hub.root, 90)
    config = _variant(hub, "tls.toml", {}, f'\n[tls]\ncert = "{good_cert}"\nkey = "{good_key}"\n')
    assert doctor(hub, "tls certificate", config=config)[0] == 0


def test_environment_dropped_by_config_d_fails_env_check(hub: HubProcess) -> None:
    config_d = hub.config.parent / "jupyterhub_config.d"
    config_d.mkdir(exist_ok=True)
    dropper = config_d / "50-env.py"
    dropper.write_text("c.Spawner.environment = {'OTHER': '1'}\n")
    try:
        code, checks = doctor(hub, "environment reaches kernels")
    finally:
        dropper.unlink()
    result = checks["environment reaches kernels"]
    assert code == 1
    assert "TEAMHUB_DOCTOR_PROBE=None, configured 'it-arrives'" in result["detail"]
    assert "jupyterhub_config.d" in result["fix"]


def test_stopped_hub_fails_reachability_and_bad_check_name_is_refused(
        hub: HubProcess) -> None:
    proc = hub.teamhub("doctor", "--check", "no such check", check=False)
    assert proc.returncode == 2 and "unknown check 'no such check'" in proc.stderr
    # A config pointing at ports nobody listens on: as if the hub were down.
    config = _variant(hub, "down.toml", {f"port = {hub.port}\n": "port = 1\n"})
    code, checks = doctor(hub, "proxy reachable", config=config)
    assert code == 1 and "nothing answers at http://127.0.0.1:1" in checks["proxy reachable"][
        "detail"]


def test_browser_isolation_warns_without_a_domain(hub: HubProcess) -> None:
    code, checks = doctor(hub, "browser isolation")
    result = checks["browser isolation"]
    assert code == 0 and result["ok"] and result["warning"]
    assert "share one browser origin" in result["detail"] and "plain http" in result["detail"]
    human = hub.teamhub("doctor", "--check", "browser isolation")
    assert "warn browser isolation:" in human.stdout
    assert "hub.domain" in human.stdout and "1 passed, 0 failed" in human.stdout
