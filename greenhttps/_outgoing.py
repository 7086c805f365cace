"""OutgoingMessage: what ServerResponse (:mod:`._response`) and ClientRequest share.

Framing follows Node (``lib/_http_outgoing.js``): ``end(data)`` with nothing written
before sends ``Content-Length``; a head that must go out before the length is known
(``write()`` or ``write_head()`` then ``end()``) is chunked on HTTP/1.1 and
close-delimited for an HTTP/1.0 peer.  Automatic headers (``Date``, ``Connection``,
``Content-Length``, ``Transfer-Encoding``) are added only if the user did not set or
remove them.  The framing is decided here, once per message (:meth:`OutgoingMessage._frame`,
:func:`response_framing`, :func:`request_framing`), from the message's own fields
looked up by name; :mod:`._wire_format` only serialises the result and the wire only
counts the body against it.  Writes block the calling greenlet until the kernel has the bytes:
that is the back-pressure, so ``write()`` returns True unless the message is gone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping  # isinstance() with it: typing's alias checks ~10x slower
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import errors
from ._events import EventEmitter
from ._headers import OutgoingHeaders, pairs_from
from ._options import attribute_aliases, node_aliases  # noqa: I001 (attribute_aliases: re-exported, it lives in _options now)
from ._wire_format import Framing, OutgoingFraming

if TYPE_CHECKING:
    from ._wire import Wire

__all__ = ["OutgoingMessage", "STATUS_CODES", "attribute_aliases", "request_framing", "response_framing"]

#: Status code -> standard reason phrase (Node's ``http.STATUS_CODES``).
STATUS_CODES: dict[int, str] = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content", 207: "Multi-Status",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout",
    409: "Conflict", 410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Payload Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    416: "Range Not Satisfiable", 417: "Expectation Failed", 418: "I'm a Teapot",
    421: "Misdirected Request", 422: "Unprocessable Entity", 425: "Too Early",
    426: "Upgrade Required", 428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}

_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    """The ``Date`` header value, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return _date_cache[1]  # type: ignore[no-any-return]


def _as_bytes(chunk: bytes | bytearray | memoryview | str, encoding: str) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode(encoding)
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk) if not isinstance(chunk, bytes) else chunk
    raise errors.InvalidArgumentError(
        f"The chunk must be str or bytes, not {type(chunk).__name__}", "ERR_INVALID_ARG_TYPE"
    )


def _check_status(status: object) -> None:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise errors.InvalidArgumentError(f"Invalid status code: {status!r}", "ERR_HTTP_INVALID_STATUS_CODE")
    if status < 200:
        # h11 sends 1xx heads only as interim responses, never as the final one.
        raise errors.InvalidArgumentError(
            f"Invalid status code: {status} (send 1xx with write_continue, write_processing "
            "or write_early_hints)",
            "ERR_HTTP_INVALID_STATUS_CODE",
        )


def _head_headers(headers: Mapping[str, Any] | Iterable[Any] | None) -> OutgoingHeaders:
    """``write_head``'s headers, validated (Node: a dict, pairs, or a flat list)."""
    given = OutgoingHeaders()
    if not headers:
        return given
    if isinstance(headers, Mapping):
        given.update(headers)
        return given
    flat = list(headers)
    if flat and isinstance(flat[0], str):
        if len(flat) % 2:
            raise errors.InvalidArgumentError("headers: a flat list needs name, value pairs", "ERR_INVALID_ARG_VALUE")
        pairs = list(zip(flat[0::2], flat[1::2]))
    else:
        pairs = [tuple(pair) for pair in flat]
    for name, value in pairs:  # a list may repeat a name: each one is sent
        existing = given.get(name)
        if existing is None:
            given.set(name, value)
        else:
            more = list(value) if isinstance(value, (list, tuple)) else [value]
            given.set(name, [*(existing if isinstance(existing, list) else [existing]), *more])
    return given


# ------------------------------------------------------------ framing, decided once

HeaderList = list[tuple[bytes, bytes]]

