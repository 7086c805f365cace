"""The server's TLS side: connection events, failed and slow handshakes, client
certificates, key material options (pfx, passphrase, ssl_context, SNI), options.

Peers are raw stdlib/gevent TLS sockets with their own contexts, so what the server
presents and accepts is checked independently of greenhttps's client.
"""

from __future__ import annotations

import os
import random
import socket as stdlib_socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.socket
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

import greenhttps
import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)

REQ = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


# ------------------------------------------------------------------ fixtures


def port_of(srv: Any) -> int:
    return int(srv.address()["port"])


def tls_client(
    srv: Any,
    ctx: ssl.SSLContext | None = None,
    server_hostname: str | None = "localhost",
) -> Any:
    return helpers.raw_connect(port_of(srv), tls=True, ssl_context=ctx, server_hostname=server_hostname)


def get_ok(srv: Any, ctx: ssl.SSLContext | None = None) -> helpers.Response:
    sock = tls_client(srv, ctx)
    try:
        sock.sendall(REQ)
        resp = helpers.read_response(sock)
    finally:
        sock.close()
    assert resp.status == 200, resp.raw
    return resp


def record_errors(srv: Any) -> list[tuple[str, Any, Any]]:
    """Every 'tlsClientError' and 'clientError', in order, as (event, err, socket)."""
    seen: list[tuple[str, Any, Any]] = []
    srv.on("tlsClientError", lambda err, sock: seen.append(("tlsClientError", err, sock)))
    srv.on("clientError", lambda err, sock: seen.append(("clientError", err, sock)))
    return seen


def wait_for(predicate: Callable[[], bool], timeout: float = 3) -> None:
    with gevent.Timeout(timeout, AssertionError(f"not true within {timeout}s")):
        while not predicate():
            gevent.sleep(0.01)


