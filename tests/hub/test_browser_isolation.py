"""Issue 18.1: a page served by user A's server must not let A act as B in B's browser.

Real hub + proxy, real users, real headless Chromium. The attacker is an ordinary
member, A, in A's own Chromium: from a kernel in A's Lab, A starts a small web
server that waits for A's server's port and then ends A's server, so A's program
answers /user/A/ until the hub's next poll notices (what any member can do; the
issue's other vector, ~/.jupyter config, is tested to be ignored). B logs in
through the HTML form, uses Lab (a terminal open), then opens A's link and clicks
on it. The page tries:

(a) to create an API token for B at the hub (with every XSRF token it can get:
    fetched hub pages, framed or opened hub pages, hub cookies, A's own tossed
    token; with and without a faked referrer);
(b) to read B's hub pages and hub API, or to claim /hub/ with a service worker;
(c) to drive B's own server: read a file, start a kernel, type into B's terminal.

All must fail without a domain (one origin, http://localhost: a secure context)
and with `hub.domain` (per-user origins, Chromium's --host-resolver-rules). Over
plain http to a LAN name (not a secure context) they are measured to still work:
strict xfail, the gap README "Browser isolation" states. Positive controls run
the same functions from B's own pages, and B's Lab runs a cell and saves.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest
from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.hub import PASSWORD, HubProcess, unique, world_dir

pytestmark = [pytest.mark.hub, pytest.mark.system]

DOMAIN = "hub.test"
# A LAN name for the hub (mapped to loopback in Chromium): plain http to it is not a
# secure context, unlike http://localhost.
LAN_NAME = "hub.lan"

ATTACK_JS = r"""
const HUB = %(hub)s, BSRV = %(bsrv)s, VICTIM = %(victim)s, A_XSRF = %(a_xsrf)s;
const SECRET = "secret.txt";
window.results = {tokens: {}, created: [], hub_read: [], server: [], log: []};
const R = window.results;
function log(k, v) { R.log.push(k + ": " + v); }
function xsrfFromHtml(html) {
  const m = html.match(/xsrf_token:\s*"([^"]+)"/) || html.match(/name="_xsrf"\s+value="([^"]+)"/);
  return m ? m[1] : null;
}
function cookieXsrf(cookie) {
  const m = (cookie || "").match(/(?:^|;\s*)_xsrf=([^;]+)/); return m ? m[1] : null;
}
function configToken(html) {
  const m = html.match(/"token":\s*"([^"]+)"/); return m ? m[1] : null;
}
function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }
async function tryit(name, fn) {
  try { await Promise.race([fn(), sleep(8000).then(() => { throw new Error("timeout"); })]); }
  catch (e) { log(name, "error " + e); }
}
function wsUrl(url) { return url.replace(/^http/, "ws"); }

// (a) create a token for B with a candidate XSRF token
async function makeToken(xsrf, spoofReferrer) {
  // A script may name any page of its own origin as the referrer.
  const referrer = spoofReferrer ? HUB + "/hub/token" : "about:client";
  const r = await fetch(HUB + "/hub/api/users/" + VICTIM + "/tokens", {
    method: "POST", credentials: "include", referrer,
    headers: xsrf ? {"X-XSRFToken": xsrf, "Content-Type": "application/json"}
                  : {"Content-Type": "application/json"},
    body: JSON.stringify({note: "evil"})});
  return r.status;
}
// (c) with a token or B's server XSRF cookie: read the secret, start a kernel
async function driveServer(how, auth) {
  const headers = auth.token ? {"Authorization": "token " + auth.token}
                : auth.xsrf ? {"X-XSRFToken": auth.xsrf} : {};
  let r = await fetch(BSRV + "/api/contents/" + SECRET + "?content=1",
                      {credentials: "include", headers});
  const body = await r.text();
  R.server.push([how + " read", r.status, body.includes("s3cret") ? "SECRET" : ""]);
  r = await fetch(BSRV + "/api/kernels", {method: "POST", credentials: "include",
                  headers: {...headers, "Content-Type": "application/json"}, body: "{}"});
  R.server.push([how + " kernel", r.status, r.status === 201 ? "KERNEL" : ""]);
}
function sawHubPage(how, html) {
  R.hub_read.push([how, html.includes(VICTIM) ? "VICTIM" : html.slice(0, 60)]);
}
async function frameDoc(url) {
  const f = document.createElement("iframe");
  f.src = url; document.body.appendChild(f);
  await new Promise(r => { f.onload = r; setTimeout(r, 4000); });
  await sleep(300);
  return f.contentDocument;  // null when cross-origin or blocked
}
async function popupDoc(url) {
  const w = window.open(url, "_blank");
  if (!w) { return null; }
  for (let i = 0; i < 40; i++) {
    await sleep(100);
    try {
      if (w.closed) { return null; }
      const d = w.document;
      if (d && d.readyState === "complete" && d.location.href !== "about:blank") {
        return d;
      }
    } catch (e) { return null; }
  }
  return null;
}

