"""greenhttps._tls: options -> contexts, in memory, and real handshakes over 127.0.0.1."""

from __future__ import annotations

import datetime
import logging
import os
import pathlib
import ssl
import tempfile
from typing import Any

import certifi
import gevent
import gevent.socket
import gevent.ssl
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from greenhttps import _tls, _verify
from greenhttps.errors import CertificateError, InvalidArgumentError

pytestmark = pytest.mark.timeout(20)

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


# --- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", "::1")


def key_cert(cert: trustme.LeafCert) -> dict[str, bytes]:
    return {"key": cert.private_key_pem.bytes(), "cert": b"".join(b.bytes() for b in cert.cert_chain_pems)}


def encrypted_key(cert: trustme.LeafCert, password: bytes) -> bytes:
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(password))


def make_pfx(cert: trustme.LeafCert, password: bytes | None) -> bytes:
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    crt = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    enc = (serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(b"srv", key, crt, None, enc)  # type: ignore[arg-type]


def self_signed(name: str = "localhost") -> dict[str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return {"cert": cert.public_bytes(serialization.Encoding.PEM),
            "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())}


def handshake(server_ctx: Any, client_ctx: Any, server_hostname: str | None = None) -> tuple[Any, Any]:
    """Both ends of a finished TLS connection, each end in its own greenlet, no monkey-patching."""
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> Any:
        conn, _ = listener.accept()
        sock = _tls.wrap_socket(server_ctx, conn, server_side=True)
        try:
            sock.do_handshake()
        except Exception as exc:  # returned, not raised: keeps gevent's hub quiet
            sock.close()
            return exc
        return sock

    server = gevent.spawn(serve)
    raw = gevent.socket.create_connection(listener.getsockname())
    client = _tls.wrap_socket(client_ctx, raw, server_side=False, server_hostname=server_hostname)
    try:
        client.do_handshake()
    except Exception:
        client.close()
        server.join(timeout=5)
        raise
    finally:
        listener.close()
    result = server.get(timeout=5)
    if isinstance(result, Exception):
        client.close()
        raise result
    return client, result


def close(*socks: Any) -> None:
    for sock in socks:
        sock.close()


# --- material --------------------------------------------------------------------------

def test_read_material_forms(tmp_path: pathlib.Path, leaf: trustme.LeafCert) -> None:
    pem = leaf.cert_chain_pems[0].bytes()
    path = tmp_path / "c.pem"
    path.write_bytes(pem)
    assert _tls.read_material(pem) == pem
    assert _tls.read_material(bytearray(pem)) == pem
    assert _tls.read_material(pem.decode()) == pem
    assert _tls.read_material(str(path)) == pem
    assert _tls.read_material(path) == pem
    assert _tls.read_material([pem, path]) == pem + b"\n" + pem


def test_read_material_rejects_missing_path_and_bad_type() -> None:
    with pytest.raises(InvalidArgumentError, match="neither PEM text nor a readable file"):
        _tls.read_material("/nonexistent/key.pem", "key")
    with pytest.raises(InvalidArgumentError, match="key must be bytes"):
        _tls.read_material(42, "key")  # type: ignore[arg-type]


@pytest.mark.parametrize("form", ["bytes", "str", "path-str", "pathlib"])
def test_server_context_from_each_form(form: str, tmp_path: pathlib.Path, leaf: trustme.LeafCert) -> None:
    opts: dict[str, Any] = key_cert(leaf)
    if form == "str":
        opts = {k: v.decode() for k, v in opts.items()}
    elif form.startswith("path"):
        for name, data in list(opts.items()):
            (tmp_path / name).write_bytes(data)
            opts[name] = str(tmp_path / name) if form == "path-str" else tmp_path / name
    ctx = _tls.create_server_context(**opts)
    assert isinstance(ctx, gevent.ssl.SSLContext)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("passphrase", ["s3cret", b"s3cret"])
def test_encrypted_key_with_passphrase(passphrase: str | bytes, leaf: trustme.LeafCert) -> None:
    opts = key_cert(leaf)
    opts["key"] = encrypted_key(leaf, b"s3cret")
    assert _tls.create_server_context(passphrase=passphrase, **opts)


def test_wrong_or_missing_passphrase_raises(leaf: trustme.LeafCert) -> None:
    opts = key_cert(leaf)
    opts["key"] = encrypted_key(leaf, b"s3cret")
    with pytest.raises(InvalidArgumentError, match="wrong passphrase") as info:
        _tls.create_server_context(passphrase="nope", **opts)
    assert info.value.code == "ERR_OSSL_BAD_DECRYPT"
    with pytest.raises(InvalidArgumentError, match="no passphrase was given") as info:
        _tls.create_server_context(**opts)
    assert info.value.code == "ERR_OSSL_BAD_DECRYPT"


def test_passphrase_for_a_plain_key_is_ignored(leaf: trustme.LeafCert) -> None:
    assert _tls.create_server_context(passphrase="unused", **key_cert(leaf))


def test_mismatched_key_raises(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    other = ca.issue_cert("other.test")
    with pytest.raises(InvalidArgumentError, match="does not match") as info:
        _tls.create_server_context(key=other.private_key_pem.bytes(), cert=key_cert(leaf)["cert"])
    assert info.value.code == "ERR_OSSL_X509_KEY_VALUES_MISMATCH"
    assert isinstance(info.value, ValueError)


def test_missing_or_garbage_material_raises(leaf: trustme.LeafCert) -> None:
    _tls.create_server_context()  # none at all is allowed, as in Node (B-5)
    with pytest.raises(InvalidArgumentError, match="cert is required") as info:
        _tls.create_server_context(key=key_cert(leaf)["key"])
    assert info.value.code == "ERR_MISSING_OPTION"
    with pytest.raises(InvalidArgumentError) as info:
        _tls.create_server_context(key=b"-----BEGIN PRIVATE KEY-----\nzz\n-----END PRIVATE KEY-----\n",
                                   cert=key_cert(leaf)["cert"])
    assert info.value.code == "ERR_OSSL_PEM_NO_START_LINE"
    with pytest.raises(InvalidArgumentError, match="not a PEM certificate"):
        _tls.create_server_context(key=key_cert(leaf)["key"], cert=b"junk")


@pytest.mark.parametrize("password", [None, b"pfx-pass"])
def test_pfx(password: bytes | None, leaf: trustme.LeafCert, tmp_path: pathlib.Path) -> None:
    data = make_pfx(leaf, password)
    pass_opt = password.decode() if password else None
    assert _tls.create_server_context(pfx=data, passphrase=pass_opt)
    (tmp_path / "s.p12").write_bytes(data)
    assert _tls.create_server_context(pfx=tmp_path / "s.p12", passphrase=password)


def test_pfx_wrong_passphrase(leaf: trustme.LeafCert) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        _tls.create_server_context(pfx=make_pfx(leaf, b"right"), passphrase="wrong")
    assert info.value.code == "ERR_OSSL_BAD_DECRYPT"


def test_ca_list_is_loaded(ca: trustme.CA, other_ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    ctx = _tls.create_server_context(request_cert=True, ca=[ca.cert_pem.bytes(), other_ca.cert_pem.bytes().decode()],
                                     **key_cert(leaf))
    assert len(ctx.get_ca_certs()) == 2


# --- protocol options ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["TLSv1_2_method", "TLSv1_2_server_method", "TLSv1_2_client_method"])
def test_secure_protocol_tls12_pins_both_ends(method: str, leaf: trustme.LeafCert) -> None:
    ctx = _tls.create_server_context(secure_protocol=method, **key_cert(leaf))
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("method", ["TLS_method", "SSLv23_method", "TLS_server_method"])
def test_secure_protocol_any_tls_keeps_the_floor(method: str, leaf: trustme.LeafCert) -> None:
    ctx = _tls.create_server_context(secure_protocol=method, **key_cert(leaf))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED


@pytest.mark.parametrize("method, message", [
    ("TLSv1_method", "TLS 1.0 is disabled"), ("TLSv1_1_method", "TLS 1.1 is disabled"),
    ("SSLv3_method", "SSL 3 is disabled"), ("SSLv2_method", "SSL 2 is disabled"),
    ("Bogus_method", "Unknown method: Bogus_method"), ("TLSv1_3_method", "min_version='TLSv1.3'"),
])
def test_secure_protocol_refused(method: str, message: str, leaf: trustme.LeafCert) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as info:
        _tls.create_server_context(secure_protocol=method, **key_cert(leaf))
    assert info.value.code == "ERR_TLS_INVALID_PROTOCOL_METHOD"


def test_min_max_version(leaf: trustme.LeafCert) -> None:
    ctx = _tls.create_client_context(min_version="TLSv1.3")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    ctx = _tls.create_server_context(max_version="TLSv1.2", **key_cert(leaf))
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    for bad in ("TLSv1", "TLSv1.1", "TLSv9"):
        with pytest.raises(InvalidArgumentError) as info:
            _tls.create_client_context(min_version=bad)
        assert info.value.code == "ERR_TLS_INVALID_PROTOCOL_VERSION"
    with pytest.raises(InvalidArgumentError) as info:
        _tls.create_client_context(min_version="TLSv1.3", max_version="TLSv1.2")
    assert info.value.code == "ERR_TLS_INVALID_PROTOCOL_VERSION"
    with pytest.raises(InvalidArgumentError) as info:
        _tls.create_client_context(secure_protocol="TLS_method", min_version="TLSv1.2")
    assert info.value.code == "ERR_TLS_PROTOCOL_VERSION_CONFLICT"


def test_honor_cipher_order_and_ciphers(leaf: trustme.LeafCert) -> None:
    plain = _tls.create_server_context(**key_cert(leaf))
    assert not plain.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    honor = _tls.create_server_context(honor_cipher_order=True, ciphers="ECDHE+AESGCM", **key_cert(leaf))
    assert honor.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert all("GCM" in c["name"] for c in honor.get_ciphers() if c["protocol"] == "TLSv1.2")
    with pytest.raises(InvalidArgumentError) as info:
        _tls.create_server_context(ciphers="NOT-A-CIPHER", **key_cert(leaf))
    assert info.value.code == "ERR_SSL_NO_CIPHER_MATCH"


@pytest.mark.parametrize("request_cert, reject, mode", [
    (False, None, ssl.CERT_NONE), (False, False, ssl.CERT_NONE),
    (True, None, ssl.CERT_REQUIRED), (True, True, ssl.CERT_REQUIRED), (True, False, ssl.CERT_OPTIONAL),
])
def test_request_cert_modes(request_cert: bool, reject: bool | None, mode: ssl.VerifyMode,
                            ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    ctx = _tls.create_server_context(request_cert=request_cert, reject_unauthorized=reject,
                                     ca=ca.cert_pem.bytes(), **key_cert(leaf))
    assert ctx.verify_mode == mode


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="'rejectUnauthorised'"):
        _tls.create_client_context(rejectUnauthorised=False)
    with pytest.raises(TypeError, match="'sni_callback'"):
        _tls.create_client_context(sni_callback=lambda name: None)


def test_ssl_context_option(leaf: trustme.LeafCert) -> None:
    stdlib = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    wrapped = _tls.create_server_context(ssl_context=stdlib, request_cert=False, reject_unauthorized=True)
    assert isinstance(wrapped, _tls.CooperativeContext) and wrapped.context is stdlib
    assert wrapped.verify_mode == stdlib.verify_mode  # attributes read through
    own = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert _tls.create_client_context(ssl_context=own) is own
    assert _tls.as_gevent_context(wrapped) is wrapped
    with pytest.raises(InvalidArgumentError, match="cannot be combined with cert, key"):
        _tls.create_server_context(ssl_context=stdlib, **key_cert(leaf))
    with pytest.raises(InvalidArgumentError) as info:
        _tls.create_client_context(ssl_context="nope")
    assert info.value.code == "ERR_TLS_INVALID_CONTEXT"


# --- private keys stay off disk ---------------------------------------------------------------

def test_private_key_never_written_to_a_file(monkeypatch: pytest.MonkeyPatch, leaf: trustme.LeafCert) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a temporary file was requested")

    for name in ("mkdtemp", "mkstemp", "NamedTemporaryFile", "TemporaryFile", "TemporaryDirectory"):
        monkeypatch.setattr(tempfile, name, forbidden)
    used: list[int] = []
    real_memfd = os.memfd_create
    monkeypatch.setattr(os, "memfd_create", lambda *a: used.append(1) or real_memfd(*a))
    tmp_before = set(os.listdir(tempfile.gettempdir()))
    cwd_before = set(os.listdir("."))
    opts = key_cert(leaf)
    opts["key"] = encrypted_key(leaf, b"pw")
    _tls.create_server_context(passphrase="pw", **opts)
    _tls.create_server_context(pfx=make_pfx(leaf, b"pw"), passphrase="pw")
    _tls.create_client_context(key=opts["key"], cert=opts["cert"], passphrase=b"pw")
    assert len(used) >= 6  # key and cert, three times
    assert set(os.listdir(tempfile.gettempdir())) == tmp_before
    assert set(os.listdir(".")) == cwd_before


def test_fallback_without_memfd_removes_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path,
                                                  leaf: trustme.LeafCert) -> None:
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert _tls.create_server_context(**key_cert(leaf))
    assert list(tmp_path.iterdir()) == []


# --- client contexts ----------------------------------------------------------------------------

def test_default_client_context_trusts_certifi_and_is_shared() -> None:
    ctx = _tls.create_client_context()
    assert isinstance(ctx, gevent.ssl.SSLContext)
    assert ctx is _tls.create_client_context() is _tls.create_client_context(reject_unauthorized=None)
    assert ctx is _tls.create_client_context(reject_unauthorized=True)
    bundle = pathlib.Path(certifi.where()).read_text(encoding="utf-8")
    assert len(ctx.get_ca_certs()) == bundle.count("BEGIN CERTIFICATE") > 100
    assert ctx.check_hostname is False and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_ca_replaces_default_trust(ca: trustme.CA, other_ca: trustme.CA) -> None:
    ctx = _tls.create_client_context(ca=ca.cert_pem.bytes())
    assert len(ctx.get_ca_certs()) == 1
    assert ctx is _tls.create_client_context(ca=ca.cert_pem.bytes().decode())  # cached by contents
    both = _tls.create_client_context(ca=[ca.cert_pem.bytes(), other_ca.cert_pem.bytes()])
    assert len(both.get_ca_certs()) == 2


def test_client_reject_unauthorized_false_does_not_verify() -> None:
    ctx = _tls.create_client_context(reject_unauthorized=False)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx is not _tls.create_client_context()


# --- check_server_identity -------------------------------------------------------------------------

def cert_dict(*sans: tuple[str, str], cn: str | None = None) -> dict[str, Any]:
    cert: dict[str, Any] = {"subject": ((("commonName", cn),),) if cn else ()}
    if sans:
        cert["subjectAltName"] = sans
    return cert


@pytest.mark.parametrize("host, cert", [
    ("example.com", cert_dict(("DNS", "example.com"))),
    ("EXAMPLE.com.", cert_dict(("DNS", "example.com"))),
    ("www.example.com", cert_dict(("DNS", "*.example.com"))),
    ("foo-bar.example.com", cert_dict(("DNS", "foo-*.example.com"))),
    ("127.0.0.1", cert_dict(("IP Address", "127.0.0.1"))),
    ("::1", cert_dict(("IP Address", "0:0:0:0:0:0:0:1"))),
    ("example.com", cert_dict(cn="example.com")),
    ("example.com", cert_dict(("IP Address", "10.0.0.1"), cn="example.com")),
])
def test_check_server_identity_accepts(host: str, cert: dict[str, Any]) -> None:
    # Node's rules; the default check takes OpenSSL's verdict (tests/test_tls_parity.py):
    # there foo-*.example.com matches nothing.
    assert _verify.node_check_server_identity(host, cert) is None


@pytest.mark.parametrize("host, cert, reason", [
    ("evil.com", cert_dict(("DNS", "example.com"), ("DNS", "www.example.com")),
     "Host: evil.com. is not in the cert's altnames: DNS:example.com, DNS:www.example.com"),
    ("a.b.example.com", cert_dict(("DNS", "*.example.com")),
     "Host: a.b.example.com. is not in the cert's altnames: DNS:*.example.com"),
    ("example.com", cert_dict(("DNS", "*.com")), "Host: example.com. is not in the cert's altnames: DNS:*.com"),
    ("www.example.com", cert_dict(("DNS", "w*w*.example.com")), "is not in the cert's altnames"),
    ("example.com", cert_dict(("DNS", "other.com"), cn="example.com"), "is not in the cert's altnames"),
    ("127.0.0.1", cert_dict(("DNS", "127.0.0.1"), ("IP Address", "10.0.0.1")),
     "IP: 127.0.0.1 is not in the cert's list: 10.0.0.1"),
    ("other.com", cert_dict(cn="example.com"), "Host: other.com. is not cert's CN: example.com"),
    ("example.com", cert_dict(), "Cert does not contain a DNS name"),
])
def test_check_server_identity_rejects(host: str, cert: dict[str, Any], reason: str) -> None:
    for check in (_verify.node_check_server_identity, _verify.check_server_identity):
        err = check(host, cert)
        assert isinstance(err, CertificateError), check
    err = _verify.node_check_server_identity(host, cert)
    assert isinstance(err, CertificateError) and isinstance(err, ssl.SSLCertVerificationError)
    assert err.code == "ERR_TLS_CERT_ALTNAME_INVALID"
    assert err.args[0] == f"Hostname/IP does not match certificate's altnames: {err.reason}"  # type: ignore[attr-defined]
    assert reason in err.reason  # type: ignore[attr-defined]
    assert err.host == host.rstrip(".")  # type: ignore[attr-defined]


# --- real handshakes over 127.0.0.1 ------------------------------------------------------------------

def test_handshake_serves_cert_and_negotiates_http11(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    server_ctx = _tls.create_server_context(**key_cert(leaf))
    client_ctx = _tls.create_client_context(ca=ca.cert_pem.bytes())
    client, server = handshake(server_ctx, client_ctx, "localhost")
    try:
        assert isinstance(client, gevent.ssl.SSLSocket) and isinstance(server, gevent.ssl.SSLSocket)
        assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "http/1.1"
        assert ("DNS", "localhost") in client.getpeercert()["subjectAltName"]
        assert client.version() in ("TLSv1.2", "TLSv1.3")
        assert _verify.client_verify_result(client, hostname="localhost", ca=ca.cert_pem.bytes()) == (True, None)
        assert _verify.server_verify_result(server, request_cert=False) == (False, None)
        client.sendall(b"ping")
        assert server.recv(4) == b"ping"
    finally:
        close(client, server)


def test_negative_control_untrusted_server_fails_verified_handshake(other_ca: trustme.CA,
                                                                     leaf: trustme.LeafCert) -> None:
    server_ctx = _tls.create_server_context(**key_cert(leaf))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_ctx, _tls.create_client_context(ca=other_ca.cert_pem.bytes()), "localhost")


def test_secure_protocol_is_what_gets_negotiated(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    server_ctx = _tls.create_server_context(secure_protocol="TLSv1_2_method", **key_cert(leaf))
    client, server = handshake(server_ctx, _tls.create_client_context(ca=ca.cert_pem.bytes()), "localhost")
    assert client.version() == "TLSv1.2"
    close(client, server)


def sni_server_ctx(leaf: trustme.LeafCert, callback: Any) -> Any:
    return _tls.create_server_context(sni_callback=callback, **key_cert(leaf))


def peer_names(sock: Any) -> list[str]:
    return [value for kind, value in _verify.peer_certificate(sock)["subjectAltName"] if kind == "DNS"]


def test_sni_callback_python_style_switches_certificate(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    other = ca.issue_cert("other.test")
    seen: list[str] = []

    def choose(servername: str) -> Any:
        seen.append(servername)
        return key_cert(other) if servername == "other.test" else None

    server_ctx = sni_server_ctx(leaf, choose)
    client_ctx = _tls.create_client_context(ca=ca.cert_pem.bytes())
    for name, expected in [("other.test", ["other.test"]), ("localhost", ["localhost"]),
                           ("other.test", ["other.test"])]:
        client, server = handshake(server_ctx, client_ctx, name)
        assert peer_names(client) == expected
        assert client.selected_alpn_protocol() == "http/1.1"
        assert _verify.client_verify_result(client, hostname=name, ca=ca.cert_pem.bytes()) == (True, None)
        close(client, server)
    assert seen == ["other.test", "localhost", "other.test"]


def test_sni_callback_node_style_with_a_context(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    other = ca.issue_cert("node.test")
    other_ctx = _tls.create_server_context(**key_cert(other))

    def sni(servername: str, cb: Any) -> None:
        cb(None, other_ctx if servername == "node.test" else None)

    client, server = handshake(sni_server_ctx(leaf, sni), _tls.create_client_context(ca=ca.cert_pem.bytes()),
                               "node.test")
    assert peer_names(client) == ["node.test"]
    close(client, server)


def test_sni_callback_error_refuses_handshake(ca: trustme.CA, leaf: trustme.LeafCert,
                                               caplog: pytest.LogCaptureFixture) -> None:
    def sni(servername: str, cb: Any) -> None:
        cb(ValueError("no such site"))

    with caplog.at_level(logging.ERROR, logger="greenhttps"), pytest.raises(ssl.SSLError):
        handshake(sni_server_ctx(leaf, sni), _tls.create_client_context(ca=ca.cert_pem.bytes()), "x.test")
    assert "sni_callback failed for 'x.test'" in caplog.text


def test_stdlib_context_gives_cooperative_sockets(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    stdlib_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(stdlib_server)
    stdlib_client = ssl.create_default_context()
    ca.configure_trust(stdlib_client)
    ticks: list[int] = []
    ticker = gevent.spawn(lambda: [ticks.append(1) or gevent.sleep(0) for _ in range(10**6)])
    try:
        # Both ends in one thread: a blocking stdlib socket would deadlock right here.
        client, server = handshake(_tls.as_gevent_context(stdlib_server), stdlib_client, "localhost")
    finally:
        ticker.kill()
    assert isinstance(server, gevent.ssl.SSLSocket) and isinstance(client, gevent.ssl.SSLSocket)
    assert server.context is stdlib_server and client.context is stdlib_client
    assert ticks, "another greenlet ran while the handshake waited"
    assert client.getpeercert()["subjectAltName"][0] == ("DNS", "localhost")
    close(client, server)
    # The CooperativeContext's own wrap_socket, as a server would call it.
    raw_a, raw_b = gevent.socket.socketpair()
    wrapped = _tls.as_gevent_context(stdlib_server).wrap_socket(raw_a, server_side=True,
                                                                do_handshake_on_connect=False)
    assert isinstance(wrapped, gevent.ssl.SSLSocket)
    close(wrapped, raw_b)


# --- client_verify_result without verification (reject_unauthorized=False) ------------------------------

def unverified(server_opts: dict[str, Any], host: str = "localhost", ca: Any = None) -> tuple[bool, str | None]:
    client, server = handshake(_tls.create_server_context(**server_opts),
                               _tls.create_client_context(reject_unauthorized=False, ca=ca), host)
    try:
        return _verify.client_verify_result(client, hostname=host, ca=ca)
    finally:
        close(client, server)


def test_verify_result_ok(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    assert unverified(key_cert(leaf), ca=ca.cert_pem.bytes()) == (True, None)
    assert unverified(key_cert(leaf), "127.0.0.1", ca=[ca.cert_pem.bytes()]) == (True, None)


def test_verify_result_self_signed(ca: trustme.CA) -> None:
    assert unverified(self_signed(), ca=ca.cert_pem.bytes()) == (False, "DEPTH_ZERO_SELF_SIGNED_CERT")
    assert unverified(self_signed()) == (False, "DEPTH_ZERO_SELF_SIGNED_CERT")  # against certifi


def test_verify_result_self_signed_but_trusted() -> None:
    pair = self_signed()
    assert unverified(pair, ca=pair["cert"]) == (True, None)


def test_verify_result_unknown_ca(other_ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    assert unverified(key_cert(leaf), ca=other_ca.cert_pem.bytes()) == (False, "UNABLE_TO_VERIFY_LEAF_SIGNATURE")
    assert unverified(key_cert(leaf)) == (False, "UNABLE_TO_VERIFY_LEAF_SIGNATURE")


def test_verify_result_self_signed_root_in_chain(ca: trustme.CA, other_ca: trustme.CA,
                                                 leaf: trustme.LeafCert) -> None:
    opts = key_cert(leaf)
    opts["cert"] += ca.cert_pem.bytes()  # the server also sends its (untrusted) root
    assert unverified(opts, ca=other_ca.cert_pem.bytes()) == (False, "SELF_SIGNED_CERT_IN_CHAIN")


def test_verify_result_intermediate_chain(leaf: trustme.LeafCert) -> None:
    root = trustme.CA()
    inter = root.create_child_ca()
    cert = inter.issue_cert("localhost")
    assert unverified(key_cert(cert), ca=root.cert_pem.bytes()) == (True, None)
    missing = {"key": cert.private_key_pem.bytes(), "cert": cert.cert_chain_pems[0].bytes()}
    assert unverified(missing, ca=root.cert_pem.bytes()) == (False, "UNABLE_TO_VERIFY_LEAF_SIGNATURE")


@pytest.mark.parametrize("not_before, not_after, code", [
    (NOW - 10 * DAY, NOW - DAY, "CERT_HAS_EXPIRED"),
    (NOW + DAY, NOW + 10 * DAY, "CERT_NOT_YET_VALID"),
])
def test_verify_result_validity(not_before: datetime.datetime, not_after: datetime.datetime, code: str,
                                ca: trustme.CA) -> None:
    cert = ca.issue_cert("localhost", not_before=not_before, not_after=not_after)
    assert unverified(key_cert(cert), ca=ca.cert_pem.bytes()) == (False, code)


def test_verify_result_hostname(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    assert unverified(key_cert(leaf), "wrong.test", ca=ca.cert_pem.bytes()) == (False, "ERR_TLS_CERT_ALTNAME_INVALID")


def test_verify_result_custom_identity_check(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    client, server = handshake(_tls.create_server_context(**key_cert(leaf)),
                               _tls.create_client_context(ca=ca.cert_pem.bytes()), "localhost")

    def picky(host: str, cert: dict[str, Any]) -> None:
        raise CertificateError("not today", "ERR_CUSTOM")

    assert _verify.client_verify_result(client, hostname="localhost", check_identity=picky) == (False, "ERR_CUSTOM")
    assert _verify.client_verify_result(client, hostname=None) == (True, None)
    close(client, server)


# --- peer certificates and client certificates ------------------------------------------------------

def test_decoded_certificate_matches_getpeercert(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    client, server = handshake(_tls.create_server_context(**key_cert(leaf)),
                               _tls.create_client_context(ca=ca.cert_pem.bytes()), "localhost")
    verified = client.getpeercert()
    assert _verify.decode_certificate(client.getpeercert(binary_form=True)) == verified
    assert _verify.peer_certificate(client) == verified
    close(client, server)
    client, server = handshake(_tls.create_server_context(**key_cert(leaf)),
                               _tls.create_client_context(reject_unauthorized=False), "localhost")
    assert client.getpeercert() == {}
    assert _verify.peer_certificate(client) == verified  # fields even when not validated
    assert _verify.peer_certificate(server) == {}  # no client certificate
    close(client, server)


def test_client_certificate(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    user = ca.issue_cert("alice@example.com")
    server_ctx = _tls.create_server_context(request_cert=True, reject_unauthorized=False,
                                            ca=ca.cert_pem.bytes(), **key_cert(leaf))
    with_cert = _tls.create_client_context(ca=ca.cert_pem.bytes(), **key_cert(user))
    client, server = handshake(server_ctx, with_cert, "localhost")
    assert _verify.server_verify_result(server, request_cert=True) == (True, None)
    assert ("email", "alice@example.com") in _verify.peer_certificate(server)["subjectAltName"]
    close(client, server)
    client, server = handshake(server_ctx, _tls.create_client_context(ca=ca.cert_pem.bytes()), "localhost")
    assert _verify.server_verify_result(server, request_cert=True) == (False, "UNABLE_TO_GET_ISSUER_CERT")
    close(client, server)


def test_client_certificate_from_pfx_required(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    user = ca.issue_cert("bob@example.com")
    server_ctx = _tls.create_server_context(request_cert=True, ca=ca.cert_pem.bytes(), **key_cert(leaf))
    client_ctx = _tls.create_client_context(ca=ca.cert_pem.bytes(), pfx=make_pfx(user, b"pw"), passphrase="pw")
    client, server = handshake(server_ctx, client_ctx, "localhost")
    assert _verify.server_verify_result(server, request_cert=True) == (True, None)
    close(client, server)
