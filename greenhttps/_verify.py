"""Certificate identity and verification the way Node reports them; pure, no I/O.

``node_check_server_identity`` is Node v20's ``tls.checkServerIdentity``
(subjectAltName DNS names with a single-label left-most wildcard, IP SANs for IP
literals, the CN only when there is no DNS SAN).  ``check_server_identity``, the
default check of a client, gives Node's errors with OpenSSL's verdict: a port of
``X509_check_host`` (``x509_check_host``) decides.  ``client_verify_result`` gives Node's
``authorized``/``authorizationError`` pair for a finished client handshake, even one
made with ``reject_unauthorized=False`` where OpenSSL's verdict is lost: the peer's
chain is re-verified with ``cryptography.x509.verification`` against the same roots.
``peer_certificate`` returns ``getpeercert()``'s dict, decoding the DER ourselves when
Python would return ``{}`` for an unverified peer.
"""

from __future__ import annotations

import _ssl
import datetime
import functools
import ipaddress
import os
import pathlib
import re
import ssl
import warnings
from typing import Any, Callable, Mapping, Sequence, Union

import certifi
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import AuthorityInformationAccessOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from greenhttps import _tls, errors
from greenhttps._tls import _PEM, _blobs
from greenhttps.errors import CertificateError

Material = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
Materials = Union[Material, Sequence[Material]]

# --- identity and verification -----------------------------------------------------------

_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _split_host(name: str) -> list[str]:
    # Only A-Z are folded, as Node: str.lower() is Unicode-aware.
    return (name[:-1] if name.endswith(".") else name).translate(_LOWER).split(".")


def _wildcard_match(host: list[str], pattern: str) -> bool:
    """Node's ``check()``: one ``*`` in the left-most label, never for ``*.tld``."""
    parts = _split_host(pattern) if pattern else []
    if len(parts) != len(host) or "" in parts or parts[1:] != host[1:]:
        return False
    if any(re.search(r"[^\x21-\x7f]", p) for p in parts):
        return False
    head, label = parts[0], host[0]
    pieces = head.split("*")
    if len(pieces) == 1 or "xn--" in head:
        return label == head
    if len(pieces) > 2 or len(parts) <= 2:
        return False
    prefix, suffix = pieces
    return len(prefix) + len(suffix) <= len(label) and label.startswith(prefix) and label.endswith(suffix)


@functools.lru_cache(maxsize=256)  # asked several times per handshake, of the same few names
def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _node_identity(hostname: str, cert: Mapping[str, Any]) -> tuple[str, bool, str]:
    """``(host, valid, reason)`` by Node v20's ``tls.checkServerIdentity`` rules; the
    reason is the one Node gives when the name does not match."""
    host = str(hostname)
    host = host[:-1] if host.endswith(".") else host
    sans = [(kind, value) for kind, value in cert.get("subjectAltName", ())]
    altnames = ", ".join(f"{kind}:{value}" for kind, value in sans)
    dns = [value for kind, value in sans if kind == "DNS"]
    cns = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    ip = _ip(host)
    if ip is not None:
        ips = [_ip(v) or v for k, v in sans if k == "IP Address"]
        valid = ip in ips
        reason = f"IP: {host} is not in the cert's list: {', '.join(ips)}"
    elif dns:
        valid = any(_wildcard_match(_split_host(host), p) for p in dns)
        reason = f"Host: {host}. is not in the cert's altnames: {altnames}"
    elif cns:
        valid = any(_wildcard_match(_split_host(host), cn) for cn in cns)
        reason = f"Host: {host}. is not cert's CN: {','.join(cns)}"
    else:
        valid, reason = False, "Cert does not contain a DNS name"
    return host, valid, reason


def _altname_error(host: str, reason: str, cert: Mapping[str, Any]) -> CertificateError:
    return CertificateError(f"Hostname/IP does not match certificate's altnames: {reason}",
                            "ERR_TLS_CERT_ALTNAME_INVALID", reason=reason, host=host, cert=cert)


