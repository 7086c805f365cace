"""HARDENING.md on the client: the same strictness for responses (G 51-54), and a
connect timeout against a real blackhole (H 61).

Each malformed response comes from a scripted TLS server that then keeps the
connection open for a while: the client must see the error in the bytes themselves,
not merely because the server hung up. A malformed response is an error (never an
``InvalidArgumentError``: the caller did nothing wrong), it is not retried, and its
socket is never pooled.
"""

from __future__ import annotations

import socket as stdlib_socket
import time
from typing import Any

import gevent
import pytest
from client_support import read_request

import greenhttps
import greenhttps.http
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)

OK = b"HTTP/1.1 200 OK\r\n"
CHUNKED = OK + b"Transfer-Encoding: chunked\r\n\r\n"
#: How long the scripted server keeps the connection open after its bytes.
HOLD = 1.5

BUG_CHUNK_OVERFLOW = (
    "BUG: the client accepts chunk sizes beyond 2**64 (h11 takes 20 hex digits) and waits "
    "for the body instead of failing"
)
BUG_TRAILER_SIZE = "BUG: the client accepts a 20 KiB trailer section arriving in one segment"
BUG_CHUNK_EXT_SIZE = "BUG: the client accepts a 20 KiB chunk extension arriving in one segment"


def xfail(reason: str) -> Any:
    return pytest.mark.xfail(strict=True, reason=reason)


