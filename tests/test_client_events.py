"""Client event order and pool release, as Node 20 does them (issue 16, B-59/62/66/82/85).

Every case crosses a real TLS socket on 127.0.0.1.  The expected orders were taken
from Node 20 on the same scenarios (``node`` running http.get against a server
that answers, cuts the body short, or hangs up), not only from the docs table:

    success              socket response data end close res.close
    premature close      socket response data res.aborted close res.close
    abort after response socket response data abort res.aborted close res.close
    hang-up before head  socket error(socket hang up, ECONNRESET) close
    abort before end     close abort   (no socket, no request on the server)
"""

from __future__ import annotations

from typing import Any

import gevent
import gevent.event
import pytest
from client_support import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    Captured,
    clean_global_agents_fixture,
    port_of,
    read_request,
    serve_fixture,
    wait_for,
)

import greenhttps
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)

BODY = b"0123456789" * 50


def url(port: int, path: str = "/") -> str:
    return f"https://localhost:{port}{path}"


def name_of(agent: greenhttps.Agent, port: int, ca_pem: bytes) -> str:
    return agent.get_name({"host": "localhost", "port": port, "ca": ca_pem})


def record(req: Any, log: list[str], on_response: Any = None) -> None:
    """Log the request's and its response's events, in order, into ``log``."""
    req.on("socket", lambda s: log.append("socket"))
    req.on("abort", lambda: log.append("abort"))
    req.on("error", lambda e: log.append(f"error:{e}"))
    req.on("close", lambda: log.append("close"))

    def on_res(res: Any) -> None:
        log.append("response")
        res.on("data", lambda c: log.append("data") if not log[-1] == "data" else None)
        res.on("end", lambda: log.append("end"))
        res.on("aborted", lambda: log.append("res.aborted"))
        res.on("close", lambda: log.append("res.close"))
        if on_response is not None:
            on_response(req, res)

    req.on("response", on_res)


def wait_closed(log: list[str], what: str = "res.close") -> None:
    wait_for(lambda: what in log, what=what)
    gevent.sleep(0.05)  # nothing else may follow


# ============================================================ B-82 order


def test_success_order_and_the_response_closes(serve: Any, ca_pem: bytes) -> None:
    """B-82 success row (doc/api/http.md; Node 20: ..., res 'end', req 'close', res 'close')."""
    port = port_of(serve(lambda req, res: res.end(BODY)))
    agent = greenhttps.Agent(keep_alive=True)
    log: list[str] = []
    req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    record(req, log)
    req.end()
    wait_closed(log)
    assert log == ["socket", "response", "data", "end", "close", "res.close"]
    agent.destroy()


def test_blocking_style_gets_the_same_order(serve: Any, ca_pem: bytes) -> None:
    """getresponse() then read(): 'end', req 'close', res 'close', and the socket is
    back in the pool as read() returns (no greenlet per request on this path)."""
    port = port_of(serve(lambda req, res: res.end(BODY)))
    agent = greenhttps.Agent(keep_alive=True)
    name = name_of(agent, port, ca_pem)
    log: list[str] = []
    req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    req.on("close", lambda: log.append("close"))
    res = req.getresponse()
    res.on("end", lambda: log.append(f"end:{len(agent.sockets.get(name, ()))}:{name in agent.free_sockets}"))
    res.on("close", lambda: log.append("res.close"))
    assert res.read() == BODY
    assert log == ["end:1:False", "close", "res.close"]
    assert name not in agent.sockets and len(agent.free_sockets[name]) == 1
    agent.destroy()


def test_premature_close_after_response_order(script_server: Any, ca_pem: bytes) -> None:
    """B-82 premature-close row (Node 20: ..., res 'aborted', req 'close', res 'close'; no req 'error')."""
    def handler(sock: Any) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        gevent.sleep(0.05)

    port = script_server(handler, tls=True)
    log: list[str] = []
    req = greenhttps.request(url(port), ca=ca_pem, agent=greenhttps.Agent(keep_alive=True))
    record(req, log)
    req.end()
    wait_closed(log)
    assert log == ["socket", "response", "data", "res.aborted", "close", "res.close"]