def node_check_server_identity(hostname: str, cert: Mapping[str, Any]) -> CertificateError | None:
    """Node v20's ``tls.checkServerIdentity`` over Python's ``getpeercert()`` dict.

    IP literals match IP SANs only; names match DNS SANs, and the subject's CN only
    when the certificate has no DNS SAN. Returns the error, does not raise it.
    """
    host, valid, reason = _node_identity(hostname, cert)
    return None if valid else _altname_error(host, reason, cert)


def check_server_identity(hostname: str, cert: Mapping[str, Any]) -> CertificateError | None:
    """The default peer-name check: OpenSSL's verdict, Node's error.

    Whether the name matches is what OpenSSL's ``X509_check_host`` /
    ``X509_check_ip`` (default flags) decide (:func:`x509_check_host`) for the
    host without its trailing dot, which Node drops too (``a.com.`` is ``a.com``);
    the error is the one Node's ``tls.checkServerIdentity`` builds, its reason
    included.  The two agree on all of Node's identity vectors but one: a CN with a
    trailing dot (``a.com.``) matches ``a.com`` in Node only.  More cases where Node
    is laxer: a pattern with a trailing dot, a partial wildcard (``x*``) against an
    IDNA label, a wildcard standing for ``_``, a label ending in ``-``
    (tests/test_tls_parity.py).  Returns the error, does not raise it.
    """
    host, _, reason = _node_identity(hostname, cert)
    return None if x509_check_host(host, cert) else _altname_error(host, reason, cert)


# --- OpenSSL's X509_check_host, flags 0 (crypto/x509/v3_utl.c) -----------------------------

_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _equal_nocase(pattern: bytes, subject: bytes) -> bool:
    # Only ASCII letters fold; a NUL in the pattern never matches.
    return len(pattern) == len(subject) and 0 not in pattern and pattern.translate(_FOLD) == subject.translate(_FOLD)


_FOLD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def _valid_star(pattern: bytes) -> int | None:
    """Where the one allowed ``*`` is (``valid_star``), or None: then no wildcard."""
    star: int | None = None
    at_label_start, hyphen, idna, dots = True, False, False, 0
    for i, c in enumerate(pattern):
        if c == 0x2A:  # '*'
            at_end = i == len(pattern) - 1 or pattern[i + 1] == 0x2E
            # One star, not in an IDNA label, in the first label, at its start or end.
            if star is not None or idna or dots or not (at_label_start or at_end):
                return None
            star, at_label_start = i, False
        elif c in _ALNUM:
            if at_label_start and pattern[i:i + 4].lower() == b"xn--":
                idna = True
            at_label_start = hyphen = False
        elif c == 0x2E:  # '.'
            if hyphen or at_label_start:
                return None
            at_label_start, hyphen, idna, dots = True, False, False, dots + 1
        elif c == 0x2D:  # '-'
            if at_label_start:
                return None
            hyphen = True
        else:
            return None
    # The last label ends in neither '-' nor '.', and two dots follow the star.
    if at_label_start or hyphen or dots < 2:
        return None
    return star


def _wildcard_host_match(prefix: bytes, suffix: bytes, subject: bytes) -> bool:
    """``wildcard_match``: ``prefix*suffix`` against ``subject``."""
    if len(subject) < len(prefix) + len(suffix):
        return False
    middle = subject[len(prefix):len(subject) - len(suffix)]
    if not _equal_nocase(prefix, subject[:len(prefix)]) or not _equal_nocase(subject[len(subject) - len(suffix):], suffix):
        return False
    whole_label = not prefix and suffix[:1] == b"."
    if whole_label and not middle:
        return False  # '*' as a whole label matches at least one character
    if not whole_label and subject[:4].lower() == b"xn--":
        return False  # IDNA labels never match a partial wildcard
    if middle == b"*":
        return True
    return all(c in _ALNUM or c == 0x2D for c in middle)


