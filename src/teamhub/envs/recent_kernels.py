"""The kernels a user started last, remembered across their servers (in their own data
folder), so that a server can have those kernels' warm parents ready when the user
opens JupyterLab (teamhub.envs.warm_ahead).

One small JSON file, `~/.local/share/jupyter/teamhub/recent-kernels.json` (the user's
Jupyter data folder): kernel names, most recent first. It is written by the user's own
server, replaced whole (a reader never sees half a file), and only when the order changes.
A missing, unreadable or damaged file is an empty list: it only decides what is warmed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

KEPT = 5  # names remembered; teamhub.envs.warm_ahead warms fewer


def recent_file() -> Path:
    return Path(jupyter_data_dir()) / "teamhub" / "recent-kernels.json"


def recent(path: Path | None = None) -> list[str]:
    """Kernel names, most recently started first."""
    try:
        names = json.loads((path or recent_file()).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n][:KEPT]


def remember(name: str, path: Path | None = None) -> bool:
    """Put NAME first; False if the file could not be written (read-only home, full disk)."""
    path = path or recent_file()
    before = recent(path)
    names = [name, *(n for n in before if n != name)][:KEPT]
    if names == before:
        return True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".recent-kernels.")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(names, out)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return False
    return True
