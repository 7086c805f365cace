"""H11Wire: the wire with h11 parsing (the default without httptools).

Theory of operation
-------------------
This is the only module that imports h11.  h11 is the parser only: what we send is
serialised by :class:`~greenhttps._wire.Wire` itself (h11's writer and state machine
cost as much again as its parser, and re-validate what ``OutgoingHeaders`` already
validated).  So each exchange gets a fresh ``h11.Connection``, fed whatever the peer
sent past the last message; the client tells it the request method (HEAD, CONNECT)
through a body-less stand-in of the request head.  A few limits h11 does not keep
(chunk sizes, chunk lines, trailer sections that arrive whole) are checked against
h11's reader state, which is why h11 is pinned to one minor version.
"""

from __future__ import annotations

import io
import re
import socket
import time
from typing import Any

import h11

from . import errors
from ._tlsbio import BioSSLSocket
from ._wire import (
    _CONTROL_CHAR,
    _HEAD_END,
    _MAX_CHUNK_SIZE,
    _VERSIONS,
    MAX_CHUNK_LINE,
    MAX_REQUEST_LINE,
    DeadlineExceeded,
    Head,
    HeaderPairs,
    Wire,
    _protocol_error,
    grow_body_buffer,
    transfer_coding_status,
)

__all__ = ["H11Wire"]

#: Smaller bodies are read in pieces and joined: for a few pieces that costs less
#: than building the buffer.
_WHOLE_FROM = 65536
_ChunkedReader = h11._readers.ChunkedReader  # type: ignore[attr-defined]
_CHUNK_LINE = re.compile(rb"[0-9A-Fa-f]{1,16}(?:;[^\r\n]*)?\r\n")
#: h11 events are immutable: one body-less stand-in per distinct request shape.
_SHADOW_REQUESTS: dict[tuple[str, tuple[tuple[bytes, bytes], ...]], h11.Request] = {}


