"""Client behaviours of Node's catalog that had no test of their own (NODE-BEHAVIOURS
B-8, B-9, B-29, B-56, B-57, B-88, B-89, B-100), each over real sockets against a
greenhttps server, named after the Node test it mirrors.
"""

from __future__ import annotations

import os
import socket as stdlib_socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest

import greenhttps
import greenhttps.http
import helpers
from greenhttps import errors

pytestmark = pytest.mark.timeout(20)


def ipv6_loopback_works() -> bool:
    try:
        with stdlib_socket.socket(stdlib_socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_family_6_reaches_an_ipv6_only_server(make_server: Callable[..., Any], ca_pem: bytes) -> None:
    """B-8, mirrors test/parallel/test-https-connect-address-family.js: a server on
    ``::1`` only, a name that resolves to both families, ``family=6`` → the server sees
    the request from ``::1`` (with the IPv4 address first, it would be refused)."""
    if not ipv6_loopback_works():
        pytest.fail("this machine has no IPv6 loopback (::1), which the test needs")
    seen: list[str] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.socket.remote_address)
        res.end("v6")

    srv = make_server(handler, listen=False)
    srv.listen(0, "::1")
    port = srv.address()["port"]
    asked: list[int] = []

    def lookup(host: str, port: int, family: int, kind: int) -> list[tuple[Any, ...]]:
        asked.append(family)
        both = [(stdlib_socket.AF_INET, kind, 0, "", ("127.0.0.1", port)),
                (stdlib_socket.AF_INET6, kind, 0, "", ("::1", port, 0, 0))]
        return [info for info in both if family in (0, info[0])]

    res = greenhttps.get({"host": "localhost", "port": port, "family": 6, "lookup": lookup, "ca": ca_pem})
    assert res.read() == b"v6"
    assert res.socket.remote_address == "::1" and seen == ["::1"]
    assert asked == [stdlib_socket.AF_INET6]


def test_socket_path_client_and_second_close(make_server: Callable[..., Any], ca_pem: bytes,
                                            tmp_path: Path) -> None:
    """B-9, mirrors test/parallel/test-https-unix-socket-self-signed.js and
    test-http-unix-socket.js: a TLS server on a Unix socket, ``get({socket_path})``
    reaches it (two writes make the body); ``close(cb)`` calls back with no error, a
    second ``close(cb)`` with ``ERR_SERVER_NOT_RUNNING``."""
    def handler(req: Any, res: Any) -> None:
        res.write_head(200, {"Content-Type": "text/plain"})
        res.write("hello ")
        res.end("world\n")

    srv = make_server(handler, listen=False)
    path = str(tmp_path / "s.sock")
    srv.listen(path)
    res = greenhttps.get({"socket_path": path, "hostname": "localhost", "ca": ca_pem, "agent": False})
    assert res.status_code == 200 and res.headers["content-type"] == "text/plain"
    assert res.read() == b"hello world\n"
    first: list[Any] = []
    second: list[Any] = []
    srv.close(lambda *args: first.append(args))
    srv.close(lambda *args: second.append(args))
    with gevent.Timeout(3):
        while not (first and second):
            gevent.sleep(0.01)
    assert first == [()] or first == [(None,)]
    assert getattr(second[0][0], "code", None) == "ERR_SERVER_NOT_RUNNING"


def test_automatic_headers_are_not_fooled_by_look_alike_names(make_server: Callable[..., Any],
                                                              ca_pem: bytes) -> None:
    """B-29, mirrors test/parallel/test-http-automatic-headers.js: ``X-Date``,
    ``X-Connection``, ``X-Content-Length`` set by the handler arrive unchanged, and the
    automatic ``date``, ``connection: keep-alive`` and ``content-length: 0`` are added."""
    def handler(req: Any, res: Any) -> None:
        res.set_header("X-Date", "foo")
        res.set_header("X-Connection", "bar")
        res.set_header("X-Content-Length", "baz")
        res.end()

    srv = make_server(handler)
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)
    try:
        res = greenhttps.get({"hostname": "localhost", "port": srv.address()["port"], "ca": ca_pem, "agent": agent})
        res.read()
        headers = res.headers
        assert (headers["x-date"], headers["x-connection"], headers["x-content-length"]) == ("foo", "bar", "baz")
        assert headers["date"] and headers["connection"] == "keep-alive" and headers["content-length"] == "0"
    finally:
        agent.destroy()