_DIGITS = re.compile(r"[0-9]+")


def _joined(value: str | list[str]) -> str:
    return value if isinstance(value, str) else ", ".join(value)


def _tokens(value: str | list[str]) -> list[str]:
    return [token.strip().lower() for token in _joined(value).split(",")]


def _says_close(connection: str | list[str]) -> bool:
    if connection == "keep-alive":  # ours (the usual case): no need to split it
        return False
    return connection == "close" or "close" in _tokens(connection)


def _content_length(value: str | list[str]) -> int:
    if isinstance(value, list):
        value = value[-1]  # the last line says it, as the peer's parser would see it
    if not _DIGITS.fullmatch(value.strip()):
        raise errors.InvalidArgumentError(f"Invalid Content-Length {value!r}", "ERR_HTTP_INVALID_HEADER_VALUE")
    return int(value)


def response_framing(
    out: OutgoingHeaders,
    removed: set[str] | frozenset[str] = frozenset(),
    *,
    status: int,
    head_request: bool,
    peer_http10: bool,
    keep_alive: bool,
    length: int | None = None,
) -> tuple[HeaderList, OutgoingFraming]:
    """A response's framing and its final wire fields, decided once (RFC 9112 §6).

    From the fields the response holds (looked up by name, never rescanned): a
    ``Transfer-Encoding`` ending in ``chunked`` is chunked, any other is
    close-delimited; else a ``Content-Length`` counts the body (``length``: the value
    we set ourselves, known valid); else 204/304 have no body, an HTTP/1.0 peer (or
    a removed ``Transfer-Encoding``) gets a close-delimited body, and an HTTP/1.1 one
    ``Transfer-Encoding: chunked``.  A response to HEAD says what the GET would and
    sends no body.  An HTTP/1.0 peer, which cannot decode chunks, loses the
    ``Transfer-Encoding``.  ``Connection: close`` is said whenever the connection
    ends (``keep_alive`` False, or a close-delimited body), unless the user removed
    ``Connection``; a user's ``keep-alive`` token (and ``Keep-Alive`` field) then gives
    way.  A 204/304 carrying a ``Transfer-Encoding`` ends the connection (Node).  ``out`` itself is
    not changed: the edits are in the returned fields.
    """
    # The fields' own dict (lowercase name -> (name, value)): lookups without a
    # method call each, on the path of every response.
    fields = out._fields
    field = fields.get("transfer-encoding")
    te = field[1] if field is not None else None
    override: dict[str, str | None] | None = None
    extra: HeaderList | None = None
    remaining = 0
    if te is not None:
        if peer_http10:
            kind = Framing.UNTIL_CLOSE
            override = {"transfer-encoding": None}
        elif _tokens(te)[-1] == "chunked":
            kind = Framing.CHUNKED
        else:
            kind = Framing.UNTIL_CLOSE
    else:
        field = fields.get("content-length")
        if field is not None:
            cl = field[1]
            kind = Framing.LENGTH
            remaining = length if length is not None else _content_length(cl)
        elif status == 204 or status == 304:
            kind = Framing.NONE
        elif peer_http10 or "transfer-encoding" in removed:
            kind = Framing.UNTIL_CLOSE
        else:
            # HEAD gets the fields a GET would have had (as h11 and Node do).
            kind = Framing.CHUNKED
            extra = [(b"Transfer-Encoding", b"chunked")]
    no_body_status = status == 204 or status == 304
    if head_request or no_body_status:
        kind, remaining = Framing.NONE, 0
    # A 204/304 that says Transfer-Encoding has no body to frame, and a peer that
    # believes the field would wait for chunks: Node ends the connection (B-33).
    close = not keep_alive or kind is Framing.UNTIL_CLOSE or (no_body_status and te is not None)
    field = fields.get("connection")
    if field is not None:
        connection = field[1]
        says_close = connection != "keep-alive" and _says_close(connection)  # ours, the usual case: no call
        if close and not says_close:
            kept = [token for token in _tokens(connection) if token and token != "keep-alive"]
            override = override or {}
            override["connection"] = ", ".join([*kept, "close"])
            if "keep-alive" in fields:
                override["keep-alive"] = None  # its parameters describe a connection that ends
        close = close or says_close
    elif close and "connection" not in removed:
        extra = [*(extra or ()), (b"Connection", b"close")]
    pairs = out.pairs() if override is None else out.pairs_with(override)
    if extra:
        pairs.extend(extra)
    return pairs, OutgoingFraming(kind, remaining, close)


