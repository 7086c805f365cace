"""The client: request(), get() and ClientRequest, the Node-facing half.

Theory of operation
-------------------
A :class:`ClientRequest` keeps Node's API: header defaults, ``write()``/``end()``,
the events, ``getresponse()``.  Moving bytes is the job of its
:class:`~greenhttps._exchange.ClientExchange` (acquire from the agent, dial, send,
read heads and body, retry once on a stale pooled socket, release), created when
the head is first sent.  The request is driven by the greenlet that uses it: the
first ``write()``/``end()``/``flush_headers()`` acquires a connection (waiting in
the agent's queue, or dialing) and sends the head.  Nothing here raises a network
error into ``end()``: as in Node, failures become the request's ``'error'``,
emitted on the next turn of the loop so that a listener added right after
``end()`` still gets it (the socket stays listed in ``agent.sockets`` until then),
and ``getresponse()`` raises them.  After ``abort()``/``destroy()``, ``end()``
sends nothing.

The response is read by whoever needs it first: ``getresponse()`` in the calling
greenlet (the blocking style), or, when a ``'response'`` listener exists at
``end()`` (the callback style), a greenlet spawned for it.  Events follow Node 20
(NODE-BEHAVIOURS B-82): the response's ``'end'`` listeners run while the socket
is still in use; then the connection goes back to the agent (pooled, handed to
the next queued request, or closed if a listener destroyed it), then the
request's ``'close'``, then the response's ``'close'``.  A blocking caller that
reads the body to its end releases the connection inside that ``read()``, with
no greenlet of its own.  A response with no body (HEAD, 204, 304,
``Content-Length: 0``) gives its connection back as soon as its head is read,
so that an unread one never holds a slot; its ``'end'`` and ``'close'`` events
still come when it is read.  From the end on, the request holds its response only
weakly (the response holds the request), so that a finished exchange is freed by
reference counting, not left to the cyclic garbage collector.

Size: about 620 lines, past STYLE's guide: :class:`ClientRequest` is all of Node's
``ClientRequest`` (header defaults, write/end, abort/destroy with Node's event
orders, timeouts, ``getresponse()``) plus ``request()``/``get()``; the bytes moved
to :mod:`._exchange`, what is left is the Node-facing surface.
"""

from __future__ import annotations

import base64
import time
import weakref
from collections.abc import Mapping  # isinstance() with it: typing's alias checks ~10x slower
from typing import TYPE_CHECKING, Any, Callable, overload

import gevent
import greenlet
from gevent.event import AsyncResult

from . import errors
from ._agent import Agent, get_global_agent
from ._dial import unconnected_socket
from ._events import logger
from ._exchange import ClientExchange
from ._headers import check_name, check_value, node_headers, raw_list
from ._incoming import IncomingMessage
from ._net_socket import Socket
from ._options import (
    attribute_aliases,
    duration_to_ms,
    format_ms,
    ms_to_seconds,
    node_aliases,
)
from ._outgoing import OutgoingMessage, request_framing
from ._url import fill_port, host_header, request_options, server_name
from ._wire import Head, Wire
from ._wire_format import Framing, OutgoingFraming, request_bytes

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._types import Duration, RequestOptions, URLLike

    #: ``callback(res)``, added to ``'response'``.
    ResponseCallback = Callable[[IncomingMessage], Any]

__all__ = ["ClientRequest", "request", "get", "end_for_get"]

#: Events whose listeners make ``end()`` read the response in a greenlet of its own.
_READER_EVENTS = ("response", "upgrade", "connect")
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_INF = float("inf")


# ------------------------------------------------------------ ClientRequest


