"""The client's connection sees the server while nobody reads the response body.

A caller holds a response (``getresponse()`` returned its head) and has not read the
body yet: the connection still learns that the server closed or reset it, and keeps
the request's idle clock (the server side of this is tests/test_server_watch.py).
Node's order for a body cut short (doc/api/http.md, B-82): res 'aborted', req
'close', res 'close', without anyone reading.  A scripted TLS server on 127.0.0.1
writes the exact bytes.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import gevent.event
import pytest

import greenhttps
import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)

HEAD_100 = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"


def read_head(sock: Any) -> None:
    helpers.read_request_head(sock)


def held_response(port: int, ca_pem: bytes, **options: Any) -> tuple[Any, Any, list[str]]:
    """A response whose head has arrived, and the events it and its request emit."""
    events: list[str] = []
    req = greenhttps.request(f"https://localhost:{port}/", ca=ca_pem, agent=greenhttps.Agent(keep_alive=True),
                             **options)
    req.on("close", lambda: events.append("close"))
    res = req.getresponse()
    res.on("aborted", lambda: events.append("res.aborted"))
    res.on("close", lambda: events.append("res.close"))
    res.on("end", lambda: events.append("end"))
    return req, res, events


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_a_body_cut_short_is_aborted_without_a_reader(script_server: Any, ca_pem: bytes, how: str) -> None:
    closed_at: list[float] = []

    def handler(sock: Any) -> None:
        read_head(sock)
        sock.sendall(HEAD_100 + b"x" * 10)
        gevent.sleep(0.3)  # the client holds the response meanwhile
        closed_at.append(time.monotonic())
        if how == "rst":
            helpers.rst_close(sock)

    port = script_server(handler, tls=True)
    req, res, events = held_response(port, ca_pem)
    with gevent.Timeout(3):
        while "res.close" not in events:
            gevent.sleep(0.01)
    assert time.monotonic() - closed_at[0] < 1.0
    assert events == ["res.aborted", "close", "res.close"]
    assert res.aborted and not res.complete
    with pytest.raises(errors.ConnectionResetError):
        res.read()


def test_a_whole_body_then_close_waits_for_its_reader(script_server: Any, ca_pem: bytes) -> None:
    """The server sends all 100 bytes and closes: nothing is aborted, the body is
    read whole later, and 'end' comes with that read."""

    def handler(sock: Any) -> None:
        read_head(sock)
        sock.sendall(HEAD_100)
        gevent.sleep(0.2)
        sock.sendall(b"y" * 100)

    port = script_server(handler, tls=True)
    req, res, events = held_response(port, ca_pem)
    gevent.sleep(0.8)  # long after the close
    assert events == []
    assert res.read() == b"y" * 100
    assert events == ["end", "close", "res.close"]


def test_a_close_delimited_body_is_whole_at_the_close(script_server: Any, ca_pem: bytes) -> None:
    def handler(sock: Any) -> None:
        read_head(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst ")
        gevent.sleep(0.2)
        sock.sendall(b"second")

    port = script_server(handler, tls=True)
    req, res, events = held_response(port, ca_pem)
    gevent.sleep(0.6)
    assert "res.aborted" not in events
    assert res.read() == b"first second"
    assert not res.aborted


def test_an_unread_body_on_an_idle_socket_times_out(script_server: Any, ca_pem: bytes) -> None:
    """The request's ``timeout`` counts while the caller holds the response unread;
    with no 'timeout' listener the response is aborted with ETIMEDOUT."""
    release = gevent.event.Event()

    def handler(sock: Any) -> None:
        read_head(sock)
        sock.sendall(HEAD_100 + b"x" * 10)
        release.wait(5)

    port = script_server(handler, tls=True)
    start = time.monotonic()
    req, res, events = held_response(port, ca_pem, timeout=150)
    with gevent.Timeout(3):
        while "res.close" not in events:
            gevent.sleep(0.01)
    assert time.monotonic() - start < 1.0
    assert res.aborted
    with pytest.raises(errors.TimeoutError):
        res.read()
    release.set()


def test_an_unread_body_with_a_timeout_listener_is_only_told(script_server: Any, ca_pem: bytes) -> None:
    release = gevent.event.Event()

    def handler(sock: Any) -> None:
        read_head(sock)
        sock.sendall(HEAD_100 + b"x" * 10)
        release.wait(5)
        sock.sendall(b"x" * 90)

    port = script_server(handler, tls=True)
    told: list[float] = []
    req, res, events = held_response(port, ca_pem, timeout=150)
    req.on("timeout", lambda: told.append(time.monotonic()))
    gevent.sleep(0.6)
    assert len(told) == 1  # once for the idle period
    assert not res.aborted
    release.set()
    assert res.read() == b"x" * 100


def test_destroying_the_socket_of_a_watched_response_closes_it_at_once(script_server: Any, ca_pem: bytes) -> None:
    """The watch lets go of the descriptor before it is closed (gevent defers the
    close of a descriptor that still has a watcher): the server sees the close."""
    saw_close: list[float] = []

    def handler(sock: Any) -> None:
        read_head(sock)
        sock.sendall(HEAD_100 + b"x" * 10)
        sock.settimeout(3)
        try:
            data = sock.recv(100)
        except OSError:
            data = b""
        if not data:
            saw_close.append(time.monotonic())

    port = script_server(handler, tls=True)
    req, res, events = held_response(port, ca_pem)
    gevent.sleep(0.1)
    start = time.monotonic()
    res.socket.destroy()
    with gevent.Timeout(3):
        while not saw_close:
            gevent.sleep(0.01)
    assert saw_close[0] - start < 1.0
