"""greenhttps.wsgi.WSGIHandler: PEP 3333 applications served over real TLS.

The peers are raw TLS sockets with exact bytes read back by the hand-written parser in
helpers.py, and http.client / curl in subprocesses for the Flask and Falcon apps, so
the adapter and the client cannot agree on a shared mistake.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import time
import warnings
from typing import Any, Callable, Iterator
from wsgiref.validate import WSGIWarning, validator

import gevent
import gevent.event
import pytest

import greenhttps
from greenhttps.wsgi import WSGIHandler
from helpers import has_ipv6 as helpers_has_ipv6
from helpers import raw_connect, read_response, read_until_eof, rst_close, run_python

pytestmark = pytest.mark.timeout(20)

App = Callable[..., Any]


@pytest.fixture
def wsgi(serve: Callable[..., int]) -> Callable[..., int]:
    """``wsgi(app, **server_options) -> port`` of a TLS server running ``app``."""
    return lambda app, **opts: serve(WSGIHandler(app), **opts)


def roundtrip(port: int, request: bytes, method: str = "GET") -> Any:
    sock = raw_connect(port, tls=True)
    try:
        sock.sendall(request)
        return read_response(sock, method)
    finally:
        sock.close()


def get(path: str = "/", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + extra + b"\r\n"


def environ_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    shown = {k: v for k, v in environ.items() if isinstance(v, (str, bool, tuple))}
    shown["body"] = body.decode("latin-1")
    shown["file_wrapper"] = environ["wsgi.file_wrapper"] is not None
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(shown).encode()]


# ----------------------------------------------------------------- environ


def test_environ_is_pep3333(wsgi: Callable[..., int]) -> None:
    port = wsgi(environ_app)
    sock = raw_connect(port, tls=True)
    client_port = sock.getsockname()[1]
    sock.sendall(
        b"POST /caf%C3%A9/a%2Fb%20c?q=a%20b&x=1 HTTP/1.1\r\nHost: example.org:8443\r\n"
        b"X-Multi: one\r\nX-Multi: two\r\nX_Spoof: evil\r\nX-Spoof: real\r\n"
        b"Cookie: a=1\r\nCookie: b=2\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    )
    resp = read_response(sock)
    sock.close()
    assert resp.status == 200
    env = json.loads(resp.body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    # Percent-decoded, bytes carried in a latin-1 str (PEP 3333), %2F decoded too.
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9/a/b c"
    assert env["QUERY_STRING"] == "q=a%20b&x=1"
    assert env["RAW_URI"] == "/caf%C3%A9/a%2Fb%20c?q=a%20b&x=1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["HTTP_HOST"] == "example.org:8443"
    assert env["HTTP_X_MULTI"] == "one,two"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_SPOOF"] == "real"  # the underscore spelling was dropped
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["body"] == "hello"
    assert env["wsgi.url_scheme"] == "https"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["file_wrapper"] is True


def test_environ_without_body_headers(wsgi: Callable[..., int]) -> None:
    env = json.loads(roundtrip(wsgi(environ_app), get("/plain")).body)
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env
    assert env["QUERY_STRING"] == ""
    assert env["PATH_INFO"] == "/plain"


def test_http_server_says_http(make_server: Callable[..., Any]) -> None:
    port = make_server(WSGIHandler(environ_app), tls=False).address()["port"]
    sock = raw_connect(port)
    sock.sendall(get())
    env = json.loads(read_response(sock).body)
    sock.close()
    assert env["wsgi.url_scheme"] == "http"


# ------------------------------------------------------ behind a proxy


def _forwarded_env(port: int, headers: bytes, tls: bool = True) -> dict[str, Any]:
    sock = raw_connect(port, tls=tls)
    try:
        sock.sendall(get("/", headers))
        resp = read_response(sock)
    finally:
        sock.close()
    assert resp.status == 200, resp
    return json.loads(resp.body)  # type: ignore[no-any-return]


FORWARDED = b"X-Forwarded-For: 198.51.100.9\r\nX-Forwarded-Proto: http\r\n"


def test_forwarded_headers_are_not_believed_by_default(wsgi: Callable[..., int]) -> None:
    """Opt-in: without ``forwarded_allow_ips`` the headers are only HTTP_* keys."""
    env = _forwarded_env(wsgi(environ_app), FORWARDED)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"] != ""
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.9" and env["HTTP_X_FORWARDED_PROTO"] == "http"


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(serve: Callable[..., int]) -> None:
    port = serve(WSGIHandler(environ_app, forwarded_allow_ips="10.0.0.0/8, 192.0.2.1"))
    env = _forwarded_env(port, FORWARDED)
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "https")


def test_forwarded_headers_from_a_trusted_proxy(serve: Callable[..., int], make_server: Callable[..., Any]) -> None:
    """As gunicorn's ``forwarded_allow_ips`` and ``secure_scheme_headers``; the client
    is the rightmost X-Forwarded-For hop that is not a trusted proxy."""
    port = serve(WSGIHandler(environ_app, forwarded_allow_ips="127.0.0.1,10.0.0.0/8"))
    env = _forwarded_env(port, FORWARDED)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"], env["wsgi.url_scheme"]) == ("198.51.100.9", "", "http")
    # A chain: the client's own claim on the left is not believed; trusted hops skipped.
    env = _forwarded_env(port, b"X-Forwarded-For: 6.6.6.6, 198.51.100.9\r\nX-Forwarded-For: 10.1.2.3\r\n")
    assert env["REMOTE_ADDR"] == "198.51.100.9"
    env = _forwarded_env(port, b"X-Forwarded-For: 10.0.0.7, 10.0.0.8\r\n")  # all trusted: the leftmost
    assert env["REMOTE_ADDR"] == "10.0.0.7"
    env = _forwarded_env(port, b"X-Forwarded-For: 2001:db8::5\r\n")
    assert env["REMOTE_ADDR"] == "2001:db8::5"
    env = _forwarded_env(port, b"X-Forwarded-For: ::ffff:198.51.100.3\r\n")
    assert env["REMOTE_ADDR"] == "198.51.100.3"
    env = _forwarded_env(port, b"X-Forwarded-For: unknown\r\n")  # no address: the peer's stands
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"] != ""
    assert _forwarded_env(port, b"X-Forwarded-Ssl: on\r\n")["wsgi.url_scheme"] == "https"
    assert _forwarded_env(port, b"X-Forwarded-Protocol: ssl\r\n")["wsgi.url_scheme"] == "https"
    assert _forwarded_env(port, b"X-Forwarded-Proto: HTTPS\r\n")["wsgi.url_scheme"] == "http"  # gunicorn: exact
    # Plain HTTP behind a TLS-terminating proxy: the proxy's word makes it https.
    plain = make_server(WSGIHandler(environ_app, forwarded_allow_ips="*"), tls=False).address()["port"]
    env = _forwarded_env(plain, b"X-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.1\r\n", tls=False)
    assert (env["wsgi.url_scheme"], env["REMOTE_ADDR"]) == ("https", "203.0.113.1")


def test_scheme_headers_that_disagree_get_400(serve: Callable[..., int]) -> None:
    """gunicorn's InvalidSchemeHeaders: the application is not called."""
    called: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        called.append(environ)
        start_response("200 OK", [])
        return [b"no"]

    port = serve(WSGIHandler(app, forwarded_allow_ips="127.0.0.1"))
    resp = roundtrip(port, get("/", b"X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n"))
    assert resp.status == 400 and resp.get("connection") == b"close"
    assert called == []
    # Agreeing ones are fine.
    resp = roundtrip(port, get("/", b"X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\n"))
    assert resp.status == 200 and len(called) == 1 and called[0]["wsgi.url_scheme"] == "https"


