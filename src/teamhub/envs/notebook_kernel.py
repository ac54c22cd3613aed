"""The kernel a notebook file names (its `metadata.kernelspec.name`), read cheaply enough
to ask on every pointer that rests on the notebook in JupyterLab's file browser.

Opening a notebook starts the kernel its metadata names. teamhub's Lab extension asks
about a notebook before the double-click, and the server starts that kernel's warm parent
(teamhub.envs.warm_ahead): this module only finds the name. Parsing a whole notebook
(tens of MB with outputs) to learn it would cost more than the parent's start it saves, so
the file's bytes are searched for the kernelspec object instead: a flat JSON object that
cannot occur inside a JSON string (its quotes would be escaped there). nbformat writes the
top-level keys sorted, so the notebook's own metadata follows every cell, and the last
such object is the notebook's (a cell's JSON output naming a kernelspec comes before it),
and it is near the file's end: the end is searched first.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# A notebook bigger than this is not searched (it is read from disk on every hint).
MAX_BYTES = 64 * 1024 * 1024
# Bytes at the file's end looked at first: the notebook's metadata (what follows its
# kernelspec: language_info, small) ends the file, whatever its cells hold.
TAIL_BYTES = 64 * 1024
_KERNELSPEC = re.compile(rb'"kernelspec"\s*:\s*(\{[^{}]*\})')


def kernel_named_in(notebook: Path, limit: int = MAX_BYTES,
                    tail: int = TAIL_BYTES) -> str | None:
    """The kernel name NOTEBOOK's metadata names; None for a file that is missing,
    unreadable, bigger than LIMIT bytes, or names none. Its last TAIL bytes are searched
    first: a kernelspec object found whole there is the file's last one (an object
    cannot contain another); otherwise (saved widget state can follow the kernelspec)
    the whole file."""
    try:
        with notebook.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                return None
            if size > tail:
                f.seek(size - tail)
                found = _KERNELSPEC.findall(f.read(tail))
                if found:
                    return _name(found[-1])
                f.seek(0)
            data = f.read(limit + 1)
    except OSError:
        return None
    if len(data) > limit:
        return None
    found = _KERNELSPEC.findall(data)
    return _name(found[-1]) if found else None


def _name(spec_bytes: bytes) -> str | None:
    try:
        spec = json.loads(spec_bytes)
    except ValueError:
        return None
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) and name else None


def inside(root: str, api_path: str) -> Path | None:
    """The file API_PATH (a contents-API path, '/'-separated, relative to the server's
    ROOT) names, or None when `..` takes it out of ROOT. Symlinks are followed, as the
    contents API follows them (a project folder linked into the home, say): the server
    runs as its user, who may read what they lead to anyway."""
    base = os.path.abspath(root).rstrip(os.sep) + os.sep
    target = os.path.abspath(os.path.join(base, api_path.strip("/")))
    return Path(target) if target.startswith(base) else None