async function viaDocument(how, doc) {
  if (!doc) { log(how, "no document"); return; }
  const html = doc.documentElement ? doc.documentElement.outerHTML : "";
  const x = xsrfFromHtml(html);
  if (x) { R.tokens[how + " page"] = x; }
  const c = cookieXsrf(doc.cookie);
  if (c) { R.tokens[how + " cookie"] = c; }
  if (html.includes("jupyter-config-data") || doc.location.pathname.includes("/user/")) {
    const t = configToken(html);
    if (t) { await driveServer(how + " config token", {token: t}); }
    if (c) { await driveServer(how + " server cookie", {xsrf: c}); }
  } else {
    sawHubPage(how, html);
  }
}

async function scripted() {
  await tryit("fetch hub token page", async () => {
    const r = await fetch(HUB + "/hub/token", {credentials: "include"});
    const html = await r.text();
    log("fetch /hub/token", r.status);
    const x = xsrfFromHtml(html); if (x) { R.tokens["fetch /hub/token"] = x; }
    if (r.ok) { sawHubPage("fetch /hub/token", html); }
  });
  await tryit("fetch hub home", async () => {
    const r = await fetch(HUB + "/hub/home", {credentials: "include",
                                              referrer: HUB + "/hub/home"});
    log("fetch /hub/home", r.status);
    if (r.ok) { sawHubPage("fetch /hub/home", await r.text()); }
  });
  await tryit("fetch hub api", async () => {
    const r = await fetch(HUB + "/hub/api/user", {credentials: "include"});
    log("fetch /hub/api/user", r.status);
    if (r.ok) { sawHubPage("fetch /hub/api/user", await r.text()); }
  });
  await tryit("frame hub token", async () => viaDocument("frame /hub/token",
                                                       await frameDoc(HUB + "/hub/token")));
  await tryit("frame hub static", async () =>
    viaDocument("frame /hub/static", await frameDoc(HUB + "/hub/static/js/utils.js")));
  await tryit("fetch server file", async () => driveServer("plain fetch", {}));
  await tryit("fetch lab page", async () => {
    const r = await fetch(BSRV + "/lab", {credentials: "include"});
    const html = await r.text();
    log("fetch lab", r.status + " " + r.url);
    const t = configToken(html);
    if (t) { await driveServer("fetched lab config token", {token: t}); }
  });
  await tryit("frame lab", async () => viaDocument("frame lab", await frameDoc(BSRV + "/lab")));
  await tryit("frame server static", async () => viaDocument(
    "frame server static", await frameDoc(BSRV + "/static/favicon.ico")));
  await tryit("terminal websocket", async () => {
    const ws = new WebSocket(wsUrl(BSRV) + "/terminals/websocket/1");
    await new Promise((resolve) => {
      ws.onopen = () => {
        R.server.push(["terminal websocket", "open", "TERMINAL"]);
        ws.send(JSON.stringify(["stdin", "echo pwned > ~/pwned-by-terminal\r"]));
        setTimeout(resolve, 1500);
      };
      ws.onerror = ws.onclose = () => { log("terminal websocket", "refused"); resolve(); };
    });
  });
  await tryit("service worker", async () => {
    // A worker from A's path may only control A's path unless A's server sends
    // Service-Worker-Allowed (which the proxy drops on users' routes).
    if (!navigator.serviceWorker) {
      log("service worker", "unavailable (not a secure context)"); return;
    }
    const script = location.pathname.replace(/[^/]*$/, "sw.js");
    try {
      await navigator.serviceWorker.register(script, {scope: HUB + "/hub/"});
      R.hub_read.push(["service worker for /hub/", "VICTIM"]);
    } catch (e) { log("service worker for /hub/", "refused: " + e.name); }
    try {
      const reg = await navigator.serviceWorker.register(script);
      log("service worker for A's own path", "registered " + reg.scope);
      await reg.unregister();
    } catch (e) { log("service worker for A's own path", "error " + e); }
  });
  await tryit("events websocket", async () => {
    const ws = new WebSocket(wsUrl(BSRV) + "/api/events/subscribe");
    await new Promise((resolve) => {
      ws.onopen = () => { log("events websocket", "open"); ws.close(); resolve(); };
      ws.onerror = ws.onclose = () => { log("events websocket", "refused"); resolve(); };
    });
  });
}

