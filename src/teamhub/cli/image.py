"""`teamhub image build|list|remove`: single-user images for the docker backend, built offline."""

from __future__ import annotations

import click

from .. import image_build, images
from .base import cli, echo_json


@cli.group()
def image() -> None:
    """Container images for users' servers (spawner.backend = "docker").

    Images are built here from this machine's own distribution release (debootstrap +
    the local Docker engine); nothing is ever pulled from a registry.
    """


@image.command("build")
@click.argument("name")
@click.option("--apt", "apt", multiple=True, metavar="PKG",
              help="Also install this Debian/Ubuntu package (repeatable).")
@click.option("--pip", "pip", multiple=True, metavar="PKG",
              help="Also install this Python package (e.g. numpy or numpy==2.1.3; "
              "repeatable) into the image's own environment /opt/teamhub-image, the kernel "
              "\"Python (image NAME)\" in containers.")
@click.option("--from", "base", metavar="LOCAL_IMAGE", default="",
              help="Start from this image already on this machine (a teamhub image name or "
              "a full reference) instead of this machine's release; never pulled.")
def build_cmd(name: str, apt: tuple[str, ...], pip: tuple[str, ...], base: str) -> None:
    """Build image NAME (reused when nothing that goes into it changed).

    Progress goes to stderr; the image's reference is printed on stdout."""
    summary = image_build.build(name, list(apt), pip=list(pip), base=base)
    click.echo(summary["reference"])


@image.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """The teamhub images on this machine."""
    found = images.list_images()
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("No teamhub images; build one with `teamhub image build base`.")
        return
    for entry in found:
        mark = "" if entry["current"] else "  (older build)"
        click.echo(f"{entry['name']:<16} {entry['reference']:<32} {entry['size_mb']:>8} MB  "
                   f"{entry['created']}{mark}")


@image.command("remove")
@click.argument("name")
def remove_cmd(name: str) -> None:
    """Remove every build of image NAME (refused while a server runs from it)."""
    count = images.remove(name)
    click.echo(f"Removed image {name} ({count} tag{'s' if count != 1 else ''}).")