def _equal_wildcard(pattern: bytes, subject: bytes) -> bool:
    star = None if subject[:1] == b"." else _valid_star(pattern)
    if star is None:
        return _equal_nocase(pattern, subject)
    return _wildcard_host_match(pattern[:star], pattern[star + 1:], subject)


def x509_check_host(hostname: str, cert: Mapping[str, Any]) -> bool:
    """OpenSSL's verdict on ``hostname`` for a ``getpeercert()`` dict, default flags.

    An IP literal is ``X509_check_ip``: equal to an IP SAN.  A name is
    ``X509_check_host``: the DNS SANs (ASCII case folded, one ``*`` at the start or
    end of a first label that is not IDNA, two more labels after it, partial
    wildcards allowed); the subject's CNs only when there is no DNS SAN.  The name
    is compared as given: no trailing dot is dropped (from it or the certificate).
    """
    sans = list(cert.get("subjectAltName", ()))
    ip = _ip(hostname)
    if ip is not None:
        return any(_ip(value) == ip for kind, value in sans if kind == "IP Address")
    try:
        subject = hostname.encode("ascii")
    except UnicodeEncodeError:
        try:
            subject = hostname.encode("idna")  # what Python sends and checks
        except UnicodeError:
            return False
    dns = [value for kind, value in sans if kind == "DNS"]
    patterns = dns if dns else [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return any(p and _equal_wildcard(p.encode("utf-8", "surrogateescape"), subject) for p in patterns)


def _must_be_ca(_policy: Any, _cert: x509.Certificate, ext: x509.BasicConstraints) -> None:
    if not ext.ca:
        raise ValueError("basicConstraints says this is not a CA")


# Lenient like OpenSSL, unlike the web PKI defaults: `openssl req -x509` roots have no
# keyUsage, and trustme's leaves mark their subjectAltName critical.
_CA_POLICY = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _must_be_ca)


@functools.lru_cache(maxsize=8)
def _trust(blobs: tuple[bytes, ...] | None) -> tuple[Store, tuple[x509.Certificate, ...]]:
    certs: list[x509.Certificate] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # certifi holds a root with a negative serial
        for blob in blobs if blobs is not None else (pathlib.Path(certifi.where()).read_bytes(),):
            certs += x509.load_pem_x509_certificates(blob) if _PEM in blob else [x509.load_der_x509_certificate(blob)]
    return Store(certs), tuple(certs)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


@functools.lru_cache(maxsize=8)
def _crls(pems: tuple[bytes, ...]) -> tuple[x509.CertificateRevocationList, ...]:
    return tuple(x509.load_pem_x509_crl(p) for p in pems)


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a key type that cannot sign a CRL
        return False


