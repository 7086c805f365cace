"""Property test of the server's connection loop (HARDENING, cross-cutting: the parser
invariant from h11's fuzzer), with Hypothesis, over real loopback sockets.

Inputs are valid requests built from strategies (pipelined, with Content-Length or
chunked bodies), the same requests mutated (bytes deleted, inserted, replaced with
the characters parsers trip on, ranges duplicated), and random bytes. Each input goes
to a real server whole and again split at arbitrary points, then the client
half-closes and reads everything until EOF. The properties:

* everything the server sends parses as HTTP/1.1 responses (``helpers.parse_response``,
  written independently of the library);
* each 2xx answers a request the handler saw, in order; an error status is one of
  400/408/413/414/417/431/501/505 (500 only if the handler's own body read failed),
  carries ``Connection: close`` and is the last thing sent before the close;
* a valid input gets exactly its 2xx responses, echoing method, target and body length;
* the handler never sees a malformed head (bad method token, CTL in the target or a
  value, an unknown version);
* whole and split delivery give the same statuses;
* nothing reaches the gevent hub (conftest's autouse check), and the server still
  serves afterwards.

The suite runs a bounded number of examples; a longer run::

    GREENHTTPS_FUZZ_EXAMPLES=20000 /tmp/venv/bin/python -m pytest tests/test_fuzz.py -q -p no:timeout
"""

from __future__ import annotations

import os
import re
import socket as stdlib_socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greenhttps
import greenhttps.http
import helpers
from greenhttps import errors