async function popups(which) {
  const targets = {
    "hub-token": HUB + "/hub/token", "hub-static": HUB + "/hub/static/js/utils.js",
    "lab": BSRV + "/lab", "server-static": BSRV + "/static/favicon.ico"};
  await tryit("popup " + which, async () => viaDocument("popup " + which,
                                                      await popupDoc(targets[which])));
}

async function useTokens() {
  window.tokensDone = false;
  R.tokens["none"] = "";
  for (const [how, x] of Object.entries(R.tokens)) {
    for (const spoof of [false, true]) {
      await tryit("token with " + how, async () => {
        let status;
        try { status = await makeToken(x, spoof); } catch (e) { status = "error " + e; }
        R.created.push([how + (spoof ? " (referrer /hub/token)" : ""), status]);
      });
    }
  }
  // Last, as it overwrites B's own hub _xsrf cookie: A's own valid hub XSRF token,
  // tossed into B's browser as a cookie on /hub/.
  if (A_XSRF) {
    document.cookie = "_xsrf=" + A_XSRF + "; path=/hub/";
    R.tokens["tossed A cookie"] = A_XSRF;
    await tryit("tossed", async () => {
      let status;
      try { status = await makeToken(A_XSRF, true); } catch (e) { status = "error " + e; }
      R.created.push(["tossed A cookie", status]);
    });
    document.cookie = "_xsrf=; path=/hub/; max-age=0";
  }
  window.tokensDone = true;
}
"""

PAGE = """<!doctype html><html><head><title>results</title></head><body>
<p>Quarterly numbers, click each button.</p>
<button id="hub-token">1</button><button id="hub-static">2</button>
<button id="lab">3</button><button id="server-static">4</button>
<script>%(js)s
for (const id of ["hub-token", "hub-static", "lab", "server-static"]) {
  document.getElementById(id).onclick = () => {
    window.popupDone = false; popups(id).then(() => { window.popupDone = true; });
  };
}
window.scriptedDone = false;
scripted().then(() => { window.scriptedDone = true; });
</script></body></html>"""


class Site:
    """Where things are, as a browser sees them, for one hub mode."""

    def __init__(self, hub: HubProcess, mode: str) -> None:
        self.mode = mode
        self.domain = DOMAIN if mode == "hub.domain" else ""
        host = {"hub.domain": DOMAIN, "lan-http": LAN_NAME, "lan-https": LAN_NAME}.get(
            mode, "localhost")
        self.scheme = "https" if mode == "lan-https" else "http"
        self.hub = f"{self.scheme}://{host}:{hub.port}"

    def server(self, name: str) -> str:
        if self.domain:
            return f"{self.scheme}://{name}.{DOMAIN}:{self.port_of(self.hub)}/user/{name}"
        return f"{self.hub}/user/{name}"

    @staticmethod
    def port_of(url: str) -> str:
        return url.rsplit(":", 1)[1]


HELPER = r"""
import http.server, os, sys, time
port, page, server = int(sys.argv[1]), open(sys.argv[2], "rb").read(), int(sys.argv[3])
time.sleep(3)  # until A has left A's Lab page (it would reconnect to the dying server)
os.kill(server, 9)
worker = b"self.addEventListener('fetch', () => {});"
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        js = self.path.endswith(".js")
        body = worker if js else page
        self.send_response(200)
        self.send_header("Content-Type", "text/javascript" if js else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
for _ in range(3000):
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
        break
    except OSError:
        time.sleep(0.01)
open(sys.argv[4], "w").close()  # tells the test the port is ours now
server.serve_forever()
"""


def _take_over_own_port(h: HubProcess, attacker, page: str) -> None:
    """What A does, as A, from a kernel in A's own Lab: start a program that ends A's
    server and takes its port. The hub keeps routing /user/A/ to that port until it
    notices (its next poll of A's server, up to 10 s, or a failed proxy request)."""
    page_file = h.folder / "evil.html"
    page_file.write_text(page)
    page_file.chmod(0o644)
    ready = Path(pwd.getpwnam(h.system_user(h.attacker)).pw_dir) / f".took-port-{time.time_ns()}"
    code = (
        "import os, subprocess, sys, urllib.parse\n"
        "port = urllib.parse.urlparse(os.environ['JUPYTERHUB_SERVICE_URL']).port\n"
        f"subprocess.Popen([sys.executable, '-c', {HELPER!r}, str(port), {str(page_file)!r},"
        # The server's pid: a kernel's parent may be its env's warm parent (envs.warm_kernels).
        f" os.environ['JPY_PARENT_PID'], {str(ready)!r}], start_new_session=True,"
        " stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL)\n"
    )
    _open_lab(attacker, h.site, h.attacker)
    attacker.evaluate(RUN_IN_KERNEL_JS, [h.site.server(h.attacker), code])
    attacker.goto("about:blank")
    # Not while the port changes hands: a refused proxy request makes the hub drop the route.
    # So nothing goes through the proxy until A's program says it listens (a busy machine
    # can take seconds for that).
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _get_user_path(h, h.attacker, "/evil.html").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("A's page never came up on A's server's port")


# From a Lab page: start a kernel and send it CODE over its websocket, as Lab does.
RUN_IN_KERNEL_JS = """async ([server, code]) => {
  const token = JSON.parse(document.getElementById('jupyter-config-data').textContent).token;
  const r = await fetch(server + "/api/kernels", {method: "POST", body: "{}",
                        headers: {"Authorization": "token " + token}});
  const kernel = await r.json();
  const ws = new WebSocket(server.replace(/^http/, "ws") + "/api/kernels/" + kernel.id
                           + "/channels?token=" + token);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const send = (id, source) => ws.send(JSON.stringify({header: {msg_id: id, username: "",
    session: "s1", msg_type: "execute_request", version: "5.3"}, parent_header: {},
    metadata: {}, channel: "shell", content: {code: source, silent: false,
    store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true}}));
  // A fresh kernel may miss what arrives while it starts: wait for one reply first.
  const replied = new Promise(resolve => { ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.msg_type === "execute_reply" && msg.parent_header.msg_id.startsWith("ready")) {
      resolve();
    }
  }; });
  for (let i = 0; i < 60; i++) {
    send("ready" + i, "1");
    if (await Promise.race([replied.then(() => true),
                            new Promise(r => setTimeout(() => r(false), 500))])) { break; }
  }
  send("attack", code);
  await new Promise(resolve => setTimeout(resolve, 300));
}"""


def _get_user_path(h: HubProcess, name: str, path: str):
    """GET /user/NAME/PATH through the proxy, as an anonymous client, in either mode."""
    import requests

    host = f"{name}.{DOMAIN}:{h.port}" if h.site.domain else f"localhost:{h.port}"
    return requests.get(f"{h.site.scheme}://127.0.0.1:{h.port}/user/{name}{path}",
                        headers={"Host": host}, timeout=30, allow_redirects=False,
                        verify=False)  # our own self-signed hub, on loopback


def _plant_user_config(hub: HubProcess, name: str, folder: Path) -> Path:
    """The issue's vector: ~/.jupyter config that serves a folder of A's as static files."""
    account = pwd.getpwnam(hub.system_user(name))
    (folder / "static").mkdir(exist_ok=True)
    (folder / "static" / "evil.html").write_text("<script>document.title='evil'</script>")
    for path in (folder, folder / "static"):
        path.chmod(0o755)
    (folder / "static" / "evil.html").chmod(0o644)
    config = Path(account.pw_dir) / ".jupyter" / "jupyter_server_config.py"
    config.parent.mkdir(exist_ok=True)
    config.write_text(f"c.ServerApp.extra_static_paths = [{str(folder / 'static')!r}]\n"
                      "c.ServerApp.tornado_settings = {'headers': {'X-Evil': '1'}}\n")
    for path in (config.parent, config):
        os.chown(path, account.pw_uid, account.pw_gid)
    return config


def _write_secret(hub: HubProcess, name: str) -> str:
    account = pwd.getpwnam(hub.system_user(name))
    secret = "s3cret-" + secrets.token_hex(8)
    path = Path(account.pw_dir) / "secret.txt"
    path.write_text(secret)
    os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(0o600)
    return secret


class TlsHub(HubProcess):
    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


@pytest.fixture(scope="module", params=["one-origin", "hub.domain", "lan-http", "lan-https"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    if request.param == "lan-https":
        h = TlsHub(tmp_path_factory.mktemp("hub"), extra_toml="\n[tls]\nhttp_port = 0\n")
        h.teamhub("tls", "self-signed", "--hostname", "localhost", "--hostname", LAN_NAME)
        # HubProcess.start polls the login page with requests: trust our certificate.
        os.environ["REQUESTS_CA_BUNDLE"] = str(h.state / "tls" / "cert.pem")
    else:
        h = HubProcess(tmp_path_factory.mktemp("hub"))
    h.site = Site(h, request.param)
    if h.site.domain:
        h.config.write_text(h.config.read_text().replace(
            "[hub]\n", f'[hub]\ndomain = "{h.site.domain}"\n', 1))
    # A's takeover of its own port (_take_over_own_port) lasts until the hub's next poll
    # of A's server (spawner.poll_interval, 10 s): the attack's window is real, but where it
    # ends is chance, and the poll sometimes came before the page was first fetched. The
    # hub polls once an hour here, so the window lasts the module.
    config_d = h.config.parent / "jupyterhub_config.d"
    config_d.mkdir(exist_ok=True)
    (config_d / "50-poll-rarely.py").write_text("c.Spawner.poll_interval = 3600\n")
    folder = world_dir("teamhub-evil-")
    h.attacker, h.victim = unique("a"), unique("b")
    h.folder = folder
    try:
        h.add_user(h.attacker, PASSWORD)
        h.add_user(h.victim, PASSWORD)
        h.start()
        yield h
    finally:
        h.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
        if saved is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved


@pytest.fixture(scope="module")
def chromium(setup: HubProcess):
    sync_api = pytest.importorskip("playwright.sync_api")
    args = list(CHROMIUM_ARGS)
    if setup.site.domain:
        args.append(f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1, MAP {DOMAIN} 127.0.0.1")
    if setup.site.mode in ("lan-http", "lan-https"):
        args.append(f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def attacker(setup: HubProcess, chromium):
    """A in A's own Chromium: logged in, server running, a hub page open."""
    h = setup
    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    _login(page, h.site, h.attacker)
    _spawn(page, h.site, h.attacker)
    page.goto(f"{h.site.hub}/hub/home")
    # A's own valid hub XSRF token: what A could toss into B's browser as a cookie.
    h.a_xsrf = page.evaluate("window.jhdata.xsrf_token")
    try:
        yield page
    finally:
        context.close()


def _spawn(page, site: Site, name: str) -> None:
    page.goto(f"{site.hub}/hub/spawn")
    page.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=90000)


def _restart(h: HubProcess, page, name: str) -> None:
    """Stop and start NAME's server from NAME's own hub page, as its buttons do."""
    page.goto(f"{h.site.hub}/hub/home")
    stop = page.evaluate(f"""async () => (await fetch("{h.site.hub}/hub/api/users/{name}/server",
        {{method: "DELETE", headers: {{"X-XSRFToken": window.jhdata.xsrf_token}}}})).status""")
    assert stop in (202, 204), stop
    for _ in range(150):
        servers = page.evaluate(f"""async () => (await (await fetch(
            "{h.site.hub}/hub/api/users/{name}",
            {{headers: {{"X-XSRFToken": window.jhdata.xsrf_token}}}})).json()).servers""")
        if not servers:
            break
        time.sleep(0.2)
    _spawn(page, h.site, name)


def _login(page, site: Site, name: str) -> None:
    page.goto(f"{site.hub}/hub/login?next=/hub/home")
    page.fill("#username_input", name)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home"))


def _open_lab(page, site: Site, name: str) -> None:
    page.goto(f"{site.server(name)}/lab")
    page.wait_for_selector("#jupyter-config-data", state="attached", timeout=60000)
    page.wait_for_function("document.title.length > 0")


CONFIG_TOKEN = "JSON.parse(document.getElementById('jupyter-config-data').textContent).token"


def _evaluate_in_lab(page, script: str, script_tag: str | None = None):
    """SCRIPT in an open Lab page (after adding SCRIPT_TAG to it); once more if the page
    was still navigating (a loaded machine: "Execution context was destroyed")."""
    for attempt in range(3):
        try:
            if script_tag is not None:
                page.add_script_tag(content=script_tag)
            return page.evaluate(script)
        except Exception as exc:  # noqa: BLE001 - Playwright's Error, re-raised unless that
            if "Execution context was destroyed" not in str(exc) or attempt == 2:
                raise
            page.wait_for_load_state()
            page.wait_for_selector("#jupyter-config-data", state="attached", timeout=60000)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def victim(setup: HubProcess, chromium):
    """B in Chromium: logged in through the form, Lab open, a terminal running."""
    h = setup
    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    _login(page, h.site, h.victim)
    _spawn(page, h.site, h.victim)
    _open_lab(page, h.site, h.victim)
    h.secret = _write_secret(h, h.victim)
    # B's own Lab opens a terminal (as JupyterLab does: the page config's token).
    status = page.evaluate(f"""async () => (await fetch("{h.site.server(h.victim)}/api/terminals",
        {{method: "POST", headers: {{"Authorization": "token " + {CONFIG_TOKEN}}}}})).status""")
    assert status == 200
    try:
        yield context
    finally:
        context.close()


def _close(page) -> None:
    """Leave a page first: a JupyterLab page being closed can keep Chromium busy."""
    page.goto("about:blank")
    page.close()


def _attack_page(h: HubProcess) -> str:
    js = ATTACK_JS % {"hub": json.dumps(h.site.hub), "bsrv": json.dumps(h.site.server(h.victim)),
                      "victim": json.dumps(h.victim), "a_xsrf": json.dumps(h.a_xsrf)}
    return PAGE % {"js": js}


@pytest.fixture(scope="module")
def attack(setup: HubProcess, attacker, victim) -> dict:
    """B opens A's page and clicks everything on it; what the page achieved."""
    h = setup
    page = victim.new_page()
    _take_over_own_port(h, attacker, _attack_page(h))
    resp = page.goto(f"{h.site.server(h.attacker)}/static/evil.html")
    assert resp is not None and resp.status == 200, (resp and resp.status, page.content()[:300])
    try:
        page.wait_for_function("window.scriptedDone === true", timeout=120000)
    finally:
        print(json.dumps(page.evaluate("window.results"), indent=1))
    for button in ("hub-token", "hub-static", "lab", "server-static"):
        page.click(f"#{button}")
        page.wait_for_function("window.popupDone === true", timeout=30000)
    page.evaluate("useTokens()")
    page.wait_for_function("window.tokensDone === true", timeout=90000)
    results = page.evaluate("window.results")
    _close(page)
    return results


def test_user_config_cannot_serve_pages_or_change_headers(setup: HubProcess, attacker) -> None:
    """A's ~/.jupyter server config (the issue's vector) is ignored by A's server."""
    h = setup
    config = _plant_user_config(h, h.attacker, h.folder)
    try:
        _restart(h, attacker, h.attacker)
        resp = _get_user_path(h, h.attacker, "/static/evil.html")
        assert resp.status_code == 404, (resp.status_code, resp.text[:200])
        assert "X-Evil" not in resp.headers
    finally:
        config.unlink()
        _restart(h, attacker, h.attacker)


def test_attacker_page_is_served_from_a_server(setup: HubProcess, attack: dict) -> None:
    """The attack really ran in the browser: it recorded its attempts."""
    assert attack["created"], attack
    assert any("none" == how for how, _ in attack["created"])


LAN_HTTP_GAP = (
    "plain http to a LAN name is not a secure context: Chromium sends no Fetch Metadata "
    "and ignores COOP there, so with one origin a page of A's can read B's pages "
    "(and the tokens in them); only hub.domain (or TLS) protects. Measured, README "
    "'Browser isolation'.")


def _known_gap(request: pytest.FixtureRequest, h: HubProcess) -> None:
    if h.site.mode == "lan-http":
        request.applymarker(pytest.mark.xfail(strict=True, reason=LAN_HTTP_GAP))


def test_a_cannot_create_a_token_for_b(setup: HubProcess, attack: dict,
                                      request: pytest.FixtureRequest) -> None:
    _known_gap(request, setup)
    created = [(how, status) for how, status in attack["created"] if status in (200, 201)]
    assert not created, f"tokens created for B: {created}; {attack['log']}"


def test_a_cannot_read_b_hub_pages(setup: HubProcess, attack: dict,
                                   request: pytest.FixtureRequest) -> None:
    _known_gap(request, setup)
    read = [entry for entry in attack["hub_read"] if entry[1] == "VICTIM"]
    assert not read, f"B's hub pages read: {read}; {attack['log']}"


def test_a_cannot_drive_b_server(setup: HubProcess, attack: dict,
                                 request: pytest.FixtureRequest) -> None:
    h = setup
    _known_gap(request, h)
    hits = [entry for entry in attack["server"] if entry[2]]
    assert not hits, f"B's server driven: {hits}; {attack['log']}"
    home = Path(pwd.getpwnam(h.system_user(h.victim)).pw_dir)
    time.sleep(1)
    assert not (home / "pwned-by-terminal").exists()


def test_positive_control_same_functions_work_from_b_own_pages(setup: HubProcess, victim,
                                                               attack: dict) -> None:
    """The attack's functions are not broken: from B's own hub page and Lab they work."""
    h = setup
    page = victim.new_page()
    page.goto(f"{h.site.hub}/hub/token")
    page.add_script_tag(content=ATTACK_JS % {
        "hub": json.dumps(h.site.hub), "bsrv": json.dumps(h.site.server(h.victim)),
        "victim": json.dumps(h.victim), "a_xsrf": "null"})
    assert page.evaluate("makeToken(window.jhdata.xsrf_token)") == 201
    _open_lab(page, h.site, h.victim)
    served = _evaluate_in_lab(
        page, f"""async () => {{ await driveServer('own lab', {{token: {CONFIG_TOKEN}}});
                                return window.results.server; }}""",
        script_tag=ATTACK_JS % {"hub": json.dumps(h.site.hub),
                                "bsrv": json.dumps(h.site.server(h.victim)),
                                "victim": json.dumps(h.victim), "a_xsrf": "null"})
    assert ["own lab read", 200, "SECRET"] in served, served
    assert ["own lab kernel", 201, "KERNEL"] in served, served
    _close(page)


def test_b_own_lab_runs_a_cell_and_saves(setup: HubProcess, victim) -> None:
    """B's own JupyterLab keeps working with all of the above: a notebook opens, a cell
    runs on its kernel (a websocket, with the page's token) and the file saves."""
    h = setup
    name = f"lab-{secrets.token_hex(3)}.ipynb"
    page = victim.new_page()
    _open_lab(page, h.site, h.victim)
    url = f"{h.site.server(h.victim)}/api/contents/{name}"
    status = _evaluate_in_lab(page, f"""async () => (await fetch("{url}",
        {{method: "PUT", headers: {{"Authorization": "token " + {CONFIG_TOKEN}}},
          body: JSON.stringify({{type: "notebook", format: "json", content: {{
            cells: [], metadata: {{kernelspec: {{name: "python3", display_name: "Python 3"}}}},
            nbformat: 4, nbformat_minor: 5}}}})}})).status""")
    assert status in (200, 201)  # 200: a first try went through before the page moved on
    page.goto(f"{h.site.server(h.victim)}/lab/tree/{name}")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90000)
    # Lab may still ask which kernel to start (it sometimes does before the session exists).
    select = page.locator(".jp-Dialog button.jp-mod-accept")
    try:
        select.click(timeout=3000)
    except Exception:  # noqa: BLE001 - no dialog this time
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90000)
    page.click(".jp-Notebook .jp-Cell .cm-content")
    page.keyboard.type("print(6 * 7)")
    page.keyboard.press("Shift+Enter")
    try:
        page.wait_for_selector(".jp-OutputArea-output:has-text('42')", timeout=60000)
    except Exception:
        page.screenshot(path="/tmp/browser-dbg/lab.png")
        raise
    page.keyboard.press("Control+s")
    path = Path(pwd.getpwnam(h.system_user(h.victim)).pw_dir) / name
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "42" not in path.read_text():
        time.sleep(0.2)
    assert "42" in path.read_text()
    _close(page)
