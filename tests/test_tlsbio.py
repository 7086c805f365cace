"""greenhttps._tlsbio: the server's TLS socket, OpenSSL on memory BIOs.

Real loopback TCP, trustme certificates; the peer is gevent's own ``SSLSocket``
(OpenSSL on the descriptor), so the two sides do not share this module's code.
What the server relies on beyond :mod:`tests.test_sockio`: every record that has
arrived comes back from one read, a send that timed out resumes without sending a
byte twice, a refused handshake still tells the peer why, and the socket methods
user code may call keep to TLS.
"""

from __future__ import annotations

import errno
import socket as stdlib_socket
import ssl
import subprocess
import time
from typing import Any, Iterator

import gevent
import pytest
import trustme
from gevent import ssl as gssl

import helpers
from greenhttps import _server
from greenhttps._tlsbio import BioSSLSocket

pytestmark = pytest.mark.timeout(15)


def _server_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    return ctx


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = gssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    return ctx


def _connect(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
             hostname: str = "localhost") -> tuple[BioSSLSocket, gssl.SSLSocket]:
    server, client = helpers.bio_tls_pair(server_ctx, client_ctx, hostname)
    assert isinstance(server, BioSSLSocket)
    return server, client


@pytest.fixture
def pair(ca: trustme.CA, server_cert: trustme.LeafCert) -> Iterator[tuple[BioSSLSocket, gssl.SSLSocket]]:
    server, client = _connect(_server_context(server_cert), _client_context(ca))
    yield server, client
    server.close()
    client.close()


def test_one_read_takes_every_record_that_has_arrived(pair: tuple[BioSSLSocket, gssl.SSLSocket]) -> None:
    server, client = pair
    payload = bytes(range(256)) * 400  # 100 KiB: seven records
    client.sendall(payload)
    gevent.sleep(0.2)  # let all of it reach the server's kernel buffer
    first = server.recv_within(256 * 1024, 5.0)
    assert first is not None
    assert len(first) > 16384, "only one record per read"
    received = bytearray(first)
    while len(received) < len(payload):
        data = server.recv_within(256 * 1024, 5.0)
        assert data
        received += data
    assert bytes(received) == payload


def test_a_read_smaller_than_a_record_keeps_the_rest_for_the_next(pair: tuple[BioSSLSocket, gssl.SSLSocket]) -> None:
    server, client = pair
    client.sendall(b"abcdefghij")
    assert server.recv_within(4, 5.0) == b"abcd"
    assert server.recv_within(100, 0.5) == b"efghij"
    assert server.recv_within(100, 0.2) is None


def test_a_send_that_timed_out_resumes_without_repeating_a_byte(pair: tuple[BioSSLSocket, gssl.SSLSocket]) -> None:
    server, client = pair
    server.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
    payload = bytes(range(256)) * 8192  # 2 MiB: more than the kernel buffers hold
    view = memoryview(payload)
    timed_out = 0
    while timed_out == 0:  # the peer does not read: the buffers fill up
        sent = server.send_within(view, 0.2)
        if sent is None:
            timed_out += 1
        else:
            view = view[sent:]
    assert view, "everything fit in the kernel buffers: nothing was tested"
    glet, received = helpers.collect_in_greenlet(client, len(payload))
    while view:  # offer the same bytes again, as the wire does
        sent = server.send_within(view, 5.0)
        assert sent is not None
        view = view[sent:]
    glet.join(timeout=10)
    assert bytes(received) == payload