EXAMPLES = int(os.environ.get("GREENHTTPS_FUZZ_EXAMPLES", "150"))
TLS_EXAMPLES = max(20, EXAMPLES // 5)

pytestmark = pytest.mark.timeout(max(60, EXAMPLES // 10))

ERROR_STATUSES = {400, 408, 413, 414, 417, 431, 501, 505}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


# ------------------------------------------------------------------ server side


@dataclass
class Seen:
    """What the handler saw: (method, url) per request, and anything malformed."""

    heads: list[tuple[str, str]] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    body_errors: int = 0

    def clear(self) -> None:
        self.heads.clear()
        self.malformed.clear()
        self.body_errors = 0


def make_handler(seen: Seen) -> Any:
    def handler(req: Any, res: Any) -> None:
        seen.heads.append((req.method, req.url))
        if not _TOKEN.fullmatch(req.method):
            seen.malformed.append(f"method {req.method!r}")
        if not req.url or _BAD_TARGET.search(req.url):
            seen.malformed.append(f"target {req.url!r}")
        if req.http_version not in ("1.0", "1.1"):
            seen.malformed.append(f"version {req.http_version!r}")
        names = req.raw_headers[::2]
        values = req.raw_headers[1::2]
        for name, value in zip(names, values):
            if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value) or value != value.strip(" \t"):
                seen.malformed.append(f"field {name!r}: {value!r}")
        try:
            body = req.read()
        except errors.Error:
            seen.body_errors += 1
            raise
        res.end(f"{req.method} {req.url} {len(body)}")

    return handler


# ------------------------------------------------------------------ strategies

_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-CUSTOM"]
_PATH_CHARS = "abcxyz0123456789-._~!$&'()*+,;=:@/%?"
_NAME = st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True)
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


@st.composite
def valid_request(draw: Any, last: bool) -> tuple[bytes, str]:
    """One well-formed request and the body the server should answer with."""
    method = draw(st.sampled_from(_METHODS))
    target = "/" + draw(st.text(alphabet=_PATH_CHARS, max_size=24))
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"])) if last else "1.1"
    headers = [(n, v) for n, v in draw(st.lists(st.tuples(_NAME, _VALUE), max_size=4))]
    if version == "1.1" or draw(st.booleans()):
        headers.insert(draw(st.integers(0, len(headers))), ("Host", draw(st.sampled_from(["x", "a.example:8080"]))))
    body = draw(st.binary(max_size=120))
    framing = draw(st.sampled_from(["length", "chunked", "none"] if version == "1.1" else ["length", "none"]))
    if framing == "none":
        body = b""
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
        payload = body
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        cuts = sorted(set(draw(st.lists(st.integers(0, len(body)), max_size=4)))) + [len(body)]
        pieces, start = [], 0
        for cut in cuts:
            if cut > start:
                ext = draw(st.sampled_from(["", ";a=b", ";x"]))
                pieces.append(b"%x%s\r\n%s\r\n" % (cut - start, ext.encode(), body[start:cut]))
                start = cut
        trailer = draw(st.sampled_from([b"", b"X-Trailer: t\r\n"]))
        payload = b"".join(pieces) + b"0\r\n" + trailer + b"\r\n"
    else:
        payload = b""
    head = f"{method} {target} HTTP/{version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return head.encode() + payload, f"{method} {target} {len(body)}"


@st.composite
def valid_input(draw: Any) -> tuple[bytes, list[str]]:
    n = draw(st.integers(1, 3))
    requests = [draw(valid_request(last=i == n - 1)) for i in range(n)]
    return b"".join(r for r, _ in requests), [e for _, e in requests]


_NASTY = [b"\r", b"\n", b"\x00", b" ", b"\t", b":", b";", b",", b"\x7f", b"\xff", b"-", b"0", b"f", b"\r\n",
          b"\r\n\r\n", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: y\r\n",
          b"Expect: 100-continue\r\n", b"\r\n "]


@st.composite
def mutated_input(draw: Any) -> bytes:
    data = bytearray(draw(valid_input())[0])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "insert":
            data[i:i] = draw(st.one_of(st.sampled_from(_NASTY), st.binary(min_size=1, max_size=8)))
        elif op == "replace" and i < len(data):
            data[i : i + 1] = draw(st.sampled_from(_NASTY))
        elif op == "duplicate":
            data[i:i] = data[i : i + draw(st.integers(1, 40))]
    return bytes(data)


_PREFIXES = [b"", b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
             b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"]
random_input = st.builds(lambda p, b: p + b, st.sampled_from(_PREFIXES), st.binary(max_size=300))


def splits(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, max(1, len(data) - 1)), max_size=6).map(lambda c: sorted(set(c)))


# ------------------------------------------------------------------ the client


@dataclass
class Outcome:
    reply: bytes
    reset: bool
    closed: bool


def half_close(sock: Any) -> None:
    """TCP half-close. (``SSLSocket.shutdown`` would drop the TLS layer and leave us
    reading ciphertext, so shut down a duplicate of the descriptor instead.)"""
    dup = stdlib_socket.socket(fileno=os.dup(sock.fileno()))
    try:
        dup.shutdown(stdlib_socket.SHUT_WR)
    finally:
        dup.close()


def deliver(port: int, data: bytes, cuts: list[int], *, tls: bool) -> Outcome:
    """Send ``data`` (in pieces at ``cuts``), half-close, read until EOF."""
    sock = helpers.raw_connect(port, tls=tls, timeout=5)
    reply = bytearray()
    reset = closed = False
    try:
        start = 0
        try:
            for cut in [*cuts, len(data)]:
                if cut > start:
                    sock.sendall(data[start:cut])
                    start = cut
                    gevent.sleep(0.001)  # let the server parse this piece on its own
            half_close(sock)
        except OSError:
            reset = True  # the server closed first (after an error reply)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                reset = True
                break
            except ssl.SSLError:
                # The server's OpenSSL treats our TCP half-close (no close_notify) as an
                # unexpected EOF and answers it with a fatal alert: still a close.
                closed = True
                break
            except OSError as exc:  # e.g. a TLS error on a reset connection
                if not isinstance(exc, TimeoutError):
                    reset = True
                break
            if not chunk:
                closed = True
                break
            reply += chunk
    finally:
        sock.close()
    return Outcome(bytes(reply), reset, closed or reset)


def check(outcome: Outcome, seen: Seen) -> list[int]:
    """The response-side properties; returns the statuses seen."""
    assert outcome.closed, f"connection not closed after a half-close; got {outcome.reply[:300]!r}"
    assert seen.malformed == [], seen.malformed
    methods = iter(m for m, _ in seen.heads)
    rest = outcome.reply
    statuses: list[int] = []
    served = 0
    while rest:
        # 2xx answers the next request the handler saw (HEAD has no body); error
        # replies come from the server itself and carry Content-Length: 0.
        method = next(methods, "GET") if rest.startswith(b"HTTP/1.1 2") else "GET"
        try:
            resp, rest = helpers.parse_response(rest, method)
        except helpers.IncompleteResponse:
            assert outcome.reset, f"truncated response without a reset: {rest[:300]!r}"
            break
        statuses.append(resp.status)
        if 100 <= resp.status < 200:
            assert resp.status == 100, resp.raw
            continue
        if 200 <= resp.status < 300:
            served += 1
            continue
        allowed = ERROR_STATUSES | ({500} if seen.body_errors else set())
        assert resp.status in allowed, resp.raw
        assert resp.get("connection") == b"close", resp.raw
        assert rest == b"", f"bytes after an error reply: {rest[:200]!r}"
    assert served <= len(seen.heads)
    return statuses


# ------------------------------------------------------------------ the tests


def _settings(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def _serve(tls_options: dict[str, bytes] | None) -> tuple[Any, int, Seen]:
    seen = Seen()
    if tls_options is None:
        srv = greenhttps.http.create_server({}, make_handler(seen))
    else:
        srv = greenhttps.create_server(dict(tls_options), make_handler(seen))
    srv.listen(0, "127.0.0.1")
    return srv, int(srv.address()["port"]), seen


def _run(port: int, seen: Seen, data: bytes, cuts: list[int], tls: bool) -> list[int]:
    seen.clear()
    statuses = check(deliver(port, data, [], tls=tls), seen)
    whole = list(seen.heads)
    seen.clear()
    outcome = deliver(port, data, cuts, tls=tls)
    split_statuses = check(outcome, seen)
    if not outcome.reset:
        assert split_statuses == statuses, (statuses, split_statuses)
        assert seen.heads == whole
    return statuses


def _fuzz(tls_options: dict[str, bytes] | None, n: int) -> None:
    srv, port, seen = _serve(tls_options)
    tls = tls_options is not None
    try:

        @_settings(n)
        @given(st.data())
        def prop(data: st.DataObject) -> None:
            kind = data.draw(st.sampled_from(["valid", "mutated", "random"]))
            if kind == "valid":
                raw, expected = data.draw(valid_input())
            else:
                raw, expected = data.draw(mutated_input() if kind == "mutated" else random_input), None
            cuts = data.draw(splits(raw))
            statuses = _run(port, seen, raw, cuts, tls)
            if expected is not None:
                seen.clear()
                outcome = deliver(port, raw, cuts, tls=tls)
                assert not outcome.reset
                responses, rest = helpers.parse_responses(outcome.reply, [e.split(" ", 1)[0] for e in expected])
                assert [(r.status, r.body.decode()) for r in responses] == [(200, e) for e in expected]
                assert rest == b""
                assert statuses == [200] * len(expected)

        prop()
        # ... and it still serves.
        seen.clear()
        outcome = deliver(port, b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n", [], tls=tls)
        assert helpers.parse_response(outcome.reply)[0].status == 200
        assert srv.connections == 0 or helpers.settle(0.2) is None
    finally:
        srv.close()
        srv.close_all_connections()
        helpers.settle()


def test_server_loop_property_plain_http() -> None:
    _fuzz(None, EXAMPLES)


def test_server_loop_property_tls(tls_options: dict[str, bytes]) -> None:
    _fuzz(tls_options, TLS_EXAMPLES)
