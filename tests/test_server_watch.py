"""The connection sees its peer while the handler works (greenhttps/_watch.py).

While a handler sleeps, blocks or computes, the server still learns that its peer
closed or reset, still keeps the idle clock (Node's ``socketOnTimeout``), and keeps
bytes that arrive meanwhile for the next read.  Real sockets, real TLS; timings have
generous margins (a vanished peer must be noticed within a second).

Node references: test/parallel/test-http-server-request-timeout-*.js and
test-https-timeout-server-2.js (timeouts), test-http-client-abort.js (B-84: the
server's request emits 'aborted'), test-https-close.js (B-10), and Node 20 run on
the same bytes for the close-while-handling case (the response emits 'close' at
once, destroyed; the request, read to its end, is not 'aborted').
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import gevent.event
import pytest

import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)

REQ = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def port_of(srv: Any) -> int:
    return int(srv.address()["port"])


def connect(srv: Any, tls: bool = True) -> Any:
    return helpers.raw_connect(port_of(srv), tls=tls, timeout=5)


def vanish(sock: Any, how: str) -> None:
    """The client goes away: a FIN, a reset, or TLS close_notify then FIN."""
    if how == "rst":
        helpers.rst_close(sock)
        return
    if how == "close_notify":
        try:
            sock._sslobj.shutdown()  # SSL_shutdown once: ours goes out, theirs is not awaited
        except (OSError, ValueError):
            pass
    sock.close()


class Recorder:
    """Events seen by the handler, with the time each came."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []
        self.errors: list[BaseException] = []
        self.done = gevent.event.Event()

    def __call__(self, name: str) -> Any:
        return lambda *args: self.events.append((name, time.monotonic()))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def when(self, name: str) -> float:
        return next(t for n, t in self.events if n == name)


# ------------------------------------------------------------ a peer that vanishes


@pytest.mark.parametrize(("tls", "how"), [(True, "fin"), (True, "rst"), (True, "close_notify"),
                                          (False, "fin"), (False, "rst")])
def test_a_peer_that_vanishes_is_noticed_while_the_handler_sleeps(make_server: Any, tls: bool, how: str) -> None:
    seen = Recorder()
    state: dict[str, Any] = {}

    def handler(req: Any, res: Any) -> None:
        res.on("close", seen("res close"))
        req.on("aborted", seen("req aborted"))
        state["res"], state["req"] = res, req
        seen("handler")()
        gevent.sleep(3)  # long after the peer has gone
        try:
            res.write("late")
        except BaseException as exc:
            seen.errors.append(exc)
        seen.done.set()

    srv = make_server(handler, tls=tls)
    sock = connect(srv, tls)
    sock.sendall(REQ)
    with gevent.Timeout(3):
        while "handler" not in seen.names():
            gevent.sleep(0.01)
    gone = time.monotonic()
    vanish(sock, how)
    with gevent.Timeout(3):
        while "res close" not in seen.names():
            gevent.sleep(0.01)
    assert seen.when("res close") - gone < 1.0
    res, req = state["res"], state["req"]
    assert res.closed and res.destroyed and not res.finished
    # Node: a request whose body was never read to its end is aborted (abortIncoming).
    assert req.aborted and "req aborted" in seen.names()
    assert seen.done.wait(5)
    assert len(seen.errors) == 1 and isinstance(seen.errors[0], errors.ConnectionResetError), seen.errors
    assert seen.errors[0].code == "ECONNRESET"


def test_a_request_read_to_its_end_is_not_aborted_when_the_peer_goes(make_server: Any) -> None:
    """Node 20 on the same bytes: res 'close' (destroyed), no req 'aborted'."""
    seen = Recorder()
    state: dict[str, Any] = {}

    def handler(req: Any, res: Any) -> None:
        req.on("aborted", seen("req aborted"))
        res.on("close", seen("res close"))
        state["req"] = req
        assert req.read() == b""
        seen("handler")()
        gevent.sleep(3)

    srv = make_server(handler)
    sock = connect(srv)
    sock.sendall(REQ)
    with gevent.Timeout(3):
        while "handler" not in seen.names():
            gevent.sleep(0.01)
    sock.close()
    with gevent.Timeout(2):
        while "res close" not in seen.names():
            gevent.sleep(0.01)
    assert "req aborted" not in seen.names() and not state["req"].aborted


