"""What the fork server's preloaded modules computed at import from its own identity.

The fork server imports jupyter_server and JupyterLab as root with HOME=/nonexistent
(the `nobody` account's home, so that it holds nothing of any user). A few modules
compute per-user paths once, at import: in a forked child those still name the fork
server's home, and JupyterLab answered every layout or settings save with
`Permission denied: '/nonexistent'`. `recompute()` runs in the child after
`sandbox.become` (HOME and uid are the user's by then) and computes each of them again
the way a fresh interpreter started by the user would.

Found by importing everything the fork server preloads with HOME=/nonexistent and
looking for that path in every module's globals and every traitlets class default
(see the comparison tests in tests/hub/test_forkserver.py): JupyterLab's user settings
and workspaces folders, send2trash's home trash and uid, and the standard library's
user base (`site` is handled where the server's sys.path is set up).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _set_class_default(cls: Any, name: str, value: str) -> None:
    """Make VALUE the default of trait NAME of the (already created) traitlets class CLS."""
    trait = cls.class_traits()[name]
    trait.default_value = value
    # traitlets copies immutable static defaults once, when the class is made.
    initial = getattr(cls, "_static_immutable_initial_values", None)
    if isinstance(initial, dict) and name in initial:
        initial[name] = value


def _jupyterlab() -> None:
    labapp = sys.modules.get("jupyterlab.labapp")
    commands = sys.modules.get("jupyterlab.commands")
    if labapp is None or commands is None:
        return
    # Class attributes of LabApp, computed at import (JUPYTERLAB_*_DIR or ~/.jupyter/lab/...).
    _set_class_default(labapp.LabApp, "user_settings_dir", commands.get_user_settings_dir())
    _set_class_default(labapp.LabApp, "workspaces_dir", commands.get_workspaces_dir())


def _send2trash() -> None:
    trash = sys.modules.get("send2trash.plat_other")
    if trash is None:
        return
    # The module's own globals, as its import would compute them now.
    data_home = os.path.expanduser(os.environb.get(b"XDG_DATA_HOME", b"~/.local/share"))
    home_trash = os.path.join(data_home, b"Trash")
    vars(trash).update({
        "XDG_DATA_HOME": data_home, "HOMETRASH_B": home_trash,
        "HOMETRASH": os.fsdecode(home_trash), "uid": os.getuid(),
        "TOPDIR_FALLBACK": b".Trash-" + str(os.getuid()).encode("ascii"),
    })


def _sysconfig() -> None:
    import sysconfig

    variables = getattr(sysconfig, "_CONFIG_VARS", None)
    if isinstance(variables, dict) and "userbase" in variables:
        variables["userbase"] = sysconfig._getuserbase()  # type: ignore[attr-defined]


def recompute() -> None:
    """After `become`: every import-time per-user value, computed for this process's user."""
    _jupyterlab()
    _send2trash()
    _sysconfig()