def client_hello(ctx: ssl.SSLContext, server_hostname: str | None = "localhost") -> bytes:
    """The ClientHello ``ctx`` would send, as bytes (no network)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def leaf_pem(cert: trustme.LeafCert) -> dict[str, bytes]:
    return {
        "key": cert.private_key_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in cert.cert_chain_pems),
    }


def leaf_der(cert: trustme.LeafCert) -> bytes:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_bytes(
        serialization.Encoding.DER
    )


# --------------------------------------------------------------- TLS events


def test_connection_then_secure_connection(make_server: Any, client_ssl_context: ssl.SSLContext) -> None:
    events: list[tuple[Any, ...]] = []
    sockets: list[Any] = []

    def on_connection(sock: Any) -> None:
        events.append(("connection", sock.encrypted, sock.get_protocol(), sock.remote_address))

    def on_secure(sock: Any) -> None:
        sockets.append(sock)
        events.append(("secureConnection", sock.encrypted, sock.alpn_protocol))

    def handler(req: Any, res: Any) -> None:
        sockets.append(req.socket)
        res.end("ok")

    srv = make_server(handler)
    srv.on("connection", on_connection)
    srv.on("secureConnection", on_secure)
    client_ssl_context.set_alpn_protocols(["h2", "http/1.1"])
    sock = tls_client(srv, client_ssl_context)
    assert sock.selected_alpn_protocol() == "http/1.1"
    sock.sendall(REQ)
    assert helpers.read_response(sock).status == 200
    assert events == [
        ("connection", False, None, "127.0.0.1"),
        ("secureConnection", True, "http/1.1"),
    ]
    secure = sockets[0]
    assert sockets[1] is secure  # req.socket is the TLS socket 'secureConnection' saw
    assert secure.get_protocol() == sock.version()
    assert secure.get_protocol() in ("TLSv1.2", "TLSv1.3")
    cipher = secure.get_cipher()
    assert cipher["name"] == sock.cipher()[0]
    assert cipher["version"] == sock.cipher()[1]
    sock.close()


def test_a_client_half_close_ends_the_stream_without_an_alert(
    make_server: Any, client_ssl_context: ssl.SSLContext
) -> None:
    # The client sends its request, then a TCP FIN without close_notify, and reads
    # the answer to the end.  Node ends the connection quietly; OpenSSL's default
    # answers the FIN with a decode_error alert, which the client reads as an error
    # after the response.  The peer is the stdlib's blocking ssl, in a thread.
    srv = make_server(lambda req, res: res.end("hello"))
    outcome: list[Any] = []

    def client() -> None:
        raw = stdlib_socket.create_connection(("127.0.0.1", port_of(srv)), timeout=5)
        with client_ssl_context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(REQ)
            half = stdlib_socket.socket(fileno=os.dup(sock.fileno()))
            half.shutdown(stdlib_socket.SHUT_WR)
            half.close()
            received = b""
            try:
                while chunk := sock.recv(4096):
                    received += chunk
                outcome.append(("end", received))
            except (OSError, ssl.SSLError) as exc:
                outcome.append((repr(exc), received))

    helpers.run_in_thread(client)
    assert len(outcome) == 1
    what, received = outcome[0]
    assert received.endswith(b"hello")
    assert what == "end", f"the client read {what} after the response"


def test_no_alpn_offered(make_server: Any) -> None:
    seen: list[Any] = []
    srv = make_server()
    srv.on("secureConnection", lambda sock: seen.append(sock.alpn_protocol))
    get_ok(srv)  # helpers' unverified context offers no ALPN
    assert seen == [None]


def test_servername_is_the_sni_received(make_server: Any, client_ssl_context: ssl.SSLContext) -> None:
    names: list[Any] = []
    srv = make_server(lambda req, res: names.append(req.socket.servername) or res.end())
    get_ok(srv, client_ssl_context)  # SNI "localhost"
    sock = tls_client(srv, helpers.unverified_client_context(), server_hostname="127.0.0.1")
    sock.sendall(REQ)  # no SNI for an IP literal
    helpers.read_response(sock)
    sock.close()
    assert names == ["localhost", None]


# --------------------------------------------------------- failed handshakes


def _plaintext(port: int) -> None:
    helpers.exchange(port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", tls=False, idle_timeout=2)


def _garbage(port: int) -> None:
    helpers.exchange(port, random.Random(7).randbytes(700), tls=False, idle_timeout=2)


def _rst_mid_handshake(port: int) -> None:
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=3)
    sock.sendall(client_hello(helpers.unverified_client_context()))
    assert sock.recv(5)[:1] == b"\x16"  # the server's handshake flight has started
    helpers.rst_close(sock)


def _tls11_only(port: int) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with pytest.warns(DeprecationWarning):
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        client_hello(ctx)
    except (ssl.SSLError, ValueError, pytest.fail.Exception):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=3)
    with pytest.raises(ssl.SSLError):
        helpers.wrap_client(sock, ctx, "localhost")


HANDSHAKE_FAILURES = {
    "plaintext HTTP": _plaintext,
    "random garbage": _garbage,
    "RST mid-handshake": _rst_mid_handshake,
    "TLS 1.1 only": _tls11_only,
}


@pytest.mark.parametrize("how", list(HANDSHAKE_FAILURES))
def test_failed_handshake(make_server: Any, how: str, capfd: Any) -> None:
    calls: list[Any] = []
    srv = make_server(lambda req, res: calls.append(req) or res.end("ok"))
    seen = record_errors(srv)
    secure: list[Any] = []
    srv.on("secureConnection", secure.append)
    HANDSHAKE_FAILURES[how](port_of(srv))
    wait_for(lambda: len(seen) >= 2)
    helpers.settle(0.1)
    assert [event for event, _, _ in seen] == ["tlsClientError", "clientError"]
    (_, err, sock), (_, err2, sock2) = seen
    assert err2 is err and sock2 is sock
    assert isinstance(err, greenhttps.Error) and isinstance(err, OSError)
    assert isinstance(err.code, str) and err.code
    assert isinstance(sock, greenhttps.Socket)
    assert sock.remote_address == "127.0.0.1"
    wait_for(lambda: sock.destroyed)
    assert secure == [] and calls == []
    assert srv.connections == 0
    # The accept loop carries on: a normal request right after is served.
    assert get_ok(srv).body == b"ok"
    assert "Traceback" not in capfd.readouterr().err


def test_failed_handshake_default_sends_no_http(make_server: Any) -> None:
    srv = make_server()  # no 'clientError' listener: the default only closes
    reply = helpers.exchange(port_of(srv), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", tls=False, idle_timeout=2)
    assert b"HTTP/1.1" not in reply
    get_ok(srv)


def test_handshake_timeout_closes_silent_connection(make_server: Any) -> None:
    srv = make_server(handshake_timeout=300)
    seen = record_errors(srv)
    sock = gevent.socket.create_connection(("127.0.0.1", port_of(srv)), timeout=3)
    start = time.monotonic()
    assert helpers.read_until_eof(sock, 3, reset_ok=True) == b""
    elapsed = time.monotonic() - start
    sock.close()
    assert 0.25 <= elapsed < 1.2
    wait_for(lambda: len(seen) == 2)
    assert seen[0][0] == "tlsClientError"
    assert seen[0][1].code == "ERR_TLS_HANDSHAKE_TIMEOUT"


def test_handshake_timeout_is_a_writable_attribute(make_server: Any) -> None:
    srv = make_server()
    srv.handshake_timeout = 200
    sock = gevent.socket.create_connection(("127.0.0.1", port_of(srv)), timeout=3)
    start = time.monotonic()
    assert helpers.read_until_eof(sock, 3, reset_ok=True) == b""
    assert time.monotonic() - start < 1
    sock.close()


def test_silent_connections_do_not_block_others(make_server: Any) -> None:
    srv = make_server(handshake_timeout=700)
    silent = [gevent.socket.create_connection(("127.0.0.1", port_of(srv)), timeout=3) for _ in range(50)]
    try:
        gevent.sleep(0.05)
        start = time.monotonic()
        get_ok(srv)
        assert time.monotonic() - start < 1
        # ... and every silent one is reaped at the handshake timeout.
        for sock in silent:
            assert helpers.read_until_eof(sock, 3, reset_ok=True) == b""
        wait_for(lambda: srv.connections == 0)
    finally:
        for sock in silent:
            sock.close()


# -------------------------------------------------------- client certificates


@pytest.fixture
def mtls_context(ca: trustme.CA, client_cert_files: dict[str, str]) -> ssl.SSLContext:
    """A client context that trusts ``ca`` and presents the client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    ctx.load_cert_chain(client_cert_files["cert"], client_cert_files["key"])
    return ctx


