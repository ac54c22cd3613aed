"""The kernel spec manager of every user's server: environments appear as kernels.

Configured into the single-user server by the spawner
(`--ServerApp.kernel_spec_manager_class`). Specs are computed at every call
(jupyter_server asks at each /api/kernelspecs request), so a shared env shows
up or disappears at the next launcher refresh, and a personal env made by hand
in ~/.venvs appears within seconds: nothing is registered, nothing to go stale.

- the runtime's own `python3` kernel and any installed kernel specs: unchanged;
- `env-<name>` "Python (<name>)": each shared env under envs_root that
  visibility.json allows this Linux account;
- `personal-<name>` "Python (<name>, personal)": each ~/.venvs/* and conda env
  dir under the user's home that contains ipykernel.

Kernels inherit the server's environment (spawner.environment included); a
spec only puts its env's bin/ in front of PATH.

Every ipykernel spec, the runtime's own `python3` and any `ipykernel install`-ed
one included, starts through `kernel_launcher.py` (with -P where the
interpreter has it): kernels start in the notebook's folder, which must not be
on sys.path while the kernel imports its own code (see that file).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import sys
from collections.abc import Callable
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from traitlets import List, Unicode

from . import visibility
from .guard import MODULE as GUARD_MODULE
from .store import META

SHARED_PREFIX = "env-"
PERSONAL_PREFIX = "personal-"
DEFAULT_PERSONAL_DIRS = ["~/.venvs", "~/.conda/envs", "~/miniconda3/envs", "~/miniforge3/envs",
                         "~/mambaforge/envs", "~/anaconda3/envs"]


def _kernel_name(prefix: str, name: str) -> str:
    return prefix + re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-")


def has_ipykernel(env: Path) -> bool:
    return bool(glob.glob(str(env / "lib" / "python3*" / "site-packages" / "ipykernel"
                              / "__init__.py")))


def env_python_version(env: Path) -> tuple[int, int] | None:
    """The Python version of the venv/conda env ENV, from its lib/pythonX.Y folder."""
    found = set()
    for lib in glob.glob(str(env / "lib" / "python3.*")):
        m = re.fullmatch(r"python(\d+)\.(\d+)", os.path.basename(lib))
        if m:
            found.add((int(m[1]), int(m[2])))
    return found.pop() if len(found) == 1 else None


LAUNCHER = str(Path(__file__).with_name("kernel_launcher.py"))
_IPYKERNEL_MODULE = ["-m", "ipykernel_launcher"]


def launcher_argv(python: str, version: tuple[int, int] | None) -> list[str]:
    """Start ipykernel under PYTHON without the working folder on sys.path.

    -P (Python 3.11+) keeps even the launcher's own folder off sys.path; an older
    or unknown interpreter does without it (an unknown option would kill the
    kernel), and the launcher drops its folder itself.
    """
    return [python, *(["-P"] if version and version >= (3, 11) else []), LAUNCHER]


def _resources() -> str:
    try:
        from ipykernel.kernelspec import RESOURCES

        return RESOURCES
    except ImportError:  # pragma: no cover - the runtime always has ipykernel
        return os.path.dirname(__file__)


def _spec(env: Path, display: str, kind: str, name: str, extra: list[str]) -> KernelSpec:
    bindir = env / "bin"
    path = os.environ.get("PATH", "")
    return KernelSpec(
        argv=[*launcher_argv(str(bindir / "python"), env_python_version(env)),
              "-f", "{connection_file}", *extra],
        display_name=display,
        language="python",
        env={"PATH": f"{bindir}:{path}" if path else str(bindir), "VIRTUAL_ENV": str(env)},
        metadata={"teamhub": {"kind": kind, "env": name},
                  "debugger": True},
        resource_dir=_resources(),
    )


def safe_argv(argv: list[str]) -> list[str]:
    """ARGV of an installed spec, with `python -m ipykernel_launcher` made safe; else as is."""
    if len(argv) < 3 or argv[1:3] != _IPYKERNEL_MODULE:
        return argv
    python = argv[0]
    version: tuple[int, int] | None
    if python in ("python", f"python{sys.version_info[0]}",
                  "python{}.{}".format(*sys.version_info[:2])):
        version = sys.version_info[:2]  # jupyter_client runs these with sys.executable
    else:
        version = env_python_version(Path(python).parent.parent)
    return [*launcher_argv(python, version), *argv[3:]]


def shared_specs(root: Path, account: str) -> dict[str, KernelSpec]:
    """The shared envs under ROOT that ACCOUNT may use."""
    index = visibility.read(root)
    specs = {}
    for name, entry in sorted(index.items()):
        env = root / name / "current"
        if not visibility.allowed(entry, account) or not (root / name / META).is_file():
            continue
        if not (env / "bin" / "python").exists():
            continue
        specs[_kernel_name(SHARED_PREFIX, name)] = _spec(
            env, f"Python ({name})", "shared", name,
            [f"--IPKernelApp.extensions={GUARD_MODULE}"])
    return specs


def personal_specs(dirs: list[str]) -> dict[str, KernelSpec]:
    """Envs with ipykernel in the user's env folders (first folder wins on a name clash)."""
    specs: dict[str, KernelSpec] = {}
    for folder in dirs:
        base = Path(os.path.expanduser(folder))
        try:
            entries = sorted(base.iterdir())
        except OSError:
            continue
        for env in entries:
            name = _kernel_name(PERSONAL_PREFIX, env.name)
            if name in specs or not (env / "bin" / "python").exists():
                continue
            if has_ipykernel(env):
                specs[name] = _spec(env, f"Python ({env.name}, personal)", "personal",
                                    env.name, [])
    return specs


