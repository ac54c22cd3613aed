"""TLS certificates: make a self-signed pair, and check a configured one.

Used by `teamhub tls self-signed`, by `teamhub up`'s start-up checks (a bad
certificate or key stops the start with a hint, instead of a proxy that dies
with a stack trace) and by `teamhub doctor` (expiry).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import TlsError

EXPIRY_WARNING_DAYS = 30



@dataclass
class CertInfo:
    subject: str
    not_after: dt.datetime
    names: list[str]

    @property
    def days_left(self) -> float:
        return (self.not_after - dt.datetime.now(dt.timezone.utc)).total_seconds() / 86400


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write DATA to PATH with MODE from the first byte (a new file renamed into place)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def default_hostnames() -> list[str]:
    return [socket.getfqdn(), "localhost"]


def domain_names(domain: str) -> list[str]:
    """The names a certificate needs for `hub.domain`: the hub's and every user's origin."""
    return [domain, f"*.{domain}"] if domain else []


def covers(names: list[str], host: str) -> bool:
    """Whether a certificate for NAMES is valid for HOST (a wildcard covers one label)."""
    host = host.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def self_signed(cert: Path, key: Path, hostnames: list[str], days: int) -> CertInfo:
    """Make a new EC P-256 key (0600) and a self-signed certificate (0644) for HOSTNAMES."""
    if days < 1 or days > 3650:
        raise TlsError(f"--days {days} is out of range", "use 1 to 3650")
    if not hostnames:
        hostnames = default_hostnames()
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys(hostnames):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not name or any(c.isspace() or c in "/\\" for c in name):
                raise TlsError(f"--hostname {name!r} is not a host name or IP address") from None
            alt.append(x509.DNSName(name))
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0][:64])])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(private, hashes.SHA256())
    )
    _write(key, private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), 0o600)
    _write(cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return inspect(cert, key)


def _read(path: Path, what: str, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"TLS {what} {path} does not exist",
                       f"fix {setting} (`teamhub config set {setting} PATH`) or make a pair "
                       "with `teamhub tls self-signed`") from None
    except OSError as exc:
        raise TlsError(f"cannot read TLS {what} {path} ({exc.strerror})",
                       f"fix {setting}") from None


def inspect(cert: Path, key: Path) -> CertInfo:
    """The certificate's facts; TlsError if either file is unusable or they do not match."""
    cert_pem = _read(cert, "certificate", "tls.cert")
    key_pem = _read(key, "key", "tls.key")
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise TlsError(f"TLS certificate {cert} is not a PEM certificate",
                       "point tls.cert at the PEM file (-----BEGIN CERTIFICATE-----)") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise TlsError(f"TLS key {key} is not an unencrypted PEM private key",
                       "point tls.key at it (a key with a passphrase cannot be used "
                       "unattended)") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (certificate.public_key().public_bytes(serialization.Encoding.PEM, public)
            != private.public_key().public_bytes(serialization.Encoding.PEM, public)):
        raise TlsError(f"TLS key {key} does not belong to certificate {cert}",
                       "set tls.key to the key the certificate was issued for")
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except x509.ExtensionNotFound:
        names = []
    return CertInfo(subject=certificate.subject.rfc4514_string(),
                    not_after=certificate.not_valid_after_utc, names=names)


def check_usable(cert: str, key: str) -> CertInfo:
    """For `teamhub up`: both set, readable, matching and not expired."""
    if bool(cert) != bool(key):
        missing = "tls.key" if cert else "tls.cert"
        raise TlsError("TLS needs both tls.cert and tls.key",
                       f"{missing} is empty (`teamhub config set {missing} PATH`)")
    info = inspect(Path(cert), Path(key))
    if info.days_left <= 0:
        raise TlsError(f"TLS certificate {cert} expired on {info.not_after:%Y-%m-%d}",
                       "renew it or make a new one with `teamhub tls self-signed`")
    return info
