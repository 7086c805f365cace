"""WSGIHandler's fast path: a request without a body, served from its parsed head.

When a WSGIHandler is a server's only ``'request'`` listener, a request without a body
skips the IncomingMessage, the ServerResponse and the ``'request'`` event, and a
response of one block goes out in one send (``greenhttps.wsgi._FastResponse``);
anything else (a body, ``Expect``, another listener, the access log, a response that
needs the ServerResponse) takes the general path.  These tests hold the two paths to
the same bytes on the wire (a differential test over many application shapes), and
check which path each kind of request takes.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from typing import Any, Callable, Iterator

import gevent
import gevent.event
import pytest

import greenhttps._server_conn as server_conn
from greenhttps.wsgi import WSGIHandler
from helpers import IncompleteResponse, raw_connect, read_response

pytestmark = pytest.mark.timeout(30)

App = Callable[..., Any]


def get(path: str = "/", extra: bytes = b"", version: bytes = b"1.1", method: bytes = b"GET") -> bytes:
    return method + b" " + path.encode() + b" HTTP/" + version + b"\r\nHost: localhost\r\n" + extra + b"\r\n"


def _masked(raw: bytes) -> bytes:
    """The response bytes with the Date value masked (two runs may straddle a second)."""
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", raw)


def _closed(sock: socket.socket, wait: float = 1.0) -> bool:
    """Has the server closed the connection (EOF within ``wait``)?"""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def _exchange(port: int, requests: list[tuple[bytes, str]]) -> list[Any]:
    """Send ``requests`` one after the other on one connection (stopping where the
    server closes it); each response's masked bytes, then whether the connection
    ended."""
    sock = raw_connect(port, tls=True)
    seen: list[Any] = []
    try:
        for request, method in requests:
            try:
                sock.sendall(request)
                resp = read_response(sock, method)
            except (IncompleteResponse, OSError):
                seen.append("no response")  # closed after the last one (said or not)
                return seen
            seen.append(_masked(resp.raw))
            if resp.framing == "close" or resp.get("connection") == b"close":
                break
        seen.append("closed" if _closed(sock) else "open")
    finally:
        sock.close()
    return seen


def _both(make_server: Callable[..., Any], app: App, requests: list[tuple[bytes, str]],
          configure: Callable[[Any], None] = lambda server: None, **options: Any) -> tuple[list[Any], list[Any], int]:
    """The same exchange with the fast path (the handler alone) and with the general
    one (the handler called by a plain listener); and how many requests the fast
    path took."""
    fast_handler = WSGIHandler(app)
    taken = [0]
    original = fast_handler.greenhttps_fast_path
    assert original is not None

    def counted(conn: Any, wire: Any, head: Any) -> bool:
        taken[0] += 1
        return original(conn, wire, head)

    fast_handler.greenhttps_fast_path = counted
    general_handler = WSGIHandler(app)
    fast_server = make_server(fast_handler, **options)
    general_server = make_server(lambda req, res: general_handler(req, res), **options)
    configure(fast_server)
    configure(general_server)
    fast_port, general_port = fast_server.address()["port"], general_server.address()["port"]
    return _exchange(fast_port, requests), _exchange(general_port, requests), taken[0]


def _app(status: str, headers: list[tuple[str, str]], body: Any) -> App:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response(status, list(headers))
        return body() if callable(body) else body
    return app


def _one_then_empty() -> Iterator[bytes]:
    yield b"hello world\n"
    yield b""


def _two_blocks() -> Iterator[bytes]:
    yield b"hello "
    yield b"world\n"


def _raises_before_start(environ: dict[str, Any], start_response: Any) -> Any:
    raise RuntimeError("boom")


def _writes(environ: dict[str, Any], start_response: Any) -> Any:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"and returned\n"]


def _reads_input(environ: dict[str, Any], start_response: Any) -> Any:
    stream = environ["wsgi.input"]
    got = [stream.read(), stream.read(10), stream.readline(), stream.readlines(), list(stream)]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(got).encode()]


def _environ_json(environ: dict[str, Any], start_response: Any) -> Any:
    shown = {key: value for key, value in environ.items()
             if isinstance(value, (str, bool, tuple)) and key not in ("REMOTE_PORT", "SERVER_PORT")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(shown, sort_keys=True).encode()]


def _exc_info(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("late")
    except ValueError:
        import sys
        start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced\n"]


def _close_raises(environ: dict[str, Any], start_response: Any) -> Any:
    class Body(list):  # type: ignore[type-arg]
        def close(self) -> None:
            raise RuntimeError("close failed")
    start_response("200 OK", [("Content-Length", "3")])
    return Body([b"abc"])


_TEXT = [("Content-Type", "text/plain; charset=utf-8")]
APPS: dict[str, App] = {
    "one block": _app("200 OK", _TEXT, [b"hello world\n"]),
    "one block with its length": _app("200 OK", [*_TEXT, ("Content-Length", "12")], [b"hello world\n"]),
    "iterator, length (Flask's shape)": _app("200 OK", [*_TEXT, ("Content-Length", "12")], _one_then_empty),
    "iterator without a length (chunked)": _app("200 OK", _TEXT, _two_blocks),
    "two blocks with a length": _app("200 OK", [("Content-Length", "12")], _two_blocks),
    "empty list": _app("200 OK", _TEXT, []),
    "empty block": _app("200 OK", [], [b""]),
    "204 with a body": _app("204 No Content", [("Content-Length", "2")], [b"no"]),
    "304": _app("304 Not Modified", [("ETag", '"x"')], []),
    "own Date": _app("200 OK", [("Date", "Tue, 01 Jan 2030 00:00:00 GMT")], [b"dated"]),
    "Connection: close from the app": _app("200 OK", [("Connection", "close")], [b"bye"]),
    "Keep-Alive from the app": _app("200 OK", [("Keep-Alive", "timeout=1")], [b"ka"]),
    "longer than its length": _app("200 OK", [("Content-Length", "3")], [b"abcdef"]),
    "shorter than its length": _app("200 OK", [("Content-Length", "9")], [b"abc"]),
    "repeated fields and a cookie": _app("200 OK", [("Set-Cookie", "a=1"), ("X-Mid", "m"), ("Set-Cookie", "b=2")],
                                         [b"cookies"]),
    "custom reason": _app("201 Made It", [], [b"made"]),
    "unknown status": _app("299 Whatever", [], [b"odd"]),
    "bad field value": _app("200 OK", [("X-Bad", "a\r\nb")], [b"x"]),
    "error before start_response": _raises_before_start,
    "write() callable": _writes,
    "wsgi.input without a body": _reads_input,
    "environ": _environ_json,
    "exc_info before the head": _exc_info,
    "close() raises after the response": _close_raises,
}

REQUESTS: dict[str, list[tuple[bytes, str]]] = {
    "GET twice": [(get("/a?x=1"), "GET"), (get("/a?x=1"), "GET")],
    "GET, another GET": [(get("/a%20b?x=1"), "GET"), (get("/c", b"X-Other: 1\r\nCookie: a=1\r\nCookie: b=2\r\n"), "GET")],
    "HEAD then GET": [(get("/", method=b"HEAD"), "HEAD"), (get(), "GET")],
    "HTTP/1.0": [(get(version=b"1.0"), "GET")],
    "HTTP/1.0 keep-alive": [(get(extra=b"Connection: keep-alive\r\n", version=b"1.0"), "GET")],
    "Connection: close": [(get(extra=b"Connection: close\r\n"), "GET")],
    "OPTIONS *": [(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", "OPTIONS")],
}


@pytest.mark.parametrize("requests", sorted(REQUESTS))
@pytest.mark.parametrize("app", sorted(APPS))
def test_fast_and_general_paths_send_the_same_bytes(make_server: Callable[..., Any], app: str,
                                                    requests: str) -> None:
    """The differential test: every application shape, every request shape, the same
    bytes from both paths (Date masked), and the same keep-alive or close after."""
    fast, general, taken = _both(make_server, APPS[app], REQUESTS[requests])
    assert fast == general
    assert taken >= 1  # the fast path was tried (it hands over where it must)
    assert fast[0].startswith(b"HTTP/1.1 ")


def test_a_request_without_body_makes_no_request_or_response_object(
        make_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the fast path: neither IncomingMessage nor ServerResponse is made
    for a GET answered with one block; a POST (a body) makes both."""
    made: list[str] = []

    class CountedRequest(server_conn.IncomingMessage):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append("req")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(server_conn, "IncomingMessage", CountedRequest)
    app = _app("200 OK", _TEXT, [b"hello world\n"])
    port = make_server(WSGIHandler(app)).address()["port"]
    sock = raw_connect(port, tls=True)
    for _ in range(3):
        sock.sendall(get())
        assert read_response(sock).body == b"hello world\n"
    assert made == []
    sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi")
    assert read_response(sock).body == b"hello world\n"
    assert made == ["req"]
    sock.close()


