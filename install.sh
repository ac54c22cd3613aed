#!/usr/bin/env bash
# Install teamhub on this machine (Debian 12 / Ubuntu 22.04+, as root) and start it.
#
#   ./install.sh                  install into /opt/teamhub and start on port 8000
#   ./install.sh --admin NAME     first admin account (default: admin)
#   ./install.sh --no-start       install only
#   ./install.sh --prefix DIR     install somewhere else (tests use this)
#   ./install.sh --extras test    also install the test tools into the runtime
#   ./install.sh --log FILE --pid-file FILE   where the started hub logs / records its pid
#   ./install.sh --no-systemd     start detached even where systemd runs
#
# Where systemd is init, the hub runs as the service teamhub.service (`teamhub install`);
# elsewhere it starts detached, logging to /var/log/teamhub/teamhub.log.
#
# Settings come from /etc/teamhub/teamhub.toml, or the file named by TEAMHUB_CONFIG.
#
# The runtime users' servers run from is built from the system's Python
# (/usr/bin/python3), root-owned and world-readable, with bytecode compiled.
set -euo pipefail

PREFIX=/opt/teamhub
START=1
EXTRAS=""
ADMIN=admin
PORT=""
LOG=/var/log/teamhub/teamhub.log
PIDFILE=/run/teamhub.pid
SYSTEMD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --no-start) START=0; shift ;;
    --extras) EXTRAS=$2; shift 2 ;;
    --admin) ADMIN=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --log) LOG=$2; shift 2 ;;
    --pid-file) PIDFILE=$2; shift 2 ;;
    --no-systemd) SYSTEMD=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo ./install.sh): teamhub creates a Linux account per user"
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
umask 022
export DEBIAN_FRONTEND=noninteractive
# Package registries may sit behind a TLS-intercepting proxy whose CA is in the system store.
export SSL_CERT_FILE=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
export NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}

need=()
[ -x "$PY" ] || need+=(python3)
"$PY" -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v ss >/dev/null || need+=(iproute2)
command -v setfacl >/dev/null || need+=(acl)
if [ ${#need[@]} -gt 0 ]; then
  say "Installing system packages: ${need[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# The whole point: every user must be able to run this interpreter.
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups "$PY" -c 'import sys' 2>/dev/null; then
  die "$PY cannot be run by ordinary users; teamhub's runtime must come from a world-readable Python"
fi

RUNTIME=$PREFIX/runtime
say "Building the runtime in $RUNTIME (from $PY)"
mkdir -p "$PREFIX"
chmod 755 "$PREFIX"
[ -x "$RUNTIME/bin/python" ] || "$PY" -m venv "$RUNTIME"
[ -x "$RUNTIME/bin/uv" ] || "$RUNTIME/bin/python" -m pip install -q --disable-pip-version-check uv
spec="$SRC"
[ -n "$EXTRAS" ] && spec="$SRC[$EXTRAS]"
"$RUNTIME/bin/uv" pip install -q --python "$RUNTIME/bin/python" --compile-bytecode \
  --reinstall-package teamhub "$spec"

PROXY=$PREFIX/proxy
if [ ! -x "$PROXY/node_modules/.bin/configurable-http-proxy" ]; then
  say "Installing configurable-http-proxy into $PROXY"
  mkdir -p "$PROXY"
  npm install --silent --no-audit --no-fund --prefix "$PROXY" configurable-http-proxy@5 >/dev/null
fi
chown -R root:root "$PREFIX"
chmod -R u+rwX,go+rX,go-w "$PREFIX"

if [ "$PREFIX" = /opt/teamhub ]; then
  ln -sf "$RUNTIME/bin/teamhub" /usr/local/bin/teamhub
  # Every account's shell finds teamhub-env (ssh logins too, not only Lab's terminal).
  ln -sf "$RUNTIME/bin/teamhub-env" /usr/local/bin/teamhub-env
fi
# Lab extensions the admin added (`teamhub lab install`) come back after an upgrade or rebuild.
TEAMHUB_PATHS_RUNTIME_DIR=$RUNTIME "$RUNTIME/bin/teamhub" lab sync \
  || say "WARNING: could not install the recorded Lab extensions again; see \`teamhub lab list\`"
say "Installed: $("$RUNTIME/bin/teamhub" --version)"

[ "$START" = 1 ] || exit 0

# The hub's own unprivileged system account (hub.unprivileged runs hub, proxy and culler as
# it), home = the state folder, no login shell. Not with --no-start (test runtimes are
# built so): `teamhub up` makes it too when it is missing.
"$RUNTIME/bin/python" -m teamhub.system.hub_account \
  "$("$RUNTIME/bin/teamhub" config get hub.account)" \
  "$("$RUNTIME/bin/teamhub" config get paths.state_dir)"

# A runtime outside the default place is the one this hub runs users' servers from.
[ "$PREFIX" = /opt/teamhub ] || export TEAMHUB_PATHS_RUNTIME_DIR=${TEAMHUB_PATHS_RUNTIME_DIR:-$RUNTIME}
# The links teamhub prints (reset links) name this machine; some minimal images cannot
# resolve their own name. Debian's own convention fixes that.
[ -e /etc/hosts ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > /etc/hosts
if ! getent hosts "$(hostname)" >/dev/null; then
  printf '127.0.1.1\t%s\n' "$(hostname)" >> /etc/hosts
  say "Added '127.0.1.1 $(hostname)' to /etc/hosts so this machine's own name resolves"
fi
if [ -d /run/systemd/system ] && [ "$SYSTEMD" = 1 ]; then
  # systemd is init: teamhub runs as teamhub.service (restarted on failure, started at boot).
  # Re-running this is an upgrade: DB backed up and migrated, users' servers kept.
  say "Installing teamhub.service"
  args=(install --admin "$ADMIN")
  [ -n "$PORT" ] && args+=(--port "$PORT")
  exec "$RUNTIME/bin/teamhub" "${args[@]}"
fi
mkdir -p "$(dirname "$LOG")" "$(dirname "$PIDFILE")"
chmod 700 "$(dirname "$LOG")"
args=(up --admin "$ADMIN")
[ -n "$PORT" ] && args+=(--port "$PORT")
"$RUNTIME/bin/teamhub" "${args[@]}" --check
say "Starting teamhub (log: $LOG)"
# No systemd needed: the hub runs detached, in its own session, and outlives this script.
setsid nohup "$RUNTIME/bin/teamhub" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$PIDFILE"
port=${PORT:-$("$RUNTIME/bin/teamhub" config get hub.port)}
for _ in $(seq 120); do
  if "$RUNTIME/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/hub/login', timeout=2)" 2>/dev/null; then
    state=$("$RUNTIME/bin/teamhub" config get paths.state_dir)
    # The proxy outlives the hub on purpose (it keeps the port across restarts).
    say "teamhub is up: http://$(hostname -f 2>/dev/null || hostname):$port/  (pid $pid; stop" \
        "the hub with: kill $pid, and its proxy too with: kill \$(cat $state/proxy.pid))"
    if [ -f "$state/initial-admin-password" ]; then
      read -r name pw < "$state/initial-admin-password"
      echo "    log in as '$name' with password: $pw   (saved in $state/initial-admin-password)"
    fi
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 20 "$LOG" >&2
    die "teamhub stopped during start; see $LOG"
  fi
  sleep 1
done
die "teamhub did not answer on port $port within 2 minutes; see $LOG"