def test_abort_after_response_order(script_server: Any, ca_pem: bytes) -> None:
    """B-82 abort-after-response row (Node 20: 'abort', res 'aborted', req 'close', res 'close')."""
    def handler(sock: Any) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        sock.recv(1)

    port = script_server(handler, tls=True)
    agent = greenhttps.Agent(keep_alive=True)
    log: list[str] = []
    req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    record(req, log, on_response=lambda req, res: res.once("data", lambda c: req.abort()))
    req.end()
    wait_closed(log)
    assert log == ["socket", "response", "data", "abort", "res.aborted", "close", "res.close"]
    assert agent.total_socket_count == 0 and agent.sockets == {}


# ============================================================ B-62 pool lifecycle


def test_keep_alive_free_socket_lifecycle(serve: Any, ca_pem: bytes) -> None:
    """B-62 (test-http-agent-keepalive.js): in use during 'data'/'end', free one tick
    after 'end', reused by the next request."""
    port = port_of(serve(lambda req, res: res.end(BODY)))
    agent = greenhttps.Agent(keep_alive=True, keep_alive_msecs=1000, max_sockets=5, max_free_sockets=5)
    name = name_of(agent, port, ca_pem)
    sockets = []
    for _ in range(2):
        seen: list[tuple[str, int, bool]] = []
        done = gevent.event.Event()

        def on_response(res: Any, seen: list[tuple[str, int, bool]] = seen, done: Any = done) -> None:
            def state(event: str) -> None:
                seen.append((event, len(agent.sockets.get(name, ())), name in agent.free_sockets))

            res.on("data", lambda chunk: state("data"))
            res.on("end", lambda: (state("end"), gevent.get_hub().loop.run_callback(done.set)))

        req = greenhttps.get(url(port), on_response, ca=ca_pem, agent=agent)
        assert done.wait(5)
        assert seen and all(entry[1:] == (1, False) for entry in seen), seen
        assert seen[-1][0] == "end"
        # one tick after 'end'
        assert name not in agent.sockets and len(agent.free_sockets[name]) == 1
        sockets.append(req.socket)
    assert sockets[0] is sockets[1]
    agent.destroy()


def test_server_ending_an_idle_pooled_socket_drops_it_promptly(script_server: Any, ca_pem: bytes) -> None:
    """B-62: the server ends an idle pooled socket -> within 200 ms the free entry is gone
    (watched while parked, not found dead at the next request)."""
    def handler(sock: Any) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        gevent.sleep(0.2)  # then the socket is closed by the script server

    port = script_server(handler, tls=True)
    agent = greenhttps.Agent(keep_alive=True)
    name = name_of(agent, port, ca_pem)
    assert greenhttps.get(url(port), ca=ca_pem, agent=agent).read() == b"ok"
    assert len(agent.free_sockets[name]) == 1
    gevent.sleep(0.2 + 0.2)
    assert name not in agent.free_sockets
    assert agent.total_socket_count == 0
    agent.destroy()


def test_hang_up_before_response_error_sees_the_socket_listed(script_server: Any, ca_pem: bytes) -> None:
    """B-62 / B-82 hang-up row: the server destroys before responding -> 'error'
    "socket hang up" (ECONNRESET) with ``sockets[name]`` length 1 at that moment,
    both entries gone after 'close'."""
    def handler(sock: Any) -> None:
        read_request(sock)

    port = script_server(handler, tls=True)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=5, max_free_sockets=5)
    name = name_of(agent, port, ca_pem)
    log: list[str] = []
    at_error: list[int] = []
    req = greenhttps.request(url(port), ca=ca_pem, agent=agent)
    req.on("socket", lambda s: log.append("socket"))
    req.on("response", lambda res: log.append("response"))

    def on_error(err: Any) -> None:
        log.append(f"error:{err.args[0]}:{err.code}")
        at_error.append(len(agent.sockets.get(name, ())))

    req.on("error", on_error)
    req.on("close", lambda: log.append("close"))
    req.end()
    wait_for(lambda: "close" in log, what="'close'")
    assert log == ["socket", "error:socket hang up:ECONNRESET", "close"]
    assert at_error == [1]
    assert name not in agent.sockets and name not in agent.free_sockets
    assert agent.total_socket_count == 0


# ============================================================ B-66 / B-59 queueing


