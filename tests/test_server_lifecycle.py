"""The server's life: listening, one greenlet per connection, malformed requests,
handler failures, timeouts, close(), 'upgrade'/'connect', and resource hygiene.

Real TLS servers on 127.0.0.1:0 (plain ``greenhttps.http`` servers where the point is
not TLS), driven by raw sockets and the hand-written parser in ``helpers`` so that
the exact bytes on the wire are what is checked.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as stdlib_socket
import ssl
import time
from typing import Any

import gevent
import gevent.event
import gevent.socket
import pytest

import greenhttps
import greenhttps.http
import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)

REQ = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


# ------------------------------------------------------------------ fixtures


def port_of(srv: Any) -> int:
    return int(srv.address()["port"])


def connect(srv: Any, tls: bool = True, timeout: float = 5) -> gevent.socket.socket:
    return helpers.raw_connect(port_of(srv), tls=tls, timeout=timeout)


def get_ok(srv: Any, tls: bool = True) -> helpers.Response:
    """One ordinary request on a fresh connection: the server still serves."""
    sock = connect(srv, tls)
    try:
        sock.sendall(REQ)
        resp = helpers.read_response(sock)
    finally:
        sock.close()
    assert resp.status == 200, resp.raw
    return resp


def wait_eof(sock: Any, timeout: float = 3) -> bytes:
    """Everything the server sends until it closes (a reset counts as the end)."""
    return helpers.read_until_eof(sock, timeout, reset_ok=True)


def trickle(sock: Any, pieces: list[bytes], interval: float, limit: float = 5) -> tuple[bytes, float]:
    """Send ``pieces`` one per ``interval`` from this greenlet, reading between sends.

    Stops when the server answers or closes; returns (bytes received, elapsed).
    One greenlet does both directions, so a TLS socket is never used concurrently.
    """
    start = time.monotonic()
    received = bytearray()
    i = 0
    while time.monotonic() - start < limit:
        if i < len(pieces):
            try:
                sock.sendall(pieces[i])
            except OSError:
                break
            i += 1
        sock.settimeout(interval)
        try:
            data = sock.recv(65536)
        except (TimeoutError, stdlib_socket.timeout):
            continue
        except (ConnectionResetError, ssl.SSLError):
            break
        if not data:
            break
        received += data
        if b"\r\n\r\n" in received:
            rest = wait_eof(sock)
            received += rest
            break
    return bytes(received), time.monotonic() - start


# ------------------------------------------------------------------ listening


def test_listen_returns_at_once_then_callback_and_listening(make_server: Any) -> None:
    srv = make_server(listen=False)
    order: list[str] = []
    srv.on("listening", lambda: order.append("event"))
    assert srv.listen(0, "127.0.0.1", lambda: order.append("callback")) is srv
    helpers.settle()
    assert order == ["event", "callback"]
    assert srv.listening is True
    addr = srv.address()
    assert addr == {"address": "127.0.0.1", "family": "IPv4", "port": addr["port"]}
    assert isinstance(addr["port"], int) and addr["port"] > 0
    get_ok(srv)


def test_listen_on_port_in_use_raises_eaddrinuse(make_server: Any) -> None:
    first = make_server()
    second = make_server(listen=False)
    with pytest.raises(errors.AddressInUseError) as info:
        second.listen(port_of(first), "127.0.0.1")
    err = info.value
    assert err.code == "EADDRINUSE"
    assert err.errno == errno.EADDRINUSE
    assert isinstance(err, OSError) and isinstance(err, greenhttps.Error)
    assert second.address() is None
    # The failed server is not wedged: it can listen elsewhere, the first still serves.
    second.listen(0, "127.0.0.1")
    get_ok(second)
    get_ok(first)


def test_listen_in_use_by_foreign_socket(make_server: Any) -> None:
    with stdlib_socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        srv = make_server(listen=False)
        with pytest.raises(errors.AddressInUseError):
            srv.listen(taken.getsockname()[1], "127.0.0.1")


def test_listen_twice_raises(make_server: Any) -> None:
    srv = make_server()
    with pytest.raises(greenhttps.Error) as info:
        srv.listen(0, "127.0.0.1")
    assert info.value.code == "ERR_SERVER_ALREADY_LISTEN"
    get_ok(srv)


def test_listen_again_after_close(make_server: Any) -> None:
    srv = make_server()
    srv.close()
    srv.listen(0, "127.0.0.1")
    get_ok(srv)


def test_listen_without_host_accepts_on_loopback(make_server: Any) -> None:
    srv = make_server(listen=False)
    srv.listen(0)  # Node: '::' when IPv6 is available (dual stack), else '0.0.0.0'
    addr = srv.address()
    if helpers.has_ipv6():
        assert (addr["address"], addr["family"]) == ("::", "IPv6")
        sock = helpers.raw_connect(addr["port"], tls=True, host="::1")
        sock.sendall(REQ)
        assert helpers.read_response(sock).status == 200
        sock.close()
    else:
        assert addr["address"] == "0.0.0.0"
    get_ok(srv)  # 127.0.0.1 too


def test_listen_options_dict(make_server: Any) -> None:
    srv = make_server(listen=False)
    srv.listen({"port": 0, "host": "127.0.0.1"})
    assert srv.address()["address"] == "127.0.0.1"
    get_ok(srv)


def _unix_request(path: str, ctx: ssl.SSLContext | None = None) -> helpers.Response:
    raw = gevent.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(path)
    sock: Any = raw
    if ctx is not None:
        sock = helpers.wrap_client(raw, ctx, "localhost")
    try:
        sock.sendall(REQ)
        return helpers.read_response(sock)
    finally:
        sock.close()


@pytest.fixture
def sock_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Unix socket paths are limited to ~107 bytes: keep it short.
    return os.path.join(tmp_path_factory.mktemp("u"), "s.sock")


def test_listen_unix_socket_plain(make_server: Any, sock_path: str) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.socket.remote_address)
        res.end("unix")

    srv = make_server(handler, tls=False, listen=False)
    listening = gevent.event.Event()
    srv.listen(sock_path, listening.set)
    assert listening.wait(2)
    assert srv.address() == sock_path
    resp = _unix_request(sock_path)
    assert resp.status == 200 and resp.body == b"unix"
    assert len(seen) == 1


def test_listen_unix_socket_tls(make_server: Any, sock_path: str, client_ssl_context: ssl.SSLContext) -> None:
    srv = make_server(listen=False)
    srv.listen(sock_path)
    resp = _unix_request(sock_path, client_ssl_context)
    assert resp.status == 200 and resp.body == b"ok"


def test_unix_socket_path_removed_on_close_and_reusable(make_server: Any, sock_path: str) -> None:
    # Node (libuv) unlinks the socket file on close, so a restarted server can bind
    # the same path; a stale file would make the second listen fail with EADDRINUSE.
    srv = make_server(tls=False, listen=False)
    srv.listen(sock_path)
    srv.close()
    assert not os.path.exists(sock_path)
    again = make_server(tls=False, listen=False)
    again.listen(sock_path)
    assert _unix_request(sock_path).status == 200


def test_listen_unix_socket_path_taken_by_a_file(make_server: Any, sock_path: str) -> None:
    # Never delete something that is not ours: a regular file at the path stays.
    with open(sock_path, "w") as f:
        f.write("precious")
    srv = make_server(tls=False, listen=False)
    with pytest.raises(errors.AddressInUseError):
        srv.listen(sock_path)
    with open(sock_path) as f:
        assert f.read() == "precious"


def test_listen_on_bound_socket_object(make_server: Any) -> None:
    mine = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    try:
        mine.bind(("127.0.0.1", 0))
        srv = make_server(listen=False)
        srv.listen(mine)
        assert port_of(srv) == mine.getsockname()[1]
        get_ok(srv)
        srv.close()
        # The caller's object stays the caller's: still open after the server closed.
        assert mine.fileno() >= 0
        mine.getsockname()
    finally:
        mine.close()


def test_listen_on_fd(make_server: Any) -> None:
    mine = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    mine.bind(("127.0.0.1", 0))
    mine.listen(16)
    port = mine.getsockname()[1]
    fd = mine.detach()  # socket activation: the descriptor is handed over
    srv = make_server(listen=False)
    srv.listen({"fd": fd})
    assert port_of(srv) == port
    get_ok(srv)
    srv.close()
    # The server owns the descriptor it was given and closes it.
    with pytest.raises(OSError):
        os.fstat(fd)


def test_serve_forever_returns_after_close(make_server: Any) -> None:
    srv = make_server()
    with pytest.raises(greenhttps.Error):
        make_server(listen=False).serve_forever()  # not listening: refuse, don't hang
    runner = gevent.spawn(srv.serve_forever)
    gevent.sleep(0.05)
    assert not runner.dead
    get_ok(srv)
    gevent.spawn_later(0.05, srv.close)
    runner.join(timeout=2)
    assert runner.dead and runner.successful()


def test_http_create_server_shares_the_implementation(make_server: Any) -> None:
    srv = make_server(tls=False)
    assert isinstance(srv, greenhttps.Server)
    assert type(srv).listen is greenhttps.Server.listen
    assert type(srv).close is greenhttps.Server.close
    assert get_ok(srv, tls=False).body == b"ok"
    with pytest.raises(TypeError, match="key"):
        greenhttps.http.create_server({"key": b"x"})


# --------------------------------------------------------- concurrency


def test_slow_handler_does_not_delay_other_connections(make_server: Any) -> None:
    def handler(req: Any, res: Any) -> None:
        if req.url == "/slow":
            gevent.sleep(0.8)
        res.end(req.url)

    srv = make_server(handler)
    slow = connect(srv)
    slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    gevent.sleep(0.05)  # the slow handler is running now
    start = time.monotonic()
    fast = connect(srv)
    fast.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    assert helpers.read_response(fast).body == b"/fast"
    assert time.monotonic() - start < 0.4
    assert helpers.read_response(slow).body == b"/slow"
    assert time.monotonic() - start >= 0.6
    slow.close()
    fast.close()


def test_connection_event_gets_raw_socket_plain(make_server: Any) -> None:
    conns: list[Any] = []
    srv = make_server(tls=False)
    srv.on("connection", conns.append)
    get_ok(srv, tls=False)
    assert len(conns) == 1
    assert isinstance(conns[0], greenhttps.Socket)
    assert conns[0].remote_address == "127.0.0.1"


def test_connection_listener_may_destroy_the_socket(make_server: Any) -> None:
    calls: list[Any] = []
    srv = make_server(lambda req, res: calls.append(req) or res.end())
    srv.on("connection", lambda sock: sock.destroy())
    sock = gevent.socket.create_connection(("127.0.0.1", port_of(srv)), timeout=3)
    assert wait_eof(sock) == b""
    sock.close()
    assert calls == []


# ------------------------------------------------------- malformed requests


MALFORMED = [
    pytest.param(b"\x01\x02 garbage \xff\r\n\r\n", 400, {}, id="garbage request line"),
    pytest.param(b"GET /" + b"a" * 9000, 414, {}, id="request line over 8 KiB"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 17000 + b"\r\n\r\n", 431, {},
        id="header block over max_header_size"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n", 431,
        {"max_header_size": 2048}, id="header block over a small max_header_size"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 3000, 431,
        {"max_header_size": 2048}, id="unfinished header block over max_header_size"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10)) + b"\r\n",
        431, {"max_headers_count": 10}, id="too many headers"),
    # RFC 9112 §6.3: a final coding other than chunked is 400 (issue 17); a
    # well-formed list ending in chunked that names another coding is 501.
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, {},
                 id="final transfer-coding not chunked"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, {},
                 id="unsupported transfer-encoding"),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n", 400, {}, id="CL and TE together"),
    pytest.param(b"GET / HTTP/1.1\nHost: x\n\n", 400, {}, id="bare LF"),
]


@pytest.mark.parametrize(("data", "status", "opts"), MALFORMED)
def test_malformed_request_default_reply(
    make_server: Any, data: bytes, status: int, opts: dict[str, Any], capfd: Any
) -> None:
    calls: list[str] = []

    def handler(req: Any, res: Any) -> None:
        calls.append(req.url)
        res.end()

    srv = make_server(handler, **opts)
    sock = connect(srv)
    sock.sendall(data)
    resp = helpers.read_response(sock)
    assert resp.status == status, resp.raw
    assert resp.get("connection") == b"close"
    assert wait_eof(sock) == b""  # nothing more (no smuggled response), then closed
    sock.close()
    assert calls == []
    get_ok(srv)
    assert calls == ["/"]
    assert "Traceback" not in capfd.readouterr().err


def test_limits_allow_requests_within_them(make_server: Any) -> None:
    calls: list[str] = []

    def handler(req: Any, res: Any) -> None:
        calls.append(req.url)
        res.end()

    srv = make_server(handler, max_headers_count=10, max_header_size=2048)
    sock = connect(srv)
    # Host + 9 fields = 10 (the limit), a 1 KiB value under the 2 KiB block limit.
    sock.sendall(b"GET /within HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 1024 + b"\r\n"
                 + b"".join(b"X-%d: v\r\n" % i for i in range(8)) + b"\r\n")
    assert helpers.read_response(sock).status == 200
    sock.close()
    assert calls == ["/within"]


def test_client_error_listener_gets_error_and_socket(make_server: Any) -> None:
    got: list[tuple[Any, Any]] = []

    def on_client_error(err: Any, sock: Any) -> None:
        got.append((err, sock))
        sock.write(b"HTTP/1.1 418 Custom\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
        sock.end(b"mine")

    srv = make_server()
    srv.on("clientError", on_client_error)
    sock = connect(srv)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
    resp = helpers.read_response(sock)
    assert (resp.status, resp.body) == (418, b"mine")
    assert wait_eof(sock) == b""
    sock.close()
    assert len(got) == 1
    err, client_sock = got[0]
    assert isinstance(err, greenhttps.Error)
    assert err.code == "HPE_INVALID_TRANSFER_ENCODING"
    assert isinstance(client_sock, greenhttps.Socket)
    get_ok(srv)


def test_client_error_listener_for_oversized_head(make_server: Any) -> None:
    codes: list[str] = []

    def on_client_error(err: Any, sock: Any) -> None:
        codes.append(err.code)
        sock.end(b"HTTP/1.1 400 Mine\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")

    srv = make_server()
    srv.on("clientError", on_client_error)
    sock = connect(srv)
    sock.sendall(b"GET /" + b"a" * 9000)
    assert helpers.read_response(sock).reason == b"Mine"
    sock.close()
    assert codes == ["HPE_URI_TOO_LONG"]


def test_peer_closing_without_a_request_is_quiet(make_server: Any) -> None:
    errors_seen: list[Any] = []
    srv = make_server()
    srv.on("clientError", lambda err, sock: errors_seen.append(err))
    sock = connect(srv)
    sock.close()
    helpers.settle(0.1)
    assert errors_seen == []
    get_ok(srv)


# ------------------------------------------------------------ handler errors


def test_handler_raises_before_head_gives_500(make_server: Any, caplog: Any) -> None:
    def handler(req: Any, res: Any) -> None:
        if req.url == "/boom":
            res.set_header("X-Before", "1")
            raise RuntimeError("handler exploded")
        res.end("fine")

    srv = make_server(handler)
    caplog.set_level(logging.ERROR, logger="greenhttps")
    sock = connect(srv)
    sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = helpers.read_response(sock)
    assert resp.status == 500
    assert resp.get("connection") == b"close"
    assert resp.get("x-before") is None  # the half-built response is discarded
    assert wait_eof(sock) == b""
    sock.close()
    records = [r for r in caplog.records if r.name == "greenhttps" and r.levelno >= logging.ERROR]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)
    assert "/boom" in records[0].getMessage()
    assert get_ok(srv).body == b"fine"


def test_handler_raises_after_write_head_still_gives_500(make_server: Any, caplog: Any) -> None:
    # write_head() only stages the head (headers_sent turns True, as in Node); until a
    # byte is on the wire the failure can still be answered properly.
    def handler(req: Any, res: Any) -> None:
        res.write_head(200, {"X-Staged": "1"})
        raise RuntimeError("after write_head")

    srv = make_server(handler)
    caplog.set_level(logging.CRITICAL, logger="greenhttps")
    sock = connect(srv)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = helpers.read_response(sock)
    assert resp.status == 500
    assert resp.get("x-staged") is None
    assert resp.get("connection") == b"close"
    sock.close()


def test_handler_raises_after_write_aborts_connection(make_server: Any, caplog: Any) -> None:
    def handler(req: Any, res: Any) -> None:
        if req.url == "/half":
            res.write("partial")
            raise RuntimeError("after write")
        res.end("fine")

    srv = make_server(handler)
    caplog.set_level(logging.ERROR, logger="greenhttps")
    sock = connect(srv)
    sock.sendall(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(helpers.IncompleteResponse) as info:
        helpers.read_response(sock)
    sock.close()
    data = info.value.data
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"partial" in data and not data.endswith(b"0\r\n\r\n")
    assert any(isinstance(r.exc_info[1], RuntimeError) for r in caplog.records if r.exc_info)
    assert get_ok(srv).body == b"fine"


def test_handler_greenlet_killed_mid_response(make_server: Any) -> None:
    running: list[gevent.Greenlet] = []
    served: list[str] = []

    def handler(req: Any, res: Any) -> None:
        served.append(req.url)
        if req.url == "/kill":
            res.write("partial")
            running.append(gevent.getcurrent())
            gevent.sleep(10)
        res.end("fine")

    srv = make_server(handler)
    sock = connect(srv)
    # Two pipelined requests: the second must never be served on the aborted connection.
    sock.sendall(b"GET /kill HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    with gevent.Timeout(2):
        while not running:
            gevent.sleep(0.01)
    gevent.kill(running[0])
    data = wait_eof(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 ") and b"partial" in data
    with pytest.raises(helpers.IncompleteResponse):
        helpers.parse_response(data)
    assert served == ["/kill"]
    helpers.settle()
    assert srv.connections == 0
    assert get_ok(srv).body == b"fine"


def test_res_end_from_another_greenlet(make_server: Any) -> None:
    def handler(req: Any, res: Any) -> None:
        gevent.spawn_later(0.1, res.end, "later")

    srv = make_server(handler)
    sock = connect(srv)
    sock.sendall(REQ + REQ)
    assert helpers.read_response(sock).body == b"later"
    assert helpers.read_response(sock).body == b"later"
    sock.close()


# ------------------------------------------------------------------ timeouts


def test_headers_timeout_first_request(make_server: Any) -> None:
    calls: list[str] = []
    srv = make_server(lambda req, res: calls.append(req.url) or res.end(), headers_timeout=500)
    sock = connect(srv)
    data, elapsed = trickle(sock, [b"GET / HTTP/1.1\r\n"] + [b"X-a: b\r\n"] * 40, 0.1)
    sock.close()
    resp, rest = helpers.parse_response(data)
    assert resp.status == 408 and resp.get("connection") == b"close"
    assert rest == b""
    assert 0.4 <= elapsed < 1.5
    assert calls == []


def test_headers_timeout_second_request_on_keep_alive(make_server: Any) -> None:
    calls: list[str] = []
    srv = make_server(lambda req, res: calls.append(req.url) or res.end(), headers_timeout=500)
    sock = connect(srv)
    sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    first = helpers.read_response(sock)
    assert first.status == 200 and first.get("connection") == b"keep-alive"
    data, elapsed = trickle(sock, [b"GET /second HTTP/1.1\r\n"] + [b"X-a: b\r\n"] * 40, 0.1)
    sock.close()
    resp, _ = helpers.parse_response(data)
    assert resp.status == 408
    assert 0.4 <= elapsed < 1.5
    assert calls == ["/first"]


def test_request_timeout_on_trickled_body(make_server: Any) -> None:
    outcome: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        try:
            outcome.append(req.read())
        except greenhttps.Error as exc:
            outcome.append(exc)
            raise
        res.end("got it")

    srv = make_server(handler, request_timeout=500, headers_timeout=500)
    sock = connect(srv)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    data, elapsed = trickle(sock, [head] + [b"x"] * 99, 0.1)
    sock.close()
    resp, _ = helpers.parse_response(data)
    assert resp.status == 408 and resp.get("connection") == b"close"
    assert 0.4 <= elapsed < 1.5
    with gevent.Timeout(1):  # the handler hears of it once the close has drained
        while not outcome:
            gevent.sleep(0.01)
    assert len(outcome) == 1 and isinstance(outcome[0], errors.TimeoutError)


def test_keep_alive_timeout_closes_idle_connection_silently(make_server: Any) -> None:
    srv = make_server(keep_alive_timeout=300)
    sock = connect(srv)
    sock.sendall(REQ)
    assert helpers.read_response(sock).status == 200
    start = time.monotonic()
    assert wait_eof(sock) == b""
    elapsed = time.monotonic() - start
    sock.close()
    assert 0.2 <= elapsed < 1.2


def test_idle_timeout_with_server_listener_keeps_connection(make_server: Any) -> None:
    timed_out: list[Any] = []
    srv = make_server()
    assert srv.set_timeout(200, timed_out.append) is srv
    sock = connect(srv)
    gevent.sleep(0.5)
    assert timed_out and all(isinstance(s, greenhttps.Socket) for s in timed_out)
    sock.sendall(REQ)  # still open: the listener took the event
    assert helpers.read_response(sock).status == 200
    sock.close()


def test_idle_timeout_without_listener_destroys_socket(make_server: Any) -> None:
    server_sockets: list[Any] = []
    srv = make_server(timeout=200)
    srv.on("connection", server_sockets.append)
    sock = connect(srv)
    start = time.monotonic()
    assert wait_eof(sock) == b""
    assert 0.15 <= time.monotonic() - start < 1.2
    sock.close()
    with gevent.Timeout(1):  # after the graceful close's short drain
        while not server_sockets[0].destroyed:
            gevent.sleep(0.01)
    get_ok(srv)


def test_idle_timeout_goes_to_response_then_server(make_server: Any) -> None:
    """Node's ``socketOnTimeout`` (lib/_http_server.js) emits on the request (body
    incomplete), the response and the server: every listener is called, in order."""
    calls: list[str] = []

    def handler(req: Any, res: Any) -> None:
        def on_timeout() -> None:
            calls.append("res")
            res.end("late")

        res.set_timeout(200, on_timeout)  # and never ends on its own

    srv = make_server(handler)
    srv.on("timeout", lambda sock: calls.append("server"))
    sock = connect(srv)
    sock.sendall(REQ)
    resp = helpers.read_response(sock)
    sock.close()
    assert resp.body == b"late"
    assert calls == ["res", "server"]


def test_idle_timeout_goes_to_request_while_body_incomplete(make_server: Any) -> None:
    """As Node 20 on the same bytes: the request (its body incomplete), the response
    and the server each get 'timeout', once for the one idle period."""
    calls: list[str] = []

    def handler(req: Any, res: Any) -> None:
        req.set_timeout(200, lambda: calls.append("req"))
        res.set_timeout(200, lambda: calls.append("res"))
        res.end(req.read())

    srv = make_server(handler)
    srv.on("timeout", lambda sock: calls.append("server"))
    sock = connect(srv)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    gevent.sleep(0.5)
    sock.sendall(b"cd")
    resp = helpers.read_response(sock)
    sock.close()
    assert resp.body == b"abcd"
    assert calls == ["req", "res", "server"]


# --------------------------------------------------------------------- close


def test_close_stops_accepting_at_once(make_server: Any) -> None:
    closed = gevent.event.Event()
    srv = make_server()
    port = port_of(srv)
    get_ok(srv)
    srv.close(closed.set)
    with pytest.raises(ConnectionRefusedError):
        stdlib_socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert closed.wait(2)
    assert srv.address() is None and srv.listening is False


def test_close_closes_idle_keep_alive_connections_at_once(make_server: Any) -> None:
    srv = make_server()  # keep_alive_timeout is 5 s
    sock = connect(srv)
    sock.sendall(REQ)
    assert helpers.read_response(sock).get("connection") == b"keep-alive"
    helpers.settle()
    start = time.monotonic()
    srv.close()
    assert wait_eof(sock) == b""
    assert time.monotonic() - start < 0.5
    sock.close()


def test_close_lets_request_in_flight_finish_with_connection_close(make_server: Any) -> None:
    entered = gevent.event.Event()
    order: list[str] = []

    def handler(req: Any, res: Any) -> None:
        entered.set()
        gevent.sleep(0.3)
        res.end("finished")
        order.append("response")

    srv = make_server(handler)
    srv.on("close", lambda *a: order.append("close event"))
    sock = connect(srv)
    sock.sendall(REQ)
    assert entered.wait(2)
    srv.close(lambda *a: order.append("callback"))
    helpers.settle()
    assert order == []  # 'close' waits for the request in flight
    resp = helpers.read_response(sock)
    assert resp.body == b"finished" and resp.get("connection") == b"close"
    assert wait_eof(sock) == b""
    sock.close()
    with gevent.Timeout(2):
        while len(order) < 3:
            gevent.sleep(0.01)
    assert order == ["response", "close event", "callback"]


def test_close_idle_connections_keeps_active_ones(make_server: Any) -> None:
    release = gevent.event.Event()

    def handler(req: Any, res: Any) -> None:
        if req.url == "/wait":
            release.wait(5)
        res.end(req.url)

    srv = make_server(handler)
    idle = connect(srv)
    idle.sendall(REQ)
    helpers.read_response(idle)
    busy = connect(srv)
    busy.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    gevent.sleep(0.1)
    srv.close_idle_connections()
    assert wait_eof(idle, 1) == b""
    release.set()
    resp = helpers.read_response(busy)
    assert resp.body == b"/wait" and resp.get("connection") == b"keep-alive"
    busy.sendall(REQ)  # the busy one is still a working keep-alive connection
    assert helpers.read_response(busy).status == 200
    idle.close()
    busy.close()


def test_close_all_connections_kills_active_ones(make_server: Any) -> None:
    def handler(req: Any, res: Any) -> None:
        gevent.sleep(5)
        res.end()

    srv = make_server(handler)
    sock = connect(srv)
    sock.sendall(REQ)
    gevent.sleep(0.1)
    start = time.monotonic()
    srv.close_all_connections()
    assert wait_eof(sock) == b""
    assert time.monotonic() - start < 0.5
    sock.close()
    helpers.settle()
    assert srv.connections == 0


def test_max_requests_per_socket(make_server: Any) -> None:
    srv = make_server(max_requests_per_socket=2)
    sock = connect(srv)
    sock.sendall(REQ)
    assert helpers.read_response(sock).get("connection") == b"keep-alive"
    sock.sendall(REQ)
    second = helpers.read_response(sock)
    assert second.status == 200 and second.get("connection") == b"close"
    assert wait_eof(sock) == b""
    sock.close()


def test_close_when_not_listening_reports_not_running(make_server: Any) -> None:
    srv = make_server(listen=False)
    got: list[Any] = []
    srv.close(lambda *args: got.append(args))
    helpers.settle()
    assert len(got) == 1 and getattr(got[0][0], "code", None) == "ERR_SERVER_NOT_RUNNING"


# ------------------------------------------------------------ upgrade/connect


def test_upgrade_hands_over_socket_and_head(make_server: Any) -> None:
    got: list[Any] = []

    def on_upgrade(req: Any, sock: Any, head: bytes) -> None:
        got.append((req.method, req.headers["upgrade"], head))
        sock.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        sock.write(b"echo:" + head)
        data = sock.recv(100)
        sock.write(b"echo:" + data)
        sock.end()

    srv = make_server(lambda req, res: pytest.fail("not a request"))
    srv.on("upgrade", on_upgrade)
    sock = connect(srv)
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nHEAD-BYTES")
    resp = helpers.read_response(sock)
    assert resp.status == 101
    assert sock.recv(100) == b"echo:HEAD-BYTES"
    sock.sendall(b"more")
    rest = wait_eof(sock)
    sock.close()
    assert rest == b"echo:more"
    assert got == [("GET", "websocket", b"HEAD-BYTES")]


def test_upgrade_without_listener_is_an_ordinary_request(make_server: Any) -> None:
    seen: list[str] = []
    srv = make_server(lambda req, res: seen.append(req.headers["upgrade"]) or res.end("plain"))
    sock = connect(srv)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    resp = helpers.read_response(sock)
    sock.close()
    assert (resp.status, resp.body) == (200, b"plain")
    assert seen == ["websocket"]


def test_connect_hands_over_socket_and_head(make_server: Any) -> None:
    got: list[Any] = []

    def on_connect(req: Any, sock: Any, head: bytes) -> None:
        got.append((req.method, req.url, head))
        sock.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        sock.end(b"tunnel:" + head + sock.recv(100))

    srv = make_server()
    srv.on("connect", on_connect)
    sock = connect(srv)
    sock.sendall(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\nFIRST")
    resp = helpers.read_response(sock, "CONNECT")
    assert resp.status == 200
    sock.sendall(b"-second")
    rest = wait_eof(sock)
    sock.close()
    assert rest == b"tunnel:FIRST-second"
    assert got == [("CONNECT", "example.org:443", b"FIRST")]


def test_connect_without_listener_closes(make_server: Any) -> None:
    calls: list[Any] = []
    srv = make_server(lambda req, res: calls.append(req) or res.end())
    sock = connect(srv)
    sock.sendall(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
    assert wait_eof(sock) == b""
    sock.close()
    assert calls == []
    get_ok(srv)


def test_detached_socket_not_touched_by_server_close(make_server: Any) -> None:
    # A handed-over socket belongs to the listener: close() must not cut it.
    ready = gevent.event.Event()

    def on_upgrade(req: Any, sock: Any, head: bytes) -> None:
        sock.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
        ready.set()
        sock.end(b"bye:" + sock.recv(10))

    srv = make_server()
    srv.on("upgrade", on_upgrade)
    sock = connect(srv)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
    assert helpers.read_response(sock).status == 101
    assert ready.wait(2)
    srv.close()
    gevent.sleep(0.1)
    sock.sendall(b"now")
    assert wait_eof(sock) == b"bye:now"
    sock.close()


# ------------------------------------------------------------------ resources


def _failing_connections(port: int, n: int) -> None:
    """``n`` connections that fail in assorted ways, a few at a time."""
    def one(i: int) -> None:
        kind = i % 5
        try:
            if kind == 0:  # RST right after connect
                helpers.rst_close(gevent.socket.create_connection(("127.0.0.1", port), timeout=3))
            elif kind == 1:  # plaintext HTTP to the TLS port
                helpers.exchange(port, REQ, tls=False, idle_timeout=1)
            elif kind == 2:  # random bytes
                helpers.exchange(port, os.urandom(600), tls=False, idle_timeout=1)
            elif kind == 3:  # a 400 over TLS
                helpers.exchange(port, b"BAD\r\n\r\n", idle_timeout=1)
            else:  # TLS done, then RST in the middle of a request head
                sock = helpers.raw_connect(port, tls=True, timeout=3)
                sock.sendall(b"GET / HTTP/1.1\r\nHo")
                helpers.rst_close(sock)
        except OSError:
            pass

    for start in range(0, n, 20):
        gevent.joinall([gevent.spawn(one, i) for i in range(start, min(n, start + 20))], timeout=10)


def test_failing_connections_leak_nothing(make_server: Any, capfd: Any) -> None:
    client_errors: list[Any] = []
    srv = make_server()
    srv.on("clientError", lambda err, sock: client_errors.append(err))
    port = port_of(srv)
    # Warm up first: gevent's resolver thread pool (used by create_connection) grows
    # to its size once, and that is not a leak.
    _failing_connections(port, 20)
    helpers.settle(0.5)
    greenlets = helpers.live_greenlets()  # gc.collect() first: then count descriptors
    fds = helpers.open_fds()
    _failing_connections(port, 200)
    close_req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert helpers.exchange(port, close_req).startswith(b"HTTP/1.1 200 ")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and (srv.connections or helpers.open_fds() > fds + 2):
        gevent.sleep(0.05)
    helpers.settle(0.3)
    assert srv.connections == 0
    # One-sided: leftovers of earlier tests may finish meanwhile and lower the counts.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and helpers.live_greenlets() > greenlets + 2:
        helpers.settle(0.1)
    assert helpers.live_greenlets() <= greenlets + 2
    assert helpers.open_fds() <= fds + 2
    assert len(client_errors) >= 120 + 12  # the garbage, plaintext and 400 ones at least
    assert "Traceback" not in capfd.readouterr().err


# ------------------------------------------------------ listeners that raise


@pytest.mark.parametrize("event", ["connection", "secureConnection", "upgrade", "connect"])
def test_raising_connection_listener_is_logged_and_contained(
    make_server: Any, event: str, caplog: Any, capfd: Any
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError(f"{event} listener exploded")

    srv = make_server()
    srv.on(event, boom)
    caplog.set_level(logging.ERROR, logger="greenhttps")
    sock: Any = None
    if event in ("connection", "secureConnection"):
        raw = gevent.socket.create_connection(("127.0.0.1", port_of(srv)), timeout=3)
        try:
            sock = helpers.wrap_client(raw, helpers.unverified_client_context(), "localhost")
            sock.sendall(REQ)
        except OSError:
            sock = None  # refused mid-handshake (wrap_client closed it): that is the point
    else:
        sock = connect(srv)
        if event == "upgrade":
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
        else:
            sock.sendall(b"CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n\r\n")
    if sock is not None:
        try:
            assert wait_eof(sock) == b""  # closed, no reply, even for a handed-over socket
        except ssl.SSLError:
            pass  # TLS 1.3: the close may surface as an SSL error on the client
        sock.close()
    helpers.settle()
    failures = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert len(failures) == 1
    assert srv.connections == 0
    srv.remove_all_listeners(event)
    get_ok(srv)
    # Logged through the logger (pytest captures it), never printed by the hub.
    assert "Traceback" not in capfd.readouterr().err


def test_handed_over_socket_write_errors_are_greenhttps_errors(make_server: Any) -> None:
    failures: list[BaseException] = []
    started = gevent.event.Event()

    def on_upgrade(req: Any, sock: Any, head: bytes) -> None:
        sock.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
        started.set()
        try:
            for _ in range(1000):  # the peer resets meanwhile
                sock.write(b"x" * 65536)
                gevent.sleep(0.001)
        except greenhttps.Error as exc:
            failures.append(exc)
        finally:
            sock.destroy()

    srv = make_server(tls=False)
    srv.on("upgrade", on_upgrade)
    sock = connect(srv, tls=False)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
    assert started.wait(2)
    helpers.rst_close(sock)
    with gevent.Timeout(3):
        while not failures:
            gevent.sleep(0.01)
    assert isinstance(failures[0], errors.NetworkError)
    assert failures[0].code in ("ECONNRESET", "EPIPE")


def test_keep_alive_initial_delay_sets_the_first_probe(make_server: Any) -> None:
    """Node's ``keepAlive`` / ``keepAliveInitialDelay`` server options: accepted
    sockets get SO_KEEPALIVE and TCP_KEEPIDLE of the delay (in seconds)."""
    seen: list[tuple[int, int]] = []

    def on_connection(sock: Any) -> None:
        seen.append((sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_KEEPALIVE),
                     sock.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_KEEPIDLE)))

    srv = make_server(keep_alive=True, keep_alive_initial_delay=7000)
    srv.on("connection", on_connection)
    get_ok(srv)
    assert seen == [(1, 7)]


# ------------------------------------------------------------ maxConnections


def eventually(predicate: Any, timeout: float = 3) -> bool:
    """Whether ``predicate()`` holds within ``timeout`` seconds (polled, yielding to the hub)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        gevent.sleep(0.01)
    return True


