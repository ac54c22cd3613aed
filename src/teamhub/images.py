"""Single-user images built on this machine, offline: `teamhub image build|list|remove`.

An image is this machine's own distribution release, installed by debootstrap
(minbase) from the same package mirror apt uses here, plus the packages asked for, and
imported into the local Docker engine with `POST /images/create` (what `docker import`
does). Nothing is ever pulled from a registry. The image has the same /usr/bin/python3
as this machine, so the host's runtime (a venv of /usr/bin/python3) and shared envs run
inside it unchanged when bind-mounted read-only at the same paths.

Images are `teamhub/NAME:<recipe hash>` and `teamhub/NAME:latest`. The hash covers
everything that goes in (RECIPE_VERSION for the steps below, release, mirror, packages,
CA certificates, pip.conf, apt settings, the host's Python version): building again with
the same inputs reuses the image, under any name; changing any of them builds a new one.
Downloaded packages are kept in DEBOOTSTRAP_CACHE, so a rebuild downloads nothing new.

Plain OS plumbing: nothing here imports JupyterHub.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DockerError, ImageError
from .system.docker import Engine

REPO = "teamhub"
LABEL = "org.teamhub.image"
HASH_LABEL = "org.teamhub.recipe"
# Bump when the build steps below change what ends up in an image.
RECIPE_VERSION = "1"
DEBOOTSTRAP_CACHE = Path("/var/cache/teamhub/debootstrap")
# python3-venv: personal envs (~/.venvs) are made inside containers too.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "procps", "less")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?")
CA_DIR = Path("/usr/local/share/ca-certificates")


def reference(image: str) -> str:
    """The Docker reference of a `docker.image` value: a teamhub image name, or a full ref."""
    if ":" in image or "/" in image:
        return image
    return f"{REPO}/{image}:latest"


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise ImageError(f"image name {name!r} is not valid; use lower-case letters, digits, "
                         "'.', '_' or '-' (e.g. base)")


def _os_release() -> dict[str, str]:
    values = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip().strip('"')
    return values


def _mirror(distro: str) -> str:
    """The package mirror apt uses here for DISTRO (deb822 sources first)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith(f"/{distro}"):
                        return uri
    lists = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]
    for path in lists:
        if path.is_file():
            for line in path.read_text().splitlines():
                parts = line.split()
                if parts[:1] == ["deb"]:
                    uri = next((p for p in parts[1:] if "://" in p), "")
                    if uri.rstrip("/").endswith(f"/{distro}"):
                        return uri
    return {"debian": "http://deb.debian.org/debian",
            "ubuntu": "http://archive.ubuntu.com/ubuntu"}.get(distro, "")


def _host_python() -> str:
    done = subprocess.run(["/usr/bin/python3", "-c", "import platform;"
                           "print(platform.python_version())"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _apt_settings() -> list[Path]:
    """apt settings copied into the image: the sources and any proxy/Acquire settings."""
    files = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    files += [f for f in sorted(Path("/etc/apt/apt.conf.d").glob("*"))
              if f.is_file() and "Acquire::" in f.read_text(errors="replace")]
    return files


@dataclass
class Recipe:
    """What goes into image NAME."""

    name: str
    apt: list[str] = field(default_factory=list)
    suite: str = ""
    distro: str = ""
    mirror: str = ""
    python: str = ""

    @classmethod
    def for_this_machine(cls, name: str, apt: list[str]) -> Recipe:
        check_name(name)
        for pkg in apt:
            if not PACKAGE_RE.fullmatch(pkg):
                raise ImageError(f"{pkg!r} is not a Debian/Ubuntu package name")
        release = _os_release()
        distro, suite = release.get("ID", ""), release.get("VERSION_CODENAME", "")
        if distro not in ("debian", "ubuntu") or not suite:
            raise ImageError(f"images are built from this machine's release with debootstrap, "
                             f"which needs Debian or Ubuntu (this is {distro or 'unknown'} "
                             f"{suite}); build an image yourself and set docker.image to it")
        return cls(name=name, apt=sorted(set(apt)), suite=suite, distro=distro,
                   mirror=_mirror(distro), python=_host_python())

    @property
    def packages(self) -> list[str]:
        return sorted(set(BASE_PACKAGES) | set(self.apt))

    def inputs_hash(self) -> str:
        digest = hashlib.sha256()
        for part in (RECIPE_VERSION, self.distro, self.suite, self.mirror, self.python,
                     " ".join(self.packages)):
            digest.update(part.encode() + b"\0")
        extra = [*sorted(CA_DIR.glob("**/*.crt")), Path("/etc/pip.conf"), *_apt_settings()]
        for path in extra:
            if path.is_file():
                digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:12]


Say = Callable[[str], None]


def _say_stderr(text: str) -> None:
    print(f"teamhub image: {text}", file=sys.stderr, flush=True)


def _run(argv: list[str], what: str) -> None:
    """Run ARGV with its output on our stderr (progress); fail with WHAT on error."""
    done = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ImageError(f"{what} failed (exit code {done.returncode}); its output is above")


def _require_tools() -> None:
    for tool, package in (("debootstrap", "debootstrap"), ("tar", "tar"), ("chroot", "coreutils")):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} is not installed; install it with "
                             f"`apt-get install {package}`")