class TeamhubKernelSpecManager(KernelSpecManager):
    """KernelSpecManager that adds shared and personal environments, found at each call."""

    envs_root = Unicode("", help="Folder of the shared environments (envs.root).").tag(
        config=True)
    personal_dirs = List(Unicode(), DEFAULT_PERSONAL_DIRS,
                         help="Folders whose sub-folders with ipykernel become personal "
                         "kernels.").tag(config=True)

    # Called whenever a front end lists the kernels (jupyter_server's /api/kernelspecs):
    # teamhub.serverext starts warm kernel parents then (teamhub.envs.warm_ahead).
    on_listing: Callable[[], None] | None = None

    def _dynamic(self) -> dict[str, KernelSpec]:
        specs: dict[str, KernelSpec] = {}
        if self.envs_root:
            account = pwd.getpwuid(os.getuid()).pw_name
            specs.update(shared_specs(Path(self.envs_root), account))
        specs.update(personal_specs(list(self.personal_dirs)))
        return specs

    def find_kernel_specs(self) -> dict[str, str]:
        found = super().find_kernel_specs()
        for name, spec in self._dynamic().items():
            found.setdefault(name, spec.resource_dir)
        return found

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name.startswith((SHARED_PREFIX, PERSONAL_PREFIX)):
            spec = self._dynamic().get(kernel_name)
            if spec is not None:
                return spec
        spec = super().get_kernel_spec(kernel_name)
        spec.argv = safe_argv(list(spec.argv))
        return spec

    def get_all_specs(self) -> dict[str, dict[str, object]]:
        if self.on_listing is not None:
            self.on_listing()
        # One scan for the whole listing instead of one per kernel.
        dynamic = self._dynamic()
        static = {k: v for k, v in super().get_all_specs().items() if k not in dynamic}
        for entry in static.values():
            spec = entry.get("spec")
            if isinstance(spec, dict) and isinstance(spec.get("argv"), list):
                spec["argv"] = safe_argv(spec["argv"])
        for name, spec in dynamic.items():
            static[name] = {"resource_dir": spec.resource_dir, "spec": spec.to_dict()}
        return static
