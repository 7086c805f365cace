"""The same byte scripts through both parsers, in memory: no socket, no gevent.

Each case is the bytes a peer sends (requests to a server, responses to a client)
and the events a :class:`~greenhttps._parse.Parser` must give for them: heads with
their framing facts, the body, trailers, the end of each message, and the error (as
the status a server would answer with) for malformed input.  Every case is also fed
split at every byte boundary, and one byte at a time, and must give the same events
(h11's own tests, ``h11/tests/test_io.py``, are the model).  The h11 and llhttp
parsers must agree with the table, hence with each other.
"""

from __future__ import annotations

from typing import Any, Iterable

import pytest

from greenhttps import errors
from greenhttps._parse import Parser
from greenhttps._parse_h11 import H11Parser
from greenhttps._wire_format import Framing

PARSERS: list[type[Parser]] = [H11Parser]
try:
    from greenhttps._parse_llhttp import LlhttpParser
except ImportError:  # pragma: no cover - httptools is a test dependency here
    pass
else:
    PARSERS.append(LlhttpParser)

Event = tuple[Any, ...]
H = b"Host: a\r\n"


def run(parser_cls: type[Parser], pieces: Iterable[bytes], *, client: bool, method: str = "GET",
        request_headers: list[tuple[bytes, bytes]] | None = None, eof: bool = True, detail: bool = False,
        **limits: int) -> list[Event]:
    """Feed ``pieces`` then (``eof``) the close; return the events, body bytes joined
    per message (so that any split gives the same list).  Once the connection cannot
    carry another message, the rest is fed and what the parser holds is the last
    event ("done"), as a protocol switch would take it."""
    parser = parser_cls(client=client, **limits)
    if client:
        parser.expect_response_to(method, request_headers or [])
    events: list[Event] = []
    state = ["head"]

    def drain() -> bool:
        while True:
            if state[0] == "head":
                head = parser.next_head()
                if head is None:
                    if parser.eof:
                        events.append(("closed",))
                        return False
                    return True
                events.append(("head", head.method or head.status, head.target or head.reason, head.http_version,
                               [(n.lower(), v) for n, v in head.headers], head.framing, head.content_length,
                               head.keep_alive, head.upgrade, head.expect, parser.wants_100_continue))
                state[0] = "body"
                continue
            data = parser.next_body()
            if data is None:
                return True
            if data:
                if events[-1][0] == "data":
                    events[-1] = ("data", events[-1][1] + data)
                else:
                    events.append(("data", data))
                continue
            events.append(("end", [(n.lower(), v) for n, v in parser.trailers]))
            status = next(e for e in reversed(events) if e[0] == "head")[1]
            if client and (status == 101 or (method == "CONNECT" and 200 <= status < 300)):
                state[0] = "done"  # the socket is the caller's now
                return False
            if client and status < 200:
                state[0] = "head"  # a final response follows a 1xx
            elif parser.start_next():
                state[0] = "head"
            else:
                state[0] = "done"
                return False

    try:
        for piece in filter(None, pieces):
            parser.feed(piece)
            if state[0] != "done":
                drain()
        if state[0] == "done":
            events.append(("done", parser.take_buffered()))
        elif eof:
            parser.feed(b"")
            drain()
            if state[0] == "done":
                events.append(("done", parser.take_buffered()))
    except errors.ProtocolError as exc:
        events.append(("error", exc.status_hint, exc.code, exc.bytes_parsed) if detail else ("error", exc.status_hint))
    except errors.ConnectionResetError as exc:
        events.append(("reset", str(exc).split(":")[0].split(" [")[0]))
    return events


def head(first: Any, second: str, version: str = "1.1", fields: list[tuple[bytes, bytes]] | None = None, *,
         framing: str = Framing.NONE, length: int | None = None, keep_alive: bool = True, upgrade: bool = False,
         expect: str | None = None, wants_continue: bool = False) -> Event:
    return ("head", first, second, version, fields if fields is not None else [(b"host", b"a")], framing, length,
            keep_alive, upgrade, expect, wants_continue)


END: Event = ("end", [])
CLOSED: Event = ("closed",)

TE_REQUEST = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_HEAD = head("POST", "/", fields=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], framing=Framing.CHUNKED)

