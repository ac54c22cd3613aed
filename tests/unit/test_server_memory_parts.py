"""What keeps each idle server's own memory small (README "The whole team at once"):
the fork server preloads what servers import, and servers start no c-ares threads."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from aiohttp import TCPConnector
from aiohttp.resolver import ThreadedResolver

from teamhub import serverext


def test_every_preloaded_module_imports() -> None:
    """A name that does not import is skipped silently by the fork server (only its log
    says so): every server would then import it after the fork, on its own pages."""
    code = ("from teamhub.spawners.forkserver import PRELOAD, preload\n"
            "missing = sorted(set(PRELOAD) - set(preload()))\n"
            "print(missing)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_hub_client_connectors_resolve_without_c_ares() -> None:
    """Importing teamhub.serverext (as jupyter_server does before loading extensions) is
    enough: aiohttp's connectors then use the threaded resolver."""
    assert serverext.__name__ == "teamhub.serverext"

    async def make() -> object:
        connector = TCPConnector()
        try:
            return connector._resolver  # what jupyterhub.httpclient's connector gets
        finally:
            await connector.close()

    resolver = asyncio.run(make())
    assert isinstance(resolver, ThreadedResolver), type(resolver).__name__
