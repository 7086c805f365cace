"""ServerResponse: Node's ``http.ServerResponse``, and what it needs of its connection.

The message half of a server exchange: status, headers and body of the answer to one
request, sent through the :class:`~greenhttps._wire.Wire` it is given; everything
about the connection (keep-alive, 100 Continue, the end of the response, an abort)
goes through the :class:`ResponseChannel` protocol, which
:class:`~greenhttps._server_conn.ServerConnection` implements.  Framing and writing
are :class:`~greenhttps._outgoing.OutgoingMessage`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

from . import errors
from ._headers import OutgoingHeaders, check_value, pairs_from
from ._options import attribute_aliases, node_aliases
from ._outgoing import (
    STATUS_CODES,
    OutgoingMessage,
    _check_status,
    _head_headers,
    http_date,
    response_framing,
)
from ._wire_format import OutgoingFraming, response_bytes

if TYPE_CHECKING:
    from ._incoming import IncomingMessage
    from ._net_socket import Socket
    from ._wire import Wire

__all__ = ["ResponseChannel", "ServerResponse"]


class ResponseChannel(Protocol):
    """What a :class:`ServerResponse` needs of the connection it answers on
    (:class:`greenhttps._server_conn.ServerConnection` implements it)."""

    @property
    def keep_alive_header(self) -> str | None:
        """The ``Keep-Alive`` header's value (``timeout=5``), or None for none."""

    def keep_alive_after(self, res: ServerResponse) -> bool:
        """Will the connection stay open after ``res``? (Decides its ``Connection``
        field and, with the body's framing, whether the wire ends after it.)"""

    def response_finished(self, res: ServerResponse) -> None:
        """``res.end()`` has sent everything: the connection may go on."""

    def send_continue(self) -> None:
        """Send ``100 Continue`` once, if the client asked and may get it."""

    def abort(self, error: BaseException | None = None) -> None:
        """Destroy the connection: no more bytes, no reuse (``res.destroy()``)."""


