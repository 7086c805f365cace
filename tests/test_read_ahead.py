"""OpenSSL's read-ahead on socket-BIO TLS sockets (greenhttps._openssl).

With read-ahead OpenSSL reads whatever the kernel holds in one ``read()``, so it may
hold whole records -- a pipelined request, a ``close_notify`` -- while the descriptor
is not readable.  Each test puts such bytes in ONE TCP segment: the peer is a TLS
endpoint on memory BIOs (:class:`BioPeer`), whose records are made first and sent
with one ``send()``, so where the record boundaries fall is the test's choice, not
the kernel's.  Each runs with read-ahead on (the default) and off, and checks which.
"""

from __future__ import annotations

import os
import socket as stdlib_socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.server
import gevent.socket
import pytest

import greenhttps
import helpers
from greenhttps import _dial, _openssl, _sockio, _tls

pytestmark = pytest.mark.timeout(30)


class BioPeer:
    """One TLS endpoint on memory BIOs over a connected gevent socket: every
    :meth:`record` is one TLS record, and :meth:`send` puts what was made in one
    ``send()`` call (one TCP segment on loopback)."""

    def __init__(self, sock: Any, ctx: ssl.SSLContext, *, server_side: bool) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                server_hostname=None if server_side else "localhost")
        self.sock.settimeout(5)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.incoming.write(self.sock.recv(65536) or b"")
        self.flush()

    def record(self, data: bytes) -> bytes:
        self.tls.write(data)
        return self.outgoing.read()

    def close_notify(self) -> bytes:
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def send(self, ciphertext: bytes) -> None:
        self.sock.sendall(ciphertext)

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def read(self, until: Callable[[bytes], bool], timeout: float = 5) -> bytes:
        """Plaintext until ``until(data)`` holds, or the end."""
        data = b""
        with gevent.Timeout(timeout):
            while not until(data):
                try:
                    piece = self.tls.read(65536)
                    if not piece:
                        break
                    data += piece
                    continue
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
                raw = self.sock.recv(65536)
                if not raw:
                    self.incoming.write_eof()
                else:
                    self.incoming.write(raw)
        return data


def _client_ctx() -> ssl.SSLContext:
    return helpers.unverified_client_context()


