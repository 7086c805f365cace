"""A development CA and a localhost certificate, made once and kept in a cache folder.

For the demo (``python -m greenhttps``) and local experiments only: the CA is new to
each machine, so trusting it (``curl --cacert``, ``ca=``) trusts nothing else.  The
files live in ``$XDG_CACHE_HOME/greenhttps`` (``~/.cache/greenhttps``), never in the
repository; the private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevCertificate", "dev_certificate", "cache_dir"]

_LEAF_NAMES = ("localhost", "127.0.0.1", "::1")


def cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "greenhttps"


class DevCertificate:
    """Paths of the development CA certificate and the server's key and chain."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.ca_file = folder / "dev-ca.pem"
        self.cert_file = folder / "localhost-cert.pem"
        self.key_file = folder / "localhost-key.pem"

    def exists(self) -> bool:
        return all(path.exists() for path in (self.ca_file, self.cert_file, self.key_file))

    def server_options(self) -> dict[str, bytes]:
        return {"key": self.key_file.read_bytes(), "cert": self.cert_file.read_bytes()}


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "greenhttps development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private(path: pathlib.Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def dev_certificate(folder: pathlib.Path | None = None) -> DevCertificate:
    """The cached development certificate, made (ECDSA P-256, 10 years) if missing."""
    dev = DevCertificate(folder or cache_dir())
    if dev.exists():
        return dev
    dev.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"greenhttps development CA ({os.uname().nodename})")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in _LEAF_NAMES:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    _write_private(
        dev.folder / "dev-ca-key.pem",
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write_private(
        dev.key_file, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    dev.cert_file.write_bytes(cert.public_bytes(pem))
    dev.ca_file.write_bytes(ca_cert.public_bytes(pem))
    return dev
