"""`teamhub image build NAME [--apt PKG…] [--pip PKG…] [--from LOCAL_IMAGE]`, offline.

By default an image is this machine's own distribution release, installed by debootstrap
(minbase) from the same package mirror apt uses here. With `--from`, it starts from the
files of an image already in the local engine instead (exported from a container that
is created, never started, then removed); it is never pulled. Then, in a chroot: this
machine's CA certificates, /etc/pip.conf and apt settings, the `--apt` packages, and the
`--pip` packages in the image's own environment IMAGE_ENV (a venv of the image's
/usr/bin/python3 that also sees apt's python3-* packages, with ipykernel), which is a
kernel inside containers, "Python (image NAME)". The result is imported into the local
engine with `POST /images/create` (what `docker import` does). The image has the same
/usr/bin/python3 as this machine (checked), so the host's runtime (a venv of
/usr/bin/python3) and shared envs run inside it unchanged when mounted at their paths.

The recipe hash covers everything that goes in (RECIPE_VERSION for the steps below,
release, mirror, packages, pip packages, the `--from` image's id, CA certificates,
pip.conf, apt settings, the host's Python version): building again with the same inputs
reuses the image, under any name; changing any of them builds a new one. debootstrap's
downloads are kept in DEBOOTSTRAP_CACHE, so a rebuild downloads nothing new.

Plain OS plumbing: nothing here imports JupyterHub.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import DockerError, ImageError
from .images import HASH_LABEL, LABEL, REPO, check_name, list_images, reference
from .system.docker import Engine

# Bump when the build steps below change what ends up in an image.
RECIPE_VERSION = "1"
DEBOOTSTRAP_CACHE = Path("/var/cache/teamhub/debootstrap")
# python3-venv: personal envs (~/.venvs) are made inside containers too.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "procps", "less")
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?")
# A requirement as pip takes it (name, extras, versions); never a path, URL or option.
_VERSION = r"(===?|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!_-]+"
PIP_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?"
                    rf"({_VERSION}(,{_VERSION})*)?")
CA_DIR = Path("/usr/local/share/ca-certificates")
IMAGE_ENV = "/opt/teamhub-image"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


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
    pip: list[str] = field(default_factory=list)
    # --from: the local image's reference and id (empty: debootstrap).
    base: str = ""
    base_id: str = ""

    @classmethod
    def for_this_machine(cls, name: str, apt: list[str], pip: Sequence[str] = (),
                         base: str = "", base_id: str = "") -> Recipe:
        check_name(name)
        for pkg in apt:
            if not PACKAGE_RE.fullmatch(pkg):
                raise ImageError(f"{pkg!r} is not a Debian/Ubuntu package name")
        for req in pip:
            if not PIP_RE.fullmatch(req):
                raise ImageError(f"{req!r} is not a Python package name with an optional "
                                 "version, e.g. requests or numpy==2.1.3 (no paths, URLs or "
                                 "options)")
        release = _os_release()
        distro, suite = release.get("ID", ""), release.get("VERSION_CODENAME", "")
        if not base and (distro not in ("debian", "ubuntu") or not suite):
            raise ImageError(f"images are built from this machine's release with debootstrap, "
                             f"which needs Debian or Ubuntu (this is {distro or 'unknown'} "
                             f"{suite})",
                             "build on an image of your own with --from IMAGE, or "
                             "set docker.image to it")
        return cls(name=name, apt=sorted(set(apt)), suite=suite, distro=distro,
                   mirror=_mirror(distro), python=_host_python(), pip=sorted(set(pip)),
                   base=base, base_id=base_id)

    @property
    def packages(self) -> list[str]:
        return sorted(set(BASE_PACKAGES) | set(self.apt))

    def inputs_hash(self) -> str:
        digest = hashlib.sha256()
        parts = [RECIPE_VERSION, self.distro, self.suite, self.mirror, self.python,
                 " ".join(self.packages)]
        # Only when used: images built without them keep the hash they always had.
        if self.pip:
            parts.append("pip " + " ".join(self.pip))
        if self.base_id:
            parts.append("from " + self.base_id)
        for part in parts:
            digest.update(part.encode() + b"\0")
        extra = [*sorted(CA_DIR.glob("**/*.crt")), Path("/etc/pip.conf"), *_apt_settings()]
        for path in extra:
            if path.is_file():
                digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:12]


Say = Callable[[str], None]


def _say_stderr(text: str) -> None:
    print(f"teamhub image: {text}", file=sys.stderr, flush=True)


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run ARGV with its output on our stderr (progress); fail with WHAT on error."""
    done = subprocess.run(argv, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL,
                          env=env)
    if done.returncode != 0:
        raise ImageError(f"{what} failed (exit code {done.returncode})", "its output is above")