def test_an_incomplete_body_is_aborted_when_the_peer_goes(make_server: Any) -> None:
    seen = Recorder()

    def handler(req: Any, res: Any) -> None:
        req.on("aborted", seen("req aborted"))
        seen("handler")()
        gevent.sleep(3)  # never reads the body

    srv = make_server(handler)
    sock = connect(srv)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    with gevent.Timeout(3):
        while "handler" not in seen.names():
            gevent.sleep(0.01)
    gone = time.monotonic()
    sock.close()
    with gevent.Timeout(3):
        while "req aborted" not in seen.names():
            gevent.sleep(0.01)
    assert seen.when("req aborted") - gone < 1.0


def test_a_handler_that_computes_can_tell_its_peer_is_gone(make_server: Any) -> None:
    """A busy handler polls ``res.closed`` between slices of work (each slice lets
    the hub run) and stops early, without writing."""
    noticed: list[float] = []
    started = gevent.event.Event()

    def handler(req: Any, res: Any) -> None:
        started.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            sum(range(20000))  # a slice of work
            gevent.sleep(0)
            if res.closed:
                noticed.append(time.monotonic())
                return
        res.end("done")

    srv = make_server(handler)
    sock = connect(srv)
    sock.sendall(REQ)
    assert started.wait(3)
    gevent.sleep(0.1)
    gone = time.monotonic()
    sock.close()
    with gevent.Timeout(3):
        while not noticed:
            gevent.sleep(0.01)
    assert noticed[0] - gone < 1.0


# ------------------------------------------------------------ timeouts while the handler blocks


def test_idle_timeout_destroys_the_socket_under_a_blocked_handler(make_server: Any) -> None:
    """No 'timeout' listener anywhere: the socket is destroyed (B-20), the handler's
    next write raises, every other connection is still served."""
    raised: list[BaseException] = []
    finished = gevent.event.Event()

    def handler(req: Any, res: Any) -> None:
        if req.url == "/ok":
            res.end("ok")
            return
        gevent.sleep(2)  # a blocking call that outlives the timeout
        try:
            res.end("late")
        except BaseException as exc:
            raised.append(exc)
        finished.set()

    srv = make_server(handler, timeout=150)
    sock = connect(srv)
    start = time.monotonic()
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert helpers.read_until_eof(sock, 3, reset_ok=True) == b""
    elapsed = time.monotonic() - start
    assert 0.1 <= elapsed < 1.0, elapsed
    sock.close()
    assert finished.wait(4)
    assert len(raised) == 1 and isinstance(raised[0], errors.TimeoutError) and raised[0].code == "ETIMEDOUT"
    other = connect(srv)
    other.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert helpers.read_response(other).body == b"ok"
    other.close()


def test_idle_timeout_under_a_blocked_handler_calls_every_listener_once(make_server: Any) -> None:
    """B-17: a complete request gets no 'timeout'; the response, then the server do,
    once for the idle period; with listeners the socket lives and the late
    response arrives."""
    calls: list[tuple[str, float]] = []

    def handler(req: Any, res: Any) -> None:
        req.set_timeout(150, lambda: calls.append(("req", time.monotonic())))
        res.on("timeout", lambda: calls.append(("res", time.monotonic())))
        gevent.sleep(0.8)
        res.end("late")

    srv = make_server(handler, timeout=150)
    srv.on("timeout", lambda sock: calls.append(("server", time.monotonic())))
    sock = connect(srv)
    start = time.monotonic()
    sock.sendall(REQ)
    resp = helpers.read_response(sock)
    sock.close()
    assert resp.body == b"late"
    assert [name for name, _ in calls] == ["res", "server"]
    assert 0.1 <= calls[0][1] - start < 0.6


def test_a_timeout_listener_that_destroys_ends_the_connection(make_server: Any) -> None:
    def handler(req: Any, res: Any) -> None:
        res.set_timeout(100, lambda: res.destroy())
        gevent.sleep(2)

    srv = make_server(handler)
    sock = connect(srv)
    start = time.monotonic()
    sock.sendall(REQ)
    assert helpers.read_until_eof(sock, 3, reset_ok=True) == b""
    assert time.monotonic() - start < 1.0
    sock.close()