def test_max_connections_drops_the_next_connection_with_its_addresses(make_server: Any) -> None:
    """Node's ``server.maxConnections``: past it a new connection is closed before its
    handshake and ``'drop'`` names both ends (mirrors test/parallel/
    test-net-server-max-connections.js and test-net-server-drop-connections.js; node 20
    gives the same six keys and closes the socket with a FIN)."""
    drops: list[Any] = []
    srv = make_server(lambda req, res: res.end(b"ok"))
    srv.maxConnections = 1  # Node's spelling writes the snake_case attribute
    assert srv.max_connections == 1
    srv.on("drop", drops.append)
    first = connect(srv)
    first.sendall(REQ)
    assert helpers.read_response(first).status == 200
    second = gevent.socket.create_connection(("127.0.0.1", port_of(srv)), timeout=3)
    try:
        assert wait_eof(second) == b""  # closed by the server, nothing sent
        assert eventually(lambda: len(drops) == 1)
        local_port = second.getsockname()[1]
    finally:
        second.close()
    assert drops == [{"localAddress": "127.0.0.1", "localPort": port_of(srv), "localFamily": "IPv4",
                      "remoteAddress": "127.0.0.1", "remotePort": local_port, "remoteFamily": "IPv4"}]
    assert srv.connections == 1  # the dropped one never counted
    first.close()
    assert eventually(lambda: srv.connections == 0)
    get_ok(srv)  # a slot again: served
    assert len(drops) == 1


