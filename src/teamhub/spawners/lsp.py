"""Where each server looks for Node.js language servers, worked out once per hub.

jupyter-lsp finds language servers (pyright, bash-language-server...) by looking in a
list of `node_modules` roots; its default list includes `npm prefix -g`, which it
learns by running npm — a Node.js start costing ~0.3 s of CPU in every server start,
and most of a server's start once servers are forked. The hub runs npm once instead
and hands every server the same roots it would have computed itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path


@cache
def npm_global_prefix() -> str | None:
    """npm's global prefix (where `npm install -g` puts packages), or None without npm."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        done = subprocess.run([npm, "prefix", "-g"], capture_output=True, text=True,
                              timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def node_roots(home: str, prefix: str = sys.prefix) -> list[str]:
    """jupyter-lsp's own default roots for a server started in HOME from PREFIX."""
    roots = [home, str(Path(prefix) / "share" / "jupyter" / "lab" / "staging"),
             str(Path(prefix) / "lib"), prefix]
    npm_prefix = npm_global_prefix()
    if npm_prefix:
        roots += [str(Path(npm_prefix) / "lib"), npm_prefix]
    return roots


def server_args(home: str) -> list[str]:
    """Command-line options giving a server its language-server roots."""
    return [f"--LanguageServerManager.node_roots={root}" for root in node_roots(home)]