def test_agent_false_with_port_none_falls_back_to_the_default_port() -> None:
    """B-56, mirrors test/parallel/test-http-agent-false.js: ``agent: False`` with
    ``port: None`` does not crash; the port falls back to the default (443 here, where
    nothing listens on the loopback address), so the request errors cleanly."""
    errors_seen: list[BaseException] = []
    responses: list[Any] = []
    req = greenhttps.request({"host": "127.0.0.1", "port": None, "agent": False, "timeout": 2000},
                             responses.append)
    req.on("error", errors_seen.append)
    req.end()
    with gevent.Timeout(5):
        while not (errors_seen or responses):
            gevent.sleep(0.01)
    if errors_seen:
        assert isinstance(errors_seen[0], errors.Error)
        assert ":443" in str(errors_seen[0]) or getattr(errors_seen[0], "port", 443) == 443
    else:
        responses[0].resume()  # something does answer on 443 here: also Node's allowed outcome


def test_socket_options_before_the_socket_exists(make_server: Callable[..., Any], ca_pem: bytes) -> None:
    """B-57, mirrors test/parallel/test-https-socket-options.js: ``set_no_delay``,
    ``set_timeout`` and ``set_socket_keep_alive`` called before the request has a socket
    apply once it is connected, and the request completes."""
    srv = make_server(lambda req, res: res.end("ok"))
    req = greenhttps.request({"hostname": "localhost", "port": srv.address()["port"], "ca": ca_pem,
                              "agent": False})
    timeouts: list[int] = []
    req.set_no_delay(True)  # Node returns undefined from these two, ``this`` from setTimeout
    assert req.set_timeout(1000, lambda: timeouts.append(1)) is req
    req.set_socket_keep_alive(True, 1000)
    req.end()
    res = req.getresponse()
    sock = res.socket  # still open: the body is unread
    assert sock.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY) != 0
    assert sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_KEEPALIVE) != 0
    assert res.read() == b"ok"
    assert timeouts == []


def test_https_client_against_a_plain_http_server_fails_at_once(make_server: Callable[..., Any],
                                                                ca_pem: bytes) -> None:
    """B-88, mirrors test/parallel/test-https-connecting-to-http.js: one ``'error'``
    (a TLS protocol error), no response, no request reaching the server -- and at once,
    not at the server's headers timeout (the plain server answers the ClientHello's
    first byte, as Node's does)."""
    served: list[Any] = []
    srv = make_server(lambda req, res: served.append(req), tls=False)
    errs: list[BaseException] = []
    responses: list[Any] = []
    start = time.monotonic()
    req = greenhttps.request({"hostname": "localhost", "port": srv.address()["port"], "ca": ca_pem,
                              "agent": False}, responses.append)
    req.on("error", errs.append)
    req.end()
    with gevent.Timeout(10):
        while not errs:
            gevent.sleep(0.01)
    gevent.sleep(0.1)
    assert len(errs) == 1 and responses == [] and served == []
    assert time.monotonic() - start < 3


def test_bad_local_address_is_an_error_and_a_good_one_is_the_source(make_server: Callable[..., Any],
                                                                   ca_pem: bytes) -> None:
    """B-89, mirrors test/parallel/test-https-localaddress-bind-error.js and
    test-https-localaddress.js: ``local_address='1.2.3.4'`` → ``'error'`` (bind
    failure), no response; ``local_address='127.0.0.2'`` → the server sees it."""
    seen: list[str] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.socket.remote_address)
        res.end()

    srv = make_server(handler)
    port = srv.address()["port"]
    with pytest.raises(errors.Error) as info:
        greenhttps.get({"hostname": "localhost", "port": port, "ca": ca_pem, "agent": False,
                        "local_address": "1.2.3.4"})
    assert info.value.code == "EADDRNOTAVAIL"
    res = greenhttps.get({"hostname": "localhost", "port": port, "ca": ca_pem, "agent": False,
                          "local_address": "127.0.0.2"})
    res.read()
    assert seen == ["127.0.0.2"]


