"""Server protocol errors as Node reports them (NODE-BEHAVIOURS B-87, B-91, B-92,
B-93, B-95): a malformed head is diagnosed as soon as its bytes are here, the
``'clientError'`` error (or, with no listener, the socket's ``'error'``) carries
Node's ``code``, ``bytes_parsed`` and ``raw_packet``, and the default replies are
Node's bytes exactly.  Node's answers were taken from node 20 on the same bytes; the
last test asks the node on this machine again, when there is one.

Real sockets throughout: TLS where the behaviour is https's, plain ``greenhttps.http``
where the bytes must arrive as one piece (a TLS record holds at most 16 KiB, so a
larger head reaches either server in two pieces, and ``rawPacket`` is the last).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from typing import Any

import gevent.event
import pytest

import greenhttps
import helpers
from greenhttps import errors

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"


def port_of(srv: Any) -> int:
    return int(srv.address()["port"])


def socket_errors(srv: Any) -> list[Any]:
    """The ``'error'`` events of every accepted socket, in order."""
    seen: list[Any] = []
    srv.on("connection", lambda sock: sock.on("error", seen.append))
    return seen


def send_and_read(srv: Any, data: bytes, *, tls: bool = True, timeout: float = 5) -> tuple[bytes, float]:
    """Send ``data`` (without closing) and read until the server closes: (reply, seconds)."""
    sock = helpers.raw_connect(port_of(srv), tls=tls, timeout=timeout)
    try:
        start = time.monotonic()
        sock.sendall(data)
        reply = helpers.read_until_eof(sock, timeout, reset_ok=True)
        return reply, time.monotonic() - start
    finally:
        sock.close()


def test_default_client_error_reply_and_socket_error(make_server: Any) -> None:
    """B-92, mirrors test/parallel/test-http-server-destroy-socket-on-client-error.js:
    no listener; ``FOO /\\r\\n`` gets exactly Node's 400 then EOF, at once (the head
    never ends: the headers timeout is 60 s), and the socket's 'error' has Node's
    code HPE_INVALID_METHOD, bytesParsed 1 and the rawPacket."""
    srv = make_server(lambda req, res: pytest.fail("no request expected"))
    seen = socket_errors(srv)
    reply, elapsed = send_and_read(srv, b"FOO /\r\n")
    assert reply == BAD_REQUEST
    assert elapsed < 2, "diagnosed at the headers timeout, not when the line was seen"
    helpers.settle(0.05)
    assert len(seen) == 1
    err = seen[0]
    assert isinstance(err, errors.ProtocolError)
    assert (err.code, err.bytes_parsed, err.raw_packet) == ("HPE_INVALID_METHOD", 1, b"FOO /\r\n")
    assert (err.bytesParsed, err.rawPacket) == (1, b"FOO /\r\n")


def test_client_error_listener_owns_the_socket(make_server: Any) -> None:
    """B-91, mirrors test/parallel/test-http-server-client-error.js: a GET is served;
    ``Oopsie-doopsie\\r\\n`` calls the listener once, and the client receives exactly
    what the listener wrote (nothing of the default reply)."""
    got: list[Any] = []

    def on_client_error(err: Any, sock: Any) -> None:
        got.append(err)
        sock.end(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    srv = make_server()
    srv.on("clientError", on_client_error)
    reply, _ = send_and_read(srv, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    reply, elapsed = send_and_read(srv, b"Oopsie-doopsie\r\n")
    assert reply == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert elapsed < 2
    assert len(got) == 1
    assert (got[0].code, got[0].bytes_parsed, got[0].raw_packet) == ("HPE_INVALID_METHOD", 1, b"Oopsie-doopsie\r\n")


def test_header_overflow_answers_431(make_server: Any) -> None:
    """B-93, mirrors test/parallel/test-http-header-overflow.js: a header block one
    byte over ``maxHeaderSize`` (Node's count) gets exactly Node's 431, and the
    socket's 'error' is HPE_HEADER_OVERFLOW with bytesParsed ``maxHeaderSize +
    len('GET /blah HTTP/1.1')`` and the payload as rawPacket."""
    max_header_size = 16384
    name = b"Cookie: "
    payload = b"GET /blah HTTP/1.1\r\n" + name + b"a" * (max_header_size - len(name) - 4 + 1) + b"\r\n\r\n"
    srv = make_server(lambda req, res: pytest.fail("no request expected"), tls=False)
    seen = socket_errors(srv)
    reply, _ = send_and_read(srv, payload, tls=False)
    assert reply == TOO_LARGE
    helpers.settle(0.05)
    assert len(seen) == 1
    err = seen[0]
    assert err.code == "HPE_HEADER_OVERFLOW"
    assert err.bytes_parsed == max_header_size + len(b"GET /blah HTTP/1.1")
    assert err.raw_packet == payload


def test_content_length_with_chunked_is_a_client_error(make_server: Any) -> None:
    """B-95, mirrors test/parallel/test-http-server-reject-chunked-with-content-length.js:
    the request listener is never called, 'clientError' gets Node 20's code
    (HPE_INVALID_TRANSFER_ENCODING; older llhttp said HPE_UNEXPECTED_CONTENT_LENGTH),
    and with a passive listener the client gets no bytes, only the end."""
    got: list[Any] = []
    srv = make_server(lambda req, res: pytest.fail("no request expected"))
    srv.on("clientError", lambda err, sock: got.append(err))
    reply, _ = send_and_read(srv, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
    assert reply == b""
    assert len(got) == 1
    assert got[0].code == "HPE_INVALID_TRANSFER_ENCODING"
    assert got[0].message.startswith("Parse Error")
    assert got[0].bytes_parsed == 63  # node 20: just past the later field's colon


# Byte scripts whose answer node 20 gave on a plain http server: (clientError code,
# bytesParsed, default reply).  Each arrives as one piece.
NODE_ANSWERS = [
    ("foo", b"FOO /\r\n", "HPE_INVALID_METHOD", 1, BAD_REQUEST),
    ("lower-case-then-bad", b"get /\r\n\r\n", "HPE_INVALID_METHOD", 0, BAD_REQUEST),
    ("known-prefix", b"PURGEIT /\r\n\r\n", "HPE_INVALID_METHOD", 5, BAD_REQUEST),
    ("long-method", b"G" * 9000 + b" / HTTP/1.1\r\nHost: a\r\n\r\n", "HPE_INVALID_METHOD", 1, BAD_REQUEST),
    ("bare-lf", b"GET / HTTP/1.1\nHost: a\n\n", "HPE_INVALID_VERSION", 15, BAD_REQUEST),
    ("bad-version", b"GET / HTTP/1.x\r\nHost: a\r\n\r\n", "HPE_INVALID_VERSION", 13, BAD_REQUEST),
    ("url-ctl", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", "HPE_INVALID_URL", 6, BAD_REQUEST),
    ("header-name", b"GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", "HPE_INVALID_HEADER_TOKEN", 26, BAD_REQUEST),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", "HPE_INVALID_HEADER_TOKEN", 31, BAD_REQUEST),
    ("ctl", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", "HPE_INVALID_HEADER_TOKEN", 29, BAD_REQUEST),
    ("cr-no-lf", b"GET / HTTP/1.1\r\nDummy: Header\rContent-Length: 1\r\n\r\n", "HPE_LF_EXPECTED", None,
     BAD_REQUEST),
    ("signed-length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", "HPE_INVALID_CONTENT_LENGTH",
     42, BAD_REQUEST),
    ("cl-te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     "HPE_INVALID_TRANSFER_ENCODING", 63, BAD_REQUEST),
    ("te-chunked-param", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
     "HPE_INVALID_TRANSFER_ENCODING", None, BAD_REQUEST),
]


@pytest.mark.parametrize("data, code, bytes_parsed, reply",
                         [pytest.param(*row[1:], id=row[0]) for row in NODE_ANSWERS])
def test_node_codes_offsets_and_replies(make_server: Any, data: bytes, code: str, bytes_parsed: int | None,
                                        reply: bytes) -> None:
    """The same bytes give Node's code, bytesParsed (None: ours differs, see README)
    and default reply, with whichever parser is installed (tests/test_parsers.py runs
    this module with the other one)."""
    srv = make_server(lambda req, res: pytest.fail("no request expected"), tls=False,
                      max_header_size=65536 if len(data) > 8192 else 16384)
    seen = socket_errors(srv)
    got, elapsed = send_and_read(srv, data, tls=False)
    assert got == reply
    assert elapsed < 2
    helpers.settle(0.05)
    assert [e.code for e in seen] == [code]
    if bytes_parsed is not None:
        assert seen[0].bytes_parsed == bytes_parsed
    assert seen[0].raw_packet == data


NODE_PROBE = r"""
const http = require('http'), net = require('net');
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = [];
const srv = http.createServer((req, res) => res.end('ok'));
let errs = [];
srv.on('clientError', (err, sock) => { errs.push([err.code, err.bytesParsed]); sock.destroy(); });
srv.listen(0, '127.0.0.1', async () => {
  for (const b64 of cases) {
    errs = [];
    await new Promise((resolve) => {
      const c = net.connect(srv.address().port, '127.0.0.1', () => c.write(Buffer.from(b64, 'base64')));
      c.on('error', () => {}); c.on('close', resolve); setTimeout(() => c.destroy(), 1000);
    });
    out.push(errs);
  }
  console.log(JSON.stringify(out)); process.exit(0);
});
"""


@pytest.mark.skipif(helpers.which("node") is None, reason="node is not installed")
def test_the_table_is_what_node_says_today() -> None:
    """Ask node (20 here) again: each row's code and bytesParsed are Node's."""
    cases = json.dumps([base64.b64encode(row[1]).decode() for row in NODE_ANSWERS])
    proc = subprocess.run(["node", "-e", NODE_PROBE], input=cases, capture_output=True, text=True, timeout=60)
    answers = json.loads(proc.stdout)
    for row, errs in zip(NODE_ANSWERS, answers):
        assert len(errs) == 1, row[0]
        assert errs[0][0] == row[2], row[0]
        if row[3] is not None:
            assert errs[0][1] == row[3], row[0]


def test_response_that_is_not_http_is_a_parse_error(script_server: Any) -> None:
    """B-87 (client), mirrors test/parallel/test-http-client-parse-error.js: a server
    that answers ``bad http - should trigger parse error`` gives the request an error
    whose message says "Parse Error" and whose code is HPE_INVALID_CONSTANT."""
    def peer(sock: Any) -> None:
        helpers.read_request_head(sock)
        sock.sendall(b"bad http - should trigger parse error\r\n")

    port = script_server(peer, tls=True)
    with pytest.raises(errors.ProtocolError) as info:
        greenhttps.get(f"https://localhost:{port}/", reject_unauthorized=False, agent=False)
    assert info.value.code == "HPE_INVALID_CONSTANT"
    assert "Parse Error" in str(info.value)


@pytest.mark.parametrize("keep_alive", [False, True])
def test_bytes_after_a_response_are_a_parse_error(script_server: Any, keep_alive: bool) -> None:
    """B-87 (client), mirrors test/parallel/test-http-client-parse-error.js: a 302
    with ``Content-Length: 0`` followed by ``hi world`` in the same write gives the
    request 'response' and then 'error' HPE_INVALID_CONSTANT (node 20: bytesParsed
    48, the 'h', and the whole write as rawPacket); the connection is not pooled."""
    sent = b"HTTP/1.1 302 Object Moved\r\nContent-Length: 0\r\n\r\nhi world"

    def peer(sock: Any) -> None:
        helpers.read_request_head(sock)
        sock.sendall(sent)
        helpers.settle(0.5)

    port = script_server(peer, tls=True)
    agent = greenhttps.Agent(keep_alive=True) if keep_alive else False
    events: list[Any] = []
    done = gevent.event.Event()
    req = greenhttps.request({"host": "localhost", "port": port, "path": "/", "agent": agent,
                              "reject_unauthorized": False},
                             lambda res: (events.append(("response", res.status_code)), res.resume()))
    req.on("error", lambda err: (events.append(("error", err)), done.set()))
    req.end()
    assert done.wait(5)
    assert events[0] == ("response", 302)
    kind, err = events[1]
    assert kind == "error" and isinstance(err, errors.ProtocolError)
    assert (err.code, err.bytes_parsed, err.raw_packet) == ("HPE_INVALID_CONSTANT", 48, sent)
    assert "Parse Error" in str(err)
    helpers.settle(0.2)
    assert [kind for kind, _ in events].count("error") == 1  # once, as Node (a bodiless response was reported twice)
    if keep_alive:
        helpers.settle(0.05)
        assert not any(agent.free_sockets.values())
        agent.destroy()


@pytest.mark.parametrize("data, code", [
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n", "HPE_INVALID_HEADER_TOKEN", id="bad field name"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n", "HPE_INVALID_HEADER_TOKEN", id="control character"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n", "HPE_INVALID_HEADER_TOKEN", id="obs-fold"),
    pytest.param(b"GET / HTTP/1.x\r\n", "HPE_INVALID_VERSION", id="bad version"),
    pytest.param(b"GET /a\x7fb", "HPE_INVALID_URL", id="DEL in target, line unfinished"),
    pytest.param(b"GE@", "HPE_INVALID_METHOD", id="bad method character, line unfinished"),
])
def test_a_bad_line_is_answered_before_the_head_ends(make_server: Any, data: bytes, code: str) -> None:
    """The head never ends here and the headers timeout is 60 s: the answer comes as
    soon as the bad line (or byte) is in, with Node's code, over TLS."""
    srv = make_server(lambda req, res: pytest.fail("no request expected"))
    seen = socket_errors(srv)
    reply, elapsed = send_and_read(srv, data)
    assert reply == BAD_REQUEST
    assert elapsed < 2
    helpers.settle(0.05)
    assert [e.code for e in seen] == [code]
