// teamhub's front door: configurable-http-proxy's own library (ConfigurableProxy), started
// by teamhub (src/teamhub/proxy/chp.py) instead of CHP's command-line program, for three
// things that program cannot do:
//
// - A request whose path is not valid percent-encoding (`/hub/reset/%FF%FE`) is answered
//   400; CHP's routing decodes the path and answers 500 when that throws.
// - A `Service-Worker-Allowed` response header is dropped on every route but the hub's:
//   with it a user's server could register a service worker for scope "/", which would
//   then control the hub's own pages in a colleague's browser.
// - The hub (a unix-socket target) is reached over kept-alive connections. CHP sends such
//   requests without an agent, each saying "Connection: close"; the hub answers and closes
//   so quickly that Node's empty end-of-request write can meet a closed socket (EPIPE) and
//   CHP answers 503 although the hub's answer had come (measured: 59 of 400 refused POSTs).
// - Failing to listen ends the program (CHP logs the error and runs on without its public
//   port), so a port taken by someone else is a loud start-up failure, never a half proxy.
//
// Usage: node launch.mjs --chp <.../configurable-http-proxy/lib/configproxy.js>
//          --ip IP --port N --api-socket PATH [--error-target URL] [--log-level L]
//          [--host-routing] [--ssl-key F --ssl-cert F] [--redirect-port N --redirect-to N]
//          [--default-target URL]
// The API token comes from CONFIGPROXY_AUTH_TOKEN, as for CHP itself.

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    chp: { type: "string" },
    ip: { type: "string", default: "::" },
    port: { type: "string", default: "8000" },
    "api-socket": { type: "string" },
    "error-target": { type: "string" },
    "default-target": { type: "string" },
    "log-level": { type: "string", default: "info" },
    "host-routing": { type: "boolean", default: false },
    "ssl-key": { type: "string" },
    "ssl-cert": { type: "string" },
    "redirect-port": { type: "string" },
    "redirect-to": { type: "string" },
  },
});

function die(message) {
  process.stderr.write(`teamhub proxy: ${message}\n`);
  process.exit(1);
}

if (!args.chp || !args["api-socket"]) die("--chp and --api-socket are required");
const chpLib = path.dirname(args.chp);
const { ConfigurableProxy } = await import(pathToFileURL(args.chp).href);
const { defaultLogger } = await import(pathToFileURL(path.join(chpLib, "log.js")).href);
const log = defaultLogger({ level: args["log-level"].toLowerCase() });

// The route prefix a request matched is remembered on the request, so that a response
// can be told to come from the hub (JupyterHub routes the hub at "/", the default
// route; users' servers and services have routes of their own).
const ROUTE = Symbol("teamhub route prefix");

// The path exactly as CHP's routing computes it; throws where CHP would answer 500.
function routingPath(req) {
  return decodeURIComponent(new URL(req.url, "http://example.com").pathname);
}

// Idle connections are dropped well before the hub's own idle timeout (tornado: an hour),
// so the proxy never sends a request on a connection the hub is closing.
const hubAgent = new http.Agent({ keepAlive: true, timeout: 30000 });

class TeamhubProxy extends ConfigurableProxy {
  proxyOptsForTarget(target) {
    const options = super.proxyOptsForTarget(target);
    if (options.target.socketPath) options.agent = hubAgent;
    return options;
  }

  async targetForReq(req) {
    const match = await super.targetForReq(req);
    req[ROUTE] = match ? match.prefix : undefined;
    return match;
  }

  handleProxyWeb(req, res) {
    try {
      routingPath(req);
    } catch {
      res.writeHead(400, { "Content-Type": "text/plain; charset=utf-8" });
      res.end("400: the request path is not valid percent-encoding\n");
      this.log.warn("400 %s (undecodable path)", req.method);
      return;
    }
    return super.handleProxyWeb(req, res);
  }

  handleProxyWs(req, socket, head) {
    try {
      routingPath(req);
    } catch {
      socket.end(`HTTP/${req.httpVersion} 400 Bad Request\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    return super.handleProxyWs(req, socket, head);
  }
}

const options = {
  log,
  authToken: process.env.CONFIGPROXY_AUTH_TOKEN,
  errorTarget: args["error-target"],
  defaultTarget: args["default-target"],
  hostRouting: args["host-routing"],
  // CHP's command-line defaults: X-Forwarded-* added, target paths and prefixes kept.
  xfwd: true,
  prependPath: true,
  includePrefix: true,
};
if (args["ssl-key"] || args["ssl-cert"]) {
  options.ssl = {
    key: fs.readFileSync(args["ssl-key"]),
    cert: fs.readFileSync(args["ssl-cert"]),
    honorCipherOrder: true,
  };
}
if (!options.authToken) die("CONFIGPROXY_AUTH_TOKEN is not set: the route API would be open");

const proxy = new TeamhubProxy(options);
proxy.proxy.on("proxyRes", (proxyRes, req) => {
  if (req[ROUTE] !== "/") delete proxyRes.headers["service-worker-allowed"];
});

function listen(server, what, target) {
  return new Promise((resolve) => {
    server.on("error", (e) => die(`cannot listen on ${what}: ${e.message}`));
    server.listen(target, resolve);
  });
}

// "::" is both families (dual-stack): IPV6_V6ONLY is left off, so IPv4 clients arrive as
// ::ffff:a.b.c.d and nobody else can listen on this port in either family.
await listen(proxy.proxyServer, `${args.ip} port ${args.port}`,
  { host: args.ip, port: parseInt(args.port, 10), ipv6Only: false });

if (args["redirect-port"]) {
  const to = parseInt(args["redirect-to"] || args.port, 10);
  const redirect = http.createServer((req, res) => {
    const host = (req.headers.host || "").replace(/:\d+$/, "");
    if (!host) {
      res.writeHead(400);
      res.end(`HTTPS only, on port ${to}\n`);
      return;
    }
    res.writeHead(301, { Location: `https://${host}${to === 443 ? "" : `:${to}`}${req.url}` });
    res.end();
  });
  await listen(redirect, `redirect port ${args["redirect-port"]}`,
    { host: args.ip, port: parseInt(args["redirect-port"], 10), ipv6Only: false });
}

// The API listens last: once it answers, every public listener is up (teamhub waits for
// exactly that). Owner-only from birth (teamhub starts us with umask 077), then by mode.
await listen(proxy.apiServer, args["api-socket"], { path: args["api-socket"] });
fs.chmodSync(args["api-socket"], 0o600);

log.info("teamhub proxy on %s port %s, API at %s", args.ip, args.port, args["api-socket"]);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    log.warn("%s: stopping", signal);
    process.exit(2);
  });
}
// Once listening, one bad request must not end the proxy for everyone (as in CHP).
process.on("uncaughtException", (e) => log.error("Uncaught exception: %s", e.stack || e));