@node_aliases
@attribute_aliases("status_code", "status_message", "should_keep_alive")
class ServerResponse(OutgoingMessage):
    """Node's ``http.ServerResponse``: the answer to one request on one connection."""

    #: Add a ``Date`` header automatically.
    send_date = True

    #: Set by the connection when it was lost under the handler: makes the error
    #: the next write raises.
    _lost: Callable[[], BaseException] | None = None

    def __init__(self, req: IncomingMessage, wire: Wire, conn: ResponseChannel) -> None:
        super().__init__()
        self.req = req
        self.socket: Socket = req.socket
        self.status_code = 200
        self.status_message: str | None = None
        self._wire = wire
        self._conn = conn
        method = req.method
        self._is_head = method == "HEAD"
        self._has_body = not self._is_head
        self._peer_http10 = req.http_version == "1.0"
        #: True when this response ends the connection (Connection: close).
        self.should_keep_alive = not self._peer_http10

    #: Node's deprecated alias of ``socket`` (``response.connection``).
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

        ``write_head(200, {'Content-Type': 'text/plain'})`` works as in Node, and so do
        a list of pairs and a flat ``[name, value, ...]`` list (whose repeated names
        all go out).  Given headers replace same-named ones set before.  The head is
        sent with the first ``write()``/``end()``; from now on ``headers_sent`` is
        True and ``set_header`` raises, as in Node.  Everything is checked before
        anything changes.

        ``status_code`` is the 3-digit status; ``reason`` the reason phrase (default:
        the standard one; may be omitted, ``write_head(200, headers)``).  Raises
        :class:`~greenhttps.errors.HeadersSentError` if the head is already fixed and
        :class:`~greenhttps.errors.InvalidArgumentError` for a bad status, reason or header.
        """
        if self.headers_sent:
            raise errors.HeadersSentError("Cannot write headers after they are sent to the client")
        if not isinstance(reason, (str, type(None))):
            reason, headers = None, reason
        _check_status(status_code)
        if reason is not None:
            check_value("statusMessage", reason)
        given = _head_headers(headers)
        self.status_code = status_code
        if reason is not None:
            self.status_message = reason
        for name in given.names():
            self._out.set(name, given.get(name))
            if self._removed:
                self._removed.discard(name.lower())
        self.headers_sent = self._head_frozen = True
        return self

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise self._lost()

    def _check_head(self) -> None:
        status = self.status_code
        if type(status) is not int or not 200 <= status <= 999:  # the usual case: no call
            _check_status(status)
        if self.status_message is not None:
            check_value("statusMessage", self.status_message)

    def _frame(self, body_length: int | None) -> None:
        if self.status_code in (204, 304):  # RFC 9110 §6.4.1: never a body, nor its length
            self._has_body = self._is_head = False
        super()._frame(body_length)

    def _decide(self) -> tuple[list[tuple[bytes, bytes]], OutgoingFraming]:
        out = self._out
        fields = out._fields  # the automatic fields go straight in: no call per field
        removed = self._removed
        if self.send_date and "date" not in removed and "date" not in fields:
            fields["date"] = ("Date", http_date())
        # The connection's one answer (peer, server state, request limit); the
        # framing may still end the connection (a close-delimited body).
        conn = self._conn
        keep_alive = conn.keep_alive_after(self)
        if "connection" not in removed and "connection" not in fields:
            if keep_alive:
                fields["connection"] = ("Connection", "keep-alive")
                timeout = conn.keep_alive_header
                if timeout and "keep-alive" not in removed and "keep-alive" not in fields:
                    fields["keep-alive"] = ("Keep-Alive", timeout)
            else:
                fields["connection"] = ("Connection", "close")
        pairs, framing = response_framing(out, removed, status=self.status_code, head_request=self.req.method == "HEAD",
                                          peer_http10=self._peer_http10, keep_alive=keep_alive,
                                          length=self._auto_length)
        if framing.close:
            self.should_keep_alive = False
        return pairs, framing

    def _send_head(self, body: bytes | None, end: bool) -> None:
        status = self.status_code
        reason = self.status_message or STATUS_CODES.get(status, "unknown")  # Node's spelling
        self._wire.send_head(response_bytes(status, reason, self._pairs), self._framing, body=body, end=end)

    def _wire_for_body(self) -> Wire:
        return self._wire

    def _finish(self) -> None:
        super()._finish()
        self._conn.response_finished(self)

    def _send_error(self, status: int) -> bool:
        """Replace whatever the handler prepared with a bare ``status`` reply and
        ``Connection: close``; False if part of the response is already on the wire."""
        if self._head_written:
            return False
        self._out = OutgoingHeaders()
        self._removed = set()
        self._trailers = []
        self.headers_sent = self._head_frozen = self.finished = False
        self.status_code, self.status_message = status, None
        self.set_header("Connection", "close")
        self.end()
        return True

    def write_continue(self) -> None:
        """Send ``100 Continue`` (Node's ``writeContinue``)."""
        self._conn.send_continue()

    def write_processing(self) -> None:
        """Send ``102 Processing`` (Node's ``writeProcessing``)."""
        self._informational(102)

    def write_early_hints(self, hints: Mapping[str, Any], callback: Callable[[], Any] | None = None) -> None:
        """Send ``103 Early Hints`` with ``hints`` (e.g. ``{'link': '</a.css>; rel=preload'}``).

        Node: ``writeEarlyHints(hints, callback)``; ``callback()`` is called once sent.
        Nothing is sent to an HTTP/1.0 client or once the final head is out.
        """
        self._informational(103, pairs_from(hints))
        if callback is not None:
            callback()

    def _informational(self, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        # RFC 9110 §15.2: no 1xx to an HTTP/1.0 client; none once the final head is out.
        if self._peer_http10 or self._head_written:
            return
        self._wire.send_informational(status, headers or None, STATUS_CODES[status])

    def set_timeout(self, msecs: float, callback: Callable[[], Any] | None = None) -> ServerResponse:
        """Socket idle timeout, ``msecs`` in milliseconds (0 disables); ``callback`` gets
        this response's ``'timeout'``.  Node: ``response.setTimeout()``; returns self."""
        if callback is not None:
            self.on("timeout", callback)
        self.socket.set_timeout(msecs)
        return self

    def destroy(self, error: BaseException | None = None) -> None:
        """Abort: close the connection without finishing the response.

        Node: ``response.destroy(error)``; a given ``error`` is emitted as ``'error'``.
        """
        self.destroyed = True
        self._conn.abort(error)