def _peer_info(infos: list[dict[str, Any]]) -> Callable[[Any, Any], None]:
    def handler(req: Any, res: Any) -> None:
        sock = req.socket
        infos.append({
            "authorized": sock.authorized,
            "error": sock.authorization_error,
            "cert": sock.get_peer_certificate(),
        })
        res.end("ok")

    return handler


def test_client_cert_from_ca_is_authorized(
    make_server: Any, ca_pem: bytes, mtls_context: ssl.SSLContext
) -> None:
    infos: list[dict[str, Any]] = []
    srv = make_server(_peer_info(infos), request_cert=True, reject_unauthorized=True, ca=ca_pem)
    get_ok(srv, mtls_context)
    [info] = infos
    assert info["authorized"] is True and info["error"] is None
    cert = info["cert"]
    assert cert["subject"]  # Python's getpeercert() shape, non-empty
    assert ("DNS", "client.example.org") in cert["subjectAltName"]


def test_client_without_cert_rejected(
    make_server: Any, ca_pem: bytes, client_ssl_context: ssl.SSLContext, mtls_context: ssl.SSLContext
) -> None:
    infos: list[dict[str, Any]] = []
    srv = make_server(_peer_info(infos), request_cert=True, reject_unauthorized=True, ca=ca_pem)
    seen = record_errors(srv)
    try:
        sock = tls_client(srv, client_ssl_context)
        # TLS 1.3: the client's side completes first; the refusal comes as an alert.
        sock.sendall(REQ)
        reply = helpers.read_until_eof(sock, 3, reset_ok=True)
        sock.close()
    except (ssl.SSLError, OSError):
        reply = b""
    assert b"HTTP/1.1" not in reply
    wait_for(lambda: len(seen) == 2)
    assert [event for event, _, _ in seen] == ["tlsClientError", "clientError"]
    assert infos == []
    get_ok(srv, mtls_context)  # and a client with a certificate is served right after
    assert infos[0]["authorized"] is True


def test_client_without_cert_served_unauthorized(
    make_server: Any, ca_pem: bytes, client_ssl_context: ssl.SSLContext
) -> None:
    infos: list[dict[str, Any]] = []
    srv = make_server(_peer_info(infos), request_cert=True, reject_unauthorized=False, ca=ca_pem)
    get_ok(srv, client_ssl_context)
    [info] = infos
    assert info["authorized"] is False
    assert info["error"] == "UNABLE_TO_GET_ISSUER_CERT"  # Node's code for "no certificate"
    assert info["cert"] == {}