@pytest.fixture(params=["on", "off"])
def read_ahead(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Read-ahead on (the default, when this platform allows it) or off, as
    ``GREENHTTPS_TLS_READ_AHEAD=0`` leaves it; the sockets greenhttps wraps are
    recorded in ``wrapped`` and checked to be as asked."""
    if request.param == "off":
        monkeypatch.setattr(_openssl, "READ_AHEAD", False)
    if not _openssl._library():
        pytest.skip("read-ahead is not available here (not CPython on Linux with a shared libssl)")
    yield request.param == "on"


@pytest.fixture
def wrapped(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket-BIO TLS socket greenhttps wraps, in order, with whether its
    read-ahead was on once wrapped (asked of OpenSSL then: a closed socket's SSL
    object is gone)."""
    seen: list[Any] = []
    real = _tls.wrap_socket

    def spy(*args: Any, **kwargs: Any) -> Any:
        sock = real(*args, **kwargs)
        seen.append((sock, _is_on(sock)))
        return sock

    monkeypatch.setattr(_tls, "wrap_socket", spy)
    return seen


def _is_on(sock: Any) -> bool:
    pointer = sock.__dict__.get(_openssl.ATTR)
    assert sock._sslobj is not None
    return pointer is not None and _openssl._lib.get_read_ahead(pointer) == 1


def _response_count(data: bytes) -> int:
    return data.count(b"HTTP/1.1 ")


# ------------------------------------------------------------------ the switch


def test_read_ahead_is_on_by_default_for_server_and_client(serve: Callable[..., int], ca_pem: bytes,
                                                           wrapped: list[Any]) -> None:
    if not _openssl._library():
        pytest.skip("read-ahead is not available here")
    port = serve(lambda req, res: res.end(b"ok"))
    res = greenhttps.fetch(f"https://localhost:{port}/", ca=ca_pem, agent=greenhttps.Agent())
    assert res.text() == "ok"
    assert len(wrapped) == 2  # the server's accepted socket and the client's
    assert all(on for _, on in wrapped)


@pytest.mark.parametrize("value,expected", [("", "1"), ("0", "0")])
def test_env_switch_turns_read_ahead_off(value: str, expected: str) -> None:
    """``GREENHTTPS_TLS_READ_AHEAD=0``: OpenSSL reads as Python has it (two reads per
    record); the proven ``SSL*`` is kept for the "anything held?" checks."""
    if not _openssl._library():
        pytest.skip("read-ahead is not available here")
    code = textwrap.dedent("""
        import ssl, gevent.socket
        from greenhttps import _dial, _openssl, _sockio, _tls
        a, b = gevent.socket.socketpair()
        sock = _tls.wrap_socket(ssl.create_default_context(), a, server_side=False, server_hostname="x")
        print(_openssl._lib.get_read_ahead(sock.__dict__[_openssl.ATTR]))
    """)
    env = {**os.environ, "GREENHTTPS_TLS_READ_AHEAD": value, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == expected, out.stderr


def test_a_context_whose_pointer_does_not_check_out_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proof before the write: a context pointer that does not give back the
    context's options means another layout; nothing is written, the socket works
    the old way."""
    if not _openssl._library():
        pytest.skip("read-ahead is not available here")
    monkeypatch.setattr(_openssl, "_checked", {})
    monkeypatch.setattr(_openssl, "_HEAD", _openssl._HEAD + 8)  # a wrong layout
    a, b = gevent.socket.socketpair()
    try:
        sock = _tls.wrap_socket(ssl.create_default_context(), a, server_side=False, server_hostname="x")
        assert _openssl.ATTR not in sock.__dict__
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ the server


def _bio_client(port: int) -> BioPeer:
    return BioPeer(gevent.socket.create_connection(("127.0.0.1", port)), _client_ctx(), server_side=False)


@pytest.mark.parametrize("first_sleeps", [False, True], ids=["straight", "first_sleeps"])
def test_pipelined_requests_in_one_segment(serve: Callable[..., int], read_ahead: bool,
                                           wrapped: list[Any], first_sleeps: bool) -> None:
    """Three requests, three records, one segment; answered at once (the wait for
    the next request must ask OpenSSL before the descriptor), or with a first
    handler that lets the hub run (its watch starts with the others inside OpenSSL,
    not the kernel).  All are answered, in order.  (As
    test/parallel/test-http-pipeline-requests-connection-leak.js, over TLS.)"""
    def handler(req: Any, res: Any) -> None:
        if req.url == "/0" and first_sleeps:
            gevent.sleep(0.1)
        res.end(req.url)

    port = serve(handler)
    peer = _bio_client(port)
    try:
        peer.send(b"".join(peer.record(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i) for i in range(3)))
        data = peer.read(lambda d: _response_count(d) == 3 and d.endswith(b"/2"))
    finally:
        peer.sock.close()
    responses, rest = helpers.parse_responses(data, ["GET"] * 3)
    assert [r.body for r in responses] == [b"/0", b"/1", b"/2"] and rest == b""
    assert wrapped[0][1] is read_ahead


def test_a_body_then_a_pipelined_request_in_one_segment(serve: Callable[..., int], read_ahead: bool) -> None:
    """A large body half read by its handler, then a request, in one send: the rest
    of the body is discarded and the next request answered."""
    body = os.urandom(200_000)

    def handler(req: Any, res: Any) -> None:
        if req.method == "POST":
            res.end(b"%d" % len(req.read(1000)))  # reads part: the rest is discarded
        else:
            res.end(b"next")

    port = serve(handler)
    peer = _bio_client(port)
    try:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        records = [peer.record(head)] + [peer.record(body[i:i + 16384]) for i in range(0, len(body), 16384)]
        peer.send(b"".join(records) + peer.record(b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n"))
        data = peer.read(lambda d: d.endswith(b"next"))
    finally:
        peer.sock.close()
    responses, _ = helpers.parse_responses(data, ["POST", "GET"])
    assert responses[1].body == b"next"
    assert responses[0].status == 200


def test_a_close_notify_that_came_with_the_request_ends_the_response(serve: Callable[..., int],
                                                                     read_ahead: bool) -> None:
    """The request and the client's close_notify in one segment, no FIN: with
    read-ahead the close_notify is inside OpenSSL and the descriptor never turns
    readable, yet the watch that runs while the handler sleeps must see it, as it
    sees one in the kernel: the response is destroyed and emits 'close' (Node's
    server, allowHalfOpen false: test/parallel/test-http-server-destroy-socket-on-client-error.js
    is the nearest; a TLS 'end' aborts as a TCP one)."""
    closed = gevent.event.Event()

    def handler(req: Any, res: Any) -> None:
        res.on("close", closed.set)
        closed.wait(3)  # the hub runs: the watch is what must notice

    port = serve(handler)
    peer = _bio_client(port)
    try:
        peer.send(peer.record(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") + peer.close_notify())
        assert closed.wait(3), "the close_notify read ahead with the request was not seen"
    finally:
        peer.sock.close()


def test_close_idle_connections_spares_a_request_inside_openssl(make_server: Callable[..., Any],
                                                                read_ahead: bool) -> None:
    """After an answered request the next one's first part arrives with the end of
    the previous one: with read-ahead it is inside OpenSSL (a partial record), the
    descriptor not readable.  ``closeIdleConnections()`` must not take that
    connection for idle (Node checks the same through its parser's state)."""
    srv = make_server(lambda req, res: res.end(req.url))
    port = int(srv.address()["port"])
    peer = _bio_client(port)
    try:
        first = peer.record(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        second = peer.record(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        cut = len(second) // 2
        peer.send(first + second[:cut])
        data = peer.read(lambda d: d.endswith(b"/1"))
        helpers.settle(0.1)  # the connection waits for the rest of its next request
        srv.close_idle_connections()
        helpers.settle(0.1)
        peer.send(second[cut:])
        data = peer.read(lambda d: d.endswith(b"/2"))
    finally:
        peer.sock.close()
    assert data.endswith(b"/2")


def test_upgrade_gets_the_bytes_read_ahead_as_head(make_server: Callable[..., Any], read_ahead: bool,
                                                   wrapped: list[Any]) -> None:
    """The Upgrade request and the new protocol's first bytes in one segment (two
    records): ``head`` holds those bytes (Node: 'upgrade' gets what was read past
    the head, test/parallel/test-http-upgrade-server.js), and the socket handed over
    has read-ahead off, so user code may select() on it as on any TLS socket.
    (Without read-ahead those bytes are still in the kernel: ``head`` is empty and
    the first read gets them.)"""
    got = gevent.event.AsyncResult()

    def on_upgrade(req: Any, sock: Any, head: bytes) -> None:
        got.set((head, _openssl.ATTR in wrapped[0][0].__dict__))
        sock.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        data = head
        while len(data) < 10:
            data += sock.recv(10)
        sock.write(b"echo:" + data)
        sock.end()

    srv = make_server(lambda req, res: res.end(b"plain"))
    srv.on("upgrade", on_upgrade)
    peer = _bio_client(int(srv.address()["port"]))
    try:
        peer.send(peer.record(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
                  + peer.record(b"first"))
        head, still_on = got.get(timeout=5)
        peer.send(peer.record(b"later"))
        data = peer.read(lambda d: d.endswith(b"firstlater"))
    finally:
        peer.sock.close()
    assert head == (b"first" if read_ahead else b"")  # off: "first" still in the kernel
    assert still_on is False
    assert data.endswith(b"echo:firstlater")


# ------------------------------------------------------------------ the client


class _HandServer:
    """A TLS server by hand (memory BIOs): counts connections and requests, and
    answers each request as ``answer(peer, index)`` says."""

    def __init__(self, server_ssl_context: ssl.SSLContext, answer: Callable[[BioPeer, int], None]) -> None:
        self.ctx = server_ssl_context
        self.answer = answer
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, sock: Any, _address: Any) -> None:
        index = self.connections
        self.connections += 1
        try:
            peer = BioPeer(sock, self.ctx, server_side=True)
            while True:
                data = peer.read(lambda d: b"\r\n\r\n" in d, timeout=10)
                if not data:
                    return
                self.requests.append((index, data))
                self.answer(peer, index)
        except (OSError, ssl.SSLError, gevent.Timeout):
            pass
        finally:
            sock.close()

    def stop(self) -> None:
        self.server.stop()


_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


@pytest.mark.parametrize("with_fin", [False, True], ids=["close_notify", "close_notify+FIN"])
def test_a_pooled_socket_whose_close_notify_came_with_the_response_is_not_reused(
        server_ssl_context: ssl.SSLContext, read_ahead: bool, wrapped: list[Any], with_fin: bool) -> None:
    """The server sends its response and its close_notify in one segment (and, or
    not, its FIN): with read-ahead the close_notify sits inside OpenSSL once the
    response is read, and the descriptor may not be readable.  The next request must
    go on a new connection, never on that one (Node's agent drops a free socket on
    'end', test/parallel/test-http-agent-keepalive.js)."""
    def answer(peer: BioPeer, index: int) -> None:
        peer.send(peer.record(_OK) + peer.close_notify())
        if with_fin:
            peer.sock.shutdown(stdlib_socket.SHUT_WR)

    hand = _HandServer(server_ssl_context, answer)
    agent = greenhttps.Agent(keep_alive=True)
    try:
        for _ in range(2):
            res = greenhttps.fetch(f"https://localhost:{hand.port}/", agent=agent, reject_unauthorized=False)
            assert res.text() == "ok"
    finally:
        agent.destroy()
        hand.stop()
    assert [index for index, _ in hand.requests] == [0, 1]
    assert hand.connections == 2
    assert wrapped[0][1] is read_ahead


def test_a_pooled_socket_after_a_response_and_nothing_else_is_reused(
        server_ssl_context: ssl.SSLContext, read_ahead: bool) -> None:
    """The other side of the check above: a response alone (the socket silent
    after it) leaves the connection reusable."""
    hand = _HandServer(server_ssl_context, lambda peer, index: peer.send(peer.record(_OK)))
    agent = greenhttps.Agent(keep_alive=True)
    try:
        for _ in range(3):
            res = greenhttps.fetch(f"https://localhost:{hand.port}/", agent=agent, reject_unauthorized=False)
            assert res.text() == "ok"
    finally:
        agent.destroy()
        hand.stop()
    assert [index for index, _ in hand.requests] == [0, 0, 0]


def test_large_bodies_both_ways(serve: Callable[..., int], ca_pem: bytes, read_ahead: bool,
                                wrapped: list[Any]) -> None:
    """1 MiB up and 1 MiB down, through greenhttps's own client and server."""
    body = os.urandom(1 << 20)
    port = serve(lambda req, res: res.end(req.read()[::-1]))
    agent = greenhttps.Agent(keep_alive=True)
    try:
        for _ in range(2):
            res = greenhttps.fetch(f"https://localhost:{port}/", method="POST", body=body, ca=ca_pem, agent=agent)
            assert res.content == body[::-1]
    finally:
        agent.destroy()
    assert wrapped and all(on is read_ahead for _, on in wrapped)


def test_a_half_read_response_then_the_next_request(serve: Callable[..., int], ca_pem: bytes,
                                                   read_ahead: bool) -> None:
    """A response whose body is read in part and dropped; the next request on the
    agent gets its own response whole (the half-read connection is not reused with
    the rest of the old body in it)."""
    big = os.urandom(300_000)
    port = serve(lambda req, res: res.end(big if req.url == "/big" else b"small"))
    agent = greenhttps.Agent(keep_alive=True)
    try:
        got = gevent.event.AsyncResult()
        req = greenhttps.request({"hostname": "localhost", "port": port, "path": "/big", "ca": ca_pem,
                                  "agent": agent})
        req.on("response", got.set)
        req.end()
        res = got.get(timeout=5)
        assert len(res.read(5000)) == 5000
        res.destroy()
        for _ in range(3):
            small = greenhttps.fetch(f"https://localhost:{port}/small", ca=ca_pem, agent=agent)
            assert small.content == b"small"
    finally:
        agent.destroy()


# ------------------------------------------------------------------ reuse without poll(0)


def _count_polls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    polls: list[int] = []
    real = _sockio.readable_now

    def spy(fd: int) -> bool:
        polls.append(fd)
        return real(fd)

    monkeypatch.setattr(_sockio, "readable_now", spy)
    return polls


def test_a_fresh_pooled_socket_is_reused_without_a_poll(serve: Callable[..., int], ca_pem: bytes,
                                                        read_ahead: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Taken again right after its response, a pooled socket with read-ahead is not
    polled (what came with the response is inside OpenSSL, and looked at there);
    without read-ahead the poll stays.  Either way it is the one connection."""
    peers: set[int] = set()
    port = serve(lambda req, res: (peers.add(req.socket.remote_port), res.end(b"x")))
    agent = greenhttps.Agent(keep_alive=True)
    polls = _count_polls(monkeypatch)
    try:
        for _ in range(5):
            assert greenhttps.fetch(f"https://localhost:{port}/", ca=ca_pem, agent=agent).content == b"x"
    finally:
        agent.destroy()
    assert len(peers) == 1
    assert len(polls) == (0 if read_ahead else 4)


def test_a_pooled_socket_idle_past_the_fresh_window_is_polled(serve: Callable[..., int], ca_pem: bytes,
                                                              read_ahead: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    peers: set[int] = set()
    port = serve(lambda req, res: (peers.add(req.socket.remote_port), res.end(b"x")))
    agent = greenhttps.Agent(keep_alive=True)
    polls = _count_polls(monkeypatch)
    try:
        for _ in range(3):
            assert greenhttps.fetch(f"https://localhost:{port}/", ca=ca_pem, agent=agent).content == b"x"
            gevent.sleep(_dial.FRESH_SECONDS * 2)
    finally:
        agent.destroy()
    assert len(peers) == 1
    assert len(polls) == 2


def test_a_close_the_loop_has_not_seen_is_found_by_the_poll(server_cert: Any, read_ahead: bool) -> None:
    """The server (a thread of its own, not this hub's) closes the idle connection
    while this greenlet blocks without letting the loop run: the free-socket watcher
    cannot fire, and the connection is past the fresh window, so the poll at take
    time finds the close.  The second request (a POST, never retried) goes on a
    new connection, and the closed one never receives it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    listener = stdlib_socket.create_server(("127.0.0.1", 0))
    requests: list[tuple[int, bytes]] = []

    def serve_thread() -> None:
        for index in range(2):
            raw, _ = listener.accept()
            with ctx.wrap_socket(raw, server_side=True) as tls:
                tls.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = tls.recv(65536)
                    if not piece:
                        break
                    data += piece
                requests.append((index, data))
                tls.sendall(_OK)
                if index == 0:
                    time.sleep(0.1)  # then close: close_notify, FIN
                    try:
                        tls.unwrap()
                    except (OSError, ssl.SSLError):
                        pass
                    continue
                tls.recv(1)  # the client closes

    thread = threading.Thread(target=serve_thread, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    agent = greenhttps.Agent(keep_alive=True)
    try:
        assert greenhttps.fetch(f"https://localhost:{port}/", agent=agent, reject_unauthorized=False).content == b"ok"
        time.sleep(0.4)  # blocks the hub: the loop does not look meanwhile
        # A POST: on a reused dead socket it would fail (ECONNRESET), not be retried.
        res = greenhttps.fetch(f"https://localhost:{port}/", method="POST", body=b"once", agent=agent,
                               reject_unauthorized=False)
        assert res.content == b"ok"
    finally:
        agent.destroy()
        thread.join(5)
        listener.close()
    assert [index for index, _ in requests] == [0, 1]


def test_client_upgrade_gets_the_bytes_read_ahead_as_head(server_ssl_context: ssl.SSLContext, read_ahead: bool,
                                                          wrapped: list[Any]) -> None:
    """The 101 and the new protocol's first bytes in one segment (two records): the
    client's 'upgrade' gets them in ``head`` with read-ahead (they were read with
    the 101), or from its first read without; either way nothing is lost, and the
    socket handed over has read-ahead off.  (Node: test/parallel/test-http-upgrade-client.js.)"""
    def answer(peer: BioPeer, index: int) -> None:
        peer.send(peer.record(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
                  + peer.record(b"hello"))
        gevent.sleep(1)

    hand = _HandServer(server_ssl_context, answer)
    got = gevent.event.AsyncResult()
    try:
        req = greenhttps.request({"hostname": "localhost", "port": hand.port, "reject_unauthorized": False,
                                  "headers": {"Connection": "Upgrade", "Upgrade": "echo"}})
        req.on("upgrade", lambda res, sock, head: got.set((sock, head)))
        req.end()
        sock, head = got.get(timeout=5)
        data = head
        while len(data) < 5:
            data += sock.recv(10)
        assert data == b"hello"
        assert head == (b"hello" if read_ahead else b"")
        assert _openssl.ATTR not in wrapped[0][0].__dict__
        sock.destroy()
    finally:
        hand.stop()


def test_the_proven_contexts_are_not_kept_alive() -> None:
    """The table of contexts whose SSL_CTX* has been proven holds them weakly
    (review: a strong table kept up to 64 contexts, and their certificates, alive
    after their users let go)."""
    import gc
    import weakref

    if not _openssl._library():
        pytest.skip("read-ahead is not available here")
    refs = []
    for _ in range(5):
        context = ssl.create_default_context()
        a, b = gevent.socket.socketpair()
        try:
            sock = _tls.wrap_socket(context, a, server_side=False, server_hostname="x")
            assert _openssl.ATTR in sock.__dict__  # proven: the table has seen it
            sock.close()
        finally:
            a.close()
            b.close()
        refs.append(weakref.ref(context))
        del context, sock
    gc.collect()
    assert [ref() for ref in refs] == [None] * 5


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_fin_right_after_the_response_never_fails_the_next_request(server_cert: Any, read_ahead: bool,
                                                                      method: str) -> None:
    """The server answers keep-alive and at once closes TCP without a close_notify (a
    worker that crashed or restarted, Node's socket.destroy()); FIN and response are
    both in the kernel before the client reads.  The next request comes within the
    fresh window: a POST is polled (it could not be sent again) and goes on a new
    connection; a GET may skip the poll, and if it meets the closed connection it is
    sent again on a new one (review of the fresh window: the POST failed with
    ECONNRESET).  Either way it succeeds, and the server sees it once."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    listener = stdlib_socket.create_server(("127.0.0.1", 0))
    seen: list[tuple[int, bytes]] = []

    def serve_thread() -> None:
        for index in range(2):
            raw, _ = listener.accept()
            tls = ctx.wrap_socket(raw, server_side=True)
            tls.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                piece = tls.recv(65536)
                if not piece:
                    break
                data += piece
            seen.append((index, data.split(b"\r\n")[0]))
            tls.sendall(_OK)
            if index == 0:
                stdlib_socket.socket.shutdown(tls, stdlib_socket.SHUT_RDWR)  # FIN, no close_notify
            else:
                tls.recv(1)  # until the client closes
            tls.close()

    thread = threading.Thread(target=serve_thread, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    agent = greenhttps.Agent(keep_alive=True)
    try:
        req = greenhttps.request({"hostname": "localhost", "port": port, "path": "/first", "agent": agent,
                                  "reject_unauthorized": False})
        req.end()
        time.sleep(0.05)  # blocks the hub: the response and the FIN are in the kernel before the read
        assert req.getresponse().read() == b"ok"
        res = greenhttps.fetch(f"https://localhost:{port}/second", method=method,
                               body=b"once" if method == "POST" else None, agent=agent, reject_unauthorized=False)
        assert res.content == b"ok"
    finally:
        agent.destroy()
        listener.close()
    thread.join(5)
    assert seen == [(0, b"GET /first HTTP/1.1"), (1, method.encode() + b" /second HTTP/1.1")]
