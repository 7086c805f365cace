"""Agent: Node's connection pool (names, limits, hand-off, keep-alive, pool safety).

The servers here count what they see (connections open at once, connections in
total, EOFs), so the pool's promises are checked from the other end of the wire,
not from the agent's own bookkeeping alone.
"""

from __future__ import annotations

import gc
import random
import time
import weakref
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.pool
import pytest
from client_support import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    OK_CLOSE,
    OK_KEEP,
    Captured,
    clean_global_agents_fixture,
    port_of,
    read_request,
    serve_fixture,
    serve_http_fixture,
    start_capture,
    wait_for,
)

import greenhttps
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)


class Counter:
    """Connections seen by a server: open now, most open at once, total, EOFs."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.total = 0
        self.eofs = 0
        self.order: list[str] = []
        self.per_conn: list[int] = []

    def opened(self) -> int:
        self.open += 1
        self.total += 1
        self.peak = max(self.peak, self.open)
        self.per_conn.append(0)
        return len(self.per_conn) - 1

    def closed(self) -> None:
        self.open -= 1


def counting_server(
    script_server: Any,
    counter: Counter,
    respond: Callable[[Captured, int, int], bytes | None] | None = None,
    *,
    delay: float = 0.0,
) -> int:
    """A keep-alive TLS script server. ``respond(req, conn_index, nth_on_conn)`` returns the
    bytes to send, or None to close without a byte. Counts connections in ``counter``."""

    def handler(sock: Any) -> None:
        index = counter.opened()
        try:
            while True:
                try:
                    req = read_request(sock)
                except (TimeoutError, OSError):
                    return
                if req is None:
                    counter.eofs += 1
                    return
                counter.order.append(req.target)
                nth = counter.per_conn[index]
                counter.per_conn[index] += 1
                if delay:
                    gevent.sleep(delay)
                out = respond(req, index, nth) if respond else OK_KEEP
                if out is None:
                    return
                sock.sendall(out)
        finally:
            counter.closed()

    port: int = script_server(handler, tls=True)
    return port


def url(port: int, path: str = "/") -> str:
    return f"https://localhost:{port}{path}"


# =====================================================================
# Names
# =====================================================================


def test_get_name_depends_on_tls_options(ca_pem: bytes) -> None:
    agent = greenhttps.Agent()
    base = {"host": "example.org", "port": 443}
    name = agent.get_name(base)
    assert name == agent.get_name(dict(base))
    assert name.startswith("example.org:443:")
    assert agent.get_name({**base, "ca": ca_pem}) == agent.get_name({**base, "ca": ca_pem})
    variants = [
        {**base, "ca": ca_pem},
        {**base, "servername": "other.example"},
        {**base, "rejectUnauthorized": False},
        {**base, "port": 8443},
        {**base, "host": "example.com"},
        {**base, "localAddress": "127.0.0.2"},
        {**base, "family": 6},
    ]
    names = [agent.get_name(v) for v in variants]
    assert name not in names
    assert len(set(names)) == len(names)
    # camelCase and snake_case spell the same options
    assert agent.get_name({**base, "reject_unauthorized": False}) == agent.get_name({**base, "rejectUnauthorized": False})


def test_a_requests_pool_name_is_get_names_and_an_override_is_asked_each_time(ca_pem: bytes) -> None:
    """A request's pool key comes from a per-agent cache by its option values: it
    equals get_name() of those options, differs when one of them differs (a list of
    CAs, unhashable, too), and a get_name() of one's own (a subclass's, or set on
    the agent as Node code sets getName) is called for every request."""
    agent = greenhttps.Agent(keep_alive=True)
    target = "https://localhost:8443/x"
    first = greenhttps.request(target, ca=ca_pem, agent=agent)._name
    assert first == agent.get_name({"host": "localhost", "port": 8443, "servername": "localhost", "ca": ca_pem})
    assert greenhttps.request(target, ca=ca_pem, agent=agent)._name == first
    others = [
        greenhttps.request(target, agent=agent)._name,
        greenhttps.request(target, ca=ca_pem, agent=agent, reject_unauthorized=False)._name,
        greenhttps.request("https://localhost:8444/x", ca=ca_pem, agent=agent)._name,
        greenhttps.request(target, ca=[ca_pem], agent=agent)._name,
    ]
    assert first not in others and len(set(others)) == len(others)

    asked: list[dict[str, Any]] = []

    class Named(greenhttps.Agent):
        def get_name(self, options: Any = None) -> str:
            asked.append(dict(options or {}))
            return "mine"

    named = Named(keep_alive=True)
    assert [greenhttps.request(target, agent=named)._name for _ in range(2)] == ["mine", "mine"]
    assert len(asked) == 2 and asked[0]["host"] == "localhost" and asked[0]["port"] == 8443
    agent.get_name = lambda options=None: "set on the agent"  # type: ignore[method-assign]
    assert greenhttps.request(target, ca=ca_pem, agent=agent)._name == "set on the agent"


def test_requests_with_different_tls_options_use_different_pools(serve: Any, ca_pem: bytes, ca: Any) -> None:
    port = port_of(serve(lambda req, res: res.end("x")))
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.get(url(port), ca=ca_pem, agent=agent).read()
    greenhttps.get(url(port), ca=ca_pem, agent=agent, reject_unauthorized=False).read()
    greenhttps.get(url(port), ca=[ca_pem], agent=agent, servername="localhost").read()
    assert len(agent.free_sockets) == 3
    r = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    r.getresponse().read()
    assert r.reused_socket
    agent.destroy()


def test_pool_dicts_are_keyed_by_name_and_emptied(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter, delay=0.1)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)
    name = agent.get_name({"host": "localhost", "port": port, "ca": ca_pem})
    assert agent.sockets == {} and agent.free_sockets == {} and agent.requests == {}
    pool = gevent.pool.Group()
    results = [pool.spawn(lambda: greenhttps.get(url(port), ca=ca_pem, agent=agent).read()) for _ in range(3)]
    wait_for(lambda: agent.requests and agent.sockets, what="a busy socket and a queued request")
    assert list(agent.sockets) == [name] and len(agent.sockets[name]) == 1
    assert list(agent.requests) == [name] and len(agent.requests[name]) == 2
    assert all(isinstance(r, greenhttps.ClientRequest) for r in agent.requests[name])
    pool.join(timeout=5)
    assert [g.value for g in results] == [b"ok"] * 3
    assert agent.sockets == {} and agent.requests == {}
    assert list(agent.free_sockets) == [name] and len(agent.free_sockets[name]) == 1
    agent.destroy()
    assert agent.free_sockets == {} and agent.total_socket_count == 0


# =====================================================================
# Limits and queueing
# =====================================================================


def test_max_sockets_limits_concurrent_connections(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter, delay=0.02)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=2)
    pool = gevent.pool.Group()
    jobs = [pool.spawn(lambda i=i: greenhttps.get(url(port, f"/{i}"), ca=ca_pem, agent=agent).read()) for i in range(20)]
    pool.join(timeout=10)
    assert [j.value for j in jobs] == [b"ok"] * 20
    assert counter.peak <= 2
    assert counter.total == 2  # the two sockets carried all twenty
    assert agent.total_socket_count == 2 and agent.requests == {} and agent.sockets == {}
    agent.destroy()


def test_queued_requests_are_served_fifo(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter, delay=0.01)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)
    pool = gevent.pool.Group()
    for i in range(10):
        pool.spawn(lambda i=i: greenhttps.get(url(port, f"/{i}"), ca=ca_pem, agent=agent).read())
    pool.join(timeout=10)
    assert counter.order == [f"/{i}" for i in range(10)]
    agent.destroy()


def test_freed_socket_goes_straight_to_the_next_waiter(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter, delay=0.02)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)
    free_seen: list[int] = []
    reqs: list[Any] = []

    def fetch(i: int) -> bytes:
        req = greenhttps.request(url(port, f"/{i}"), ca=ca_pem, agent=agent)
        reqs.append(req)
        body: bytes = req.getresponse().read()
        free_seen.append(sum(map(len, agent.free_sockets.values())))
        return body

    pool = gevent.pool.Group()
    jobs = [pool.spawn(fetch, i) for i in range(5)]
    pool.join(timeout=10)
    assert [j.value for j in jobs] == [b"ok"] * 5
    assert counter.total == 1
    # while requests were waiting the socket never sat in free_sockets
    assert free_seen[:4] == [0, 0, 0, 0]
    assert [r.reused_socket for r in reqs] == [False, True, True, True, True]
    assert len({id(r.socket) for r in reqs}) == 1
    agent.destroy()


def test_max_total_sockets_across_origins(script_server: Any, ca_pem: bytes) -> None:
    counters = [Counter(), Counter()]
    ports = [counting_server(script_server, c, delay=0.02) for c in counters]
    agent = greenhttps.Agent(keep_alive=True, max_total_sockets=1)
    seen_total: list[int] = []
    agent_open: list[int] = []

    def fetch(i: int) -> bytes:
        res = greenhttps.get(url(ports[i % 2], f"/{i}"), ca=ca_pem, agent=agent)
        seen_total.append(counters[0].open + counters[1].open)
        agent_open.append(agent.total_socket_count)
        return res.read()  # type: ignore[no-any-return]

    pool = gevent.pool.Group()
    jobs = [pool.spawn(fetch, i) for i in range(8)]
    pool.join(timeout=10)
    assert [j.value for j in jobs] == [b"ok"] * 8
    assert max(agent_open) <= 1
    assert counters[0].order and counters[1].order  # both origins were served
    agent.destroy()


def test_max_free_sockets(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter, delay=0.05)
    agent = greenhttps.Agent(keep_alive=True, max_free_sockets=1)
    pool = gevent.pool.Group()
    for i in range(3):
        pool.spawn(lambda i=i: greenhttps.get(url(port, f"/{i}"), ca=ca_pem, agent=agent).read())
    pool.join(timeout=5)
    assert counter.total == 3
    assert sum(map(len, agent.free_sockets.values())) == 1
    wait_for(lambda: counter.eofs == 2, what="two surplus sockets to be closed")
    assert agent.total_socket_count == 1
    agent.destroy()
    wait_for(lambda: counter.eofs == 3, what="the pooled socket to be closed by destroy()")


def test_max_free_sockets_zero_pools_nothing(script_server: Any, ca_pem: bytes) -> None:
    """``max_free_sockets=0``: a finished keep-alive connection is closed, never
    parked, also for the first one of an origin (no free list for it yet)."""
    counter = Counter()
    port = counting_server(script_server, counter)
    agent = greenhttps.Agent(keep_alive=True, max_free_sockets=0)
    for i in range(2):
        assert greenhttps.get(url(port, f"/{i}"), ca=ca_pem, agent=agent).read()
        assert agent.free_sockets == {} and agent.total_socket_count == 0
    assert counter.total == 2
    wait_for(lambda: counter.eofs == 2, what="both connections closed by the agent")
    agent.destroy()


# =====================================================================
# Connection header and pooling policy
# =====================================================================


def test_keep_alive_false_sends_close_and_does_not_pool(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter)
    agent = greenhttps.Agent()  # keep_alive=False, max_sockets=inf
    for _ in range(2):
        req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
        res = req.getresponse()
        assert res.read() == b"ok"
        assert req.reused_socket is False
    assert counter.total == 2
    assert agent.free_sockets == {} and agent.sockets == {} and agent.total_socket_count == 0
    wait_for(lambda: counter.eofs == 2, what="both sockets closed by the client")


def test_connection_header_rules(script_server: Any, ca_pem: bytes) -> None:
    cap = start_capture(script_server, OK_CLOSE)

    def sent_connection(**kw: Any) -> str | None:
        greenhttps.get(url(cap.port), ca=ca_pem, **kw).read()
        return cap.last.get("connection")

    assert sent_connection(agent=greenhttps.Agent()) == "close"
    assert sent_connection(agent=False) == "close"
    assert sent_connection(agent=greenhttps.Agent(keep_alive=True)) == "keep-alive"
    assert sent_connection(agent=greenhttps.Agent(max_sockets=2)) == "keep-alive"  # Node's rule
    assert sent_connection() == "keep-alive"  # the global agent keeps alive
    assert sent_connection(headers={"Connection": "close"}, agent=greenhttps.Agent(keep_alive=True)) == "close"


def test_agent_false_is_a_one_off_connection(serve: Any, ca_pem: bytes) -> None:
    conns: list[Any] = []
    srv = serve(lambda req, res: res.end(req.headers.get("connection", "")))
    srv.on("connection", conns.append)
    port = port_of(srv)
    closed = []
    for _ in range(2):
        req = greenhttps.request(url(port), ca=ca_pem, agent=False)
        res = req.getresponse()
        assert res.read() == b"close"
        assert not req.reused_socket
        closed.append(req.socket)
    assert len(conns) == 2
    wait_for(lambda: all(s.destroyed for s in conns), what="server sockets to close")
    assert greenhttps.global_agent.free_sockets == {}


def test_global_agent_is_keep_alive_and_honours_tls_options(serve: Any, ca_pem: bytes) -> None:
    assert greenhttps.global_agent is greenhttps.globalAgent
    assert greenhttps.global_agent.keep_alive is True and greenhttps.global_agent.timeout == 5000
    port = port_of(serve(lambda req, res: res.end("g")))
    r1 = greenhttps.request(url(port), ca=ca_pem)
    assert r1.getresponse().read() == b"g"
    assert r1.agent is greenhttps.global_agent
    r2 = greenhttps.request(url(port), ca=ca_pem)
    r2.getresponse().read()
    assert r2.reused_socket
    # TLS options are not ignored by the global agent: no ca -> certifi -> rejected
    with pytest.raises(errors.CertificateError):
        greenhttps.get(url(port))


def test_free_socket_timeout_closes_idle_sockets(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter)
    agent = greenhttps.Agent(keep_alive=True, timeout=200)
    greenhttps.get(url(port), ca=ca_pem, agent=agent).read()
    assert sum(map(len, agent.free_sockets.values())) == 1
    start = time.monotonic()
    wait_for(lambda: counter.eofs == 1, what="the idle pooled socket to be closed")
    assert time.monotonic() - start < 1.5
    assert agent.free_sockets == {} and agent.total_socket_count == 0


def test_busy_agent_keeps_one_sweeper_and_still_expires_sockets(script_server: Any, ca_pem: bytes) -> None:
    """A connection that goes free and is taken again on every request must not start
    a sweeper greenlet per request, and the idle timeout must still hold afterwards."""
    counter = Counter()
    port = counting_server(script_server, counter)
    agent = greenhttps.Agent(keep_alive=True, timeout=300)
    greenhttps.get(url(port), ca=ca_pem, agent=agent).read()
    sweeper = agent._sweeper
    assert sweeper is not None
    for _ in range(20):
        greenhttps.get(url(port), ca=ca_pem, agent=agent).read()
        gevent.sleep(0)  # let a freshly spawned sweeper (the old bug) run and exit
        assert agent._sweeper is sweeper
    assert counter.eofs == 0  # one connection, reused throughout
    start = time.monotonic()
    wait_for(lambda: counter.eofs == 1, what="the idle pooled socket to be closed")
    assert time.monotonic() - start < 1.5
    assert agent.free_sockets == {} and agent.total_socket_count == 0


def test_free_socket_without_timeout_stays_open(script_server: Any, ca_pem: bytes) -> None:
    """Negative control for the idle timeout."""
    counter = Counter()
    port = counting_server(script_server, counter)
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.get(url(port), ca=ca_pem, agent=agent).read()
    gevent.sleep(0.4)
    assert counter.eofs == 0 and sum(map(len, agent.free_sockets.values())) == 1
    agent.destroy()


def test_server_keep_alive_hint_shortens_pooling(script_server: Any, ca_pem: bytes) -> None:
    """``Keep-Alive: timeout=1`` -> the socket is not reused past (1 - 1) s, as Node 20."""
    counter = Counter()
    port = counting_server(
        script_server, counter, lambda r, i, n: b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok"
    )
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.get(url(port), ca=ca_pem, agent=agent).read()
    gevent.sleep(0.05)
    req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    req.getresponse().read()
    assert req.reused_socket is False
    assert counter.total == 2
    agent.destroy()


@pytest.mark.parametrize(("scheduling", "expect_second"), [("lifo", True), ("fifo", False)])
def test_scheduling_lifo_vs_fifo(script_server: Any, ca_pem: bytes, scheduling: str, expect_second: bool) -> None:
    counter = Counter()
    port = counting_server(script_server, counter, lambda r, i, n: (gevent.sleep(0.1 if r.target == "/b" else 0), OK_KEEP)[1])
    agent = greenhttps.Agent(keep_alive=True, scheduling=scheduling)
    ports: dict[str, int] = {}

    def fetch(path: str) -> None:
        req = greenhttps.request(url(port, path), ca=ca_pem, agent=agent)
        req.getresponse().read()
        ports[path] = req.socket.local_port

    a = gevent.spawn(fetch, "/a")  # released first
    b = gevent.spawn(fetch, "/b")  # released second
    gevent.joinall([a, b], timeout=5, raise_error=True)
    assert ports["/a"] != ports["/b"]
    req = greenhttps.request(url(port, "/c"), ca=ca_pem, agent=agent)
    req.getresponse().read()
    assert req.reused_socket
    assert req.socket.local_port == (ports["/b"] if expect_second else ports["/a"])
    agent.destroy()


def test_invalid_scheduling_and_limits() -> None:
    """B-67 (test-http-agent-maxtotalsockets.js) and Node's validateOneOf for
    ``scheduling``: Node's codes, on ValueError subclasses (checked against Node 20)."""
    with pytest.raises(ValueError) as info:
        greenhttps.Agent(scheduling="random")
    assert info.value.code == "ERR_INVALID_ARG_VALUE"  # type: ignore[attr-defined]
    with pytest.raises(ValueError) as info:
        greenhttps.Agent(max_sockets=0.5)
    assert info.value.code == "ERR_OUT_OF_RANGE"  # type: ignore[attr-defined]
    with pytest.raises(errors.InvalidArgumentError) as info2:
        greenhttps.Agent(max_total_sockets="test")
    assert info2.value.code == "ERR_INVALID_ARG_TYPE"
    for bad in (float("nan"), -1, 0, 0.5):
        with pytest.raises(errors.InvalidArgumentError) as info2:
            greenhttps.Agent(maxTotalSockets=bad)
        assert info2.value.code == "ERR_OUT_OF_RANGE" and "It must be >= 1" in str(info2.value)
    assert greenhttps.Agent(max_total_sockets=float("inf")).max_total_sockets == float("inf")
    assert greenhttps.Agent(max_sockets=0).max_sockets == float("inf")  # Node: `maxSockets || Infinity`