def test_client_cert_from_other_ca(
    make_server: Any, ca_pem: bytes, other_ca: trustme.CA, client_ssl_context: ssl.SSLContext,
    tmp_path: Any,
) -> None:
    # Documented difference (README): Python's ssl has no verify callback, so with
    # reject_unauthorized=False a certificate that fails verification still fails the
    # handshake, with Node's verify code, instead of being served unauthorized.
    stranger = other_ca.issue_cert("client.example.org")
    stranger.private_key_and_cert_chain_pem.write_to_path(tmp_path / "stranger.pem")
    client_ssl_context.load_cert_chain(tmp_path / "stranger.pem")
    infos: list[dict[str, Any]] = []
    srv = make_server(_peer_info(infos), request_cert=True, reject_unauthorized=False, ca=ca_pem)
    seen = record_errors(srv)
    try:
        sock = tls_client(srv, client_ssl_context)
        sock.sendall(REQ)
        reply = helpers.read_until_eof(sock, 3, reset_ok=True)
        sock.close()
    except (ssl.SSLError, OSError):
        reply = b""
    assert b"HTTP/1.1" not in reply
    wait_for(lambda: len(seen) == 2)
    err = seen[0][1]
    assert seen[0][0] == "tlsClientError"
    assert isinstance(err, errors.CertificateError)
    assert err.code == "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
    assert infos == []


def test_request_cert_without_reject_but_valid_cert(
    make_server: Any, ca_pem: bytes, mtls_context: ssl.SSLContext
) -> None:
    infos: list[dict[str, Any]] = []
    srv = make_server(_peer_info(infos), request_cert=True, reject_unauthorized=False, ca=ca_pem)
    get_ok(srv, mtls_context)
    assert infos[0]["authorized"] is True and infos[0]["error"] is None


def test_no_request_cert_means_no_peer_certificate(make_server: Any, mtls_context: ssl.SSLContext) -> None:
    infos: list[dict[str, Any]] = []
    srv = make_server(_peer_info(infos))
    get_ok(srv, mtls_context)  # the client has a certificate, but nobody asked for it
    assert infos == [{"authorized": False, "error": None, "cert": {}}]


# ------------------------------------------------------------ key material


def _peer_der(srv: Any, ca: trustme.CA, server_hostname: str = "localhost") -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    sock = tls_client(srv, ctx, server_hostname)
    try:
        der = sock.getpeercert(binary_form=True)
        sock.sendall(REQ)
        assert helpers.read_response(sock).status == 200
    finally:
        sock.close()
    return der


