"""The login-shell profile of teamhub's accounts (/etc/profile.d/teamhub.sh).

A teamhub user's shell should have what their server has: teamhub's commands
(`teamhub-env`), the runtime's `python`, `pip` and `jupyter`, and the admin's
`spawner.environment`. Two kinds of shells need help:

- JupyterLab's terminal is a login shell (`bash -l`): it inherits the server's
  environment, but Debian's /etc/profile resets PATH. The server carries its own
  PATH in `JUPYTER_TEAMHUB_PATH`, and this profile puts it back in front.
- An ssh or `su -` login of a teamhub account starts from a clean environment: this
  profile sets the server's PATH entries and variables for the accounts teamhub runs
  servers as (`<prefix>*`, or in PAM mode every account from the minimum uid up).

Written by `teamhub up` at every start (root-owned, 0644), so it follows the settings.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from pathlib import Path

DEFAULT_PATH = Path("/etc/profile.d/teamhub.sh")
SERVER_PATH_ENV = "JUPYTER_TEAMHUB_PATH"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set by the login itself or by the shell: never overwritten from spawner.environment.
_KEEP = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "SHLVL", "TERM",
         "MAIL", "_"}

_PREPEND = """\
_teamhub_prepend() {
  _teamhub_rest=$PATH
  PATH=$1
  _teamhub_ifs=$IFS
  IFS=:
  for _teamhub_dir in $_teamhub_rest; do
    case ":$PATH:" in *":$_teamhub_dir:"*) ;; *) PATH=$PATH:$_teamhub_dir ;; esac
  done
  IFS=$_teamhub_ifs
  export PATH
  unset _teamhub_rest _teamhub_ifs _teamhub_dir
}
"""


def render(*, server_path: str, environment: dict[str, str], prefix: str | None,
           min_uid: int | None) -> str:
    """The profile's text.

    SERVER_PATH: the PATH users' servers get (runtime's bin first). ENVIRONMENT: the
    admin's spawner.environment. PREFIX: the accounts' name prefix (`jupyter-`), or
    None in PAM mode, where MIN_UID selects the accounts instead.
    """
    exports = [f"  export {name}={shlex.quote(str(value))}"
               for name, value in sorted(environment.items())
               if _NAME.fullmatch(name) and name not in _KEEP]
    if prefix is not None:
        test = f'case "$(id -un 2>/dev/null)" in {shlex.quote(prefix)}*) true ;; *) false ;; esac'
    else:
        test = f'[ "$(id -u)" -ge {1000 if min_uid is None else int(min_uid)} ]'
    lines = [
        "# Written by `teamhub up` at every start: edits here are lost.",
        "# teamhub accounts' login shells get their server's commands and variables",
        "# (teamhub-env, the runtime's python/pip/jupyter, spawner.environment).",
        _PREPEND.rstrip("\n"),
        f'if [ -n "${{{SERVER_PATH_ENV}:-}}" ]; then',
        "  # JupyterLab's terminal: the server's environment is inherited, but /etc/profile",
        "  # has just reset PATH.",
        f'  _teamhub_prepend "${SERVER_PATH_ENV}"',
        f"elif {test}; then",
        "  # An ssh or `su -` login of a teamhub account.",
        f"  _teamhub_prepend {shlex.quote(server_path)}",
        *exports,
        "fi",
        "unset -f _teamhub_prepend",
        "",
    ]
    return "\n".join(lines)


def install(text: str, path: Path = DEFAULT_PATH) -> bool:
    """Write TEXT to PATH (root-owned, 0644, atomically) unless it is already there.

    True if it was written. Nothing is written where PATH's folder does not exist
    (a system without /etc/profile.d).
    """
    if not path.parent.is_dir():
        return False
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".teamhub-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
