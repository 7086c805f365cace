"""IncomingMessage: a request as the server sees it, or a response as the client does.

The body is pulled, not pushed: ``read()`` blocks the calling greenlet until bytes
arrive.  Node's push style still works: each piece read is also emitted as
``'data'``, and ``'end'`` follows the last one; when a listener registered for
``'data'`` or ``'end'`` but nobody reads, the owner (server loop or client) pumps the
body through those events after the handler returns (:meth:`IncomingMessage._flow`).

A body read whole (``read()`` before any other read, ``text()``, ``json()``) is kept,
so that ``text()`` and ``json()`` can be called again; a body read piecewise
(``read(n)``, iteration, ``'data'``) is never kept: streaming stays streaming.
"""

from __future__ import annotations

import json as _json
from typing import Any, Callable, Iterator

from . import errors
from ._events import EventEmitter
from ._headers import Headers, node_headers, raw_list
from ._net_socket import Socket
from ._options import attribute_aliases, node_aliases
from ._parse import Head

__all__ = ["IncomingMessage"]


@node_aliases
@attribute_aliases("status_code", "status_message", "http_version")
class IncomingMessage(EventEmitter):
    """Node's ``http.IncomingMessage``."""

    def __init__(
        self,
        head: Head,
        socket: Socket,
        read_chunk: Callable[[], bytes],
        *,
        has_body: bool = True,
        trailers: Callable[[], Any] = tuple,
        read_rest: Callable[[], bytes | None] | None = None,
    ) -> None:
        self._head = head
        self.socket = socket
        #: The request's method (server side; None on a client's response).
        self.method = head.method or None
        #: Request line target exactly as sent (server side).
        self.url = head.target
        #: Response status (client side).
        self.status_code = head.status or None
        self.status_message = head.reason or None
        self.http_version = head.http_version
        self._read_chunk = read_chunk
        #: The rest of the body in one piece, or None if the source cannot.
        self._read_rest = read_rest
        self._trailer_source = trailers
        #: True once the whole body has been received.
        self.complete = not has_body
        #: True if the peer went away before the body ended.
        self.aborted = False
        if not has_body:
            self._read_chunk = _no_body
            self._read_rest = None

    # Per-message state whose start is the same for every message: class defaults
    # (an instance gets its own on first change), not ~5 stores per message.
    _buffer = b""
    _headers: Headers | None = None
    _trailers: Headers | None = None
    _ended = False
    _error: BaseException | None = None

    #: A client response's :class:`~greenhttps._exchange.RequestTimings` (queued, dns,
    #: connect, tls, sent, first_byte, total in ms; reused); None on the server.
    timings: Any = None

    #: Called after ``'end'`` or ``'aborted'``, before this message's ``'close'``
    #: (which it makes follow ``'end'``); the client request sets it.
    _on_finish: Callable[[], None] | None = None

    #: Node's deprecated alias of ``socket`` (``message.connection``).
    connection = property(lambda self: self.socket)

    def __repr__(self) -> str:
        return f"<greenhttps.IncomingMessage {self._head!r}>"

    @property
    def http_version_major(self) -> int:
        """1 for HTTP/1.x (Node's ``message.httpVersionMajor``)."""
        return int(self.http_version.split(".")[0])

    @property
    def http_version_minor(self) -> int:
        """0 or 1 for HTTP/1.0 or 1.1 (Node's ``message.httpVersionMinor``)."""
        parts = self.http_version.split(".")
        return int(parts[1]) if len(parts) > 1 else 0

    #: The whole body, when a read took it whole (for text()/json() again).
    _body: bytes | None = None
    #: Part of the body was handed out piecewise (read(n), iteration, 'data').
    _streamed = False

    @property
    def headers(self) -> Headers:
        """Node's ``message.headers``: lowercase names, Node's merge rules for
        repeats (``set-cookie`` is a list, others joined with ``', '``), in a
        :class:`~greenhttps._headers.Headers`: a dict whose lookups ignore case
        (``headers["Content-Type"]``), built on first use."""
        if self._headers is None:
            self._headers = node_headers(self._head.headers)
        return self._headers

    @property
    def raw_headers(self) -> list[str]:
        """Header names and values as received, flat ``[name, value, ...]``; Node's ``rawHeaders``."""
        return raw_list(self._head.headers)

    @property
    def trailers(self) -> Headers:
        """Trailer fields, as :attr:`headers` (after the body has been read; empty before)."""
        if self._trailers is None:
            if not self.complete:
                return Headers()
            self._trailers = node_headers(self._trailer_source())
        return self._trailers

    @property
    def raw_trailers(self) -> list[str]:
        """Trailers as received, flat ``[name, value, ...]`` (``[]`` before the body ends); Node's ``rawTrailers``."""
        return raw_list(self._trailer_source()) if self.complete else []

    # ------------------------------------------------------------------ body

    def _next_chunk(self) -> bytes:
        """One piece of the body from the wire; b'' at the end.  Emits the events."""
        if self._ended:
            return b""
        chunk = self._pull(self._read_chunk)
        if chunk:
            self._streamed = True  # read(-1) clears it when it keeps the whole body
            self.emit("data", chunk)
            return chunk
        self.complete = True
        self._ended = True
        if self._listeners:  # most messages have none: no emit() calls
            self.emit("end")
        on_finish = self._on_finish
        if on_finish is not None:
            self._on_finish = None
            on_finish()
            if self._listeners:
                self.emit("close")
        return b""

    def _replace_source(self, read_chunk: Callable[[], bytes]) -> None:
        """Read the body from ``read_chunk`` from now on (its owner has taken it)."""
        self._read_chunk = read_chunk
        self._read_rest = None

    def _pull(self, reader: Callable[[], Any]) -> Any:
        """``reader()``, remembering a failure: later reads raise it again."""
        if self._error is not None:
            raise self._error
        try:
            return reader()
        except errors.NetworkError as exc:
            self._abort(exc)
            raise
        except errors.ProtocolError as exc:
            self._error = exc
            raise

    def _abort(self, exc: BaseException) -> None:
        """The body will not end: ``'aborted'``, the request's ``'close'`` (client),
        then -- as Node 20, whose message is destroyed with an error -- ``'error'``
        (ECONNRESET "aborted") to a listener, if there is one, and ``'close'``."""
        self._error = exc
        if not self.aborted:
            self.aborted = True
            self.emit("aborted")
            on_finish = self._on_finish
            if on_finish is not None:
                self._on_finish = None
                on_finish()
            if self.listener_count("error"):
                self.emit("error", errors.ConnectionResetError("aborted"))
            self.emit("close")

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes of the body (all of it when ``size`` < 0).

        Blocks the calling greenlet; returns b'' at the end.  Raises
        ``greenhttps.errors.ConnectionResetError`` if the peer aborted.  Without a
        ``'data'`` listener, all of a Content-Length body is built in place in the
        bytes returned (no pieces, no join).
        """
        if size is None or size < 0:
            whole = not self._streamed and self._body is None
            # No empty first part: join() hands back a lone bytes as it is, uncopied.
            parts = [self._buffer] if self._buffer else []
            self._buffer = b""
            # A 'data' listener sees the body as it comes (it may be counting bytes
            # to cut an upload short), so then the pieces are read one by one.
            listeners = self._listeners
            if self._read_rest is not None and not self._ended and not (listeners and listeners.get("data")):
                rest = self._pull(self._read_rest)
                if rest:
                    parts.append(rest)
            while True:
                chunk = self._next_chunk()
                if not chunk:
                    body = b"".join(parts)
                    if whole:
                        # All of it, from its first byte: kept (no copy) for text()/json().
                        self._body, self._streamed = body, False
                    return body
                parts.append(chunk)
        if size == 0:
            return b""
        if not self._buffer:
            self._buffer = self._next_chunk()
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def __iter__(self) -> Iterator[bytes]:
        """Iterate over the body as it arrives, piece by piece."""
        if self._buffer:
            chunk, self._buffer = self._buffer, b""
            yield chunk
        while True:
            chunk = self._next_chunk()
            if not chunk:
                return
            yield chunk

    def _whole_body(self) -> bytes:
        """The whole body: kept from an earlier whole read, else read now (and kept)."""
        if self._body is None:
            if self._error is not None:
                raise self._error
            if self._streamed:
                raise errors.Error("the body was read piecewise (read(n), iteration or 'data'): "
                                   "text() and json() need all of it", "ERR_GREENHTTPS_BODY_USED")
            self.read()
        return self._body or b""

    def text(self, encoding: str | None = None, errors: str = "replace") -> str:
        """The whole body decoded (Python only; no Node counterpart); can be called again.

        ``encoding`` defaults to the Content-Type charset, else UTF-8; ``errors`` is the
        codec's error handler.  Raises as :meth:`read`, and ``ERR_GREENHTTPS_BODY_USED``
        when part of the body was already read piecewise (not kept).
        """
        return self._whole_body().decode(encoding or self._charset(), errors)

    def json(self, **kwargs: Any) -> Any:
        """The whole body parsed as JSON; ``kwargs`` go to ``json.loads`` (Python only);
        can be called again.

        Raises ``json.JSONDecodeError`` for a body that is not JSON, else as :meth:`text`.
        """
        return _json.loads(self._whole_body(), **kwargs)

    def _charset(self) -> str:
        content_type = self.headers.get("content-type")
        if isinstance(content_type, str):
            for param in content_type.split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key.lower() == "charset" and value:
                    return value.strip('"')
        return "utf-8"

    #: pause() was called and resume() not since (Node's ``readable.isPaused()``).
    _paused = False
    #: A greenlet is pushing the body through the events (in :meth:`_flow`).
    _flowing = False

    def pause(self) -> IncomingMessage:
        """Stop emitting ``'data'`` until :meth:`resume` (Node's ``readable.pause()``).

        Called from a ``'data'`` listener, no further piece is read or emitted once
        it returns; called before the body flows (in the ``'response'`` listener),
        nothing flows.  The bytes wait in the socket (TCP back-pressure).  Returns self.
        """
        self._paused = True
        return self

    def resume(self) -> IncomingMessage:
        """Let the body flow again: the rest is read and emitted as ``'data'`` and
        ``'end'`` (discarded if nobody listens), as Node's ``readable.resume()``.

        Called from a ``'data'`` listener, the flow that is running goes on; called
        elsewhere, the calling greenlet reads the rest (it blocks until the end, or
        until a listener pauses again).  Returns self.
        """
        self._paused = False
        if not self._flowing:
            self._flow()
        return self

    def is_paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (Node's ``readable.isPaused()``)."""
        return self._paused

    def _flow(self) -> None:
        """Push the remaining body through ``'data'`` and ``'end'`` (Node's flowing
        mode) until its end or a :meth:`pause`.  Errors are delivered as events,
        never raised into the owner's loop."""
        if self._flowing:
            return
        self._flowing = True
        try:
            if self._buffer and not self._paused:
                chunk, self._buffer = self._buffer, b""
                self.emit("data", chunk)
            while not self._paused and self._next_chunk():
                pass
        except errors.Error as exc:
            # An abort was announced already ('aborted'); a malformed body was not.
            if not self.aborted or isinstance(exc, errors.ProtocolError):
                self.emit_error(exc)
        finally:
            self._flowing = False

    @property
    def _wants_flow(self) -> bool:
        listeners = self._listeners  # read here, not by two has_listeners() calls (every request)
        return bool(listeners and not self._ended and not self._paused and ("data" in listeners or "end" in listeners))

    def set_timeout(self, msecs: float, callback: Callable[[], Any] | None = None) -> IncomingMessage:
        """As Node's ``message.setTimeout()``: sets the socket's idle timeout, ``msecs``
        in milliseconds (0 disables); ``callback`` gets ``'timeout'``.  Returns self."""
        if callback is not None:
            self.on("timeout", callback)
        self.socket.set_timeout(msecs)
        return self

    def destroy(self, error: BaseException | None = None) -> None:
        """Close the connection (Node's ``message.destroy(error)``); ``error``, if given,
        is emitted on the socket as ``'error'``."""
        self.socket.destroy(error)


def _no_body() -> bytes:
    return b""