def test_another_request_listener_takes_the_general_path(make_server: Callable[..., Any]) -> None:
    """With a second 'request' listener the handler is called as a listener (the
    other one sees the IncomingMessage and ServerResponse), and answers the same."""
    seen: list[Any] = []
    handler = WSGIHandler(_app("200 OK", _TEXT, [b"hello world\n"]))
    server = make_server(handler)
    server.on("request", lambda req, res: seen.append((req.method, req.url, type(res).__name__)))
    sock = raw_connect(server.address()["port"], tls=True)
    sock.sendall(get("/x"))
    resp = read_response(sock)
    sock.close()
    assert resp.status == 200 and resp.body == b"hello world\n"
    assert resp.get("connection") == b"keep-alive"
    assert seen == [("GET", "/x", "ServerResponse")]


def test_requests_that_take_the_general_path(make_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A body, ``Expect: 100-continue`` and the access log each take the general path,
    and each still works."""
    made: list[str] = []

    class CountedRequest(server_conn.IncomingMessage):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(args[0].method)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(server_conn, "IncomingMessage", CountedRequest)

    def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["wsgi.input"].read() or b"-"]

    port = make_server(WSGIHandler(echo)).address()["port"]
    sock = raw_connect(port, tls=True)
    sock.sendall(b"PUT / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert read_response(sock).body == b"ok"
    sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert read_response(sock).status == 100
    sock.sendall(b"abc")
    assert read_response(sock).body == b"abc"
    sock.close()
    assert made == ["PUT", "POST"]

    made.clear()
    caplog.set_level(logging.INFO, logger="greenhttps.access")
    logged = make_server(WSGIHandler(echo), access_log=True).address()["port"]
    sock = raw_connect(logged, tls=True)
    sock.sendall(get("/logged"))
    assert read_response(sock).body == b"-"
    sock.close()
    assert made == ["GET"]  # the access log's response class reads the response
    lines = [r.getMessage() for r in caplog.records if r.name == "greenhttps.access"]
    assert len(lines) == 1 and '"GET /logged HTTP/1.1" 200 1' in lines[0]


def test_subclasses_that_change_serving_have_no_fast_path() -> None:
    """A subclass that overrides how a request is served (the gunicorn worker's
    counts and logs each one) is called as a listener, never through the fast path."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []

    class Called(WSGIHandler):
        def __call__(self, req: Any, res: Any) -> None:
            super().__call__(req, res)

    class Environ(WSGIHandler):
        def make_environ(self, req: Any) -> dict[str, Any]:
            return super().make_environ(req)

    class Plain(WSGIHandler):
        pass

    class Rejecting(WSGIHandler):  # the public hook a subclass may override (review)
        def environ_or_reject(self, req: Any, res: Any) -> Any:
            return super().environ_or_reject(req, res)

    assert WSGIHandler(app).greenhttps_fast_path is not None
    assert Plain(app).greenhttps_fast_path is not None
    assert Called(app).greenhttps_fast_path is None
    assert Environ(app).greenhttps_fast_path is None
    assert Rejecting(app).greenhttps_fast_path is None


def test_a_server_that_overrides_emit_sees_every_request(tls_options: dict[str, bytes]) -> None:
    """A Server subclass (instrumentation) that overrides ``emit()`` sees 'request'
    for a GET too: the fast path is not taken when emit is not the stock one (review)."""
    import greenhttps

    seen: list[str] = []

    class Instrumented(type(greenhttps.create_server(tls_options))):  # type: ignore[misc]
        def emit(self, event: str, *args: Any) -> bool:
            if event == "request":
                seen.append(args[0].url)
            return super().emit(event, *args)

    server = Instrumented(tls_options, WSGIHandler(_app("200 OK", _TEXT, [b"hello world\n"])))
    server.listen(0, "127.0.0.1")
    try:
        sock = raw_connect(server.address()["port"], tls=True)
        for path in ("/a", "/b"):
            sock.sendall(get(path))
            assert read_response(sock).body == b"hello world\n"
        sock.close()
    finally:
        server.close()
        server.close_all_connections()
    assert seen == ["/a", "/b"]


def _gunicorn_worker(access_log: bool) -> Any:
    """What greenhttps.gunicorn._Handler reads of its worker."""
    from types import SimpleNamespace
    logged: list[str] = []
    log = SimpleNamespace(access_log_enabled=access_log, info=logged.append,
                          debug=lambda msg, *args: logged.append(msg % args))
    worker = SimpleNamespace(nr=0, max_requests=3, alive=True, log=log, logged=logged,
                             cfg=SimpleNamespace(limit_request_line=60, limit_request_field_size=40))
    worker.stop = lambda: setattr(worker, "alive", False)
    return worker


@pytest.mark.parametrize("path", ["fast", "general"])
def test_gunicorn_handler_counts_and_limits_on_either_path(make_server: Callable[..., Any], path: str) -> None:
    """The gunicorn worker's handler has a fast path (none with the access log, which
    reads the ServerResponse) that counts requests for ``max_requests`` and refuses
    gunicorn's line (414) and field (431) limits as its listener call does."""
    pytest.importorskip("gunicorn")
    from greenhttps.gunicorn import _Handler

    assert _Handler(_gunicorn_worker(True), _environ_json).greenhttps_fast_path is None
    worker = _gunicorn_worker(False)
    handler = _Handler(worker, _app("200 OK", [], [b"ok"]))
    assert handler.greenhttps_fast_path is not None
    server = make_server(handler if path == "fast" else (lambda req, res: handler(req, res)))
    port = server.address()["port"]
    answers = []
    for request in (get("/" + "a" * 60), get(extra=b"X-Long: " + b"v" * 40 + b"\r\n"), get()):
        sock = raw_connect(port, tls=True)
        sock.sendall(request)
        resp = read_response(sock)
        answers.append((resp.status, resp.get("connection"), resp.body))
        sock.close()
    assert answers == [(414, b"close", b""), (431, b"close", b""), (200, b"keep-alive", b"ok")]
    assert worker.nr == 3 and worker.alive is False  # max_requests reached: the worker restarts
    assert "request from 127.0.0.1 refused: 414" in worker.logged


def test_each_request_gets_its_own_environ(make_server: Callable[..., Any]) -> None:
    """The per-connection environ cache hands out copies: what an application changes
    in one request's environ is not in the next one's, and a different request on
    the same connection gets its own keys."""
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        environ["PATH_INFO"] = "/changed"
        environ["x.mark"] = True
        environ.pop("HTTP_HOST", None)
        start_response("200 OK", [])
        return [b"ok"]

    sock = raw_connect(make_server(WSGIHandler(app)).address()["port"], tls=True)
    accept = b"Accept: x\r\n"
    for request in (get("/a?q=1"), get("/a?q=1"), get("/b", accept), get("/c%20d?r", accept),
                    get("/c%20d?r", b"Accept: y\r\n"), get("/e")):
        sock.sendall(request)
        assert read_response(sock).body == b"ok"
    sock.close()
    first, second, third, fourth, fifth, sixth = seen
    assert first == second and first is not second
    assert (first["PATH_INFO"], first["QUERY_STRING"], first["HTTP_HOST"]) == ("/a", "q=1", "localhost")
    assert "x.mark" not in second
    assert (third["PATH_INFO"], third["QUERY_STRING"], third["HTTP_ACCEPT"]) == ("/b", "", "x")
    # The same fields, another target: the request line's keys are this request's.
    assert (fourth["PATH_INFO"], fourth["QUERY_STRING"], fourth["RAW_URI"]) == ("/c d", "r", "/c%20d?r")
    assert (fourth["HTTP_ACCEPT"], fourth["HTTP_HOST"]) == ("x", "localhost")
    assert "x.mark" not in fourth
    assert (fifth["PATH_INFO"], fifth["HTTP_ACCEPT"]) == ("/c d", "y")
    assert (sixth["PATH_INFO"], sixth["HTTP_HOST"], "HTTP_ACCEPT" in sixth) == ("/e", "localhost", False)


@pytest.mark.parametrize("path", ["fast", "general"])
def test_close_during_a_request_sends_connection_close(make_server: Callable[..., Any], path: str) -> None:
    """A server closed while a keep-alive request is in flight lets it finish and
    says ``Connection: close`` on its response, on either path (gunicorn #2303)."""
    started, release = gevent.event.Event(), gevent.event.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        started.set()
        release.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"finished"]

    handler = WSGIHandler(app)
    server = make_server(handler if path == "fast" else (lambda req, res: handler(req, res)))
    sock = raw_connect(server.address()["port"], tls=True)
    sock.sendall(get())
    assert started.wait(5)
    server.close()
    release.set()
    resp = read_response(sock)
    assert resp.status == 200 and resp.body == b"finished"
    assert resp.get("connection") == b"close"
    assert _closed(sock)
    sock.close()