def request_framing(out: OutgoingHeaders, length: int | None = None) -> tuple[HeaderList, OutgoingFraming]:
    """A request's framing and its wire fields (RFC 9112 §6.3: a request without a
    length has no body); ``length`` as for :func:`response_framing`."""
    fields = out._fields  # the dict itself: no method call per lookup (every request)
    field = fields.get("connection")
    close = field is not None and _says_close(field[1])
    if "transfer-encoding" in fields:
        framing = OutgoingFraming(Framing.CHUNKED, close=close)
    else:
        field = fields.get("content-length")
        if field is None:
            framing = OutgoingFraming(Framing.LENGTH, 0, close)
        else:
            framing = OutgoingFraming(Framing.LENGTH, length if length is not None else _content_length(field[1]),
                                      close)
    return out.pairs(), framing


@node_aliases
@attribute_aliases("headers_sent", "writable_finished")
class OutgoingMessage(EventEmitter):
    """Headers and body of a message we send; subclasses say how the head looks.

    Node's ``http.OutgoingMessage``, the base of ``ServerResponse`` and ``ClientRequest``:
    its methods are Node's of the same camelCase name (``set_header`` is ``setHeader``).
    """

    #: Whether this message may carry a body (False for HEAD responses, 204, 304).
    _has_body = True
    #: A response to HEAD (server side): framed as the GET's, sent without a body.
    _is_head = False
    #: ``write_head()`` fixed the head: its framing can no longer use the body length.
    _head_frozen = False
    #: Decided by :meth:`_frame`: the head's wire fields, its framing, and the
    #: Content-Length we set ourselves (None if we did not).
    _pairs: list[tuple[bytes, bytes]]
    _framing: OutgoingFraming
    _auto_length: int | None = None
    #: Automatic headers the user removed (lowercase names), and the trailers to
    #: send: empty and shared until the first remove_header()/add_trailers() (most
    #: messages have neither: two objects fewer per message).
    #: (Typed as what they become: every change goes through a check that they are.)
    _removed: set[str] = frozenset()  # type: ignore[assignment]
    _trailers: list[tuple[bytes, bytes]] = ()  # type: ignore[assignment]
    #: The head has been handed to the wire (``headers_sent`` turns True earlier, at
    #: ``write_head()``, as in Node, where the head is then stored but not yet sent).
    _head_written = False

    def __init__(self) -> None:
        self._out = OutgoingHeaders()
        self._chunked = False
        #: The head is fixed: sent, or stored by ``write_head()`` (Node's ``headersSent``).
        self.headers_sent = False
        #: ``end()`` has been called (Node's ``writableEnded``; ``finished`` too).
        self.finished = False
        #: Everything has been handed to the kernel (Node's ``writableFinished``).
        self.writable_finished = False
        self.destroyed = False
        #: ``'close'`` has been emitted (Node's ``closed``): the message is over, sent or not.
        self.closed = False

    #: True once ``end()`` has been called (Node's ``writableEnded``; read-only).
    writable_ended = property(lambda self: self.finished)

    # ------------------------------------------------------------- headers

    def _check_not_sent(self, what: str) -> None:
        if self.headers_sent:
            raise errors.HeadersSentError(f"Cannot {what} headers after they are sent to the client")

    def set_header(self, name: str, value: Any) -> OutgoingMessage:
        """Set header ``name`` to ``value`` (a list sends it once per item); returns self.

        Node: ``setHeader()``.  Raises :class:`~greenhttps.errors.HeadersSentError` once
        the head is sent, :class:`~greenhttps.errors.InvalidArgumentError` for a name or
        value that cannot go on the wire.
        """
        self._check_not_sent("set")
        self._out.set(name, value)
        if self._removed:
            self._removed.discard(name.lower())  # non-empty: a set of our own
        return self

    def set_headers(self, headers: Mapping[str, Any]) -> OutgoingMessage:
        """:meth:`set_header` for each item of the mapping ``headers``; returns self.

        Node: ``setHeaders()``; raises as :meth:`set_header`.
        """
        for name, value in headers.items():
            self.set_header(name, value)
        return self

    def append_header(self, name: str, value: Any) -> OutgoingMessage:
        """Add ``value`` (or each item of a list) to header ``name``, keeping earlier values.

        Node: ``appendHeader()``; returns self; raises as :meth:`set_header`.
        """
        self._check_not_sent("append")
        existing = self._out.get(name)
        if existing is None:
            return self.set_header(name, value)
        items = existing if isinstance(existing, list) else [existing]
        more = value if isinstance(value, (list, tuple)) else [value]
        self._out.set(name, [*items, *more])
        return self

    def get_header(self, name: str) -> str | list[str] | None:
        """The value set for header ``name`` (any case), None if unset; Node's ``getHeader()``."""
        return self._out.get(name)

    def get_headers(self) -> dict[str, str | list[str]]:
        """A copy of the headers set, keyed by lower-case name; Node's ``getHeaders()``."""
        return self._out.as_dict()

    def get_header_names(self) -> list[str]:
        """The lower-case names of the headers set; Node's ``getHeaderNames()``."""
        return list(self._out.as_dict())

    def get_raw_header_names(self) -> list[str]:
        """The names of the headers set, in the case given; Node's ``getRawHeaderNames()``."""
        return self._out.names()

    def has_header(self, name: str) -> bool:
        """Whether header ``name`` (any case) is set; Node's ``hasHeader()``."""
        return name.lower() in self._out

    def remove_header(self, name: str) -> None:
        """Remove header ``name``; automatic ones removed this way are not added back.

        Node: ``removeHeader()``.  Raises :class:`~greenhttps.errors.HeadersSentError`
        once the head is sent.
        """
        self._check_not_sent("remove")
        self._out.remove(name)
        if not self._removed:
            self._removed = set()
        self._removed.add(name.lower())

    def add_trailers(self, headers: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Trailers to send after a chunked body (dropped otherwise, as Node).

        ``headers`` is a mapping or an iterable of (name, value) pairs; pairs are sent
        one line each, repeats included (as Node's array form of ``addTrailers()``).
        """
        items = headers.items() if isinstance(headers, Mapping) else headers
        if not self._trailers:
            self._trailers = []
        for pair in items:
            self._trailers.extend(pairs_from([pair]))

    # ---------------------------------------------------------------- body

    def _frame(self, body_length: int | None) -> None:
        """Decide the framing, once: the automatic length fields, then the
        :class:`OutgoingFraming` and the final wire fields (kept for ``_send_head``).

        Content-Length when the length is known, else chunked (close-delimited for an
        HTTP/1.0 peer).  A user's own Content-Length or Transfer-Encoding wins; a
        removed one is not put back.  A ``Trailer`` header asks for chunking
        (trailers need it), as Node.
        """
        self._default_length(body_length)
        self._pairs, self._framing = self._decide()
        # Only a chunked body can carry trailers.
        self._chunked = self._framing.kind is Framing.CHUNKED

    def _default_length(self, body_length: int | None) -> None:
        """Add Content-Length (or, for the client, Transfer-Encoding) unless set or removed."""
        fields = self._out._fields  # the dict itself: no method call per lookup (every message)
        self._auto_length = None
        # RFC 9110 §9.3.2: a HEAD response carries the fields the GET would have,
        # so the length of what end() was given too (Node sends no length at all).
        if (self._has_body or self._is_head) and "transfer-encoding" not in fields and "content-length" not in fields:
            if body_length is not None and "content-length" not in self._removed and "trailer" not in fields:
                fields["content-length"] = ("Content-Length", str(body_length))
                self._auto_length = body_length
            elif self._explicit_chunked and "transfer-encoding" not in self._removed:
                fields["transfer-encoding"] = ("Transfer-Encoding", "chunked")

    def _decide(self) -> tuple[list[tuple[bytes, bytes]], OutgoingFraming]:
        """The final wire fields and the framing (see :func:`response_framing`)."""
        raise NotImplementedError

    #: Write "Transfer-Encoding: chunked" into the fields here (the client; a
    #: response's is added by :func:`response_framing`, which knows the peer).
    _explicit_chunked = False

    def _check_head(self) -> None:
        """Raise if the head cannot be sent as it stands (before any state changes)."""

    def _send_head(self, body: bytes | None, end: bool) -> None:
        raise NotImplementedError

    def _start(self, body: bytes | None, end: bool) -> None:
        """Send the head (the framing is chosen), with ``body`` and the end if given."""
        self._head_written = self.headers_sent = True
        self._send_head(body if body and self._has_body else None, end)

    def _wire_for_body(self) -> Wire:
        raise NotImplementedError

    def _finish(self) -> None:
        """Called once everything has been written."""
        self.writable_finished = True
        if self._listeners:  # emit() only to listeners: most messages have none
            self.emit("finish")

    def _raise_if_lost(self) -> None:
        """A message whose connection was lost (not destroyed by its owner) says so
        to the writer: a handler learns its peer is gone at its next write."""

    def flush_headers(self) -> None:
        """Send the head now (its framing can no longer depend on the body)."""
        if not self._head_written:
            self._check_head()
            self._frame(None)
            self._start(None, False)

    def write(self, chunk: bytes | str, encoding: str = "utf-8", callback: Callable[..., Any] | None = None) -> bool:
        """Send ``chunk`` of the body; blocks cooperatively until written.  Returns True
        (the bytes are with the kernel) — False only if the message was destroyed.

        Node: ``write(chunk, encoding, callback)``; a str is encoded with ``encoding``,
        ``callback()`` is called once written.  Raises
        :class:`~greenhttps.errors.HeadersSentError` (``ERR_STREAM_WRITE_AFTER_END``)
        after ``end()``, and a network error if the connection fails."""
        if self.finished:
            raise errors.HeadersSentError("write after end", "ERR_STREAM_WRITE_AFTER_END")
        if self.destroyed:
            self._raise_if_lost()
            return False
        data = _as_bytes(chunk, encoding)
        if not self._head_written:
            self._check_head()
            self._frame(None)
            self._start(data, False)
        elif data and self._has_body:
            self._wire_for_body().send_data(data)
        if callback is not None:
            callback()
        return True

    def end(
        self,
        data: bytes | str | None = None,
        encoding: str = "utf-8",
        callback: Callable[..., Any] | None = None,
    ) -> OutgoingMessage:
        """Finish the message, sending ``data`` first if given.  Returns self.

        Node: ``end(data, encoding, callback)``; a str ``data`` is encoded with
        ``encoding``, ``callback()`` is called once finished (``end(callback)`` works
        too).  A second call does nothing.
        """
        if self.finished:
            return self
        if self.destroyed:
            self._raise_if_lost()
        if callable(data):  # end(callback), as Node allows
            data, callback = None, data
        body = data if type(data) is bytes else _as_bytes(data, encoding) if data else b""
        if not self._head_written:
            self._check_head()
        if callback is not None:
            self.once("finish", callback)
        self.finished = True
        if not self._head_written:
            self._frame(None if self._head_frozen else len(body))
            if self._chunked and self._trailers:
                self._start(body, False)  # the head cannot carry the trailers' end
                self._wire_for_body().send_end(self._trailers)
            else:
                self._start(body, True)
        else:
            trailers = self._trailers if self._chunked else []
            self._wire_for_body().send_end(trailers, body if self._has_body else None)
        self._finish()
        return self