def _chroot_env(root: Path) -> dict[str, str]:
    """A clean environment for tools in the image: nothing of ours but the proxy settings."""
    env = {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.update({k: v for k, v in os.environ.items() if k in PROXY_VARS})
    if not (root / "etc/pip.conf").is_file():
        # No pip.conf here to copy: pip still trusts this machine's CAs (copied in).
        env["PIP_CERT"] = "/etc/ssl/certs/ca-certificates.crt"
    return env


def _require_tools(debootstrap: bool) -> None:
    tools = [("tar", "tar"), ("chroot", "coreutils")]
    if debootstrap:
        tools.insert(0, ("debootstrap", "debootstrap"))
    for tool, package in tools:
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} is not installed",
                             "install it with "
                             f"`apt-get install {package}`")


class _Network:
    """The host's resolv.conf inside ROOT while apt or pip download; the image's after."""

    def __init__(self, root: Path) -> None:
        self.resolv = root / "etc/resolv.conf"
        self.saved = root / "etc/.resolv.conf.teamhub"

    def __enter__(self) -> None:
        if self.resolv.exists() or self.resolv.is_symlink():
            os.replace(self.resolv, self.saved)
        shutil.copy2("/etc/resolv.conf", self.resolv)

    def __exit__(self, *exc: object) -> None:
        self.resolv.unlink(missing_ok=True)
        if self.saved.exists() or self.saved.is_symlink():
            os.replace(self.saved, self.resolv)


def _update_ca(root: Path) -> bool:
    """Rebuild the image's CA bundle with this machine's CAs; False: no tool to do it."""
    if not any((root / d / "update-ca-certificates").exists() for d in ("usr/sbin", "sbin")):
        return False
    _run(["chroot", str(root), "update-ca-certificates"], "update-ca-certificates in the image",
         env=_chroot_env(root))
    return True