NODE_MAX_CONNECTIONS = r"""
const https = require('https'); const net = require('net'); const fs = require('fs');
const [key, cert] = [fs.readFileSync(process.argv[2]), fs.readFileSync(process.argv[3])];
const out = {};
const srv = https.createServer({key, cert}, (req, res) => res.end('ok'));
srv.maxConnections = 1;
srv.on('drop', (d) => { out.drop = Object.keys(d); out.family = d.remoteFamily; });
srv.listen(0, '127.0.0.1', () => {
  const first = net.connect(srv.address().port, '127.0.0.1', () => setTimeout(() => {
    const second = net.connect(srv.address().port, '127.0.0.1');
    let got = '';
    second.on('data', (d) => { got += d; });
    second.on('error', (e) => { out.error = e.code; });
    second.on('close', () => { out.second = got; console.log(JSON.stringify(out)); first.destroy(); srv.close(); });
  }, 100));
});
"""


def test_max_connections_is_nodes(make_server: Any, tmp_path: Any) -> None:
    """The same scene through node 20's https server: the second connection is closed
    with nothing sent and no error (a FIN, not a reset), and 'drop' carries the same
    six keys as ours (mirrors test/parallel/test-net-server-drop-connections.js)."""
    import json

    import trustme

    leaf = trustme.CA().issue_cert("localhost")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    script = tmp_path / "max.js"
    script.write_text(NODE_MAX_CONNECTIONS)
    node = json.loads(helpers.run_command(["node", str(script), str(key), str(cert)], timeout=15)
                      .stdout.decode().strip().splitlines()[-1])

    drops: list[Any] = []
    srv = make_server(lambda req, res: res.end(b"ok"))
    srv.max_connections = 1
    srv.on("drop", drops.append)
    first = gevent.socket.create_connection(("127.0.0.1", port_of(srv)), timeout=3)
    assert eventually(lambda: srv.connections == 1)
    second = gevent.socket.create_connection(("127.0.0.1", port_of(srv)), timeout=3)
    try:
        got = helpers.read_until_eof(second, 3)  # raises on a reset: node closes with a FIN
    finally:
        second.close()
        first.close()
    assert eventually(lambda: len(drops) == 1)
    ours = {"drop": list(drops[0]), "family": drops[0]["remoteFamily"], "second": got.decode()}
    assert ours == node == {"drop": ["localAddress", "localPort", "localFamily", "remoteAddress", "remotePort",
                                     "remoteFamily"], "family": "IPv4", "second": ""}


def test_max_connections_zero_or_none_is_no_limit(make_server: Any) -> None:
    """0 is falsy in Node 20's check too (``if (self.maxConnections && ...)``): no limit."""
    drops: list[Any] = []
    srv = make_server(lambda req, res: res.end(b"ok"))
    srv.on("drop", drops.append)
    for limit in (None, 0):
        srv.max_connections = limit
        held = [connect(srv) for _ in range(3)]
        for sock in held:
            sock.sendall(REQ)
            assert helpers.read_response(sock).status == 200
            sock.close()
    assert drops == []
