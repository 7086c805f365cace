"""Client parity with Node 20 (issue 17): the client items, over real TLS sockets.

Each test names the Node test file it mirrors; where the behaviour crosses the wire
the expected bytes or values were taken from Node 20 (v20.20.2) running the same
scenario against a raw server (noted in the docstring as "checked with Node 20").
"""

from __future__ import annotations

import base64
from typing import Any

import gevent
import gevent.event
import pytest
from client_support import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    OK_CLOSE,
    OK_KEEP,
    clean_global_agents_fixture,
    closed_port,
    port_of,
    read_request,
    serve_fixture,
    start_capture,
    wait_for,
)

import greenhttps
import greenhttps.http
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)


def url(port: int, path: str = "/") -> str:
    return f"https://localhost:{port}{path}"


# =====================================================================
# request(url, options, callback)
# =====================================================================


def test_request_takes_url_then_options_then_callback(script_server: Any, ca_pem: bytes) -> None:
    """Node >= 10.9's ``https.request(url, options, callback)``: the options object
    is merged over the URL (options win), the callback is the 'response' listener.
    Mirrors test/parallel/test-http-client-request-options.js (and
    test-https-request-arguments.js); checked with Node 20: the server sees
    ``POST /u`` with the option's header and the URL's host and port."""
    cap = start_capture(script_server)
    got = gevent.event.AsyncResult()
    req = greenhttps.request(url(cap.port, "/u"), {"method": "POST", "headers": {"x": "1"}, "ca": ca_pem},
                             lambda res: got.set(res))
    req.end("abc")
    res = got.get(timeout=5)
    assert res.read() == b"ok"
    assert cap.last.request_line == b"POST /u HTTP/1.1"
    assert cap.last.get("x") == "1" and cap.last.body == b"abc"
    assert cap.last.get("host") == f"localhost:{cap.port}"
    # get() takes the same three arguments; keyword options still win over both.
    got2 = gevent.event.AsyncResult()
    greenhttps.get(url(cap.port, "/g"), {"path": "/from-options", "ca": ca_pem}, lambda res: got2.set(res))
    assert got2.get(timeout=5).read() == b"ok"
    assert cap.last.request_line == b"GET /from-options HTTP/1.1"
    res3 = greenhttps.get(url(cap.port, "/g"), {"path": "/from-options", "ca": ca_pem}, path="/kw")
    assert res3.read() == b"ok" and cap.last.request_line == b"GET /kw HTTP/1.1"


def test_request_url_options_bad_combinations() -> None:
    """Options after the URL must be a dict; a callback must be callable (Node:
    ERR_INVALID_ARG_TYPE).  Nothing is sent."""
    with pytest.raises(errors.InvalidArgumentError) as info:
        greenhttps.request("https://localhost:1/", "not options")
    assert info.value.code == "ERR_INVALID_ARG_TYPE"
    with pytest.raises(errors.InvalidArgumentError) as info:
        greenhttps.request("https://localhost:1/", {}, "not callable")
    assert info.value.code == "ERR_INVALID_ARG_TYPE"


# =====================================================================
# B-50: headers as a list of pairs
# =====================================================================


def test_headers_as_pairs_keep_repeats_and_suppress_implicit_host_and_auth(script_server: Any, ca_pem: bytes) -> None:
    """B-50, mirrors test/parallel/test-http-client-headers-array.js.  Checked with
    Node 20: pairs ``[['cookie','a=1'],['cookie','b=2'],['Host','example.com']]``
    with ``auth`` are sent in order and as given, with no implicit Host and no
    Authorization; a flat list ``['cookie','a=1','cookie','b=2']`` likewise."""
    cap = start_capture(script_server)
    pairs = [("cookie", "a=1"), ("cookie", "b=2"), ("Host", "example.com"), ("X-A", "1"), ("x-a", "2")]
    res = greenhttps.get({"hostname": "localhost", "port": cap.port, "ca": ca_pem, "auth": "foo:bar",
                          "servername": "localhost", "headers": pairs, "agent": False})
    assert res.read() == b"ok"
    assert cap.last.headers[:5] == [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"Host", b"example.com"),
                                    (b"X-A", b"1"), (b"x-a", b"2")]
    assert cap.last.get_all("authorization") == []
    assert cap.last.get_all("host") == ["example.com"]
    # A flat [name, value, name, value] list, as Node also takes: no Host at all.
    greenhttps.get({"hostname": "localhost", "port": cap.port, "ca": ca_pem, "agent": False,
                    "headers": ["cookie", "a=1", "cookie", "b=2"]}).read()
    assert cap.last.get_all("cookie") == ["a=1", "b=2"]
    assert cap.last.get_all("host") == []


