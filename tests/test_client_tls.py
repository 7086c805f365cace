"""Client TLS: verification and Node's error codes, SNI, client certificates, ALPN,
session resumption.

Every success case has a negative control. Servers: stdlib ``ssl`` servers through
``script_server`` (they record the SNI, ALPN and client certificate they saw),
greenhttps's own server, and ``openssl s_server -www`` (which prints "New" or
"Reused" for the session on its status page).
"""

from __future__ import annotations

import datetime
import ssl
from typing import Any

import gevent
import pytest
import trustme
from client_support import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    OK_CLOSE,
    clean_global_agents_fixture,
    port_of,
    read_request,
    serve_fixture,
    serve_http_fixture,
    start_capture,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

import greenhttps
import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


# ------------------------------------------------------------- certificates


def pem_pair(leaf: trustme.LeafCert) -> dict[str, bytes]:
    return {"key": leaf.private_key_pem.bytes(), "cert": b"".join(b.bytes() for b in leaf.cert_chain_pems)}


def server_context(leaf: trustme.LeafCert | dict[str, bytes], **extra: Any) -> ssl.SSLContext:
    """A stdlib server context presenting ``leaf`` (a LeafCert or key/cert PEMs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if isinstance(leaf, trustme.LeafCert):
        leaf.configure_cert(ctx)
    else:
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
            with open(key, "wb") as f:
                f.write(leaf["key"])
            with open(cert, "wb") as f:
                f.write(leaf["cert"])
            ctx.load_cert_chain(cert, key)
    for name, value in extra.items():
        if name == "alpn":
            ctx.set_alpn_protocols(value)
        else:
            setattr(ctx, name, value)
    return ctx


def self_signed(name: str = "localhost") -> dict[str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return {
        "cert": cert.public_bytes(serialization.Encoding.PEM),
        "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
    }


@pytest.fixture(scope="module")
def expired_leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", not_before=NOW - 10 * DAY, not_after=NOW - DAY)


@pytest.fixture(scope="module")
def other_name_leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("other.example")


@pytest.fixture(scope="module")
def dns_only_leaf(ca: trustme.CA) -> trustme.LeafCert:
    # "127.0.0.1" as a DNS name is not an IP SAN
    return ca.issue_cert("localhost", "127.0.0.1.example")


@pytest.fixture(scope="module")
def intermediate_ca(ca: trustme.CA) -> trustme.CA:
    return ca.create_child_ca()


def tls_server(script_server: Any, ctx: ssl.SSLContext, seen: list[dict[str, Any]] | None = None) -> int:
    """A stdlib TLS server that answers one request with OK_CLOSE; ``seen`` gets, for
    each connection, what the server saw: ``{'alpn': ..., 'peercert': ...}``."""

    def handler(sock: Any) -> None:
        if seen is not None:
            seen.append({"alpn": sock.selected_alpn_protocol(), "peercert": sock.getpeercert()})
        if read_request(sock) is not None:
            sock.sendall(OK_CLOSE)

    port: int = script_server(handler, tls=True, ssl_context=ctx)
    return port


def url(port: int, host: str = "localhost", path: str = "/") -> str:
    return f"https://{host}:{port}{path}"


# ============================================================ verification


def test_default_trust_is_certifi_and_rejects_unknown_ca(script_server: Any, server_cert: trustme.LeafCert, ca_pem: bytes) -> None:
    seen: list[Any] = []
    port = tls_server(script_server, server_context(server_cert), seen)
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), agent=False)
    assert info.value.code == "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
    assert isinstance(info.value, ssl.SSLCertVerificationError) and isinstance(info.value, OSError)
    assert seen == []  # the handshake failed: no request was served
    # negative control: trusting the CA works
    assert greenhttps.get(url(port), ca=ca_pem, agent=False).read() == b"ok"


def test_ca_replaces_the_default_roots(script_server: Any, server_cert: trustme.LeafCert, ca_pem: bytes, other_ca: trustme.CA) -> None:
    port = tls_server(script_server, server_context(server_cert))
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), ca=other_ca.cert_pem.bytes(), agent=False)
    assert info.value.code == "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
    res = greenhttps.get(url(port), ca=[other_ca.cert_pem.bytes(), ca_pem], agent=False)
    # only what `ca` names is trusted: no certifi roots were added
    assert len(res.socket.context.get_ca_certs()) == 2
    assert res.read() == b"ok"


def test_ca_as_a_path(script_server: Any, server_cert: trustme.LeafCert, ca_file: str) -> None:
    port = tls_server(script_server, server_context(server_cert))
    assert greenhttps.get(url(port), ca=ca_file, agent=False).read() == b"ok"


def test_self_signed_is_depth_zero(script_server: Any) -> None:
    pair = self_signed()
    port = tls_server(script_server, server_context(pair))
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), agent=False)
    assert info.value.code == "DEPTH_ZERO_SELF_SIGNED_CERT"
    # negative control: trusting that very certificate works
    assert greenhttps.get(url(port), ca=pair["cert"], agent=False).read() == b"ok"


def test_expired_certificate(script_server: Any, expired_leaf: trustme.LeafCert, ca_pem: bytes) -> None:
    port = tls_server(script_server, server_context(expired_leaf))
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), ca=ca_pem, agent=False)
    assert info.value.code == "CERT_HAS_EXPIRED"


def test_wrong_name(script_server: Any, other_name_leaf: trustme.LeafCert, ca_pem: bytes) -> None:
    port = tls_server(script_server, server_context(other_name_leaf))
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), ca=ca_pem, agent=False)
    assert info.value.code == "ERR_TLS_CERT_ALTNAME_INVALID"
    # negative control: the name it is for (via servername; TCP to 127.0.0.1)
    res = greenhttps.get(url(port, "127.0.0.1"), ca=ca_pem, servername="other.example", agent=False)
    assert res.read() == b"ok"


def test_ip_literal_checked_against_ip_sans(
    script_server: Any, server_cert: trustme.LeafCert, dns_only_leaf: trustme.LeafCert, ca_pem: bytes
) -> None:
    good = tls_server(script_server, server_context(server_cert))  # has IP:127.0.0.1
    assert greenhttps.get(url(good, "127.0.0.1"), ca=ca_pem, agent=False).read() == b"ok"
    bad = tls_server(script_server, server_context(dns_only_leaf))  # DNS names only
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(bad, "127.0.0.1"), ca=ca_pem, agent=False)
    assert info.value.code == "ERR_TLS_CERT_ALTNAME_INVALID"
    assert greenhttps.get(url(bad, "localhost"), ca=ca_pem, agent=False).read() == b"ok"


def test_ipv6_literal(script_server: Any, server_cert: trustme.LeafCert, ca_pem: bytes) -> None:
    if not helpers.has_ipv6():
        pytest.skip("no IPv6 loopback")
    sni: list[Any] = []
    ctx = server_context(server_cert)
    ctx.sni_callback = lambda sock, name, c: sni.append(name)
    port = script_server(lambda s: (read_request(s), s.sendall(OK_CLOSE)), tls=True, ssl_context=ctx, host="::1")
    res = greenhttps.get(f"https://[::1]:{port}/", ca=ca_pem, agent=False)
    assert res.read() == b"ok"
    assert sni in ([], [None])


def test_missing_intermediate(script_server: Any, intermediate_ca: trustme.CA, ca_pem: bytes) -> None:
    leaf = intermediate_ca.issue_cert("localhost")
    only_leaf = {"key": leaf.private_key_pem.bytes(), "cert": leaf.cert_chain_pems[0].bytes()}
    port = tls_server(script_server, server_context(only_leaf))
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), ca=ca_pem, agent=False)
    assert info.value.code == "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
    # negative control: the full chain verifies
    full = tls_server(script_server, server_context(leaf))
    assert greenhttps.get(url(full), ca=ca_pem, agent=False).read() == b"ok"


def test_untrusted_root_in_chain(script_server: Any, other_ca: trustme.CA, ca_pem: bytes) -> None:
    leaf = other_ca.issue_cert("localhost")
    with_root = {
        "key": leaf.private_key_pem.bytes(),
        "cert": b"".join(b.bytes() for b in leaf.cert_chain_pems) + other_ca.cert_pem.bytes(),
    }
    port = tls_server(script_server, server_context(with_root))
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), ca=ca_pem, agent=False)
    assert info.value.code == "SELF_SIGNED_CERT_IN_CHAIN"


def _refuse(hostname: str, cert: dict[str, Any]) -> None:
    raise ValueError("refused by the caller's check")


@pytest.mark.parametrize("check", [None, _refuse])
def test_failed_verification_sends_no_request_bytes(
    script_server: Any, other_name_leaf: trustme.LeafCert, ca_pem: bytes, check: Any
) -> None:
    received: list[bytes] = []

    def handler(sock: Any) -> None:
        received.append(helpers.read_available(sock, idle_timeout=0.3))

    port = script_server(handler, tls=True, ssl_context=server_context(other_name_leaf))
    helpers.settle()
    fds = helpers.open_fds()
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), ca=ca_pem, agent=False, check_server_identity=check)
    assert info.value.__traceback__ is not None  # the error (and its frames) still alive
    gevent.sleep(0.4)
    assert received in ([], [b""])
    # The client socket was closed, not left to the GC.  (The scripted server's side
    # closes when its handler returns, so allow it a moment under load.)
    for _ in range(20):
        helpers.settle()
        if helpers.open_fds() <= fds:
            break
        gevent.sleep(0.1)
    assert helpers.open_fds() <= fds  # (earlier tests' sockets may close meanwhile)


# ================================================= reject_unauthorized=False


@pytest.mark.parametrize(
    ("which", "code"),
    [
        ("self_signed", "DEPTH_ZERO_SELF_SIGNED_CERT"),
        ("unknown_ca", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
        ("wrong_name", "ERR_TLS_CERT_ALTNAME_INVALID"),
        ("expired", "CERT_HAS_EXPIRED"),
        ("valid", None),
    ],
)
def test_reject_unauthorized_false_proceeds_with_authorization_error(
    script_server: Any, which: str, code: str | None, ca_pem: bytes, other_ca: trustme.CA,
    other_name_leaf: trustme.LeafCert, expired_leaf: trustme.LeafCert, server_cert: trustme.LeafCert,
) -> None:
    material: Any = {
        "self_signed": self_signed(),
        "unknown_ca": other_ca.issue_cert("localhost"),
        "wrong_name": other_name_leaf,
        "expired": expired_leaf,
        "valid": server_cert,
    }[which]
    port = tls_server(script_server, server_context(material))
    res = greenhttps.get(url(port), ca=ca_pem, reject_unauthorized=False, agent=False)
    assert res.status_code == 200
    assert res.socket.authorized is (code is None)
    assert res.socket.authorization_error == code
    assert res.socket.get_peer_certificate()  # the certificate is still shown
    assert res.read() == b"ok"


def test_reject_unauthorized_camel_case_in_dict(script_server: Any) -> None:
    port = tls_server(script_server, server_context(self_signed()))
    res = greenhttps.get({"hostname": "localhost", "port": port, "rejectUnauthorized": False, "agent": False})
    assert res.socket.authorized is False
    assert res.read() == b"ok"


# =================================================== check_server_identity


def test_check_server_identity(script_server: Any, other_name_leaf: trustme.LeafCert, server_cert: trustme.LeafCert, ca_pem: bytes) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def accept_all(hostname: str, cert: dict[str, Any]) -> None:
        calls.append((hostname, cert))
        return None

    wrong = tls_server(script_server, server_context(other_name_leaf))
    res = greenhttps.get(url(wrong), ca=ca_pem, check_server_identity=accept_all, agent=False)
    assert res.read() == b"ok" and res.socket.authorized is True
    assert calls[0][0] == "localhost"
    assert ("DNS", "other.example") in calls[0][1]["subjectAltName"]

    class Pinned(Exception):
        pass

    good = tls_server(script_server, server_context(server_cert))
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(good), ca=ca_pem, check_server_identity=lambda h, c: Pinned("not the pin"), agent=False)
    assert "not the pin" in str(info.value)
    assert isinstance(info.value.__cause__, Pinned)
    assert info.value.code == "ERR_TLS_CERT_ALTNAME_INVALID"

    def raising(hostname: str, cert: dict[str, Any]) -> None:
        raise Pinned("raised")

    good2 = tls_server(script_server, server_context(server_cert))
    with pytest.raises(errors.CertificateError) as info3:
        greenhttps.get(url(good2), ca=ca_pem, checkServerIdentity=raising, agent=False)
    assert isinstance(info3.value.__cause__, Pinned)
    # the default check's error carries Node's reason text
    wrong2 = tls_server(script_server, server_context(other_name_leaf))
    with pytest.raises(errors.CertificateError) as info4:
        greenhttps.get(url(wrong2), ca=ca_pem, agent=False)
    assert "localhost" in str(info4.value) and info4.value.code == "ERR_TLS_CERT_ALTNAME_INVALID"
    # the chain is still verified: identity override does not skip trust
    bad_ca = tls_server(script_server, server_context(self_signed()))
    with pytest.raises(errors.CertificateError) as info2:
        greenhttps.get(url(bad_ca), ca=ca_pem, check_server_identity=accept_all, agent=False)
    assert info2.value.code == "DEPTH_ZERO_SELF_SIGNED_CERT"


# ===================================================================== SNI


def sni_server(script_server: Any, leaf: trustme.LeafCert) -> tuple[int, list[Any]]:
    names: list[Any] = []
    ctx = server_context(leaf)
    ctx.sni_callback = lambda sock, name, c: names.append(name)
    return tls_server(script_server, ctx), names


def test_sni_is_the_hostname(script_server: Any, server_cert: trustme.LeafCert, ca_pem: bytes) -> None:
    port, names = sni_server(script_server, server_cert)
    greenhttps.get(url(port), ca=ca_pem, agent=False).read()
    assert names == ["localhost"]


def test_no_sni_for_an_ip_literal(script_server: Any, server_cert: trustme.LeafCert, ca_pem: bytes) -> None:
    port, names = sni_server(script_server, server_cert)
    greenhttps.get(url(port, "127.0.0.1"), ca=ca_pem, agent=False).read()
    assert names in ([], [None])


def test_servername_option_overrides(script_server: Any, ca: trustme.CA, ca_pem: bytes) -> None:
    leaf = ca.issue_cert("virtual.example")
    port, names = sni_server(script_server, leaf)
    res = greenhttps.get(url(port, "127.0.0.1"), ca=ca_pem, servername="virtual.example", agent=False)
    assert res.read() == b"ok"
    assert names == ["virtual.example"]
    assert res.socket.servername == "virtual.example"


def test_servername_that_is_an_ip_sends_no_sni(script_server: Any, server_cert: trustme.LeafCert, ca_pem: bytes) -> None:
    port, names = sni_server(script_server, server_cert)
    greenhttps.get(url(port, "localhost"), ca=ca_pem, servername="127.0.0.1", agent=False).read()
    assert names in ([], [None])


def test_host_header_name_is_sni_and_checked_name(script_server: Any, ca: trustme.CA, ca_pem: bytes) -> None:
    leaf = ca.issue_cert("vhost.example")
    names: list[Any] = []
    ctx = server_context(leaf)
    ctx.sni_callback = lambda sock, name, c: names.append(name)
    cap = start_capture(script_server, ssl_context=ctx)
    res = greenhttps.get(
        {"hostname": "127.0.0.1", "port": cap.port, "headers": {"Host": "vhost.example:8443"}, "ca": ca_pem, "agent": False}
    )
    assert res.read() == b"ok"
    assert names == ["vhost.example"]
    assert cap.last.get("host") == "vhost.example:8443"


def test_sni_seen_by_greenhttps_server(serve: Any, ca_pem: bytes) -> None:
    got: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        got.append(req.socket.servername)
        res.end("x")

    port = port_of(serve(handler))
    greenhttps.get(url(port), ca=ca_pem, agent=False).read()
    greenhttps.get(url(port, "127.0.0.1"), ca=ca_pem, agent=False).read()
    assert got == ["localhost", None]


def test_tls_options_through_the_global_agent(script_server: Any, ca: trustme.CA, ca_pem: bytes) -> None:
    """test-https-agent-servername.js: servername works through the global agent."""
    leaf = ca.issue_cert("global.example")
    port, names = sni_server(script_server, leaf)
    res = greenhttps.get(url(port, "127.0.0.1"), ca=ca_pem, servername="global.example")
    assert res.read() == b"ok" and names == ["global.example"]


# ====================================================== client certificates


def _client_pfx(client_cert: dict[str, bytes], password: bytes | None) -> bytes:
    key = serialization.load_pem_private_key(client_cert["key"], None)
    certs = x509.load_pem_x509_certificates(client_cert["cert"])
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"client", key, certs[0], certs[1:] or None, enc)  # type: ignore[arg-type]


def _mtls_context(server_cert: trustme.LeafCert, ca: trustme.CA) -> ssl.SSLContext:
    ctx = server_context(server_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(ctx)
    return ctx


@pytest.mark.parametrize("form", ["key_cert", "pfx", "pfx_passphrase", "encrypted_key"])
def test_client_certificate_against_stdlib_server(
    script_server: Any, server_cert: trustme.LeafCert, ca: trustme.CA, ca_pem: bytes,
    client_cert: dict[str, bytes], form: str,
) -> None:
    seen: list[Any] = []
    port = tls_server(script_server, _mtls_context(server_cert, ca), seen)
    if form == "key_cert":
        opts: dict[str, Any] = dict(client_cert)
    elif form == "pfx":
        opts = {"pfx": _client_pfx(client_cert, None)}
    elif form == "pfx_passphrase":
        opts = {"pfx": _client_pfx(client_cert, b"s3cret"), "passphrase": "s3cret"}
    else:
        key = serialization.load_pem_private_key(client_cert["key"], None)
        enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"pw"))
        opts = {"key": enc, "cert": client_cert["cert"], "passphrase": "pw"}
    res = greenhttps.get(url(port), ca=ca_pem, agent=False, **opts)
    assert res.read() == b"ok"
    peer = seen[0]["peercert"]
    assert ("DNS", "client.example.org") in peer["subjectAltName"]


def test_no_client_certificate_is_refused(script_server: Any, server_cert: trustme.LeafCert, ca: trustme.CA, ca_pem: bytes) -> None:
    seen: list[Any] = []
    port = tls_server(script_server, _mtls_context(server_cert, ca), seen)
    with pytest.raises(errors.Error) as info:
        greenhttps.get(url(port), ca=ca_pem, agent=False).read()
    assert isinstance(info.value, OSError)
    assert seen == []


def test_client_certificate_against_greenhttps_server(
    serve: Any, ca_pem: bytes, client_cert: dict[str, bytes], other_ca: trustme.CA
) -> None:
    def handler(req: Any, res: Any) -> None:
        cert = req.socket.get_peer_certificate()
        res.end(f"{req.socket.authorized} {dict(cert.get('subjectAltName', ())).get('DNS')}")

    srv = serve(handler, request_cert=True, reject_unauthorized=True, ca=ca_pem)
    port = port_of(srv)
    res = greenhttps.get(url(port), ca=ca_pem, agent=False, **client_cert)
    assert res.read() == b"True client.example.org"
    # negative control: a certificate from another CA is refused
    stranger = other_ca.issue_cert("stranger.example")
    with pytest.raises(errors.Error):
        greenhttps.get(url(port), ca=ca_pem, agent=False, **pem_pair(stranger)).read()


def test_client_certs_use_separate_pools(serve: Any, ca_pem: bytes, client_cert: dict[str, bytes]) -> None:
    def handler(req: Any, res: Any) -> None:
        res.end(str(bool(req.socket.get_peer_certificate())))

    port = port_of(serve(handler, request_cert=True, reject_unauthorized=False, ca=ca_pem))
    agent = greenhttps.Agent(keep_alive=True)
    assert greenhttps.get(url(port), ca=ca_pem, agent=agent, **client_cert).read() == b"True"
    # same origin, no client cert: must not ride the authenticated connection
    assert greenhttps.get(url(port), ca=ca_pem, agent=agent).read() == b"False"
    assert len(agent.free_sockets) == 2
    agent.destroy()


@pytest.mark.needs_openssl
def test_client_certificate_against_openssl(
    server_cert_files: dict[str, str], ca_file: str, ca_pem: bytes, client_cert: dict[str, bytes]
) -> None:
    with helpers.openssl_s_server(
        server_cert_files["cert"], server_cert_files["key"], ["-Verify", "1", "-CAfile", ca_file]
    ) as port:
        res = greenhttps.get(url(port), ca=ca_pem, agent=False, **client_cert)
        assert res.status_code == 200
        page = res.read().decode()
        assert "client.example.org" in page or "Client certificate" in page


# ===================================================================== ALPN


def test_alpn_offers_http11(script_server: Any, server_cert: trustme.LeafCert, ca_pem: bytes) -> None:
    seen: list[Any] = []
    port = tls_server(script_server, server_context(server_cert, alpn=["h2", "http/1.1"]), seen)
    res = greenhttps.get(url(port), ca=ca_pem, agent=False)
    assert res.socket.alpn_protocol == "http/1.1"
    assert seen[0]["alpn"] == "http/1.1"
    res.read()
    # negative control: a server that only speaks h2 gets no http/1.1 selection
    seen2: list[Any] = []
    port2 = tls_server(script_server, server_context(server_cert, alpn=["h2"]), seen2)
    try:
        greenhttps.get(url(port2), ca=ca_pem, agent=False).read()
    except errors.Error:
        pass
    assert not seen2 or seen2[0]["alpn"] is None


# ===================================================== session resumption


def test_session_resumed_on_a_new_connection(serve: Any, ca_pem: bytes) -> None:
    port = port_of(serve(lambda req, res: res.end("s")))
    agent = greenhttps.Agent()  # keep_alive=False: every request dials anew
    reused = []
    ports = set()
    for _ in range(3):
        res = greenhttps.get(url(port), ca=ca_pem, agent=agent)
        reused.append(res.socket.session_reused)
        ports.add(res.socket.local_port)
        res.read()
    assert reused == [False, True, True]
    assert len(ports) == 3  # really new connections


def test_session_resumed_after_destroying_a_pooled_socket(serve: Any, ca_pem: bytes) -> None:
    port = port_of(serve(lambda req, res: res.end("s")))
    agent = greenhttps.Agent(keep_alive=True)
    req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    res = req.getresponse()
    res.read()
    assert res.socket.session_reused is False
    req.socket.destroy()
    req2 = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    res2 = req2.getresponse()
    assert req2.reused_socket is False
    assert res2.socket.session_reused is True
    res2.read()
    agent.destroy()


def test_session_option_resumes(serve: Any, ca_pem: bytes) -> None:
    """B-80 (test-https-client-resume.js): a second connection given the first's
    ``get_session()`` as Node's ``session`` option resumes; the handler runs twice.
    Agents with no session cache, so only the option can make it resume."""
    seen = []
    port = port_of(serve(lambda req, res: (seen.append(req.url), res.end("s"))))
    first = greenhttps.get(url(port), ca=ca_pem, agent=greenhttps.Agent(max_cached_sessions=0))
    assert first.socket.session_reused is False
    session = first.socket.get_session()  # before the body: the socket closes after it
    assert session is not None
    assert first.read() == b"s"
    second = greenhttps.get(url(port), ca=ca_pem, session=session, agent=greenhttps.Agent(max_cached_sessions=0))
    assert second.socket.session_reused is True
    assert second.read() == b"s"
    third = greenhttps.get(url(port), ca=ca_pem, agent=greenhttps.Agent(max_cached_sessions=0))
    assert third.socket.session_reused is False  # control: no option, no resumption
    third.read()
    assert seen == ["/", "/", "/"]


def test_no_resumption_without_a_session_cache(serve: Any, ca_pem: bytes) -> None:
    port = port_of(serve(lambda req, res: res.end("s")))
    agent = greenhttps.Agent(max_cached_sessions=0)
    reused = []
    for _ in range(2):
        res = greenhttps.get(url(port), ca=ca_pem, agent=agent)
        reused.append(res.socket.session_reused)
        res.read()
    assert reused == [False, False]


def test_sessions_are_read_only_for_an_agent_that_keeps_them(serve: Any, ca_pem: bytes) -> None:
    """Reading a TLS session out of OpenSSL costs 0.1-0.25 ms per connection (Python
    serialises it), so it is read only for an agent that will offer it again: an
    ``Agent()`` caches the first connection's; ``agent=False`` (a throwaway agent,
    Node's ``new Agent()`` per request) and ``max_cached_sessions=0`` keep none."""
    port = port_of(serve(lambda req, res: res.end("s")))
    agent = greenhttps.Agent()
    res = greenhttps.get(url(port), ca=ca_pem, agent=agent)
    res.read()
    assert len(agent._sessions) == 1 and next(iter(agent._sessions.values())) is not None
    used = []
    for options in ({"agent": False}, {"agent": greenhttps.Agent(max_cached_sessions=0)}):
        req = greenhttps.request(url(port), ca=ca_pem, **options)
        res = req.getresponse()
        assert res.read() == b"s"
        assert res.socket.session_reused is False
        assert len(req.agent._sessions) == 0
        used.append(req.agent)
    # The one-off agent is still an ordinary Node Agent to its user (maxCachedSessions 100).
    assert [agent.max_cached_sessions for agent in used] == [100, 0]