def _configure_root(root: Path, recipe: Recipe, say: Say) -> None:
    """This machine's CA certificates, pip.conf and apt settings, so tools inside work alike."""
    target = root / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for crt in sorted(CA_DIR.glob("*.crt")):
        shutil.copy2(crt, target / crt.name)
    trusted = _update_ca(root)
    if Path("/etc/pip.conf").is_file():
        shutil.copy2("/etc/pip.conf", root / "etc/pip.conf")
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    if sources and not recipe.base:
        # This machine's release: its sources too. A --from image keeps its own.
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        for src in sources:
            shutil.copy2(src, root / "etc/apt/sources.list.d" / src.name)
    for conf in _apt_settings():
        if conf.parent.name == "apt.conf.d" and (root / "etc/apt/apt.conf.d").is_dir():
            shutil.copy2(conf, root / "etc/apt/apt.conf.d" / conf.name)
    if recipe.apt:
        say(f"installing {' '.join(recipe.apt)} with apt")
        with _Network(root):
            env = ["env", "DEBIAN_FRONTEND=noninteractive"]
            _run(["chroot", str(root), "apt-get", "update", "-q"], "apt-get update in the image")
            _run(["chroot", str(root), *env, "apt-get", "install", "-y", "-q",
                  "--no-install-recommends", *recipe.apt], "apt-get install in the image")
        if not trusted:
            trusted = _update_ca(root)  # the --apt packages may have brought the tool
    if recipe.pip and not trusted:
        raise ImageError(f"the base image {recipe.base} has no update-ca-certificates, so pip "
                         "inside could not trust this machine's CA certificates",
                         "add "
                         "--apt ca-certificates")
    subprocess.run(["chroot", str(root), "apt-get", "clean"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for cache in (root / "var/lib/apt/lists").glob("*"):
        if cache.is_file():
            cache.unlink()


def _install_pip(root: Path, recipe: Recipe, say: Say) -> None:
    """The --pip packages in IMAGE_ENV, a kernel of its own inside containers."""
    if not recipe.pip:
        return
    say(f"installing {' '.join(recipe.pip)} with pip into {IMAGE_ENV} (with ipykernel: the "
        f"kernel \"Python (image {recipe.name})\")")
    env = _chroot_env(root)
    chroot = ["chroot", str(root)]
    with _Network(root):
        _run([*chroot, "/usr/bin/python3", "-m", "venv", "--system-site-packages", IMAGE_ENV],
             "python3 -m venv in the image", env=env)
        _run([*chroot, f"{IMAGE_ENV}/bin/pip", "install", "--no-cache-dir", "--progress-bar",
              "off", "ipykernel", *recipe.pip], "pip install in the image", env=env)
    _run([*chroot, f"{IMAGE_ENV}/bin/python", "-m", "ipykernel", "install", "--prefix",
          "/usr/local", "--name", f"image-{recipe.name}", "--display-name",
          f"Python (image {recipe.name})"], "ipykernel install in the image", env=env)


def _check_python(root: Path, recipe: Recipe) -> None:
    done = subprocess.run(["chroot", str(root), "/usr/bin/python3", "-c",
                           "import platform;print(platform.python_version())"],
                          capture_output=True, text=True, env=_chroot_env(root))
    inside = done.stdout.strip()
    if inside != recipe.python:
        fix = ("use a base image with this machine's Python" if recipe.base else
               "update this machine's python3 (`apt-get upgrade python3`) and build again")
        raise ImageError(f"the image's /usr/bin/python3 is {inside or 'missing'} but this "
                         f"machine's is {recipe.python}, so teamhub's runtime could not run "
                         "inside it", f"{fix}")


def resolve_base(image: str, engine: Engine) -> tuple[str, dict[str, Any]]:
    """The local image --from IMAGE names (a teamhub name or a reference), and its details."""
    candidates = [reference(image)] + ([image] if reference(image) != image else [])
    for ref in candidates:
        info = engine.image(ref)
        if info is not None:
            return ref, info
    raise ImageError(f"--from {image}: no such image on this machine ({' or '.join(candidates)}"
                     ")",
                     "teamhub never pulls: build it with `teamhub image build`, or load it "
                     "with `docker load`")


def _unpack_base(engine: Engine, ref: str, image_id: str, root: Path, say: Say) -> None:
    """ROOT becomes the files of image IMAGE_ID (REF; a container created for it, never
    started). By id: the image whose id went into the recipe hash, even if REF moves."""
    root.mkdir()
    ident = engine.create("", {"Image": image_id, "Cmd": ["/bin/true"], "Entrypoint": [],
                               "HostConfig": {"NetworkMode": "none"}})
    try:
        tar = subprocess.Popen(["tar", "-x", "--numeric-owner", "-C", str(root), "-f", "-"],
                               stdin=subprocess.PIPE)
        assert tar.stdin is not None
        try:
            size = engine.export(ident, tar.stdin, lambda n: say(f"exported {n / 1e6:.0f} MB"))
        finally:
            tar.stdin.close()
            if tar.wait() != 0:
                raise ImageError(f"unpacking {ref} failed (tar exit code {tar.returncode})")
    finally:
        engine.remove(ident)
    (root / ".dockerenv").unlink(missing_ok=True)
    say(f"unpacked {ref} ({size / 1e6:.0f} MB)")


def _env_changes(info: dict[str, Any]) -> list[str]:
    """The --from image's environment (PATH of a conda image, say), kept in the new one."""
    changes = []
    for item in (info.get("Config") or {}).get("Env") or []:
        key, sep, value = item.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            changes.append(f"ENV {key}={json.dumps(value)}")
    return changes


def build(name: str, apt: list[str], engine: Engine | None = None, say: Say = _say_stderr,
          pip: list[str] | None = None, base: str = "") -> dict[str, Any]:
    """Build image NAME (or reuse the one built from the same inputs); return its summary."""
    engine = engine or Engine()
    # Bad names and packages are refused before anything else happens.
    recipe = Recipe.for_this_machine(name, apt, pip or [], base=base)
    engine.ping()
    if base:
        base_ref, base_info = resolve_base(base, engine)
        if base_ref == reference(name):
            raise ImageError(f"image {name} cannot be built from itself",
                             "give the new image "
                             "another name")
        recipe = replace(recipe, base=base_ref, base_id=base_info["Id"])
    else:
        base_ref, base_info = "", {}
    digest = recipe.inputs_hash()
    ref = f"{REPO}/{name}:{digest}"
    same = engine.images(label=f"{HASH_LABEL}={digest}")
    if same:
        engine.tag(same[0]["Id"], f"{REPO}/{name}", digest)
        engine.tag(ref, f"{REPO}/{name}", "latest")
        say(f"{ref} is up to date (same recipe and inputs); tagged {REPO}/{name}:latest")
        return _summary(engine, name, cached=True)
    _require_tools(debootstrap=not base)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="teamhub-image-", dir="/var/tmp") as work:
        root = Path(work) / "rootfs"
        if base:
            say(f"starting from the local image {base_ref}")
            _unpack_base(engine, base_ref, base_info["Id"], root, say)
        else:
            say(f"debootstrap {recipe.distro} {recipe.suite} from {recipe.mirror} "
                f"with {', '.join(recipe.packages)} (a few minutes)")
            DEBOOTSTRAP_CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
            _run(["debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}",
                  f"--cache-dir={DEBOOTSTRAP_CACHE}", recipe.suite, str(root), recipe.mirror],
                 "debootstrap")
        _configure_root(root, recipe, say)
        _install_pip(root, recipe, say)
        _check_python(root, recipe)
        say(f"importing the root filesystem into Docker as {ref}")
        tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "--acls", "-C", str(root),
                                "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            engine.import_image(tar.stdout, f"{REPO}/{name}", digest,
                                [*_env_changes(base_info),
                                 f"LABEL {LABEL}={name}", f"LABEL {HASH_LABEL}={digest}",
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