def test_destroy_closes_free_and_busy_sockets(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    release = gevent.event.Event()

    def respond(req: Captured, i: int, n: int) -> bytes:
        if req.target == "/hold":
            release.wait(5)
        return OK_KEEP

    port = counting_server(script_server, counter, respond)
    agent = greenhttps.Agent(keep_alive=True)
    held = greenhttps.request(url(port, "/hold"), ca=ca_pem, agent=agent)
    errs: list[Any] = []
    held.on("error", errs.append)
    held.end()
    wait_for(lambda: agent.sockets, what="a busy socket")
    greenhttps.get(url(port, "/free"), ca=ca_pem, agent=agent).read()
    assert counter.open == 2 and agent.sockets and agent.free_sockets
    agent.destroy()
    release.set()
    wait_for(lambda: counter.open == 0, what="the server to see both sockets close")
    assert agent.sockets == {} and agent.free_sockets == {}
    with pytest.raises(errors.Error):
        held.getresponse(timeout=2000)


# =====================================================================
# Pool safety
# =====================================================================


def test_socket_closed_by_server_is_not_handed_out(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    agent = greenhttps.Agent(keep_alive=True)

    def close_after_one(sock: Any) -> None:
        # answers as keep-alive, then closes right after the response
        counter.opened()
        try:
            req = read_request(sock)
            if req is not None:
                counter.order.append(req.target)
                sock.sendall(OK_KEEP)
        finally:
            counter.closed()

    port = script_server(close_after_one, tls=True)
    greenhttps.get(url(port, "/1"), ca=ca_pem, agent=agent).read()
    wait_for(lambda: counter.open == 0, what="the server to close")
    gevent.sleep(0.02)
    # B-62: the free socket is watched while parked, so the server's close drops it
    # at once (the liveness check at take time stays as a second line of defence).
    assert sum(map(len, agent.free_sockets.values())) == 0
    req = greenhttps.request(url(port, "/2"), ca=ca_pem, agent=agent)
    assert req.getresponse().read() == b"ok"
    assert req.reused_socket is False
    assert counter.total == 2 and counter.order == ["/1", "/2"]
    agent.destroy()


def test_greenhttps_server_keep_alive_timeout(serve: Any, ca_pem: bytes) -> None:
    conns: list[Any] = []
    srv = serve(lambda req, res: res.end("k"), keep_alive_timeout=100)
    srv.on("connection", conns.append)
    port = port_of(srv)
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.get(url(port), ca=ca_pem, agent=agent).read()
    wait_for(lambda: conns and conns[0].destroyed, what="the server's keep-alive timeout")
    gevent.sleep(0.02)
    for _ in range(3):
        req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
        assert req.getresponse().read() == b"k"
    assert len(conns) == 2
    agent.destroy()


def _close_second_on_reused(req: Captured, conn: int, nth: int) -> bytes | None:
    """First request on a connection: 200; a later one: close without a byte."""
    return OK_KEEP if nth == 0 else None


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_idempotent_request_is_retried_once_on_a_stale_socket(script_server: Any, ca_pem: bytes, method: str) -> None:
    counter = Counter()
    port = counting_server(
        script_server, counter,
        lambda r, c, n: (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" if n == 0 else None),
    )
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.get(url(port, "/first"), ca=ca_pem, agent=agent).read()
    req = greenhttps.request(url(port, "/again"), ca=ca_pem, agent=agent, method=method)
    if method == "PUT":
        req.end(b"payload")
    res = req.getresponse()
    assert res.status_code == 200
    res.read()
    assert counter.order == ["/first", "/again", "/again"]
    assert counter.total == 2
    assert agent.sockets == {}
    agent.destroy()


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_request_is_not_retried(script_server: Any, ca_pem: bytes, method: str) -> None:
    counter = Counter()
    port = counting_server(script_server, counter, _close_second_on_reused)
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.get(url(port, "/first"), ca=ca_pem, agent=agent).read()
    req = greenhttps.request(url(port, "/post"), ca=ca_pem, agent=agent, method=method)
    req.end(b"body")
    with pytest.raises(errors.ConnectionResetError) as info:
        req.getresponse()
    assert info.value.code == "ECONNRESET"
    assert req.reused_socket is True
    assert counter.order == ["/first", "/post"]
    assert counter.total == 1
    assert agent.total_socket_count == 0 and agent.sockets == {}


def test_retry_happens_only_once(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    # only the very first request of the server is answered
    port = counting_server(script_server, counter, lambda r, c, n: OK_KEEP if c == 0 and n == 0 else None)
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.get(url(port, "/first"), ca=ca_pem, agent=agent).read()
    with pytest.raises(errors.ConnectionResetError):
        greenhttps.get(url(port, "/x"), ca=ca_pem, agent=agent)
    assert counter.order == ["/first", "/x", "/x"]
    assert agent.total_socket_count == 0


def test_fresh_connection_failing_is_not_retried(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter, lambda r, c, n: None)
    with pytest.raises(errors.ConnectionResetError):
        greenhttps.get(url(port, "/x"), ca=ca_pem, agent=greenhttps.Agent(keep_alive=True))
    assert counter.order == ["/x"]


def test_response_with_unread_body_keeps_its_socket(script_server: Any, ca_pem: bytes) -> None:
    counter = Counter()
    port = counting_server(script_server, counter)
    agent = greenhttps.Agent(keep_alive=True)
    res1 = greenhttps.get(url(port, "/1"), ca=ca_pem, agent=agent)  # body not read
    req2 = greenhttps.request(url(port, "/2"), ca=ca_pem, agent=agent)
    assert req2.getresponse().read() == b"ok"
    assert req2.reused_socket is False and counter.total == 2
    assert res1.read() == b"ok"  # the first response is still intact
    assert sum(map(len, agent.free_sockets.values())) == 2
    agent.destroy()


@pytest.mark.parametrize(
    "response",
    [
        OK_KEEP + b"XX",  # bytes after the declared body
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\n\r\nok",  # close-delimited
    ],
)
def test_response_that_cannot_be_followed_is_not_pooled(script_server: Any, ca_pem: bytes, response: bytes) -> None:
    counter = Counter()

    def handler(sock: Any) -> None:
        counter.opened()
        try:
            req = read_request(sock)
            if req is None:
                return
            counter.order.append(req.target)
            sock.sendall(response)
            if response.endswith(b"\r\n\r\nok") and b"Length" not in response:
                return  # close-delimited body: the close ends it
            if read_request(sock) is not None:
                sock.sendall(b"HTTP/1.1 500 Reused\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
        finally:
            counter.closed()

    port = script_server(handler, tls=True)
    agent = greenhttps.Agent(keep_alive=True)
    assert greenhttps.get(url(port, "/1"), ca=ca_pem, agent=agent).read() == b"ok"
    assert agent.free_sockets == {}
    req = greenhttps.request(url(port, "/2"), ca=ca_pem, agent=agent)
    res = req.getresponse()
    assert res.status_code == 200 and res.read() == b"ok"
    assert req.reused_socket is False
    agent.destroy()


def _trickle(sock: Any, counter: Counter) -> None:
    """Keep-alive server whose responses trickle: head, then 6 bytes 20 ms apart."""
    counter.opened()
    try:
        while True:
            req = read_request(sock)
            if req is None:
                return
            counter.order.append(req.target)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
            for b in b"slow..":
                gevent.sleep(0.02)
                sock.sendall(bytes([b]))
    except OSError:
        pass
    finally:
        counter.closed()


@pytest.mark.parametrize("where", ["library", "user"])
def test_killed_greenlets_leak_no_slots(script_server: Any, ca_pem: bytes, where: str) -> None:
    """HARDENING #62. ``library``: kills land while greenhttps waits (dialing, queued,
    reading); ``user``: they land in user code between two reads of the body, where
    only the abandoned request's finalizer can give the slot back."""
    counter = Counter()
    port = script_server(lambda sock: _trickle(sock, counter), tls=True)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=3)
    rng = random.Random(7)

    held: list[int] = []

    def victim(i: int) -> None:
        req = greenhttps.request(url(port, f"/{i}"), ca=ca_pem, agent=agent)
        req.on("socket", lambda s: held.append(agent.total_socket_count))
        res = req.getresponse()
        if where == "library":
            res.read()
        else:
            for _ in res:
                gevent.sleep(0.005)

    def with_timeout(i: int) -> None:
        try:
            with gevent.Timeout(rng.uniform(0.01, 0.3)):
                victim(i)
        except gevent.Timeout:
            pass

    pool = gevent.pool.Group()
    greenlets = [pool.spawn(with_timeout if i % 2 else victim, i) for i in range(100)]
    gevent.sleep(0.25)
    for g in greenlets[::2]:
        g.kill(block=False)
    pool.join(timeout=10)
    assert all(g.dead for g in greenlets)
    if where == "user":
        # A killed greenlet keeps its GreenletExit, whose traceback holds the
        # victim's frames; a real program drops dead greenlets, so do we. Requests
        # and responses refer to each other (a cycle): collect.
        del greenlets
        gc.collect()
        gevent.sleep(0)  # the finalizers give the connections back on the next turn
    # nothing in use, nothing waiting; free sockets are fine
    assert agent.sockets == {} and agent.requests == {}
    assert agent.total_socket_count == sum(map(len, agent.free_sockets.values())) <= 3
    assert held and max(held) <= 3  # counted by the client: the server sees closes late
    start = time.monotonic()
    with gevent.Timeout(3):
        assert greenhttps.get(url(port, "/after"), ca=ca_pem, agent=agent).read() == b"slow.."
    assert time.monotonic() - start < 2
    agent.destroy()
    wait_for(lambda: counter.open == 0, what="all server-side connections closed")


def test_abort_does_not_leak_a_slot(script_server: Any, ca_pem: bytes) -> None:
    """nodejs/node#4050: maxSockets not respected after abort."""
    counter = Counter()
    port = counting_server(script_server, counter, delay=0.05)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=2)
    pool = gevent.pool.Group()
    done: list[Any] = []
    held: list[int] = []

    def fetch(i: int) -> None:
        req = greenhttps.request(url(port, f"/{i}"), ca=ca_pem, agent=agent)
        req.on("error", lambda e: None)
        # counted by the client: the server may notice an aborted socket late
        req.on("socket", lambda s: held.append(agent.total_socket_count))
        if i % 3 == 0:
            req.end()
            gevent.sleep(0.01)
            req.abort()
            return
        done.append(req.getresponse().read())

    for i in range(30):
        pool.spawn(fetch, i)
    pool.join(timeout=10)
    assert done == [b"ok"] * 20
    assert len(held) == 30 and max(held) <= 2
    assert agent.sockets == {} and agent.requests == {}
    agent.destroy()


# =====================================================================
# The crawler shape
# =====================================================================


def test_crawler_thousand_gets_through_ten_sockets(serve: Any, ca_pem: bytes) -> None:
    state = {"open": 0, "peak": 0, "total": 0}

    def on_connection(sock: Any) -> None:
        state["open"] += 1
        state["total"] += 1
        state["peak"] = max(state["peak"], state["open"])

        def on_close(*_: Any) -> None:
            state["open"] -= 1

        sock.on("close", on_close)

    srv = serve(lambda req, res: res.end(req.url))
    srv.on("connection", on_connection)
    port = port_of(srv)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=10)
    bodies: list[bytes] = []

    def worker(w: int) -> None:
        for i in range(10):
            res = greenhttps.get(url(port, f"/{w}/{i}"), ca=ca_pem, agent=agent)
            bodies.append(res.read())

    start = time.monotonic()
    pool = gevent.pool.Pool(100)
    for w in range(100):
        pool.spawn(worker, w)
    pool.join(timeout=15, raise_error=True)
    elapsed = time.monotonic() - start
    assert len(bodies) == 1000
    assert sorted(bodies) == sorted(f"/{w}/{i}".encode() for w in range(100) for i in range(10))
    assert state["peak"] <= 10
    assert state["total"] <= 10
    assert elapsed < 10
    agent.destroy()
    wait_for(lambda: state["open"] == 0, what="server sockets to close after destroy()")


# =====================================================================
# Agent(options): request options as defaults (the seed's shape)
# =====================================================================


def test_seed_shape_agent_built_from_request_options(serve: Any, ca_pem: bytes, client_cert: dict[str, bytes]) -> None:
    def handler(req: Any, res: Any) -> None:
        res.write_head(200)
        res.end(f"{req.method} {req.url} {req.socket.authorized}")

    port = port_of(serve(handler, request_cert=True, reject_unauthorized=True, ca=ca_pem))
    options: dict[str, Any] = {
        "hostname": "localhost", "port": port, "path": "/", "method": "GET",
        "key": client_cert["key"], "cert": client_cert["cert"], "ca": ca_pem,
    }
    options["agent"] = greenhttps.Agent(options)
    got = gevent.event.AsyncResult()
    chunks: list[bytes] = []

    def on_response(res: Any) -> None:
        res.on("data", chunks.append)
        res.on("end", lambda: got.set(res.status_code))

    req = greenhttps.request(options, on_response)
    req.end()
    errs: list[Any] = []
    req.on("error", errs.append)
    assert got.get(timeout=5) == 200
    assert b"".join(chunks) == b"GET / True"
    assert errs == []
    options["agent"].destroy()


def test_agent_tls_options_are_defaults_for_its_requests(serve: Any, ca_pem: bytes, other_ca: Any) -> None:
    port = port_of(serve(lambda req, res: res.end("d")))
    agent = greenhttps.Agent(keep_alive=True, ca=ca_pem)
    assert greenhttps.get(url(port), agent=agent).read() == b"d"
    # a request's own option wins over the agent's default
    with pytest.raises(errors.CertificateError):
        greenhttps.get(url(port), agent=agent, ca=other_ca.cert_pem.bytes())
    # and the agent without its default trusts certifi only
    with pytest.raises(errors.CertificateError):
        greenhttps.get(url(port), agent=greenhttps.Agent())
    agent.destroy()


def test_node_spellings_of_the_agent_surface(serve: Any, ca_pem: bytes) -> None:
    port = port_of(serve(lambda req, res: res.end("n")))
    agent = greenhttps.Agent({"keepAlive": True, "maxSockets": 2, "maxFreeSockets": 4, "maxTotalSockets": 9})
    assert (agent.keepAlive, agent.maxSockets, agent.maxFreeSockets, agent.maxTotalSockets) == (True, 2, 4, 9)
    assert agent.getName({"host": "a", "port": 1}) == agent.get_name({"host": "a", "port": 1})
    r1 = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    r1.getresponse().read()
    r2 = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    r2.getresponse().read()
    assert r2.reusedSocket is True and r1.reusedSocket is False
    assert agent.freeSockets == agent.free_sockets and len(agent.freeSockets) == 1
    assert agent.totalSocketCount == 1
    agent.destroy()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_finished_exchange_is_freed_by_reference_counting(serve: Any, ca_pem: bytes, method: str) -> None:
    """The response keeps its request (``res.req``); once the body has ended the
    request keeps the response only weakly, so that dropping the response frees both
    at once instead of leaving a cycle per exchange to the garbage collector (about
    20 objects a request, ~6% of keep-alive throughput)."""
    port = port_of(serve(lambda req, res: res.end("body")))
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.request(url(port), ca=ca_pem, agent=agent, method=method).getresponse().read()
    gc.collect()
    gc.disable()
    try:
        req = greenhttps.request(url(port), ca=ca_pem, agent=agent, method=method)
        res = req.getresponse()
        assert res.read() == (b"body" if method == "GET" else b"")
        assert req.reused_socket and res.req is req
        assert req.res is res and req.getresponse() is res  # while the caller holds it
        gevent.sleep(0)  # callbacks the loop still holds for this turn
        refs = [weakref.ref(req), weakref.ref(res)]
        del req, res
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()
    agent.destroy()


def test_a_released_response_is_not_handed_out_again(serve: Any, ca_pem: bytes) -> None:
    port = port_of(serve(lambda req, res: res.end("once")))
    agent = greenhttps.Agent(keep_alive=True)
    req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    assert req.getresponse().read() == b"once"  # read to its end, then dropped
    assert req.res is None
    with pytest.raises(errors.Error) as info:
        req.getresponse()
    assert info.value.code == "ERR_GREENHTTPS_RESPONSE_RELEASED"
    agent.destroy()


def test_keep_alive_exchanges_leave_no_cyclic_garbage(serve: Any, ca_pem: bytes) -> None:
    """Both halves in this process: neither the server's nor the client's side of a
    finished keep-alive exchange is a reference cycle, so nothing is left for the
    garbage collector (whose passes over ~20 objects a request cost the client ~6%)."""
    def handler(req: Any, res: Any) -> None:
        body = req.read()
        res.end(b"got " + body)

    port = port_of(serve(handler))
    agent = greenhttps.Agent(keep_alive=True)

    def exchange(i: int) -> None:
        if i % 2:
            req = greenhttps.request(url(port), ca=ca_pem, agent=agent, method="POST")
            req.end(b"x" * i)
            assert req.getresponse().read() == b"got " + b"x" * i
        else:
            assert greenhttps.get(url(port), ca=ca_pem, agent=agent).text() == "got "

    for i in range(4):  # the first dial, session caching, lazy imports
        exchange(i)
    gevent.sleep(0.05)
    gc.collect()
    gc.disable()
    try:
        for i in range(40):
            exchange(i)
        gevent.sleep(0.05)  # the server's side finishes after the client has read
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0
    assert agent.total_socket_count == 1
    agent.destroy()


# =====================================================================
# Retry only after the peer closed (issue 17's first defect)
# =====================================================================


@pytest.mark.parametrize("how", ["timeout_option", "getresponse_timeout"])
def test_client_timeout_on_a_reused_socket_is_not_retried(serve: Any, ca_pem: bytes, how: str) -> None:
    """A keep-alive agent, one request to warm the socket, then ``/slow`` with a
    300 ms timeout against a handler that takes 2 s: the server sees ``/slow`` once
    and the error comes after ~0.3 s (the retry-once rule is for a socket the peer
    closed, never for the client's own timeout)."""
    seen: list[str] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.url)
        if req.url == "/slow":
            gevent.sleep(2)
        res.end("ok")

    port = port_of(serve(handler))
    agent = greenhttps.Agent(keep_alive=True)
    greenhttps.get(url(port, "/warm"), ca=ca_pem, agent=agent).read()
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError):
        if how == "timeout_option":
            greenhttps.get({"hostname": "localhost", "port": port, "path": "/slow", "timeout": 300,
                            "ca": ca_pem, "agent": agent})
        else:
            greenhttps.request(url(port, "/slow"), ca=ca_pem, agent=agent).getresponse(timeout=300)
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 1.2, elapsed
    gevent.sleep(0.3)
    assert seen == ["/warm", "/slow"]
    assert agent.total_socket_count == 0
    agent.destroy()