def test_upgrade_answered_with_200_is_a_normal_response(make_server: Callable[..., Any], ca_pem: bytes) -> None:
    """B-100, mirrors test/parallel/test-https-req-split.js: the server's ``'upgrade'``
    listener fires once and writes ``HTTP/1.1 200 Ok``; the client's request with
    ``Connection: Upgrade`` gets an ordinary response callback."""
    upgrades: list[Any] = []

    def on_upgrade(req: Any, sock: Any, head: bytes) -> None:
        upgrades.append(req.url)
        sock.write(b"HTTP/1.1 200 Ok\r\n\r\n")
        sock.end()

    srv = make_server()
    srv.on("upgrade", on_upgrade)
    got: list[Any] = []
    req = greenhttps.request({"hostname": "localhost", "port": srv.address()["port"], "ca": ca_pem, "agent": False,
                              "headers": {"Connection": "Upgrade", "Upgrade": "Websocket"}}, got.append)
    req.end()
    with gevent.Timeout(5):
        while not got:
            gevent.sleep(0.01)
    assert got[0].status_code == 200 and upgrades == ["/"]


def test_a_stale_cached_session_is_evicted(make_server: Callable[..., Any], ca: Any, ca_pem: bytes) -> None:
    """B-79, mirrors test/parallel/test-https-agent-session-eviction.js: a session
    cached from one server; the server is replaced on the same port by one that cannot
    resume it (another key, TLS 1.3 only where the first spoke 1.2) -> the next request
    still succeeds, with a full handshake, and the agent then holds the new session."""
    first = make_server(lambda req, res: res.end("one"), max_version="TLSv1.2")
    port = first.address()["port"]
    agent = greenhttps.Agent()  # keep_alive=False: every request dials anew
    res = greenhttps.get({"hostname": "localhost", "port": port, "ca": ca_pem, "agent": agent})
    assert res.read() == b"one"
    name = agent.get_name({"hostname": "localhost", "port": port, "ca": ca_pem})
    old_session = agent._sessions.get(name)
    assert old_session is not None
    first.close()
    first.close_all_connections()
    helpers.settle()

    other = ca.issue_cert("localhost")
    second = make_server(lambda req, res: res.end("two"), listen=False,
                         key=other.private_key_pem.bytes(),
                         cert=b"".join(blob.bytes() for blob in other.cert_chain_pems), min_version="TLSv1.3")
    second.listen(port, "127.0.0.1")
    res = greenhttps.get({"hostname": "localhost", "port": port, "ca": ca_pem, "agent": agent})
    assert res.read() == b"two"
    assert res.socket.session_reused is False
    assert res.socket.get_protocol() == "TLSv1.3"
    helpers.settle()
    assert agent._sessions.get(name) is not old_session