def test_the_idle_clock_counts_from_the_last_byte(make_server: Any) -> None:
    """A handler that writes a piece every 100 ms keeps a 250 ms timeout at bay."""
    calls: list[str] = []

    def handler(req: Any, res: Any) -> None:
        for piece in range(6):
            res.write(str(piece))
            gevent.sleep(0.1)
        res.end()

    srv = make_server(handler, timeout=250)
    srv.on("timeout", lambda sock: calls.append("server"))
    sock = connect(srv)
    sock.sendall(REQ)
    resp = helpers.read_response(sock)
    sock.close()
    assert resp.body == b"012345"
    assert calls == []


# ------------------------------------------------------------ bytes that arrive meanwhile


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_pipelined_bytes_that_arrive_while_the_handler_runs_are_kept_in_order(make_server: Any, tls: bool) -> None:
    order: list[str] = []

    def handler(req: Any, res: Any) -> None:
        order.append(req.url)
        if req.url == "/1":
            gevent.sleep(0.4)  # the next requests arrive meanwhile
        res.end(req.url + ":" + req.read().decode())

    srv = make_server(handler, tls=tls)
    sock = connect(srv, tls)
    sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
    gevent.sleep(0.1)
    sock.sendall(b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Le")
    gevent.sleep(0.05)
    sock.sendall(b"ngth: 5\r\n\r\nhel")
    gevent.sleep(0.05)
    sock.sendall(b"loGET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
    responses = [helpers.read_response(sock) for _ in range(3)]
    sock.close()
    assert [r.body for r in responses] == [b"/1:", b"/2:hello", b"/3:"]
    assert order == ["/1", "/2", "/3"]


def test_a_body_sent_while_the_handler_sleeps_is_read_whole(make_server: Any) -> None:
    body = bytes(range(256)) * 200  # 51,200 bytes: below the watch's hold limit

    def handler(req: Any, res: Any) -> None:
        gevent.sleep(0.3)
        res.end(str(len(req.read())))

    srv = make_server(handler)
    sock = connect(srv)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert helpers.read_response(sock).body == str(len(body)).encode()
    sock.close()


def test_a_large_upload_nobody_reads_yet_is_not_lost(make_server: Any) -> None:
    """Past the hold limit the watch stops taking bytes (as Node pauses the socket);
    the handler's later read still gets every byte, in order."""
    body = bytes(range(256)) * 4096  # 1 MiB

    def handler(req: Any, res: Any) -> None:
        gevent.sleep(0.3)
        data = req.read()
        res.end("ok" if data == body else f"bad {len(data)}")

    srv = make_server(handler)
    sock = connect(srv)
    sender = gevent.spawn(sock.sendall, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert helpers.read_response(sock, timeout=10).body == b"ok"
    sender.get(timeout=5)
    sock.close()


# ------------------------------------------------------------ Node's tests


def test_client_aborts_reach_the_server_as_aborted(make_server: Any) -> None:
    """B-84 (test-http-client-abort.js): 8 requests whose responses have started;
    the client goes away from each; the server's request emits 'aborted' 8 times."""
    aborted: list[str] = []
    started = gevent.event.Event()
    count = [0]

    def handler(req: Any, res: Any) -> None:
        req.on("aborted", lambda: aborted.append(req.url))
        res.write_head(200)
        res.write("started")
        count[0] += 1
        if count[0] == 8:
            started.set()
        gevent.sleep(5)  # never ends on its own

    srv = make_server(handler)
    socks = []
    for i in range(8):
        sock = connect(srv)
        sock.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        socks.append(sock)
    assert started.wait(5)
    gone = time.monotonic()
    for sock in socks:
        sock.close()
    with gevent.Timeout(3):
        while len(aborted) < 8:
            gevent.sleep(0.01)
    assert sorted(aborted) == [f"/{i}" for i in range(8)]
    assert time.monotonic() - gone < 1.5


def test_close_completes_once_the_client_destroys_its_connection(make_server: Any) -> None:
    """B-10 (test-https-close.js): a handler that never ends writes every 200 ms;
    ``close()`` waits for the connection, and its callback comes once the client
    has destroyed it."""
    closed = gevent.event.Event()
    first = gevent.event.Event()

    def handler(req: Any, res: Any) -> None:
        res.write_head(200)
        while True:
            res.write("data")
            first.set()
            gevent.sleep(0.2)

    srv = make_server(handler)
    sock = connect(srv)
    sock.sendall(REQ)
    assert first.wait(3)
    srv.close(closed.set)
    gevent.sleep(0.3)
    assert not closed.is_set()  # the connection is still active
    gone = time.monotonic()
    sock.close()
    assert closed.wait(3)
    assert time.monotonic() - gone < 1.0


def test_no_fd_or_greenlet_leaks_after_vanishing_peers(make_server: Any) -> None:
    def handler(req: Any, res: Any) -> None:
        gevent.sleep(0.5)
        res.end("late")

    srv = make_server(handler, timeout=5000)
    helpers.settle()
    fds, greenlets = helpers.open_fds(), helpers.live_greenlets()
    for _ in range(10):
        sock = connect(srv)
        sock.sendall(REQ)
        gevent.sleep(0.05)
        sock.close()
    gevent.sleep(1.0)
    helpers.settle(0.2)
    assert helpers.open_fds() <= fds
    assert helpers.live_greenlets() <= greenlets


# ------------------------------------------------------------ the memory-BIO transport


@pytest.mark.parametrize("how", ["fin", "rst", "close_notify"])
def test_on_memory_bios_a_vanished_peer_is_noticed_too(make_server: Any, monkeypatch: Any, how: str) -> None:
    """``GREENHTTPS_TLS_BIO=1`` servers read through BioSSLSocket.recv_now."""
    from greenhttps import _server

    monkeypatch.setattr(_server, "TLS_ON_MEMORY_BIOS", True)
    test_a_peer_that_vanishes_is_noticed_while_the_handler_sleeps(make_server, True, how)


def test_on_memory_bios_pipelined_bytes_are_kept_in_order(make_server: Any, monkeypatch: Any) -> None:
    from greenhttps import _server

    monkeypatch.setattr(_server, "TLS_ON_MEMORY_BIOS", True)
    test_pipelined_bytes_that_arrive_while_the_handler_runs_are_kept_in_order(make_server, True)
    test_a_large_upload_nobody_reads_yet_is_not_lost(make_server)


def test_secure_connection_socket_timeout_fires_for_an_idle_client(make_server: Any) -> None:
    """B-24 (test-https-timeout-server-2.js): ``set_timeout(50, cb)`` on the socket
    in 'secureConnection' returns the socket, and cb fires for a client that says
    nothing."""
    fired: list[float] = []
    returned: list[Any] = []

    srv = make_server()
    srv.on("secureConnection", lambda sock: returned.append(sock.set_timeout(50, lambda: fired.append(time.monotonic()))))
    sock = connect(srv)
    start = time.monotonic()
    with gevent.Timeout(3):
        while not fired:
            gevent.sleep(0.01)
    assert fired[0] - start < 1.0
    assert returned and returned[0] is not None and hasattr(returned[0], "set_timeout")
    sock.close()


@pytest.mark.parametrize("end", [True, False], ids=["handler-ends", "handler-does-not-end"])
def test_keep_alive_timeout_goes_to_the_server_timeout_listener(make_server: Any, end: bool) -> None:
    """B-25 (test-http-server-keep-alive-timeout.js): keepAliveTimeout 50 ms,
    ``server.set_timeout(500, cb)``; three pipelined GETs.  Node delivers all three
    and then calls cb with the socket (the keep-alive timeout is the socket's
    timeout there, so a listener decides); cb destroys it.  greenhttps delivers
    pipelined requests one at a time (README, differences): when the handler does
    not end its response, only the first is delivered and the idle timeout (500 ms)
    reaches cb instead."""
    count = [0]
    timed_out: list[Any] = []

    def handler(req: Any, res: Any) -> None:
        count[0] += 1
        if end:
            res.end()

    srv = make_server(handler, keep_alive_timeout=50)
    srv.set_timeout(500, lambda sock: (timed_out.append(sock), sock.destroy()))
    sock = connect(srv)
    start = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    helpers.read_until_eof(sock, 5, reset_ok=True)
    sock.close()
    assert len(timed_out) == 1
    assert count[0] == (3 if end else 1)
    assert time.monotonic() - start < 2.0