class H11Wire(Wire):
    """A :class:`Wire` whose messages h11 parses."""

    __slots__ = ("_h11", "_body_left")

    def __init__(self, sock: socket.socket | BioSSLSocket, **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self._h11 = self._parser(b"")
        #: Bytes of a Content-Length body not yet read (None: another framing).
        self._body_left: int | None = None

    # ----------------------------------------------------------------- state

    @property
    def peer_wants_100_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and is still waiting for an answer."""
        return self._h11.client_is_waiting_for_100_continue and not self._sent_interim and self._out is None

    @property
    def message_complete(self) -> bool:
        """The peer's current message has been read to its end."""
        return self._h11.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.MIGHT_SWITCH_PROTOCOL)

    @property
    def keep_alive(self) -> bool:
        """Both sides still intend to reuse the connection after this exchange."""
        h = self._h11
        out = self._out
        return (
            h.their_state is not h11.MUST_CLOSE
            and bool(h._cstate.keep_alive)  # h11 has no public spelling for this
            and (out is None or not out.close)
        )

    @property
    def head_started(self) -> bool:
        """Some bytes of the next head are buffered (a pipelined request)."""
        return bool(self._h11.trailing_data[0])

    def _parser(self, data: bytes) -> h11.Connection:
        parser = h11.Connection(
            h11.CLIENT if self._client else h11.SERVER, max_incomplete_event_size=self._max_header_size
        )
        if data:
            parser.receive_data(data)
        return parser

    def start_next_cycle(self) -> bool:
        """Reset for the next exchange; False if the connection cannot be reused."""
        h = self._h11
        out = self._out
        # MIGHT_SWITCH_PROTOCOL: an Upgrade request answered without switching.
        if not self._out_done or out is None or out.close or h.their_state not in (h11.DONE, h11.MIGHT_SWITCH_PROTOCOL):
            return False
        data, closed = h.trailing_data
        if closed:
            return False
        self._h11 = self._parser(data)
        self._body_left = None
        self._out = None
        self._out_done = self._sent_interim = False
        self.trailers = []
        self.bytes_received = 0
        return True

    # --------------------------------------------------------------- reading

    def _received(self, data: bytes) -> None:
        self._h11.receive_data(data)  # b'' tells h11 the peer closed

    def _next_event(self, deadline: float | None, phase: str) -> object:
        h = self._h11
        while True:
            if type(h._reader) is _ChunkedReader:
                self._check_chunked_body(h._reader, h._receive_buffer._data)
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise _protocol_error(str(exc), exc.error_status_hint) from exc
            if event is h11.NEED_DATA:
                self._receive(deadline, phase)
                continue
            return event

    def _check_chunked_body(self, reader: Any, buffered: bytearray) -> None:
        """Limits h11 does not keep in a chunked body (it reads h11's private reader
        state; h11 is pinned to 0.16): a chunk size of at most 16 hex digits (llhttp:
        below 2**64), a chunk line with its extensions within 16 KiB (Node: 413), and
        a trailer section within ``max_header_size`` (431), even when one arrives
        whole in a single read, where h11's incomplete-event limit does not look."""
        if reader._bytes_in_chunk > _MAX_CHUNK_SIZE:
            raise _protocol_error("chunk size too large", 400, "HPE_INVALID_CHUNK_SIZE")
        skip = 0
        if reader._reading_trailer:
            self._check_trailer_section(bytes(buffered[: self._max_header_size + 4]))
            if buffered[:2] == b"\r\n":
                return  # no trailers: what follows is the next message
            limit, status, code, end = self._max_header_size, 431, "HPE_HEADER_OVERFLOW", b"\n\r\n"
        elif reader._bytes_in_chunk == 0:
            # At a chunk boundary (perhaps with the CRLF after the last chunk's data
            # still to skip): h11 will read the next size line, and after a "0" the
            # trailers, in the same call -- check them first.
            skip = len(reader._bytes_to_discard)
            self._check_chunk_line(buffered, skip)
            limit, status, code, end = MAX_CHUNK_LINE + 2, 413, "HPE_CHUNK_EXTENSIONS_OVERFLOW", b"\n"
        else:
            return
        if len(buffered) > skip + limit and buffered.find(end, skip, skip + limit) < 0:
            raise _protocol_error("chunk extensions or trailers too large", status, code)

    def _check_chunk_line(self, buffered: bytearray, start: int) -> None:
        """A whole chunk-size line is hex digits, optional extensions, CRLF (h11 also
        takes whitespace and a bare LF, which llhttp refuses); after the last chunk,
        the trailer section is held to the rules of a head."""
        newline = buffered.find(b"\n", start, start + MAX_CHUNK_LINE + 2)
        if newline < 0:
            return  # not all here yet (its length is checked by the caller)
        line = bytes(buffered[start : newline + 1])
        if not _CHUNK_LINE.fullmatch(line) or _CONTROL_CHAR.search(line):
            raise _protocol_error("malformed chunk size line", 400, "HPE_INVALID_CHUNK_SIZE")
        if line.split(b";", 1)[0].strip(b"\r\n").strip(b"0") == b"":  # the last chunk
            self._check_trailer_section(bytes(buffered[newline + 1 : newline + 1 + self._max_header_size + 4]))

    def _check_trailer_section(self, section: bytes) -> None:
        if section[:2] == b"\r\n" or not section:
            return  # no trailers (or nothing yet)
        ends = [i + 4 for i in (section.find(b"\r\n\r\n"),) if i >= 0]
        ends += [i + 2 for i in (section.find(b"\n\n"),) if i >= 0]
        if section[:1] == b"\n" or ends:
            # CRLF only, no obs-fold, no control characters: as in a head.
            self._check_head_bytes(b"\r\n" + section[: min(ends)] if ends else section)

    def read_head(
        self,
        *,
        deadline: float | None = None,
        first_byte_timeout: float | None = None,
        headers_timeout: float | None = None,
    ) -> Head | None:
        h = self._h11
        # h11 consumes nothing until a whole head is buffered, so its buffer is
        # exactly the head bytes received so far: the strict checks read them.
        # (``_receive_buffer``: h11's public ``trailing_data`` copies it.)
        pending = bytes(h._receive_buffer)
        if not pending and first_byte_timeout is not None:
            try:
                self._receive(time.monotonic() + first_byte_timeout, "keep-alive", wait_first=True)
            except DeadlineExceeded:
                return None
            pending = bytes(h._receive_buffer)
        if pending and deadline is None and headers_timeout is not None:
            deadline = time.monotonic() + headers_timeout
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                if self._client and h.trailing_data[1]:
                    # The server closed inside the head: to the caller that is a hang-up.
                    raise errors.ConnectionResetError("socket hang up") from exc
                raise self._head_error(exc, pending) from exc
            if event is not h11.NEED_DATA:
                break
            if len(pending) > MAX_REQUEST_LINE and not self._client:
                self._check_request_line(pending)
            self._receive(deadline, "headers", wait_first=not pending)
            pending = bytes(h._receive_buffer)
            if deadline is None and headers_timeout is not None:
                deadline = time.monotonic() + headers_timeout
        if type(event) is h11.ConnectionClosed:
            return None
        # h11's limit only applies while a head is incomplete; one that arrived whole
        # in a single read must be held to the same bound.  (h11 consumed exactly the
        # head from its buffer, so the difference is the head's size.)
        if len(pending) - len(h._receive_buffer) > self._max_header_size:
            raise _protocol_error("header block too large", 431, "HPE_HEADER_OVERFLOW")
        if not self._client and pending.find(b"\n") > MAX_REQUEST_LINE:
            raise _protocol_error("request line too long", 414, "HPE_URI_TOO_LONG")
        if self._client:
            if not isinstance(event, (h11.Response, h11.InformationalResponse)):
                raise _protocol_error(f"unexpected {type(event).__name__} instead of a response")
            fields = event.headers.raw_items()
            if event.http_version not in _VERSIONS:
                raise _protocol_error(f"unsupported HTTP version {event.http_version!r}", 502, "HPE_INVALID_VERSION")
            if self._strict:
                self._check_head_bytes(pending)
                if self._check_fields(fields, request=False) is None:
                    self._check_raw_content_length(pending)
            self._body_left = self._declared_length(fields)
            return Head(
                status=event.status_code,
                reason=event.reason.decode("latin-1"),
                http_version=event.http_version.decode("ascii"),
                headers=fields,
            )
        assert isinstance(event, h11.Request), event
        fields = event.headers.raw_items()
        if event.http_version not in _VERSIONS:
            # h11 takes any 1.x/2.x digit pair; only HTTP/1.0 and 1.1 are spoken here.
            status = 505 if event.http_version[:1] >= b"2" else 400
            raise _protocol_error(f"unsupported HTTP version {event.http_version!r}", status, "HPE_INVALID_VERSION")
        has_body: bool | None = True
        if self._strict:
            self._check_head_bytes(pending)
            has_body = self._check_fields(fields, request=True)
            if has_body is None:
                self._check_raw_content_length(pending)
        method = event.method.decode("ascii")
        self._request_method = method
        self._peer_http10 = event.http_version == b"1.0"
        if has_body is False:
            # Take the end of a body-less request now (h11 has it without I/O), so
            # the common GET needs no body read at all.
            h.next_event()
        else:
            self._body_left = self._declared_length(fields)
        return Head(
            method=method,
            target=event.target.decode("latin-1"),
            http_version=event.http_version.decode("ascii"),
            headers=fields,
        )

    def _head_error(self, exc: h11.RemoteProtocolError, pending: bytes) -> errors.ProtocolError:
        status = exc.error_status_hint
        if status == 431 and not self._client and b"\n" not in pending[: MAX_REQUEST_LINE + 1]:
            status = 414
        elif status == 501 and transfer_coding_status(pending[: pending.find(_HEAD_END) + 4]) == 400:
            # h11 says 501 for any Transfer-Encoding but "chunked"; a repeated coding
            # (two headers, or "chunked, chunked") is malformed, not unsupported.
            status = 400
        code = {431: "HPE_HEADER_OVERFLOW", 414: "HPE_URI_TOO_LONG", 501: "HPE_INVALID_TRANSFER_ENCODING"}
        return _protocol_error(str(exc), status, code.get(status, "HPE_INVALID"))

    def read_body(self, *, deadline: float | None = None) -> bytes:
        """The next piece of the peer's body; b'' once it has all been read.

        After the end, :attr:`trailers` holds any trailer fields.  A peer that closes
        before the body is complete raises ``ConnectionResetError`` ('aborted').
        """
        h = self._h11
        if h.their_state is not h11.SEND_BODY:
            return b""
        try:
            event = self._next_event(deadline, "request")
        except errors.ProtocolError as exc:
            if h.trailing_data[1]:  # the peer closed mid-body
                raise errors.ConnectionResetError("aborted: peer closed before the body ended") from exc
            raise
        if type(event) is h11.Data:
            data = event.data  # h11 hands out bytearray slices of its buffer
            if self._body_left is not None:
                self._body_left -= len(data)
            return data if type(data) is bytes else bytes(data)
        if type(event) is h11.EndOfMessage:
            self.trailers = event.headers.raw_items()
            if self.trailers:
                if sum(len(name) + len(value) + 4 for name, value in self.trailers) > self._max_header_size:
                    raise _protocol_error("trailer section too large", 431, "HPE_HEADER_OVERFLOW")
                if self._strict:
                    self._check_fields(self.trailers, request=False)
            return b""
        if type(event) is h11.ConnectionClosed:
            raise errors.ConnectionResetError("aborted: peer closed before the body ended")
        raise _protocol_error(f"unexpected {type(event).__name__} in body")

    def read_rest_of_body(self, *, deadline: float | None = None) -> bytes | None:
        total = self._body_left
        if total is None or total < _WHOLE_FROM or self._h11.their_state is not h11.SEND_BODY:
            return None
        out = io.BytesIO()
        filled = capacity = 0
        while piece := self.read_body(deadline=deadline):
            if filled + len(piece) > capacity:
                capacity = grow_body_buffer(out, filled, total)
            out.write(piece)
            filled += len(piece)
        out.truncate(filled)  # the room grown but unfilled, should h11 end the body early
        # BytesIO hands over its own buffer when it holds exactly its contents: no copy.
        return out.getvalue()

    def _declared_length(self, fields: HeaderPairs) -> int | None:
        """The Content-Length of a message whose body h11 is about to read, if that
        is its framing (h11 has checked the value and folded repeats)."""
        if self._h11.their_state is not h11.SEND_BODY:
            return None
        length = None
        for name, value in fields:
            lname = name.lower()
            if lname == b"transfer-encoding":
                return None
            if lname == b"content-length":
                length = int(value)
        return length

    # --------------------------------------------------------------- writing

    def _peer_keeps_alive(self) -> bool:
        """The peer's message allows another exchange (HTTP/1.1, no ``close``)."""
        return bool(self._h11._cstate.keep_alive)  # h11 has no public spelling for this

    def _tell_parser(self, method: str, headers: HeaderPairs) -> None:
        """Client: give h11 what it needs to parse the response to our request -- the
        method (HEAD, CONNECT), Upgrade and Connection -- without the cost of the rest."""
        fields = tuple(
            (name, value) for name, value in headers
            if len(name) in (7, 10) and name.lower() in (b"upgrade", b"connection")
        )
        key = (method, fields)
        shadow = _SHADOW_REQUESTS.get(key)
        if shadow is None:
            try:
                shadow = h11.Request(method=method, target="/", headers=[(b"host", b"_"), *fields])
            except h11.LocalProtocolError as exc:
                raise errors.InvalidArgumentError(str(exc), "ERR_HTTP_INVALID_MESSAGE") from exc
            if len(_SHADOW_REQUESTS) >= 256:
                _SHADOW_REQUESTS.clear()
            _SHADOW_REQUESTS[key] = shadow
        self._h11.send(shadow)

    # --------------------------------------------------------------- lifecycle

    def detach(self) -> tuple[socket.socket | BioSSLSocket, bytes]:
        """Give up the socket (protocol switch): returns it and the bytes already
        read past the head.  The request body, if any, must have been read."""
        data, _ = self._h11.trailing_data
        data += bytes(self._early)
        self._early.clear()
        self.closed = True
        return self.sock, data