def test_a_refused_handshake_sends_the_alert(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    server_ctx = _server_context(server_cert)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    client_ctx = _client_context(ca)
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    raw_server, raw_client = helpers.tcp_pair()
    server = BioSSLSocket(server_ctx, raw_server, server_side=True)
    client = client_ctx.wrap_socket(raw_client, server_hostname="localhost", do_handshake_on_connect=False)
    refusals: list[BaseException] = []

    def handshake() -> None:
        try:
            server.do_handshake()
        except ssl.SSLError as exc:
            refusals.append(exc)

    glet = gevent.spawn(handshake)
    client.settimeout(5)
    with pytest.raises(ssl.SSLError) as client_error:
        client.do_handshake()
    glet.join(timeout=5)
    assert refusals and "UNSUPPORTED_PROTOCOL" in str(refusals[0])
    # The client learns why from the server's alert, not from a bare close.
    assert "PROTOCOL_VERSION" in str(client_error.value).upper()
    server.close()
    client.close()


def test_socket_methods_keep_to_tls(pair: tuple[BioSSLSocket, gssl.SSLSocket]) -> None:
    server, client = pair
    client.sendall(b"ping")
    buffer = bytearray(10)
    assert server.recv_into(buffer) == 4
    assert bytes(buffer[:4]) == b"ping"
    server.sendall(b"pong" * 50000)
    received = bytearray()
    while len(received) < 200000:
        received += client.recv(65536)
    assert bytes(received) == b"pong" * 50000
    server.settimeout(0.1)
    assert server.gettimeout() == 0.1
    with pytest.raises(TimeoutError):
        server.recv(10)
    server.settimeout(5)
    client.sendall(b"line one\nline two\n")
    reader = server.makefile("rb")
    assert reader.readline() == b"line one\n"
    assert reader.readline() == b"line two\n"
    writer = server.makefile("w")
    writer.write("through a text file\n")
    writer.flush()
    assert client.recv(100) == b"through a text file\n"
    for name in ("recvfrom", "sendto", "sendfile", "detach", "dup"):
        with pytest.raises(AttributeError):
            getattr(server, name)
    assert server.getpeername() == client.getsockname()  # the TCP socket's
    assert server.version() == client.version()
    assert server.cipher() == client.cipher()
    assert server.getpeercert() is None  # no client certificate was asked for


def test_the_end_of_the_stream_with_and_without_close_notify(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    server_ctx, client_ctx = _server_context(server_cert), _client_context(ca)
    server, client = _connect(server_ctx, client_ctx)
    client.sendall(b"last")
    unwrapping = gevent.spawn(client.unwrap)  # close_notify, then waits for ours
    gevent.sleep(0.2)  # both records arrive before the server reads: one recv takes them
    assert server.recv_within(100, 5.0) == b"last"
    assert server.recv_within(100, 5.0) == b""
    unwrapping.kill()
    server.close()
    client.close()

    server, client = _connect(server_ctx, client_ctx)
    client.sendall(b"last")
    stdlib_socket.socket(fileno=client.detach()).close()  # TCP close, no close_notify
    gevent.sleep(0.2)
    assert server.recv_within(100, 5.0) == b"last"
    assert server.recv_within(100, 5.0) == b""
    server.close()


def test_unwrap_sends_close_notify_and_returns_the_tcp_socket(pair: tuple[BioSSLSocket, gssl.SSLSocket]) -> None:
    server, client = pair
    raw = server.unwrap()
    assert client.recv(100) == b""  # close_notify: a clean end for the peer
    raw.sendall(b"plain")
    assert client.unwrap().recv(100) == b"plain"
    raw.close()


def test_closed_socket_refuses_io_and_reports_no_tls_state(pair: tuple[BioSSLSocket, gssl.SSLSocket]) -> None:
    server, _client = pair
    server.close()
    with pytest.raises(OSError) as info:
        server.recv_within(10, 1.0)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError):
        server.send_within(b"x", 1.0)
    assert server.cipher() is None and server.version() is None
    assert not server.session_reused
    with pytest.raises(ValueError):
        server.getpeercert()


@pytest.mark.parametrize("context_class", [ssl.SSLContext, gssl.SSLContext], ids=["stdlib", "gevent"])
def test_sni_callback_sees_the_name_and_can_switch_the_context(
    context_class: type[ssl.SSLContext], ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    # gevent's SSLContext wraps sni_callback in one that looks for the SSLSocket it
    # made; ours gets an ssl.SSLObject and must work as well.
    seen: list[str | None] = []
    other = ca.issue_cert("other.test")
    other_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.configure_cert(other_ctx)
    server_ctx = context_class(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(server_ctx)

    def on_name(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)
        if name == "other.test":
            sslobj.context = other_ctx

    server_ctx.sni_callback = on_name
    server, client = _connect(server_ctx, _client_context(ca), hostname="other.test")
    assert seen == ["other.test"]
    assert ("DNS", "other.test") in client.getpeercert()["subjectAltName"]
    server.close()
    client.close()


@pytest.mark.needs_openssl
def test_a_key_update_is_answered_and_the_connection_goes_on(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # openssl s_client's "K" sends a KeyUpdate asking for ours (RFC 8446 §4.6.3: due
    # before our next application data); Python cannot send one.  A server on this
    # transport must take it in, answer it, and still serve the request after it.
    monkeypatch.setattr(_server, "TLS_ON_MEMORY_BIOS", True)
    transports: list[str] = []

    def handler(req: Any, res: Any) -> None:
        transports.append(type(req.socket._sock).__name__)
        res.end(b"after the key update")

    srv = make_server(handler)
    output: list[str] = []

    def client() -> None:
        proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{srv.address()['port']}", "-crlf", "-msg",
             "-servername", "localhost"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert proc.stdin is not None and proc.stdout is not None
        time.sleep(0.5)  # the handshake
        proc.stdin.write(b"K\n")
        proc.stdin.flush()
        time.sleep(0.3)
        proc.stdin.write(b"GET / HTTP/1.1\nHost: localhost\nConnection: close\n\n")
        proc.stdin.flush()
        time.sleep(0.5)
        proc.stdin.close()
        output.append(proc.stdout.read().decode(errors="replace"))
        proc.wait(timeout=5)

    helpers.run_in_thread(client)
    assert transports == ["BioSSLSocket"]
    text = output[0]
    assert ">>> TLS 1.3, Handshake [length 0005], KeyUpdate" in text  # s_client's
    assert "<<< TLS 1.3, Handshake [length 0005], KeyUpdate" in text  # ours
    assert text.index("<<< TLS 1.3, Handshake [length 0005], KeyUpdate") < text.index("after the key update")
    assert "HTTP/1.1 200" in text
