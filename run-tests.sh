#!/usr/bin/env bash
# Run teamhub's whole test suite, as root, on a Debian/Ubuntu machine.
# Installs what the tests need (into /opt/teamhub-test, apart from a real install),
# then runs pytest from this checkout. Extra arguments go to pytest.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ "$(id -u)" = 0 ] || { echo "run-tests.sh: run as root: the tests create real Linux users" >&2; exit 1; }
"$SRC/install.sh" --prefix /opt/teamhub-test --no-start --extras test
cd "$SRC"
export TEAMHUB_TEST_RUNTIME=/opt/teamhub-test/runtime
exec /opt/teamhub-test/runtime/bin/python -m pytest -p no:cacheprovider "$@"
