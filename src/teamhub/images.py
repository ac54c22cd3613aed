"""Single-user images in the local Docker engine: names, `teamhub image list|remove`.

An image is `teamhub/NAME:<recipe hash>` and `teamhub/NAME:latest`, labelled with its
name and recipe hash; teamhub.image_build makes them (`teamhub image build`). A
`docker.image(s)` value is such a NAME or a full local reference. Nothing is ever pulled
from a registry.

Plain OS plumbing: nothing here imports JupyterHub.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .errors import ImageError
from .system.docker import Engine

REPO = "teamhub"
LABEL = "org.teamhub.image"
HASH_LABEL = "org.teamhub.recipe"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def reference(image: str) -> str:
    """The Docker reference of a `docker.image` value: a teamhub image name, or a full ref."""
    if ":" in image or "/" in image:
        return image
    return f"{REPO}/{image}:latest"


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise ImageError(f"image name {name!r} is not valid",
                         "use lower-case letters, digits, "
                         "'.', '_' or '-' (e.g. base)")


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
        raise ImageError(f"there is no teamhub image {name!r}", "`teamhub image list` shows them")
    users = [c["Names"][0].lstrip("/") for c in engine.containers()
             if c.get("Image") in tags or c.get("ImageID") in doomed]
    if users:
        raise ImageError(f"image {name} is used by container(s) {', '.join(sorted(users))}",
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


def missing_problem(image: str, setting: str = "") -> str:
    """That IMAGE is not on this machine (without the fix, `build_hint`); SETTING names
    where it was configured, for the admin."""
    where = f" ({setting} = {image!r})" if setting else ""
    return f"the container image {reference(image)}{where} is not on this machine"


def missing_message(image: str, setting: str = "") -> str:
    """What to tell a user or admin whose image IMAGE is not on this machine: the
    problem and how to fix it, as one line."""
    return f"{missing_problem(image, setting)}; {build_hint(image)}"


def missing_allowed(table: dict[str, Any], engine: Engine) -> str | None:
    """None when every `docker.images` entry is a local image, else one line naming them."""
    missing = [name for name in table if not present(name, engine)]
    if not missing:
        return None
    named = "; ".join(f"{reference(name)} ({build_hint(name)})" for name in missing)
    return (f"docker.images lists image(s) not on this machine: {named}; or remove them "
            "from docker.images (`teamhub config unset docker.images` drops the list)")
