#!/usr/bin/env bash
# Run teamhub's whole test suite, as root, on a Debian/Ubuntu machine.
# Installs what the tests need (into /opt/teamhub-test, apart from a real install),
# then runs pytest from this checkout. Extra arguments go to pytest.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ "$(id -u)" = 0 ] || { echo "run-tests.sh: run as root: the tests create real Linux users" >&2; exit 1; }
# TEAMHUB_TEST_PREFIX lets several checkouts test side by side without sharing a runtime.
PREFIX=${TEAMHUB_TEST_PREFIX:-/opt/teamhub-test}
# Page tests drive a real headless Chromium (Playwright with the distribution's browser);
# tests/system/test_systemd_machine.py builds a Debian systemd image and runs it in Docker.
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v dockerd >/dev/null || need+=(docker.io)
# tests/support/postgres.py starts a private PostgreSQL cluster (initdb) for the db.url tests.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
"$SRC/install.sh" --prefix "$PREFIX" --no-start --extras test
# axe-core for the pages' accessibility checks (tests/support/browser.py).
if [ ! -f "$PREFIX/test-node/node_modules/axe-core/axe.min.js" ]; then
  npm install --silent --no-audit --no-fund --prefix "$PREFIX/test-node" axe-core@4 >/dev/null
fi
cd "$SRC"
export TEAMHUB_TEST_RUNTIME=$PREFIX/runtime
exec "$PREFIX/runtime/bin/python" -m pytest -p no:cacheprovider "$@"
