"""``server.set_secure_context(options)``: a new TLS identity for new connections,
while the open ones keep theirs (Node's ``setSecureContext``, Node 11+).

Mirrors test/parallel/test-tls-set-secure-context.js: a keep-alive connection made
before the swap keeps its certificate and keeps working; connections made after it
see the new one.  The first test runs the same client against Node 20 and against
greenhttps.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import greenhttps
import helpers

pytestmark = pytest.mark.timeout(30)

REQ = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def pem(cert: trustme.LeafCert) -> dict[str, bytes]:
    return {"key": cert.private_key_pem.bytes(), "cert": b"".join(b.bytes() for b in cert.cert_chain_pems)}


def der(cert: trustme.LeafCert) -> bytes:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_bytes(serialization.Encoding.DER)


def trusting(*cas: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ca in cas:
        ca.configure_trust(ctx)
    return ctx


def get(sock: Any, path: str = "/") -> helpers.Response:
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return helpers.read_response(sock)


def peer_der(port: int, ctx: ssl.SSLContext, name: str = "localhost") -> bytes:
    sock = helpers.raw_connect(port, tls=True, ssl_context=ctx, server_hostname=name)
    try:
        got = sock.getpeercert(binary_form=True)
        assert get(sock).status == 200
        return got
    finally:
        sock.close()


NODE_ROTATING_SERVER = """
const https = require('https');
const fs = require('fs');
const [key1, cert1, key2, cert2] = process.argv.slice(2).map((f) => fs.readFileSync(f));
const server = https.createServer({ key: key1, cert: cert1 }, (req, res) => {
  if (req.url === '/rotate') server.setSecureContext({ key: key2, cert: cert2 });
  res.end('ok ' + req.url);
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@pytest.mark.parametrize("peer", ["greenhttps", pytest.param("node", marks=pytest.mark.needs_node)])
def test_new_connections_get_the_new_identity_open_ones_keep_theirs(
    peer: str, make_server: Callable[..., Any], ca: trustme.CA, other_ca: trustme.CA, tmp_path: Path
) -> None:
    """Mirrors test/parallel/test-tls-set-secure-context.js, against Node 20 and us:
    the identity moves from one CA's certificate to another's on a request to
    ``/rotate``; the keep-alive connection that asked keeps the old certificate and
    goes on working; a new connection presents the new one, and a client trusting
    only the old CA now fails to verify it."""
    first, second = ca.issue_cert("localhost"), other_ca.issue_cert("localhost")

    def check(port: int) -> None:
        old_client, new_client = trusting(ca), trusting(other_ca)
        kept = helpers.raw_connect(port, tls=True, ssl_context=old_client)
        try:
            assert kept.getpeercert(binary_form=True) == der(first)
            assert get(kept).body == b"ok /"
            assert get(kept, "/rotate").body == b"ok /rotate"
            assert peer_der(port, new_client) == der(second)
            with pytest.raises(ssl.SSLCertVerificationError):
                peer_der(port, old_client)
            # The connection from before the swap: the old identity, still serving.
            assert kept.getpeercert(binary_form=True) == der(first)
            assert get(kept, "/after").body == b"ok /after"
        finally:
            kept.close()

    if peer == "node":
        files = []
        for n, cert in enumerate((first, second)):
            for part, blob in pem(cert).items():
                path = tmp_path / f"{part}{n}.pem"
                path.write_bytes(blob)
                files.append(path)
        args = [str(files[0]), str(files[1]), str(files[2]), str(files[3])]
        with helpers.node_server(NODE_ROTATING_SERVER, args) as port:
            check(port)
        return

    def handler(req: Any, res: Any) -> None:
        if req.url == "/rotate":
            srv.set_secure_context(pem(second))
        res.end("ok " + req.url)

    srv = make_server(handler, **pem(first))
    check(srv.address()["port"])


def test_rotation_under_load_no_connection_fails(make_server: Callable[..., Any], ca: trustme.CA) -> None:
    """Three rotations while six clients open connection after connection (two
    requests each) and one keep-alive connection from before the first rotation
    goes on: no request fails; every connection opened after a rotation returned
    presents that rotation's certificate or a later one, and none opened before it
    was called presents a later one; the old keep-alive connection keeps the first."""
    certs = [ca.issue_cert("localhost") for _ in range(4)]
    index = {der(c): n for n, c in enumerate(certs)}
    srv = make_server(lambda req, res: res.end("ok"), **pem(certs[0]))
    port = srv.address()["port"]
    client = trusting(ca)
    rotations: list[tuple[float, float]] = []  # (called, returned) for each rotation
    seen: list[tuple[float, float, int]] = []  # (connect started, handshake done, cert)
    failures: list[BaseException] = []
    stop = gevent.event.Event()

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                sock = helpers.raw_connect(port, tls=True, ssl_context=client)
                try:
                    seen.append((started, time.monotonic(), index[sock.getpeercert(binary_form=True)]))
                    for _ in range(2):
                        assert get(sock).status == 200
                finally:
                    sock.close()
            except Exception as exc:  # noqa: BLE001 -- counted, then asserted empty
                failures.append(exc)

    kept = helpers.raw_connect(port, tls=True, ssl_context=client)
    clients = [gevent.spawn(loop) for _ in range(6)]
    try:
        for cert in certs[1:]:
            gevent.sleep(0.3)
            called = time.monotonic()
            srv.set_secure_context(pem(cert))
            rotations.append((called, time.monotonic()))
            assert get(kept).status == 200
        gevent.sleep(0.3)
    finally:
        stop.set()
        gevent.joinall(clients, timeout=10)
    assert failures == []
    assert index[kept.getpeercert(binary_form=True)] == 0
    assert get(kept).status == 200
    kept.close()
    for n in range(4):
        assert any(cert == n for _, _, cert in seen), f"no connection saw certificate {n}"
    for started, done, cert in seen:
        after = sum(returned <= started for _, returned in rotations)  # rotations complete before connect
        before = sum(called <= done for called, _ in rotations)  # rotations begun before the handshake ended
        assert after <= cert <= before, (started, done, cert, rotations)


def test_sni_callback_still_picks_per_name_contexts(
    make_server: Callable[..., Any], ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    """``sni_callback`` is the server's, not the context's (as in Node): after a
    swap it still picks per-name identities, the new default serves the other names,
    and ``req.socket.servername`` is still recorded."""
    other, rotated = ca.issue_cert("other.example"), ca.issue_cert("localhost")
    names: list[Any] = []
    srv = make_server(lambda req, res: names.append(req.socket.servername) or res.end(),
                      sni_callback=lambda name: pem(other) if name == "other.example" else None)
    port = srv.address()["port"]
    client = trusting(ca)
    assert peer_der(port, client) == der(server_cert)
    srv.setSecureContext(pem(rotated))  # Node's spelling
    assert peer_der(port, client, "other.example") == der(other)
    assert peer_der(port, client) == der(rotated)
    assert names == ["localhost", "other.example", "localhost"]


def test_request_cert_is_kept_and_ca_replaced_as_in_node(
    make_server: Callable[..., Any], ca: trustme.CA, other_ca: trustme.CA, client_cert: dict[str, bytes]
) -> None:
    """``request_cert``/``reject_unauthorized`` stay the server's; ``ca`` is part of
    the options that are replaced as a whole: a swap without it no longer trusts
    the client's CA (Node's ``this.ca = undefined``), and one with it does."""
    srv = make_server(request_cert=True, ca=ca.cert_pem.bytes())
    port = srv.address()["port"]

    def with_client_cert() -> ssl.SSLContext:
        ctx = trusting(ca)
        leaf = ca.issue_cert("client.example")
        leaf.configure_cert(ctx)
        return ctx

    assert peer_der(port, with_client_cert())
    fresh = ca.issue_cert("localhost")
    srv.set_secure_context(pem(fresh))  # no ca: default roots only
    with pytest.raises((ssl.SSLError, OSError)):
        sock = helpers.raw_connect(port, tls=True, ssl_context=with_client_cert())
        try:
            get(sock)  # TLS 1.3: the refusal of the client's certificate comes after
        finally:
            sock.close()
    srv.set_secure_context({**pem(fresh), "ca": ca.cert_pem.bytes(), "requestCert": False})
    assert peer_der(port, with_client_cert()) == der(fresh)
    with pytest.raises((ssl.SSLError, OSError)):  # still requested and required
        sock = helpers.raw_connect(port, tls=True, ssl_context=trusting(ca))
        try:
            get(sock)
        finally:
            sock.close()


def test_min_version_kept_unless_given(make_server: Callable[..., Any], ca: trustme.CA,
                                       server_cert: trustme.LeafCert) -> None:
    """Node keeps ``minVersion``/``maxVersion`` across ``setSecureContext`` unless given."""
    srv = make_server(min_version="TLSv1.3")
    port = srv.address()["port"]
    old_client = trusting(ca)
    old_client.maximum_version = ssl.TLSVersion.TLSv1_2
    srv.set_secure_context(pem(server_cert))
    with pytest.raises(ssl.SSLError):
        helpers.raw_connect(port, tls=True, ssl_context=old_client).close()
    srv.set_secure_context({**pem(server_cert), "min_version": "TLSv1.2"})
    assert peer_der(port, old_client) == der(server_cert)


def test_bad_options_raise_and_keep_the_old_identity(
    make_server: Callable[..., Any], ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    srv = make_server()
    port = srv.address()["port"]
    other = ca.issue_cert("localhost")
    with pytest.raises(greenhttps.errors.InvalidArgumentError) as info:
        srv.set_secure_context("cert.pem")  # type: ignore[arg-type]
    assert info.value.code == "ERR_INVALID_ARG_TYPE"
    with pytest.raises(TypeError, match="bogus"):
        srv.set_secure_context({**pem(other), "bogus": 1})
    mismatched = {"key": other.private_key_pem.bytes(), "cert": pem(server_cert)["cert"]}
    with pytest.raises(greenhttps.errors.InvalidArgumentError) as info:
        srv.set_secure_context(mismatched)
    assert info.value.code == "ERR_OSSL_X509_KEY_VALUES_MISMATCH"
    assert peer_der(port, trusting(ca)) == der(server_cert)  # unchanged
    # The options given to create_server may be passed again: server options are ignored.
    srv.set_secure_context({**pem(other), "keep_alive_timeout": 1, "sni_callback": None})
    assert peer_der(port, trusting(ca)) == der(other)
    assert srv.keep_alive_timeout == 5000


def test_a_ready_ssl_context(make_server: Callable[..., Any], ca: trustme.CA) -> None:
    leaf = ca.issue_cert("localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(ctx)
    srv = make_server()
    srv.set_secure_context({"ssl_context": ctx})
    assert peer_der(srv.address()["port"], trusting(ca)) == der(leaf)


def test_plain_http_server_has_no_context(make_server: Callable[..., Any], tls_options: dict[str, bytes]) -> None:
    srv = make_server(tls=False)
    with pytest.raises(TypeError, match="no TLS"):
        srv.set_secure_context(tls_options)