def test_object_headers_keep_implicit_host_and_auth(script_server: Any, ca_pem: bytes) -> None:
    """B-50's object half (test-http-client-headers-array.js): object headers get the
    implicit Host and, with ``auth``, Basic Authorization; a cookie list in an
    object is joined with '; ' (checked with Node 20: ``cookie: a=1; b=2; c=3``)."""
    cap = start_capture(script_server)
    greenhttps.get({"hostname": "localhost", "port": cap.port, "ca": ca_pem, "auth": "foo:bar", "agent": False,
                    "headers": {"cookie": ["a=1", "b=2", "c=3"]}}).read()
    assert cap.last.get("host") == f"localhost:{cap.port}"
    assert cap.last.get("authorization") == "Basic " + base64.b64encode(b"foo:bar").decode()
    assert cap.last.get_all("cookie") == ["a=1; b=2; c=3"]


def test_bad_header_lists_are_refused() -> None:
    """An odd-length flat list, or a pair that is not two items: a clear error before
    anything is sent (Node: ERR_INVALID_ARG_VALUE)."""
    for bad in (["cookie"], [("a", "1", "2")], ["a", "1", "b"]):
        with pytest.raises(errors.InvalidArgumentError):
            greenhttps.request("https://localhost:1/", headers=bad)


# =====================================================================
# B-48: Agent.default_port / defaultPort
# =====================================================================


def test_agent_default_port_is_the_port_of_requests_without_one(script_server: Any, ca_pem: bytes) -> None:
    """B-48, mirrors test/parallel/test-http-default-port.js: with the global agent's
    ``defaultPort`` set to the server's port and no ``port`` option, the request
    reaches that port and Host carries no port (checked with Node 20)."""
    cap = start_capture(script_server)
    agent = greenhttps.global_agent
    assert agent.default_port == 443 and agent.defaultPort == 443
    agent.defaultPort = cap.port
    try:
        assert agent.default_port == cap.port
        res = greenhttps.get({"hostname": "localhost", "ca": ca_pem})
        assert res.read() == b"ok"
        assert cap.last.get("host") == "localhost"
        # An agent of one's own, with the snake_case spelling.
        own = greenhttps.Agent()
        own.default_port = cap.port
        greenhttps.get({"hostname": "localhost", "ca": ca_pem, "agent": own}).read()
        assert cap.last.get("host") == "localhost"
    finally:
        del agent.default_port
    assert greenhttps.global_agent.default_port == 443
    assert greenhttps.http.global_agent.defaultPort == 80


# =====================================================================
# B-69: get_name
# =====================================================================


def test_get_name_is_nodes_for_http() -> None:
    """B-69, mirrors test/parallel/test-http-agent-getname.js (the values checked
    with Node 20's ``http.Agent().getName``)."""
    agent = greenhttps.http.Agent()
    assert agent.get_name() == "localhost::"
    assert agent.get_name({}) == "localhost::"
    assert agent.get_name({"port": 80, "localAddress": "192.168.1.1"}) == "localhost:80:192.168.1.1"
    assert agent.get_name({"host": "0.0.0.0", "port": 80, "localAddress": "192.168.1.1"}) == "0.0.0.0:80:192.168.1.1"
    assert agent.get_name({"socketPath": "/tmp/s"}) == "localhost:::/tmp/s"
    assert agent.get_name({"family": 4}) == "localhost:::4"
    assert agent.get_name({"family": 6}) == "localhost:::6"
    for ignored in (0, None):
        assert agent.get_name({"family": ignored}) == "localhost::"
    assert agent.get_name({"host": "h", "port": 1, "family": 4, "localAddress": "x", "socketPath": "/p"}) == "h:1:x:4:/p"
    assert agent.getName({"port": 80}) == "localhost:80:"


def test_get_name_https_has_nodes_tls_segments() -> None:
    """B-69/B-70 (test/parallel/test-https-agent-getname.js): the https name is the
    http one followed by Node 20's 20 TLS segments (checked with Node 20:
    ``{}`` -> ``'localhost::'`` + 20 colons; ``servername 'x'`` is the 8th).  Values
    that are certificates or keys are named by a digest rather than copied."""
    agent = greenhttps.Agent()
    assert agent.get_name({}) == "localhost::" + ":" * 20
    assert agent.get_name({"servername": "x"}) == "localhost::" + ":" * 8 + "x" + ":" * 12
    assert agent.get_name({"servername": "localhost"}) == "localhost::" + ":" * 20  # same as the host
    assert agent.get_name({"rejectUnauthorized": False}) == "localhost::" + ":" * 7 + "false" + ":" * 13
    assert agent.get_name({"ciphers": "HIGH"}) == "localhost::" + ":" * 4 + "HIGH" + ":" * 16
    named = agent.get_name({"ca": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})
    assert named.startswith("localhost:::") and named.endswith(":" * 19) and len(named) < 60
    assert named.count(":") == 22