class _Interrupted(BaseException):
    """Internal: thrown into a request's greenlet waiting for its connection, when
    another greenlet aborts or destroys the request."""


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
        self._result: AsyncResult[IncomingMessage | None] = AsyncResult()
        self._deadline = time.monotonic() + opts["deadline"] / 1000.0 if opts.get("deadline") else None
        if callback is not None:
            self.once("response", callback)
        self._set_default_headers(opts)

    # Private state that starts the same for every request: class defaults (an
    # instance gets its own value when it changes), not a store each per request.
    #: The response; after its body has ended, only a weak reference (see res).
    _res: IncomingMessage | weakref.ReferenceType[IncomingMessage] | None = None
    _explicit_chunked = True
    #: Acquire, send, read, release: the transport half (see :mod:`._exchange`).
    _exchange: ClientExchange | None = None
    #: The pool key (set once the options are known).
    _name = ""
    #: A 'timeout' listener has been called: the caller handles timeouts now.
    _timeout_handled = False

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
        headers = opts.get("headers")
        # A dict (or nothing), the usual case: no Mapping ABC check (~3 Python calls).
        # As Node: a list or tuple (even empty) is the head as written; any other false
        # value (None, '') is no headers at all, so Host and the rest are added.
        given = None if type(headers) is dict or (not headers and not isinstance(headers, (list, tuple))) \
            else _given_pairs(headers)
        if given is None:
            if headers:
                self._out.update(headers)
        else:
            # Node (B-50): a list of pairs is the head as the caller wrote it, repeats
            # and order kept; no implicit Host or Authorization is added to it.
            self._given = given
            for lname, (name, values) in _grouped(given).items():
                self._out.set(name, values if len(values) > 1 else values[0])
            self._given_values = {lname: self._out.value(lname) for lname in self._out.as_dict()}
        # The automatic fields go into the headers' dict directly (ours are valid):
        # no method call each, on every request.
        fields = self._out._fields
        field = fields.get("host")
        header_host = field[1] if field is not None else None
        if opts.get("set_host") is not False and header_host is None and given is None:
            fields["host"] = ("Host", host_header(opts["host"], opts["port"], opts["default_port"]))
        if opts.get("auth") and "authorization" not in fields and given is None:
            token = base64.b64encode(str(opts["auth"]).encode("utf-8")).decode("ascii")
            fields["authorization"] = ("Authorization", f"Basic {token}")
        agent = self.agent
        keep_alive = agent.keep_alive or agent.max_sockets != _INF
        if "connection" not in fields:
            fields["connection"] = ("Connection", "keep-alive" if keep_alive else "close")
        # Node reads the Host header for the name through getHeader(), which does not
        # see headers given as pairs: then the name is the host's.
        opts_servername = server_name(opts, header_host if isinstance(header_host, str) and given is None else None)
        self._opts["servername"] = opts_servername
        self._name = agent._name_of_request(opts)

    # ------------------------------------------------------------ sending

    def _default_length(self, body_length: int | None) -> None:
        if body_length == 0 and self.method in _BODYLESS_METHODS:
            self._auto_length = None
            return  # Node sends no length for an empty GET/HEAD/DELETE/...
        if self.method == "CONNECT":
            # Node (B-98): a CONNECT body has no framing (no chunks, no length): what is
            # written before the tunnel opens goes out as it is, tunnel data to the proxy.
            self._auto_length = None
            return
        super()._default_length(body_length)

    #: Headers given as a list of pairs (validated, as given), or None.
    _given: list[tuple[str, str]] | None = None
    #: The value each of those names had in ``_out`` when set from the list.
    _given_values: dict[str, Any]

    def _decide(self) -> tuple[list[tuple[bytes, bytes]], OutgoingFraming]:
        pairs, framing = request_framing(self._out, self._auto_length)
        out = self._out
        if self.method == "CONNECT" and "transfer-encoding" not in out and "content-length" not in out:
            framing = OutgoingFraming(Framing.UNTIL_CLOSE)  # raw bytes, see _default_length
        if self._given is not None:
            pairs = self._given_head()
        return pairs, framing

    def _given_head(self) -> list[tuple[bytes, bytes]]:
        """The wire fields of a head whose headers were given as pairs: those pairs in
        their order (a name set or removed since is sent as it stands now), then the
        fields added after (Connection, the framing's), as Node's ``_storeHeader``."""
        out, given = self._out, self._given
        assert given is not None
        current = out.as_dict()
        names = {lname: name for name, lname in ((n, n.lower()) for n in out.names())}
        pairs: list[tuple[bytes, bytes]] = []
        done: set[str] = set()
        for name, value in given:
            lname = name.lower()
            if lname not in current:
                continue  # removed since
            if current[lname] is self._given_values.get(lname):
                pairs.append((name.encode("latin-1"), value.encode("latin-1")))
            elif lname not in done:
                pairs.extend(_field_pairs(names[lname], current[lname]))
            done.add(lname)
        for lname, field in current.items():
            if lname not in done:
                pairs.extend(_field_pairs(names[lname], field))
        return pairs

    def _send_head(self, body: bytes | None, end: bool) -> None:
        fields = self._out._fields
        if "content-length" in fields and "transfer-encoding" in fields:
            # RFC 9112 §6.1: a sender MUST NOT send both (the shape of CL.TE
            # smuggling); h11 would send them as given.  Refuse before connecting.
            raise errors.InvalidArgumentError(
                "Content-Length and Transfer-Encoding cannot both be set", "ERR_HTTP_INVALID_HEADER_VALUE"
            )
        if self.destroyed:
            return  # aborted or destroyed first: nothing is sent (B-85)
        pairs, framing = self._pairs, self._framing  # decided once, by _frame
        head = request_bytes(self.method, self.path, pairs)
        self.headers_sent = True
        exchange = self._exchange = ClientExchange(
            self.agent, self._name, self._opts, self.method, self._deadline, _idle_callback(self)
        )
        try:
            self._acquiring = gevent.getcurrent()
            try:
                self.socket = exchange.acquire(self)
            finally:
                self._acquiring = None
            if self.destroyed:  # aborted in the instant the connection came: send nothing
                self._interrupted(exchange)
                return
            self.reused_socket = exchange.reused
            if self._listeners:  # most requests have none: no emit() call
                self.emit("socket", self.socket)
            exchange.send_head(pairs, head, framing, body, end)
        except _Interrupted:
            self._interrupted(exchange)
            return
        except errors.InvalidArgumentError:
            exchange.discard()
            raise
        except (errors.Error, OSError) as exc:
            if self.socket is None:
                # The connection could not be made.  Node's request has its socket
                # before connecting: 'socket', then 'error', then 'close' (B-82, B-90).
                self.socket = unconnected_socket()
                self.emit("socket", self.socket)
            self._fail(exc)
        except BaseException:
            exchange.discard()
            raise
        if self._reading or exchange.conn is None or end:
            return
        # While the body is still being written, someone must read what the server
        # says meanwhile: a 100 Continue, or (as Node hears it) an early response.
        expects_continue = "100-continue" in str(self._out.get("expect") or "").lower()
        if expects_continue or self.has_listeners("response"):
            self._start_reader()

    def _wire(self) -> Wire:
        exchange = self._exchange
        if exchange is None or exchange.conn is None:
            raise self._failure()
        return exchange.wire

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
        network error fails the request (``'error'``/:meth:`getresponse`) instead of raising.
        After :meth:`abort` or :meth:`destroy` it sends nothing (Node: no request, no error)."""
        if self.finished:
            return self
        if self.destroyed:
            self.finished = True
            return self
        streamed = self._exchange  # the head went first: end() sends the rest
        try:
            super().end(data, encoding, callback)
        except (errors.NetworkError, OSError) as exc:
            self._fail(exc)
            return self
        if streamed is not None:
            streamed.request_sent()  # res.timings.sent (a whole request is timed as it is sent)
        if not self._reading and not self._result.ready() and not self._blocking:
            # Node delivers the response on a later tick, so listeners added right
            # after end() count; decide when this greenlet next yields.
            gevent.get_hub().loop.run_callback(self._maybe_start_reader)
        return self

    #: Set by get() without a callback: getresponse() follows end() at once, in this
    #: greenlet, before it yields, and nobody else holds the request to add a
    #: listener; so no reader is to be decided on later (a callback on the loop
    #: per request, and the loop's extra turn for it, saved).
    _blocking = False

    def _maybe_start_reader(self) -> None:
        # Node's upgrade pattern listens to 'upgrade' (or 'connect') only.  A
        # 'timeout' listener needs someone waiting on the socket too, or its idle
        # timer never runs (B-22: Node's test listens to nothing else); the head
        # read is kept for getresponse(), the body is not read.
        if self._reading or self._result.ready():
            return
        if any(map(self.has_listeners, _READER_EVENTS)) or (self._opts.get("timeout") and self.has_listeners("timeout")):
            self._start_reader()

    # ------------------------------------------------------------ failure

    def _failure(self) -> BaseException:
        if self._result.ready() and not self._result.successful():
            return self._result.exception  # type: ignore[return-value]
        return errors.ConnectionResetError("socket hang up")

    def _fail(self, exc: BaseException) -> None:
        """Record the request's error; emit it on the next turn (Node's nextTick).

        Until then the socket is closed but still listed in ``agent.sockets`` (as
        Node, whose agent forgets a socket after its ``'close'``), unless a blocking
        caller is waiting: it gets the error now, and the slot is freed first.
        """
        err = errors.from_os_error(exc) if not isinstance(exc, errors.Error) else exc
        if self._result.ready():
            self._discard_connection()
            return
        self._result.set_exception(err)
        if self._waited or self._exchange is None:
            self._discard_connection()
        else:
            self._exchange.close_now()
        gevent.get_hub().loop.run_callback(self._emit_failure, err)

    def _trailing_error(self, err: errors.ProtocolError | None) -> None:
        """Bytes after the response that cannot start another are a parse error,
        which Node emits on the request after its ``'response'`` (B-87), once; the
        connection is closed, not pooled."""
        if err is not None and not self._trailing_reported:
            self._trailing_reported = True
            gevent.get_hub().loop.run_callback(self._emit_trailing_error, err)

    _trailing_reported = False

    def _emit_trailing_error(self, err: errors.ProtocolError) -> None:
        if not self.aborted:
            self.emit_error(err)

    def _emit_failure(self, err: BaseException) -> None:
        if self.aborted:
            self._discard_connection()
            return
        try:
            if not self.emit("error", err) and not self._waited:
                logger.warning("unhandled 'error' on %r: %s", self, err)
        finally:
            self._discard_connection()
        self._emit_close()

    _waited = False
    _close_emitted = False

    def _emit_close(self) -> None:
        """The request's ``'close'``, once."""
        if not self._close_emitted:
            self._close_emitted = True
            if self._listeners:
                self.emit("close")

    def _discard_connection(self) -> None:
        if self._exchange is not None:
            self._exchange.discard()

    _acquiring: greenlet.greenlet | None = None

    def _interrupt_acquire(self) -> bool:
        """Wake the greenlet waiting for a pool slot or connecting, from another one
        (an abort, a destroy): it gives the slot back and sends nothing.  True if it
        was connecting (Node: the request already has its socket), and then that
        greenlet emits the rest (:meth:`_interrupted`)."""
        waiting = self._acquiring
        exchange = self._exchange
        if waiting is None or waiting is gevent.getcurrent() or exchange is None:
            return False

        def throw() -> None:
            # Only if it is still waiting: woken meanwhile (its slot or its connection
            # came in the same turn), it sees ``destroyed`` itself, and a late throw
            # would land in whatever it does next.
            if self._acquiring is waiting:
                waiting.throw(_Interrupted)

        gevent.get_hub().loop.run_callback(throw)
        self._owes_interrupt_events = exchange.dialing
        return exchange.dialing

    #: abort()/destroy() left 'socket', 'abort', 'error', 'close' to the request's greenlet.
    _owes_interrupt_events = False

    def _interrupted(self, exchange: ClientExchange) -> None:
        """In the request's greenlet, after :meth:`_interrupt_acquire`: Node's order for
        an abort before connect (test-http-abort-before-end and the http.request docs):
        ``'socket'``, ``'abort'``, ``'error'`` (socket hang up, ECONNRESET), ``'close'``.
        An abort while still queued was announced by :meth:`abort` itself."""
        exchange.discard()
        if not self._owes_interrupt_events:
            return
        self._owes_interrupt_events = False
        self.socket = unconnected_socket()
        self.emit("socket", self.socket)
        if self.aborted:
            self.emit("abort")
        err = self._destroy_error or errors.ConnectionResetError("socket hang up")
        if not self.emit("error", err):
            logger.debug("%r: %s (no 'error' listener)", self, err)
        self._emit_close()

    _destroy_error: BaseException | None = None

    def abort(self) -> None:
        """Abort the request: close its connection.  Node 20's order: with a socket,
        ``'abort'``, the response's ``'aborted'``, ``'close'``, the response's
        ``'close'``; while connecting, ``'socket'``, ``'abort'``, ``'error'`` (socket
        hang up), ``'close'``; before a pool slot, ``'close'`` then ``'abort'``.
        Nothing more is sent, and a request still waiting gives up at once."""
        if self.aborted:
            return
        self.aborted = True
        self.destroyed = True
        had_socket = self.socket is not None
        self._discard_connection()
        if not self._result.ready():
            self._result.set_exception(errors.ConnectionResetError("request aborted", "ECONNRESET"))
        if not had_socket and self._interrupt_acquire():
            return  # the request's greenlet tells the rest, in Node's order
        if not had_socket:
            # Node 20 emits both on the next tick, so listeners added right after
            # abort() still hear them.
            gevent.get_hub().loop.run_callback(self._emit_abort_before_socket)
            return
        self.emit("abort")
        res = self.res
        if res is not None and not res.complete:
            res._abort(errors.ConnectionResetError("aborted"))  # 'aborted', our 'close', its 'close'
        self._emit_close()

    def _emit_abort_before_socket(self) -> None:
        self._emit_close()
        self.emit("abort")

    def destroy(self, error: BaseException | None = None) -> ClientRequest:
        """Destroy the request; ``error``, if given, is emitted as ``'error'``."""
        if self.destroyed:
            return self
        self.destroyed = True
        self._discard_connection()
        err = error or errors.ConnectionResetError("socket hang up")
        if not self._result.ready():
            self._result.set_exception(err)
        if self.socket is None:
            self._destroy_error = error
            if self._interrupt_acquire():
                return self  # the request's greenlet emits 'socket', 'error', 'close'
        
        # Node 20's order after a response: the request's 'error' (if given), the
        # response's 'aborted', 'close', the response's 'error' (ECONNRESET
        # "aborted", only to a listener), the response's 'close'.
        if error is not None:
            self.emit_error(error)
        res = self.res
        if res is not None and not res.complete:
            res._abort(errors.ConnectionResetError("aborted"))
        self._emit_close()
        return self

    # ------------------------------------------------------------ timeouts

    def set_timeout(self, msecs: Duration, callback: Callable[..., Any] | None = None) -> ClientRequest:
        """Idle timeout, ``msecs`` in milliseconds (or a ``timedelta``): emits ``'timeout'`` (aborting is the
        caller's call); ``callback`` is added once to ``'timeout'``.  With no listener
        at all, the request fails with ETIMEDOUT.  Node: ``request.setTimeout()``."""
        if callback is not None:
            self.once("timeout", callback)
        self._opts["timeout"] = duration_to_ms(msecs)
        if self._exchange is not None:
            self._exchange.set_idle_timeout(ms_to_seconds(msecs))
            if self.finished:
                gevent.get_hub().loop.run_callback(self._maybe_start_reader)
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
        """Nagle off (``no_delay`` True) on the request's socket (now, or once it has one).

        Node: ``request.setNoDelay()``.
        """
        if self.socket is not None:
            self.socket.set_no_delay(no_delay)
        else:  # applied once connected, as Node's _deferToConnect
            self.once("socket", lambda sock: sock.set_no_delay(no_delay))

    def set_socket_keep_alive(self, enable: bool = False, initial_delay: float = 0) -> None:
        """TCP keep-alive on the request's socket if ``enable``, ``initial_delay`` in
        milliseconds (now, or once it has a socket); Node's ``request.setSocketKeepAlive()``."""
        if self.socket is not None:
            self.socket.set_keep_alive(enable, initial_delay)
        else:
            self.once("socket", lambda sock: sock.set_keep_alive(enable, initial_delay))

    # ------------------------------------------------------------ response

    _reading = False
    #: The connection went back to the agent for reuse: 'free' is owed after 'close'.
    _freed = False

    def _start_reader(self) -> None:
        self._reading = True
        gevent.spawn(self._read_response_and_emit)

    def _read_response_and_emit(self) -> None:
        res = self._read_response()
        # Unlike Node, a response nobody listens to is not dumped: getresponse() may
        # still come for it.
        if res is not None and self.emit("response", res) and res._wants_flow:
            res._flow()

    def getresponse(self, timeout: Duration = None) -> IncomingMessage:
        """Block until the response head arrives and return it (ends the request
        first if needed).  ``timeout`` in milliseconds (or a ``timedelta``).  Raises the request's error,
        or ``ERR_GREENHTTPS_RESPONSE_RELEASED`` if the response was read to its end
        and then dropped (see :attr:`res`)."""
        self._waited = True
        seconds = ms_to_seconds(timeout)
        if seconds is None:
            return self._await_response()  # no gevent.Timeout: it costs ~1 µs even unarmed
        expired = errors.TimeoutError(f"no response within {format_ms(timeout or 0)}", "ETIMEDOUT")
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
            if isinstance(exc, (errors.Error, OSError)):
                self._fail(exc)
                return None
            self._discard_connection()
            raise
        if head is None:
            return None
        exchange = self._exchange
        assert exchange is not None and exchange.socket is not None
        res = IncomingMessage(head, exchange.socket, exchange.read_body, trailers=exchange.trailers,
                              read_rest=exchange.read_rest)
        res.req = self  # type: ignore[attr-defined]
        res.timings = exchange.timings
        res._on_finish = self._response_finished
        self._res = res
        no_body = exchange.response_started(head)
        self._result.set(res)
        if no_body:
            # No body is coming: take the end marker now (the parser has it) and
            # give the connection back even if nobody reads the body.  'end' and the
            # 'close' events still come when the body is read (or flows).
            exchange.read_body()
            self._freed = exchange.release()
            self._trailing_error(exchange.trailing_error)
            res._replace_source(_no_more)
        else:
            # Until someone reads the body, the connection still sees the server.
            exchange.watch(weakref.ref(self), ClientRequest._server_gone, ClientRequest._idle_while_unread)
        return res

    def _server_gone(self, error: BaseException | None) -> None:
        """(In a greenlet of its own.)  The server closed or reset the connection
        while nobody was reading the response body.  After a close the rest of
        the body and its end are here already: they are taken now, so that a body
        cut short is ``'aborted'`` at once (Node's order: res ``'aborted'``, req
        ``'close'``, res ``'close'``) and a whole one waits for its reader."""
        res, exchange = self.res, self._exchange
        if res is None or exchange is None or res.complete or res.aborted or exchange.body_done:
            return
        if error is None:
            pieces: list[bytes] = []
            try:
                while chunk := exchange.read_body():  # never waits: the end is here
                    pieces.append(chunk)
            except errors.Error as exc:
                error = exc
            else:
                rest = iter(pieces)
                res._replace_source(lambda: next(rest, b""))
                return
        exchange.discard()
        res._abort(errors.ConnectionResetError("aborted", "ECONNRESET"))

    def _idle_while_unread(self) -> None:
        """(In a greenlet of its own.)  The socket idled past the request's timeout
        while nobody read the response body: ``'timeout'``, and with no listener the
        response is aborted with ETIMEDOUT (its next read raises)."""
        res, exchange = self.res, self._exchange
        if res is None or exchange is None or res.complete or res.aborted or self._on_idle():
            return
        exchange.discard()
        res._abort(errors.TimeoutError(f"socket idle timeout: idle for {format_ms(self._opts.get('timeout') or 0)}", "ETIMEDOUT"))

    def _read_final_head(self) -> Head | None:
        """Read heads until a final one; 1xx become events, 101/CONNECT hand the socket over."""
        exchange = self._exchange
        if exchange is None or exchange.conn is None:
            raise self._failure()
        while True:
            head = exchange.read_head()
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

    def _upgrade(self, head: Head, event: str) -> None:
        """Hand the socket to the ``event`` ('upgrade' or 'connect') listener, with
        the bytes already read past the head; without a listener it is destroyed."""
        exchange = self._exchange
        assert exchange is not None
        sock, rest = exchange.detach()
        res = IncomingMessage(head, sock, lambda: b"", has_body=False)
        res.timings = exchange.timings
        self._result.set(res)
        if not self.emit(event, res, sock, rest):
            sock.destroy()
        # Node (B-98, B-99): the request is done with once the socket is handed over.
        self.destroyed = True
        self._emit_close()

    def _response_finished(self) -> None:
        """The response emitted ``'end'`` (or ``'aborted'``); its ``'close'`` follows.

        Node's order: the connection goes back to the agent only now, after the
        ``'end'`` listeners ran (one may have destroyed the socket: then it is
        closed, never pooled or handed to a queued request), then the request's
        ``'close'``, then the response's.
        """
        exchange = self._exchange
        if exchange is not None:  # nothing to release after an abort
            if exchange.release():
                self._freed = True
            self._trailing_error(exchange.trailing_error)
        res = self._res
        if isinstance(res, IncomingMessage) and res.complete:
            # The response points back here (res.req, its _on_finish); holding it
            # strongly as well would leave every exchange a reference cycle for the
            # garbage collector: ~20 objects per request, ~6% of keep-alive req/s.
            self._res = weakref.ref(res)
            self._result = _SETTLED
        self._emit_close()
        if self._freed and self.socket is not None:
            # Node's agent 'free' (socket, options): after the request's 'close', for a
            # connection kept for another request (pooled or handed to a waiter).
            self._freed = False
            if self.agent.has_listeners("free"):
                self.agent.emit("free", self.socket, dict(self._opts))


