"""IncomingMessage: case-insensitive ``headers`` (Node's merge rules kept) and a body
that ``text()``/``json()`` can read twice.

Node's ``message.headers`` is a plain object with lowercase keys; ours is the same
dict (equal to it, iterated the same way) whose lookups also ignore case, shared
with ``fetch()``'s Response (one class, :class:`greenhttps._headers.Headers`).
"""

from __future__ import annotations

import json
import socket as stdlib_socket
from typing import Any, Callable, Iterator

import gevent
import pytest

import greenhttps
import greenhttps.http
import helpers
from greenhttps import errors
from greenhttps._headers import Headers, fetch_headers, node_headers

pytestmark = pytest.mark.timeout(20)

#: A response with every merge rule in it: repeated Set-Cookie (a list), a repeated
#: single-valued field (the first kept), a repeated list field (joined), mixed case.
RAW_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Set-Cookie: a=1\r\n"
    b"X-Many: one\r\n"
    b"set-cookie: b=2\r\n"
    b"Content-Type: text/plain\r\n"
    b"x-many: two\r\n"
    b"Content-Length: 16\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b'{"hello": "wo"}\n'
)


@pytest.fixture
def raw_origin() -> Iterator[int]:
    """A plain-TCP peer that answers every connection with :data:`RAW_RESPONSE`."""
    listener = gevent.socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            helpers.read_request_head(conn)
            conn.sendall(RAW_RESPONSE)
            conn.close()

    server = gevent.spawn(serve)
    yield listener.getsockname()[1]
    server.kill()
    listener.close()


def test_response_headers_match_node_and_ignore_case(raw_origin: int) -> None:
    """The same bytes through Node 20's ``http.get`` and ours: equal ``headers``
    (Node's merge rules: set-cookie a list, the first Content-Type, x-many joined),
    iterated in Node's order; then the lookups Node does not have: any case.
    Mirrors test/parallel/test-http-multiple-headers.js and test-http-set-cookies.js."""
    script = ("require('http').get({port: +process.argv[1], host: '127.0.0.1'}, r => "
              "{console.log(JSON.stringify(r.headers)); r.resume()})")
    node = json.loads(helpers.run_command(["node", "-e", script, str(raw_origin)]).stdout)
    res = greenhttps.http.get(f"http://127.0.0.1:{raw_origin}/")
    headers = res.headers
    assert headers == node and list(headers) == list(node)
    assert headers["set-cookie"] == ["a=1", "b=2"] and headers["x-many"] == "one, two"
    assert isinstance(headers, dict) and json.loads(json.dumps(headers)) == node
    # Case-insensitive lookups, every way a dict is asked.
    assert headers["Content-Type"] == headers["CONTENT-TYPE"] == "application/json; charset=utf-8"
    assert headers.get("Set-Cookie") == ["a=1", "b=2"] and headers.get("X-None", "d") == "d"
    assert "X-MANY" in headers and "x-none" not in headers and 42 not in headers
    with pytest.raises(KeyError, match="X-None"):
        headers["X-None"]  # noqa: B018
    # The lines as received.
    assert headers.get_all("X-Many") == ["one", "two"] and headers.get_set_cookie() == ["a=1", "b=2"]
    assert headers.get_all("content-type") == ["application/json; charset=utf-8", "text/plain"]
    assert headers.raw[0] == ("Content-Type", "application/json; charset=utf-8")
    res.read()


def test_request_headers_ignore_case_on_the_server() -> None:
    """A server's ``req.headers`` is the same mapping (Node's shape, any-case lookups)."""
    seen: dict[str, Any] = {}

    def handler(req: Any, res: Any) -> None:
        seen["ua"] = req.headers["User-Agent"]
        seen["cookie"] = req.headers.get("COOKIE")
        seen["keys"] = list(req.headers)
        res.end("ok")

    server = greenhttps.http.create_server(handler).listen(0, "127.0.0.1")
    try:
        port = server.address()["port"]
        pairs = [("Host", "x"), ("User-Agent", "ua/1"), ("Cookie", "a=1"), ("Cookie", "b=2")]
        res = greenhttps.http.get(f"http://127.0.0.1:{port}/", headers=pairs)
        assert res.read() == b"ok"
    finally:
        server.close()
    # Node joins repeated Cookie fields with '; ' (not ', ').
    assert seen == {"ua": "ua/1", "cookie": "a=1; b=2", "keys": ["host", "user-agent", "cookie", "connection"]}


