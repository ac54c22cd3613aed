"""What a shared environment gets so that `%pip install` explains itself.

Shared environments are root-owned: installing into one from a notebook can
only fail, and a bare PermissionError halfway through pip is no help. Each
revision gets an IPython extension (loaded by the kernel spec) that replaces
`%pip`/`%conda` with guidance, and `bin/pip` stubs that say the same for `!pip`.
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import EnvError

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


def _site_packages(python: Path) -> Path:
    """PYTHON's site-packages: from a venv's layout, else asked of the interpreter."""
    found = glob.glob(str(python.parent.parent / "lib" / "python3.*" / "site-packages"))
    if len(found) == 1:
        return Path(found[0])
    return Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip())


@contextmanager
def guard_installed(python: Path, name: str) -> Iterator[None]:
    """Give the env of PYTHON the extension and `pip` stubs around the body (uv's install).

    The extension is written first and byte-compiled while the body runs (uv
    compiles only the files it installs); the stubs come after it, so that a
    real pip installed by the body stays.
    """
    module = _site_packages(python) / f"{MODULE}.py"
    module.write_text(EXTENSION.format(name=name, message=MESSAGE))
    compiling = subprocess.Popen([str(python), "-m", "py_compile", str(module)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield
    except BaseException:
        compiling.kill()
        compiling.wait()
        raise
    _, err = compiling.communicate(timeout=60)
    if compiling.returncode != 0:
        raise EnvError(f"cannot byte-compile {module}: {err.strip()[-300:]}")
    bindir = python.parent
    for stub in ("pip", "pip3"):
        path = bindir / stub
        if not path.exists():
            path.write_text(STUB.format(name=name))
            os.chmod(path, 0o755)
