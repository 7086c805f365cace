"""The server's HTTP semantics: what a handler sees of the request, the header API of
the response, 100-continue, keep-alive and pipelining, and independent peers
(http.client in a subprocess, curl, node) talking to a real greenhttps TLS server.

Byte-exact response framing is in ``test_server_framing.py``; requests here are raw
bytes on ssl sockets too, so the request side is exercised exactly as sent.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest

import greenhttps
import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)

Handler = Callable[[Any, Any], Any]


# ------------------------------------------------------------------ fixtures


def port_of(srv: Any) -> int:
    return int(srv.address()["port"])


def roundtrip(port: int, data: bytes, method: str = "GET") -> helpers.Response:
    """One request on a fresh TLS connection; the response, read exactly."""
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(data)
        return helpers.read_response(sock, method)
    finally:
        sock.close()


def chunked(*pieces: bytes, trailers: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n" + trailers + b"\r\n"


GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
MiB = 1024 * 1024


# ------------------------------------------------------------------ the request line and head


def test_method_url_and_version_exactly_as_sent(serve: Callable[..., int]) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        seen.append((req.method, req.url, req.http_version, req.httpVersion,
                     req.http_version_major, req.http_version_minor))
        res.end()

    port = serve(handler)
    roundtrip(port, b"GET /a%20b/../c?x=1&y=%zz#no HTTP/1.1\r\nHost: localhost\r\n\r\n")
    roundtrip(port, b"OPTIONS * HTTP/1.0\r\n\r\n")  # asterisk-form: OPTIONS only (RFC 9112 §3.2.4)
    roundtrip(port, b"PATCH http://localhost/abs?q HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert seen == [
        ("GET", "/a%20b/../c?x=1&y=%zz#no", "1.1", "1.1", 1, 1),
        ("OPTIONS", "*", "1.0", "1.0", 1, 0),
        ("PATCH", "http://localhost/abs?q", "1.1", "1.1", 1, 1),
    ]


def test_headers_follow_node_merge_rules_and_raw_headers_keep_case_and_order(
    serve: Callable[..., int],
) -> None:
    seen: dict[str, Any] = {}

    def handler(req: Any, res: Any) -> None:
        seen["headers"] = dict(req.headers)
        seen["raw"] = list(req.raw_headers)
        seen["rawHeaders"] = list(req.rawHeaders)
        res.end()

    head = (
        b"GET / HTTP/1.1\r\n"
        b"Host: localhost\r\n"
        b"Set-Cookie: a=1\r\n"
        b"Cookie: c1=1\r\n"
        b"X-Multi: one\r\n"
        b"content-type: text/plain\r\n"
        b"User-Agent: first\r\n"
        b"cookie: c2=2\r\n"
        b"SET-COOKIE: b=2\r\n"
        b"x-multi: two\r\n"
        b"Content-Type: text/html\r\n"
        b"user-agent: second\r\n"
        b"Authorization: Basic one\r\n"
        b"Authorization: Basic two\r\n"
        b"Accept: a/b\r\n"
        b"Accept: c/d\r\n"
        b"X-Empty: \r\n"
        b"\r\n"
    )
    assert roundtrip(serve(handler), head).status == 200
    assert seen["headers"] == {
        "host": "localhost",
        "set-cookie": ["a=1", "b=2"],
        "cookie": "c1=1; c2=2",
        "x-multi": "one, two",
        "content-type": "text/plain",
        "user-agent": "first",
        "authorization": "Basic one",
        "accept": "a/b, c/d",
        "x-empty": "",
    }
    assert seen["raw"] == [
        "Host", "localhost", "Set-Cookie", "a=1", "Cookie", "c1=1", "X-Multi", "one",
        "content-type", "text/plain", "User-Agent", "first", "cookie", "c2=2",
        "SET-COOKIE", "b=2", "x-multi", "two", "Content-Type", "text/html",
        "user-agent", "second", "Authorization", "Basic one", "Authorization", "Basic two",
        "Accept", "a/b", "Accept", "c/d", "X-Empty", "",
    ]  # fmt: skip
    assert seen["rawHeaders"] == seen["raw"]


def test_a_single_set_cookie_is_still_a_list(serve: Callable[..., int]) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.headers["set-cookie"])
        res.end()

    roundtrip(serve(handler), b"GET / HTTP/1.1\r\nHost: x\r\nSet-Cookie: only=1\r\n\r\n")
    assert seen == [["only=1"]]


def test_header_values_are_latin1_strings(serve: Callable[..., int]) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.headers["x-latin"])
        res.end()

    roundtrip(serve(handler), b"GET / HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\n\r\n")
    assert seen == ["caf\u00e9"]


# ------------------------------------------------------------------ request bodies


def test_read_all_of_a_content_length_body(serve: Callable[..., int]) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.complete)
        body = req.read()
        seen.extend([body, req.complete, req.read(), req.read(10)])
        res.end(body[::-1])

    resp = roundtrip(serve(handler), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
    assert seen == [False, b"hello world", True, b"", b""]
    assert resp.body == b"dlrow olleh"


@pytest.mark.parametrize("data_listener", [False, True], ids=["read() alone", "with a 'data' listener"])
def test_read_all_of_a_large_content_length_body(serve: Callable[..., int], data_listener: bool) -> None:
    """Several MiB.  read() alone builds the body in one buffer, never holding it
    twice (``Wire.read_rest_of_body``); a 'data' listener sees it piece by piece as
    it comes (it may be counting bytes to cut an upload short).  The bytes and
    keep-alive as ever."""
    size = 3 * MiB + 4321
    payload = bytes(range(256)) * (size // 256) + b"tail"
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        if data_listener:
            req.on("data", lambda chunk: seen.append(len(chunk)))
        req.on("end", lambda: seen.append("end"))
        tracemalloc.start()
        try:
            body = req.read()
            seen.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        res.end(hashlib.sha256(body).hexdigest() + f" {len(body)}")

    sock = helpers.raw_connect(serve(handler), tls=True)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
        assert helpers.read_response(sock).body == f"{hashlib.sha256(payload).hexdigest()} {len(payload)}".encode()
        first = list(seen)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        assert helpers.read_response(sock).body == f"{hashlib.sha256(b'ok').hexdigest()} 2".encode()
    finally:
        sock.close()
    *pieces, end, peak = first
    assert end == "end"
    if data_listener:
        assert sum(pieces) == len(payload) and len(pieces) > 10, "the pieces, as they came"
    else:
        assert pieces == []
        assert peak < 1.25 * len(payload), f"read() peaked at {peak / len(payload):.2f}x the body"


@pytest.mark.parametrize("sent", [b"", b"0123456789"], ids=["nothing", "10 bytes"])
def test_a_huge_declared_upload_is_not_allocated_before_it_arrives(serve: Callable[..., int], sent: bytes) -> None:
    seen: list[Any] = []
    reading = gevent.event.Event()

    def handler(req: Any, res: Any) -> None:
        tracemalloc.start()
        reading.set()
        try:
            req.read()
        except errors.TimeoutError as exc:
            seen.append(exc.code)

    sock = helpers.raw_connect(serve(handler, request_timeout=1000), tls=True)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % 2**40 + sent)
        assert reading.wait(timeout=5)
        gevent.sleep(0.4)  # the bytes are in, the handler's read() waits for more
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert helpers.read_response(sock).status == 408
    finally:
        tracemalloc.stop()
        sock.close()
    helpers.settle()
    assert seen == ["ETIMEDOUT"]
    # Nothing is allocated for the body before its first bytes, then at most one TLS
    # record (16 KiB) of room beyond them.  (The waiting read itself holds ~15 KiB.)
    assert held < (48 if sent else 24) * 1024, f"{held} bytes held for {len(sent)} received"


def test_read_with_sizes_returns_at_most_size(serve: Callable[..., int]) -> None:
    seen: list[bytes] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.read(3))
        seen.append(req.read(0))
        while piece := req.read(4):
            assert len(piece) <= 4
            seen.append(piece)
        res.end()

    body = b"0123456789abcdef"
    request = b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n" + body
    assert roundtrip(serve(handler), request).status == 200
    assert seen[0] == b"012" and seen[1] == b""
    assert b"".join(seen) == body
    assert all(len(p) <= 4 for p in seen[2:])


def test_read_sizes_across_chunks_sent_apart(serve: Callable[..., int]) -> None:
    seen: list[bytes] = []

    def handler(req: Any, res: Any) -> None:
        while piece := req.read(5):
            seen.append(piece)
        res.end(b"%d" % len(seen))

    port = serve(handler)
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"abc", b"defghij", b"k"):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            gevent.sleep(0.02)
        sock.sendall(b"0\r\n\r\n")
        resp = helpers.read_response(sock)
    finally:
        sock.close()
    assert resp.status == 200
    assert b"".join(seen) == b"abcdefghijk"
    assert all(0 < len(p) <= 5 for p in seen)


def test_iterating_over_a_chunked_body(serve: Callable[..., int]) -> None:
    seen: list[bytes] = []

    def handler(req: Any, res: Any) -> None:
        for piece in req:
            seen.append(piece)
        res.end(b"".join(seen))

    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"ab", b"cde", b"f")
    resp = roundtrip(serve(handler), request)
    assert resp.body == b"abcdef" and b"".join(seen) == b"abcdef"


def test_data_and_end_events_with_a_handler_that_returns_at_once(serve: Callable[..., int]) -> None:
    events: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        req.on("data", lambda chunk: events.append(bytes(chunk)))

        def on_end() -> None:
            events.append("end")
            res.end(b"got %d" % sum(len(e) for e in events if isinstance(e, bytes)))

        req.on("end", on_end)
        # returns without reading: the server pumps the body through the events

    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"12345", b"678")
    resp = roundtrip(serve(handler), request)
    assert resp.body == b"got 8"
    assert b"".join(e for e in events if isinstance(e, bytes)) == b"12345678"
    assert events[-1] == "end" and events.count("end") == 1


def test_end_event_for_a_bodyless_request(serve: Callable[..., int]) -> None:
    events: list[str] = []

    def handler(req: Any, res: Any) -> None:
        req.on("end", lambda: (events.append("end"), res.end(b"ok")))

    assert roundtrip(serve(handler), GET).body == b"ok"
    assert events == ["end"]


def test_data_events_also_fire_when_the_handler_reads(serve: Callable[..., int]) -> None:
    events: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        req.on("data", lambda chunk: events.append(bytes(chunk)))
        req.on("end", lambda: events.append("end"))
        body = req.read()
        res.end(body)

    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
    assert roundtrip(serve(handler), request).body == b"abcd"
    assert events == [b"abcd", "end"]


def test_text_uses_the_charset_and_json_parses(serve: Callable[..., int]) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        if req.url == "/text":
            seen.append(req.text())
        else:
            seen.append(req.json())
        res.end()

    port = serve(handler)
    body = "caf\u00e9".encode("latin-1")
    roundtrip(port, b"POST /text HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    doc = json.dumps({"a": [1, 2], "b": "\u00e9"}).encode()
    roundtrip(port, b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + chunked(doc[:5], doc[5:]))
    assert seen == ["caf\u00e9", {"a": [1, 2], "b": "\u00e9"}]


def test_request_trailers_after_reading(serve: Callable[..., int]) -> None:
    seen: dict[str, Any] = {}

    def handler(req: Any, res: Any) -> None:
        seen["before"] = (dict(req.trailers), list(req.raw_trailers))
        seen["body"] = req.read()
        seen["after"] = (dict(req.trailers), list(req.raw_trailers), list(req.rawTrailers))
        res.end()

    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, X-Other\r\n\r\n"
        + chunked(b"data", trailers=b"X-Sum: 42\r\nx-other: a\r\nX-Other: b\r\n")
    )
    assert roundtrip(serve(handler), request).status == 200
    assert seen["before"] == ({}, [])
    assert seen["body"] == b"data"
    trailers, raw, raw_alias = seen["after"]
    assert trailers == {"x-sum": "42", "x-other": "a, b"}
    assert raw == ["X-Sum", "42", "x-other", "a", "X-Other", "b"] == raw_alias


def test_unread_body_is_discarded_and_keep_alive_continues(serve: Callable[..., int]) -> None:
    def handler(req: Any, res: Any) -> None:
        res.end(req.url)

    port = serve(handler)
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(b"POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                     b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        first, second = helpers.read_response(sock), helpers.read_response(sock)
    finally:
        sock.close()
    assert (first.body, second.body) == (b"/one", b"/two")


# ------------------------------------------------------------------ the response header API


def test_header_getters(serve: Callable[..., int]) -> None:
    seen: dict[str, Any] = {}

    def handler(req: Any, res: Any) -> None:
        res.set_header("Content-Type", "text/plain")
        res.set_header("X-List", ["a", "b"])
        res.setHeader("X-Camel", "c")
        seen["get"] = (res.get_header("content-type"), res.get_header("CONTENT-TYPE"),
                       res.getHeader("x-list"), res.get_header("missing"))
        seen["headers"] = res.get_headers()
        seen["has"] = (res.has_header("X-CAMEL"), res.hasHeader("x-camel"), res.has_header("nope"))
        seen["names"] = res.get_header_names()
        seen["raw_names"] = res.get_raw_header_names()
        res.removeHeader("X-CAMEL")
        seen["after_remove"] = (res.has_header("x-camel"), res.get_header("x-camel"))
        res.remove_header("never-set")  # harmless
        res.end()

    resp = roundtrip(serve(handler), GET)
    assert seen["get"] == ("text/plain", "text/plain", ["a", "b"], None)
    assert seen["headers"] == {"content-type": "text/plain", "x-list": ["a", "b"], "x-camel": "c"}
    assert seen["has"] == (True, True, False)
    assert seen["names"] == ["content-type", "x-list", "x-camel"]
    assert seen["raw_names"] == ["Content-Type", "X-List", "X-Camel"]
    assert seen["after_remove"] == (False, None)
    assert resp.get("x-camel") is None and resp.get_all("x-list") == [b"a", b"b"]


def test_set_header_after_the_head_is_sent_raises(serve: Callable[..., int]) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        res.write(b"x")
        for call in (lambda: res.set_header("X-Late", "1"), lambda: res.setHeader("X-Late", "1"),
                     lambda: res.remove_header("date"), lambda: res.write_head(200)):
            try:
                call()
            except errors.HeadersSentError as exc:
                seen.append((exc.code, isinstance(exc, greenhttps.Error)))
        res.end()

    resp = roundtrip(serve(handler), GET)
    assert seen == [("ERR_HTTP_HEADERS_SENT", True)] * 4
    assert resp.get("x-late") is None and resp.body == b"x"


def test_camel_case_aliases_are_the_same_state(serve: Callable[..., int]) -> None:
    seen: dict[str, Any] = {}

    def handler(req: Any, res: Any) -> None:
        res.statusCode = 201
        seen["status"] = (res.status_code, res.statusCode)
        res.statusMessage = "Made"
        seen["message"] = res.status_message
        seen["sent"] = (res.headersSent, res.writableEnded, res.writableFinished)
        res.sendDate = False
        res.setHeader("X-A", "1")
        res.writeHead(res.statusCode, {"X-B": "2"})
        seen["after_head"] = res.headersSent
        res.end("done")
        seen["ended"] = (res.writableEnded, res.writableFinished)

    resp = roundtrip(serve(handler), GET)
    assert resp.status_line == b"HTTP/1.1 201 Made"
    assert resp.get("date") is None
    assert (resp.get("x-a"), resp.get("x-b")) == (b"1", b"2")
    assert seen["status"] == (201, 201) and seen["message"] == "Made"
    assert seen["sent"] == (False, False, False)
    assert seen["after_head"] is True
    assert seen["ended"] == (True, True)


def test_request_camel_case_aliases(serve: Callable[..., int]) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        seen.append((req.httpVersion, req.rawHeaders[:2], req.httpVersionMajor, req.httpVersionMinor))
        res.end()

    roundtrip(serve(handler), GET)
    assert seen == [("1.1", ["Host", "localhost"], 1, 1)]


def test_seed_server_example_with_camel_case(tls_options: dict[str, bytes]) -> None:
    server = greenhttps.createServer(tls_options, lambda req, res: (res.writeHead(200), res.end("hello world\n")))
    try:
        server.listen(0, "127.0.0.1")
        resp = roundtrip(port_of(server), GET)
    finally:
        server.close()
        server.close_all_connections()
    assert resp.status_line == b"HTTP/1.1 200 OK"
    assert resp.body == b"hello world\n"
    assert resp.framing == "chunked"  # writeHead without a length, as Node


# ------------------------------------------------------------------ late end, keep-alive, pipelining


def test_end_from_another_greenlet_later(serve: Callable[..., int]) -> None:
    seen: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        res.set_header("X-Url", req.url)
        gevent.spawn_later(0.1, res.end, b"late")
        seen.append(res.finished)

    port = serve(handler)
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        first = helpers.read_response(sock)
        second = helpers.read_response(sock)
    finally:
        sock.close()
    assert seen == [False, False]
    assert (first.body, first.get("x-url")) == (b"late", b"/1")
    assert (second.body, second.get("x-url")) == (b"late", b"/2")
    assert first.get("content-length") == b"4"


def test_writes_from_another_greenlet(serve: Callable[..., int]) -> None:
    def producer(res: Any) -> None:
        for i in range(3):
            res.write(b"tick%d;" % i)
            gevent.sleep(0.01)
        res.end()

    port = serve(lambda req, res: gevent.spawn(producer, res))
    resp = roundtrip(port, GET)
    assert resp.chunks == [b"tick0;", b"tick1;", b"tick2;"]


def test_two_requests_on_one_connection(serve: Callable[..., int]) -> None:
    peers: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        peers.append(req.socket.remote_port)
        res.end(req.url)

    port = serve(handler)
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        first = helpers.read_response(sock)
        sock.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        second = helpers.read_response(sock)
    finally:
        sock.close()
    assert (first.body, second.body) == (b"/first", b"/second")
    assert first.get("connection") == b"keep-alive"
    assert len(peers) == 2 and peers[0] == peers[1]


def test_pipelined_requests_answered_in_order(serve: Callable[..., int]) -> None:
    def handler(req: Any, res: Any) -> None:
        body = req.read()
        if req.url == "/slow":
            gevent.sleep(0.05)  # a slow first answer must still come first
        res.end(req.method.encode() + b" " + req.url.encode() + b" " + body)

    pipeline = (
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"PUT /put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"xy", b"z")
    )
    port = serve(handler)
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(pipeline)
        responses = [helpers.read_response(sock) for _ in range(3)]
    finally:
        sock.close()
    assert [r.body for r in responses] == [b"GET /slow ", b"POST /post abc", b"PUT /put xyz"]


def test_pipelined_requests_in_separate_tls_records_are_all_answered(serve: Callable[..., int]) -> None:
    """Between requests the server waits for the socket to become readable before it
    asks OpenSSL for more; records that arrived together with the previous one sit in
    the kernel's buffer or (with read-ahead, the default) OpenSSL's, and must still be
    read without a new byte (tests/test_read_ahead.py puts them in one segment)."""
    port = serve(lambda req, res: res.end(req.url))
    sock = helpers.raw_connect(port, tls=True)
    try:
        for i in range(5):  # one sendall, one TLS record
            sock.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        responses = [helpers.read_response(sock) for _ in range(5)]
    finally:
        sock.close()
    assert [r.body for r in responses] == [b"/0", b"/1", b"/2", b"/3", b"/4"]


# ------------------------------------------------------------------ Expect: 100-continue


def test_expect_100_without_listener_sends_100_on_first_read(serve: Callable[..., int]) -> None:
    seen: list[str] = []

    def handler(req: Any, res: Any) -> None:
        seen.append("handler")
        gevent.sleep(0.05)  # nothing is sent until the handler reads
        res.end(req.read())

    port = serve(handler)
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        interim = helpers.read_response(sock)
        sock.sendall(b"hello")
        final = helpers.read_response(sock)
    finally:
        sock.close()
    assert seen == ["handler"]
    assert interim.status == 100
    assert final.status == 200 and final.body == b"hello"


def test_expect_100_without_listener_is_never_sent_if_the_body_is_not_read(serve: Callable[..., int]) -> None:
    port = serve(lambda req, res: res.end(b"no thanks"))
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        resp = helpers.read_response(sock)
    finally:
        sock.close()
    assert resp.raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert resp.body == b"no thanks"


def test_check_continue_listener_gets_the_request_instead(make_server: Callable[..., Any]) -> None:
    seen: list[str] = []
    srv = make_server(lambda req, res: seen.append("request"))

    def check_continue(req: Any, res: Any) -> None:
        seen.append("checkContinue")
        res.writeContinue()
        res.end(b"echo:" + req.read())

    srv.on("checkContinue", check_continue)
    sock = helpers.raw_connect(port_of(srv), tls=True)
    try:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        interim = helpers.read_response(sock)
        sock.sendall(b"ok")
        final = helpers.read_response(sock)
    finally:
        sock.close()
    assert seen == ["checkContinue"]
    assert interim.status == 100 and final.body == b"echo:ok"


def test_check_continue_listener_may_refuse(make_server: Callable[..., Any]) -> None:
    srv = make_server(lambda req, res: res.end(b"should not run"))

    def refuse(req: Any, res: Any) -> None:
        res.write_head(413, {"Connection": "close"})
        res.end()

    srv.on("checkContinue", refuse)
    sock = helpers.raw_connect(port_of(srv), tls=True)
    try:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999\r\n\r\n")
        resp = helpers.read_response(sock)
        rest = helpers.read_until_eof(sock, 3, reset_ok=True)
    finally:
        sock.close()
    assert resp.raw.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert rest == b""


def test_http10_expect_goes_to_request_not_check_continue(make_server: Callable[..., Any]) -> None:
    seen: list[str] = []
    srv = make_server(lambda req, res: (seen.append("request"), res.end(req.read())))
    srv.on("checkContinue", lambda req, res: seen.append("checkContinue"))
    resp = roundtrip(port_of(srv), b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
    assert seen == ["request"]
    assert resp.raw.startswith(b"HTTP/1.1 200 OK\r\n") and resp.body == b"hi"


@pytest.mark.parametrize("expect", [b"something-else", b"100-continue, foo"])
def test_other_expect_values_get_417(serve: Callable[..., int], expect: bytes) -> None:
    seen: list[str] = []
    port = serve(lambda req, res: (seen.append("handler"), res.end()))
    sock = helpers.raw_connect(port, tls=True)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: " + expect + b"\r\n\r\n")
        resp = helpers.read_response(sock)
        rest = helpers.read_until_eof(sock, 3, reset_ok=True)
    finally:
        sock.close()
    assert resp.status_line == b"HTTP/1.1 417 Expectation Failed"
    assert resp.body == b"" and seen == [] and rest == b""


def test_check_expectation_listener_decides(make_server: Callable[..., Any]) -> None:
    srv = make_server(lambda req, res: res.end(b"not me"))
    srv.on("checkExpectation", lambda req, res: res.end(b"expect=" + req.headers["expect"].encode()))
    resp = roundtrip(port_of(srv), b"GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n")
    assert resp.status == 200 and resp.body == b"expect=teapot"


# ------------------------------------------------------------------ independent peers


def echo_handler(req: Any, res: Any) -> None:
    body = req.read()
    res.set_header("Content-Type", "text/plain")
    res.set_header("X-Method", req.method)
    if req.method == "HEAD":
        res.set_header("Content-Length", 5)
    res.end(b"hello" if req.method in ("GET", "HEAD") else b"got " + hashlib.sha256(body).hexdigest().encode())


def test_http_client_subprocess_get_and_post(serve: Callable[..., int], ca_file: str) -> None:
    port = serve(echo_handler)
    code = textwrap.dedent(f"""
        import http.client, json, ssl
        ctx = ssl.create_default_context(cafile={ca_file!r})
        conn = http.client.HTTPSConnection("localhost", {port}, context=ctx, timeout=10)
        out = []
        conn.request("GET", "/get?x=1")
        r = conn.getresponse()
        out.append([r.status, r.reason, r.getheader("content-type"), r.read().decode()])
        conn.request("POST", "/post", body=b"payload" * 1000, headers={{"Content-Type": "application/octet-stream"}})
        r = conn.getresponse()
        out.append([r.status, r.getheader("x-method"), r.read().decode()])
        conn.request("HEAD", "/head")
        r = conn.getresponse()
        out.append([r.status, r.getheader("content-length"), r.read().decode()])
        print(json.dumps(out))
    """)
    proc = helpers.run_python(code, timeout=15)
    assert proc.returncode == 0, proc.stderr
    get_, post, head = json.loads(proc.stdout)
    assert get_ == [200, "OK", "text/plain", "hello"]
    assert post == [200, "POST", "got " + hashlib.sha256(b"payload" * 1000).hexdigest()]
    assert head == [200, "5", ""]


@pytest.mark.needs_curl
def test_curl_get_post_and_head(serve: Callable[..., int], ca_file: str, tmp_path: Path) -> None:
    port = serve(echo_handler)
    url = f"https://127.0.0.1:{port}/"
    base = ["curl", "-sS", "--max-time", "10", "--cacert", ca_file]

    got = helpers.run_command([*base, url], timeout=15)
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"hello"

    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 800)  # 200 KiB, with Expect: 100-continue
    posted = helpers.run_command(
        [*base, "-H", "Expect: 100-continue", "--data-binary", f"@{payload}", url], timeout=15
    )
    assert posted.returncode == 0, posted.stderr
    assert posted.stdout == b"got " + hashlib.sha256(payload.read_bytes()).hexdigest().encode()

    head = helpers.run_command([*base, "-I", url], timeout=15)
    assert head.returncode == 0, head.stderr
    lines = head.stdout.decode("latin-1").lower().splitlines()
    assert lines[0].startswith("http/1.1 200")
    assert "content-type: text/plain" in lines and "content-length: 5" in lines
    assert "x-method: head" in lines


@pytest.mark.needs_node
def test_node_https_client(serve: Callable[..., int], ca_file: str, tmp_path: Path) -> None:
    port = serve(echo_handler)
    script = tmp_path / "client.js"
    script.write_text(textwrap.dedent("""
        const https = require('https');
        const fs = require('fs');
        const [caFile, port] = process.argv.slice(2);
        const ca = fs.readFileSync(caFile);
        const agent = new https.Agent({keepAlive: true});
        function call(method, body) {
          return new Promise((resolve, reject) => {
            const req = https.request({host: '127.0.0.1', port: +port, path: '/n', method, ca, agent},
              res => {
                let data = '';
                res.setEncoding('utf8');
                res.on('data', d => data += d);
                res.on('end', () => resolve({status: res.statusCode, type: res.headers['content-type'],
                                            method: res.headers['x-method'], body: data,
                                            reused: req.reusedSocket}));
              });
            req.on('error', reject);
            if (body) { req.write(body.slice(0, 3)); req.write(body.slice(3)); }
            req.end();
          });
        }
        (async () => {
          const out = [await call('GET'), await call('POST', 'node body')];
          agent.destroy();
          console.log(JSON.stringify(out));
        })().catch(e => { console.error(e); process.exit(1); });
    """))
    proc = helpers.run_command(["node", str(script), ca_file, str(port)], timeout=15)
    assert proc.returncode == 0, proc.stderr
    got, posted = json.loads(proc.stdout)
    assert got == {"status": 200, "type": "text/plain", "method": "GET", "body": "hello", "reused": False}
    assert posted["status"] == 200 and posted["method"] == "POST"
    assert posted["body"] == "got " + hashlib.sha256(b"node body").hexdigest()
    assert posted["reused"] is True  # keep-alive worked with Node's agent