def test_socket_destroyed_in_end_is_not_handed_to_the_queued_request(serve: Any, ca_pem: bytes) -> None:
    """B-66 (test-http-agent-destroyed-socket.js): Agent(max_sockets=1); request 2 waits
    in ``agent.requests`` while response 1 arrives; request 1's socket destroyed in
    its 'end' listener -> request 2 gets a different, live socket, queue entry gone."""
    port = port_of(serve(lambda req, res: res.end(BODY)))
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)
    name = name_of(agent, port, ca_pem)
    queued_during_response: list[int] = []
    first_socket: list[Any] = []
    req2_holder: list[Any] = []

    def on_response1(res: Any) -> None:
        wait_for(lambda: agent.requests.get(name), what="request 2 to queue")
        queued_during_response.append(len(agent.requests.get(name, ())))
        first_socket.append(res.socket)
        res.on("end", lambda: res.socket.destroy())
        res.resume()

    def second() -> None:
        req2 = greenhttps.request(url(port), ca=ca_pem, agent=agent)
        req2_holder.append(req2)
        req2.end()  # waits in the agent's queue for the only slot

    req1 = greenhttps.request(url(port), on_response1, ca=ca_pem, agent=agent)
    req1.end()  # holds the only slot (the head is sent)
    g = gevent.spawn(second)
    g.join(5)
    assert g.successful() and req2_holder
    res2 = req2_holder[0].getresponse(timeout=5000)
    assert res2.read() == BODY
    assert queued_during_response == [1]
    assert req2_holder[0].socket is not first_socket[0]
    assert first_socket[0].destroyed
    assert req2_holder[0].reused_socket is False
    assert name not in agent.requests
    agent.destroy()


def test_max_sockets_queue_is_visible_in_agent_requests(serve: Any, ca_pem: bytes) -> None:
    """B-59 (test-http-keep-alive.js): Agent(max_sockets=1), three GETs: at the
    responses ``sockets[name]`` is 1 and ``requests[name]`` 2, 1, then absent."""
    port = port_of(serve(lambda req, res: res.end("ok")))
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)
    name = name_of(agent, port, ca_pem)
    seen: list[tuple[int, int]] = []

    def one() -> None:
        res = greenhttps.get(url(port), ca=ca_pem, agent=agent)
        seen.append((len(agent.sockets.get(name, ())), len(agent.requests.get(name, ()))))
        gevent.sleep(0.05)  # let the others queue behind this one
        res.read()

    greenlets = [gevent.spawn(one) for _ in range(3)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert seen == [(1, 2), (1, 1), (1, 0)]
    assert name not in agent.requests and name not in agent.sockets
    assert agent.total_socket_count == 1
    agent.destroy()


# ============================================================ B-85 abort before end


def test_abort_before_end_sends_nothing(script_server: Any, ca_pem: bytes) -> None:
    """B-85 (test-http-abort-before-end.js): ``req.abort(); req.end()`` -> no 'error',
    and the server never gets a connection or a request.  Node 20: 'close', 'abort'."""
    requests: list[Captured] = []
    connections: list[int] = []

    def handler(sock: Any) -> None:
        connections.append(1)
        req = read_request(sock)
        if req is not None:
            requests.append(req)

    port = script_server(handler, tls=True)
    log: list[str] = []
    req = greenhttps.request(url(port), ca=ca_pem, agent=greenhttps.Agent(keep_alive=True))
    req.abort()
    record(req, log)  # Node emits on the next tick: listeners added after abort() count
    req.end()
    gevent.sleep(0.3)
    assert log == ["close", "abort"]
    assert connections == [] and requests == []
    with pytest.raises(errors.ConnectionResetError):
        req.getresponse(timeout=1000)


def test_blocking_style_releases_inside_read_without_a_reader_greenlet(
    serve: Any, ca_pem: bytes, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The keep-alive client path: getresponse() + read() with no listener spawns no
    reader greenlet, and the socket is free the moment read() returns."""
    port = port_of(serve(lambda req, res: res.end(BODY)))
    agent = greenhttps.Agent(keep_alive=True)
    name = name_of(agent, port, ca_pem)
    spawned: list[int] = []
    original = greenhttps.ClientRequest._start_reader
    monkeypatch.setattr(greenhttps.ClientRequest, "_start_reader",
                        lambda self: (spawned.append(1), original(self))[-1])
    for _ in range(10):
        res = greenhttps.get(url(port), ca=ca_pem, agent=agent)
        assert res.read() == BODY
        assert name not in agent.sockets and len(agent.free_sockets[name]) == 1
    assert spawned == []
    assert agent.total_socket_count == 1
    agent.destroy()
