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

Requests on one connection are handled strictly in order: h11 does not parse the
next pipelined request until this one's response is done.  The per-request path
creates two objects (request, response) and no timers: deadlines are plain numbers
that the wire turns into socket timeouts.

Timeouts (Node's rules): socket inactivity goes, in order, to the request (only
while its body is incomplete), the response, the server (``'timeout'`` with the
socket); with no listener anywhere the socket is destroyed.  ``headers_timeout`` and
``request_timeout`` answer 408 and close; ``keep_alive_timeout`` closes silently.
"""

from __future__ import annotations

import enum
import socket
import ssl
import time
from typing import TYPE_CHECKING

import gevent
import greenlet
from gevent.event import Event

from . import errors
from ._events import logger
from ._incoming import IncomingMessage
from ._options import ms_to_seconds
from ._outgoing import STATUS_CODES, ServerResponse
from ._parsers import parser_class
from ._socket import Socket
from ._tlsbio import BioSSLSocket
from ._wire import DeadlineExceeded, Head, Wire

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["ServerConnection", "ConnState"]

#: How much of an unread request body we read and drop to keep a connection alive.
DISCARD_LIMIT = 256 * 1024


#: Requests served in a row without the greenlet yielding before it yields anyway.
_FAIR_SHARE = 8

#: The parser class servers use (chosen once, at import; see _parsers).
SERVER_PARSER = parser_class()


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

    def __init__(self, server: Server, raw: socket.socket) -> None:
        self.server = server
        self.raw = raw
        self.socket = Socket(raw)
        self.socket._apply_timeout = self._apply_timeout
        self.state = ConnState.HANDSHAKE
        self.wire: Wire | None = None
        self.greenlet: greenlet.greenlet | None = None
        self.requests_served = 0
        self._req: IncomingMessage | None = None
        self._res: ServerResponse | None = None
        self._done = Event()
        self._continue_sent = False
        #: The request body was malformed (or cut short) and has been answered.
        self._body_error = False

    def __repr__(self) -> str:
        return f"<ServerConnection {self.state.value} {self.socket.remote_address}:{self.socket.remote_port}>"

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        server = self.server
        try:
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
                idle_timeout=ms_to_seconds(server.timeout),
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
            with gevent.Timeout(seconds, errors.TimeoutError("TLS handshake timeout", "ERR_TLS_HANDSHAKE_TIMEOUT")):
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
        err = errors.from_os_error(exc, during="TLS handshake")
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
        while True:
            self.state = ConnState.WAITING
            if server._closing:
                return
            try:
                if first:
                    head = wire.read_head(deadline=started + (ms_to_seconds(server.headers_timeout) or 1e9))
                else:
                    head = wire.read_head(
                        first_byte_timeout=ms_to_seconds(server.keep_alive_timeout),
                        headers_timeout=ms_to_seconds(server.headers_timeout),
                    )
            except errors.ProtocolError as exc:
                self._client_error(exc)
                return
            except DeadlineExceeded:
                self._client_error(errors.ProtocolError("request headers timeout", "ERR_HTTP_REQUEST_TIMEOUT", status_hint=408))
                return
            if head is None:
                return
            first = False
            self.state = ConnState.ACTIVE
            if not self._handle(wire, head):
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
        self._continue_sent = False
        self._done.clear()
        request_deadline = None
        if server.request_timeout:
            request_deadline = time.monotonic() + server.request_timeout / 1000.0
        self._request_deadline = request_deadline
        req = IncomingMessage(head, self.socket, self._read_body, trailers=lambda: wire.trailers,
                              read_rest=self._read_rest_of_body)
        res = ServerResponse(req, wire, self)
        res.send_date = server.send_date
        self._req, self._res = req, res

        method = head.method
        upgrade, expect = head.upgrade, head.expect
        if method == "CONNECT" or upgrade:
            event = "connect" if method == "CONNECT" else "upgrade"
            if server.has_listeners(event):
                self._hand_over(event, req, wire)
                return False
            if method == "CONNECT":
                return False  # Node closes a CONNECT nobody handles

        if not self._dispatch(req, res, expect):
            return False
        if req._wants_flow:
            req._flow()
        if not res.finished:
            self._wait_for_response(res)
        return self._after_response(wire, req, res)

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

    def _wait_for_response(self, res: ServerResponse) -> None:
        """Wait for ``res.end()`` from another greenlet, honouring the idle timeout."""
        while not res.finished and self.state is ConnState.ACTIVE and not self._body_error:
            timeout = self.wire.idle_timeout if self.wire else None
            if self._done.wait(timeout):
                continue
            if not self._on_idle():
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

    @property
    def keep_alive_header(self) -> str | None:
        timeout = self.server.keep_alive_timeout
        return f"timeout={int(timeout // 1000)}" if timeout and timeout >= 1000 else None

    def response_finished(self, res: ServerResponse) -> None:
        res.emit("close")
        self._done.set()

    def send_continue(self) -> None:
        if not self._continue_sent and self.wire is not None and self._req is not None:
            if self._req.http_version != "1.0":  # RFC 9110 §15.2: no 1xx to HTTP/1.0
                self._continue_sent = True
                self.wire.send_informational(100)

    def abort(self, error: BaseException | None = None) -> None:
        """Destroy the connection (``res.destroy()``): no more bytes, no reuse."""
        self._close(graceful=False)
        self._done.set()

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
        if wire.peer_wants_100_continue:
            self.send_continue()
        try:
            return (wire.read_rest_of_body if rest else wire.read_body)(deadline=self._request_deadline)
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
            raise errors.TimeoutError("request timeout: body not received in time") from None

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
        self._done.set()

    # ------------------------------------------------------------ timeouts

    def _apply_timeout(self, seconds: float | None) -> None:
        if self.wire is not None:
            self.wire.set_idle_timeout(seconds)
        else:
            self.socket._sock.settimeout(seconds)

    def _on_idle(self) -> bool:
        """The socket idled past its timeout: True if a listener took the event."""
        req, res = self._req, self._res
        if self.state is ConnState.ACTIVE:
            if req is not None and not req.complete and req.emit("timeout"):
                return True
            if res is not None and res.emit("timeout"):
                return True
        handled = self.socket.emit("timeout")
        if self.server.emit("timeout", self.socket):
            handled = True
        return handled and not self.socket.destroyed

    # ------------------------------------------------------- errors, close

    def _client_error(self, exc: errors.ProtocolError) -> None:
        logger.debug("bad request from %s: %s", self.socket.remote_address, exc)
        if self.server.emit("clientError", exc, self.socket):
            return
        self._reject(exc.status_hint)

    def _reject(self, status: int) -> None:
        """Node's default clientError reply: status line, Connection: close, done."""
        if self.wire is None:
            return
        reason = STATUS_CODES.get(status, "Bad Request")
        try:
            self.wire.send_raw(f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode())
        except errors.Error:
            pass

    def _close(self, graceful: bool = True) -> None:
        if self.state is ConnState.CLOSED:
            return
        graceful = graceful and self.state is not ConnState.HANDSHAKE
        self.state = ConnState.CLOSED
        if self.wire is not None and graceful and not self.socket.destroyed:
            self.wire.shutdown_and_close()
        self.socket.destroy()
        if self._req is not None and not self._req.complete and not self._req.aborted:
            self._req._abort(errors.ConnectionResetError("aborted"))
        if self._res is not None and not self._res.finished:
            self._res.destroyed = True
            self._res.emit("close")

    def _abandon_detached(self) -> None:
        """A handed-over socket whose listener failed has no owner left: destroy it."""
        if self.state is ConnState.DETACHED:
            self.state = ConnState.CLOSED
            self.socket.destroy()

    def close_if_idle(self) -> bool:
        """Close now if waiting between requests; True if it did."""
        if self.state in (ConnState.WAITING, ConnState.HANDSHAKE) and self.greenlet is not None:
            gevent.kill(self.greenlet)
            return True
        return False