def test_re_emitting_connection_with_a_connect_socket_is_harmless(make_server: Callable[..., Any]) -> None:
    """B-102, mirrors test/parallel/test-http-server-unconsume-consume.js: after
    ``'connect'``, ``server.emit('connection', socket)`` does not crash anything, and
    the server keeps serving."""
    emitted: list[Any] = []

    def on_connect(req: Any, sock: Any, head: bytes) -> None:
        srv.emit("connection", sock)
        emitted.append(sock)
        sock.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        sock.end()

    srv = make_server()
    srv.on("connect", on_connect)
    sock = helpers.raw_connect(srv.address()["port"], tls=True, timeout=5)
    try:
        sock.sendall(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
        assert helpers.read_response(sock, "CONNECT").status == 200
    finally:
        sock.close()
    assert len(emitted) == 1
    again = helpers.raw_connect(srv.address()["port"], tls=True, timeout=5)
    try:
        again.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert helpers.read_response(again).status == 200
    finally:
        again.close()


def full_backlog_port() -> tuple[int, list[stdlib_socket.socket]]:
    """A listener whose accept queue is full and never drained: a new connection to
    it hangs in the handshake (the kernel drops its SYNs), on loopback."""
    listener = stdlib_socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = [listener, *helpers.fill_backlog(listener, 0.2)]
    return port, held


def test_abort_before_connect_is_nodes_order_and_at_once() -> None:
    """B-82's "abort() before connect" row, checked with node 20 against the same kind
    of never-accepting listener: 'socket', 'abort', 'error' (socket hang up,
    ECONNRESET), 'close' -- at once, not when the connect would have timed out."""
    port, held = full_backlog_port()
    events: list[Any] = []
    start = time.monotonic()

    def run() -> None:
        req = greenhttps.http.request({"host": "127.0.0.1", "port": port, "agent": False, "timeout": 10_000})
        req.on("socket", lambda sock: events.append("socket"))
        req.on("abort", lambda: events.append("abort"))
        req.on("error", lambda err: events.append(("error", err.code, str(err).split(" [")[0])))
        req.on("close", lambda: events.append("close"))
        gevent.spawn_later(0.3, req.abort)
        req.end()

    try:
        gevent.spawn(run).join(5)
        with gevent.Timeout(5):
            while "close" not in events:
                gevent.sleep(0.01)
        assert events == ["socket", "abort", ("error", "ECONNRESET", "socket hang up"), "close"]
        assert time.monotonic() - start < 2
    finally:
        for sock in held:
            sock.close()


def test_abort_while_queued_for_a_slot_sends_nothing(make_server: Callable[..., Any], ca_pem: bytes) -> None:
    """A request aborted while it waits for a pool slot gives up at once ('close',
    'abort', no error, as Node before a socket is assigned) and is never sent, even
    when the slot frees later."""
    seen: list[str] = []

    def handler(req: Any, res: Any) -> None:
        seen.append(req.url)
        if req.url == "/slow":
            gevent.sleep(0.5)
        res.end("x")

    srv = make_server(handler)
    opts = {"hostname": "localhost", "port": srv.address()["port"], "ca": ca_pem}
    agent = greenhttps.Agent(keep_alive=True, max_sockets=1)
    try:
        first = greenhttps.request({**opts, "path": "/slow", "agent": agent}, lambda res: res.resume())
        first.end()
        events: list[Any] = []
        req = greenhttps.request({**opts, "path": "/queued", "agent": agent})
        for name in ("socket", "abort", "close", "response", "error"):
            req.on(name, lambda *args, name=name: events.append(name))
        gevent.spawn_later(0.1, req.abort)
        start = time.monotonic()
        req.end()
        assert time.monotonic() - start < 0.4  # it did not wait for the slot
        gevent.sleep(1.0)
        assert events == ["close", "abort"]
        assert seen == ["/slow"]
    finally:
        agent.destroy()


NODE_DESTROY_AFTER_RESPONSE = """
const http = require('http');
const server = http.createServer((req, res) => res.write('part'));
server.listen(0, '127.0.0.1', () => {
  const out = {};
  let pending = 4;
  for (const [listen, give] of [[false, true], [true, true], [false, false], [true, false]]) {
    const ev = [];
    const req = http.get({port: server.address().port, agent: false}, res => {
      res.on('aborted', () => ev.push('res aborted'));
      if (listen) res.on('error', e => ev.push('res error ' + e.code + ' ' + e.message));
      res.on('close', () => { ev.push('res close'); out[listen + ',' + give] = ev;
                              if (--pending === 0) { console.log(JSON.stringify(out)); process.exit(0); } });
      res.on('data', () => req.destroy(give ? new Error('boom') : undefined));
    });
    req.on('error', e => ev.push('req error ' + e.message));
    req.on('close', () => ev.push('req close'));
  }
});
"""


@pytest.mark.needs_node
def test_destroy_after_response_is_nodes_order(make_server: Callable[..., Any], tmp_path: Path) -> None:
    """``req.destroy(err)`` from the response's first ``'data'``: the request's
    ``'error'``, the response's ``'aborted'``, the request's ``'close'``, the
    response's ``'error'`` (ECONNRESET "aborted", only to a listener: Node's
    IncomingMessage emits it only then), the response's ``'close'`` -- the four
    combinations as node 20 gives them (lib/_http_incoming.js ``onError``)."""
    import json as json_module

    script = tmp_path / "destroy.js"
    script.write_text(NODE_DESTROY_AFTER_RESPONSE)
    proc = helpers.run_command(["node", str(script)], timeout=15)
    node = json_module.loads(proc.stdout.decode().strip().splitlines()[-1])

    def handler(req: Any, res: Any) -> None:
        res.write("part")
        gevent.sleep(2)

    srv = make_server(handler, tls=False)
    ours: dict[str, list[str]] = {}
    for listen in (False, True):
        for give in (True, False):
            ev: list[str] = []
            done = gevent.event.Event()

            def on_response(res: Any, ev: list[str] = ev, listen: bool = listen, give: bool = give,
                            done: gevent.event.Event = done) -> None:
                res.on("aborted", lambda: ev.append("res aborted"))
                if listen:
                    res.on("error", lambda e: ev.append(f"res error {e.code} {str(e).split(' [')[0]}"))
                res.on("close", lambda: (ev.append("res close"), done.set()))
                res.on("data", lambda chunk: req.destroy(Exception("boom") if give else None))

            req = greenhttps.http.get({"host": "127.0.0.1", "port": srv.address()["port"], "agent": False},
                                      on_response)
            req.on("error", lambda e, ev=ev: ev.append(f"req error {e}"))
            req.on("close", lambda ev=ev: ev.append("req close"))
            assert done.wait(5)
            ours[f"{str(listen).lower()},{str(give).lower()}"] = ev
    assert ours == node


def test_pooled_connections_are_reused_past_descriptor_1023(make_server: Callable[..., Any], ca_pem: bytes) -> None:
    """A pooled socket's liveness check works whatever its descriptor's number:
    select() refuses descriptors past FD_SETSIZE (1024), which once made every pooled
    connection of a busy process look dead (a new dial per request)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(hard, 1300), 4096) if hard > 0 else 4096, hard))
    held = []
    try:
        with open("/dev/null", "rb") as devnull:
            while True:
                held.append(os.dup(devnull.fileno()))
                if held[-1] >= 1100:
                    break
        peers: set[Any] = set()
        srv = make_server(lambda req, res: (peers.add(req.socket.remote_port), res.end("x")))
        agent = greenhttps.Agent(keep_alive=True)
        try:
            for _ in range(4):
                res = greenhttps.get({"hostname": "localhost", "port": srv.address()["port"], "ca": ca_pem,
                                      "agent": agent})
                assert res.read() == b"x"
            assert len(peers) == 1  # one connection, reused
        finally:
            agent.destroy()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


NODE_EMPTY_HEADERS = r"""
const net = require('net'); const http = require('http');
const heads = [];
const srv = net.createServer((s) => s.once('data', (d) => {
  heads.push(d.toString().replace(/:\d+\r\n/, ':PORT\r\n'));
  s.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
}));
srv.listen(0, '127.0.0.1', async () => {
  for (const headers of [[], '']) {
    await new Promise((done) => http.request({port: srv.address().port, host: '127.0.0.1', headers},
                                             (res) => { res.resume(); res.on('end', done); }).end());
  }
  console.log(JSON.stringify(heads)); srv.close();
});
"""


def test_empty_header_list_sends_no_host_and_empty_string_is_no_headers(tmp_path: Path) -> None:
    """``headers=[]`` is an (empty) head as written: no Host is added, as for any list
    of pairs; ``headers=''`` (a false non-list) is no headers at all, so Host is
    added.  The same request heads as node 20 (lib/_http_client.js: ``ArrayIsArray``
    decides, then ``if (options.headers)``)."""
    import json as json_module

    script = tmp_path / "empty.js"
    script.write_text(NODE_EMPTY_HEADERS)
    proc = helpers.run_command(["node", str(script)], timeout=15)
    node = json_module.loads(proc.stdout.decode().strip().splitlines()[-1])

    listener = stdlib_socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    port = listener.getsockname()[1]
    heads: list[str] = []

    def peer() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            heads.append(conn.recv(65536).decode().replace(f":{port}\r\n", ":PORT\r\n"))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()

    gevent.get_hub().threadpool.spawn(peer)
    try:
        for headers in ([], ""):
            greenhttps.http.get({"host": "127.0.0.1", "port": port, "headers": headers}).read()
    finally:
        listener.close()
    assert heads == node
    assert heads == ["GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nConnection: keep-alive\r\n\r\n"]