def _given_pairs(headers: Any) -> list[tuple[str, str]] | None:
    """Headers given as a list: ``[(name, value), ...]`` or Node's flat ``[name,
    value, name, value...]``, validated; None for a mapping.  Raises
    ``ERR_INVALID_ARG_VALUE`` for a list of another shape."""
    if isinstance(headers, Mapping):
        return None
    items = list(headers)
    if items and all(isinstance(item, str) for item in items):
        if len(items) % 2:
            raise errors.InvalidArgumentError(
                "headers as a flat list need a value for every name", "ERR_INVALID_ARG_VALUE"
            )
        items = list(zip(items[::2], items[1::2]))
    pairs: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise errors.InvalidArgumentError(
                f"headers as a list take (name, value) pairs, not {item!r}", "ERR_INVALID_ARG_VALUE"
            )
        name = check_name(item[0])
        value = check_value(name, item[1])
        pairs.extend((name, v) for v in (value if isinstance(value, list) else [value]))
    return pairs


def _grouped(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, list[str]]]:
    """Pairs by lowercase name: the first spelling and every value, in order."""
    grouped: dict[str, tuple[str, list[str]]] = {}
    for name, value in pairs:
        grouped.setdefault(name.lower(), (name, []))[1].append(value)
    return grouped


def _field_pairs(name: str, value: str | list[str]) -> list[tuple[bytes, bytes]]:
    bname = name.encode("latin-1")
    return [(bname, v.encode("latin-1")) for v in (value if isinstance(value, list) else [value])]