def test_pfx_with_passphrase(make_server: Any, ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    key = serialization.load_pem_private_key(server_cert.private_key_pem.bytes(), None)
    leaf = x509.load_pem_x509_certificate(server_cert.cert_chain_pems[0].bytes())
    pfx = pkcs12.serialize_key_and_certificates(
        b"server", key, leaf, [x509.load_pem_x509_certificate(ca.cert_pem.bytes())],
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    srv = make_server(pfx=pfx, passphrase="s3cret")
    assert _peer_der(srv, ca) == leaf_der(server_cert)
    with pytest.raises(greenhttps.Error) as info:
        greenhttps.create_server(pfx=pfx, passphrase="wrong")
    assert isinstance(info.value, ValueError)


def test_encrypted_key_with_passphrase(make_server: Any, ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    key = serialization.load_pem_private_key(server_cert.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    cert = leaf_pem(server_cert)["cert"]
    srv = make_server(key=encrypted, cert=cert, passphrase="s3cret")
    assert _peer_der(srv, ca) == leaf_der(server_cert)
    for bad in ({"passphrase": "wrong"}, {}):  # wrong, or none (must not prompt on a tty)
        with pytest.raises(greenhttps.Error) as info:
            greenhttps.create_server(key=encrypted, cert=cert, **bad)
        assert isinstance(info.value, ValueError)


def test_key_not_matching_cert_raises(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    other = ca.issue_cert("other.example")
    with pytest.raises(greenhttps.Error) as info:
        greenhttps.create_server(key=other.private_key_pem.bytes(), cert=leaf_pem(server_cert)["cert"])
    assert isinstance(info.value, ValueError)
    assert info.value.code == "ERR_OSSL_X509_KEY_VALUES_MISMATCH"


def test_stdlib_ssl_context_is_used_cooperatively(
    make_server: Any, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    srv = make_server(ssl_context=server_ssl_context, handshake_timeout=0)
    # A client that connects and says nothing. If the handshake blocked the process
    # (a non-cooperative socket), nothing else would run until this thread closes it.
    silent = stdlib_socket.create_connection(("127.0.0.1", port_of(srv)))
    closer = threading.Timer(2.0, silent.close)
    closer.start()
    try:
        gevent.sleep(0.05)
        start = time.monotonic()
        get_ok(srv, client_ssl_context)
        assert time.monotonic() - start < 1
    finally:
        closer.cancel()
        silent.close()


def test_sni_callback_picks_certificate(
    make_server: Any, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    other = ca.issue_cert("other.example")
    third = ca.issue_cert("third.example")
    third_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    third.configure_cert(third_ctx)
    asked: list[str] = []

    def sni(servername: str) -> Any:
        asked.append(servername)
        if servername == "other.example":
            return leaf_pem(other)  # options dict
        if servername == "third.example":
            return third_ctx  # a ready context
        return None  # keep the default certificate

    names: list[Any] = []
    srv = make_server(lambda req, res: names.append(req.socket.servername) or res.end(), sni_callback=sni)
    assert _peer_der(srv, ca, "other.example") == leaf_der(other)
    assert _peer_der(srv, ca, "third.example") == leaf_der(third)
    assert _peer_der(srv, ca, "localhost") == leaf_der(server_cert)
    assert asked == ["other.example", "third.example", "localhost"]
    assert names == asked


def test_sni_callback_node_style(make_server: Any, ca: trustme.CA) -> None:
    other = ca.issue_cert("other.example")
    other_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.configure_cert(other_ctx)

    def sni(servername: str, cb: Callable[..., Any]) -> None:
        cb(None, other_ctx if servername == "other.example" else None)

    srv = make_server(SNICallback=sni)
    assert _peer_der(srv, ca, "other.example") == leaf_der(other)


# ------------------------------------------------------------------ options


def test_unknown_option_raises_type_error_naming_it(tls_options: dict[str, bytes]) -> None:
    with pytest.raises(TypeError, match="bogusOption"):
        greenhttps.create_server({**tls_options, "bogusOption": 1})
    with pytest.raises(TypeError, match="reject_unauthorised"):
        greenhttps.create_server(tls_options, reject_unauthorised=False)


def test_camel_case_options_dict(make_server: Any) -> None:
    calls: list[Any] = []
    srv = make_server(lambda req, res: calls.append(req) or res.end(),
                      headersTimeout=500, rejectUnauthorized=False, keepAliveTimeout=2000)
    assert srv.headers_timeout == 500 and srv.headersTimeout == 500
    assert srv.keep_alive_timeout == 2000
    sock = tls_client(srv)
    sock.sendall(REQ)
    resp = helpers.read_response(sock)
    assert resp.get("keep-alive") == b"timeout=2"
    sock.close()
    # headersTimeout is in force: a head that never ends gets 408 after ~0.5 s.
    sock = tls_client(srv)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    resp = helpers.read_response(sock)
    sock.close()
    assert resp.status == 408
    assert 0.4 <= time.monotonic() - start < 1.5
    assert len(calls) == 1


def test_server_options_are_writable_attributes(make_server: Any) -> None:
    srv = make_server()
    srv.headersTimeout = 300  # Node's spelling writes the same attribute
    assert srv.headers_timeout == 300
    sock = tls_client(srv)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    assert helpers.read_response(sock).status == 408
    assert time.monotonic() - start < 1
    sock.close()


def test_half_of_the_key_material_raises(server_cert: trustme.LeafCert) -> None:
    # No key material at all is allowed (Node: B-5, tests/test_tls_parity.py); half is not.
    with pytest.raises(greenhttps.Error) as info:
        greenhttps.create_server({"key": server_cert.private_key_pem.bytes()})
    assert info.value.code == "ERR_MISSING_OPTION"


def test_client_error_listener_node_docs_pattern(make_server: Any) -> None:
    # Node's docs: `if (err.code === 'ECONNRESET' || !socket.writable) return;
    # socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')`.  After a failed handshake the
    # socket is already destroyed, so the guard skips it; HTTP errors get the reply.
    seen: list[tuple[str, bool]] = []

    def on_client_error(err: Any, sock: Any) -> None:
        seen.append((err.code, sock.writable))
        if not sock.writable:
            with pytest.raises(greenhttps.Error) as info:
                sock.write(b"too late")
            assert info.value.code == "ERR_STREAM_DESTROYED"
            sock.end(b"ignored")  # quietly nothing
            return
        sock.end(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    srv = make_server()
    srv.on("clientError", on_client_error)
    helpers.exchange(port_of(srv), b"GET / HTTP/1.1\r\n\r\n", tls=False, idle_timeout=2)
    wait_for(lambda: len(seen) == 1)
    assert seen[0][1] is False
    reply = helpers.exchange(port_of(srv), b"NOT HTTP\r\n\r\n", idle_timeout=2)
    assert reply == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert seen[1][0].startswith("HPE_") and seen[1][1] is True