def test_session_not_shared_across_tls_options(serve: Any, ca_pem: bytes, other_ca: trustme.CA) -> None:
    port = port_of(serve(lambda req, res: res.end("s")))
    agent = greenhttps.Agent()
    greenhttps.get(url(port), ca=ca_pem, agent=agent).read()
    res = greenhttps.get(url(port), ca=[ca_pem, other_ca.cert_pem.bytes()], agent=agent)
    assert res.socket.session_reused is False
    res.read()


@pytest.mark.needs_openssl
@pytest.mark.parametrize("cache", [100, 0])
def test_session_resumption_with_openssl_s_server(server_cert_files: dict[str, str], ca_pem: bytes, cache: int) -> None:
    with helpers.openssl_s_server(server_cert_files["cert"], server_cert_files["key"]) as port:
        agent = greenhttps.Agent(max_cached_sessions=cache)
        seen = []
        for _ in range(2):
            res = greenhttps.get(url(port), ca=ca_pem, agent=agent)
            assert res.status_code == 200 and res.http_version == "1.0"
            reused = res.socket.session_reused
            page = res.read().decode()
            server_says = "Reused," in page
            assert server_says == reused  # both ends agree
            seen.append(reused)
        assert seen == ([False, True] if cache else [False, False])


@pytest.mark.needs_openssl
def test_openssl_s_server_tls12_only(server_cert_files: dict[str, str], ca_pem: bytes) -> None:
    with helpers.openssl_s_server(server_cert_files["cert"], server_cert_files["key"], ["-tls1_2"]) as port:
        agent = greenhttps.Agent()
        r1 = greenhttps.get(url(port), ca=ca_pem, agent=agent)
        assert r1.socket.get_protocol() == "TLSv1.2"
        r1.read()
        r2 = greenhttps.get(url(port), ca=ca_pem, agent=agent)
        assert r2.socket.session_reused is True
        r2.read()


@pytest.mark.parametrize("falsy", [False, 0, ""])
def test_check_server_identity_falsy_return_accepts(script_server: Any, other_name_leaf: trustme.LeafCert, ca_pem: bytes, falsy: Any) -> None:
    """B-75 (test-https-client-checkServerIdentity.js): Node tests ``if (verifyError)``,
    so ``() => false`` accepts a certificate whose name does not match."""
    port = tls_server(script_server, server_context(other_name_leaf))
    res = greenhttps.get(url(port), ca=ca_pem, check_server_identity=lambda h, c: falsy, agent=False)
    assert res.read() == b"ok" and res.socket.authorized is True


def test_check_server_identity_truthy_non_error_refuses(script_server: Any, server_cert: trustme.LeafCert, ca_pem: bytes) -> None:
    """A truthy return that is not an exception is a refusal, as in Node (which
    destroys the socket with that value); Python raises a CertificateError naming it."""
    port = tls_server(script_server, server_context(server_cert))
    with pytest.raises(errors.CertificateError) as info:
        greenhttps.get(url(port), ca=ca_pem, check_server_identity=lambda h, c: "nope", agent=False)
    assert "'nope'" in str(info.value)
