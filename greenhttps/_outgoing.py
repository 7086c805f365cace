"""OutgoingMessage (what ServerResponse and ClientRequest share) and ServerResponse.

Framing follows Node (``lib/_http_outgoing.js``): ``end(data)`` with nothing written
before sends ``Content-Length``; a head that must go out before the length is known
(``write()`` or ``write_head()`` then ``end()``) is chunked on HTTP/1.1 and
close-delimited for an HTTP/1.0 peer.  Automatic headers (``Date``, ``Connection``,
``Content-Length``, ``Transfer-Encoding``) are added only if the user did not set or
remove them.  Writes block the calling greenlet until the kernel has the bytes:
that is the back-pressure, so ``write()`` returns True unless the message is gone.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from . import errors
from ._events import EventEmitter
from ._headers import OutgoingHeaders, pairs_from
from ._options import node_aliases

if TYPE_CHECKING:
    from ._connection import Wire
    from ._incoming import IncomingMessage
    from ._socket import Socket

__all__ = ["OutgoingMessage", "ServerResponse", "STATUS_CODES"]

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


class OutgoingMessage(EventEmitter):
    """Headers and body of a message we send; subclasses say how the head looks."""

    #: Whether this message may carry a body (False for HEAD responses, 204, 304).
    _has_body = True
    #: ``write_head()`` fixed the head: its framing can no longer use the body length.
    _head_frozen = False

    def __init__(self) -> None:
        self._out = OutgoingHeaders()
        self._removed: set[str] = set()
        self._trailers: list[tuple[bytes, bytes]] = []
        self._chunked = False
        self.headers_sent = False
        #: ``end()`` has been called (Node's ``writableEnded``; ``finished`` too).
        self.finished = False
        #: Everything has been handed to the kernel (Node's ``writableFinished``).
        self.writable_finished = False
        self.destroyed = False

    writable_ended = property(lambda self: self.finished)

    # ------------------------------------------------------------- headers

    def _check_not_sent(self, what: str) -> None:
        if self.headers_sent:
            raise errors.HeadersSentError(f"Cannot {what} headers after they are sent to the client")

    def set_header(self, name: str, value: Any) -> OutgoingMessage:
        """Set one header (a list value sends it once per item); returns self."""
        self._check_not_sent("set")
        self._out.set(name, value)
        self._removed.discard(name.lower())
        return self

    def set_headers(self, headers: Mapping[str, Any]) -> OutgoingMessage:
        for name, value in headers.items():
            self.set_header(name, value)
        return self

    def append_header(self, name: str, value: Any) -> OutgoingMessage:
        self._check_not_sent("append")
        existing = self._out.get(name)
        if existing is None:
            return self.set_header(name, value)
        items = existing if isinstance(existing, list) else [existing]
        more = value if isinstance(value, (list, tuple)) else [value]
        self._out.set(name, [*items, *more])
        return self

    def get_header(self, name: str) -> str | list[str] | None:
        return self._out.get(name)

    def get_headers(self) -> dict[str, str | list[str]]:
        return self._out.as_dict()

    def get_header_names(self) -> list[str]:
        return list(self._out.as_dict())

    def get_raw_header_names(self) -> list[str]:
        return self._out.names()

    def has_header(self, name: str) -> bool:
        return name.lower() in self._out

    def remove_header(self, name: str) -> None:
        """Remove a header; automatic ones removed this way are not added back."""
        self._check_not_sent("remove")
        self._out.remove(name)
        self._removed.add(name.lower())

    def add_trailers(self, headers: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Trailers to send after a chunked body (dropped otherwise, as Node)."""
        self._trailers.extend(pairs_from(headers))

    # ---------------------------------------------------------------- body

    def _frame(self, body_length: int | None) -> None:
        """Add the framing header: Content-Length when the length is known."""
        out = self._out
        if not self._has_body or "transfer-encoding" in out:
            self._chunked = "transfer-encoding" in out
            return
        if "content-length" in out:
            return
        if body_length is not None:
            if "content-length" not in self._removed:
                out.set_default("content-length", "Content-Length", str(body_length))
        else:
            self._chunked = self._use_chunked()
            if self._chunked and self._explicit_chunked and "transfer-encoding" not in self._removed:
                out.set_default("transfer-encoding", "Transfer-Encoding", "chunked")

    #: Write "Transfer-Encoding: chunked" ourselves (the client must; for the server
    #: h11 adds it, and knows when an HTTP/1.0 peer cannot take it).
    _explicit_chunked = False

    def _use_chunked(self) -> bool:
        return True

    def _send_head(self, body: bytes | None, end: bool) -> None:
        raise NotImplementedError

    def _wire_for_body(self) -> Wire:
        raise NotImplementedError

    def _finish(self) -> None:
        """Called once everything has been written."""
        self.writable_finished = True
        self.emit("finish")

    def flush_headers(self) -> None:
        """Send the head now (its framing can no longer depend on the body)."""
        if not self.headers_sent:
            self._frame(None)
            self._send_head(None, False)

    def write(self, chunk: bytes | str, encoding: str = "utf-8", callback: Callable[..., Any] | None = None) -> bool:
        """Send a piece of the body; blocks cooperatively until written.  Returns True
        (the bytes are with the kernel) — False only if the message was destroyed."""
        if self.finished:
            raise errors.HeadersSentError("write after end", "ERR_STREAM_WRITE_AFTER_END")
        if self.destroyed:
            return False
        data = _as_bytes(chunk, encoding)
        if not self.headers_sent:
            self._frame(None)
            self._send_head(data if self._has_body else None, False)
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
        """Finish the message, sending ``data`` first if given.  Returns self."""
        if self.finished:
            return self
        if callable(data):  # end(callback), as Node allows
            data, callback = None, data
        body = _as_bytes(data, encoding) if data else b""
        if not self._has_body:
            body = b""
        if callback is not None:
            self.once("finish", callback)
        self.finished = True
        if not self.headers_sent:
            self._frame(None if self._head_frozen else len(body))
            self._send_head(body, True)
        else:
            trailers = self._trailers if self._chunked else []
            self._wire_for_body().send_end(trailers, body)
        self._finish()
        return self