def _revocation_error(path: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList]) -> str | None:
    """OpenSSL's CRL check with Node's flags (CRL_CHECK | CRL_CHECK_ALL) over a
    verified ``path`` (leaf first, trust anchor last): each certificate needs a
    current CRL signed by its issuer, and must not be listed in it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    for depth, cert in enumerate(path):
        issuer = path[depth + 1] if depth + 1 < len(path) else cert  # the anchor: itself
        crl = next((c for c in crls if c.issuer == cert.issuer and _crl_signed_by(c, issuer)), None)
        if crl is None:
            return "UNABLE_TO_GET_CRL"
        if crl.last_update_utc > now:
            return "CRL_NOT_YET_VALID"
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            return "CRL_HAS_EXPIRED"
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return "CERT_REVOKED"
    return None


def _chain_error(chain: list[x509.Certificate], blobs: tuple[bytes, ...] | None,
                 crl: Materials | None = None) -> str | None:
    """Node's code for why ``chain`` (leaf first) does not verify, or None.

    ``crl`` (Node's option) is checked along the verified path.
    """
    store, anchors = _trust(blobs)
    try:
        path = (PolicyBuilder().store(store)
                .extension_policies(ca_policy=_CA_POLICY, ee_policy=ExtensionPolicy.permit_all())
                .build_client_verifier().verify(chain[0], chain[1:]).chain)
        return None if crl is None else _revocation_error(path, _crls(tuple(_tls.crl_pems(crl))))
    except VerificationError:
        pass
    # Name the failure the way OpenSSL would: first the path to a trusted root...
    cert, path = chain[0], [chain[0]]
    while cert not in anchors:
        anchor = next((a for a in anchors if _issued_by(cert, a)), None)
        if anchor is not None:
            path.append(anchor)
            break
        if cert.issuer == cert.subject:
            return "DEPTH_ZERO_SELF_SIGNED_CERT" if len(path) == 1 else "SELF_SIGNED_CERT_IN_CHAIN"
        parent = next((c for c in chain if c not in path and _issued_by(cert, c)), None)
        if parent is None:
            return "UNABLE_TO_VERIFY_LEAF_SIGNATURE" if len(path) == 1 else "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"
        cert = parent
        path.append(cert)
    # ...then the validity periods along it.
    now = datetime.datetime.now(datetime.timezone.utc)
    for cert in path:
        if cert.not_valid_after_utc < now:
            return "CERT_HAS_EXPIRED"
        if cert.not_valid_before_utc > now:
            return "CERT_NOT_YET_VALID"
    return "CERT_REJECTED"  # the chain is sound but breaks a rule (e.g. a CA without CA:TRUE)


def _peer_chain(sslsock: Any) -> list[bytes]:
    getter = getattr(sslsock, "get_unverified_chain", None)  # public in Python >= 3.13
    if getter is None:  # private on the _ssl object since 3.10
        getter = getattr(getattr(sslsock, "_sslobj", None), "get_unverified_chain", None)
    chain = getter() if getter is not None else None
    if chain:
        return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain]
    leaf = sslsock.getpeercert(binary_form=True)
    return [leaf] if leaf else []


# OpenSSL's X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY and ..._VERIFY_LEAF_SIGNATURE.
_NO_LOCAL_ISSUER, _LONE_LEAF = 20, 21


def _lone_leaf(chain: list[bytes]) -> bool:
    """True when no other certificate the peer sent issued its leaf."""
    certs = [x509.load_der_x509_certificate(der) for der in chain]
    return not any(_issued_by(certs[0], c) for c in certs[1:])


def handshake_error(sslsock: Any, exc: BaseException, *, during: str = "") -> errors.Error:
    """:func:`errors.from_os_error` for a failed handshake on ``sslsock``, with Node's code.

    OpenSSL stops at the first verify error when there is no verify callback (Python)
    and says 20, "unable to get local issuer certificate", whenever it found no
    trusted issuer.  Node lets verification run on: for a chain that is the leaf
    alone, OpenSSL's last check then reports 21 (``UNABLE_TO_VERIFY_LEAF_SIGNATURE``,
    "unable to verify the first certificate"), and that is what Node reports.  So
    code 20 becomes 21 when no other certificate the peer sent issued its leaf;
    a leaf sent with its intermediates stays ``UNABLE_TO_GET_ISSUER_CERT_LOCALLY``.

    A server cannot tell: OpenSSL keeps a client's chain only once it verified, so
    there the lone leaf, by far the usual client certificate, is assumed.
    """
    if isinstance(exc, ssl.SSLCertVerificationError) and getattr(exc, "verify_code", None) == _NO_LOCAL_ISSUER:
        try:
            chain = _peer_chain(sslsock)
        except (ValueError, AttributeError):
            chain = []
        if not chain or _lone_leaf(chain):
            exc.verify_code, exc.verify_message = _LONE_LEAF, "unable to verify the first certificate"
    return errors.from_os_error(exc, during=during)


def client_verify_result(
    sslsock: Any, *, hostname: str | None, ca: Materials | None = None,
    check_identity: Callable[[str, dict[str, Any]], BaseException | None] = check_server_identity,
    crl: Materials | None = None,
) -> tuple[bool, str | None]:
    """``(authorized, authorization_error)`` for a finished client handshake.

    ``ca`` and ``crl`` are the options the context was built with (``ca`` None:
    certifi). When the
    context did not verify (``reject_unauthorized=False``), the chain is verified
    here against the same roots; the name is checked with ``check_identity``
    (skipped when ``hostname`` is None), which may return or raise its error.
    """
    chain = _peer_chain(sslsock)
    if not chain:
        return False, "UNABLE_TO_GET_ISSUER_CERT"
    if sslsock.context.verify_mode == ssl.CERT_NONE:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
        code = _chain_error(certs, None if ca is None else _blobs(ca, "ca"), crl)
        if code is not None:
            return False, code
    if hostname is not None:
        try:
            err = check_identity(hostname, peer_certificate(sslsock))
        except Exception as exc:
            err = exc
        if err is not None:
            return False, getattr(err, "code", None) or "ERR_TLS_CERT_ALTNAME_INVALID"
    return True, None


def server_verify_result(sslsock: Any, *, request_cert: bool) -> tuple[bool, str | None]:
    """``(authorized, authorization_error)`` for a finished server handshake (Node's rules)."""
    if not request_cert:
        return False, None
    if not sslsock.getpeercert(binary_form=True):
        return False, "UNABLE_TO_GET_ISSUER_CERT"  # what Node reports for "no client cert"
    return True, None  # it was verified: a bad one fails the handshake even with CERT_OPTIONAL


# --- peer certificate as a dict --------------------------------------------------------------

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _asn1_time(when: datetime.datetime) -> str:
    return f"{_MONTHS[when.month - 1]} {when.day:2d} {when:%H:%M:%S %Y} GMT"


def _name(name: x509.Name) -> tuple[tuple[tuple[str, str], ...], ...]:
    def label(oid: x509.ObjectIdentifier) -> str:
        known = getattr(oid, "_name", "Unknown OID")
        return oid.dotted_string if known == "Unknown OID" else known
    return tuple(tuple((label(a.oid), str(a.value)) for a in rdn) for rdn in name.rdns)


def _general_name(gn: x509.GeneralName) -> tuple[str, Any]:
    if isinstance(gn, x509.IPAddress):
        ip = gn.value
        if ip.version == 6:  # OpenSSL's style: eight uncompressed upper-case groups
            return "IP Address", ":".join(f"{int(g, 16):X}" for g in ip.exploded.split(":"))
        return "IP Address", str(ip)
    kinds = {x509.DNSName: "DNS", x509.RFC822Name: "email", x509.UniformResourceIdentifier: "URI"}
    if type(gn) in kinds:
        return kinds[type(gn)], gn.value
    if isinstance(gn, x509.DirectoryName):
        return "DirName", _name(gn.value)
    if isinstance(gn, x509.RegisteredID):
        return "Registered ID", gn.value.dotted_string
    return "othername", "<unsupported>"


def decode_certificate(der: bytes) -> dict[str, Any]:
    """A DER certificate in the shape of Python's ``getpeercert()`` dict."""
    cert = x509.load_der_x509_certificate(der)
    serial = f"{cert.serial_number:X}"
    out: dict[str, Any] = {
        "subject": _name(cert.subject), "issuer": _name(cert.issuer), "version": cert.version.value + 1,
        "serialNumber": serial.zfill(len(serial) + len(serial) % 2),
        "notBefore": _asn1_time(cert.not_valid_before_utc), "notAfter": _asn1_time(cert.not_valid_after_utc),
    }
    for ext in cert.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            out["subjectAltName"] = tuple(_general_name(gn) for gn in ext.value)
        elif isinstance(ext.value, x509.AuthorityInformationAccess):
            for key, oid in (("OCSP", AuthorityInformationAccessOID.OCSP),
                             ("caIssuers", AuthorityInformationAccessOID.CA_ISSUERS)):
                uris = tuple(d.access_location.value for d in ext.value if d.access_method == oid)
                if uris:
                    out[key] = uris
        elif isinstance(ext.value, x509.CRLDistributionPoints):
            out["crlDistributionPoints"] = tuple(
                n.value for p in ext.value for n in p.full_name or () if isinstance(n, x509.UniformResourceIdentifier))
    return out


def node_certificate_fields(der: bytes) -> dict[str, Any]:
    """The fields Node's ``getPeerCertificate()`` has that Python's dict lacks, for a
    DER certificate: ``subjectaltname`` (one string), ``ca``, ``bits``, ``modulus``
    and ``exponent`` (RSA) or ``asn1Curve``/``nistCurve`` (EC), ``pubkey`` (DER
    SubjectPublicKeyInfo), ``valid_from``/``valid_to``, ``fingerprint`` (SHA-1),
    ``fingerprint256``, ``fingerprint512``, ``ext_key_usage`` (OIDs) and ``raw``
    (the DER).  Spelled as Node 20 spells them (test-https-foafssl.js reads
    ``subjectaltname``, ``exponent`` and ``modulus``)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert = x509.load_der_x509_certificate(der)
    out: dict[str, Any] = {}
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out["subjectaltname"] = ", ".join(f"{kind}:{_node_quoted(value)}" for kind, value in map(_general_name, names)
                                          if not isinstance(value, tuple))
    except x509.ExtensionNotFound:
        pass
    try:
        out["ca"] = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        out["ca"] = False
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        out.update(modulus=f"{numbers.n:X}", bits=key.key_size, exponent=hex(numbers.e))
    if isinstance(key, ec.EllipticCurvePublicKey):  # Node gives the point, not its SPKI
        out["bits"] = key.key_size
        out["pubkey"] = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        out["asn1Curve"], nist = _NIST_CURVES.get(key.curve.name, (key.curve.name, ""))
        if nist:
            out["nistCurve"] = nist
    else:
        out["pubkey"] = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    out["valid_from"] = _asn1_time(cert.not_valid_before_utc)
    out["valid_to"] = _asn1_time(cert.not_valid_after_utc)
    for field, algorithm in (("fingerprint", hashes.SHA1()), ("fingerprint256", hashes.SHA256()),
                             ("fingerprint512", hashes.SHA512())):
        out[field] = cert.fingerprint(algorithm).hex(":").upper()
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        out["ext_key_usage"] = [oid.dotted_string for oid in usages]
    except x509.ExtensionNotFound:
        pass
    out["raw"] = der
    return out


_NIST_CURVES = {"secp256r1": ("prime256v1", "P-256"), "secp384r1": ("secp384r1", "P-384"),
                "secp521r1": ("secp521r1", "P-521")}


def _node_quoted(value: str) -> str:
    """A name (IA5String: DNS, URI, email) as Node 17+ prints it in
    ``subjectaltname``: as is when "safe", else in double quotes with ``"`` and
    ``\\`` backslashed and a comma or any byte outside printable ASCII as
    ``\\u00XX`` (src/crypto/crypto_common.cc ``PrintAltName``): a comma in a name
    must not split the list."""
    if not _UNSAFE_ALT_NAME.search(value):
        return value
    out = []
    for byte in value.encode("latin-1", "replace"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif " " <= char <= "~" and char != ",":
            out.append(char)
        else:
            out.append(f"\\u{byte:04x}")
    return '"' + "".join(out) + '"'


_UNSAFE_ALT_NAME = re.compile(r"""[",'\\\x00-\x1f\x7f-\uffff]""")


def peer_certificate(sslsock: Any) -> dict[str, Any]:
    """The peer's certificate as Python's ``getpeercert()`` dict; ``{}`` when none.

    Python gives ``{}`` for a certificate it did not verify; that one is decoded
    here so that users always get its fields.
    """
    try:
        cert = sslsock.getpeercert()
        der = None if cert else sslsock.getpeercert(binary_form=True)
    except ValueError:  # no handshake yet
        return {}
    return cert or (decode_certificate(der) if der else {})
