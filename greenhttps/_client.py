"""The client: request(), get() and ClientRequest (dialing is in :mod:`._dial`).

Theory of operation
-------------------
A :class:`ClientRequest` is driven by the greenlet that uses it.  The first
``write()``/``end()``/``flush_headers()`` gets a connection from the agent (waiting
in its queue, or dialing: TCP, TLS handshake, certificate and name checks) and sends
the head; later writes go straight to the wire.  Nothing here raises a network error
into ``end()``: as in Node, failures become the request's ``'error'``, emitted on the
next turn of the loop so that a listener added right after ``end()`` still gets it,
and ``getresponse()`` raises them.

The response is read by whoever needs it first: ``getresponse()`` in the calling
greenlet (the blocking style), or, when a ``'response'`` listener exists at
``end()`` (the callback style), a greenlet spawned for it.  The connection goes back
to the agent when the response body has been read to its end; a greenlet killed or
timed out in the middle destroys the connection instead, so no pool slot is lost.
From then on the request holds its response only weakly (the response holds the
request), so that a finished exchange is freed by reference counting, not left to
the cyclic garbage collector.
An idempotent request sent whole on a *reused* socket that fails before any
response byte is sent again once on a fresh connection (the server may have closed
the idle socket just as we sent).
"""

from __future__ import annotations

import base64
import time
import weakref
from typing import Any, Callable, Mapping

import gevent
from gevent.event import AsyncResult

from . import errors
from ._agent import Agent
from ._dial import ClientConnection, dial
from ._events import logger
from ._headers import node_headers, raw_list
from ._incoming import IncomingMessage
from ._options import CLIENT_TLS_KEYS, ms_to_seconds, node_aliases
from ._outgoing import OutgoingMessage, attribute_aliases
from ._socket import Socket
from ._url import host_header, request_options, server_name
from ._wire import DeadlineExceeded, Head, Wire
from ._wire_format import Framing, request_message

__all__ = ["ClientRequest", "request", "get"]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Events whose listeners make ``end()`` read the response in a greenlet of its own.
_READER_EVENTS = ("response", "upgrade", "connect")
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_INF = float("inf")


# ------------------------------------------------------------ ClientRequest