@node_aliases
class ServerResponse(OutgoingMessage):
    """Node's ``http.ServerResponse``: the answer to one request on one connection."""

    #: Add a ``Date`` header automatically.
    send_date = True

    def __init__(self, req: IncomingMessage, wire: Wire, conn: Any) -> None:
        super().__init__()
        self.req = req
        self.socket: Socket = req.socket
        self.status_code = 200
        self.status_message: str | None = None
        self._wire = wire
        self._conn = conn  # the server's per-connection state (see _server.py)
        method = req.method
        self._is_head = method == "HEAD"
        self._has_body = not self._is_head
        self._peer_http10 = req.http_version == "1.0"
        #: True when this response ends the connection (Connection: close).
        self.should_keep_alive = not self._peer_http10

    connection = property(lambda self: self.socket)

    def __repr__(self) -> str:
        return f"<greenhttps.ServerResponse {self.status_code} for {self.req.method} {self.req.url}>"

    def write_head(
        self,
        status_code: int,
        reason: Any = None,
        headers: Mapping[str, Any] | Iterable[Any] | None = None,
    ) -> ServerResponse:
        """Set the status and headers and freeze the head (Node's ``writeHead``).

        ``write_head(200, {'Content-Type': 'text/plain'})`` works as in Node.  The
        head is sent with the first ``write()``/``end()``.
        """
        if self.headers_sent or self._head_frozen:
            raise errors.HeadersSentError("Cannot write headers after they are sent to the client")
        if not isinstance(reason, (str, type(None))):
            reason, headers = None, reason
        if not isinstance(status_code, int) or not 100 <= status_code <= 999:
            raise errors.InvalidArgumentError(f"Invalid status code: {status_code!r}", "ERR_HTTP_INVALID_STATUS_CODE")
        self.status_code = status_code
        if reason is not None:
            self.status_message = reason
        if headers:
            if isinstance(headers, Mapping):
                items = list(headers.items())
            else:
                flat = list(headers)
                # Node also takes a flat [name, value, name, value] list.
                if flat and isinstance(flat[0], str):
                    items = list(zip(flat[0::2], flat[1::2]))
                else:
                    items = [tuple(pair) for pair in flat]
            for name, value in items:
                if name.lower() in self._out and name.lower() != "set-cookie":
                    self._out.set(name, value)
                else:
                    self.append_header(name, value)
        self._head_frozen = True
        return self

    def _use_chunked(self) -> bool:
        return not self._peer_http10

    def _send_head(self, body: bytes | None, end: bool) -> None:
        status = self.status_code
        if status in (204, 304) or 100 <= status < 200:
            self._has_body = False
            body = None
        out = self._out
        removed = self._removed
        if self.send_date and "date" not in removed:
            out.set_default("date", "Date", http_date())
        if "connection" not in removed and "connection" not in out:
            if self._conn.keep_alive_after(self):
                out.set_default("connection", "Connection", "keep-alive")
                timeout = self._conn.keep_alive_header
                if timeout and "keep-alive" not in removed:
                    out.set_default("keep-alive", "Keep-Alive", timeout)
            else:
                out.set_default("connection", "Connection", "close")
        connection = out.get("connection")
        if isinstance(connection, str) and "close" in connection.lower():
            self.should_keep_alive = False
        self.headers_sent = True
        self._chunked = self._chunked and not self._peer_http10
        reason = self.status_message or STATUS_CODES.get(status, "Unknown")
        self._wire.send_head(status=status, reason=reason, headers=out.pairs(), body=body, end=end)

    def _wire_for_body(self) -> Wire:
        return self._wire

    def _finish(self) -> None:
        super()._finish()
        self._conn.response_finished(self)

    def write_continue(self) -> None:
        """Send ``100 Continue`` (Node's ``writeContinue``)."""
        self._conn.send_continue()

    def write_processing(self) -> None:
        self._wire.send_informational(102)

    def write_early_hints(self, hints: Mapping[str, Any]) -> None:
        self._wire.send_informational(103, pairs_from(hints))

    def set_timeout(self, msecs: float, callback: Callable[[], Any] | None = None) -> ServerResponse:
        """Socket idle timeout in ms; ``callback`` gets this response's ``'timeout'``."""
        if callback is not None:
            self.on("timeout", callback)
        self.socket.set_timeout(msecs)
        return self

    def destroy(self, error: BaseException | None = None) -> None:
        """Abort: close the connection without finishing the response."""
        self.destroyed = True
        self._conn.abort(error)