def test_writes_go_under_the_lowercase_name() -> None:
    """One field never has two keys: writes, deletes and pops lowercase the name."""
    headers = node_headers([(b"Content-Type", b"text/html")])
    headers["Content-Type"] = "text/plain"
    headers.setdefault("X-New", "1")
    headers.update({"X-Other": "2"})
    assert headers == {"content-type": "text/plain", "x-new": "1", "x-other": "2"}
    del headers["X-NEW"]
    assert headers.pop("X-Other") == "2" and headers.pop("x-gone", None) is None
    copied = headers.copy()
    assert isinstance(copied, Headers) and copied["CONTENT-TYPE"] == "text/plain"
    made = Headers({"A-B": "1"})
    assert made == {"a-b": "1"} and made["a-B"] == "1" and made.get_all("A-b") == ["1"] and made.raw == []


def test_fetch_response_uses_the_same_class_with_fetchs_rule() -> None:
    """One implementation: fetch()'s Response.headers is a Headers too, with Fetch's
    join (Set-Cookie joined as well), the lines still one by one."""
    headers = fetch_headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X-A", "1")])
    assert type(headers) is Headers
    assert headers == {"set-cookie": "a=1, b=2", "x-a": "1"}
    assert headers["SET-COOKIE"] == "a=1, b=2" and headers.get_set_cookie() == ["a=1", "b=2"]


def _serve(body: bytes, content_type: str = "application/json") -> tuple[Any, int]:
    def handler(req: Any, res: Any) -> None:
        res.write_head(200, {"Content-Type": content_type})
        res.end(body)

    server = greenhttps.http.create_server(handler).listen(0, "127.0.0.1")
    return server, server.address()["port"]


def test_json_and_text_can_be_called_twice() -> None:
    """``json()``/``text()`` keep the body they read; so does a whole ``read()``
    (then ``read()`` again is the stream's end, b'')."""
    server, port = _serve('{"a": "é"}'.encode(), "application/json; charset=utf-8")
    try:
        res = greenhttps.http.get(f"http://127.0.0.1:{port}/")
        assert res.json() == {"a": "é"} and res.json() == {"a": "é"}
        assert res.text() == '{"a": "é"}' and res.text(encoding="latin-1") == '{"a": "Ã©"}'
        assert res.read() == b""  # the stream is at its end; the kept body is for text()/json()
        res = greenhttps.http.get(f"http://127.0.0.1:{port}/")
        body = res.read()
        assert res.text() == body.decode() and res.json() == {"a": "é"}
        assert res._body is body  # kept as read: no copy
    finally:
        server.close()


@pytest.mark.parametrize("stream", [lambda res: res.read(3), lambda res: next(iter(res))])
def test_a_streamed_body_is_not_kept(stream: Callable[[Any], bytes]) -> None:
    """A body read piecewise is not kept (streaming users hold no copy): text()
    after that is a clear error, not the rest of the body parsed as if whole."""
    server, port = _serve(b'{"a": 1}')
    try:
        res = greenhttps.http.get(f"http://127.0.0.1:{port}/")
        assert stream(res)
        assert res._body is None
        with pytest.raises(errors.Error) as info:
            res.json()
        assert info.value.code == "ERR_GREENHTTPS_BODY_USED"
        res.read()
        assert res._body is None  # the rest read whole is still not the whole body
    finally:
        server.close()


def test_the_lowercase_name_cache_is_bounded() -> None:
    """Names seen are remembered lowercased (a lookup instead of decode+lower on
    every request), but a peer inventing names cannot grow that memory: at most 512
    names, none over 64 bytes; past that the names are still right."""
    from greenhttps import _headers

    many = [(f"X-Name-{i}".encode(), b"v") for i in range(700)] + [(b"X-" + b"L" * 100, b"long")]
    headers = node_headers(many)
    assert len(headers) == 701 and headers["x-name-699"] == "v" and headers["X-" + "l" * 100] == "long"
    assert len(_headers._LOWER_NAMES) <= _headers._LOWER_NAMES_MAX == 512
    assert all(len(name) <= 64 for name in _headers._LOWER_NAMES)