def test_own_secure_scheme_headers(serve: Callable[..., int]) -> None:
    port = serve(WSGIHandler(environ_app, forwarded_allow_ips="127.0.0.1", secure_scheme_headers={"X-Scheme": "https"}))
    assert _forwarded_env(port, b"X-Scheme: http\r\n")["wsgi.url_scheme"] == "http"
    assert _forwarded_env(port, b"X-Forwarded-Proto: http\r\n")["wsgi.url_scheme"] == "https"  # not one of them now


def test_ipv4_mapped_peer_is_remote_addr_in_ipv4(make_server: Callable[..., Any]) -> None:
    """A dual-stack listener sees ``::ffff:127.0.0.1`` (so does Node's remoteAddress);
    REMOTE_ADDR says ``127.0.0.1``, and a trusted-proxy list of IPv4 entries matches."""
    if not helpers_has_ipv6():
        pytest.skip("IPv6 unavailable")
    srv = make_server(WSGIHandler(environ_app, forwarded_allow_ips="127.0.0.1"), listen=False)
    seen: list[str] = []
    srv.on("connection", lambda sock: seen.append(sock.remote_address))
    srv.listen(0, "::")
    port = srv.address()["port"]
    env = _forwarded_env(port, b"")
    assert seen == ["::ffff:127.0.0.1"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert _forwarded_env(port, b"X-Forwarded-For: 198.51.100.4\r\n")["REMOTE_ADDR"] == "198.51.100.4"


def test_extra_environ_and_server_name(serve: Callable[..., int]) -> None:
    handler = WSGIHandler(environ_app, environ={"SCRIPT_NAME": "/mount", "wsgi.multiprocess": True},
                          server_name="www.example.org")
    port = serve(handler)
    env = json.loads(roundtrip(port, get()).body)
    assert env["SCRIPT_NAME"] == "/mount"
    assert env["wsgi.multiprocess"] is True
    assert env["SERVER_NAME"] == "www.example.org"
    assert env["SERVER_PORT"] == str(port)


def test_chunked_upload_has_no_content_length(wsgi: Callable[..., int]) -> None:
    resp = roundtrip(wsgi(environ_app), b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    env = json.loads(resp.body)
    assert env["body"] == "abcde"
    assert "CONTENT_LENGTH" not in env


# ---------------------------------------------------------- wsgiref.validate


def _validated_apps() -> dict[str, App]:
    def simple(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    def reader(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        inp = environ["wsgi.input"]
        first = inp.readline()
        rest = inp.readlines()
        tail = inp.read(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield first
        yield b"".join(rest)
        yield tail

    def streamer(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(3):
            yield b"part%d\n" % i

    def writer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("201 Created", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned"]

    def iterate_input(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        lines = list(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d lines" % len(lines)]

    return {"simple": simple, "reader": reader, "streamer": streamer, "writer": writer,
            "iterate_input": iterate_input}


@pytest.mark.parametrize(
    ("name", "request_bytes", "method", "status", "body"),
    [
        ("simple", get(), "GET", 200, b"ok"),
        ("simple", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD", 200, b""),
        ("reader", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
         b"l1\nl2\nl3\nxyz", "POST", 200, b"l1\nl2\nl3\nxyz"),
        ("streamer", get(), "GET", 200, b"part0\npart1\npart2\n"),
        ("writer", get(), "GET", 201, b"written and returned"),
        ("iterate_input", b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n"
         b"a\nb\nc\n", "PUT", 200, b"3 lines"),
    ],
)
def test_wsgiref_validate_finds_nothing(
    wsgi: Callable[..., int], caplog: pytest.LogCaptureFixture,
    name: str, request_bytes: bytes, method: str, status: int, body: bytes,
) -> None:
    port = wsgi(validator(_validated_apps()[name]))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR, logger="greenhttps"):
        warnings.simplefilter("always", WSGIWarning)
        resp = roundtrip(port, request_bytes, method)
        gevent.sleep(0.05)
    assert [str(w.message) for w in caught if issubclass(w.category, WSGIWarning)] == []
    assert caplog.records == []  # an AssertionError from the validator would be logged
    assert resp.status == status
    assert resp.body == body


# --------------------------------------------------------------- framing


def test_one_block_gets_content_length(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello world"]

    resp = roundtrip(wsgi(app), get())
    assert resp.framing == "content-length"
    assert resp.get("content-length") == b"11"
    assert resp.body == b"hello world"


def test_generator_without_length_is_chunked_and_blocks_are_not_merged(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        yield b"one"
        yield b""
        yield b"two"

    resp = roundtrip(wsgi(app), get())
    assert resp.framing == "chunked"
    assert resp.chunks == [b"one", b"two"]
    assert resp.get_all("set-cookie") == [b"a=1", b"b=2"]


def test_application_content_length_is_respected(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "6")])
        yield b"abc"
        yield b"def"

    resp = roundtrip(wsgi(app), get())
    assert resp.framing == "content-length"
    assert resp.body == b"abcdef"


def test_extra_bytes_beyond_content_length_are_not_sent(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        return [b"abc", b"TRAILING GARBAGE"]

    port = wsgi(app)
    sock = raw_connect(port, tls=True)
    sock.sendall(get() + get())  # keep-alive: the second response must parse cleanly
    first = read_response(sock)
    second = read_response(sock)
    sock.close()
    assert (first.body, second.body) == (b"abc", b"abc")


def test_short_body_aborts_the_connection(wsgi: Callable[..., int], caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "100")])
        yield b"only this"

    port = wsgi(app)
    sock = raw_connect(port, tls=True)
    sock.sendall(get())
    data = read_until_eof(sock, reset_ok=True)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.endswith(b"only this")  # and then the connection closed: truncated
    logged = lambda: any(r.exc_info and "fewer than its Content-Length" in str(r.exc_info[1])  # noqa: E731
                         for r in caplog.records)
    deadline = time.monotonic() + 2  # the server logs after it closed the connection
    while not logged() and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert logged()


def test_head_sends_no_body_and_keeps_the_connection(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = b"twelve bytes"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body] if environ["REQUEST_METHOD"] != "HEAD" else []

    port = wsgi(app)
    sock = raw_connect(port, tls=True)
    sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = read_response(sock, "HEAD")
    sock.sendall(get())
    after = read_response(sock)
    sock.close()
    assert head.framing == "none" and head.body == b""
    assert head.get("content-length") == b"12"
    assert after.body == b"twelve bytes"


def test_head_of_a_generator(wsgi: Callable[..., int]) -> None:
    closed = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x" * 100

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    port = wsgi(app)
    sock = raw_connect(port, tls=True)
    sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + get())
    head = read_response(sock, "HEAD")
    after = read_response(sock)
    sock.close()
    assert head.body == b"" and head.status == 200
    assert after.body == b"x" * 100
    assert closed == [True, True]


def test_http10_client_gets_close_delimited_body(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield environ["SERVER_PROTOCOL"].encode()
        yield b"!"

    sock = raw_connect(wsgi(app), tls=True)
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = read_until_eof(sock, reset_ok=True)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert data.endswith(b"\r\n\r\nHTTP/1.0!")


def test_file_wrapper(wsgi: Callable[..., int], tmp_path: Any) -> None:
    payload = bytes(range(256)) * 1000
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    files: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        f = open(path, "rb")
        files.append(f)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(payload)))])
        return environ["wsgi.file_wrapper"](f, 4096)

    resp = roundtrip(wsgi(app), get())
    assert resp.body == payload
    assert resp.framing == "content-length"
    assert files[0].closed  # the wrapper's close() closed the file


def test_expect_100_continue_on_first_read(wsgi: Callable[..., int]) -> None:
    sock = raw_connect(wsgi(environ_app), tls=True)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = read_response(sock)
    assert interim.status == 100
    sock.sendall(b"data")
    final = read_response(sock)
    sock.close()
    assert json.loads(final.body)["body"] == "data"


# -------------------------------------------------- streaming the request body


def test_upload_is_streamed_not_buffered(wsgi: Callable[..., int]) -> None:
    """The application sees the first bytes while the client is still sending, and
    each read returns at most what was asked for."""
    first_seen = gevent.event.Event()
    sizes: list[int] = []
    total = 8 * 1024 * 1024

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inp = environ["wsgi.input"]
        received = 0
        while True:
            piece = inp.read(65536)
            if not piece:
                break
            sizes.append(len(piece))
            received += len(piece)
            first_seen.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(received).encode()]

    sock = raw_connect(wsgi(app), tls=True)
    sock.sendall(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
    block = b"z" * 65536
    sock.sendall(block * 4)
    # The rest is not sent until the application has read the start of it.
    assert first_seen.wait(5), "the application saw nothing before the upload ended"
    for _ in range(total // len(block) - 4):
        sock.sendall(block)
    resp = read_response(sock)
    sock.close()
    assert resp.body == str(total).encode()
    assert max(sizes) <= 65536


def test_readline_with_limit_and_read_mix(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inp = environ["wsgi.input"]
        parts = [inp.readline(3), inp.readline(), inp.read(2), inp.readline(-1), inp.read(), inp.readline()]
        start_response("200 OK", [])
        return [json.dumps([p.decode() for p in parts]).encode()]

    resp = roundtrip(wsgi(app), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\nabcdef\nghij\nklmno")
    assert json.loads(resp.body) == ["abc", "def\n", "gh", "ij\n", "klmno", ""]


# ------------------------------------------------- response back-pressure


def test_response_is_streamed_with_back_pressure(wsgi: Callable[..., int]) -> None:
    produced = [0]
    block = b"b" * 65536
    count = 1024  # 64 MiB: far more than the socket buffers hold

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", str(len(block) * count))])
        for _ in range(count):
            produced[0] += 1
            yield block

    sock = raw_connect(wsgi(app), tls=True)
    sock.sendall(get())
    gevent.sleep(0.5)  # the client reads nothing meanwhile
    stalled_at = produced[0]
    assert 0 < stalled_at < count // 2, f"the app ran ahead of the client: {stalled_at} blocks"
    resp = read_response(sock, timeout=15)
    sock.close()
    assert len(resp.body) == len(block) * count
    assert produced[0] == count


# ------------------------------------------------------ close() and errors


class Tracked:
    """A response iterable that records close() and can stall or fail."""

    def __init__(self, blocks: int | None = None, fail_after: int | None = None) -> None:
        self.blocks, self.fail_after = blocks, fail_after
        self.closed = gevent.event.Event()

    def __iter__(self) -> Iterator[bytes]:
        n = 0
        while self.blocks is None or n < self.blocks:
            if self.fail_after is not None and n >= self.fail_after:
                raise RuntimeError("app failed mid-body")
            n += 1
            yield b"x" * 65536

    def close(self) -> None:
        self.closed.set()


def test_close_called_when_client_disconnects(wsgi: Callable[..., int]) -> None:
    body = Tracked(blocks=None)  # endless

    def app(environ: dict[str, Any], start_response: Any) -> Tracked:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return body

    port = wsgi(app)
    sock = raw_connect(port, tls=True)
    sock.sendall(get())
    assert sock.recv(1000).startswith(b"HTTP/1.1 200")
    rst_close(sock)
    assert body.closed.wait(5), "close() was not called after the client went away"
    again = raw_connect(port, tls=True)
    again.sendall(get())
    assert again.recv(1000).startswith(b"HTTP/1.1 200")
    again.close()


def test_error_before_start_response_is_500_and_server_keeps_serving(
    wsgi: Callable[..., int], caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise ZeroDivisionError("boom")
        start_response("200 OK", [])
        return [b"fine"]

    port = wsgi(app)
    with caplog.at_level(logging.ERROR, logger="greenhttps"):
        resp = roundtrip(port, get("/boom"))
    assert resp.status == 500
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    assert roundtrip(port, get("/ok")).body == b"fine"


def test_error_mid_body_aborts_and_calls_close(wsgi: Callable[..., int], caplog: pytest.LogCaptureFixture) -> None:
    bodies: list[Tracked] = []

    def app(environ: dict[str, Any], start_response: Any) -> Tracked:
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(Tracked(blocks=10, fail_after=2))
        return bodies[-1]

    port = wsgi(app)
    sock = raw_connect(port, tls=True)
    sock.sendall(get())
    data = read_until_eof(sock, reset_ok=True)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert not data.endswith(b"0\r\n\r\n")  # no last chunk: the client knows it is cut
    assert bodies[0].closed.is_set()
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)
    sock = raw_connect(port, tls=True)
    sock.sendall(get())
    assert sock.recv(100).startswith(b"HTTP/1.1 200")  # still serving
    sock.close()


def test_exc_info_before_head_replaces_the_response(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Dropped", "yes")])
        try:
            raise ValueError("render failed")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]

    resp = roundtrip(wsgi(app), get())
    assert resp.status == 503
    assert resp.reason == b"Service Unavailable"
    assert resp.get("x-dropped") is None
    assert resp.body == b"sorry"


def test_exc_info_after_head_reraises_the_original(
    wsgi: Callable[..., int], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial ")
        try:
            raise KeyError("original")
        except KeyError:
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())
            except KeyError as exc:
                seen.append(exc)
                raise
        yield b"never"

    port = wsgi(app)
    sock = raw_connect(port, tls=True)
    sock.sendall(get())
    data = read_until_eof(sock, reset_ok=True)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert b"partial" in data and b"never" not in data
    assert len(seen) == 1 and seen[0].args == ("original",)
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


def test_start_response_twice_without_exc_info_is_an_error(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"x"]

    assert roundtrip(wsgi(app), get()).status == 500


def test_app_raising_calls_close_of_a_returned_iterable(wsgi: Callable[..., int]) -> None:
    body = Tracked(blocks=1)

    def app(environ: dict[str, Any], start_response: Any) -> Tracked:
        return body  # never calls start_response: the server must still close it

    assert roundtrip(wsgi(app), get()).status == 500
    assert body.closed.is_set()


# ------------------------------------------------- real frameworks, real clients

HTTP_CLIENT = """
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
conn = http.client.HTTPSConnection("localhost", int(sys.argv[2]), context=ctx, timeout=10)
out = []
for method, path, body, headers in json.loads(sys.argv[3]):
    conn.request(method, path, body=body.encode() if body is not None else None, headers=headers)
    r = conn.getresponse()
    out.append([r.status, r.getheader("Content-Type"), r.read().decode("latin-1")])
print(json.dumps(out))
"""


def http_client(ca_file: str, port: int, requests: list[Any]) -> list[Any]:
    proc = run_python(f"import sys; sys.argv[1:] = {[ca_file, str(port), json.dumps(requests)]!r}\n"
                      + textwrap.dedent(HTTP_CLIENT), timeout=15)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_flask_app(wsgi: Callable[..., int], ca_file: str, tmp_path: Any) -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("greenhttps_test")
    (tmp_path / "static.txt").write_bytes(b"static file\n" * 1000)

    @app.route("/hello/<name>")
    def hello(name: str) -> Any:
        return {"hello": name, "q": flask.request.args.get("q"), "scheme": flask.request.scheme,
                "host": flask.request.host, "url": flask.request.url}

    @app.route("/echo", methods=["POST"])
    def echo() -> Any:
        return {"json": flask.request.get_json(), "length": flask.request.content_length}

    @app.route("/stream")
    def stream() -> Any:
        return flask.Response((f"line {i}\n" for i in range(5)), mimetype="text/plain")

    @app.route("/file")
    def file() -> Any:
        return flask.send_file(tmp_path / "static.txt")

    @app.route("/fail")
    def fail() -> Any:
        raise RuntimeError("flask view failed")

    port = wsgi(app.wsgi_app)
    results = http_client(ca_file, port, [
        ["GET", "/hello/w%C3%B6rld?q=1+2", None, {}],
        ["POST", "/echo", json.dumps({"a": [1, 2]}), {"Content-Type": "application/json"}],
        ["GET", "/stream", None, {}],
        ["GET", "/file", None, {}],
        ["GET", "/missing", None, {}],
        ["GET", "/fail", None, {}],
        ["HEAD", "/file", None, {}],
        ["GET", "/hello/again", None, {}],
    ])
    status = [r[0] for r in results]
    assert status == [200, 200, 200, 200, 404, 500, 200, 200]
    greeting = json.loads(results[0][2])
    assert greeting == {"hello": "wörld", "q": "1 2", "scheme": "https", "host": f"localhost:{port}",
                     "url": f"https://localhost:{port}/hello/wörld?q=1+2"}  # werkzeug gives an IRI
    assert json.loads(results[1][2]) == {"json": {"a": [1, 2]}, "length": 13}
    assert results[2][2] == "".join(f"line {i}\n" for i in range(5))
    assert results[3][2] == "static file\n" * 1000
    assert results[6][2] == ""


def test_falcon_app(wsgi: Callable[..., int], ca_file: str) -> None:
    falcon = pytest.importorskip("falcon")

    class Things:
        def on_get(self, req: Any, resp: Any, thing_id: str) -> None:
            resp.media = {"id": thing_id, "q": req.get_param("q"), "secure": req.scheme,
                          "forwarded_host": req.forwarded_host}

        def on_post(self, req: Any, resp: Any, thing_id: str) -> None:
            data = req.bounded_stream.read()
            resp.status = falcon.HTTP_201
            resp.content_type = falcon.MEDIA_TEXT
            resp.text = f"{thing_id}:{len(data)}:{data[:5].decode()}"

    app = falcon.App()
    app.add_route("/things/{thing_id}", Things())
    port = wsgi(app)
    results = http_client(ca_file, port, [
        ["GET", "/things/42?q=x", None, {}],
        ["POST", "/things/7", "hello" * 20000, {"Content-Type": "text/plain"}],
        ["GET", "/nothing", None, {}],
    ])
    assert [r[0] for r in results] == [200, 201, 404]
    assert json.loads(results[0][2]) == {"id": "42", "q": "x", "secure": "https", "forwarded_host": f"localhost:{port}"}
    assert results[1][2] == "7:100000:hello"


@pytest.mark.needs_curl
def test_flask_with_curl(wsgi: Callable[..., int], ca_file: str) -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("greenhttps_curl")

    @app.route("/upload", methods=["POST"])
    def upload() -> Any:
        f = flask.request.files["doc"]
        return {"name": f.filename, "size": len(f.read()), "field": flask.request.form["field"]}

    port = wsgi(app)
    from helpers import run_command

    proc = run_command(["curl", "-sS", "--cacert", ca_file, "-F", "field=value", "-F", "doc=@-;filename=a.bin",
                        f"https://localhost:{port}/upload"], input=b"\x00" * 300000, timeout=15)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"name": "a.bin", "size": 300000, "field": "value"}


def test_public_names() -> None:
    import greenhttps.wsgi as mod

    assert set(mod.__all__) == {"WSGIHandler", "FileWrapper", "Input", "SECURE_SCHEME_HEADERS"}
    assert greenhttps.wsgi is mod


def test_read_n_returns_n_bytes_unless_the_body_ends(wsgi: Callable[..., int]) -> None:
    """As a buffered file: one read(n) returns n bytes even when they arrive in pieces."""
    got: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inp = environ["wsgi.input"]
        got.extend([len(inp.read(50000)), len(inp.read(50000)), len(inp.read(50000)), len(inp.read(1))])
        start_response("200 OK", [])
        return [b"done"]

    sock = raw_connect(wsgi(app), tls=True)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 120000\r\n\r\n")
    for _ in range(12):
        sock.sendall(b"y" * 10000)
        gevent.sleep(0.005)  # separate TLS records, separate reads on the server
    assert read_response(sock).body == b"done"
    sock.close()
    assert got == [50000, 50000, 20000, 0]


def test_close_called_when_the_server_kills_the_connection(make_server: Callable[..., Any]) -> None:
    body = Tracked(blocks=None)

    def app(environ: dict[str, Any], start_response: Any) -> Tracked:
        start_response("200 OK", [])
        return body

    server = make_server(WSGIHandler(app))
    sock = raw_connect(server.address()["port"], tls=True)
    sock.sendall(get())
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    server.close()
    server.close_all_connections()
    assert body.closed.wait(5)
    sock.close()


def test_unix_socket_server_name_comes_from_host(make_server: Callable[..., Any], tmp_path: Any) -> None:
    import socket as stdlib_socket

    import gevent.socket

    from helpers import unverified_client_context, wrap_client

    path = str(tmp_path / "wsgi.sock")
    make_server(WSGIHandler(environ_app), listen=False).listen(path)
    raw = gevent.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    raw.connect(path)
    sock = wrap_client(raw, unverified_client_context(), "localhost")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n")
    env = json.loads(read_response(sock).body)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    env2 = json.loads(read_response(sock).body)
    sock.close()
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("::1", "8443")
    assert (env2["SERVER_NAME"], env2["SERVER_PORT"]) == ("example.org", "443")
    assert env["REMOTE_ADDR"] == ""


@pytest.mark.parametrize("result", [["text, not bytes"], iter(["text"])], ids=["list", "generator"])
def test_str_body_is_an_application_error(wsgi: Callable[..., int], result: Any) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return result

    assert roundtrip(wsgi(app), get()).status == 500


# ---------------------------------------------------------- the fast path
# A response whose length is known and whose headers leave the framing to us goes
# out from a cached head in one send; the tests below pin what it must keep.


class _LengthBody:
    """What Flask and Django return: an iterable (not a list) with a Content-Length."""

    def __init__(self, blocks: list[bytes]) -> None:
        self.blocks = blocks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.blocks)


@pytest.mark.parametrize("shape", ["list", "iterable"])
def test_head_and_body_leave_in_one_tls_record(wsgi: Callable[..., int], shape: str) -> None:
    """Status line, fields and body in one send: one TLS record, so the client's first
    read (OpenSSL hands out one record per read) holds the whole response."""
    body = b"hello world\n"

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body] if shape == "list" else _LengthBody([body])

    port = wsgi(app)
    sock = raw_connect(port, tls=True)
    for _ in range(2):  # the cached head serves the second response as the first
        sock.sendall(get())
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        assert first.endswith(b"\r\n\r\n" + body)
        assert b"\r\nContent-Length: 12\r\n" in first and b"\r\nConnection: keep-alive\r\n" in first
    sock.close()


def test_repeated_fields_go_out_in_the_application_order(wsgi: Callable[..., int]) -> None:
    """Each (name, value) pair is one field line, where the application put it
    (as gunicorn and gevent.pywsgi send them; Node's writeHead with an array too)."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Set-Cookie", "a=1"), ("X-Between", "yes"), ("Set-Cookie", "b=2")])
        return [b"ok"]

    resp = roundtrip(wsgi(app), get())
    names = [name.lower() for name in resp.header_names()]
    assert names[:3] == [b"set-cookie", b"x-between", b"set-cookie"]
    assert resp.get_all("set-cookie") == [b"a=1", b"b=2"]
    assert resp.body == b"ok"


def test_listeners_see_the_response_fields_and_status(make_server: Callable[..., Any]) -> None:
    """The ServerResponse still says what was sent: a 'finish' listener reads the
    status and every field, the automatic ones included."""
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Made", [("Content-Type", "text/plain"), ("X-Twice", "1"), ("X-Twice", "2")])
        return [b"made"]

    handler = WSGIHandler(app)

    def listener(req: Any, res: Any) -> None:
        res.on("finish", lambda: seen.append((res.status_code, res.status_message, res.get_headers(),
                                              res.headers_sent, res.finished, res.writable_finished)))
        handler(req, res)

    port = make_server(listener).address()["port"]
    resp = roundtrip(port, get())
    assert resp.status == 201 and resp.body == b"made"
    assert len(seen) == 1
    status, message, headers, headers_sent, finished, writable_finished = seen[0]
    assert (status, message, headers_sent, finished, writable_finished) == (201, "Made", True, True, True)
    assert headers["content-type"] == "text/plain"
    assert headers["x-twice"] == ["1", "2"]
    assert headers["content-length"] == "4"
    assert headers["connection"] == "keep-alive"
    assert resp.get("date") == headers["date"].encode()


def test_connection_close_from_the_application_ends_the_connection(wsgi: Callable[..., int]) -> None:
    """A framing field from the application takes the general path, which honours it
    (one Connection field, and the server closes after the response)."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Connection", "close")])
        return [b"bye"]

    sock = raw_connect(wsgi(app), tls=True)
    sock.sendall(get())
    data = read_until_eof(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nbye")
    assert data.lower().count(b"\r\nconnection:") == 1 and b"Connection: close" in data


@pytest.mark.parametrize("value", ["a\r\nInjected: yes", "a\nInjected: yes", "nul\x00"])
def test_invalid_field_value_from_the_application_is_500(wsgi: Callable[..., int], value: str) -> None:
    """A value that would split the head is refused before anything is sent: the
    server's 500, and nothing of the application's fields (response splitting)."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-Bad", value)])
        return [b"never"]

    sock = raw_connect(wsgi(app), tls=True)
    sock.sendall(get())
    data = read_until_eof(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"Injected" not in data and b"never" not in data


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_204_and_304_send_no_body_and_keep_the_connection(wsgi: Callable[..., int], status: str) -> None:
    """No body and no Content-Length of our own for 204/304 (RFC 9110 §6.4.1; as Node,
    test/parallel/test-http-chunked-304.js), even when the application returns one;
    the connection carries the next request."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/next":
            start_response("200 OK", [])
            return [b"next"]
        start_response(status, [("ETag", '"x"')])
        return [b"dropped"]

    sock = raw_connect(wsgi(app), tls=True)
    sock.sendall(get() + get("/next"))
    first = read_response(sock)
    second = read_response(sock)
    sock.close()
    assert first.status == int(status[:3]) and first.framing == "none"
    assert first.get("content-length") is None and first.get("etag") == b'"x"'
    assert second.body == b"next"


def test_empty_body_with_content_length_zero(wsgi: Callable[..., int]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", "0")])
        return _LengthBody([b""])

    sock = raw_connect(wsgi(app), tls=True)
    sock.sendall(get() + get())
    first, second = read_response(sock), read_response(sock)
    sock.close()
    assert (first.body, second.body) == (b"", b"")
    assert first.get("content-length") == b"0"


def test_each_handler_on_a_connection_has_its_own_environ(make_server: Callable[..., Any]) -> None:
    """The per-connection environ is kept per handler: a listener that routes one
    keep-alive connection's requests to two WSGIHandlers gives each its own keys."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [f"{environ['x.who']} {environ['REMOTE_PORT']} {environ['PATH_INFO']}".encode()]

    one, two = WSGIHandler(app, environ={"x.who": "one"}), WSGIHandler(app, environ={"x.who": "two"})
    port = make_server(lambda req, res: (one if req.url.startswith("/1") else two)(req, res)).address()["port"]
    sock = raw_connect(port, tls=True)
    client_port = sock.getsockname()[1]
    bodies = []
    for path in ("/1a", "/2a", "/1b", "/2b"):
        sock.sendall(get(path))
        bodies.append(read_response(sock).body.decode())
    sock.close()
    assert bodies == [f"one {client_port} /1a", f"two {client_port} /2a", f"one {client_port} /1b",
                      f"two {client_port} /2b"]


def test_access_log_counts_the_body(make_server: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """With the server's access log on, WSGI responses are logged with their body bytes."""
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", "12")])
        return _LengthBody([b"hello world\n"])

    caplog.set_level(logging.INFO, logger="greenhttps.access")
    port = make_server(WSGIHandler(app), access_log="common").address()["port"]
    resp = roundtrip(port, get("/logged"))
    assert resp.body == b"hello world\n"
    deadline = time.monotonic() + 2
    while not any("/logged" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        gevent.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if "/logged" in r.getMessage()]
    assert len(lines) == 1 and '"GET /logged HTTP/1.1" 200 12 ' in lines[0]


def test_headers_changed_after_start_response_are_sent(wsgi: Callable[..., int]) -> None:
    """A field the application appends to its list after ``start_response`` (before
    the first block) goes out, whatever an earlier request left in the head cache
    (wsgiref honours it too).  Before: a cached (status, headers) hit at
    ``start_response`` time sent the stale head."""
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        headers = [("Content-Type", "text/plain")]
        start_response("200 OK", headers)
        if environ["PATH_INFO"] == "/late":
            headers.append(("X-Late", "yes"))
        return [b"ok"]

    port = wsgi(app)
    for path, late in (("/late", True), ("/", False), ("/late", True), ("/", False)):
        resp = roundtrip(port, get(path))
        assert resp.get_all("x-late") == ([b"yes"] if late else []), path


def test_each_response_owns_its_repeated_field_values(make_server: Callable[..., Any]) -> None:
    """``get_header()`` of a sent response returns its own list: changing it does not
    change what a later response of the same cached head reports."""
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-Twice", "a=1"), ("X-Twice", "b=2")])
        return [b"ok"]

    handler = WSGIHandler(app)

    def listener(req: Any, res: Any) -> None:
        def finished() -> None:
            cookies = res.get_header("x-twice")
            seen.append(list(cookies))
            cookies.append("user=changed-by-a-listener")
        res.on("finish", finished)
        handler(req, res)

    port = make_server(listener).address()["port"]
    for _ in range(3):
        assert roundtrip(port, get()).get_all("x-twice") == [b"a=1", b"b=2"]
    assert seen == [["a=1", "b=2"]] * 3


def test_credentials_stay_out_of_module_wide_caches(wsgi: Callable[..., int]) -> None:
    """A response head with ``Set-Cookie`` is not kept in the head cache (a session
    cookie must not outlive its response in a module-wide table)."""
    from greenhttps import wsgi as wsgi_module

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Set-Cookie", "session=secret-123"), ("Content-Type", "text/plain")])
        return [b"ok"]

    assert roundtrip(wsgi(app), get()).get_all("set-cookie") == [b"session=secret-123"]
    assert not any("secret-123" in repr(key) for key in wsgi_module._HEADS)
