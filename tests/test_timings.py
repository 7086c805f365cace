"""Timings of a client response (issue 22 item 6): ``res.timings`` of ``request()``/
``get()`` and ``fetch()``'s ``Response.timings``.

Each test makes one phase slow on a real socket -- a server that accepts late (TLS
waits), a listener whose backlog is full (the SYN is retransmitted: connect waits),
a handler that thinks (first byte waits), an agent at its limit (queued), a
lookup that sleeps (dns) -- and checks that the time shows up in that field and not
in the others, with generous margins.  Node's ``http`` has no per-request timings
(undici's and the old ``request`` module's are the models): there is no Node test
to mirror.
"""

from __future__ import annotations

import socket as stdlib_socket
import ssl
from typing import Any, Callable

import gevent
import gevent.socket
import pytest
from client_support import read_request

import greenhttps
from helpers import fill_backlog, wrap_server

pytestmark = pytest.mark.timeout(30)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _slow(delay: float) -> Callable[[Any, Any], None]:
    def handler(req: Any, res: Any) -> None:
        gevent.sleep(delay)
        res.end("ok")

    return handler


def test_a_fresh_https_request_then_a_reused_one(serve: Callable[..., int], ca_pem: bytes) -> None:
    """A first request dials (dns for ``localhost`` through gevent's resolver,
    connect, TLS), the handler's 300 ms show in ``first_byte`` only; the second goes
    over the pooled connection: ``reused``, no dial phases."""
    port = serve(_slow(0.3))
    agent = greenhttps.Agent(keep_alive=True)
    res = greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=agent)
    assert res.read() == b"ok"
    t = res.timings
    assert t.reused is False
    assert t.dns is not None and 0 <= t.dns < 250
    assert t.connect is not None and 0 <= t.connect < 250
    assert t.tls is not None and 0 < t.tls < 250
    assert 0 <= t.queued < 100
    assert t.queued + t.dns + t.connect + t.tls <= t.sent + 1
    assert t.sent < 280 <= t.first_byte < 1500
    assert t.first_byte <= t.total < t.first_byte + 250
    assert set(t.as_dict()) == {"queued", "dns", "connect", "tls", "sent", "first_byte", "total", "reused"}
    assert "first_byte=" in repr(t)

    again = greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=agent)
    assert again.read() == b"ok"
    t2 = again.timings
    assert t2 is not t
    assert t2.reused is True and again.req.reused_socket
    assert (t2.dns, t2.connect, t2.tls) == (None, None, None)
    assert 0 <= t2.queued < 100 and t2.sent < 280 <= t2.first_byte <= t2.total
    agent.destroy()


def test_total_waits_for_the_body_and_an_ip_literal_has_no_dns(script_server: Any) -> None:
    """The body's end, not its head, ends ``total``; no lookup for an IP literal;
    plain http: has no TLS phase."""
    def handler(sock: Any) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        gevent.sleep(0.3)
        sock.sendall(b"cd")

    port = script_server(handler)
    res = greenhttps.http.get(f"http://127.0.0.1:{port}/", agent=False)
    t = res.timings
    assert t.dns is None and t.tls is None and t.connect is not None
    assert t.total is None  # not read yet
    assert t.first_byte < 250
    assert res.read() == b"abcd"
    assert t.total >= t.first_byte + 250


def test_a_server_that_accepts_late_shows_in_tls(script_server: Any, server_ssl_context: ssl.SSLContext,
                                                 ca_pem: bytes) -> None:
    """TCP completes in the kernel; the handshake waits for the server's accept and
    its 400 ms: that is ``tls``, not ``connect``."""
    def handler(sock: Any) -> None:
        gevent.sleep(0.4)
        tls = wrap_server(sock, server_ssl_context)
        try:
            read_request(tls)
            tls.sendall(OK)
        finally:
            tls.close()

    port = script_server(handler)
    res = greenhttps.get(f"https://127.0.0.1:{port}/", ca=ca_pem, agent=False, servername="localhost")
    assert res.read() == b"ok"
    t = res.timings
    assert t.connect < 200 and 350 <= t.tls < 2000
    assert t.dns is None


