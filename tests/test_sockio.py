"""greenhttps._sockio: recv/send with a per-wait timeout on gevent's own watchers.

Real loopback TCP sockets, plain and TLS (trustme certificates); the peer is a plain
gevent or stdlib socket driven by hand.  What the wire relies on: a timeout is
reported as None (not raised) after at least the time asked, data and EOF come
through as gevent's socket reports them, and a socket closed by another greenlet
wakes the waiter with ``OSError(EBADF)``.
"""

from __future__ import annotations

import errno
import socket as stdlib_socket
import ssl
import time
from typing import Any, Iterator

import gevent
import pytest
import trustme
from gevent import socket
from gevent import ssl as gssl

import helpers
from greenhttps import _sockio
from greenhttps._parsers import parser_class
from greenhttps._tlsbio import BioSSLSocket
from greenhttps._wire import Wire

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def plain_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = helpers.tcp_pair()
    yield server, client
    server.close()
    client.close()


@pytest.fixture
def tls_pair(ca: trustme.CA, server_cert: trustme.LeafCert) -> Iterator[tuple[gssl.SSLSocket, gssl.SSLSocket]]:
    server_ctx = gssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(server_ctx)
    client_ctx = gssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    raw_server, raw_client = helpers.tcp_pair()
    server = server_ctx.wrap_socket(raw_server, server_side=True, do_handshake_on_connect=False)
    client = client_ctx.wrap_socket(raw_client, server_hostname="localhost", do_handshake_on_connect=False)
    handshake = gevent.spawn(server.do_handshake)
    client.do_handshake()
    handshake.get(timeout=5)
    yield server, client
    server.close()
    client.close()