# =====================================================================
# B-90: connection errors carry syscall, address, port
# =====================================================================


def test_connection_refused_carries_syscall_address_port(ca_pem: bytes) -> None:
    """B-90 (net's ECONNREFUSED, as https.request reports it): checked with Node 20,
    ``code 'ECONNREFUSED'``, ``syscall 'connect'``, ``address '127.0.0.1'``,
    ``port``, message ``'connect ECONNREFUSED 127.0.0.1:<port>'``; the request emits
    'socket' then 'error'."""
    port = closed_port()
    log: list[str] = []
    got = gevent.event.AsyncResult()
    req = greenhttps.request({"host": "127.0.0.1", "port": port, "ca": ca_pem})
    req.on("socket", lambda s: log.append("socket"))
    req.on("error", lambda e: (log.append("error"), got.set(e)))
    req.end()
    err = got.get(timeout=5)
    assert isinstance(err, errors.ConnectionRefusedError)
    assert err.code == "ECONNREFUSED"
    assert err.syscall == "connect" and err.address == "127.0.0.1" and err.port == port
    assert err.message == f"connect ECONNREFUSED 127.0.0.1:{port}"
    with pytest.raises(errors.ConnectionRefusedError) as info:
        greenhttps.get({"host": "127.0.0.1", "port": port, "ca": ca_pem})
    assert (info.value.syscall, info.value.address, info.value.port) == ("connect", "127.0.0.1", port)


def test_name_resolution_error_carries_syscall_and_hostname() -> None:
    """Node 20 for an unknown name: ``code 'ENOTFOUND'``, ``syscall 'getaddrinfo'``,
    ``hostname``, message ``'getaddrinfo ENOTFOUND <host>'`` (checked with Node 20).
    A ``lookup`` that fails stands in for DNS, so the test needs no resolver."""

    def lookup(host: str, port: int, family: int, kind: int) -> Any:
        import socket

        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(errors.NameResolutionError) as info:
        greenhttps.get({"host": "nonexistent.invalid", "port": 443, "lookup": lookup})
    err = info.value
    assert err.code == "ENOTFOUND" and err.syscall == "getaddrinfo" and err.hostname == "nonexistent.invalid"
    assert err.message == "getaddrinfo ENOTFOUND nonexistent.invalid"


# =====================================================================
# B-98 / B-99: CONNECT bodies are raw; 'close' after 'connect'/'upgrade'
# =====================================================================


def test_connect_body_is_not_chunked_and_request_closes(script_server: Any, ca_pem: bytes) -> None:
    """B-98, mirrors test/parallel/test-http-connect.js.  Checked with Node 20: the
    server reads ``CONNECT google.com:443 HTTP/1.1`` then exactly ``Head`` (no chunk
    size, no Transfer-Encoding), the client gets 'connect' (not 'response'), the
    tunnel carries ``Body``, and the request emits 'close' after 'connect'."""
    seen: dict[str, Any] = {}

    def handler(sock: Any) -> None:
        req = read_request(sock)
        assert req is not None
        seen["req"] = req
        seen["head"] = sock.recv(100)
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        data = sock.recv(100)
        sock.sendall(b"echo:" + data)
        sock.recv(1)

    port = script_server(handler, tls=True)
    agent = greenhttps.Agent(keep_alive=True)
    log: list[str] = []
    done = gevent.event.AsyncResult()
    req = greenhttps.request({"hostname": "localhost", "port": port, "method": "CONNECT", "path": "google.com:443",
                              "ca": ca_pem, "agent": agent})
    req.on("response", lambda res: log.append("response"))
    req.on("close", lambda: (log.append("close"), done.set(True)))

    def on_connect(res: Any, sock: Any, head: bytes) -> None:
        log.append("connect")
        sock.write(b"Body")
        assert sock.recv(100) == b"echo:Body"
        sock.destroy()

    req.on("connect", on_connect)
    req.write("Head")
    req.end()
    done.get(timeout=5)
    assert log == ["connect", "close"]
    captured = seen["req"]
    assert captured.request_line == b"CONNECT google.com:443 HTTP/1.1"
    assert captured.get_all("transfer-encoding") == [] and captured.get_all("content-length") == []
    assert seen["head"] == b"Head"
    assert agent.sockets == {} and agent.requests == {} and agent.total_socket_count == 0


