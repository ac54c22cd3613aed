"""`teamhub tls ...`: HTTPS on the public port."""

from __future__ import annotations

import click

from .. import settings as settings_mod
from ..tls import default_hostnames, domain_names
from ..tls import self_signed as make_self_signed
from .base import Context, cli, pass_ctx


@cli.group()
def tls() -> None:
    """HTTPS for the public port (settings tls.cert and tls.key)."""


@tls.command("self-signed")
@click.option("--hostname", "hostnames", multiple=True, metavar="NAME",
              help="Name or IP address the certificate is for; repeat for several "
                   "(default: this machine's name and localhost). With hub.domain set, the "
                   "domain and *.domain are always added.")
@click.option("--days", type=int, default=825, show_default=True,
              help="How long the certificate is valid.")
@pass_ctx
def self_signed(ctx: Context, hostnames: tuple[str, ...], days: int) -> None:
    """Make a key (root-only) and a self-signed certificate, and turn TLS on with them.

    They are written to `<state_dir>/tls/` and tls.cert / tls.key are set in the
    settings file; restart the hub to serve HTTPS. Browsers warn about a
    self-signed certificate until it is trusted; for a public name, use one from
    a certificate authority instead (`teamhub config set tls.cert ...`).
    With `hub.domain` set it covers the domain and `*.domain` (every user's origin).
    """
    folder = ctx.paths.state_dir / "tls"
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = list(hostnames) or default_hostnames()
    names += [n for n in domain_names(ctx.settings["hub.domain"]) if n not in names]
    info = make_self_signed(cert, key, names, days)
    settings_mod.set_value(ctx.config_file, "tls.cert", str(cert))
    settings_mod.set_value(ctx.config_file, "tls.key", str(key))
    click.echo(f"made a self-signed certificate {cert} for {', '.join(info.names)}, valid "
               f"until {info.not_after:%Y-%m-%d} (key {key}, root only); tls.cert and tls.key "
               "are set: restart the hub to serve HTTPS")
