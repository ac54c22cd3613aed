"""`teamhub-env`: personal environments for the user running it (inside their server).

`teamhub-env create NAME PKG ...` makes ~/.venvs/NAME with uv (the runtime's
copy, from the runtime's base Python) and ipykernel; it shows up as the kernel
"Python (NAME, personal)" within seconds, with no registration step.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click

from ..errors import TeamhubError
from ..system.uv import Uv
from .bytecode import compile_site, reusable, site_packages
from .kernels import has_ipykernel
from .store import check_name


def _uv() -> Uv:
    here = Path(sys.executable).parent / "uv"
    found = here if here.exists() else shutil.which("uv")
    if not found:
        raise TeamhubError("uv is not installed in teamhub's runtime", "ask your admin")
    return Uv(Path(found))  # the user's own cache (~/.cache/uv)


def venvs_dir() -> Path:
    return Path(os.path.expanduser("~/.venvs"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Personal environments: ~/.venvs/NAME, each a kernel "Python (NAME, personal)"."""


@main.command()
@click.argument("name")
@click.argument("packages", nargs=-1)
@click.option("--python", "python", default=None,
              help="Base interpreter (default: the one teamhub's runtime is built from).")
def create(name: str, packages: tuple[str, ...], python: str | None) -> None:
    """Make ~/.venvs/NAME with ipykernel and PACKAGES."""
    try:
        check_name(name)
        target = venvs_dir() / name
        if target.exists():
            raise TeamhubError(f"{target} already exists", "remove it first or pick another name")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        uv = _uv()
        try:
            uv.venv(target, python or sys.executable, echo=click.echo)
            env_python = target / "bin" / "python"
            site = site_packages(env_python)
            # The user's other envs share files with this one (hard links from
            # their uv cache): their bytecode is reused, the rest compiled; with
            # nothing to reuse, uv compiles, as it always did.
            rel = site.relative_to(target) if site.is_relative_to(target) else None
            index = reusable(site, [env / rel for env in venvs_dir().iterdir()
                                    if rel is not None and env != target])
            uv.install(env_python, ["ipykernel", *packages], echo=click.echo,
                       compile_bytecode=not index)
            reused = compile_site(env_python, site, index)
            click.echo(f"Bytecode: {reused} compiled modules reused from your other envs")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    except TeamhubError as exc:
        click.echo(f"teamhub-env: error: {exc}", err=True)
        sys.exit(1)
    click.echo(f'created {target}: it appears as the kernel "Python ({name}, personal)"')


@main.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_envs(as_json: bool) -> None:
    """List personal environments and whether they are kernels (have ipykernel)."""
    base = venvs_dir()
    envs = sorted(base.iterdir()) if base.is_dir() else []
    if as_json:
        click.echo(json.dumps([{"name": env.name, "kernel": has_ipykernel(env),
                                "path": str(env)} for env in envs]))
        return
    for env in envs:
        state = "kernel" if has_ipykernel(env) else "no ipykernel: not a kernel"
        click.echo(f"{env.name}\t{state}\t{env}")


@main.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete ~/.venvs/NAME (its kernel disappears)."""
    target = venvs_dir() / check_name(name)
    if not target.is_dir():
        click.echo(f"teamhub-env: error: {target} does not exist", err=True)
        sys.exit(1)
    shutil.rmtree(target)
    click.echo(f"deleted {target}")
