"""Prebuilt JupyterLab extensions the admin adds for everyone (`teamhub lab ...`).

A prebuilt extension is a Python package that brings its JupyterLab part in
`share/jupyter/labextensions/` (bokeh's `jupyter_bokeh`, `jupyterlab-execute-time`, …):
installed into the runtime, every user's Lab loads it at its next page load (its
server part, if any, at the user's next server start). No Node.js, no Lab build.

Every package already in the runtime is held at its version while installing (a
constraint), so adding an extension never upgrades JupyterLab or the hub under
running servers; one that needs other versions is refused. A package that brings
no Lab extension is removed again, with whatever it pulled in. What was added is
recorded in `<state_dir>/lab-extensions.json`; `teamhub lab sync` (run by install.sh
after every install or upgrade) installs recorded ones a new runtime lacks, and
`teamhub doctor` lists them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import EnvError, LabExtensionError
from .system.uv import Uv

RECORD = "lab-extensions.json"
# Which server extension of the runtime serves a default URL (`hub.default_url`).
URL_SERVERS = {"/lab": "jupyterlab", "/tree": "notebook", "/notebooks": "notebook",
               "/edit": "notebook", "/consoles": "notebook", "/terminals": "notebook"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def package_name(spec: str) -> str:
    """The normalized distribution name of a requirement SPEC (`Bokeh>=3` → `bokeh`)."""
    match = _NAME.match(spec.strip())
    if not match or any(c in spec for c in "/\\@") or spec.strip().startswith("-"):
        raise LabExtensionError(
            f"{spec!r} is not a package name (give a name from the package index, "
            "e.g. `teamhub lab install jupyterlab-execute-time`)")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def lab_extensions(runtime: Path) -> set[str]:
    """Names of the prebuilt extensions in RUNTIME (`@scope/name` or `name`)."""
    root = runtime / "share" / "jupyter" / "labextensions"
    found = set()
    for package_json in root.glob("*/package.json"):
        found.add(package_json.parent.name)
    for package_json in root.glob("@*/*/package.json"):
        found.add(f"{package_json.parent.parent.name}/{package_json.parent.name}")
    return found


class LabExtensions:
    """The admin-added extensions of one runtime, and their record."""

    def __init__(self, runtime: Path, state_dir: Path, uv: Uv | None = None) -> None:
        self.runtime = runtime
        self.python = runtime / "bin" / "python"
        self.record_path = state_dir / RECORD
        self.uv = uv or Uv(runtime / "bin" / "uv")

    def record(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LabExtensionError(f"cannot read {self.record_path} ({exc}); fix or remove "
                                    "it, then `teamhub lab sync`") from None
        return data if isinstance(data, dict) else {}

    def _save(self, record: dict[str, dict[str, Any]]) -> None:
        self.record_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lab-", dir=self.record_path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.record_path)

    def _installed(self) -> dict[str, str]:
        return {re.sub(r"[-_.]+", "-", k).lower(): v
                for k, v in self.uv.packages(self.python).items()}

    def install(self, spec: str, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Install SPEC into the runtime; refused (nothing left) if it brings no Lab extension."""
        name = package_name(spec)
        before = self._installed()
        extensions_before = lab_extensions(self.runtime)
        if name in before and name not in self.record():
            raise LabExtensionError(f"{name} is part of teamhub's runtime already "
                                    "(nothing to add)")
        # Everything already there stays at its version (the named package itself may move).
        pins = "".join(f"{pkg}=={version}\n" for pkg, version in sorted(before.items())
                       if pkg != name)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="teamhub-pins-") as f:
            f.write(pins)
            f.flush()
            try:
                self.uv.run(["pip", "install", "--python", str(self.python),
                             "--compile-bytecode", "--constraint", f.name, spec], echo=echo)
            except EnvError as exc:  # its message carries uv's last lines
                raise LabExtensionError(
                    f"could not install {spec} without changing the runtime's packages: {exc}"
                ) from None
        after = self._installed()
        added = sorted(set(after) - set(before))
        brought = sorted(lab_extensions(self.runtime) - extensions_before)
        if not brought and not self.record().get(name, {}).get("extensions"):
            if added:
                self.uv.uninstall(self.python, added)
            raise LabExtensionError(f"{spec} brings no prebuilt JupyterLab extension "
                                    "(nothing in share/jupyter/labextensions); removed again")
        record = self.record()
        entry = record.get(name, {})
        record[name] = {"spec": spec, "version": after.get(name, ""),
                        "extensions": sorted(set(entry.get("extensions", [])) | set(brought))}
        self._save(record)
        return record[name]

    def uninstall(self, spec: str) -> None:
        name = package_name(spec)
        record = self.record()
        if name not in record:
            known = ", ".join(sorted(record)) or "none"
            raise LabExtensionError(f"{name} was not added with `teamhub lab install` "
                                    f"(added: {known})")
        if name in self._installed():
            self.uv.uninstall(self.python, [name])
        del record[name]
        self._save(record)

    def listing(self) -> list[dict[str, Any]]:
        """Each recorded extension: spec, installed version (None: missing), Lab extensions."""
        installed = self._installed()
        present = lab_extensions(self.runtime)
        return [{"name": name, "spec": entry.get("spec", name),
                 "version": installed.get(name),
                 "extensions": entry.get("extensions", []),
                 "ok": name in installed and set(entry.get("extensions", [])) <= present}
                for name, entry in sorted(self.record().items())]

    def sync(self, echo: Callable[[str], None] | None = None) -> list[str]:
        """Install the recorded extensions this runtime lacks; their names."""
        if not self.record():
            return []
        missing = [entry for entry in self.listing() if entry["version"] is None]
        for entry in missing:
            self.install(entry["spec"], echo=echo)
        return [entry["name"] for entry in missing]


def default_url_server(runtime: Path, default_url: str) -> tuple[bool | None, str]:
    """Whether the runtime has the server extension that answers DEFAULT_URL.

    (True, extension), (False, what is missing), or (None, why it cannot be told) for
    a URL no known extension serves (an admin-added extension may).
    """
    path = "/" + default_url.strip("/").split("?")[0]
    first = "/" + path.strip("/").split("/")[0]
    extension = URL_SERVERS.get(first)
    if extension is None:
        return None, f"teamhub does not know which extension serves {default_url}"
    config = runtime / "etc" / "jupyter" / "jupyter_server_config.d" / f"{extension}.json"
    try:
        enabled = json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]
    except (OSError, ValueError, KeyError, TypeError):
        return False, f"{extension} is not installed in the runtime ({config} missing)"
    if not enabled.get(extension):
        return False, f"{extension} is installed but disabled in {config}"
    return True, extension
