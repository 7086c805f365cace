"""Fixtures and peers shared by the client tests (test_client, test_agent, test_client_tls).

A test module takes the fixtures by importing ``FIXTURES`` names (``serve``,
``serve_http`` and the autouse clean-up of the global agents are registered under
those names; the functions have other names so parameters do not shadow imports).

Independent of greenhttps's own parser: requests the client sends are read here by
a small hand-written HTTP/1.1 request reader, so a capture server can assert the exact
bytes (request line, Host, Connection, framing) without trusting h11 or the server
half of the library.
"""

from __future__ import annotations

import socket as stdlib_socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.socket
import pytest

import helpers

OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
OK_KEEP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# ------------------------------------------------------------- request reader


class _Reader:
    """Reads from a socket without reading past the current request."""

    def __init__(self, sock: stdlib_socket.socket) -> None:
        self.sock = sock

    def line(self) -> bytes:
        out = bytearray()
        while not out.endswith(b"\n"):
            b = self.sock.recv(1)
            if not b:
                break
            out += b
        return bytes(out)

    def exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            data = self.sock.recv(n - len(out))
            if not data:
                break
            out += data
        return bytes(out)


@dataclass
class Captured:
    """One request as it arrived on the wire."""

    head: bytes
    request_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    framing: str = "none"  # 'content-length', 'chunked' or 'none'
    chunks: list[bytes] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.request_line.split(b" ")[0].decode()

    @property
    def target(self) -> str:
        return self.request_line.split(b" ")[1].decode("latin-1")

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == key]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None


def read_request(sock: stdlib_socket.socket, timeout: float = 5) -> Captured | None:
    """Read one request (head and body, by its own framing); None at a clean EOF."""
    head = helpers.read_request_head(sock, timeout=timeout)
    if not head:
        return None
    assert head.endswith(b"\r\n\r\n"), f"incomplete request head: {head!r}"
    lines = head[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep and name == name.strip(), f"malformed header line {line!r}"
        headers.append((name, value.strip()))
    req = Captured(head, lines[0], headers)
    reader = _Reader(sock)
    with gevent.Timeout(timeout, TimeoutError("request body not complete in time")):
        te = req.get_all("transfer-encoding")
        cl = req.get_all("content-length")
        if te:
            assert te == ["chunked"], te
            req.framing = "chunked"
            while True:
                size_line = reader.line()
                assert size_line.endswith(b"\r\n"), size_line
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                data = reader.exact(size)
                req.chunks.append(data)
                assert reader.exact(2) == b"\r\n"
            while True:
                line = reader.line()
                if line == b"\r\n":
                    break
                name, _, value = line.rstrip(b"\r\n").partition(b":")
                req.trailers.append((name, value.strip()))
            req.body = b"".join(req.chunks)
        elif cl:
            req.framing = "content-length"
            req.body = reader.exact(int(cl[0]))
    return req


# ------------------------------------------------------------------- peers


@dataclass
class Capture:
    """A scripted TLS (or plain) server that records every request it reads."""

    port: int
    requests: list[Captured]
    connections: list[Any]

    @property
    def last(self) -> Captured:
        assert self.requests, "the server received no request"
        return self.requests[-1]


def start_capture(
    script_server: Any,
    response: bytes | Callable[[Captured], bytes] = OK_CLOSE,
    *,
    keep_alive: bool = False,
    tls: bool = True,
    ssl_context: Any = None,
) -> Capture:
    """Start a capture server; it answers each request with ``response`` (bytes, or a
    function of the request) and closes after one unless ``keep_alive``."""
    cap = Capture(0, [], [])

    def handler(sock: Any) -> None:
        cap.connections.append(sock)
        while True:
            req = read_request(sock)
            if req is None:
                return
            cap.requests.append(req)
            sock.sendall(response(req) if callable(response) else response)
            if not keep_alive:
                return

    cap.port = script_server(handler, tls=tls, ssl_context=ssl_context)
    return cap


def wait_for(predicate: Callable[[], object], timeout: float = 5, what: str = "condition") -> None:
    """Poll ``predicate`` cooperatively until it is true."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not predicate():
            gevent.sleep(0.005)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(name="serve")
def serve_fixture(tls_options: dict[str, bytes]) -> Iterator[Callable[..., Any]]:
    """Factory: ``serve(handler, **server_options) -> Server`` listening on 127.0.0.1:0.

    TLS with the session CA's localhost certificate; closed at teardown.
    """
    import greenhttps

    servers: list[Any] = []

    def start(handler: Callable[..., Any], **options: Any) -> Any:
        server = greenhttps.create_server({**tls_options, **options}, handler).listen(0, "127.0.0.1")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    gevent.sleep(0)


@pytest.fixture(name="serve_http")
def serve_http_fixture() -> Iterator[Callable[..., Any]]:
    """Factory: ``serve_http(handler, **options) -> greenhttps.http Server``."""
    import greenhttps.http

    servers: list[Any] = []

    def start(handler: Callable[..., Any], **options: Any) -> Any:
        server = greenhttps.http.create_server(options, handler).listen(0, "127.0.0.1")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    gevent.sleep(0)


@pytest.fixture(autouse=True, name="_clean_global_agents")
def clean_global_agents_fixture() -> Iterator[None]:
    """Close what the global agents pooled, so no test sees another's sockets."""
    yield
    import greenhttps
    import greenhttps.http

    greenhttps.global_agent.destroy()
    greenhttps.http.global_agent.destroy()


def port_of(server: Any) -> int:
    port: int = server.address()["port"]
    return port


def closed_port() -> int:
    """A loopback port nobody listens on (bound then closed)."""
    return helpers.free_port()