def test_a_full_backlog_shows_in_connect() -> None:
    """A listener whose accept queue is full drops our SYN; once it is drained the
    kernel's retransmitted SYN (about a second later) gets through: the wait is
    ``connect``."""
    lsock = gevent.socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = fill_backlog(lsock)

    def serve_late() -> None:
        gevent.sleep(0.3)
        for filler in fillers:
            filler.close()
        while True:
            conn, _ = lsock.accept()
            gevent.spawn(answer, conn)

    def answer(conn: Any) -> None:
        try:
            if read_request(conn) is not None:
                conn.sendall(OK)
        except OSError:
            pass
        finally:
            conn.close()

    server = gevent.spawn(serve_late)
    try:
        res = greenhttps.http.get(f"http://127.0.0.1:{port}/", agent=False, connect_timeout=10_000)
        assert res.read() == b"ok"
        t = res.timings
        assert 250 <= t.connect < 8000
        assert t.sent - t.connect < 200
    finally:
        server.kill()
        lsock.close()


def test_waiting_for_a_pool_slot_shows_in_queued(serve: Callable[..., int], ca_pem: bytes) -> None:
    """``max_sockets=1``: the second request waits for the first one's connection
    (300 ms of handler) and then reuses it."""
    port = serve(_slow(0.3))
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)

    def one() -> Any:
        res = greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=agent)
        res.read()
        return res.timings

    first = gevent.spawn(one)
    gevent.sleep(0.05)
    second = gevent.spawn(one)
    t1, t2 = first.get(timeout=10), second.get(timeout=10)
    assert t1.queued < 100 and not t1.reused
    assert 180 <= t2.queued < 2000 and t2.reused
    assert t2.first_byte >= t2.queued + 250
    agent.destroy()


def test_a_slow_lookup_shows_in_dns(serve: Callable[..., int], ca_pem: bytes) -> None:
    def lookup(host: str, port: int, family: int, kind: int) -> list[Any]:
        gevent.sleep(0.3)
        return [(stdlib_socket.AF_INET, kind, 6, "", ("127.0.0.1", port))]

    port = serve(_slow(0))
    res = greenhttps.get({"host": "localhost", "port": port, "ca": ca_pem, "lookup": lookup,
                          "agent": greenhttps.Agent()})
    assert res.read() == b"ok"
    t = res.timings
    assert 280 <= t.dns < 2000 and t.connect < 200


def test_a_streamed_body_is_sent_at_end(serve: Callable[..., int], ca_pem: bytes) -> None:
    """``sent`` is the request's end, not its head."""
    def handler(req: Any, res: Any) -> None:
        res.end(req.read())

    port = serve(handler)
    req = greenhttps.request(f"https://localhost:{port}/", method="POST", ca=ca_pem, agent=False)
    req.write(b"a")
    gevent.sleep(0.3)
    req.end(b"b")
    res = req.getresponse()
    assert res.read() == b"ab"
    assert 280 <= res.timings.sent <= res.timings.first_byte


def test_fetch_has_the_phases_counted_from_its_call(serve: Callable[..., int], ca_pem: bytes) -> None:
    """fetch()'s timings: the final request's phases; its moments and ``headers``/
    ``total`` from the fetch() call, a redirect's hop included."""
    def handler(req: Any, res: Any) -> None:
        if req.url == "/start":
            gevent.sleep(0.2)
            res.write_head(302, {"location": "/end"})
            res.end()
            return
        gevent.sleep(0.2)
        res.end("done")

    port = serve(handler)
    agent = greenhttps.Agent(keep_alive=True)
    res = greenhttps.fetch(f"https://localhost:{port}/start", ca=ca_pem, agent=agent)
    assert res.text() == "done"
    t = res.timings
    assert t.redirects == 1 and t.reused is True
    assert (t.dns, t.connect, t.tls) == (None, None, None)  # the final hop reused the connection
    assert t.queued is not None and t.queued < 100
    assert 180 <= t.sent < t.first_byte <= t.headers + 1  # the first hop's 200 ms come first
    assert t.first_byte >= 380
    assert t.total is not None and t.total >= t.headers

    fresh = greenhttps.fetch(f"https://localhost:{port}/end", ca=ca_pem, agent=greenhttps.Agent())
    assert fresh.text() == "done"
    assert fresh.timings.reused is False and fresh.timings.tls is not None and fresh.timings.tls > 0
    agent.destroy()


def test_the_server_side_has_none(make_server: Callable[..., Any], ca_pem: bytes) -> None:
    seen = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.timings)
        res.end("ok")

    port = make_server(handler).address()["port"]
    greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=False).read()
    assert seen == [None]
