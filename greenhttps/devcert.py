"""A development CA and a localhost certificate, made once and kept in a cache folder.

For the demo (``python -m greenhttps``), the examples and local experiments only.
The CA is new to each machine and its name constraints limit it to ``localhost``
(and ``*.localhost``), ``127.0.0.0/8`` and ``::1``: trusting it (``curl --cacert``,
``ca=``) trusts nothing else, even if its key leaks.  The files live in
``$XDG_CACHE_HOME/greenhttps`` (``~/.cache/greenhttps``), never in the repository:

- ``dev-ca.pem`` -- the CA certificate to trust;
- ``dev-ca-key.pem`` (mode 0600) -- kept so that an expired server certificate can
  be renewed under the same CA, and :meth:`DevCertificate.issue_cert` can sign more;
- ``localhost-cert.pem``, ``localhost-key.pem`` (0600) -- the server certificate
  (``localhost``, ``127.0.0.1``, ``::1``), valid 397 days and renewed when it expires.

Several processes may ask at once (tests run examples in parallel): creation holds
a lock file, and each file appears whole (written aside, then renamed).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import pathlib
import platform
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:
    import fcntl
except ImportError:  # Windows: no lock; the renames still keep each file whole
    fcntl = None  # type: ignore[assignment]

__all__ = ["DevCertificate", "dev_certificate", "cache_dir"]

_LEAF_NAMES = ("localhost", "127.0.0.1", "::1")
_CA_DAYS = 3650
_LEAF_DAYS = 397  # the most browsers accept
_RENEW_BEFORE = datetime.timedelta(days=1)


def cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/greenhttps``, or ``~/.cache/greenhttps``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "greenhttps"


class DevCertificate:
    """Paths of the development CA and of the server's key and certificate."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.ca_file = folder / "dev-ca.pem"
        self.ca_key_file = folder / "dev-ca-key.pem"
        self.cert_file = folder / "localhost-cert.pem"
        self.key_file = folder / "localhost-key.pem"

    def __repr__(self) -> str:
        return f"<DevCertificate {self.folder}>"

    def exists(self) -> bool:
        files = (self.ca_file, self.ca_key_file, self.cert_file, self.key_file)
        return all(path.exists() for path in files)

    def is_current(self) -> bool:
        """All files are there and neither certificate is about to expire."""
        if not self.exists():
            return False
        soon = datetime.datetime.now(datetime.timezone.utc) + _RENEW_BEFORE
        return all(_not_after(path) > soon for path in (self.ca_file, self.cert_file))

    def server_options(self) -> dict[str, bytes]:
        """``{'key': PEM, 'cert': PEM}``, what ``create_server`` takes."""
        return {"key": self.key_file.read_bytes(), "cert": self.cert_file.read_bytes()}

    def ca_pem(self) -> bytes:
        """The CA certificate (a client's ``ca`` option)."""
        return self.ca_file.read_bytes()

    def issue_cert(self, *names: str, client: bool = False) -> dict[str, bytes]:
        """A new key and certificate for ``names`` signed by the CA, in memory only.

        ``{'key': PEM, 'cert': PEM}``; for a TLS client with ``client=True``.  The
        names must be under ``localhost`` (or loopback addresses): the CA signs
        nothing else that a verifier would accept.
        """
        ca_cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(self.ca_key_file.read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        key, cert = _leaf(ca_cert, ca_key, names, client=client)
        return {"key": _key_pem(key), "cert": cert.public_bytes(serialization.Encoding.PEM)}


def dev_certificate(folder: pathlib.Path | None = None) -> DevCertificate:
    """The cached development certificate, made (ECDSA P-256) if missing or expiring."""
    dev = DevCertificate(folder or cache_dir())
    if dev.is_current():
        return dev
    dev.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(dev.folder / ".lock"):
        if dev.is_current():  # another process made it while we waited
            return dev
        ca_cert, ca_key = _reuse_ca(dev)
        if ca_cert is None or ca_key is None:
            ca_cert, ca_key = _make_ca()
            # A new CA invalidates any old leaf: write the key first, the CA last,
            # so that a reader never pairs the new CA with a half-written set.
            _write(dev.ca_key_file, _key_pem(ca_key), private=True)
        key, cert = _leaf(ca_cert, ca_key, _LEAF_NAMES, client=False)
        _write(dev.key_file, _key_pem(key), private=True)
        _write(dev.cert_file, cert.public_bytes(serialization.Encoding.PEM))
        _write(dev.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM))
    return dev


# ------------------------------------------------------------------ helpers


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    with open(path, "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _write(path: pathlib.Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` aside and rename it into place (0600 when ``private``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _not_after(path: pathlib.Path) -> datetime.datetime:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
    except (OSError, ValueError):
        return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)  # unreadable: remake


def _reuse_ca(
    dev: DevCertificate,
) -> tuple[x509.Certificate | None, ec.EllipticCurvePrivateKey | None]:
    """The cached CA and its key if both are readable and current: renewing only the
    leaf keeps every place the user already told to trust the CA working."""
    soon = datetime.datetime.now(datetime.timezone.utc) + _RENEW_BEFORE
    try:
        cert = x509.load_pem_x509_certificate(dev.ca_file.read_bytes())
        key = serialization.load_pem_private_key(dev.ca_key_file.read_bytes(), None)
    except (OSError, ValueError):
        return None, None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc <= soon:
        return None, None
    return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "greenhttps development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"greenhttps development CA ({platform.node() or 'localhost'})")
    now = datetime.datetime.now(datetime.timezone.utc)
    permitted: list[x509.GeneralName] = [
        x509.DNSName("localhost"),  # and every name under it (RFC 5280 §4.2.1.10)
        x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: tuple[str, ...],
    *,
    client: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if not names:
        raise ValueError("a certificate needs at least one name")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = min(now + datetime.timedelta(days=_LEAF_DAYS), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert
