"""`teamhub tls ...`: HTTPS on the public port."""

from __future__ import annotations

import click

from .. import settings as settings_mod
from ..tls import self_signed as make_self_signed
from . import Context, cli, pass_ctx


@cli.group()
def tls() -> None:
    """HTTPS for the public port (settings tls.cert and tls.key)."""


@tls.command("self-signed")
@click.option("--hostname", "hostnames", multiple=True, metavar="NAME",
              help="Name or IP address the certificate is for; repeat for several "
                   "(default: this machine's name and localhost).")
@click.option("--days", type=int, default=825, show_default=True,
              help="How long the certificate is valid.")
@pass_ctx
def self_signed(ctx: Context, hostnames: tuple[str, ...], days: int) -> None:
    """Make a key (root-only) and a self-signed certificate, and turn TLS on with them.

    They are written to `<state_dir>/tls/` and tls.cert / tls.key are set in the
    settings file; restart the hub to serve HTTPS. Browsers warn about a
    self-signed certificate until it is trusted; for a public name, use one from
    a certificate authority instead (`teamhub config set tls.cert ...`).
    """
    folder = ctx.paths.state_dir / "tls"
    cert, key = folder / "cert.pem", folder / "key.pem"
    info = make_self_signed(cert, key, list(hostnames), days)
    settings_mod.set_value(ctx.config_file, "tls.cert", str(cert))
    settings_mod.set_value(ctx.config_file, "tls.key", str(key))
    click.echo(f"made a self-signed certificate {cert} for {', '.join(info.names)}, valid "
               f"until {info.not_after:%Y-%m-%d} (key {key}, root only); tls.cert and tls.key "
               "are set: restart the hub to serve HTTPS")