@node_aliases
@attribute_aliases("reused_socket")
class ClientRequest(OutgoingMessage):
    """Node's ``http.ClientRequest``: one outgoing request and its response."""

    def __init__(self, opts: dict[str, Any], agent: Agent, callback: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self._opts = opts
        self.agent = agent
        self.method: str = opts["method"]
        self.path: str = opts["path"]
        self.host: str = opts["host"]
        self.protocol: str = opts["protocol"]
        self.socket: Socket | None = None
        self.reused_socket = False
        self.aborted = False
        #: The response; after its body has ended, only a weak reference (see res).
        self._res: IncomingMessage | weakref.ReferenceType[IncomingMessage] | None = None
        self._has_body = True
        self._explicit_chunked = True
        self._conn: ClientConnection | None = None
        self._name = ""
        self._result: AsyncResult[IncomingMessage | None] = AsyncResult()
        self._replay: tuple[list[tuple[bytes, bytes]], bytes] | None = None
        self._trailers: Any = ()
        self._reclaim: weakref.finalize | None = None
        #: The response body ends when the server closes (RFC 9112 §6.3 rule 8).
        self._close_delimited = False
        #: A 'timeout' listener has been called: the caller handles timeouts now.
        self._timeout_handled = False
        self._deadline = time.monotonic() + opts["deadline"] / 1000.0 if opts.get("deadline") else None
        if callback is not None:
            self.once("response", callback)
        self._set_default_headers(opts)

    @property
    def res(self) -> IncomingMessage | None:
        """The response once its head has arrived (Node's ``req.res``).

        After its body has ended the request no longer keeps the response alive (the
        response keeps the request: ``res.req``), so this is None once the caller
        has let go of the response.
        """
        res = self._res
        return res() if isinstance(res, weakref.ReferenceType) else res

    def __repr__(self) -> str:
        return f"<greenhttps.ClientRequest {self.method} {self.protocol}//{self.host}:{self._opts['port']}{self.path}>"

    def _set_default_headers(self, opts: Mapping[str, Any]) -> None:
        headers = opts.get("headers") or {}
        self._out.update(headers)
        header_host = self._out.get("host")
        if opts.get("set_host") is not False and header_host is None:
            self._out.set_default("host", "Host", host_header(opts["host"], opts["port"], opts["default_port"]))
        if opts.get("auth") and "authorization" not in self._out:
            token = base64.b64encode(str(opts["auth"]).encode("utf-8")).decode("ascii")
            self._out.set_default("authorization", "Authorization", f"Basic {token}")
        agent = self.agent
        keep_alive = agent.keep_alive or agent.max_sockets != _INF
        if "connection" not in self._out:
            self._out.set_default("connection", "Connection", "keep-alive" if keep_alive else "close")
        opts_servername = server_name(opts, header_host if isinstance(header_host, str) else None)
        self._opts["servername"] = opts_servername
        self._name = agent.get_name(
            {k: v for k, v in opts.items() if v is not None and k in _NAME_KEYS}
        )

    # ------------------------------------------------------------ sending

    def _frame(self, body_length: int | None) -> None:
        if body_length == 0 and self.method in _BODYLESS_METHODS:
            return  # Node sends no length for an empty GET/HEAD/DELETE/...
        super()._frame(body_length)

    def _send_head(self, body: bytes | None, end: bool) -> None:
        if "content-length" in self._out and "transfer-encoding" in self._out:
            # RFC 9112 §6.1: a sender MUST NOT send both (the shape of CL.TE
            # smuggling); h11 would send them as given.  Refuse before connecting.
            raise errors.InvalidArgumentError(
                "Content-Length and Transfer-Encoding cannot both be set", "ERR_HTTP_INVALID_HEADER_VALUE"
            )
        self.headers_sent = True
        pairs = self._out.pairs()
        if end:
            self._replay = (pairs, body or b"")
        try:
            head, framing = request_message(self.method, self.path, pairs)  # framing decided once, here
            self._acquire()
            self._wire().expect_response_to(self.method, pairs)
            self._wire().send_head(head, framing, body=body, end=end)
        except errors.InvalidArgumentError:
            self._discard_connection()
            raise
        except (errors.Error, OSError) as exc:
            self._fail(exc)
        except BaseException:
            self._discard_connection()
            raise
        if self._reading or self._conn is None or end:
            return
        # While the body is still being written, someone must read what the server
        # says meanwhile: a 100 Continue, or (as Node hears it) an early response.
        expects_continue = "100-continue" in str(self._out.get("expect") or "").lower()
        if expects_continue or self.has_listeners("response"):
            self._start_reader()

    def _wire(self) -> Wire:
        if self._conn is None:
            raise self._failure()
        return self._conn.wire

    def _wire_for_body(self) -> Wire:
        return self._wire()

    def write(self, chunk: bytes | str, encoding: str = "utf-8", callback: Callable[..., Any] | None = None) -> bool:
        """Send ``chunk`` of the request body (Node's ``request.write()``), as
        :meth:`OutgoingMessage.write <greenhttps._outgoing.OutgoingMessage.write>`
        (``encoding``, ``callback``).  A network error does not raise: it fails the
        request (``'error'``, or raised by :meth:`getresponse`) and returns False."""
        if self._result.ready() and not self._result.successful():
            return False
        try:
            return super().write(chunk, encoding, callback)
        except (errors.NetworkError, OSError) as exc:
            self._fail(exc)
            return False

    def end(self, data: bytes | str | None = None, encoding: str = "utf-8", callback: Callable[..., Any] | None = None) -> ClientRequest:
        """Finish the request, sending ``data`` first (Node's ``request.end()``); a str is
        encoded with ``encoding``, ``callback()`` is called once sent.  Returns self; a
        network error fails the request (``'error'``/:meth:`getresponse`) instead of raising."""
        if self.finished:
            return self
        try:
            super().end(data, encoding, callback)
        except (errors.NetworkError, OSError) as exc:
            self._fail(exc)
            return self
        if not self._reading and not self._result.ready():
            # Node delivers the response on a later tick, so listeners added right
            # after end() count; decide when this greenlet next yields.
            gevent.get_hub().loop.run_callback(self._maybe_start_reader)
        return self

    def _maybe_start_reader(self) -> None:
        # Node's upgrade pattern listens to 'upgrade' (or 'connect') only.
        if not self._reading and not self._result.ready() and any(map(self.has_listeners, _READER_EVENTS)):
            self._start_reader()

    def _acquire(self) -> None:
        """Get a connection: an idle pooled one, or a new one dialed with a permit."""
        agent, name = self.agent, self._name
        conn = agent.acquire(name, self)
        if conn is None:
            try:
                conn = dial(self._opts, agent, name)
            except BaseException:
                agent.dial_failed(name)
                raise
            agent.connected(name, conn)
        else:
            self.reused_socket = True
            if self._opts.get("timeout"):
                conn.wire.set_idle_timeout(ms_to_seconds(self._opts["timeout"]))
        self._hold(conn)
        self.emit("socket", conn.socket)

    def _hold(self, conn: ClientConnection) -> None:
        """Make ``conn`` this request's connection until :meth:`_let_go`.

        A request abandoned with its connection still in use (its greenlet killed
        between two reads of the body, or the response simply dropped) gives the
        connection back when it is garbage-collected: closed, never pooled, so the
        slot is not lost for good.  The wire only holds a weak reference to us.
        """
        conn.uses += 1
        ref = weakref.ref(self)
        conn.wire.on_idle = lambda: _on_idle_of(ref)
        self._conn = conn
        self.socket = conn.socket
        self._reclaim = weakref.finalize(self, _reclaim_abandoned, self.agent, conn)
        self._reclaim.atexit = False

    def _let_go(self) -> ClientConnection | None:
        """Take the connection away from this request (the caller decides its fate)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.wire.on_idle = None
            if self._reclaim is not None:
                self._reclaim.detach()
                self._reclaim = None
        return conn

    # ------------------------------------------------------------ failure

    def _failure(self) -> BaseException:
        if self._result.ready() and not self._result.successful():
            return self._result.exception  # type: ignore[return-value]
        return errors.ConnectionResetError("socket hang up")

    def _fail(self, exc: BaseException) -> None:
        """Record the request's error; emit it on the next turn (Node's nextTick)."""
        err = errors.from_os_error(exc) if not isinstance(exc, errors.Error) else exc
        self._discard_connection()
        if self._result.ready():
            return
        self._result.set_exception(err)
        gevent.get_hub().loop.run_callback(self._emit_failure, err)

    def _emit_failure(self, err: BaseException) -> None:
        if self.aborted:
            return
        if not self.emit("error", err) and not self._waited:
            logger.warning("unhandled 'error' on %r: %s", self, err)
        self.emit("close")

    _waited = False

    def _discard_connection(self) -> None:
        conn = self._let_go()
        if conn is not None:
            self.agent.destroy_connection(conn)

    def abort(self) -> None:
        """Abort the request: close its connection; emits ``'abort'`` and ``'close'``."""
        if self.aborted:
            return
        self.aborted = True
        self.destroyed = True
        self._discard_connection()
        if not self._result.ready():
            self._result.set_exception(errors.ConnectionResetError("request aborted", "ECONNRESET"))
        if self.res is not None and not self.res.complete:
            self.res._abort(errors.ConnectionResetError("aborted"))
        self.emit("abort")
        self.emit("close")

    def destroy(self, error: BaseException | None = None) -> ClientRequest:
        """Destroy the request; ``error``, if given, is emitted as ``'error'``."""
        if self.destroyed:
            return self
        self.destroyed = True
        self._discard_connection()
        err = error or errors.ConnectionResetError("socket hang up")
        if not self._result.ready():
            self._result.set_exception(err)
        if self.res is not None and not self.res.complete:
            self.res._abort(err)
        if error is not None:
            self.emit_error(error)
        self.emit("close")
        return self

    # ------------------------------------------------------------ timeouts

    def set_timeout(self, msecs: float, callback: Callable[..., Any] | None = None) -> ClientRequest:
        """Idle timeout, ``msecs`` in milliseconds: emits ``'timeout'`` (aborting is the
        caller's call); ``callback`` is added once to ``'timeout'``.  With no listener
        at all, the request fails with ETIMEDOUT.  Node: ``request.setTimeout()``."""
        if callback is not None:
            self.once("timeout", callback)
        self._opts["timeout"] = msecs
        if self._conn is not None:
            self._conn.wire.set_idle_timeout(ms_to_seconds(msecs))
        return self

    def _on_idle(self) -> bool:
        # With a listener, Node's rule: only emit; keep waiting unless it aborted us.
        # Node emits 'timeout' once (set_timeout's callback is a `once` listener):
        # once someone has been told, later idle periods are theirs to handle too.
        # With no listener ever, fail with ETIMEDOUT rather than wait forever (a
        # blocking caller has no other way out).
        if self.emit("timeout") or self._timeout_handled:
            self._timeout_handled = True
            return not (self.aborted or self.destroyed)
        return False

    def set_no_delay(self, no_delay: bool = True) -> None:
        """Nagle off (``no_delay`` True) on the request's socket, once it has one.

        Node: ``request.setNoDelay()``.
        """
        if self.socket is not None:
            self.socket.set_no_delay(no_delay)

    def set_socket_keep_alive(self, enable: bool = False, initial_delay: float = 0) -> None:
        """TCP keep-alive on the request's socket if ``enable``, ``initial_delay`` in
        milliseconds; Node's ``request.setSocketKeepAlive()``."""
        if self.socket is not None:
            self.socket.set_keep_alive(enable, initial_delay)

    # ------------------------------------------------------------ response

    _reading = False

    def _start_reader(self) -> None:
        self._reading = True
        gevent.spawn(self._read_response_and_emit)

    def _read_response_and_emit(self) -> None:
        res = self._read_response()
        # Unlike Node, a response nobody listens to is not dumped: getresponse() may
        # still come for it.
        if res is not None and self.emit("response", res) and res._wants_flow:
            res._flow()

    def getresponse(self, timeout: float | None = None) -> IncomingMessage:
        """Block until the response head arrives and return it (ends the request
        first if needed).  ``timeout`` in milliseconds.  Raises the request's error,
        or ``ERR_GREENHTTPS_RESPONSE_RELEASED`` if the response was read to its end
        and then dropped (see :attr:`res`)."""
        self._waited = True
        seconds = ms_to_seconds(timeout)
        if seconds is None:
            return self._await_response()  # no gevent.Timeout: it costs ~1 µs even unarmed
        expired = errors.TimeoutError(f"no response within {timeout} ms", "ETIMEDOUT")
        try:
            with gevent.Timeout(seconds, expired):
                return self._await_response()
        except errors.TimeoutError as exc:
            if exc is not expired:
                raise
            # The wait is over and the exchange is in an unknown state: the request
            # fails (its connection is closed, never pooled) rather than linger.
            self._fail(expired)
            raise expired from None

    def _await_response(self) -> IncomingMessage:
        if not self.finished:
            self.end()
        if not self._reading and not self._result.ready():
            self._reading = True
            res = self._read_response()
            if res is not None:
                return res
        res = self._result.get()
        if res is None:  # settled: the body has ended
            res = self.res
        if res is None:
            raise errors.Error(
                "the response was read to its end and released; keep the one getresponse() returned",
                "ERR_GREENHTTPS_RESPONSE_RELEASED",
            )
        return res

    def _read_response(self) -> IncomingMessage | None:
        try:
            head = self._read_final_head()
        except BaseException as exc:
            if isinstance(exc, (errors.Error, OSError, DeadlineExceeded)):
                if isinstance(exc, DeadlineExceeded):
                    exc = errors.TimeoutError("request deadline exceeded")
                self._fail(exc)
                return None
            self._discard_connection()
            raise
        if head is None:
            return None
        conn = self._conn
        assert conn is not None
        # The wire forgets trailers when it starts its next exchange (the connection
        # is pooled the moment the body ends), so the request keeps its own copy.
        res = IncomingMessage(head, conn.socket, self._read_body_chunk, trailers=lambda: self._trailers,
                              read_rest=self._read_rest_of_body)
        res.req = self  # type: ignore[attr-defined]
        self._res = res
        # The head's framing facts, decided once by the parser.
        self._close_delimited = head.framing is Framing.UNTIL_CLOSE
        if head.keep_alive_timeout is not None:
            conn.server_keep_alive = head.keep_alive_timeout
        self._result.set(res)
        if head.framing is Framing.NONE:
            # No body is coming: take the end marker now (the parser has it) so
            # the connection returns to the pool even if nobody reads the body.
            self._read_body_chunk()
            res._replace_source(_no_more)
        return res

    def _read_final_head(self) -> Head | None:
        """Read heads until a final one; handle 1xx, retry once on a stale socket."""
        while True:
            wire = self._wire()
            try:
                head = wire.read_head(deadline=self._deadline)
                if head is None:
                    raise errors.ConnectionResetError("socket hang up")
            except (errors.NetworkError, errors.ProtocolError) as exc:
                if self._may_retry(wire, exc):
                    self._retry()
                    continue
                if isinstance(exc, errors.ProtocolError) and wire.bytes_received == 0:
                    # h11 calls a close before any response byte a protocol error;
                    # with nothing received it can only be the peer hanging up (Node's
                    # ECONNRESET "socket hang up").
                    raise errors.ConnectionResetError("socket hang up") from exc
                raise
            if self.method == "CONNECT" and 200 <= head.status < 300:
                # The tunnel is open: the socket is the caller's now (Node's 'connect').
                self._upgrade(head, "connect")
                return None
            if head.status >= 200:
                return head
            if head.status == 100:
                self.emit("continue")
            elif head.status == 101:
                self._upgrade(head, "upgrade")
                return None
            else:
                self.emit("information", {
                    "status_code": head.status,
                    "status_message": head.reason,
                    "http_version": head.http_version,
                    "headers": node_headers(head.headers),
                    "raw_headers": raw_list(head.headers),
                })

    def _may_retry(self, wire: Wire, exc: BaseException) -> bool:
        return (
            self.reused_socket
            and self._replay is not None
            and wire.bytes_received == 0
            and self.method in _IDEMPOTENT
            and isinstance(exc, (errors.NetworkError, errors.ProtocolError))
        )

    def _retry(self) -> None:
        logger.debug("%r: reused connection was closed by the server; retrying once", self)
        assert self._replay is not None
        pairs, body = self._replay
        self._replay = None
        stale = self._let_go()
        self.reused_socket = False
        if stale is not None:
            self.agent.replace(stale)  # its slot becomes our permit to dial
        try:
            conn = dial(self._opts, self.agent, self._name)
        except BaseException:
            self.agent.dial_failed(self._name)
            raise
        self.agent.connected(self._name, conn)
        self._hold(conn)
        head, framing = request_message(self.method, self.path, pairs)
        conn.wire.expect_response_to(self.method, pairs)
        conn.wire.send_head(head, framing, body=body, end=True)

    def _upgrade(self, head: Head, event: str) -> None:
        """Hand the socket to the ``event`` ('upgrade' or 'connect') listener, with
        the bytes already read past the head; without a listener it is destroyed."""
        conn = self._conn
        assert conn is not None
        res = IncomingMessage(head, conn.socket, lambda: b"", has_body=False)
        _, rest = conn.wire.detach()
        self._let_go()
        self.agent.detach(conn)
        self._result.set(res)
        if not self.emit(event, res, conn.socket, rest):
            conn.socket.destroy()

    def _read_rest_of_body(self) -> bytes | None:
        return self._from_wire(rest=True)

    def _read_body_chunk(self) -> bytes:
        chunk = self._from_wire(rest=False)
        assert chunk is not None
        if not chunk:
            conn = self._conn
            assert conn is not None
            self._trailers = conn.wire.trailers
            self._response_done(conn)
        return chunk

    def _from_wire(self, *, rest: bool) -> bytes | None:
        """The wire's ``read_rest_of_body()`` or ``read_body()``; a failure discards the connection."""
        conn = self._conn
        if conn is None:
            raise self._failure()
        try:
            wire = conn.wire
            return (wire.read_rest_of_body if rest else wire.read_body)(deadline=self._deadline)
        except DeadlineExceeded:
            self._discard_connection()
            raise errors.TimeoutError("request deadline exceeded") from None
        except BaseException:
            self._discard_connection()
            raise

    def _response_done(self, conn: ClientConnection) -> None:
        self._let_go()
        res = self._res
        if isinstance(res, IncomingMessage):
            # The response points back here (res.req, its body reader); holding it
            # strongly as well would leave every exchange a reference cycle for the
            # garbage collector: ~20 objects per request, ~6% of keep-alive req/s.
            self._res = weakref.ref(res)
            self._result = _SETTLED
        if conn.session is None and conn.socket.encrypted and not conn.socket.session_reused:
            # Once per connection, and only after a full handshake: fetching the
            # session costs ~0.1 ms, and by the end of the first response TLS 1.3
            # tickets have arrived.  A resumed session stays cached: servers
            # (OpenSSL's, Node's) accept a ticket again, and one that is refused
            # means a full handshake, after which the new session is cached.
            conn.session = conn.socket.get_session()
            self.agent.cache_session(conn.name, conn.session)
        wire = conn.wire
        reusable = (
            not self._close_delimited
            # Bytes after the end of the response: nobody asked for them, and the
            # next exchange would read them as its response.
            and not wire.head_started
            and wire.response_complete
            and wire.start_next_cycle()
        )
        self.agent.release(conn, reusable=reusable)
        self.emit("close")


def _no_more() -> bytes:
    return b""


#: The result of a request whose response has ended: getresponse() finds the
#: response through the weak ``req.res`` (a settled AsyncResult never blocks, so
#: one can serve every request).
_SETTLED: AsyncResult[IncomingMessage | None] = AsyncResult()
_SETTLED.set(None)


def _reclaim_abandoned(agent: Agent, conn: ClientConnection) -> None:
    """Finalizer of a request dropped while holding a connection: destroy it on the
    loop's next turn, never in the middle of the pool bookkeeping that a garbage
    collection may interrupt."""
    try:
        gevent.get_hub().loop.run_callback(agent.destroy_connection, conn)
    except Exception:  # interpreter shutdown: nothing left to give back to
        conn.close()


def _on_idle_of(ref: weakref.ReferenceType[ClientRequest]) -> bool:
    req = ref()
    return req._on_idle() if req is not None else False


_NAME_KEYS = frozenset({"host", "port", "local_address", "family", "socket_path"}) | CLIENT_TLS_KEYS


# ------------------------------------------------------------ entry points


def _make_request(
    url_or_options: Any,
    callback: Callable[..., Any] | None,
    kwargs: dict[str, Any],
    *,
    agent_class: type[Agent],
    global_agent: Callable[[], Agent],
) -> ClientRequest:
    if callable(url_or_options) and callback is None:
        url_or_options, callback = None, url_or_options
    opts = request_options(
        url_or_options, kwargs, protocol=agent_class.protocol, default_port=agent_class.default_port
    )
    agent = opts.pop("agent")
    if agent is False:
        agent = agent_class()  # a one-off connection: Connection: close
    elif agent is None:
        agent = global_agent()
    elif not isinstance(agent, Agent):
        raise errors.InvalidArgumentError(f"agent must be an Agent, None or False, not {agent!r}", "ERR_INVALID_ARG_TYPE")
    for key, value in agent.options.items():
        if opts.get(key) is None:
            opts[key] = value
    return ClientRequest(opts, agent, callback)


def request(
    url_or_options: Any = None,
    callback: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> ClientRequest:
    """Node's ``https.request``: returns a ``ClientRequest`` to write to and end.

    ``url_or_options`` is a URL string, a ``urllib.parse`` result or a dict of request
    options; keyword arguments are more options (camelCase or snake_case; times in
    milliseconds) and win.  ``callback(res)`` is added to ``'response'``.  Raises
    :class:`~greenhttps.errors.InvalidURLError` / ``InvalidProtocolError`` for a bad
    URL and ``TypeError`` for an unknown option; network errors come later (``'error'``
    or :meth:`ClientRequest.getresponse`).
    """
    return _make_request(url_or_options, callback, kwargs, agent_class=Agent, global_agent=_global_agent)


def _global_agent() -> Agent:
    # Read at call time so that ``greenhttps.global_agent = Agent(...)`` takes effect.
    import greenhttps

    return greenhttps.global_agent


def get(url_or_options: Any = None, callback: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """Node's ``https.get``.  Without a callback: block and return the response.

    ``url_or_options`` and the keyword options are :func:`request`'s, with the
    request ended at once.  With a ``callback(res)``, returns the ``ClientRequest``.
    Raises what :func:`request` and :meth:`ClientRequest.getresponse` raise.
    """
    req = request(url_or_options, callback, **kwargs)
    req.end()
    if callback is None:
        return req.getresponse()
    return req