def _no_more() -> bytes:
    return b""


#: The result of a request whose response has ended: getresponse() finds the
#: response through the weak ``req.res`` (a settled AsyncResult never blocks, so
#: one can serve every request).
_SETTLED: AsyncResult[IncomingMessage | None] = AsyncResult()
_SETTLED.set(None)


def _idle_callback(req: ClientRequest) -> Callable[[], bool]:
    """The wire's idle-timeout callback for ``req``, holding it only weakly."""
    ref = weakref.ref(req)
    return lambda: _on_idle_of(ref)


def _on_idle_of(ref: weakref.ReferenceType[ClientRequest]) -> bool:
    req = ref()
    return req._on_idle() if req is not None else False




# ------------------------------------------------------------ entry points


def _make_request(
    url_or_options: Any,
    callback: Any,
    kwargs: Mapping[str, Any],
    *,
    agent_class: type[Agent],
    more: tuple[Any, ...] = (),
) -> ClientRequest:
    """Node's argument shapes: ``(options[, cb])``, ``(url[, cb])`` and, since Node
    10.9, ``(url, options[, cb])``: the options are merged over the URL's."""
    if callable(url_or_options) and callback is None and not more:
        url_or_options, callback = None, url_or_options
    options: Any = None
    if (callback is not None and isinstance(callback, Mapping)) or (callback is None and more):
        options, callback = callback, (more[0] if more else None)
        more = more[1:]
    if more:
        raise TypeError(f"request() takes at most 3 positional arguments ({3 + len(more)} given)")
    if callback is not None and not callable(callback):
        raise errors.InvalidArgumentError(
            f'The "callback" argument must be a function or an options dict, not {callback!r}', "ERR_INVALID_ARG_TYPE"
        )
    if options:
        kwargs = {**options, **kwargs}
    opts = request_options(url_or_options, kwargs, protocol=agent_class.protocol)
    agent = opts.pop("agent")
    if agent is False:
        agent = agent_class()  # a one-off connection: Connection: close
        agent._one_off = True
    elif agent is None:
        # Read at call time: ``greenhttps.global_agent = Agent(...)`` takes effect.
        agent = get_global_agent(agent_class.protocol)
    elif not isinstance(agent, Agent):
        raise errors.InvalidArgumentError(f"agent must be an Agent, None or False, not {agent!r}", "ERR_INVALID_ARG_TYPE")
    for key, value in agent.options.items():
        if opts.get(key) is None:
            opts[key] = value
    if agent.proxy_env or opts.get("proxy") is not None:
        opts["proxy"] = agent.request_proxy(opts)  # part of the pool key (get_name)
    # The agent's default_port (Node's agent.defaultPort, which users may set: B-48).
    fill_port(opts, agent.default_port)
    return ClientRequest(opts, agent, callback)