@pytest.fixture
def bio_pair(ca: trustme.CA, server_cert: trustme.LeafCert) -> Iterator[tuple[BioSSLSocket, gssl.SSLSocket]]:
    """The server's TLS socket on memory BIOs (greenhttps._tlsbio) and gevent's, as the client."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(server_ctx)
    client_ctx = gssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    server, client = helpers.bio_tls_pair(server_ctx, client_ctx)
    assert isinstance(server, BioSSLSocket)
    yield server, client
    server.close()
    client.close()


@pytest.mark.parametrize("kind", ["plain", "tls", "bio"])
def test_recv_returns_data_then_none_on_timeout_then_eof(kind: str, request: pytest.FixtureRequest) -> None:
    server, client = request.getfixturevalue(f"{kind}_pair")
    client.sendall(b"hello")
    assert _sockio.recv(server, 100, 1.0) == b"hello"
    started = time.monotonic()
    assert _sockio.recv(server, 100, 0.2) is None  # nothing sent: the wait times out
    assert 0.18 <= time.monotonic() - started < 2.0
    gevent.spawn_later(0.1, client.sendall, b"late")
    assert _sockio.recv(server, 100, 2.0) == b"late"  # a wait that ends in data
    client.close()
    assert _sockio.recv(server, 100, 2.0) == b""


def test_tls_recv_reports_a_tcp_close_without_close_notify_as_eof(tls_pair: tuple[gssl.SSLSocket, gssl.SSLSocket]) -> None:
    server, client = tls_pair
    # Close the TCP connection under the TLS layer: no close_notify goes out.
    stdlib_socket.socket(fileno=client.detach()).close()
    assert _sockio.recv(server, 100, 2.0) == b""


@pytest.mark.parametrize("kind", ["plain", "tls", "bio"])
def test_recv_waiting_when_another_greenlet_closes_raises_ebadf(kind: str, request: pytest.FixtureRequest) -> None:
    server, _client = request.getfixturevalue(f"{kind}_pair")
    gevent.spawn_later(0.1, server.close)
    with pytest.raises(OSError) as info:
        _sockio.recv(server, 100, 5.0)
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("kind", ["plain", "tls", "bio"])
def test_send_to_a_peer_that_never_reads_times_out(kind: str, request: pytest.FixtureRequest) -> None:
    server, _client = request.getfixturevalue(f"{kind}_pair")
    server.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
    chunk = memoryview(b"x" * 65536)
    sent = 0
    started = time.monotonic()
    while True:
        count = _sockio.send(server, chunk, 0.3)
        if count is None:
            break
        sent += count
        assert time.monotonic() - started < 5, "the kernel buffers never filled"
    assert sent > 0


@pytest.mark.parametrize("kind", ["plain", "tls", "bio"])
def test_send_delivers_every_byte(kind: str, request: pytest.FixtureRequest) -> None:
    server, client = request.getfixturevalue(f"{kind}_pair")
    payload = bytes(range(256)) * 4096  # 1 MiB: several blocking waits on the way
    glet, received = helpers.collect_in_greenlet(client, len(payload))
    view = memoryview(payload)
    while view:
        count = _sockio.send(server, view, 5.0)
        assert count is not None
        view = view[count:]
    glet.join(timeout=5)
    assert bytes(received) == payload


@pytest.mark.parametrize("kind", ["plain", "tls", "bio"])
def test_recv_into_fills_the_view_then_none_on_timeout_then_eof(kind: str, request: pytest.FixtureRequest) -> None:
    """What ``Wire.read_rest_of_body`` reads with: bytes land in the caller's buffer,
    never past the view's end, with recv's timeout and EOF."""
    server, client = request.getfixturevalue(f"{kind}_pair")
    payload = bytes(range(256)) * 1024 + b"tail"  # 256 KiB and a bit: many records
    sender = gevent.spawn(client.sendall, payload)
    buffer = bytearray(len(payload) + 10)
    view = memoryview(buffer)
    filled, counts = 0, []
    while filled < len(payload):
        count = _sockio.recv_into(server, view[filled:len(payload)], 2.0)
        assert count
        filled += count
        counts.append(count)
    sender.join(timeout=5)
    assert bytes(buffer) == payload + bytes(10)
    if kind == "tls":
        assert max(counts) > 16384, "a bulk TLS read takes the records already in, not one"
    started = time.monotonic()
    assert _sockio.recv_into(server, view, 0.2) is None
    assert 0.18 <= time.monotonic() - started < 2.0
    client.close()
    assert _sockio.recv_into(server, view, 2.0) == 0


def test_a_socket_that_is_not_gevents_still_works() -> None:
    a, b = stdlib_socket.socketpair()
    try:
        b.sendall(b"x")
        assert _sockio.recv(a, 10, 1.0) == b"x"
        assert _sockio.recv(a, 10, 0.05) is None
        b.sendall(b"xyz")
        buffer = bytearray(5)
        assert _sockio.recv_into(a, memoryview(buffer)[1:], 1.0) == 3
        assert buffer == b"\0xyz\0"
        assert _sockio.send(a, b"y", 1.0) == 1
        assert b.recv(10) == b"y"
    finally:
        a.close()
        b.close()


def test_two_greenlets_reading_one_socket_is_refused(plain_pair: tuple[socket.socket, socket.socket]) -> None:
    from gevent.exceptions import ConcurrentObjectUseError

    server, _client = plain_pair
    first = gevent.spawn(_sockio.recv, server, 100, 2.0)
    gevent.sleep(0.05)  # the first one is waiting
    with pytest.raises(ConcurrentObjectUseError):
        _sockio.recv(server, 100, 1.0)
    first.kill()


@pytest.mark.parametrize("close_notify", [True, False], ids=["close_notify", "TCP close only"])
def test_tls_bulk_read_then_the_end_comes_after_every_byte(
    tls_pair: tuple[gssl.SSLSocket, gssl.SSLSocket], close_notify: bool
) -> None:
    """Reads of several records at a time (a bulk transfer) still end with b'' after
    the last byte, whether the peer says close_notify or just closes TCP."""
    server, client = tls_pair
    payload = bytes(range(256)) * 1024  # 256 KiB: 16 full records
    raw_client: list[stdlib_socket.socket] = []

    def peer() -> None:
        try:
            client.sendall(payload)
            if close_notify:
                client.unwrap()  # sends close_notify, then waits for ours (never comes)
            else:
                # FIN under the TLS layer (a close could be a reset: the session
                # tickets sent to the client are unread).
                raw = stdlib_socket.socket(fileno=client.detach())
                raw_client.append(raw)
                raw.shutdown(stdlib_socket.SHUT_WR)
        except OSError:
            pass

    glet = gevent.spawn(peer)
    received = bytearray()
    while True:
        data = _sockio.recv(server, 65536, 2.0)
        assert data is not None
        if not data:
            break
        received.extend(data)
    glet.kill()
    for raw in raw_client:
        raw.close()
    assert bytes(received) == payload


def test_a_timeout_counts_from_now_even_when_the_loop_clock_is_stale(
    plain_pair: tuple[socket.socket, socket.socket],
) -> None:
    """The loop's clock is read once per turn: after 0.3 s of work without yielding
    it is 0.3 s old.  A 0.5 s timeout must still last 0.5 s from the call (a timer
    counted from the stale clock fired after 0.2 s, and the server closed slow
    clients without their 408)."""
    server, client = plain_pair
    gevent.spawn_later(0.05, client.sendall, b"x")
    assert _sockio.recv(server, 100, 5.0) == b"x"  # woken by the I/O watcher, not a callback
    time.sleep(0.3)  # blocking: the loop does not turn
    started = time.monotonic()
    assert _sockio.recv(server, 100, 0.5) is None
    assert time.monotonic() - started >= 0.45


@pytest.mark.skipif(not hasattr(stdlib_socket, "TCP_CORK"), reason="TCP_CORK is Linux's")
@pytest.mark.parametrize("kind", ["plain", "tls", "bio"])
def test_a_large_write_goes_out_corked_and_uncorks_at_its_end(kind: str, request: pytest.FixtureRequest) -> None:
    """The wire corks a large write (full-size segments, not one per TLS record) and
    always uncorks after it: a cork left on would hold the last partial segment back."""
    server, client = request.getfixturevalue(f"{kind}_pair")
    wire = Wire(server, parser=parser_class())
    payload = bytes(range(256)) * 16384  # 4 MiB: the write blocks on a full buffer
    corked: list[int] = []

    def reader() -> bytearray:
        received = bytearray()
        while len(received) < len(payload):
            received += client.recv(65536)
            if not corked:  # the writer is waiting for room, mid-write
                corked.append(server.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_CORK))
        return received

    glet = gevent.spawn(reader)
    wire._write(payload)
    assert server.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_CORK) == 0
    assert glet.get(timeout=5) == payload
    assert corked == [1]
    wire._write(b"small")
    assert client.recv(100) == b"small"


# ------------------------------------------------ Wire.poll_input and its stash


def _settle() -> None:
    """Let bytes sent on loopback (and TLS records) arrive."""
    gevent.sleep(0.05)


@pytest.mark.parametrize("kind", ["plain", "tls", "bio"])
def test_poll_input_stashes_bytes_that_the_next_reads_take_first(kind: str, request: pytest.FixtureRequest) -> None:
    """What poll_input() takes while a handler runs is read, in order, before the socket:
    by read_head (a pipelined request) and by the Content-Length fast path."""
    server, client = request.getfixturevalue(f"{kind}_pair")
    wire = Wire(server, parser=parser_class())
    assert wire.poll_input() is None  # nothing yet
    client.sendall(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
    head = wire.read_head()
    assert head is not None and head.target == "/1"
    body = bytes(range(256)) * 400
    client.sendall(b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:1000])
    _settle()
    ran: list[int] = []
    gevent.spawn(ran.append, 1)
    count = wire.poll_input()
    assert not ran  # no greenlet switch
    assert count and count >= 1
    assert wire.head_started
    wire.send_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", _length_framing(0), end=True)
    assert wire.start_next_cycle()
    head = wire.read_head()
    assert head is not None and head.target == "/2" and head.content_length == len(body)
    client.sendall(body[1000:5000])
    _settle()
    assert wire.poll_input()
    gevent.spawn_later(0.05, client.sendall, body[5000:])
    assert wire.read_rest_of_body() == body
    assert wire.message_complete


@pytest.mark.parametrize("kind", ["plain", "tls", "bio"])
def test_poll_input_reports_eof_and_detach_returns_the_stash(kind: str, request: pytest.FixtureRequest) -> None:
    server, client = request.getfixturevalue(f"{kind}_pair")
    wire = Wire(server, parser=parser_class())
    client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nearly")
    head = wire.read_head()
    assert head is not None and head.upgrade
    client.sendall(b" and stashed")
    _settle()
    wire.poll_input()
    client.close()
    _settle()
    while (count := wire.poll_input()) is None or count > 0:  # the rest, then the end
        _settle()
    assert count == 0
    sock, rest = wire.detach()
    assert sock is server
    assert rest.startswith(b"early") and rest.endswith(b"stashed")


def test_poll_input_on_a_tls_client_sees_session_tickets_as_nothing(tls_pair: tuple[gssl.SSLSocket, gssl.SSLSocket]) -> None:
    """TLS 1.3 session tickets come after the handshake: records without application data."""
    server, client = tls_pair
    wire = Wire(client, parser=parser_class(), client=True)
    _settle()
    assert wire.poll_input() is None


def _length_framing(length: int) -> Any:
    from greenhttps._wire_format import Framing, OutgoingFraming

    return OutgoingFraming(Framing.LENGTH, length)