def test_upgrade_emits_close_after_upgrade(script_server: Any, ca_pem: bytes) -> None:
    """B-99, mirrors test/parallel/test-http-upgrade-client.js: a raw 101 with
    ``hello: world``; 'upgrade' gets the headers and the bytes past the head
    (upgradeHead + later socket data == 'nurtzo'), then req 'close'.  Headers
    given as an object and as a list of pairs."""
    def handler(sock: Any) -> None:
        if read_request(sock) is None:
            return
        sock.sendall(b"HTTP/1.1 101 Ok\r\nhello: world\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nnurt")
        gevent.sleep(0.05)
        sock.sendall(b"zo")
        sock.recv(1)

    for headers in ({"Connection": "upgrade", "Upgrade": "websocket"},
                    [("Host", "localhost"), ("Connection", "upgrade"), ("Upgrade", "websocket")]):
        port = script_server(handler, tls=True)
        log: list[str] = []
        done = gevent.event.AsyncResult()
        req = greenhttps.request({"hostname": "localhost", "port": port, "ca": ca_pem, "headers": headers})

        def on_upgrade(res: Any, sock: Any, head: bytes) -> None:
            log.append("upgrade")
            assert res.headers == {"hello": "world", "connection": "upgrade", "upgrade": "websocket"}
            data = head
            while len(data) < 6:
                data += sock.recv(10)
            assert data == b"nurtzo"
            sock.destroy()

        req.on("upgrade", on_upgrade)
        req.on("close", lambda: (log.append("close"), done.set(True)))
        req.end()
        done.get(timeout=5)
        assert log == ["upgrade", "close"]


# =====================================================================
# IncomingMessage.pause() / resume()
# =====================================================================


def test_pause_and_resume_on_each_chunk(serve: Any, ca_pem: bytes) -> None:
    """B-45, mirrors test/parallel/test-https-truncate.js: a client that pauses and
    resumes on each 'data' receives exactly 32769 bytes, then 'end'.  While paused
    no 'data' is emitted; ``is_paused()`` says so."""
    body = b"x" * 32769
    port = port_of(serve(lambda req, res: res.end(body)))
    got = gevent.event.AsyncResult()
    received: list[bytes] = []
    states: list[bool] = []

    def on_response(res: Any) -> None:
        def on_data(chunk: bytes) -> None:
            received.append(chunk)
            res.pause()
            states.append(res.is_paused())
            gevent.spawn_later(0.001, res.resume)

        res.on("data", on_data)
        res.on("end", lambda: got.set(b"".join(received)))

    greenhttps.get(url(port), on_response, ca=ca_pem)
    assert len(got.get(timeout=10)) == 32769
    assert states and all(states)


def test_paused_response_emits_nothing_until_resumed(serve: Any, ca_pem: bytes) -> None:
    """Node's readable pause(): a response paused in its 'response' listener emits
    no 'data' (and no 'end') until resume(); then the whole body flows."""
    port = port_of(serve(lambda req, res: res.end("hello")))
    got = gevent.event.AsyncResult()
    log: list[Any] = []
    holder: dict[str, Any] = {}

    def on_response(res: Any) -> None:
        holder["res"] = res
        res.pause()
        res.on("data", log.append)
        res.on("end", lambda: got.set(True))

    greenhttps.get(url(port), on_response, ca=ca_pem)
    wait_for(lambda: "res" in holder, what="response")
    gevent.sleep(0.1)
    assert log == [] and holder["res"].is_paused()
    holder["res"].resume()
    got.get(timeout=5)
    assert log == [b"hello"] and not holder["res"].is_paused()


# =====================================================================
# B-22: 'timeout' once per idle period
# =====================================================================


@pytest.mark.parametrize("reader", ["none", "response-listener"])
def test_timeout_option_emits_once_per_idle_period(script_server: Any, ca_pem: bytes, reader: str) -> None:
    """B-22, mirrors test/parallel/test-http-client-timeout-option.js: ``timeout: 1``
    (ms), ``end()`` 10 ms later, a persistent 'timeout' listener that does not
    destroy the request: exactly one 'timeout' by 100 ms (checked with Node 20:
    1 by 100 ms, still 1 by 400 ms while the server is silent); then destroy() ->
    'close'.  With or without a 'response' listener (Node's test has none)."""

    def handler(sock: Any) -> None:
        read_request(sock)
        sock.recv(1)  # silent until the client goes

    port = script_server(handler, tls=True)
    count: list[int] = []
    closed = gevent.event.Event()
    req = greenhttps.request({"hostname": "localhost", "port": port, "ca": ca_pem, "timeout": 1})
    req.on("timeout", lambda: count.append(1))
    req.on("close", closed.set)
    req.on("error", lambda e: None)
    if reader == "response-listener":
        req.on("response", lambda res: None)  # a greenlet waits for the head
    gevent.sleep(0.01)
    req.end()
    gevent.sleep(0.1)
    assert len(count) == 1
    gevent.sleep(0.2)
    assert len(count) == 1
    req.destroy()
    assert closed.wait(5)