def request(
    url_or_options: URLLike | RequestOptions | ResponseCallback | None = None,
    callback: ResponseCallback | RequestOptions | None = None,
    *more: ResponseCallback | None,
    **kwargs: Unpack[RequestOptions],
) -> ClientRequest:
    """Node's ``https.request``: returns a ``ClientRequest`` to write to and end.

    ``request(url_or_options[, callback])`` or, as Node >= 10.9, ``request(url,
    options[, callback])``.  ``url_or_options`` is a URL string, a ``urllib.parse``
    result or a dict of request options; an ``options`` dict after a URL is merged
    over it; keyword arguments are more options (camelCase or snake_case; times in
    milliseconds) and win over both.  ``callback(res)`` is added to ``'response'``.  Raises
    :class:`~greenhttps.errors.InvalidURLError` / ``InvalidProtocolError`` for a bad
    URL and ``TypeError`` for an unknown option; network errors come later (``'error'``
    or :meth:`ClientRequest.getresponse`).
    """
    return _make_request(url_or_options, callback, kwargs, agent_class=Agent, more=more)


@overload
def get(
    url_or_options: URLLike | RequestOptions | None = None, /, **kwargs: Unpack[RequestOptions]
) -> IncomingMessage: ...
@overload
def get(
    url_or_options: URLLike | RequestOptions | None, callback: ResponseCallback, /, **kwargs: Unpack[RequestOptions]
) -> ClientRequest: ...
@overload
def get(
    url_or_options: URLLike | RequestOptions | None, options: RequestOptions, callback: None = None, /,
    **kwargs: Unpack[RequestOptions],
) -> IncomingMessage: ...
@overload
def get(
    url_or_options: URLLike | RequestOptions | None, options: RequestOptions, callback: ResponseCallback, /,
    **kwargs: Unpack[RequestOptions],
) -> ClientRequest: ...
def get(url_or_options: Any = None, callback: Any = None, *more: Any, **kwargs: Any) -> Any:
    """Node's ``https.get``.  Without a callback: block and return the response.

    ``url_or_options``, ``callback`` (positional arguments: the ``options`` dict after a URL, then the callback) and the
    keyword options are :func:`request`'s (``get(url, options, callback)`` too), with
    the request ended at once.  With a ``callback(res)``, returns the ``ClientRequest``.
    Raises what :func:`request` and :meth:`ClientRequest.getresponse` raise.
    """
    req = request(url_or_options, callback, *more, **kwargs)
    return end_for_get(req)


def end_for_get(req: ClientRequest) -> Any:
    """End ``req`` as ``get()`` does: the response if nobody listens to 'response'
    (the blocking style), else the request."""
    if req.has_listeners("response"):
        req.end()
        return req
    req._blocking = True
    req.end()
    return req.getresponse()
