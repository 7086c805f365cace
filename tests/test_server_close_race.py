"""``close()`` and the requests that race it: nothing that reached the server is dropped.

``close()`` closes idle keep-alive connections at once (B-11).  What is not idle,
and so is served (its response says ``Connection: close``), besides a request
whose head is partly parsed: a connection accepted before ``close()`` that has not
had its first request yet -- still in its TLS handshake, or just out of it -- as in
Node 20; and a keep-alive connection whose next request is in the kernel's (or
OpenSSL's) buffer but not yet read, when ``close()`` looks or when the deferred
close would happen.  The one race left is a request sent after the server's FIN
left (see tests/test_gunicorn_reload.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.socket
import pytest
from keepalive_client import Clients

import helpers

pytestmark = pytest.mark.timeout(30)

REQ = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

NODE_CLOSING_SERVER = """
const https = require('https');
const fs = require('fs');
const [key, cert, when] = process.argv.slice(2);
const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) },
                                  (req, res) => res.end('ok'));
server.on(when, () => setTimeout(() => server.close(), 100));
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@pytest.mark.parametrize("peer", ["greenhttps", pytest.param("node", marks=pytest.mark.needs_node)])
@pytest.mark.parametrize("when", ["connection", "secureConnection"])
def test_a_connection_accepted_before_close_gets_its_first_request_served(
    make_server: Callable[..., Any], server_cert_files: dict[str, str], peer: str, when: str
) -> None:
    """Mirrors what Node 20 does (no test file of its own; test-http-server-close-idle.js
    covers the idle case): the server closes 0.1 s after accepting a connection
    (``'connection'``: before its TLS handshake; ``'secureConnection'``: after), and
    the client sends its first request 0.3 s after connecting -- it is answered.
    Node's answer says ``keep-alive`` and its close then waits for the keep-alive
    timeout; ours says ``Connection: close``, and ``'close'`` follows it."""

    def exchange(port: int) -> helpers.Response:
        raw = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        if when == "connection":
            gevent.sleep(0.3)  # the server closes while this one waits for its handshake
        sock = helpers.wrap_client(raw, helpers.unverified_client_context(), "localhost")
        try:
            if when == "secureConnection":
                gevent.sleep(0.3)
            sock.sendall(REQ)
            return helpers.read_response(sock)
        finally:
            sock.close()

    if peer == "node":
        args = [server_cert_files["key"], server_cert_files["cert"], when]
        with helpers.node_server(NODE_CLOSING_SERVER, args) as port:
            resp = exchange(port)
        assert resp.status == 200 and resp.body == b"ok"
        assert resp.get("connection") == b"keep-alive"  # the difference README names
        return
    closed = gevent.event.Event()
    srv = make_server()
    srv.on(when, lambda *_: gevent.spawn_later(0.1, srv.close, lambda *a: closed.set()))
    resp = exchange(srv.address()["port"])
    assert resp.status == 200 and resp.body == b"ok"
    assert resp.get("connection") == b"close"
    assert closed.wait(2)


def keep_alive_connection(srv: Any) -> Any:
    sock = helpers.raw_connect(srv.address()["port"], tls=True, timeout=5)
    sock.sendall(REQ)
    assert helpers.read_response(sock).get("connection") == b"keep-alive"
    helpers.settle()  # the server's greenlet waits for the next request
    return sock


def test_a_request_in_the_kernel_buffer_when_close_looks_is_served(make_server: Callable[..., Any]) -> None:
    """The next request is sent and ``close()`` runs before the server's greenlet had
    a turn to read it (no switch in between): it is served, with ``Connection: close``.
    (Before: the connection counted as idle and the request was lost -- the client
    read EOF.)"""
    srv = make_server()
    sock = keep_alive_connection(srv)
    sock.sendall(REQ)  # on loopback the bytes are in the server's buffer when this returns
    srv.close()
    resp = helpers.read_response(sock)
    assert resp.status == 200 and resp.get("connection") == b"close"
    assert helpers.read_until_eof(sock, 2, reset_ok=True) == b""
    sock.close()


def test_a_request_arriving_after_close_looked_but_before_it_closed_is_served(
    make_server: Callable[..., Any],
) -> None:
    """``close()`` found the connection idle; the close itself happens on the next
    loop turn, and the request that arrived meanwhile is served instead."""
    srv = make_server()
    sock = keep_alive_connection(srv)
    srv.close()
    sock.sendall(REQ)  # still no switch: the close has not happened yet
    resp = helpers.read_response(sock)
    assert resp.status == 200 and resp.get("connection") == b"close"
    sock.close()


def test_an_idle_connection_is_still_closed_at_once(make_server: Callable[..., Any]) -> None:
    """The narrowing above does not keep an idle connection open: it gets EOF at once,
    and a request sent after that EOF is not answered (the race no server can close:
    the client may retry it, RFC 9112 §9.3.1)."""
    srv = make_server()
    sock = keep_alive_connection(srv)
    closed = gevent.event.Event()
    srv.close(lambda *a: closed.set())
    assert helpers.read_until_eof(sock, 1, reset_ok=True) == b""
    assert closed.wait(1)
    sock.close()


def test_a_connection_without_a_request_is_bounded_by_headers_timeout(make_server: Callable[..., Any]) -> None:
    """A connection that never sends its first request does not hold a closing server
    past ``headers_timeout`` (408, as for any slow head)."""
    srv = make_server(headers_timeout=500, request_timeout=600)
    sock = helpers.raw_connect(srv.address()["port"], tls=True, timeout=5)
    helpers.settle()
    closed = gevent.event.Event()
    srv.close(lambda *a: closed.set())
    assert not closed.wait(0.2)
    assert closed.wait(3)
    sock.close()


def test_close_under_load_drops_nothing(make_server: Callable[..., Any], client_ssl_context: Any) -> None:
    """Eight clients that never retry (tests/keepalive_client.py) loop keep-alive
    requests, every tenth one slow, and the server closes under them: every request
    sent is answered, the refusals come after the close, and -- in one process,
    where a client cannot send between its look at the connection and the server's
    close -- not even the unanswerable race happens (``idle_race`` is 0)."""

    def handler(req: Any, res: Any) -> None:
        if req.url.startswith("/slow"):
            gevent.sleep(0.05)
        res.end("ok")

    srv = make_server(handler)
    clients = Clients(srv.address()["port"], client_ssl_context, 8,
                      path=lambda n, i: f"/slow?c={n}" if i % 10 == 0 else f"/?c={n}")
    closed = gevent.event.Event()
    try:
        gevent.sleep(0.5)
        clients.closed_at = time.monotonic()
        srv.close(lambda *a: closed.set())
        assert closed.wait(5)
        gevent.sleep(0.2)
    finally:
        clients.stop()
    report = clients.report()
    assert clients.failures() == [], report
    assert clients.outcomes["ok"] > 50, report
    assert clients.outcomes["refused after close"] > 0, report
    assert clients.outcomes["idle_race"] == 0, report