def test_peer_gone_while_the_application_runs(make_server: Callable[..., Any]) -> None:
    """A client that goes away while the application runs (fast path, no
    ServerResponse yet): the send fails quietly, close() is called, and the server
    serves the next connection."""
    started, release = gevent.event.Event(), gevent.event.Event()
    closed: list[bool] = []

    class Body(list):  # type: ignore[type-arg]
        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/slow":
            started.set()
            release.wait(5)
        start_response("200 OK", [])
        return Body([b"late"])

    port = make_server(WSGIHandler(app)).address()["port"]
    sock = raw_connect(port, tls=True)
    sock.sendall(get("/slow"))
    assert started.wait(5)
    sock.close()
    gevent.sleep(0.2)  # the watch sees the close
    release.set()
    gevent.sleep(0.2)
    assert closed == [True]
    sock = raw_connect(port, tls=True)
    sock.sendall(get("/next"))
    assert read_response(sock).body == b"late"
    sock.close()


def test_send_date_false_on_the_fast_path(make_server: Callable[..., Any]) -> None:
    """``send_date=False`` holds on the fast path as on the general one."""
    fast, general, taken = _both(make_server, _app("200 OK", [], [b"x"]), [(get(), "GET")],
                                 configure=lambda server: setattr(server, "send_date", False))
    assert fast == general and taken == 1
    assert b"\r\nDate:" not in fast[0]


