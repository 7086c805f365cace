"""ServerConnection: the greenlet that serves one accepted connection.

Theory of operation
-------------------
Shaped like h11's example server.  One greenlet per connection runs::

    TLS handshake (under handshake_timeout)   -> 'secureConnection' | 'tlsClientError'
    loop:
        WAITING  read the next head (keep-alive / headers timers)
        ACTIVE   emit 'request' (or checkContinue / upgrade / connect), then wait
                 until res.end() was called -- by the handler or any greenlet later
        then either start the next cycle (keep-alive, pipelining) or close

Requests on one connection are handled strictly in order: the next pipelined
request is not parsed until this one's response is done.  The per-request path
creates two objects (request, response); deadlines are plain numbers that the wire
turns into socket timeouts.  One exception: a request without a body whose only
``'request'`` listener has a fast path (:class:`FastListener`: the WSGI handler)
goes to it with the parsed head, and the two objects are made only if it asks
(:meth:`ServerConnection.materialize`).

While the handler has the greenlet (ACTIVE), nobody would be reading the socket: a
:class:`~greenhttps._watch.PeerWatch` stands in, a read watcher and an idle timer on
the hub, started before ``'request'`` and stopped once the response is done.  A peer
that closes or resets meanwhile destroys the response (``'close'``) and aborts the
request, and the handler's next write raises; bytes that arrive meanwhile are kept
for the next read.  The handler's own body reads pause the read watcher.

Timeouts (Node's ``socketOnTimeout``): socket inactivity goes to the request (only
while its body is incomplete), the response and the server (``'timeout'`` with the
socket), every one of them, once per idle period; with no listener anywhere the
socket is destroyed -- between requests, during reads and writes, and while the
handler sleeps or computes alike.  ``headers_timeout`` and ``request_timeout``
answer 408 and close; ``keep_alive_timeout`` closes silently, unless a socket or
server ``'timeout'`` listener exists: in Node it is the socket's timeout, so the
listener decides (B-25).

Where HTTP/2 would plug in: a response reaches its connection only through the
:class:`~greenhttps._response.ResponseChannel` protocol (keep-alive decision, end of
response, 100 Continue, abort), and a request reads its body through two callables.
A connection that negotiated ``h2`` (ALPN) would be a second class beside this one,
reading frames in its greenlet and running each stream's handler in a greenlet of its
own, with a per-stream channel and body reader in place of this class's methods;
``Server``, ``IncomingMessage`` and ``ServerResponse`` would not change.

Size: about 890 lines, past STYLE's guide, because it is one state machine whose
states every part reads: the handshake, the request loop, the watch's two callbacks,
Node's timeout rules and the close.  The TLS handshake (about 80 lines) is the part
that could move to a module of its own; it has not yet.
"""

from __future__ import annotations

import enum
import socket
import ssl
import time
from typing import Any, Protocol

import gevent
import greenlet
from gevent.event import Event

from . import _sockio, _verify, errors
from ._access_log import response_class
from ._events import EventEmitter, logger
from ._incoming import IncomingMessage
from ._net_socket import Socket
from ._options import format_ms, ms_to_seconds
from ._outgoing import STATUS_CODES
from ._parsers import parser_class
from ._proxy_protocol import ProxyProtocolError
from ._proxy_socket import receive_proxy_header
from ._response import ServerResponse
from ._tlsbio import BioSSLSocket
from ._watch import PeerWatch
from ._wire import DeadlineExceeded, Head, Wire
from ._wire_format import Framing

__all__ = ["ServerConnection", "ConnState"]

#: How much of an unread request body we read and drop to keep a connection alive.
DISCARD_LIMIT = 256 * 1024


#: Requests served in a row without the greenlet yielding before it yields anyway.
_FAIR_SHARE = 8

#: The parser class servers use (chosen once, at import; see _parsers).
SERVER_PARSER = parser_class()


class ServerSide(Protocol):
    """What a connection needs of its server (:class:`greenhttps.Server`): the
    options it reads, its events and two hooks.  (A protocol, so that this layer
    does not import the one above it.)"""

    secure: bool
    request_cert: bool
    send_date: bool
    insecure_http_parser: bool
    timeout: float
    handshake_timeout: float
    headers_timeout: float
    keep_alive_timeout: float
    request_timeout: float
    max_header_size: int
    max_headers_count: int
    max_requests_per_socket: int
    require_host_header: bool
    proxy_protocol: bool | str
    proxy_allow_ips: Any
    access_log: bool | str
    _closing: bool
    _listeners: dict[str, list[Any]] | None

    def emit(self, event: str, *args: Any) -> bool: ...

    def has_listeners(self, event: str) -> bool: ...

    def _wrap(self, raw: socket.socket) -> ssl.SSLSocket | BioSSLSocket: ...

    def _connection_done(self, conn: ServerConnection) -> None: ...


