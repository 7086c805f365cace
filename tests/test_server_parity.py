"""Server behaviours of Node's catalog (NODE-BEHAVIOURS B-11, B-18, B-33, B-97), each
driven over real TLS by a raw client and, where the bytes decide, compared with Node 20
answering the same bytes (``helpers.node_server``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import pytest

import helpers

pytestmark = pytest.mark.timeout(30)

PIPELINED = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % n for n in (1, 2, 3))


def status_lines(raw: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", raw)  # a body may run into the next one


def raw_exchange(port: int, data: bytes, *, tls: bool, wait: float = 1.5) -> bytes:
    """Send ``data`` at once and collect the answer until the peer closes or ``wait``
    passes (Node keeps a socket open after a 503 it sent with ``Connection: close``)."""
    sock = helpers.raw_connect(port, tls=tls, timeout=5)
    try:
        sock.sendall(data)
        try:
            return helpers.read_until_eof(sock, wait, reset_ok=True)
        except TimeoutError as exc:
            return bytes(exc.args[1])
    finally:
        sock.close()


NODE_DROP_SERVER = """
const http = require('http');
const server = http.createServer((req, res) => res.end('ok ' + req.url));
server.maxRequestsPerSocket = +process.argv[2];
let dropped = [];
server.on('dropRequest', (req, socket) => {
  dropped.push(req.url + (typeof socket.write === 'function' ? ':socket' : ':?'));
  console.error('dropRequest ' + dropped.join(','));
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@pytest.mark.needs_node
@pytest.mark.parametrize("limit", [1, 2])
def test_max_requests_per_socket_answers_pipelined_extras_503_like_node(
    make_server: Callable[..., Any], limit: int
) -> None:
    """B-97, mirrors test/parallel/test-https-keep-alive-drop-requests.js: requests
    pipelined past ``maxRequestsPerSocket`` get 503 and ``'dropRequest'(req, socket)``
    instead of ``'request'``; the client sees no socket error. Node answers the same
    bytes with the same status lines (its server is plain HTTP: the parser decides)."""
    with helpers.node_server(NODE_DROP_SERVER, [str(limit)]) as node_port:
        node_answer = raw_exchange(node_port, PIPELINED, tls=False)
    served: list[str] = []
    dropped: list[tuple[str, Any]] = []

    def handler(req: Any, res: Any) -> None:
        served.append(req.url)
        res.end("ok " + req.url)

    srv = make_server(handler, max_requests_per_socket=limit)
    srv.on("dropRequest", lambda req, sock: dropped.append((req.url, sock)))
    ours = raw_exchange(srv.address()["port"], PIPELINED, tls=True)

    assert status_lines(ours) == status_lines(node_answer), (ours, node_answer)
    assert status_lines(ours) == [b"HTTP/1.1 200 OK"] * limit + [b"HTTP/1.1 503 Service Unavailable"] * (3 - limit)
    assert served == [f"/{n}" for n in range(1, limit + 1)]
    assert [url for url, _ in dropped] == [f"/{n}" for n in range(limit + 1, 4)]
    assert all(sock is not None and hasattr(sock, "write") for _, sock in dropped)
    # Every answer from the limit on says the connection closes; ours then closes.
    assert ours.count(b"Connection: close") == 4 - limit
    assert ours.endswith(b"\r\n\r\n")


def test_keep_alive_header_names_the_request_budget(make_server: Callable[..., Any]) -> None:
    """Node writes ``Keep-Alive: timeout=5, max=N`` when ``maxRequestsPerSocket`` is N
    (lib/_http_outgoing.js; seen from node 20 on the same request)."""
    srv = make_server(max_requests_per_socket=3)
    sock = helpers.raw_connect(srv.address()["port"], tls=True, timeout=5)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert helpers.read_response(sock).get("keep-alive") == b"timeout=5, max=3"
    finally:
        sock.close()


def test_a_request_past_the_limit_with_a_body_is_dropped_and_the_connection_ends(
    make_server: Callable[..., Any],
) -> None:
    """Past the limit, a pipelined request with a body is answered 503 and nothing after
    it is read (its body is not): the connection closes."""
    dropped: list[str] = []
    srv = make_server(max_requests_per_socket=1)
    srv.on("dropRequest", lambda req, sock: dropped.append(req.url))
    data = (b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
    answer = raw_exchange(srv.address()["port"], data, tls=True)
    assert status_lines(answer) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable"]
    assert dropped == ["/2"]


def test_close_spares_a_connection_mid_request_line(make_server: Callable[..., Any]) -> None:
    """B-11, mirrors test/parallel/test-http-server-close-idle.js: ``close()`` closes
    the idle keep-alive connection at once but not the one that has sent part of a
    request line; that one is served (with ``Connection: close``) when it completes,
    and ``close(cb)`` calls back once it is gone. ``close_all_connections()`` ends it."""
    closed = gevent.event.Event()

    def handler(req: Any, res: Any) -> None:
        res.write_head(200, {"Connection": "keep-alive"})
        res.end()

    srv = make_server(handler, headers_timeout=0, keep_alive_timeout=0, request_timeout=60000)
    port = srv.address()["port"]
    client1 = helpers.raw_connect(port, tls=True, timeout=5)
    client1.sendall(b"GET / HTTP/1.1")
    client2 = helpers.raw_connect(port, tls=True, timeout=5)
    client2.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    first = helpers.read_response(client2)
    assert first.status == 200 and first.get("connection") == b"keep-alive"
    assert first.get("transfer-encoding") == b"chunked" and first.raw.endswith(b"0\r\n\r\n")
    helpers.settle()

    srv.close(lambda *args: closed.set())
    assert helpers.read_until_eof(client2, 2, reset_ok=True) == b""  # idle: closed at once
    gevent.sleep(0.2)
    assert srv.connections == 1 and not closed.is_set()  # client1 is mid-request: spared

    client1.sendall(b"\r\nHost: a\r\n\r\n")
    answer = helpers.read_response(client1)
    assert answer.status == 200
    assert helpers.read_until_eof(client1, 2, reset_ok=True) == b""
    assert closed.wait(2)
    client1.close()
    client2.close()


def test_close_all_connections_ends_the_spared_one(make_server: Callable[..., Any]) -> None:
    """B-11, second half: after ``close()``, ``close_all_connections()`` closes the
    connection that was mid-request, and ``close(cb)`` calls back."""
    closed = gevent.event.Event()
    srv = make_server(headers_timeout=0, keep_alive_timeout=0, request_timeout=60000)
    client1 = helpers.raw_connect(srv.address()["port"], tls=True, timeout=5)
    client1.sendall(b"GET / HTTP/1.1")
    gevent.sleep(0.2)
    srv.close(lambda *args: closed.set())
    gevent.sleep(0.2)
    assert srv.connections == 1 and not closed.is_set()
    srv.close_all_connections()
    assert helpers.read_until_eof(client1, 2, reset_ok=True) == b""
    assert closed.wait(2)
    client1.close()


def test_pipelined_timeout_goes_to_the_response_that_owns_the_socket(make_server: Callable[..., Any]) -> None:
    """B-18 ("serverResponseTimeoutWithPipeline", test/parallel/test-http-set-timeout-server.js):
    GET /1, /2, /3 pipelined; each handler sets ``res.set_timeout(50)`` and only /1 is
    ended: the only response whose timeout fires is /2's."""
    fired: list[str] = []
    started = gevent.event.Event()

    def handler(req: Any, res: Any) -> None:
        res.set_timeout(50, lambda *a: fired.append(req.url))
        if req.url == "/1":
            res.end()
        else:
            started.set()

    srv = make_server(handler)
    sock = helpers.raw_connect(srv.address()["port"], tls=True, timeout=5)
    try:
        sock.sendall(PIPELINED)
        assert helpers.read_response(sock).status == 200
        assert started.wait(2)
        deadline = time.monotonic() + 1.0
        while not fired and time.monotonic() < deadline:
            gevent.sleep(0.02)
        gevent.sleep(0.3)  # room for a wrong second timeout (/3's) to fire
        assert "".join(fired) == "/2"
    finally:
        sock.close()


NODE_204_SERVER = """
const http = require('http');
const server = http.createServer((req, res) => {
  res.writeHead(+req.url.slice(1), {'Transfer-Encoding': 'chunked'});
  res.end();
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@pytest.mark.needs_node
@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_with_user_chunked_close_and_send_no_terminator(
    make_server: Callable[..., Any], status: int
) -> None:
    """B-33, mirrors test/parallel/test-http-chunked-304.js: ``writeHead(204|304,
    {'Transfer-Encoding': 'chunked'})`` + ``end()`` → the raw response has a line
    ``Connection: close`` and no line ``0``; the same lines Node 20 sends."""
    request = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % status
    with helpers.node_server(NODE_204_SERVER) as node_port:
        node_answer = raw_exchange(node_port, request, tls=False, wait=0.5)

    def handler(req: Any, res: Any) -> None:
        res.write_head(int(req.url[1:]), {"Transfer-Encoding": "chunked"})
        res.end()

    srv = make_server(handler)
    ours = raw_exchange(srv.address()["port"], request, tls=True)

    def lines(raw: bytes) -> list[bytes]:
        return [line for line in raw.split(b"\r\n") if not line.startswith(b"Date:")]

    assert b"Connection: close" in lines(ours) and b"0" not in lines(ours)
    assert lines(ours) == lines(node_answer)


@pytest.mark.parametrize("form", ["options", "listener", "both", "none"])
def test_create_server_argument_forms(tls_options: dict[str, bytes], client_ssl_context: Any, form: str) -> None:
    """B-5, mirrors test/parallel/test-https-argument-of-creating.js: ``create_server(opts)``
    leaves ``opts`` as it was; ``create_server(listener)`` adds exactly that one
    ``'request'`` listener, ``create_server()`` none; ALPN says ``http/1.1`` whatever
    the form."""
    import greenhttps

    def listener(req: Any, res: Any) -> None:
        res.end()

    opts = dict(tls_options)
    snapshot = dict(opts)
    if form == "options":
        srv = greenhttps.create_server(opts)
    elif form == "listener":
        srv = greenhttps.create_server(listener)
    elif form == "both":
        srv = greenhttps.create_server(opts, listener)
    else:
        srv = greenhttps.create_server()
    try:
        assert opts == snapshot
        expected = [listener] if form in ("listener", "both") else []
        assert srv.listeners("request") == expected
        if form in ("options", "both"):
            srv.listen(0, "127.0.0.1")
            client_ssl_context.set_alpn_protocols(["h2", "http/1.1"])
            sock = helpers.raw_connect(srv.address()["port"], tls=True, ssl_context=client_ssl_context)
            try:
                assert sock.selected_alpn_protocol() == "http/1.1"
            finally:
                sock.close()
    finally:
        srv.close()


NODE_HOSTLESS_SERVER = """
const http = require('http');
const server = http.createServer({requireHostHeader: process.argv[2] === 'true'},
  (req, res) => res.end('host=' + (req.headers.host === undefined ? 'none' : req.headers.host)));
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@pytest.mark.needs_node
@pytest.mark.parametrize("required", [True, False])
def test_require_host_header_with_each_parser_like_node(make_server: Callable[..., Any],
                                                        monkeypatch: pytest.MonkeyPatch, required: bool) -> None:
    """Node's ``requireHostHeader`` (lib/_http_server.js, test-http-missing-header-separator-lf
    and friends use it): True (the default) answers an HTTP/1.1 request without Host
    400; False serves it with no ``host`` header.  Both parsers, and node 20 on the
    same bytes, give the same status line and body."""
    from test_strict_parity import PARSERS

    from greenhttps import _server_conn

    request = b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n"
    with helpers.node_server(NODE_HOSTLESS_SERVER, ["true" if required else "false"]) as node_port:
        node = raw_exchange(node_port, request, tls=False, wait=0.5)

    def handler(req: Any, res: Any) -> None:
        assert req.headers.get("x-a") == "b"
        res.end("host=" + req.headers.get("host", "none"))

    for parser_cls in PARSERS:
        monkeypatch.setattr(_server_conn, "SERVER_PARSER", parser_cls)
        srv = make_server(handler, require_host_header=required)
        ours = raw_exchange(srv.address()["port"], request, tls=True, wait=0.5)
        assert status_lines(ours) == status_lines(node), (parser_cls.__name__, ours, node)
        if not required:
            assert ours.endswith(b"host=none") and node.endswith(b"host=none")
        else:
            assert status_lines(ours) == [b"HTTP/1.1 400 Bad Request"]