def test_keep_alive_timeout_value_on_the_fast_path(make_server: Callable[..., Any]) -> None:
    """The Keep-Alive field follows the server's keep_alive_timeout (and its change)."""
    handler = WSGIHandler(_app("200 OK", [], [b"x"]))
    server = make_server(handler, keep_alive_timeout=7000)
    sock = raw_connect(server.address()["port"], tls=True)
    sock.sendall(get())
    assert read_response(sock).get("keep-alive") == b"timeout=7"
    server.keep_alive_timeout = 9000
    sock.sendall(get())
    assert read_response(sock).get("keep-alive") == b"timeout=9"
    server.keep_alive_timeout = 500
    sock.sendall(get())
    resp = read_response(sock)
    assert resp.get("keep-alive") is None and resp.get("connection") == b"keep-alive"
    sock.close()


def test_max_requests_per_socket_takes_the_general_path(make_server: Callable[..., Any]) -> None:
    """With max_requests_per_socket the general path counts and closes (B-97)."""
    fast, general, taken = _both(make_server, _app("200 OK", [], [b"x"]),
                                 [(get(), "GET"), (get(), "GET"), (get(), "GET")], max_requests_per_socket=2)
    assert fast == general and taken == 0
    assert len(fast) == 3 and fast[-1] == "closed"
    assert b"Connection: close" in fast[1]