def _configure_root(root: Path, recipe: Recipe, say: Say) -> None:
    """This machine's CA certificates, pip.conf and apt settings, so tools inside work alike."""
    target = root / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for crt in sorted(CA_DIR.glob("*.crt")):
        shutil.copy2(crt, target / crt.name)
    _run(["chroot", str(root), "update-ca-certificates"], "update-ca-certificates in the image")
    if Path("/etc/pip.conf").is_file():
        shutil.copy2("/etc/pip.conf", root / "etc/pip.conf")
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    if sources:
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        for src in sources:
            shutil.copy2(src, root / "etc/apt/sources.list.d" / src.name)
    for conf in _apt_settings():
        if conf.parent.name == "apt.conf.d":
            shutil.copy2(conf, root / "etc/apt/apt.conf.d" / conf.name)
    if recipe.apt:
        say(f"installing {' '.join(recipe.apt)} with apt")
        resolv = root / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copy2("/etc/resolv.conf", resolv)
        env = ["env", "DEBIAN_FRONTEND=noninteractive"]
        _run(["chroot", str(root), "apt-get", "update", "-q"], "apt-get update in the image")
        _run(["chroot", str(root), *env, "apt-get", "install", "-y", "-q",
              "--no-install-recommends", *recipe.apt], "apt-get install in the image")
        resolv.unlink()
    subprocess.run(["chroot", str(root), "apt-get", "clean"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for cache in (root / "var/lib/apt/lists").glob("*"):
        if cache.is_file():
            cache.unlink()


def _check_python(root: Path, recipe: Recipe) -> None:
    done = subprocess.run(["chroot", str(root), "/usr/bin/python3", "-c",
                           "import platform;print(platform.python_version())"],
                          capture_output=True, text=True)
    inside = done.stdout.strip()
    if inside != recipe.python:
        raise ImageError(f"the image's /usr/bin/python3 is {inside or 'missing'} but this "
                         f"machine's is {recipe.python}, so teamhub's runtime could not run "
                         "inside it; update this machine's python3 (`apt-get upgrade python3`) "
                         "and build again")


def build(name: str, apt: list[str], engine: Engine | None = None,
          say: Say = _say_stderr) -> dict[str, Any]:
    """Build image NAME (or reuse the one built from the same inputs); return its summary."""
    engine = engine or Engine()
    recipe = Recipe.for_this_machine(name, apt)
    engine.ping()
    digest = recipe.inputs_hash()
    ref = f"{REPO}/{name}:{digest}"
    same = engine.images(label=f"{HASH_LABEL}={digest}")
    if same:
        engine.tag(same[0]["Id"], f"{REPO}/{name}", digest)
        engine.tag(ref, f"{REPO}/{name}", "latest")
        say(f"{ref} is up to date (same recipe and inputs); tagged {REPO}/{name}:latest")
        return _summary(engine, name, cached=True)
    _require_tools()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="teamhub-image-", dir="/var/tmp") as work:
        root = Path(work) / "rootfs"
        say(f"debootstrap {recipe.distro} {recipe.suite} from {recipe.mirror} "
            f"with {', '.join(recipe.packages)} (a few minutes)")
        DEBOOTSTRAP_CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}",
              f"--cache-dir={DEBOOTSTRAP_CACHE}", recipe.suite, str(root), recipe.mirror],
             "debootstrap")
        _configure_root(root, recipe, say)
        _check_python(root, recipe)
        say(f"importing the root filesystem into Docker as {ref}")
        tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "--acls", "-C", str(root),
                                "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            engine.import_image(tar.stdout, f"{REPO}/{name}", digest,
                                [f"LABEL {LABEL}={name}", f"LABEL {HASH_LABEL}={digest}",
                                 'CMD ["/bin/bash"]'])
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                engine.remove_image(ref)
                raise ImageError(f"tar of the image's root filesystem failed "
                                 f"(exit code {tar.returncode})")
    engine.tag(ref, f"{REPO}/{name}", "latest")
    _remove_older(engine, name, keep=digest)
    say(f"built {ref} in {time.monotonic() - began:.0f}s; tagged {REPO}/{name}:latest")
    return _summary(engine, name, cached=False)


