"""`teamhub env ...`: shared environments, each a kernel in allowed users' launchers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..envs import admin
from ..envs.store import SharedEnvs, merge_packages, read_requirements
from .base import Context, cli, echo_json, echo_listing, pass_ctx


def _envs(ctx: Context) -> SharedEnvs:
    return admin.shared_envs(ctx.settings)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@cli.group()
def env() -> None:
    """Shared environments (built with uv): every one is a kernel "Python (NAME)".

    Each change builds a new revision; the active one switches only when the
    build succeeded. Users make personal environments with `teamhub-env`
    inside their server.
    """


@env.command()
@click.argument("name")
@click.argument("packages", nargs=-1)
@click.option("--python", "python", metavar="VERSION",
              help="Python version or interpreter path found on this machine "
                   "(default: the runtime's Python). Nothing is downloaded.")
@click.option("-r", "--requirements", "req_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also install the packages listed in this requirements file.")
@click.option("--groups", metavar="G1,G2",
              help="Only members of these groups see the environment (default: everyone).")
@pass_ctx
def create(ctx: Context, name: str, packages: tuple[str, ...], python: str | None,
           req_files: tuple[Path, ...], groups: str | None) -> None:
    """Create shared environment NAME with PACKAGES (ipykernel is always added)."""
    spec = list(packages)
    for f in req_files:
        spec = merge_packages(spec, read_requirements(f))
    admin.create(ctx.settings, name, spec, python=python, groups=admin.parse_groups(groups),
                 echo=click.echo)


@env.command()
@click.argument("name")
@click.argument("packages", nargs=-1, required=True)
@pass_ctx
def install(ctx: Context, name: str, packages: tuple[str, ...]) -> None:
    """Add PACKAGES to NAME (a new revision)."""
    admin.install(ctx.settings, name, list(packages), echo=click.echo)


@env.command()
@click.argument("name")
@click.argument("packages", nargs=-1, required=True)
@pass_ctx
def uninstall(ctx: Context, name: str, packages: tuple[str, ...]) -> None:
    """Remove PACKAGES from NAME (a new revision built without them)."""
    admin.uninstall(ctx.settings, name, list(packages), echo=click.echo)


@env.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def list_envs(ctx: Context, as_json: bool) -> None:
    """List shared environments: current revision, packages asked for, groups."""
    rows = admin.rows(_envs(ctx))
    echo_listing(rows, as_json,
                 (f"{r['name']}\trev {r['revision']}\t{','.join(r['groups']) or 'everyone'}"
                  f"\t{' '.join(r['packages'])}" for r in rows))


@env.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@pass_ctx
def show(ctx: Context, name: str, as_json: bool) -> None:
    """Show NAME: path, groups, revision and every installed package with its version."""
    envs = _envs(ctx)
    meta = envs.meta(name)
    rev = envs.revision(meta, meta["current"])
    info = {"name": name, "path": str(envs.root / name / "current"), "groups": meta["groups"],
            "revision": meta["current"], "python": rev.get("python_version"),
            "requested": rev["packages"],
            "installed": envs.uv.packages(envs.current_python(name))}
    if as_json:
        echo_json(info)
        return
    for key in ("name", "path", "revision", "python"):
        click.echo(f"{key}: {info[key]}")
    click.echo(f"groups: {', '.join(meta['groups']) or 'everyone'}")
    click.echo(f"requested: {' '.join(rev['packages']) or '(none)'}")
    for pkg, version in sorted(info["installed"].items()):
        click.echo(f"  {pkg}=={version}")


@env.command()
@click.argument("name")
@pass_ctx
def export(ctx: Context, name: str) -> None:
    """Print NAME's exact package set as requirements with hashes.

    The installed set (`uv pip freeze`) is compiled again with
    `uv pip compile --generate-hashes`: same pins, plus every file's sha256,
    ready for `pip install --require-hashes -r`.
    """
    envs = _envs(ctx)
    envs.meta(name)
    python = envs.current_python(name)
    click.echo(envs.uv.lock_with_hashes(python, envs.uv.freeze(python)), nl=False)


@env.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: Context, name: str, yes: bool) -> None:
    """Delete NAME and all its revisions; its kernel disappears from launchers."""
    envs = _envs(ctx)
    envs.meta(name)
    if not yes:
        click.confirm(f"Delete shared environment {name}?", abort=True)
    envs.delete(name)
    admin.refresh_visibility(ctx.settings)
    click.echo(f"deleted environment {name} (running kernels of it keep running until stopped)")


@env.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def history(ctx: Context, name: str, as_json: bool) -> None:
    """List NAME's kept revisions, newest last; `*` marks the current one."""
    meta = _envs(ctx).meta(name)
    if as_json:
        echo_json([{**r, "current": r["rev"] == meta["current"]} for r in meta["revisions"]])
        return
    for r in meta["revisions"]:
        mark = "*" if r["rev"] == meta["current"] else " "
        click.echo(f"{mark} {r['rev']}\t{_when(r['created'])}\t{r['action']}\t"
                   f"[{' '.join(r['packages'])}]")


@env.command()
@click.argument("name")
@click.argument("rev", required=False, type=int)
@pass_ctx
def rollback(ctx: Context, name: str, rev: int | None) -> None:
    """Make revision REV of NAME current again (default: the one before current)."""
    target = _envs(ctx).rollback(name, rev)
    click.echo(f"environment {name}: revision {target} is now current "
               "(new kernels use it; running ones keep theirs until restarted)")


@env.command()
@click.argument("name")
@click.option("--groups", metavar="G1,G2", required=True,
              help="Comma-separated groups; an empty string makes NAME visible to everyone.")
@pass_ctx
def access(ctx: Context, name: str, groups: str) -> None:
    """Set which groups see NAME (takes effect at users' next launcher refresh)."""
    click.echo(admin.set_access(ctx.settings, name, admin.parse_groups(groups)))


@env.command()
@click.option("--json", "as_json", is_flag=True, help="Print the index as JSON.")
@pass_ctx
def sync(ctx: Context, as_json: bool) -> None:
    """Rewrite the visibility index from current group members (after group changes)."""
    index = admin.refresh_visibility(ctx.settings)
    if as_json:
        click.echo(json.dumps(index, indent=2, sort_keys=True))
    else:
        envs = index["envs"]
        assert isinstance(envs, dict)
        click.echo(f"visibility of {len(envs)} environment(s) updated")


