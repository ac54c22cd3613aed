"""`teamhub doctor`: is everything in order, and if not, what to do."""

from __future__ import annotations

import sys

import click

from .. import doctor as doctor_mod
from .base import Context, cli, echo_json, pass_ctx


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--check", "only", multiple=True, metavar="NAME",
              help="Run only this check (repeatable); names as listed by doctor.")
@click.option("--fix", is_flag=True,
              help="Repair what doctor knows how to (hub users that are no teamhub account), "
                   "then check again.")
@pass_ctx
def doctor(ctx: Context, as_json: bool, only: tuple[str, ...], fix: bool) -> None:
    """Check the running teamhub: hub, proxy and routes, databases, the hub's users
    against the accounts, secrets' permissions, the runtime and every shared env's
    kernel as an unprivileged user, environment variables in kernels, limits, TLS
    certificate, browser isolation, free disk and ports.

    Each check passes or fails with a hint; a passing check may warn (with a hint,
    exit code unchanged); the exit code is 1 when any fails. With --fix, what doctor
    can repair is repaired and checked again.
    Run it as root.
    """
    names = [n for n, _ in doctor_mod.CHECKS]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise click.UsageError(f"unknown check {unknown[0]!r}; checks: {', '.join(names)}")
    results = doctor_mod.run_checks(ctx.settings, list(only) or None)
    if fix:
        repaired = doctor_mod.repair(ctx.settings, results)
        for name, what in repaired:
            click.echo(f"fix  {name}: {what}", err=as_json)
        again = {r.name: r for r in doctor_mod.run_checks(ctx.settings,
                                                           [n for n, _ in repaired])} \
            if repaired else {}
        results = [again.get(r.name, r) for r in results]
    if as_json:
        echo_json(doctor_mod.as_json(results))
    else:
        for r in results:
            mark = ("warn" if r.warning else "ok  ") if r.ok else "FAIL"
            click.echo(f"{mark} {r.name}: {r.detail}")
            if (not r.ok or r.warning) and r.fix:
                click.echo(f"     fix: {r.fix}")
        failed = sum(not r.ok for r in results)
        click.echo(f"{len(results) - failed} passed, {failed} failed")
    if not all(r.ok for r in results):
        sys.exit(1)