MALFORMED_RESPONSES = [
    # -- status line (catalog 53, 54)
    pytest.param(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", id="four-digit status"),
    pytest.param(b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", id="two-digit status"),
    pytest.param(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", id="non-numeric status"),
    pytest.param(b"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", id="two spaces before status"),
    pytest.param(b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", id="HTTP/2.0"),
    pytest.param(b"HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n", id="HTTP/0.9"),
    pytest.param(b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", id="lower-case version"),
    pytest.param(b"\x16\x03\x01\x00\x05garbage\r\n\r\n", id="binary garbage"),
    pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", id="bare LF"),
    pytest.param(OK + b"X: a\rb\r\nContent-Length: 0\r\n\r\n", id="bare CR in value"),
    pytest.param(OK + b"X: a\x00b\r\nContent-Length: 0\r\n\r\n", id="NUL in value"),
    pytest.param(OK + b"X : a\r\nContent-Length: 0\r\n\r\n", id="space before colon"),
    pytest.param(OK + b"X: a\r\n\tb\r\nContent-Length: 0\r\n\r\n", id="obs-fold tab"),
    # -- framing (catalog 52)
    pytest.param(OK + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", id="CL and TE"),
    pytest.param(OK + b"Content-Length: +2\r\n\r\nok", id="CL +2"),
    pytest.param(OK + b"Content-Length: -1\r\n\r\nok", id="CL -1"),
    pytest.param(OK + b"Content-Length: 0x2\r\n\r\nok", id="CL 0x2"),
    pytest.param(OK + b"Content-Length: 2, 3\r\n\r\nok", id="CL '2, 3'"),
    pytest.param(OK + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nok", id="two CL same"),
    pytest.param(OK + b"Content-Length: 99999999999999999999\r\n\r\nok", id="CL over 2**64"),
    pytest.param(OK + b"Transfer-Encoding: gzip, chunked, chunked\r\n\r\n0\r\n\r\n", id="TE chunked twice"),
    pytest.param(CHUNKED + b"+2\r\nok\r\n0\r\n\r\n", id="chunk +2"),
    pytest.param(CHUNKED + b"0x2\r\nok\r\n0\r\n\r\n", id="chunk 0x2"),
    pytest.param(CHUNKED + b"-1\r\nok\r\n0\r\n\r\n", id="chunk -1"),
    pytest.param(CHUNKED + b"2\r\nokXX0\r\n\r\n", id="chunk data without CRLF"),
    pytest.param(CHUNKED + b"f" * 18 + b"\r\nok\r\n0\r\n\r\n", id="chunk ffffffffffffffffff"),
    pytest.param(CHUNKED + b"2;" + b"e" * 20000 + b"\r\nok\r\n0\r\n\r\n", id="20 KiB chunk extension"),
    pytest.param(CHUNKED + b"2\r\nok\r\n0\r\nX-T: " + b"t" * 20000 + b"\r\n\r\n", id="20 KiB trailer"),
    pytest.param(CHUNKED + b"2\r\nok\r\n0\r\nHTTP/1.1 200 OK\r\n\r\n", id="trailer that is a status line"),
]


@pytest.mark.parametrize("response", MALFORMED_RESPONSES)
def test_malformed_response_is_an_error_and_never_pooled(script_server: Any, ca_pem: bytes, response: bytes) -> None:
    connections: list[int] = []

    def handler(sock: Any) -> None:
        connections.append(1)
        read_request(sock)
        sock.sendall(response)
        gevent.sleep(HOLD)

    port = script_server(handler, tls=True)
    agent = greenhttps.Agent(keep_alive=True)
    start = time.monotonic()
    with pytest.raises(errors.Error) as info:
        res = greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=agent, timeout=5000)
        res.read()
    elapsed = time.monotonic() - start
    assert not isinstance(info.value, errors.InvalidArgumentError)
    # Found in the bytes: not a timeout, nor the server hanging up later.
    assert not isinstance(info.value, errors.TimeoutError), info.value
    assert elapsed < HOLD - 0.5, (elapsed, info.value)
    assert connections == [1]  # no retry on garbage
    assert agent.total_socket_count == 0 and agent.free_sockets == {} and agent.sockets == {}
    agent.destroy()


def test_well_formed_chunked_response_with_extension_and_trailer_is_read(script_server: Any, ca_pem: bytes) -> None:
    """The negative control: extensions, upper-case hex and trailers are fine; pooled."""

    def handler(sock: Any) -> None:
        read_request(sock)
        sock.sendall(CHUNKED + b"A;x=y\r\n0123456789\r\n0\r\nX-T: t\r\n\r\n")
        read_request(sock)

    port = script_server(handler, tls=True)
    agent = greenhttps.Agent(keep_alive=True)
    res = greenhttps.get(f"https://localhost:{port}/", ca=ca_pem, agent=agent)
    assert res.read() == b"0123456789"
    assert res.trailers == {"x-t": "t"}
    gevent.sleep(0.05)
    assert sum(map(len, agent.free_sockets.values())) == 1
    agent.destroy()


def _blackhole() -> tuple[stdlib_socket.socket, list[stdlib_socket.socket]]:
    """A loopback listener whose accept queue is full and never drained: new SYNs are
    dropped, so a connect() hangs (the kernel's answer to a blackholed address)."""
    lsock = stdlib_socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers: list[stdlib_socket.socket] = []
    for _ in range(8):
        s = stdlib_socket.socket()
        s.setblocking(False)
        try:
            s.connect(lsock.getsockname())
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.1)
    return lsock, fillers


def test_connect_timeout_against_a_full_backlog(ca_pem: bytes) -> None:
    """Catalog 61: ETIMEDOUT at connect_timeout (TCP, not TLS), and the slot is freed."""
    lsock, fillers = _blackhole()
    port = lsock.getsockname()[1]
    try:
        probe = stdlib_socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel completes connects past a full backlog")
        except (TimeoutError, stdlib_socket.timeout):
            pass
        finally:
            probe.close()
        for module, scheme in ((greenhttps.http, "http"), (greenhttps, "https")):
            agent = module.Agent(keep_alive=True, max_sockets=1)
            start = time.monotonic()
            with pytest.raises(errors.TimeoutError) as info:
                module.get(f"{scheme}://127.0.0.1:{port}/", ca=ca_pem, connect_timeout=300, agent=agent)
            assert info.value.code == "ETIMEDOUT"
            assert 0.25 < time.monotonic() - start < 2
            assert agent.total_socket_count == 0 and agent.sockets == {} and agent.requests == {}
    finally:
        for s in fillers:
            s.close()
        lsock.close()
