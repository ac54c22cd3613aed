"""Build contexts for the two images a Zero to JupyterHub deployment of teamhub runs.

`images/` holds teamhub's own source (the installed package and a pyproject naming its
dependencies), the runtime's exact package versions, and two Dockerfiles:

- `Dockerfile.hub`: the chart's hub image plus teamhub (its authenticator, account pages
  and `teamhub.k8s`), with the JupyterHub this machine runs;
- `Dockerfile.singleuser`: this machine's distribution release (or, with the docker
  backend, the image users' containers run from), so that /usr/bin/python3 is the one
  the shared environments were built against, with the runtime at the same path and
  libnss-extrausers so that the users' passwd entries from the values resolve.

No registry can be reached from the teamhub machine: the admin builds and pushes them
(MIGRATION.md says how).
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
from collections import defaultdict
from pathlib import Path

from .. import __version__
from .. import images as local_images
from ..settings import Settings
from .chart import CHART_VERSION, HUB_BASE_IMAGE, HUB_IMAGE_USER

# Never pinned into the runtime: the installers themselves, and teamhub (installed from
# the copied source).
_UNPINNED = {"pip", "setuptools", "wheel", "teamhub"}


def singleuser_base(settings: Settings) -> str:
    """The single-user image's FROM: the docker backend's image, else this machine's release."""
    if settings["spawner.backend"] == "docker":
        return local_images.reference(settings["docker.image"])
    release = platform.freedesktop_os_release()
    return f"{release.get('ID', 'debian')}:{release.get('VERSION_ID', 'stable')}"


def _pyproject() -> str:
    dist = importlib.metadata.distribution("teamhub")
    deps = [r for r in dist.requires or [] if "extra ==" not in r]
    groups: dict[str, list[str]] = defaultdict(list)
    for ep in dist.entry_points:
        groups[ep.group].append(f'{ep.name} = "{ep.value}"')
    lines = ['[build-system]', 'requires = ["hatchling>=1.18"]',
             'build-backend = "hatchling.build"', '', '[project]', 'name = "teamhub"',
             f'version = "{__version__}"', 'requires-python = ">=3.10"', 'dependencies = [']
    lines += [f'    "{d}",' for d in deps] + [']']
    for group, entries in sorted(groups.items()):
        section = "project.scripts" if group == "console_scripts" else \
            f'project.entry-points."{group}"'
        lines += ['', f'[{section}]', *sorted(entries)]
    lines += ['', '[tool.hatch.build.targets.wheel]', 'packages = ["src/teamhub"]', '']
    return "\n".join(lines)


def _pins() -> str:
    pins = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name and name not in _UNPINNED:
            pins[name] = dist.version
    return "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))


HUB_DOCKERFILE = """\
# teamhub's hub image: the Zero to JupyterHub chart's hub image (chart {chart}) plus
# teamhub {version}, with JupyterHub {jupyterhub} as on the teamhub machine.
FROM {base}
USER root
COPY teamhub-src /tmp/teamhub-src
RUN pip install --no-cache-dir "jupyterhub=={jupyterhub}" /tmp/teamhub-src \\
 && rm -rf /tmp/teamhub-src
USER {user}
"""

SINGLEUSER_DOCKERFILE = """\
# teamhub's single-user image: {base}, so that /usr/bin/python3 is Python {python}, the
# one the shared environments were built with; the runtime at {runtime} as on the
# teamhub machine; users' passwd/group entries from the chart's singleuser.extraFiles
# (/var/lib/extrausers, read through libnss-extrausers).
FROM {base}
USER root
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      python3 python3-venv ca-certificates libnss-extrausers \\
 && rm -rf /var/lib/apt/lists/* \\
 && sed -i -E 's/^(passwd|group):(.*)$/\\1:\\2 extrausers/' /etc/nsswitch.conf \\
 && mkdir -p /var/lib/extrausers
COPY runtime-requirements.txt /tmp/teamhub/runtime-requirements.txt
COPY teamhub-src /tmp/teamhub/teamhub-src
RUN /usr/bin/python3 -m venv {runtime} \\
 && {runtime}/bin/pip install --no-cache-dir -r /tmp/teamhub/runtime-requirements.txt \\
 && {runtime}/bin/pip install --no-cache-dir --no-deps /tmp/teamhub/teamhub-src \\
 && {runtime}/bin/python -m compileall -q {runtime} >/dev/null \\
 && rm -rf /tmp/teamhub
ENV PATH={runtime}/bin:/usr/local/bin:/usr/bin:/bin
# Every pod runs as its user's own uid (set at spawn); never as root.
USER 65534
"""


def write(folder: Path, settings: Settings) -> None:
    """The build context in FOLDER (which exists and is empty)."""
    src = folder / "teamhub-src"
    package = Path(__file__).resolve().parent.parent
    shutil.copytree(package, src / "src" / "teamhub",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (src / "pyproject.toml").write_text(_pyproject())
    (folder / "runtime-requirements.txt").write_text(_pins())
    jupyterhub = importlib.metadata.version("jupyterhub")
    (folder / "Dockerfile.hub").write_text(HUB_DOCKERFILE.format(
        chart=CHART_VERSION, version=__version__, jupyterhub=jupyterhub, base=HUB_BASE_IMAGE,
        user=HUB_IMAGE_USER))
    (folder / "Dockerfile.singleuser").write_text(SINGLEUSER_DOCKERFILE.format(
        base=singleuser_base(settings), python=platform.python_version(),
        runtime=settings["paths.runtime_dir"]))