# (id, bytes, expected events, options)
REQUESTS: list[tuple[str, bytes, list[Event], dict[str, Any]]] = [
    ("simple", b"GET / HTTP/1.1\r\n" + H + b"\r\n", [head("GET", "/"), END, CLOSED], {}),
    ("pipelined", b"GET /1 HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n",
     [head("GET", "/1"), END, head("GET", "/2"), END, CLOSED], {}),
    ("content-length", b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n" + H + b"\r\n",
     [head("POST", "/p", fields=[(b"host", b"a"), (b"content-length", b"5")], framing=Framing.LENGTH, length=5),
      ("data", b"hello"), END, head("GET", "/"), END, CLOSED], {}),
    ("content-length-0", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
     [head("POST", "/", fields=[(b"host", b"a"), (b"content-length", b"0")], length=0), END, CLOSED], {}),
    ("chunked-extensions-trailers",
     b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5;ext=1;q=\"x\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
     [head("POST", "/", fields=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], framing=Framing.CHUNKED),
      ("data", b"hello world"), ("end", [(b"x-trailer", b"t")]), head("GET", "/"), END, CLOSED], {}),
    # One connection's llhttp parser is reused while it sees whole messages: after a
    # head alone, a chunked body, a counted body (which it does not see), a method it
    # does not know (read as a stand-in), every head must still come out right.
    ("mixed-keep-alive",
     b"GET /1 HTTP/1.1\r\n" + H + b"\r\n" + TE_REQUEST + b"5\r\nhello\r\n0\r\n\r\n"
     b"GET /3 HTTP/1.1\r\n" + H + b"\r\nPOST /4 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
     b"GET /5 HTTP/1.1\r\n" + H + b"\r\nFROB /6 HTTP/1.1\r\n" + H + b"\r\nGET /7 HTTP/1.1\r\n" + H + b"\r\n",
     [head("GET", "/1"), END, CHUNKED_HEAD, ("data", b"hello"), END, head("GET", "/3"), END,
      head("POST", "/4", fields=[(b"host", b"a"), (b"content-length", b"3")], framing=Framing.LENGTH, length=3),
      ("data", b"abc"), END, head("GET", "/5"), END, head("FROB", "/6"), END, head("GET", "/7"), END, CLOSED], {}),
    ("http10-keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     [head("GET", "/", "1.0", [(b"connection", b"keep-alive")], keep_alive=False), END, ("done", b"")], {}),
    ("connection-close", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n",
     [head("GET", "/", fields=[(b"host", b"a"), (b"connection", b"close")], keep_alive=False), END,
      ("done", b"GET / HTTP/1.1\r\n")], {}),
    ("upgrade", b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
     [head("GET", "/ws", fields=[(b"host", b"a"), (b"connection", b"Upgrade"), (b"upgrade", b"websocket")],
           upgrade=True), END, ("error", 400)], {}),
    ("upgrade-with-body", b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 3\r\n\r\n"
     b"abcGET / HTTP/1.1\r\n" + H + b"\r\n",
     [head("POST", "/", fields=[(b"host", b"a"), (b"connection", b"upgrade"), (b"upgrade", b"x"),
                                (b"content-length", b"3")], framing=Framing.LENGTH, length=3, upgrade=True),
      ("data", b"abc"), END, head("GET", "/"), END, CLOSED], {}),
    ("expect-100", b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok",
     [head("PUT", "/", fields=[(b"host", b"a"), (b"expect", b"100-Continue"), (b"content-length", b"2")],
           framing=Framing.LENGTH, length=2, expect="100-continue", wants_continue=True), ("data", b"ok"), END,
      CLOSED], {}),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03",
     [head("CONNECT", "a:443", fields=[(b"host", b"a:443")]), END, ("error", 400)], {}),
    ("token-method", b"PURGE-IT / HTTP/1.1\r\n" + H + b"\r\n", [head("PURGE-IT", "/"), END, CLOSED], {}),
    ("value-whitespace", b"GET / HTTP/1.1\r\nHost: a \t\r\nX: y  \r\n\r\n",
     [head("GET", "/", fields=[(b"host", b"a"), (b"x", b"y")]), END, CLOSED], {}),
    ("truncated-body", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
     [head("POST", "/", fields=[(b"host", b"a"), (b"content-length", b"10")], framing=Framing.LENGTH, length=10),
      ("data", b"abc"), ("reset", "aborted")], {}),
    ("truncated-chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
     [head("POST", "/", fields=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], framing=Framing.CHUNKED),
      ("data", b"ab"), ("reset", "aborted")], {}),
    ("eof-mid-head", b"GET / HTTP/1.1\r\nHost:", [("error", 400)], {}),
    # Malformed: the status a server answers with.
    ("bare-lf", b"GET / HTTP/1.1\nHost: a\n\n", [("error", 400)], {}),
    ("bare-cr", b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", [("error", 400)], {}),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", [("error", 400)], {}),
    ("control-char", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", [("error", 400)], {}),
    ("cl-and-te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     [("error", 400)], {}),
    ("duplicate-cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
     [("error", 400)], {}),
    ("folded-cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", [("error", 400)], {}),
    ("signed-cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", [("error", 400)], {}),
    # RFC 9112 §6.1/§7: a final coding other than chunked, or a malformed list, is 400;
    # 501 only for a well-formed list that names a coding not implemented here.
    ("te-gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", [("error", 400)], {}),
    ("te-chunked-gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", [("error", 400)], {}),
    ("te-gzip-chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     [("error", 501)], {}),
    ("te-unknown-chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-foo;a=1, Chunked\r\n\r\n0\r\n\r\n",
     [("error", 501)], {}),
    ("te-empty-element", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n",
     [("error", 400)], {}),
    ("te-empty-middle", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n0\r\n\r\n",
     [("error", 400)], {}),
    ("te-chunked-parameter", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
     [("error", 400)], {}),
    ("te-bad-token", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: g@zip, chunked\r\n\r\n0\r\n\r\n",
     [("error", 400)], {}),
    ("te-chunked-twice", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
     [("error", 400)], {}),
    ("bad-chunk-size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
     [head("POST", "/", fields=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], framing=Framing.CHUNKED),
      ("error", 400)], {}),
    ("huge-chunk-size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"10000000000000000\r\nab",
     [head("POST", "/", fields=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], framing=Framing.CHUNKED),
      ("error", 400)], {}),
    # Chunk extensions follow RFC 9112 §7.1.1's ABNF (no bare ";", tokens only).
    ("ext-bare-semicolon", TE_REQUEST + b"5;\r\nhello\r\n0\r\n\r\n", [CHUNKED_HEAD, ("error", 400)], {}),
    ("ext-bad-name", TE_REQUEST + b"5;a@b=1\r\nhello\r\n0\r\n\r\n", [CHUNKED_HEAD, ("error", 400)], {}),
    ("ext-bad-value", TE_REQUEST + b"5;a=b@c\r\nhello\r\n0\r\n\r\n", [CHUNKED_HEAD, ("error", 400)], {}),
    ("ext-no-name", TE_REQUEST + b"5;=b\r\nhello\r\n0\r\n\r\n", [CHUNKED_HEAD, ("error", 400)], {}),
    ("ext-no-value", TE_REQUEST + b"5;a=\r\nhello\r\n0\r\n\r\n", [CHUNKED_HEAD, ("error", 400)], {}),
    ("ext-space", TE_REQUEST + b"5 ;a=b\r\nhello\r\n0\r\n\r\n", [CHUNKED_HEAD, ("error", 400)], {}),
    ("ext-valid", TE_REQUEST + b"5;a;b=c;d=\"x \\\"y\"\r\nhello\r\n0;z\r\n\r\n",
     [CHUNKED_HEAD, ("data", b"hello"), END, CLOSED], {}),
    # 17 hex digits, even leading zeros: refused as soon as the 17th arrives.
    ("chunk-size-17-digits", TE_REQUEST + b"00000000000000005\r\nhello\r\n0\r\n\r\n",
     [CHUNKED_HEAD, ("error", 400)], {}),
    ("chunk-size-17-digits-unterminated", TE_REQUEST + b"00000000000000000", [CHUNKED_HEAD, ("error", 400)], {}),
    # The 16 KiB chunk-line limit (Node: 413) holds for every chunk, not only the first.
    ("chunk-line-limit-second-chunk", TE_REQUEST + b"5\r\nhello\r\n5;a=" + b"x" * 17000 + b"\r\nhello\r\n0\r\n\r\n",
     [CHUNKED_HEAD, ("data", b"hello"), ("error", 413)], {}),
    ("chunk-line-limit-third-chunk", TE_REQUEST + b"1\r\na\r\n1\r\nb\r\n1;" + b"x" * 17000,
     [CHUNKED_HEAD, ("data", b"ab"), ("error", 413)], {}),
    # Host is uri-host [ ":" port ] (RFC 9110 §7.2).
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", [("error", 400)], {}),
    ("host-path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", [("error", 400)], {}),
    ("host-empty", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", [("error", 400)], {}),
    ("host-bad-port", b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", [("error", 400)], {}),
    ("host-ipv6-port", b"GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
     [head("GET", "/", fields=[(b"host", b"[::1]:443")]), END, CLOSED], {}),
    # Asterisk-form is only for OPTIONS (RFC 9112 §3.2.4).
    ("asterisk-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", [("error", 400)], {}),
    ("asterisk-options", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", [head("OPTIONS", "*"), END, CLOSED], {}),
    # A method too long for a request line is a bad method (400), not a long URI (414).
    ("long-method", b"G" * 9000 + b" / HTTP/1.1\r\n" + H + b"\r\n", [("error", 400)], {"max_header_size": 65536}),
    ("long-method-unterminated", b"G" * 9000, [("error", 400)], {"max_header_size": 65536, "eof": False}),
    # A malformed request line or field line is refused as soon as it is whole, not
    # at the end of the head (which never comes here) or the headers timeout.
    ("bad-request-line-early", b"FOO /\r\n", [("error", 400)], {"eof": False}),
    ("bad-field-line-early", b"GET / HTTP/1.1\r\nX Y: z\r\n", [("error", 400)], {"eof": False}),
    ("pipelined-then-bad", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcFOO /\r\n",
     [head("POST", "/", fields=[(b"host", b"a"), (b"content-length", b"3")], framing=Framing.LENGTH, length=3),
      ("data", b"abc"), END, ("error", 400)], {"eof": False}),
    ("oversized-head", b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 600 + b"\r\n\r\n", [("error", 431)],
     {"max_header_size": 512}),
    ("long-request-line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", [("error", 414)],
     {"max_header_size": 65536}),
    ("too-many-fields", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X%d: y\r\n" % i for i in range(10)) + b"\r\n",
     [("error", 431)], {"max_headers_count": 10}),
    ("bad-host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", [("error", 400)], {}),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", [("error", 400)], {}),
    ("no-host", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", [("error", 400)], {}),
    ("http2", b"GET / HTTP/2.0\r\n" + H + b"\r\n", [("error", 505)], {}),
    ("two-spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", [("error", 400)], {}),
]

RESPONSES: list[tuple[str, bytes, list[Event], dict[str, Any]]] = [
    ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
     [head(200, "OK", fields=[(b"content-length", b"5")], framing=Framing.LENGTH, length=5), ("data", b"hello"), END,
      CLOSED], {}),
    ("keep-alive-pair", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nb",
     [head(200, "OK", fields=[(b"content-length", b"1")], framing=Framing.LENGTH, length=1), ("data", b"a"), END,
      head(201, "Created", fields=[(b"content-length", b"1")], framing=Framing.LENGTH, length=1), ("data", b"b"), END,
      CLOSED], {}),
    ("chunked-trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nEtag: x\r\n\r\n",
     [head(200, "OK", fields=[(b"transfer-encoding", b"chunked")], framing=Framing.CHUNKED), ("data", b"abc"),
      ("end", [(b"etag", b"x")]), CLOSED], {}),
    ("close-delimited", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
     [head(200, "OK", fields=[(b"content-type", b"text/plain")], framing=Framing.UNTIL_CLOSE, keep_alive=False),
      ("data", b"until the end"), END, ("done", b"")], {}),
    ("head-response", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
     [head(200, "OK", fields=[(b"content-length", b"10")], length=10), END, CLOSED], {"method": "HEAD"}),
    ("204", b"HTTP/1.1 204 No Content\r\n\r\n", [head(204, "No Content", fields=[]), END, CLOSED], {}),
    ("304", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
     [head(304, "Not Modified", fields=[(b"content-length", b"10")], length=10), END, CLOSED], {}),
    ("100-then-200", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
     [head(100, "Continue", fields=[]), END,
      head(200, "OK", fields=[(b"content-length", b"2")], framing=Framing.LENGTH, length=2), ("data", b"ok"), END,
      CLOSED], {}),
    ("103-then-204", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
     [head(103, "Early Hints", fields=[(b"link", b"</a>")]), END, head(204, "No Content", fields=[]), END, CLOSED],
     {}),
    ("101-upgrade", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
     [head(101, "Switching Protocols", fields=[(b"connection", b"Upgrade"), (b"upgrade", b"websocket")],
           upgrade=True, keep_alive=False), END, ("done", b"\x81\x00")],
     {"request_headers": [(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")]}),
    ("connect-200", b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03",
     [head(200, "Connection established", fields=[], keep_alive=False), END, ("done", b"\x16\x03")], {"method": "CONNECT"}),
    ("http10", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
     [head(200, "OK", "1.0", [(b"content-length", b"2")], framing=Framing.LENGTH, length=2, keep_alive=False),
      ("data", b"ok"), END, ("done", b"")], {}),
    ("connection-close", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
     [head(200, "OK", fields=[(b"connection", b"close"), (b"content-length", b"0")], length=0, keep_alive=False),
      END, ("done", b"")], {}),
    ("eof-mid-head", b"HTTP/1.1 200 OK\r\nContent-", [("reset", "socket hang up")], {}),
    ("eof-before-head", b"", [CLOSED], {}),
    ("truncated", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe",
     [head(200, "OK", fields=[(b"content-length", b"5")], framing=Framing.LENGTH, length=5), ("data", b"he"),
      ("reset", "aborted")], {}),
    ("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", [("error", 400)], {}),
    ("cl-and-te", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     [("error", 400)], {}),
    ("duplicate-cl", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", [("error", 400)], {}),
    ("bad-chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
     [head(200, "OK", fields=[(b"transfer-encoding", b"chunked")], framing=Framing.CHUNKED), ("error", 400)], {}),
]


def _splits(data: bytes) -> Iterable[list[bytes]]:
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def _cases(table: list[tuple[str, bytes, list[Event], dict[str, Any]]]) -> list[Any]:
    return [pytest.param(cls, data, expected, opts, id=f"{cls.__name__}-{name}")
            for cls in PARSERS for name, data, expected, opts in table]


@pytest.mark.parametrize("parser_cls, data, expected, opts", _cases(REQUESTS))
def test_requests(parser_cls: type[Parser], data: bytes, expected: list[Event], opts: dict[str, Any]) -> None:
    for pieces in _splits(data) if len(data) < 2048 else [[data]]:
        assert run(parser_cls, pieces, client=False, **opts) == expected, pieces


@pytest.mark.parametrize("parser_cls, data, expected, opts", _cases(RESPONSES))
def test_responses(parser_cls: type[Parser], data: bytes, expected: list[Event], opts: dict[str, Any]) -> None:
    for pieces in _splits(data):
        assert run(parser_cls, pieces, client=True, **opts) == expected, pieces


@pytest.mark.parametrize("name, data, expected, opts", [pytest.param(*row, id=row[0]) for row in REQUESTS
                                                        if len(row[1]) >= 2048])
@pytest.mark.parametrize("parser_cls", PARSERS)
def test_long_requests_however_the_bytes_arrive(parser_cls: type[Parser], name: str, data: bytes,
                                                expected: list[Event], opts: dict[str, Any]) -> None:
    """The rows too long to split at every byte: fed one byte at a time and in odd
    pieces (limits must hold however the bytes arrive)."""
    for size in (1, 7, 4096):
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        assert run(parser_cls, pieces, client=False, **opts) == expected, size


@pytest.mark.skipif(len(PARSERS) < 2, reason="httptools is not installed: only h11 is available")
@pytest.mark.parametrize("client, data, opts", [pytest.param(False, d, o, id="request-" + n) for n, d, _, o in REQUESTS]
                         + [pytest.param(True, d, o, id="response-" + n) for n, d, _, o in RESPONSES])
def test_both_parsers_give_the_same_answer(client: bool, data: bytes, opts: dict[str, Any]) -> None:
    """One answer whatever the parser: the same events, and for an error the same
    status, Node code and ``bytes_parsed``, for every split of the bytes."""
    splits = list(_splits(data)) if len(data) < 2048 else [[data]]
    for pieces in splits:
        answers = [run(cls, pieces, client=client, detail=True, **opts) for cls in PARSERS]
        assert answers[0] == answers[1], pieces


@pytest.mark.parametrize("pieces, bytes_parsed", [
    pytest.param([b"GET / HTTP/1.1\r\nHost: a\r\n\r\nFOO /\r\n"], 28, id="second request, same piece"),
    pytest.param([b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcFOO /\r\n"], 51,
                 id="after a counted body, same piece"),
    pytest.param([b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab", b"cFOO /\r\n"], 2,
                 id="after a counted body, next piece"),
    pytest.param([b"GET / HTTP/1.1\r\nX: a", b"\x01b\r\n"], 0, id="field line across pieces"),
])
@pytest.mark.parametrize("parser_cls", PARSERS)
def test_bytes_parsed_counts_into_the_last_piece(parser_cls: type[Parser], pieces: list[bytes],
                                                 bytes_parsed: int) -> None:
    """Node's ``bytesParsed`` is an offset into the last piece received (node 20 gave
    28 and 51 for the first two), wherever the message before ended."""
    events = run(parser_cls, pieces, client=False, detail=True, eof=False)
    assert events[-1][0] == "error" and events[-1][3] == bytes_parsed, events[-1]


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_a_counted_body_can_be_read_by_the_caller(parser_cls: type[Parser]) -> None:
    """The wire's fast path: what is buffered is taken, the rest counted in, and the
    bytes past the body stay for the next message."""
    parser = parser_cls()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert parser.next_head() is not None
    assert parser.body_remaining == 10
    assert parser.take_buffered_body() == b"abc"
    assert parser.body_remaining == 7
    parser.body_received(7)  # read by the caller straight into its buffer
    assert parser.done and parser.body_remaining is None
    parser.feed(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.next_body() == b""
    assert parser.start_next()
    nxt = parser.next_head()
    assert nxt is not None and nxt.target == "/next"


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_the_parser_modules_do_no_io(parser_cls: type[Parser]) -> None:
    import sys

    for name in ("greenhttps._parse", "greenhttps._strict", parser_cls.__module__):
        module = sys.modules[name]
        for banned in ("gevent", "socket", "ssl", "_sockio", "_tlsbio", "_wire"):
            assert not any(getattr(value, "__name__", "").split(".")[-1] == banned
                           for value in vars(module).values() if type(value).__name__ == "module"), (name, banned)


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_an_idle_parser_keeps_no_packet(parser_cls: type[Parser]) -> None:
    """The last piece received is kept for Node's ``raw_packet`` only while it may
    still matter: once a message is done and nothing of the next has come, an idle
    keep-alive connection holds none of its body."""
    parser = parser_cls()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65536\r\n\r\n")
    assert parser.next_head() is not None
    parser.feed(b"x" * 65536)
    while parser.next_body():
        pass
    assert parser.start_next()
    assert parser._packet == b""  # what an idle connection would otherwise hold


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\nX: a\r\n\r\n", b"GET / HTTP/1.1\r\nX: a\n\n",
                                  b"GET / HTTP/1.1\r\nX: a\r\n\n"])
def test_h11_without_host_when_not_required_whatever_the_line_ends(head: bytes) -> None:
    """``require_host_header=False`` with h11 (which insists on Host) lends it one as
    the last field and takes it back; with the insecure parser's bare LF endings too."""
    parser = H11Parser(strict=False, require_host=False)
    parser.feed(head)
    parsed = parser.next_head()
    assert parsed is not None and [(n.lower(), v) for n, v in parsed.headers] == [(b"x", b"a")]


# The strict checks take shortcuts for the common head (see _strict: a clean status
# line needs no check_head_bytes once Parser._check_lines passed its field lines; one
# plain Content-Length is settled in check_raw_framing's first pass; check_fields runs
# inside the parser's own pass over the fields).  Each row is a head one step off a
# shortcut, and the answer the full checks gave before the shortcuts existed (the
# first error as status, code, bytes_parsed; else the head's framing and length).
FAST_PATH_ROWS: list[tuple[bool, bytes, tuple[Any, ...]]] = [
    (True, b'HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n', ('error', 400, 'HPE_INVALID_HEADER_TOKEN', 39)),
    (True, b'HTTP/1.1 200 O\x7fK\r\nContent-Length: 0\r\n\r\n', ('error', 400, 'HPE_INVALID_HEADER_TOKEN', 39)),
    (True, b'HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n', ('error', 400, 'HPE_INVALID', 39)),
    (True, b'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n', ('error', 400, 'HPE_LF_EXPECTED', 37)),
    (True, b'HTTP/1.1 200 OK\r\r\nContent-Length: 0\r\n\r\n', ('error', 400, 'HPE_INVALID', 39)),
    (True, b'HTTP/1.1 200 O\tK\r\nContent-Length: 0\r\n\r\n', ('head', 'none', 0)),
    (True, b'HTTP/1.1 200 \xe9t\xe9\r\nContent-Length: 0\r\n\r\n', ('head', 'none', 0)),
    (True, b'HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n', ('head', 'none', 0)),
    (True, b'HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n', ('head', 'none', 0)),
    (True, b'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n', ('error', 400, 'HPE_INVALID', 39)),
    (True, b'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', ('error', 502, 'HPE_INVALID_VERSION', 38)),
    (True, b'HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n', ('error', 400, 'HPE_INVALID', 39)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length:  2 \r\n\r\nok', ('head', 'length', 2)),
    (True, b'HTTP/1.1 200 OK\r\ncontent-LENGTH:2\r\n\r\nok', ('head', 'length', 2)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok', ('error', 400, 'HPE_INVALID_CONTENT_LENGTH', 33)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length: 2 2\r\n\r\nok', ('error', 400, 'HPE_INVALID_CONTENT_LENGTH', 36)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok', ('error', 400, 'HPE_INVALID_CONTENT_LENGTH', 33)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok', ('error', 400, 'HPE_INVALID_CONTENT_LENGTH', 34)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\nok', ('error', 400, 'HPE_INVALID_CONTENT_LENGTH', 52)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length: 000000000000000002\r\n\r\nok', ('head', 'length', 2)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok', ('error', 400, 'HPE_INVALID_CONTENT_LENGTH', 51)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok', ('error', 400, 'HPE_INVALID_HEADER_TOKEN', 31)),
    (True, b'HTTP/1.1 200 OK\r\nContent-Length\t: 2\r\n\r\nok', ('error', 400, 'HPE_INVALID_HEADER_TOKEN', 31)),
    (True, b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', ('head', 'chunked', None)),
    (True, b'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', ('error', 400, 'HPE_INVALID_TRANSFER_ENCODING', 49)),
    (True, b'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx', ('error', 400, 'HPE_INVALID_TRANSFER_ENCODING', 40)),
    (True, b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n', ('error', 400, 'HPE_INVALID_TRANSFER_ENCODING', 60)),
    (True, b'HTTP/1.1 200 OK\r\nX-Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc', ('head', 'length', 3)),
    (True, b'HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n', ('head', 'none', 0)),
    (True, b'HTTP/1.1 200 OK\r\nHost: a b\r\nContent-Length: 0\r\n\r\n', ('error', 400, 'HPE_INVALID_HEADER_TOKEN', 49)),
    (False, b'GET / HTTP/1.1\r\nHost: a\r\n\r\n', ('head', 'none', None)),
    (False, b'GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n', ('error', 400, 'HPE_INVALID', 36)),
    (False, b'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', ('error', 400, 'HPE_INVALID_HEADER_TOKEN', 29)),
    (False, b'GET / HTTP/1.1\r\n\r\n', ('error', 400, 'HPE_INVALID', 18)),
    (False, b'GET / HTTP/1.0\r\n\r\n', ('head', 'none', None)),
    (False, b'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok', ('head', 'length', 2)),
    (False, b'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok', ('error', 400, 'HPE_INVALID_CONTENT_LENGTH', 60)),
    (False, b'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12345678901234567890\r\n\r\nok', ('error', 400, 'HPE_INVALID_CONTENT_LENGTH', 62)),
    (False, b'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', ('error', 400, 'HPE_INVALID_TRANSFER_ENCODING', 63)),
    (False, b'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: x y\r\n\r\n', ('error', 400, 'HPE_INVALID_HEADER_TOKEN', None)),
    (False, b'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', ('error', 400, 'HPE_INVALID', None)),
    (False, b'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', ('error', 501, 'HPE_INVALID_TRANSFER_ENCODING', 67)),
    (False, b'FOO / HTTP/1.1\r\nHost: a\r\n\r\n', ('head', 'none', None)),
    (False, b'GET / HTTP/1.2\r\nHost: a\r\n\r\n', ('error', 400, 'HPE_INVALID_VERSION', 27)),
    (False, b'GET * HTTP/1.1\r\nHost: a\r\n\r\n', ('error', 400, 'HPE_INVALID_URL', 27)),
    (False, b'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', ('head', 'none', None)),
]


def _answer(events: list[Event]) -> tuple[Any, ...]:
    errors_ = [event for event in events if event[0] == "error"]
    return errors_[0] if errors_ else ("head", events[0][5], events[0][6])


@pytest.mark.parametrize("client, data, expected", [pytest.param(*row, id=repr(row[1])[2:40]) for row in FAST_PATH_ROWS])
@pytest.mark.parametrize("parser_cls", PARSERS)
def test_the_shortcuts_give_the_answers_of_the_full_checks(parser_cls: type[Parser], client: bool, data: bytes,
                                                           expected: tuple[Any, ...]) -> None:
    """Heads next to the strict checks' shortcuts get the answer the full checks gave
    (recorded from the tree before the shortcuts), whole and however the bytes arrive
    (split anywhere, the status and code; ``bytes_parsed`` counts into the last piece)."""
    assert _answer(run(parser_cls, [data], client=client, detail=True)) == expected
    for pieces in _splits(data):
        assert _answer(run(parser_cls, pieces, client=client, detail=True))[:3] == expected[:3], pieces


# Lines from which the next test builds response heads: clean ones (some framing
# fields among them) and ones one step off (a stray CR, LF, NUL or DEL, whitespace
# before the colon, an obs-fold, an empty name, a bad status line).
_STATUS_LINES = [b"HTTP/1.1 200 OK", b"HTTP/1.0 204", b"HTTP/1.1 200 ", b"HTTP/1.1 200 O\tK", b"HTTP/1.1 200 \xe9",
                 b"HTTP/1.1 2000 OK", b"HTTP/1.1  200 OK", b"HTTP/1.1 200 O\rK", b"HTTP/1.1 200 O\nK", b"HTTP/2 200"]
_FIELD_LINES = [b"Content-Type: text/html", b"Content-Length: 12", b"content-length:  7 ", b"Content-Length: +1",
                b"Content-Length: 1234567890123456789", b"CONTENT-LENGTH:0", b"Transfer-Encoding: chunked",
                b"transfer-encoding: gzip", b"X-Content-Length: 3", b"Keep-Alive: timeout=5", b"Date: Tue",
                b"Content-Length : 2", b"Content-Length\t: 2", b" folded", b"\tfolded", b": empty name",
                b"X-A: a\x00b", b"X-A: a\x7fb", b"X-A: a\rb", b"X-A: a\nb", b"X-A: \xe9t\xe9", b"X-A:", b"X-A: a\tb"]


def _llhttp_reads(head: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The fields (trailing whitespace dropped, as LlhttpParser does) and the reason
    phrase llhttp reports for a response head."""
    import httptools

    class Message:
        fields: list[tuple[bytes, bytes]] = []
        reason = b""

        def on_header(self, name: bytes, value: bytes) -> None:
            self.fields = [*self.fields, (name, value.rstrip(b" \t"))]

        def on_status(self, reason: bytes) -> None:
            self.reason += reason

    msg = Message()
    try:
        httptools.HttpResponseParser(msg).feed_data(head)
    except httptools.HttpParserUpgrade:
        pass
    return msg.fields, msg.reason


def test_the_line_by_line_head_check_answers_as_the_whole_head_pattern() -> None:
    """_strict.clean_response_head (lines seen before cost a set lookup) says clean
    exactly when CLEAN_RESPONSE_HEAD matches the whole head, and says the framing is
    plain only when check_raw_framing passes the head -- first time and again, with
    its lines remembered, and with bare-LF ends left to the pattern."""
    import itertools
    import random

    from greenhttps._strict import (
        CLEAN_PLAIN_FRAMING,
        CLEAN_RESPONSE_HEAD,
        NOT_CLEAN,
        check_raw_framing,
        clean_response_head,
    )

    rng = random.Random(5)
    heads = [b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\n\n", b"HTTP/1.1 200 OK\r\nA: b\n\r\n\r\n"]
    for status, count in itertools.product(_STATUS_LINES, range(4)):
        for _ in range(30):
            lines = [status, *rng.choices(_FIELD_LINES, k=count)]
            heads.append(b"\r\n".join(lines) + rng.choice([b"\r\n\r\n", b"\r\n\r\n", b"\n\n", b"\r\n\n"]))
    heads += [b"HTTP/1.1 200  OK \r\nX-A:\t\t b \t\r\nY:\r\nZ: \xe9\r\n\r\n", b"HTTP/1.1 099 X\r\n\r\n",
              b"HTTP/1.1 101 S\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"]
    for _ in range(2):  # the second time every good line is remembered
        for head in heads:
            fields: list[tuple[bytes, bytes]] = []
            answer = clean_response_head(head, fields)
            assert (answer != NOT_CLEAN) == (CLEAN_RESPONSE_HEAD.fullmatch(head) is not None), head
            if answer == CLEAN_PLAIN_FRAMING:
                check_raw_framing(head, request=False)  # passes: no error skipped
                if len(PARSERS) > 1:  # httptools is installed
                    # What LlhttpParser takes instead of llhttp's reading: the same.
                    assert (fields, head[13:head.find(b"\r\n")]) == _llhttp_reads(head), head
            elif answer != NOT_CLEAN and head.lower().count(b"\ncontent-length:") <= 1 \
                    and b"\ntransfer-encoding:" not in head.lower():
                stripped = head.lower().split(b"\ncontent-length:")[-1].split(b"\r\n")[0].strip(b" \t")
                # Clean and not plain: a Content-Length that is not a plain decimal.
                assert not (stripped.isdigit() and len(stripped) <= 18), head


@pytest.mark.parametrize("proposal", [False, True], ids=["no-upgrade-asked", "upgrade-asked"])
def test_a_101_gets_the_same_answer_however_its_bytes_arrive(proposal: bool) -> None:
    """A 101 response is never taken from the remembered lines without llhttp (review
    of the line-by-line head check): llhttp decides what a protocol switch means, and
    its answer must not depend on whether the head came whole or a byte at a time."""
    from greenhttps._parse_llhttp import LlhttpParser

    asked = [(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")] if proposal else []
    heads = [b"HTTP/1.1 101 Switching Protocols\r\nServer: x\r\n\r\nrest",
             b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 5\r\n\r\nrest",
             b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nrest"]
    for parser_class in (LlhttpParser, H11Parser):
        for data in heads:
            answers = []
            for _warm in range(2):  # the second time every good line is remembered
                for pieces in ([data], [data[i:i + 1] for i in range(len(data))]):
                    parser = parser_class(client=True)
                    parser.expect_response_to("GET", asked)
                    try:
                        head = None
                        for piece in pieces:
                            parser.feed(piece)
                            head = head or parser.next_head()
                        assert head is not None
                        answers.append(("head", head.status, head.upgrade, parser.take_buffered()))
                    except errors.ProtocolError as exc:
                        answers.append(("error", exc.code, None, None))
            assert len(set(answers)) == 1, (parser_class.__name__, data, answers)


def test_cookies_and_credentials_are_not_remembered_lines() -> None:
    """The remembered response lines (a module-wide table) never keep a Set-Cookie,
    Cookie or Authorization line: credentials must not outlive their message."""
    from greenhttps import _strict

    head = (b"HTTP/1.1 200 OK\r\nSet-Cookie: session=SECRET-TOKEN\r\nAuthorization: Basic c2VjcmV0\r\n"
            b"Cookie: a=SECRET\r\nProxy-Authorization: Basic eA==\r\nX-Plain: kept\r\nContent-Length: 0\r\n\r\n")
    fields: list[tuple[bytes, bytes]] = []
    assert _strict.clean_response_head(head, fields) == _strict.CLEAN_PLAIN_FRAMING
    assert (b"Set-Cookie", b"session=SECRET-TOKEN") in fields  # read, all the same
    remembered = list(_strict._GOOD_FIELD_LINES)
    assert b"X-Plain: kept" in remembered
    # (Other tests' lines may be there: a Proxy-Authenticate challenge is no secret.)
    assert not [line for line in remembered if b"SECRET" in line or b"c2VjcmV0" in line or b"eA==" in line]