class FastListener(Protocol):
    """A ``'request'`` listener's fast path (``listener.greenhttps_fast_path``), used
    when it is the only one (see :meth:`ServerConnection._handle`): called
    with the connection, its wire and a request head without a body, it answers
    straight through the wire -- :meth:`ServerConnection.keep_alive_value` decides
    the keep-alive -- and returns whether the connection may carry another
    request; or it asks :meth:`ServerConnection.materialize` for the request and
    response objects and answers through those (the return value is then
    ignored).  An exception it raises is the handler's failure, as from
    ``'request'``."""

    def __call__(self, conn: ServerConnection, wire: Wire, head: Head) -> bool: ...


class ConnState(enum.Enum):
    HANDSHAKE = "handshake"
    WAITING = "waiting"  # idle between requests: close() may close it at once
    ACTIVE = "active"  # a request is being served
    DETACHED = "detached"  # handed to an 'upgrade'/'connect' listener
    CLOSED = "closed"


class _Closed(Exception):
    """Internal: the connection is over; leave the loop quietly."""


class ServerConnection:
    """One accepted connection and the greenlet serving it."""

    def __init__(self, server: ServerSide, raw: socket.socket) -> None:
        self.server = server
        self.raw = raw
        self.socket = Socket(raw)
        self.socket._apply_timeout = self._apply_timeout
        self.state = ConnState.HANDSHAKE
        self.wire: Wire | None = None
        #: Watches the socket while a handler runs (see :mod:`._watch`).
        self._watch: PeerWatch | None = None
        self.greenlet: greenlet.greenlet | None = None
        self.requests_served = 0
        self._req: IncomingMessage | None = None
        self._res: ServerResponse | None = None
        #: Wakes the serving greenlet waiting for a response another greenlet ends; made
        #: at the first request (an idle connection holds as little as it can).
        self._done: Event | None = None
        self._continue_sent = False
        #: The request body was malformed (or cut short) and has been answered.
        self._body_error = False
        #: Why the connection was lost under a running handler (peer gone, idle).
        self._lost: BaseException | None = None
        #: An idle timeout set on the socket before the wire existed: (seconds or None,).
        self._early_idle: tuple[float | None] | None = None
        #: ServerResponse, or the access log's subclass when that is on (see _access_log).
        self._response_class = response_class(server.access_log)
        #: Whatever a 'request' listener's fast path keeps for this connection (the
        #: WSGI handler: its environ cache).
        self.listener_state: Any = None

    def __repr__(self) -> str:
        return f"<ServerConnection {self.state.value} {self.socket.remote_address}:{self.socket.remote_port}>"

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        server = self.server
        try:
            if server.proxy_protocol and not self._proxy_header():
                return
            server.emit("connection", self.socket)
            if self.socket.destroyed:
                return
            sock = self._handshake() if server.secure else self.raw
            if sock is None:
                return
            self.wire = Wire(
                sock,
                parser=SERVER_PARSER,
                max_header_size=server.max_header_size,
                max_headers_count=server.max_headers_count or 1 << 30,
                strict=not server.insecure_http_parser,
                require_host=server.require_host_header,
                # A 'connection'/'secureConnection' listener may have set the socket's own.
                idle_timeout=self._early_idle[0] if self._early_idle else ms_to_seconds(server.timeout),
                on_idle=self._on_idle,
            )
            self._serve(self.wire)
        except _Closed:
            pass
        except errors.NetworkError as exc:
            logger.debug("connection %r ended: %s", self, exc)
            self._abandon_detached()
        except Exception:
            # A listener ('connection', 'secureConnection', 'upgrade', 'timeout', ...)
            # raised.  Node would crash the process; here the error is logged, only this
            # connection ends, and nothing reaches the hub.
            logger.error("connection %r: a listener failed", self, exc_info=True)
            self._abandon_detached()
        except BaseException:
            if self.state is not ConnState.CLOSED:
                self._close()
            raise
        finally:
            if self.state is not ConnState.DETACHED:
                self._close()
            server._connection_done(self)

    def _proxy_header(self) -> bool:
        """PROXY protocol: the header comes first (before TLS); the socket takes the
        client's address from it.  False if refused: closed with nothing served."""
        server, sock = self.server, self.socket
        peer = None if self.raw.family == getattr(socket, "AF_UNIX", None) else sock.remote_address
        try:
            header = receive_proxy_header(self.raw, peer, server.proxy_protocol, server.proxy_allow_ips,
                                          ms_to_seconds(server.handshake_timeout))
        except ProxyProtocolError as exc:
            logger.debug("connection from %s refused: %s", peer, exc)
            self.state = ConnState.CLOSED
            sock.destroy()
            server.emit("clientError", exc, sock)  # as after a failed handshake: no reply possible
            return False
        if header is not None and header.source is not None:
            sock._peer, sock._family = header.source, "IPv6" if header.family == "TCP6" else "IPv4"
        return True

    def _handshake(self) -> ssl.SSLSocket | BioSSLSocket | None:
        server = self.server
        self.socket._peername()  # cache it: gevent's SSLSocket detaches the raw socket
        try:
            tls = server._wrap(self.raw)
        except (OSError, ValueError) as exc:
            self._tls_failed(exc)
            return None
        # From here the Socket holds -- and closes -- the TLS socket (which owns the
        # TCP one's descriptor), even if the handshake fails.  Not closing it there
        # once leaked one fd per failure for as long as anything (a listener keeping
        # the error and its traceback) referred to it.
        self.socket._attach(tls, encrypted=False)
        seconds = ms_to_seconds(server.handshake_timeout)
        try:
            with gevent.Timeout(seconds, errors.TimeoutError(f"TLS handshake timeout after {format_ms(server.handshake_timeout)}", "ERR_TLS_HANDSHAKE_TIMEOUT")):
                tls.do_handshake()
        except (OSError, ValueError, errors.TimeoutError) as exc:
            self._tls_failed(exc)
            return None
        self.socket._attach(tls, encrypted=True)
        self.socket.servername = getattr(tls, "greenhttps_servername", None) or None
        if server.request_cert:
            self._authorize(tls)
        server.emit("secureConnection", self.socket)
        if self.socket.destroyed:
            return None
        return tls

    def _authorize(self, tls: ssl.SSLSocket | BioSSLSocket) -> None:
        # With CERT_OPTIONAL, OpenSSL only completes a handshake with a client
        # certificate that verified, so "a cert was presented" means "authorized".
        cert = tls.getpeercert()
        self.socket.authorized = bool(cert)
        if not cert:
            self.socket.authorization_error = "UNABLE_TO_GET_ISSUER_CERT"

    def _tls_failed(self, exc: BaseException) -> None:
        # (The Socket holds the TLS socket by now: its peer chain names a verify error.)
        err = _verify.handshake_error(self.socket._sock, exc, during="TLS handshake")
        logger.debug("TLS handshake with %s failed: %s", self.socket.remote_address, err)
        # As in Node, the listeners get a socket that is already destroyed (not
        # writable): no HTTP reply can go over a failed handshake.
        self.state = ConnState.CLOSED
        self.socket.destroy()
        server = self.server
        server.emit("tlsClientError", err, self.socket)
        # Node's https.Server re-emits a handshake failure as 'clientError'; its
        # default for a TLS failure is only to close (no HTTP reply is possible).
        server.emit("clientError", err, self.socket)

    def _serve(self, wire: Wire) -> None:
        server = self.server
        first = True
        started = time.monotonic()
        loop = gevent.get_hub().loop
        turn, streak = -1.0, 0
        # The keep-alive and headers timeouts in seconds, converted again only when
        # the server's milliseconds change (two calls per request saved).
        timeouts: tuple[Any, Any, float | None, float | None] = (None, None, None, None)
        while True:
            self.state = ConnState.WAITING
            # A closing server ends the connection here unless a request has begun to
            # arrive (it is served, with Connection: close) or none has come yet: the
            # client of a connection accepted before close() is sending its first.
            if server._closing and not first and not self.input_waiting():
                return
            try:
                if first:
                    head = wire.read_head(deadline=started + (ms_to_seconds(server.headers_timeout) or 1e9))
                else:
                    keep_ms, head_ms = server.keep_alive_timeout, server.headers_timeout
                    if keep_ms is not timeouts[0] or head_ms is not timeouts[1]:
                        timeouts = (keep_ms, head_ms, ms_to_seconds(keep_ms), ms_to_seconds(head_ms))
                    head = wire.read_head(first_byte_timeout=timeouts[2], headers_timeout=timeouts[3])
                    if head is None and not wire.peer_closed and self._on_idle():
                        # The keep-alive timeout is the socket's timeout in Node, so it
                        # goes to 'timeout' listeners (socket, server), and one that
                        # exists decides; the connection waits on (B-25).
                        head = wire.read_head(headers_timeout=ms_to_seconds(server.headers_timeout))
            except errors.ProtocolError as exc:
                self._client_error(exc)
                return
            except DeadlineExceeded:
                self._client_error(errors.ProtocolError(
                    f"request headers timeout: the head did not arrive within {format_ms(server.headers_timeout)}",
                    "ERR_HTTP_REQUEST_TIMEOUT", status_hint=408))
                return
            if head is None:
                return
            first = False
            self.state = ConnState.ACTIVE
            if not self._handle(wire, head):
                if self._request_limit_reached():
                    self._drop_pipelined(wire)
                return
            if not wire.start_next_cycle():
                return
            # A greenlet that never blocks never lets another run: a client that
            # pipelines (or answers as fast as we reply) would hold every other
            # connection, and the accept loop, until it stops.  The loop's clock only
            # moves when the hub runs, so an unchanged clock means we never yielded.
            now = loop.now()
            if now != turn:
                turn, streak = now, 0
            else:
                streak += 1
                if streak >= _FAIR_SHARE:
                    gevent.sleep(0)
                    streak = 0  # the clock may not have moved if nothing else was due

    def _handle(self, wire: Wire, head: Head) -> bool:
        """Serve one request; True if the connection may carry another."""
        server = self.server
        self.requests_served += 1
        # The fast path of the only 'request' listener, if it has one and this request
        # may take it: no body, no Expect, no protocol switch, no access log (its
        # response class), no request limit (whose bookkeeping reads the response).
        if (head.framing == Framing.NONE and head.expect is None and not head.upgrade
                and self._response_class is ServerResponse):
            listeners = server._listeners
            request = listeners.get("request") if listeners else None
            if (request is not None and len(request) == 1 and head.method != "CONNECT"
                    and not server.max_requests_per_socket and type(server).emit is EventEmitter.emit):
                fast: FastListener | None = getattr(request[0], "greenhttps_fast_path", None)
                if fast is not None:
                    return self._handle_fast(fast, wire, head)
        self._continue_sent = False
        if self._done is None:
            self._done = Event()
        else:
            self._done.clear()
        request_deadline = None
        if server.request_timeout:
            request_deadline = time.monotonic() + server.request_timeout / 1000.0
        self._request_deadline = request_deadline
        req = IncomingMessage(head, self.socket, self._read_body, trailers=lambda: wire.trailers,
                              read_rest=self._read_rest_of_body)
        res = self._response_class(req, wire, self)
        if not server.send_date:  # the class says True: no store for the default
            res.send_date = False
        self._req, self._res = req, res

        method = head.method
        upgrade, expect = head.upgrade, head.expect
        if head.framing == Framing.NONE:
            req.complete = True  # as Node's parser: a request without a body is complete at its head
        if method == "CONNECT" or upgrade:
            event = "connect" if method == "CONNECT" else "upgrade"
            if server.has_listeners(event):
                self._hand_over(event, req, wire)
                return False
            if method == "CONNECT":
                return False  # Node closes a CONNECT nobody handles

        # From here until the response is done the greenlet belongs to the handler
        # (and then waits for whoever ends the response): the watch sees the peer.
        watch = self._watch or self._start_watching(wire)
        watch.want()
        try:
            if not self._dispatch(req, res, expect):
                return False
            if req._wants_flow:
                req._flow()
            if not res.finished:
                self._wait_for_response(res)
        finally:
            watch.stop()
        return self._after_response(wire, req, res)

    # ----------------------------------------------- the fast path (WSGI)

    def _handle_fast(self, fast: FastListener, wire: Wire, head: Head) -> bool:
        """Serve one request through a listener's fast path (see :class:`FastListener`):
        no IncomingMessage, ServerResponse or ``'request'`` event unless the listener
        asks for them (:meth:`materialize`); then this ends as :meth:`_handle` does."""
        self._req = self._res = None
        watch = self._watch or self._start_watching(wire)
        watch.want()
        try:
            try:
                keep = fast(self, wire, head)
            except errors.NetworkError as exc:
                logger.debug("request %s %s: connection lost in handler: %s", head.method, head.target, exc)
                return False
            except Exception as exc:
                logger.error("request handler failed for %s %s", head.method, head.target, exc_info=exc)
                res = self._res
                if res is None:
                    if wire.response_complete:
                        return False  # the fast path sent the response: only closing is left
                    res = self.materialize(wire, head)[1]
                try:
                    if not res._send_error(500):
                        return False
                except errors.Error:
                    return False
                keep = False
            res = self._res
            if res is None:
                return keep and self.state is ConnState.ACTIVE
            if not res.finished:
                self._wait_for_response(res)
        finally:
            watch.stop()
        assert self._req is not None
        return self._after_response(wire, self._req, res)

    def materialize(self, wire: Wire, head: Head) -> tuple[IncomingMessage, ServerResponse]:
        """The request and response objects of a request a fast path began, for a
        response it cannot send itself: made as :meth:`_handle` makes them, and
        already destroyed if the connection was lost meanwhile (as :meth:`_close`
        leaves them)."""
        req = IncomingMessage(head, self.socket, self._read_body, trailers=lambda: wire.trailers,
                              read_rest=self._read_rest_of_body)
        req.complete = True  # no body (the fast path's condition)
        res = ServerResponse(req, wire, self)
        if not self.server.send_date:
            res.send_date = False
        self._continue_sent = False
        self._request_deadline = None
        if self._done is None:
            self._done = Event()
        else:
            self._done.clear()
        self._req, self._res = req, res
        if self.state is ConnState.CLOSED:
            res.destroyed = res.closed = True
            if self._lost is not None:
                res._lost = self._lost_error
        return req, res

    def _request_limit_reached(self) -> bool:
        """The last response ended the connection only for ``max_requests_per_socket``."""
        limit = self.server.max_requests_per_socket
        res = self._res
        return bool(limit and self.requests_served >= limit and res is not None and res.finished
                    and not res.destroyed and not self._body_error and self.state is ConnState.ACTIVE)

    def _drop_pipelined(self, wire: Wire) -> None:
        """Node's ``maxRequestsPerSocket`` (B-97): each request already pipelined past
        the last one this socket serves is emitted as ``'dropRequest'(req, socket)``
        instead of ``'request'`` and answered 503; then the connection closes."""
        server = self.server
        while wire.start_next_cycle(after_close=True):
            try:
                head = wire.buffered_head()
            except errors.Error as exc:
                logger.debug("connection %r: a request past the limit failed: %s", self, exc)
                return
            if head is None:
                return
            req = IncomingMessage(head, self.socket, self._read_body, trailers=lambda: wire.trailers,
                                  read_rest=self._read_rest_of_body)
            res = self._response_class(req, wire, self)
            res.send_date = server.send_date
            self._req, self._res = req, res
            server.emit("dropRequest", req, self.socket)
            res.status_code = 503
            res.end()
            if head.framing != Framing.NONE:
                return  # its body is unread: nothing after it can be found

    def _dispatch(self, req: IncomingMessage, res: ServerResponse, expect: str | None) -> bool:
        server = self.server
        try:
            if expect is None or req.http_version == "1.0":
                server.emit("request", req, res)
            elif expect == "100-continue":
                if server.has_listeners("checkContinue"):
                    server.emit("checkContinue", req, res)
                else:
                    server.emit("request", req, res)  # 100 goes out on the first read
            elif server.has_listeners("checkExpectation"):
                server.emit("checkExpectation", req, res)
            else:
                res.status_code = 417
                res.set_header("Connection", "close")
                res.end()
        except errors.NetworkError as exc:
            logger.debug("request %s %s: connection lost in handler: %s", req.method, req.url, exc)
            return False
        except Exception as exc:
            if self._body_error:
                # The request body was malformed and has been answered (_body_failed);
                # the handler only saw that error come out of its read.
                logger.debug("request %s %s: %s", req.method, req.url, exc)
                return False
            logger.error("request handler failed for %s %s", req.method, req.url, exc_info=exc)
            try:
                # A response partly on the wire cannot be finished: abort instead.
                return res._send_error(500)
            except errors.Error:
                return False
        return True

    def _start_watching(self, wire: Wire) -> PeerWatch:
        """The peer watch, made at the first request: a connection that never sends one
        (most of an idle server's) does not carry it."""
        watch = self._watch = PeerWatch(wire, on_peer_gone=self._peer_gone, on_idle=self._idle_while_busy)
        self.socket._before_close = watch.close
        return watch

    def _wake(self) -> None:
        """Wake the serving greenlet if it waits for a response (see _wait_for_response)."""
        if self._done is not None:
            self._done.set()

    def _wait_for_response(self, res: ServerResponse) -> None:
        """Wait for ``res.end()`` from another greenlet (the watch keeps the idle
        clock and sees the peer meanwhile; either may end the wait)."""
        done = self._done
        assert done is not None  # made by _handle
        while not res.finished and self.state is ConnState.ACTIVE and not self._body_error:
            done.wait()
            done.clear()
        if self.state is ConnState.CLOSED:
            raise _Closed()

    def _after_response(self, wire: Wire, req: IncomingMessage, res: ServerResponse) -> bool:
        if self._body_error or res.destroyed or not res.should_keep_alive or not wire.keep_alive:
            return False
        if not wire.message_complete:
            if wire.peer_wants_100_continue:
                return False  # we never said "continue": the body may or may not come
            try:
                if not wire.discard_body(DISCARD_LIMIT, deadline=self._request_deadline):
                    return False
            except (errors.Error, DeadlineExceeded):
                return False
        return True

    def _hand_over(self, event: str, req: IncomingMessage, wire: Wire) -> None:
        # A body the request declares is still HTTP, not the new protocol: read it
        # whole here (both parsers frame it), so that the listener reads it from
        # ``req`` and ``head`` starts where it ends.
        body: list[bytes] = []
        size = 0
        try:
            while piece := wire.read_body(deadline=self._request_deadline):
                size += len(piece)
                if size > DISCARD_LIMIT:
                    self._reject(413)
                    raise _Closed()
                body.append(piece)
        except (errors.Error, DeadlineExceeded) as exc:
            logger.debug("%s request %s: its body failed: %s", event, req.url, exc)
            raise _Closed() from exc
        pieces = iter(body)
        req._replace_source(lambda: next(pieces, b""))
        sock, head = wire.detach()
        sock.settimeout(None)
        self.socket._apply_timeout = None
        self.state = ConnState.DETACHED
        self.server.emit(event, req, self.socket, head)

    # -------------------------------------- hooks used by ServerResponse

    def keep_alive_after(self, res: ServerResponse) -> bool:
        """Will the connection stay open after ``res``? (Decides its Connection header.)"""
        server = self.server
        if server._closing or not res.should_keep_alive or self.wire is None or not self.wire.keep_alive:
            return False
        limit = server.max_requests_per_socket
        return not (limit and self.requests_served >= limit)

    def keep_alive_value(self, head: Head) -> str | None:
        """For a fast path's response to ``head`` (no ServerResponse: its
        ``should_keep_alive`` would be "not HTTP/1.0"): None if it closes the
        connection (:meth:`keep_alive_after` says no), else its ``Keep-Alive``
        field's value ("" for none)."""
        server = self.server
        wire = self.wire
        if (head.http_version == "1.0" or server._closing or wire is None or not wire.keep_alive
                or server.max_requests_per_socket):
            return None
        cached = self._keep_alive_header
        if cached[0] == server.keep_alive_timeout and not cached[1]:
            return cached[2] or ""
        return self.keep_alive_header or ""

    @property
    def keep_alive_header(self) -> str | None:
        server = self.server
        timeout = server.keep_alive_timeout
        limit = server.max_requests_per_socket
        cached = self._keep_alive_header
        if cached[0] == timeout and cached[1] == limit:
            return cached[2]  # the same text for every response while the settings hold
        value = None
        if timeout and timeout >= 1000:
            # Node names the socket's whole budget, not what is left of it.
            value = f"timeout={int(timeout // 1000)}, max={limit}" if limit else f"timeout={int(timeout // 1000)}"
        self._keep_alive_header = (timeout, limit, value)
        return value

    #: (keep_alive_timeout, max_requests_per_socket, the Keep-Alive value they give).
    _keep_alive_header: tuple[Any, Any, str | None] = (None, None, None)

    def response_finished(self, res: ServerResponse) -> None:
        res.closed = True
        res.emit("close")
        self._wake()

    def send_continue(self) -> None:
        if not self._continue_sent and self.wire is not None and self._req is not None:
            if self._req.http_version != "1.0":  # RFC 9110 §15.2: no 1xx to HTTP/1.0
                self._continue_sent = True
                self.wire.send_informational(100)

    def abort(self, error: BaseException | None = None) -> None:
        """Destroy the connection (``res.destroy()``): no more bytes, no reuse."""
        self._close(graceful=False)
        self._wake()

    def _read_body(self) -> bytes:
        chunk = self._from_wire(rest=False)
        assert chunk is not None
        return chunk

    def _read_rest_of_body(self) -> bytes | None:
        return self._from_wire(rest=True)

    def _from_wire(self, *, rest: bool) -> bytes | None:
        """The wire's ``read_rest_of_body()`` or ``read_body()``; a failure is answered
        and ends the exchange."""
        wire = self.wire
        assert wire is not None
        if self.state is ConnState.CLOSED and self._lost is not None:
            raise self._lost_error()
        if wire.peer_wants_100_continue:
            self.send_continue()
        watch = self._watch
        if watch is not None:
            watch.pause_input()  # this read takes the socket's bytes itself
        try:
            return (wire.read_rest_of_body if rest else wire.read_body)(deadline=self._request_deadline)
        except errors.NetworkError:
            if self._lost is not None:  # the watch closed the socket under this read
                raise self._lost_error() from None
            raise
        except errors.ProtocolError as exc:
            # A malformed body (bad chunk, oversized trailers): Node's parser error,
            # answered as a bad head is, and the connection ends.
            self._body_failed(exc.status_hint)
            raise
        except errors.ConnectionResetError:
            self._body_failed(400)  # the peer closed mid-body (llhttp: HPE_INVALID_EOF_STATE)
            raise
        except DeadlineExceeded:
            res = self._res
            if res is not None and not res.headers_sent:
                self._reject(408)
            self._close()
            raise errors.TimeoutError(f"request timeout: body not received within {format_ms(self.server.request_timeout)}") from None
        finally:
            if watch is not None:
                watch.resume_input()

    def _body_failed(self, status: int) -> None:
        """Answer ``status`` (if no response has started) and end the exchange.

        The socket is only half-closed here: the handler still sees the error come
        out of its read (or as the request's ``'error'``) before the loop closes the
        connection, which lingers to let the answer arrive.
        """
        self._body_error = True
        res = self._res
        if res is not None and not res._head_written:
            logger.debug("bad request body from %s: answering %d", self.socket.remote_address, status)
            self._reject(status)
        if self.wire is not None:
            try:
                self.wire.sock.shutdown(socket.SHUT_WR)  # nothing more may follow the answer
            except OSError:
                pass
        self._wake()

    # ------------------------------------------------------------ timeouts

    def _apply_timeout(self, seconds: float | None) -> None:
        if self.wire is not None:
            self.wire.set_idle_timeout(seconds)
            if self._watch is not None:
                self._watch.restart_timer()
        else:
            self._early_idle = (seconds or None,)
            self.socket._sock.settimeout(seconds)

    def _on_idle(self) -> bool:
        """The socket idled past its timeout: True if a listener took the event.

        Node's ``socketOnTimeout``: the request (only while its body is incomplete),
        the response, then the server each get ``'timeout'`` -- every one of them,
        not the first that listens -- and the socket's own listeners too."""
        req, res = self._req, self._res
        handled = False
        if self.state is ConnState.ACTIVE:
            if req is not None and not req.complete and req.emit("timeout"):
                handled = True
            if res is not None and not res.finished and res.emit("timeout"):
                handled = True
        if self.socket.emit("timeout"):
            handled = True
        if self.server.emit("timeout", self.socket):
            handled = True
        return handled and not self.socket.destroyed

    # ------------------------------------------------- while a handler runs

    def _idle_while_busy(self) -> None:
        """The watch's idle timer (in a greenlet of its own): Node's rules, and with
        no listener anywhere the socket is destroyed under the handler."""
        if self.state is not ConnState.ACTIVE:
            return
        try:
            handled = self._on_idle()
        except Exception:
            logger.error("connection %r: a 'timeout' listener failed", self, exc_info=True)
            handled = False
        if not handled and self.state is ConnState.ACTIVE:
            idle = format_ms(self.socket.timeout or self.server.timeout)
            self._lose(errors.TimeoutError(f"socket idle timeout: idle for {idle}, the connection was destroyed", "ETIMEDOUT"))

    def _peer_gone(self, error: BaseException | None) -> None:
        """The watch saw the peer close or reset while the handler ran (in a greenlet
        of its own).  As Node's server (``allowHalfOpen`` false), a half-close ends
        the connection too: the request is aborted if its body was incomplete, the
        response is destroyed and emits ``'close'``, and the handler's next write
        raises."""
        if self.state is not ConnState.ACTIVE:
            return
        if error is None:
            error = errors.ConnectionResetError("the client closed the connection", "ECONNRESET")
        self._lose(error)

    def _lose(self, error: BaseException) -> None:
        self._lost = error
        try:
            self._close(graceful=False)
        finally:
            self._wake()

    def _lost_error(self) -> errors.Error:
        lost = self._lost
        if isinstance(lost, errors.TimeoutError):
            return errors.TimeoutError(str(lost), "ETIMEDOUT")
        return errors.ConnectionResetError(str(lost) if lost is not None else "aborted", "ECONNRESET")

    # ------------------------------------------------------- errors, close

    def _client_error(self, exc: errors.ProtocolError) -> None:
        """Node's ``socketOnError``: a ``'clientError'`` listener owns the socket (B-91);
        with none, the default reply goes out and the socket emits ``'error'`` with
        the parse error (``code``, ``bytes_parsed``, ``raw_packet``; B-92, B-93)."""
        logger.debug("bad request from %s: %s", self.socket.remote_address, exc)
        if self.server.emit("clientError", exc, self.socket):
            return
        self._reject(exc.status_hint)
        # Node destroys the socket with the error, after adding a no-op 'error'
        # listener: only listeners of the user's own hear it.
        self.socket.emit("error", exc)

    def _reject(self, status: int) -> None:
        """Node's default clientError reply, byte for byte: the status line and
        ``Connection: close`` (no body, so no Content-Length: the close ends it)."""
        if self.wire is None:
            return
        reason = STATUS_CODES.get(status, "Bad Request")
        try:
            self.wire.send_raw(f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n\r\n".encode())
        except errors.Error:
            pass

    def _close(self, graceful: bool = True) -> None:
        if self.state is ConnState.CLOSED:
            return
        graceful = graceful and self.state is not ConnState.HANDSHAKE
        self.state = ConnState.CLOSED
        if self.wire is not None and graceful and not self.socket.destroyed:
            self.wire.shutdown_and_close()
        if self._watch is not None:
            self._watch.close()
        self.socket.destroy()
        req, res = self._req, self._res
        # Node's abortIncoming: a request whose response is unfinished is aborted
        # unless its body was read to the end; an unfinished body is aborted anyway.
        if req is not None and not req.aborted and (
            not req.complete or (res is not None and not res.finished and not req._ended)
        ):
            req._abort(errors.ConnectionResetError("aborted"))
        if res is not None and not res.finished:
            res.destroyed = True
            if self._lost is not None:
                res._lost = self._lost_error
            res.closed = True
            res.emit("close")

    def _abandon_detached(self) -> None:
        """A handed-over socket whose listener failed has no owner left: destroy it."""
        if self.state is ConnState.DETACHED:
            self.state = ConnState.CLOSED
            self.socket.destroy()

    def close_if_idle(self) -> bool:
        """Close if idle between requests; True if it will be.

        Not idle, so served (with ``Connection: close`` once the server is closing):
        a connection with part of a request received (Node 19+, B-11); one whose
        next request has begun to arrive but is not parsed yet (bytes in the
        kernel's or OpenSSL's buffer); and, as in Node 20, one that has not had its
        first request (still in its TLS handshake, or just out of it): its client
        is about to send one, and closing it would drop that request
        (``headers_timeout`` bounds the wait).
        """
        if self.state is not ConnState.WAITING or self.greenlet is None or self.requests_served == 0:
            return False
        if self.input_waiting():
            return False
        # Checked again at the throw (gevent.kill's is deferred the same way): by
        # then the greenlet may have woken for a request and be serving it.
        gevent.get_hub().loop.run_callback(self._kill_if_idle)
        return True

    def _kill_if_idle(self) -> None:
        glet = self.greenlet
        if self.state is ConnState.WAITING and glet is not None and not glet.dead and not self.input_waiting():
            glet.throw(gevent.GreenletExit)

    def input_waiting(self) -> bool:
        """Has something of the peer's arrived that the greenlet has not read yet --
        part of a request, or its close?  Never reads, never waits."""
        wire = self.wire
        if wire is None or wire.head_started:
            return wire is not None
        sock = wire.sock
        try:
            # Held by OpenSSL (decrypted, or read ahead), or by a memory BIO: the
            # descriptor no longer shows those.
            return _sockio.held(sock) or _sockio.readable_now(sock.fileno())
        except (OSError, ValueError):
            return False
