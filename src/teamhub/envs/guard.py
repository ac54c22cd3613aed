"""What a shared environment gets so that `%pip install` explains itself.

Shared environments are root-owned: installing into one from a notebook can
only fail, and a bare PermissionError halfway through pip is no help. Each
revision gets an IPython extension (loaded by the kernel spec) that replaces
`%pip`/`%conda` with guidance, and `bin/pip` stubs that say the same for `!pip`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .bytecode import site_packages

MESSAGE = (
    "This is the shared environment {name!r}; it is read-only for you, so nothing was "
    "installed.\n"
    "To add packages yourself, make a personal environment (it appears as a kernel "
    "within seconds):\n"
    "    !teamhub-env create myenv {pkgs}\n"
    "or ask your teamhub admin to run:  teamhub env install {name} {pkgs}"
)

EXTENSION = '''"""teamhub: %pip/%conda in a shared, read-only environment print guidance instead."""
import os
import sys

NAME = {name!r}
MESSAGE = {message!r}


def _guide(line=""):
    words = [w for w in line.split() if not w.startswith("-") and w not in ("install", "add")]
    print(MESSAGE.format(name=NAME, pkgs=" ".join(words) or "PACKAGE"))


def load_ipython_extension(ip):
    if os.access(sys.prefix, os.W_OK):
        return  # an admin's own kernel may install
    for magic in ("pip", "conda", "mamba", "micromamba", "uv"):
        ip.register_magic_function(_guide, "line", magic)
'''

STUB = """#!/bin/sh
echo "This is the shared environment '{name}'; it is read-only, so nothing was installed." >&2
echo "Make a personal one:  teamhub-env create myenv PACKAGE" >&2
echo "or ask your teamhub admin:  teamhub env install {name} PACKAGE" >&2
exit 1
"""

MODULE = "teamhub_pip_guard"


def extension(name: str) -> str:
    return EXTENSION.format(name=name, message=MESSAGE)


def stub(name: str) -> str:
    return STUB.format(name=name)


@contextmanager
def guard_installed(python: Path, name: str) -> Iterator[Path]:
    """Give the env of PYTHON the extension before the body (uv's install), `pip` stubs after.

    Yields the env's site-packages. The extension is there before the body so
    that the bytecode pass after it compiles it with the rest; the stubs come
    after it, so that a real pip installed by the body stays.
    """
    site = site_packages(python)
    (site / f"{MODULE}.py").write_text(extension(name))
    yield site
    bindir = python.parent
    for tool in ("pip", "pip3"):
        path = bindir / tool
        if not path.exists():
            path.write_text(stub(name))
            os.chmod(path, 0o755)
