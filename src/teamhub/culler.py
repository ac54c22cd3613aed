"""Run jupyterhub-idle-culler against the hub's unix socket.

The culler's HTTP client (tornado's) speaks TCP only, and the hub's API is a unix socket
(no user can listen in its place). A resolver that answers every name with that socket
makes every request of the culler go there. Usage (as the hub's service command):

    python -m teamhub.culler SOCKET --url=http://hub/hub/api [culler options]
"""

from __future__ import annotations

import signal
import socket
import sys

from tornado.netutil import Resolver


class HubSocketResolver(Resolver):
    def initialize(self, path: str) -> None:
        self.path = path

    async def resolve(self, host: str, port: int,
                      family: socket.AddressFamily = socket.AF_UNSPEC) -> list:
        return [(socket.AF_UNIX, self.path)]


def main() -> None:
    path, args = sys.argv[1], sys.argv[2:]
    # The hub stops its services with SIGINT first. A hub started in the background by a
    # shell without job control (install.sh without systemd, nohup ... &) hands SIGINT on
    # ignored, and Python then leaves it ignored: the culler outlived every hub stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    Resolver.configure(HubSocketResolver, path=path)
    # The culler switches to curl's client when pycurl is importable; curl would not use
    # the resolver, so it stays with tornado's own client.
    sys.modules["pycurl"] = None  # type: ignore[assignment]
    from jupyterhub_idle_culler import main as culler_main  # after the switch above

    sys.argv = [sys.argv[0], *args]
    culler_main()


if __name__ == "__main__":
    main()