def _remove_older(engine: Engine, name: str, keep: str) -> None:
    """Older builds of NAME go (best effort: one a container still runs from stays)."""
    for image in engine.images(label=LABEL):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{REPO}/{name}:") and tag.split(":")[-1] not in (keep, "latest"):
                try:
                    engine.remove_image(tag)
                except DockerError:
                    pass


def _summary(engine: Engine, name: str, cached: bool) -> dict[str, Any]:
    for entry in list_images(engine):
        if entry["name"] == name:
            return {**entry, "cached": cached}
    raise ImageError(f"image {name} vanished right after it was built")


def list_images(engine: Engine | None = None) -> list[dict[str, Any]]:
    """The teamhub images in the local engine: name, reference, recipe hash, size, created."""
    engine = engine or Engine()
    found = []
    for image in engine.images(label=LABEL):
        labels = image.get("Labels") or {}
        repo_tags = [t for t in image.get("RepoTags") or [] if t.startswith(f"{REPO}/")]
        for name in sorted({t[len(REPO) + 1:].rsplit(":", 1)[0] for t in repo_tags}):
            tags = [t for t in repo_tags if t.startswith(f"{REPO}/{name}:")]
            found.append({
                "name": name,
                "reference": reference(name) if reference(name) in tags else tags[0],
                "current": reference(name) in tags,
                "recipe": labels.get(HASH_LABEL, ""),
                "id": image.get("Id", ""),
                "size_mb": round((image.get("Size") or 0) / 1e6, 1),
                "created": time.strftime("%Y-%m-%d %H:%M:%S",
                                         time.gmtime(image.get("Created") or 0)),
            })
    return sorted(found, key=lambda e: (e["name"], not e["current"]))


def remove(name: str, engine: Engine | None = None) -> int:
    """Remove every build of image NAME; how many tags went.

    Refused while a container was started from one of NAME's tags, or runs from an image
    that would be deleted (one no other name still tags)."""
    engine = engine or Engine()
    check_name(name)
    tags: list[str] = []
    doomed: set[str] = set()
    for image in engine.images(label=LABEL):
        repo_tags = image.get("RepoTags") or []
        mine = [t for t in repo_tags if t.startswith(f"{REPO}/{name}:")]
        tags += mine
        if mine and len(mine) == len(repo_tags):
            doomed.add(image["Id"])
    if not tags:
        raise ImageError(f"there is no teamhub image {name!r}; `teamhub image list` shows them")
    users = [c["Names"][0].lstrip("/") for c in engine.containers()
             if c.get("Image") in tags or c.get("ImageID") in doomed]
    if users:
        raise ImageError(f"image {name} is used by container(s) {', '.join(sorted(users))}; "
                         "stop those servers first")
    for tag in sorted(tags):
        engine.remove_image(tag)
    return len(tags)


def present(image: str, engine: Engine | None = None) -> bool:
    return (engine or Engine()).image(reference(image)) is not None


def build_hint(image: str) -> str:
    """How to get IMAGE (a `docker.image(s)` value) onto this machine."""
    if reference(image) != image:
        return f"build it with `teamhub image build {image}`"
    return "load or build it on this machine (teamhub never pulls images)"


def missing_message(image: str, setting: str = "") -> str:
    """What to tell a user or admin whose image IMAGE is not on this machine; SETTING
    names where it was configured, for the admin."""
    where = f" ({setting} = {image!r})" if setting else ""
    return (f"the container image {reference(image)}{where} is not on this machine; "
            f"{build_hint(image)}")


def missing_allowed(table: dict[str, Any], engine: Engine) -> str | None:
    """None when every `docker.images` entry is a local image, else one line naming them."""
    missing = [name for name in table if not present(name, engine)]
    if not missing:
        return None
    named = "; ".join(f"{reference(name)} ({build_hint(name)})" for name in missing)
    return (f"docker.images lists image(s) not on this machine: {named}; or remove them "
            "from docker.images (`teamhub config unset docker.images` drops the list)")
